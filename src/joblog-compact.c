/* SPDX-License-Identifier: MIT */
/*
 * Compaction of the job log (include/blinkhook/joblog.h says how): in place
 * (joblog_compact), or with a child process writing the snapshot while the
 * caller's loop goes on (joblog_compact_begin, _finish, _abort).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blinkhook/joblog.h"
#include "joblog-internal.h"

#define COMPACT_FLUSH_BYTES ((uint64_t)2 * 1024 * 1024)

/* Writes t's snapshot to fd, the first record marked with the snapshot
 * point from. */
static int write_snapshot(int fd, const struct job_table *t, uint64_t from)
{
	struct strbuf sb = STRBUF_INIT;
	uint64_t written = 0, flushed = 0;
	int r = 0;

	for (const struct job *j = t->first; j && r >= 0; j = j->next) {
		struct job_event ev;

		job_snapshot(j, &ev);
		if (j == t->first) {
			ev.compact_mark = true;
			ev.compacted_from = from;
		}
		r = job_event_format(&ev, &sb);
		if (r >= 0 && (sb.len >= (size_t)1024 * 1024 || !j->next)) {
			r = write_all(fd, sb.buf, sb.len);
			written += sb.len;
			strbuf_reset(&sb);
			/* Out to the disk as it goes, a little at a time: left for
			 * the final fsync, 100 MB of dirty data would go out in
			 * the journal commit that the daemon's own syncs of the
			 * log wait for meanwhile (ext4, data=ordered); and each
			 * burst is queued at the disk ahead of the daemon's next
			 * sync (8 MB bursts made some of those take 40 ms). */
			if (r >= 0 && written - flushed >= COMPACT_FLUSH_BYTES) {
				(void)sync_file_range(fd, (off_t)flushed, (off_t)(written - flushed),
						      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
							      SYNC_FILE_RANGE_WAIT_AFTER);
				flushed = written;
			}
		}
	}
	strbuf_release(&sb);
	return r;
}

/* The stream position (joblog.h, following) of the log's byte offset off,
 * which is past its snapshots. */
static uint64_t stream_pos(const struct joblog *l, uint64_t off)
{
	return l->stream_base + (off - l->snap_end);
}

/* What the child reports: its result, where its snapshot ends in the new
 * file, and how much of the old log after the snapshot point it copied
 * after it (one write, atomic on a pipe). */
struct compact_report {
	int64_t res;
	uint64_t snapshot_end;
	uint64_t copied;
};

static int copy_range(int from_fd, int fd, uint64_t from, uint64_t to);
static void close_others(int a, int b, int c);

/* The child: its copy of the table is the snapshot.  It touches nothing but
 * the two files and the pipe, and leaves by _exit(): no atexit handler, no
 * stdio flushed, nothing of the parent's (HTTP, curl, the loop) closed or
 * cleaned up twice.  After the snapshot it copies what the old log holds by
 * then past the snapshot point, so that the parent's share of the copy (on
 * its loop) is only what came after. */
_Noreturn static void compact_child(int fd, int old_fd, int pipe_w, const struct job_table *t, uint64_t from,
				    pid_t parent)
{
	struct compact_report rep = {0};
	struct stat st;
	sigset_t none;
	int r;

	/* The loop blocks the signals it handles: the child takes a stop's
	 * SIGTERM in the default way, and dies with its parent. */
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(2);
	close_others(fd, old_fd, pipe_w);
	/* Second to the loop for the CPU (a filter may forbid it: then not). */
	(void)setpriority(PRIO_PROCESS, 0, 10);
	r = write_snapshot(fd, t, from);
	if (r >= 0 && fsync(fd) < 0)
		r = negative_errno();
	if (r >= 0 && fstat(fd, &st) < 0)
		r = negative_errno();
	if (r >= 0) {
		rep.snapshot_end = (uint64_t)st.st_size;
		/* Bytes at an offset of the old log never change once written
		 * (a failed batch is written again the same), so any prefix
		 * of what is there now is good; the parent cuts back what did
		 * not become durable. */
		if (fstat(old_fd, &st) < 0)
			r = negative_errno();
		else if ((uint64_t)st.st_size > from) {
			r = copy_range(old_fd, fd, from, (uint64_t)st.st_size);
			if (r >= 0 && fdatasync(fd) < 0)
				r = negative_errno();
			if (r >= 0)
				rep.copied = (uint64_t)st.st_size - from;
		}
	}
	rep.res = r < 0 ? r : 0;
	if (write(pipe_w, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		_exit(3);
	_exit(r < 0 ? 1 : 0);
}

/* The child closes every descriptor of the parent's but the standard ones
 * and the three it uses: a listening socket, a client's connection or the
 * lock it held would otherwise live on (no FIN to a peer the parent hung up
 * on) until the child ends. */
static void close_others(int a, int b, int c)
{
	int keep[6] = {0, 1, 2, a, b, c};
	struct rlimit rl;
	unsigned lo = 0;
	int max;

	/* Sorted, so that the gaps between them are closed. */
	for (int i = 1; i < 6; i++)
		for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int x = keep[j];

			keep[j] = keep[j - 1];
			keep[j - 1] = x;
		}
	for (int i = 0; i < 6; i++) {
		if ((unsigned)keep[i] > lo && close_range(lo, (unsigned)keep[i] - 1, 0) < 0)
			goto loop;
		lo = (unsigned)keep[i] + 1;
	}
	if (close_range(lo, ~0U, 0) >= 0)
		return;
loop:
	/* Without close_range (an old kernel, a filter): one by one. */
	max = getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > 65536 ? 65536 : (int)rl.rlim_cur;
	for (int fd = 3; fd < max; fd++)
		if (fd != a && fd != b && fd != c)
			(void)close(fd);
}

static void compact_clear(struct joblog *l, bool remove)
{
	if (l->compact_pipe >= 0)
		close(l->compact_pipe);
	if (l->compact_fd >= 0)
		close(l->compact_fd);
	l->compact_pipe = l->compact_fd = -1;
	l->compact_pid = 0;
	if (remove) {
		_cleanup_free_ char *tmp = path_join(l->dir, JOBLOG_COMPACT_FILE);

		if (tmp)
			(void)unlink(tmp);
	}
}

/* The old log's blocks are freed a few MB at a time, that long apart: freed
 * in one go (200 MB at 600,000 jobs), they went into one journal commit that
 * the daemon's next sync of the new log waited for, 40 to 70 ms on ext4
 * mounted with "discard"; in steps, each commit takes a few. */
#define FREE_STEP ((off_t)4 * 1024 * 1024)
#define FREE_PAUSE_NSEC 10000000L /* 10 ms */
/* A follower (blinkhookctl log --follow) reads the rest of the old log when
 * it sees the new one, within its poll interval: it is left that long
 * (and as long as it holds its lock, may_free()). */
#define FREE_DELAY_MSEC 2000U

struct free_old {
	int fd;
	unsigned delay_ms;
};

/* Whether the old log's blocks may be freed by hand: only when no name
 * links the file any more (an operator's hard link keeps it whole) and no
 * reader holds it.  Readers hold a shared flock() on what they read from
 * (joblog.h): one paused mid-file (log --follow | less) has the rest still
 * to read.  Then the blocks go at the last close, the kernel's business.
 * The exclusive lock, once taken, is kept until the close: a reader that
 * opened the file just before the rename waits for it, then sees the file
 * unlinked and opens the new log. */
static bool may_free(int fd, off_t *ret_size)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || st.st_nlink != 0)
		return false;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return false;
	*ret_size = st.st_size;
	return true;
}

static void *close_fd(void *arg)
{
	struct free_old *o = arg;
	off_t size = 0;

	(void)nanosleep(&(struct timespec){(time_t)(o->delay_ms / 1000), (long)(o->delay_ms % 1000) * 1000000L}, NULL);
	if (may_free(o->fd, &size))
		while (size > 0) {
			size = size > FREE_STEP ? size - FREE_STEP : 0;
			if (ftruncate(o->fd, size) < 0)
				break; /* the close frees the rest */
			(void)nanosleep(&(struct timespec){0, FREE_PAUSE_NSEC}, NULL);
		}
	close(o->fd);
	free(o);
	return NULL;
}

/* Closes the old log, whose last reference this is (the daemon's: a
 * follower may hold one too), on a thread of its own that frees its blocks
 * bit by bit, not on the caller's loop. */
static void close_in_background(int fd, unsigned delay_ms)
{
	pthread_attr_t attr;
	pthread_t t;
	struct free_old *arg = malloc(sizeof(*arg));
	bool started = false;

	if (arg && pthread_attr_init(&attr) == 0) {
		arg->fd = fd;
		arg->delay_ms = delay_ms ? delay_ms : FREE_DELAY_MSEC;
		started = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
			  pthread_create(&t, &attr, close_fd, arg) == 0;
		(void)pthread_attr_destroy(&attr);
	}
	if (!started) {
		free(arg);
		close(fd);
	}
}

void joblog_set_free_delay(struct joblog *l, unsigned ms)
{
	l->free_delay_ms = ms;
}

/* Makes the new file (fd, with everything in it synced) the log. */
static int compact_take_over(struct joblog *l, int fd, uint64_t records, bool background)
{
	_cleanup_free_ char *path = path_join(l->dir, JOBLOG_FILE), *tmp = path_join(l->dir, JOBLOG_COMPACT_FILE);
	struct stat st;

	if (!path || !tmp)
		return -ENOMEM;
	if (fstat(fd, &st) < 0)
		return -errno;
	/* The rename is the moment the new log takes over. */
	if (rename(tmp, path) < 0)
		return -errno;
	(void)fsync_dir(l->dir);
	if (background)
		close_in_background(l->fd, l->free_delay_ms);
	else
		close(l->fd);
	l->fd = fd;
	l->durable_size = (uint64_t)st.st_size;
	l->records = records;
	return 0;
}

/* The first step of both compactions: the new file, empty, with the log's
 * mode; -EBUSY while a compaction runs or anything is uncommitted. */
static int compact_open_new(struct joblog *l, int *ret_fd)
{
	_cleanup_free_ char *tmp = path_join(l->dir, JOBLOG_COMPACT_FILE);
	struct stat st;
	int fd;

	if (!tmp)
		return -ENOMEM;
	if (l->compact_pid || l->pending.len || l->inflight.len || l->syncing)
		return -EBUSY;
	if (fstat(l->fd, &st) < 0)
		return -errno;
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, st.st_mode & 07777);
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

int joblog_compact_begin(struct joblog *l, const struct job_table *t)
{
	_cleanup_close_ int fd = -1;
	int pipefd[2];
	pid_t pid, parent = getpid();
	int r;

	r = compact_open_new(l, &fd);
	if (r < 0)
		return r;
	if (!t->first) {
		/* Nothing to write: an empty log, here and now. */
		/* cppcheck-suppress unreadVariable */
		int nfd = TAKE_FD(fd);
		uint64_t from = stream_pos(l, l->durable_size);

		r = fsync(nfd) < 0 ? -errno : compact_take_over(l, nfd, 0, false);
		if (r < 0) {
			close(nfd);
			compact_clear(l, true); /* removes the new file */
			return r;
		}
		/* No snapshot to say where it starts: its positions go on
		 * from the old log's end, as a follower that read that end
		 * takes them (joblog.h), so that the next compaction's mark
		 * lies past every mark handed out before. */
		l->stream_base = from;
		l->snap_end = 0;
		return 0;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		r = -errno;
		compact_clear(l, true);
		return r;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(pipefd[0]);
		close(pipefd[1]);
		compact_clear(l, true);
		return r;
	}
	if (pid == 0)
		compact_child(fd, l->fd, pipefd[1], t, stream_pos(l, l->durable_size), parent);
	close(pipefd[1]);
	/* The loop asks after every commit whether the child is done: the
	 * answer must not wait for it. */
	if (fcntl(pipefd[0], F_SETFL, O_NONBLOCK) < 0) {
		/* Cannot be for a pipe of ours; finish would block, no worse. */
	}
	l->compact_pid = pid;
	l->compact_pipe = pipefd[0];
	/* cppcheck-suppress unreadVariable */
	l->compact_fd = TAKE_FD(fd);
	l->compact_from = l->durable_size;
	l->compact_from_records = l->records;
	l->compact_jobs = t->n_jobs;
	l->compact_reported = false;
	return 1;
}

int joblog_compact_fd(const struct joblog *l)
{
	return l->compact_pid ? l->compact_pipe : -1;
}
bool joblog_compacting(const struct joblog *l)
{
	return l->compact_pid != 0;
}
int joblog_compact_pid(const struct joblog *l)
{
	return (int)l->compact_pid;
}
uint64_t joblog_compact_carried(const struct joblog *l)
{
	return l->compact_carried;
}

/* Copies the old log's bytes [from, to) to the end of fd. */
static int copy_range(int from_fd, int fd, uint64_t from, uint64_t to)
{
	char buf[64 * 1024];

	while (from < to) {
		size_t want = (size_t)MIN((uint64_t)sizeof(buf), to - from);
		ssize_t n = pread(from_fd, buf, want, (off_t)from);
		int r;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* shorter than its durable size: cannot be */
		r = write_all(fd, buf, (size_t)n);
		if (r < 0)
			return r;
		from += (uint64_t)n;
	}
	return 0;
}

int joblog_compact_finish(struct joblog *l)
{
	int status, r;

	if (!l->compact_pid)
		return -EAGAIN;
	if (l->syncing)
		return -EBUSY;
	/* The report, then the end of file: the child's descriptors close
	 * after its memory is gone, so waitpid() does not wait on the loop for
	 * the kernel to tear down the child's copy of the daemon's page tables
	 * (some 8 ms at 600,000 jobs). */
	for (;;) {
		struct compact_report rep;
		ssize_t n;

		do
			n = read(l->compact_pipe, &rep, sizeof(rep));
		while (n < 0 && errno == EINTR);
		if (n < 0 && errno == EAGAIN)
			return -EAGAIN;
		if (n <= 0)
			break; /* the end (or a pipe that failed: the same) */
		if (n == (ssize_t)sizeof(rep) && !l->compact_reported) {
			l->compact_reported = true;
			l->compact_res = rep.res;
			l->compact_snapshot_end = rep.snapshot_end;
			l->compact_copied = rep.copied;
		} else
			l->compact_res = -ECHILD; /* cannot be: a child of ours */
	}
	while (waitpid(l->compact_pid, &status, 0) < 0 && errno == EINTR)
		;
	/* Without a report it died without a word: killed. */
	r = l->compact_reported ? (int)l->compact_res : -ECHILD;
	if (r >= 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
		r = -ECHILD;
	/* What was committed since the snapshot point follows the snapshot, in
	 * the same bytes: the child copied some (perhaps more than became
	 * durable: cut back), this the rest; then all of it is synced before
	 * the rename. */
	if (r >= 0) {
		uint64_t durable = l->durable_size - l->compact_from;

		if (l->compact_copied > durable) {
			if (ftruncate(l->compact_fd, (off_t)(l->compact_snapshot_end + durable)) < 0)
				r = -errno;
		} else
			r = copy_range(l->fd, l->compact_fd, l->compact_from + l->compact_copied, l->durable_size);
	}
	if (r >= 0 && fdatasync(l->compact_fd) < 0)
		r = -errno;
	l->compact_carried = l->records - l->compact_from_records;
	if (r >= 0) {
		uint64_t from = stream_pos(l, l->compact_from);

		r = compact_take_over(l, l->compact_fd, l->compact_jobs + l->compact_carried, true);
		if (r >= 0) {
			l->stream_base = from;
			l->snap_end = l->compact_snapshot_end;
		}
	}
	if (r < 0) {
		compact_clear(l, true);
		return r;
	}
	l->compact_fd = -1; /* the log's now */
	compact_clear(l, false);
	return 0;
}

void joblog_compact_abort(struct joblog *l)
{
	int status;

	if (!l->compact_pid)
		return;
	(void)kill(l->compact_pid, SIGKILL);
	while (waitpid(l->compact_pid, &status, 0) < 0 && errno == EINTR)
		;
	compact_clear(l, true);
}

int joblog_compact(struct joblog *l, const struct job_table *t)
{
	struct stat st;
	uint64_t from;
	int fd = -1, r;

	/* In place, without a child: at start, before anything waits on the
	 * loop (and in the fuzzer, which runs it for every input). */
	r = compact_open_new(l, &fd);
	if (r < 0)
		return r;
	from = stream_pos(l, l->durable_size);
	r = write_snapshot(fd, t, from);
	if (r >= 0 && fsync(fd) < 0)
		r = -errno;
	if (r >= 0 && fstat(fd, &st) < 0)
		r = -errno;
	if (r >= 0)
		r = compact_take_over(l, fd, t->n_jobs, false);
	if (r >= 0) {
		/* An empty table wrote no snapshot: its positions go on from
		 * the old log's end all the same (joblog.h). */
		l->stream_base = from;
		l->snap_end = (uint64_t)st.st_size;
	}
	if (r < 0) {
		close(fd);
		compact_clear(l, true);
	}
	return r;
}
