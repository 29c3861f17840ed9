/* SPDX-License-Identifier: MIT */
/*
 * joblog — the append-only job log, `jobs.log` in the state directory: one
 * JSON object a line, one line an event (job.h), oldest first.  It is the
 * source of truth: the daemon's job table is what replaying it gives.
 *
 * Writing (the daemon, holding the state directory's lock):
 *  - joblog_append() formats an event into a pending buffer and returns its
 *    sequence number; nothing touches the disk yet.
 *  - joblog_commit() writes everything pending and fdatasync()s once (group
 *    commit).  On success every appended record up to joblog_synced_seq() is
 *    durable.  On failure the file is cut back to its last durable size and
 *    the records stay pending for the next commit, so a full disk loses
 *    nothing that was promised and heals by itself when space returns.
 *  - joblog_commit_start() is the same commit without waiting for the disk:
 *    it writes the batch and starts the kernel's asynchronous fdatasync
 *    (Linux AIO, IOCB_CMD_FDSYNC); joblog_commit_fd() becomes readable when
 *    it ends, and joblog_commit_finish() takes its result.  Records appended
 *    meanwhile wait for the next batch.  So the daemon's loop goes on
 *    answering requests during the few milliseconds a sync takes; where the
 *    kernel or a seccomp filter lacks AIO, it syncs in place instead.
 *
 * Reading: joblog_replay() (the daemon, at start) cuts off a torn tail (an
 * unterminated last line, and lines of NUL bytes that a crash can leave where
 * the file grew before its data reached the disk) and refuses damage
 * anywhere else, including complete lines at the end that do not parse;
 * joblog_read() (blinkhookctl) never writes and skips what it cannot parse.
 */
#ifndef BLINKHOOK_JOBLOG_H
#define BLINKHOOK_JOBLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "blinkhook/job.h"

#define JOBLOG_FILE "jobs.log"
#define JOBLOG_LOCK_FILE "lock"
#define JOBLOG_COMPACT_FILE "jobs.log.new"
/* No record is longer; a longer line is damage. */
#define JOBLOG_LINE_MAX 8192
/* So that replay reads every record without json-c. */
_Static_assert(JOBLOG_LINE_MAX <= JOB_EVENT_TEXT_MAX, "a record may be too long for the fast reader");

struct joblog;

struct joblog_info {
	uint64_t records; /* records read */
	uint64_t size;    /* bytes of good records */
	bool torn;        /* a torn tail was found (and, on replay, cut off) */
	uint64_t torn_offset;
	uint64_t torn_bytes;
	uint64_t damaged;  /* lines skipped by joblog_read() */
	uint64_t bad_line; /* the first damaged line, 1-based, and its offset */
	uint64_t bad_offset;
	int bad_error; /* -EBADMSG, -EPROTONOSUPPORT, or the callback's error */
	uint64_t at;   /* during the callback: the offset of the record it is handed */
	/* joblog_follow_read(): records were compacted away before they could
	 * be read; the snapshots that restate them were handed on instead. */
	bool compacted_unread;
};

/* Called for each record; a negative return stops the read and is returned
 * (replay: reported as damage at that line). */
typedef int (*joblog_event_cb)(const struct job_event *ev, void *ud);

/* Opens (creating it, mode 0640) the log in dir and takes the directory's
 * lock.  -EBUSY when another process holds it. */
int joblog_open(const char *dir, struct joblog **ret);
void joblog_free(struct joblog *l);

/* Replays the log through cb; once, right after joblog_open().  A torn tail
 * is cut off (the file is truncated and synced) and reported in info; damage
 * elsewhere returns -EBADMSG (or -EPROTONOSUPPORT) with info->bad_* set and
 * the file unchanged. */
int joblog_replay(struct joblog *l, joblog_event_cb cb, void *ud, struct joblog_info *info);

int joblog_append(struct joblog *l, const struct job_event *ev, uint64_t *ret_seq);
int joblog_commit(struct joblog *l);
/* 1 when a sync is now in flight, 0 when the commit is done (nothing
 * pending, or synced in place), or the commit's error (as joblog_commit).
 * -EBUSY while a sync is in flight. */
int joblog_commit_start(struct joblog *l);
/* The file descriptor that becomes readable when the sync in flight ends; -1
 * before the first commit, or without AIO.  It stays valid (if silent, after
 * a fallback to syncing in place) until joblog_free(). */
int joblog_commit_fd(const struct joblog *l);
/* The result of the sync in flight, as joblog_commit's; -EAGAIN when it has
 * not ended (or none is in flight). */
int joblog_commit_finish(struct joblog *l);
bool joblog_syncing(const struct joblog *l);
uint64_t joblog_appended_seq(const struct joblog *l);
uint64_t joblog_synced_seq(const struct joblog *l);
bool joblog_has_pending(const struct joblog *l);
/* The last commit's error, 0 after a successful one. */
int joblog_last_error(const struct joblog *l);

/* Rewrites the log as one snapshot record for each job in t (compaction):
 * a new file, fsync, rename over the old one, fsync of the directory, so
 * that a reader sees the old log or the new one, never half of either.
 * Everything appended must be committed first, and no sync in flight
 * (-EBUSY otherwise).  On failure the old log stays in place and in use.
 * Runs in place, blocking (at start, before anything waits); while the
 * daemon runs, joblog_compact_begin() and joblog_compact_finish() do it
 * without blocking. */
int joblog_compact(struct joblog *l, const struct job_table *t);

/*
 * Compaction off the loop.  joblog_compact_begin() takes the snapshot point
 * (the log's size now; nothing may be pending or syncing: -EBUSY) and forks
 * a child that writes t's snapshot into JOBLOG_COMPACT_FILE from its
 * copy-on-write image of the table, fsyncs it and exits.  The caller goes on
 * appending and committing to the old log meanwhile, and may change t.
 * When the child has ended (joblog_compact_fd() is readable, and
 * joblog_compact_finish() no longer says -EAGAIN), the finish copies what
 * was committed to the old log since the snapshot point to the end of the
 * new file, syncs it, renames it over the old one, syncs the directory and
 * makes it the log; pending records go to the new one at the next commit.
 * The first snapshot record carries the stream position of the snapshot
 * point (compacted_from), which joblog_follow_read() uses to print nothing
 * twice.  A crash at any moment leaves the old log whole and at most a
 * JOBLOG_COMPACT_FILE that the next compaction truncates.
 */
/* 1 when the child runs (watch joblog_compact_fd()), 0 when it was done in
 * place (an empty table has nothing to write), -EBUSY when records are
 * pending or syncing, or a compaction already runs. */
int joblog_compact_begin(struct joblog *l, const struct job_table *t);
/* Readable when the child has written its report, and again (end of file)
 * when it has ended; -1 when none runs. */
int joblog_compact_fd(const struct joblog *l);
bool joblog_compacting(const struct joblog *l);
/* 0 when the new log took over; -EAGAIN until the child has ended; -EBUSY
 * while a sync is in flight (call again when it has ended); another error
 * when the compaction failed (the old log stays in use, the new file is
 * removed, and a later joblog_compact_begin() may try again). */
int joblog_compact_finish(struct joblog *l);
/* Kills the child, if any, and removes the new file: the old log stays.
 * joblog_free() does this too. */
void joblog_compact_abort(struct joblog *l);
/* The child's process id, 0 when none runs (for tests). */
int joblog_compact_pid(const struct joblog *l);
/* The records the last compaction carried over from the old log. */
uint64_t joblog_compact_carried(const struct joblog *l);
/* After joblog_compact_finish() has made the new log take over, a thread
 * frees the old log's blocks a few MB at a time, ms milliseconds later (0:
 * the default, 2 s), but only when no name links the file any more and no
 * reader holds a shared flock() on it (see the readers below); otherwise it
 * only closes it, and the blocks go at the reader's last close.  For tests. */
void joblog_set_free_delay(struct joblog *l, unsigned ms);

/* Records in the file now (replayed, appended and committed since). */
uint64_t joblog_records(const struct joblog *l);

/* Reads dir's log from byte offset start, without the lock and without
 * writing (a shared flock() on its own descriptor while it reads, which a
 * read-only open allows: a compaction then leaves the old file whole for
 * it): records go to cb, damaged lines are counted in info and skipped;
 * an unterminated last line is left for a later read.  *ret_end is the
 * offset after the last complete line read (for following the log).
 * -ENOENT when there is no log yet. */
int joblog_read(const char *dir, uint64_t start, joblog_event_cb cb, void *ud, struct joblog_info *info,
		uint64_t *ret_end);

/*
 * Following the log (blinkhookctl log --follow): each call reads what was
 * added since the last one and hands it to cb.
 *
 * A compaction replaces the file, and any number of them may happen between
 * two reads.  So the follower does not count in the bytes of one file but in
 * stream positions: every record ever committed has one, the same in every
 * log that holds it (the bytes of all records, snapshots left out, one after
 * the other).  A log's first snapshot says where its records start in that
 * stream (compacted_from; a log without one starts it at 0), and each record
 * sits at that plus its offset past the snapshots.  The follower remembers
 * the position after the last record it handed on (mark).  When the file has
 * been replaced, it reads the rest of the old one (whose descriptor it holds,
 * so its inode number cannot come back meanwhile, with a shared flock(), so
 * the daemon does not free its blocks under it however long the follower
 * waits: joblog_set_free_delay()), then the log that is there
 * now: its snapshots are skipped (they restate what was handed on) and its
 * records from the mark on are handed on, each once.  Only when that log
 * starts past the mark (records were dropped before they were read: two
 * compactions between two reads, the one in between never seen, or a
 * reader without the lock) are its
 * snapshots handed on instead, as what those records came to, and
 * info->compacted_unread says so.  A log without a first snapshot (a
 * compaction that left no job) goes on from the old log's end: the writer
 * counts its positions from there, and so does a follower that read that
 * end; one that meets such a log first takes it to start at 0 and hands all
 * of it on.  Positions thus only grow while the writer runs; a writer that
 * starts on a log without snapshots counts from 0 again.
 */
struct joblog_follow {
	int fd;
	uint64_t dev, ino, off;
	bool reopened;       /* the log was replaced since the first read */
	bool leading;        /* still among the log's first records (its snapshots) */
	bool first_record;   /* no record of this log read yet */
	bool show_snapshots; /* hand on this log's snapshots */
	uint64_t base;       /* the stream position where this log's records start */
	uint64_t snap_end;   /* the offset of its first record after the snapshots */
	uint64_t mark;       /* the stream position after the last record handed on */
	joblog_event_cb cb;
	void *ud;
	struct joblog_info *info;
};
#define JOBLOG_FOLLOW_INIT \
	{                  \
		.fd = -1   \
	}
/* As joblog_read(): -ENOENT while there is no log. */
int joblog_follow_read(struct joblog_follow *f, const char *dir, joblog_event_cb cb, void *ud,
		       struct joblog_info *info);
void joblog_follow_release(struct joblog_follow *f);

#endif
