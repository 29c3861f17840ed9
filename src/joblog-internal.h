/* SPDX-License-Identifier: MIT */
/*
 * The job log's state, shared by its two files: src/joblog.c (open, append,
 * group commit, replay, readers) and src/joblog-compact.c (compaction).
 * Not a contract: include/blinkhook/joblog.h is.
 */
#ifndef BLINKHOOK_JOBLOG_INTERNAL_H
#define BLINKHOOK_JOBLOG_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/aio_abi.h>

#include "blinkhook/joblog.h"

struct joblog {
	int fd;
	int lock_fd;
	char *dir;
	struct strbuf pending;
	uint64_t durable_size; /* the file's size up to the last good sync */
	uint64_t appended_seq;
	uint64_t synced_seq;
	uint64_t records; /* in the file */
	uint64_t pending_records;
	int last_error;
	/* Where the log's records sit in the stream of all records (joblog.h,
	 * following): the stream position of the first byte after its leading
	 * snapshots, and that byte's offset in the file. */
	uint64_t stream_base;
	uint64_t snap_end;

	/* A batch written and being synced (joblog_commit_start). */
	bool syncing;
	struct strbuf inflight;
	uint64_t inflight_seq;
	uint64_t inflight_records;
	/* The kernel's asynchronous fdatasync: a context for one request, and
	 * an eventfd that it signals.  aio_state: 0 not tried yet, 1 ready,
	 * -1 unavailable (the commit then syncs in place). */
	int aio_state;
	aio_context_t aio;
	int aio_eventfd;
	struct iocb iocb;

	/* A compaction whose snapshot a child writes (joblog_compact_begin). */
	pid_t compact_pid;
	int compact_fd;                /* the new file */
	int compact_pipe;              /* the child's result, then end of file */
	uint64_t compact_from;         /* the old log's size at the snapshot */
	uint64_t compact_from_records; /* and its records */
	uint64_t compact_jobs;         /* snapshots written */
	uint64_t compact_carried;      /* records the last one carried over */
	/* The child's report, once read: it is acted on when the child has
	 * ended (end of file on the pipe), so that the loop never waits for
	 * the kernel to tear down the child's copy of the address space. */
	bool compact_reported;
	int64_t compact_res;
	uint64_t compact_snapshot_end;
	uint64_t compact_copied;
	/* How long after a take-over the old log's blocks are freed, when
	 * nothing holds it; 0: the default (joblog_set_free_delay). */
	unsigned free_delay_ms;
};

#endif
