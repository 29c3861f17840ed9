/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
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
};

int joblog_open(const char *dir, struct joblog **ret)
{
	_cleanup_free_ char *path = NULL, *lock = NULL;
	_cleanup_close_ int fd = -1, lock_fd = -1;
	struct joblog *l;
	struct stat st;

	path = path_join(dir, JOBLOG_FILE);
	lock = path_join(dir, JOBLOG_LOCK_FILE);
	if (!path || !lock)
		return -ENOMEM;
	lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lock_fd < 0)
		return -errno;
	if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	/* A newly created log must survive a crash as a directory entry too. */
	if (st.st_size == 0 && fsync_dir(dir) < 0)
		return -errno;

	l = calloc(1, sizeof(*l));
	if (!l || !(l->dir = strdup(dir))) {
		free(l);
		return -ENOMEM;
	}
	/* TAKE_FD leaves -1 behind for the _cleanup_close_ handlers, which
	 * cppcheck does not see reading it. */
	/* cppcheck-suppress unreadVariable */
	l->fd = TAKE_FD(fd);
	/* cppcheck-suppress unreadVariable */
	l->lock_fd = TAKE_FD(lock_fd);
	l->aio_eventfd = -1;
	l->compact_fd = -1;
	l->compact_pipe = -1;
	l->durable_size = (uint64_t)st.st_size;
	*ret = l;
	return 0;
}

static int commit_wait(struct joblog *l);

void joblog_free(struct joblog *l)
{
	if (!l)
		return;
	joblog_compact_abort(l);
	/* A sync in flight ends before its file descriptor goes. */
	if (l->syncing)
		(void)commit_wait(l);
	if (l->aio_state > 0)
		(void)syscall(SYS_io_destroy, l->aio);
	if (l->aio_eventfd >= 0)
		close(l->aio_eventfd);
	strbuf_release(&l->inflight);
	if (l->fd >= 0)
		close(l->fd);
	if (l->lock_fd >= 0)
		close(l->lock_fd);
	strbuf_release(&l->pending);
	free(l->dir);
	free(l);
}

/*
 * Walks the lines of buf.  Every complete line is parsed and handed to cb.
 * In strict mode the first bad line stops the walk; it counts as a torn tail
 * when nothing but bad lines follows it.  Otherwise bad lines are skipped.
 * *ret_end is the offset after the last complete line.
 */
static int walk(const char *buf, size_t len, uint64_t base, bool strict, joblog_event_cb cb, void *ud,
		struct joblog_info *info, size_t *ret_end)
{
	_cleanup_(job_event_store_release) struct job_event_store store = JOB_EVENT_STORE_INIT;
	size_t off = 0, line_no = 0;

	while (off < len) {
		const char *nl = memchr(buf + off, '\n', len - off);
		size_t n;

		if (!nl) {
			/* An unterminated last line: a write that a crash cut short. */
			info->torn = true;
			info->torn_offset = base + off;
			info->torn_bytes = len - off;
			break;
		}
		n = (size_t)(nl - (buf + off));
		line_no++;
		if (n > 0) {
			struct job_event ev;
			int r;

			r = n > JOBLOG_LINE_MAX ? -EBADMSG : job_event_parse(buf + off, n, &ev, &store);
			if (r >= 0) {
				info->at = base + off;
				r = cb(&ev, ud);
				if (r < 0 && !strict)
					return r; /* the callback's error, not damage: stop */
				if (r >= 0)
					info->records++;
			}
			if (r < 0) {
				if (!info->bad_line) {
					info->bad_line = line_no;
					info->bad_offset = base + off;
					info->bad_error = r;
				}
				if (strict) {
					/* Torn only if no good line follows: check the rest. */
					*ret_end = off;
					return r;
				}
				info->damaged++;
			}
		}
		off += n + 1;
		info->size = base + off;
	}
	*ret_end = off;
	return 0;
}

/*
 * Whether buf, the rest of the file from the first line that failed, is what
 * a crash in the middle of an append leaves: complete lines only where the
 * file system had extended the file without its data (lines with NUL bytes
 * in them), then at most one unterminated line.  We write whole records, so a
 * complete line without a NUL that does not parse (or parses but cannot be
 * applied) is damage, never a torn write, and is not cut off: that would
 * lose what it held.
 */
static bool only_torn(const char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		const char *nl = memchr(buf + off, '\n', len - off);

		if (!nl)
			return true; /* the unterminated end */
		if (!memchr(buf + off, 0, (size_t)(nl - (buf + off))))
			return false;
		off = (size_t)(nl - buf) + 1;
	}
	return true;
}

static int map_file(int fd, uint64_t start, void **ret_map, size_t *ret_len)
{
	struct stat st;
	void *m;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size <= start) {
		*ret_map = NULL;
		*ret_len = 0;
		return 0;
	}
	if ((uint64_t)st.st_size > SIZE_MAX)
		return -EFBIG;
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	(void)madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
	*ret_map = m;
	*ret_len = (size_t)st.st_size;
	return 0;
}

int joblog_replay(struct joblog *l, joblog_event_cb cb, void *ud, struct joblog_info *info)
{
	void *map = NULL;
	size_t len = 0, end = 0;
	int r;

	memset(info, 0, sizeof(*info));
	r = map_file(l->fd, 0, &map, &len);
	if (r < 0)
		return r;
	r = map ? walk(map, len, 0, true, cb, ud, info, &end) : 0;
	if (r < 0) {
		if (r == -EPROTONOSUPPORT || !only_torn((char *)map + end, len - end)) {
			munmap(map, len);
			return r;
		}
		/* Zero-filled lines to the end: a torn tail after all. */
		info->torn = true;
		info->torn_offset = end;
		info->torn_bytes = len - end;
		info->bad_line = 0;
		info->bad_offset = 0;
		info->bad_error = 0;
	}
	if (map)
		munmap(map, len);
	if (info->torn) {
		if (ftruncate(l->fd, (off_t)info->torn_offset) < 0 || fdatasync(l->fd) < 0)
			return -errno;
	}
	l->durable_size = info->torn ? info->torn_offset : len;
	l->records = info->records;
	return 0;
}

int joblog_append(struct joblog *l, const struct job_event *ev, uint64_t *ret_seq)
{
	size_t before = l->pending.len;
	int r;

	r = job_event_format(ev, &l->pending);
	if (r < 0) {
		l->pending.len = before;
		if (l->pending.buf)
			l->pending.buf[before] = 0;
		return r;
	}
	if (l->pending.len - before > JOBLOG_LINE_MAX) {
		l->pending.len = before;
		l->pending.buf[before] = 0;
		return -E2BIG;
	}
	l->appended_seq++;
	l->pending_records++;
	if (ret_seq)
		*ret_seq = l->appended_seq;
	return 0;
}

/* Sets up the asynchronous fdatasync once; a kernel or a seccomp filter
 * without it leaves the commit syncing in place. */
static void aio_init(struct joblog *l)
{
	l->aio_state = -1;
	l->aio_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->aio_eventfd < 0)
		return;
	l->aio = 0;
	if (syscall(SYS_io_setup, 1, &l->aio) < 0) {
		close(l->aio_eventfd);
		l->aio_eventfd = -1;
		return;
	}
	l->aio_state = 1;
}

/* Ends the batch in flight with the sync's result r. */
static int commit_end(struct joblog *l, int r)
{
	l->syncing = false;
	if (r < 0) {
		/* Cut back what may have reached the file, so that the retry writes
		 * the same bytes at the same place and the log never holds half a
		 * batch.  After a failed fdatasync the kernel may have dropped the
		 * pages, so a retry must write them again, not just sync.  The
		 * batch stays in inflight, ahead of what was appended meanwhile. */
		if (ftruncate(l->fd, (off_t)l->durable_size) < 0) {
			/* Nothing more to do: the next commit finds the file as it is. */
		}
		l->last_error = r;
		return r;
	}
	l->durable_size += l->inflight.len;
	l->synced_seq = l->inflight_seq;
	l->records += l->inflight_records;
	l->inflight_records = 0;
	l->last_error = 0;
	strbuf_reset(&l->inflight);
	return 0;
}

/* The result of the asynchronous sync in flight: -EAGAIN while it runs, or
 * (wait) blocks until it ends. */
static int aio_result(struct joblog *l, bool wait)
{
	struct io_event ev;
	struct timespec zero = {0, 0};
	long n;

	do
		n = syscall(SYS_io_getevents, l->aio, 1L, 1L, &ev, wait ? NULL : &zero);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return negative_errno();
	if (n == 0)
		return -EAGAIN;
	return ev.res < 0 ? (int)ev.res : 0;
}

static int commit_wait(struct joblog *l)
{
	uint64_t count;
	int r = aio_result(l, true);

	/* The completion is taken here: drain its eventfd too, so that the
	 * loop is not woken for it (EAGAIN when nothing was signalled). */
	if (read(l->aio_eventfd, &count, sizeof(count)) < 0) {
		/* Nothing to drain: fine. */
	}
	return commit_end(l, r);
}

int joblog_commit_start(struct joblog *l)
{
	int r;

	if (l->syncing)
		return -EBUSY;
	if (l->pending.len == 0 && l->inflight.len == 0)
		return 0;
	/* The batch: a failed one first, then everything pending. */
	if (l->inflight.len == 0)
		SWAP(l->pending, l->inflight);
	else if (l->pending.len) {
		r = strbuf_add(&l->inflight, l->pending.buf, l->pending.len);
		if (r < 0)
			return r; /* nothing changed: the next commit tries again */
		strbuf_reset(&l->pending);
	}
	l->inflight_seq = l->appended_seq;
	l->inflight_records += l->pending_records;
	l->pending_records = 0;
	l->syncing = true;

	r = write_all(l->fd, l->inflight.buf, l->inflight.len);
	if (r < 0)
		return commit_end(l, r);
	if (l->aio_state == 0)
		aio_init(l);
	if (l->aio_state > 0) {
		struct iocb *list[1] = {&l->iocb};

		l->iocb = (struct iocb){
			.aio_lio_opcode = IOCB_CMD_FDSYNC,
			.aio_fildes = (uint32_t)l->fd,
			.aio_flags = IOCB_FLAG_RESFD,
			.aio_resfd = (uint32_t)l->aio_eventfd,
		};
		if (syscall(SYS_io_submit, l->aio, 1L, list) == 1)
			return 1;
		/* A file system without it (EINVAL), a filter: sync here from
		 * now on.  The eventfd stays open until joblog_free(): a caller
		 * may watch it still, and its number must not go to another
		 * file meanwhile. */
		l->aio_state = -1;
		(void)syscall(SYS_io_destroy, l->aio);
	}
	return commit_end(l, fdatasync(l->fd) < 0 ? negative_errno() : 0);
}

int joblog_commit_fd(const struct joblog *l)
{
	return l->aio_eventfd;
}
bool joblog_syncing(const struct joblog *l)
{
	return l->syncing;
}

int joblog_commit_finish(struct joblog *l)
{
	uint64_t count;
	int r;

	if (!l->syncing)
		return -EAGAIN;
	if (read(l->aio_eventfd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return negative_errno();
	r = aio_result(l, false);
	if (r == -EAGAIN)
		return r;
	return commit_end(l, r);
}

int joblog_commit(struct joblog *l)
{
	int r;

	if (l->syncing) {
		r = commit_wait(l);
		if (r < 0)
			return r;
	}
	r = joblog_commit_start(l);
	if (r == 1)
		r = commit_wait(l);
	return r;
}

uint64_t joblog_appended_seq(const struct joblog *l)
{
	return l->appended_seq;
}
uint64_t joblog_records(const struct joblog *l)
{
	return l->records;
}

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
			/* Out to the disk as it goes, a few MB at a time: left for
			 * the final fsync, 100 MB of dirty data would go out in
			 * the journal commit that the daemon's own syncs of the
			 * log wait for meanwhile (ext4, data=ordered). */
			if (r >= 0 && written - flushed >= (uint64_t)8 * 1024 * 1024) {
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

/* What the child reports: its result, where its snapshot ends in the new
 * file, and how much of the old log after the snapshot point it copied
 * after it (one write, atomic on a pipe). */
struct compact_report {
	int64_t res;
	uint64_t snapshot_end;
	uint64_t copied;
};

static int copy_range(int from_fd, int fd, uint64_t from, uint64_t to);

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

static void *close_fd(void *arg)
{
	int *fd = arg;

	close(*fd);
	free(fd);
	return NULL;
}

/* Closes the old log, whose last reference this is: the file system frees
 * all its blocks in that close (a tenth of a second for 200 MB on ext4),
 * which a thread of its own does, not the caller's loop. */
static void close_in_background(int fd)
{
	pthread_attr_t attr;
	pthread_t t;
	int *arg = malloc(sizeof(*arg));
	bool started = false;

	if (arg && pthread_attr_init(&attr) == 0) {
		*arg = fd;
		started = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
			  pthread_create(&t, &attr, close_fd, arg) == 0;
		(void)pthread_attr_destroy(&attr);
	}
	if (!started) {
		free(arg);
		close(fd);
	}
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
		close_in_background(l->fd);
	else
		close(l->fd);
	l->fd = fd;
	l->durable_size = (uint64_t)st.st_size;
	l->records = records;
	return 0;
}

int joblog_compact_begin(struct joblog *l, const struct job_table *t)
{
	_cleanup_free_ char *tmp = path_join(l->dir, JOBLOG_COMPACT_FILE);
	_cleanup_close_ int fd = -1;
	int pipefd[2];
	struct stat st;
	pid_t pid, parent = getpid();
	int r;

	if (!tmp)
		return -ENOMEM;
	if (l->compact_pid || l->pending.len || l->inflight.len || l->syncing)
		return -EBUSY;
	if (fstat(l->fd, &st) < 0)
		return -errno;
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, st.st_mode & 07777);
	if (fd < 0)
		return -errno;
	if (!t->first) {
		/* Nothing to write: an empty log, here and now. */
		/* cppcheck-suppress unreadVariable */
		int nfd = TAKE_FD(fd);

		r = fsync(nfd) < 0 ? -errno : compact_take_over(l, nfd, 0, false);
		if (r < 0) {
			close(nfd);
			(void)unlink(tmp);
		}
		return r;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		r = -errno;
		(void)unlink(tmp);
		return r;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(pipefd[0]);
		close(pipefd[1]);
		(void)unlink(tmp);
		return r;
	}
	if (pid == 0)
		compact_child(fd, l->fd, pipefd[1], t, l->durable_size, parent);
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
	struct compact_report rep = {.res = -ECHILD};
	ssize_t n;
	int status, r;

	if (!l->compact_pid)
		return -EAGAIN;
	if (l->syncing)
		return -EBUSY;
	do
		n = read(l->compact_pipe, &rep, sizeof(rep));
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return -EAGAIN;
	if (n != (ssize_t)sizeof(rep))
		rep.res = -ECHILD; /* it died without a word: killed */
	/* It has written its result, so it is about to exit, if it has not. */
	while (waitpid(l->compact_pid, &status, 0) < 0 && errno == EINTR)
		;
	r = (int)rep.res;
	if (r >= 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
		r = -ECHILD;
	/* What was committed since the snapshot point follows the snapshot, in
	 * the same bytes: the child copied some (perhaps more than became
	 * durable: cut back), this the rest; then all of it is synced before
	 * the rename. */
	if (r >= 0) {
		uint64_t durable = l->durable_size - l->compact_from;

		if (rep.copied > durable) {
			if (ftruncate(l->compact_fd, (off_t)(rep.snapshot_end + durable)) < 0)
				r = -errno;
		} else
			r = copy_range(l->fd, l->compact_fd, l->compact_from + rep.copied, l->durable_size);
	}
	if (r >= 0 && fdatasync(l->compact_fd) < 0)
		r = -errno;
	l->compact_carried = l->records - l->compact_from_records;
	if (r >= 0)
		r = compact_take_over(l, l->compact_fd, l->compact_jobs + l->compact_carried, true);
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
	_cleanup_free_ char *tmp = path_join(l->dir, JOBLOG_COMPACT_FILE);
	struct stat st;
	int fd, r;

	/* In place, without a child: at start, before anything waits on the
	 * loop (and in the fuzzer, which runs it for every input). */
	if (!tmp)
		return -ENOMEM;
	if (l->compact_pid || l->pending.len || l->inflight.len || l->syncing)
		return -EBUSY;
	if (fstat(l->fd, &st) < 0)
		return -errno;
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, st.st_mode & 07777);
	if (fd < 0)
		return -errno;
	r = write_snapshot(fd, t, l->durable_size);
	if (r >= 0 && fsync(fd) < 0)
		r = -errno;
	if (r >= 0)
		r = compact_take_over(l, fd, t->n_jobs, false);
	if (r < 0) {
		close(fd);
		(void)unlink(tmp);
	}
	return r;
}
uint64_t joblog_synced_seq(const struct joblog *l)
{
	return l->synced_seq;
}
bool joblog_has_pending(const struct joblog *l)
{
	return l->pending.len > 0 || (!l->syncing && l->inflight.len > 0);
}
int joblog_last_error(const struct joblog *l)
{
	return l->last_error;
}

/* The file from start to its current end, read (not mapped: the daemon may
 * truncate or compact it meanwhile, and a mapping would fault past the new
 * end; a read just comes back shorter). */
static int read_from(int fd, uint64_t start, char **ret_buf, size_t *ret_len)
{
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	size_t want, len = 0;

	*ret_buf = NULL;
	*ret_len = 0;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size <= start)
		return 0;
	if ((uint64_t)st.st_size - start > SIZE_MAX - 1)
		return -EFBIG;
	want = (size_t)((uint64_t)st.st_size - start);
	buf = malloc(want + 1);
	if (!buf)
		return -ENOMEM;
	while (len < want) {
		ssize_t n = pread(fd, buf + len, want - len, (off_t)(start + len));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break; /* cut short since the fstat */
		len += (size_t)n;
	}
	*ret_buf = TAKE_PTR(buf);
	*ret_len = len;
	return 0;
}

int joblog_read(const char *dir, uint64_t start, joblog_event_cb cb, void *ud, struct joblog_info *info,
		uint64_t *ret_end)
{
	_cleanup_free_ char *path = path_join(dir, JOBLOG_FILE);
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, end = 0;
	int r;

	memset(info, 0, sizeof(*info));
	if (!path)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = read_from(fd, start, &buf, &len);
	if (r < 0)
		return r;
	if (len == 0) {
		*ret_end = start;
		return 0;
	}
	r = walk(buf, len, start, false, cb, ud, info, &end);
	if (r < 0)
		return r;
	*ret_end = start + end;
	return 0;
}

/* The records of the file f reads from its offset on. */
static int follow_chunk(struct joblog_follow *f, joblog_event_cb cb, struct joblog_info *info)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, end = 0;
	int r;

	r = read_from(f->fd, f->off, &buf, &len);
	if (r < 0 || len == 0)
		return r;
	r = walk(buf, len, f->off, false, cb, f, info, &end);
	if (r < 0)
		return r;
	f->off += end;
	return 0;
}

/* Hands on what is new: after a compaction, neither the new log's
 * snapshots nor the records it carries from the old one that were read
 * there already. */
static int follow_one(const struct job_event *ev, void *ud)
{
	struct joblog_follow *f = ud;
	uint64_t at = f->info->at;

	if (f->phase == 1) {
		if (ev->kind == JOB_EV_SNAPSHOT) {
			if (ev->compact_mark && ev->compacted_from <= f->prev_end)
				f->carried = f->prev_end - ev->compacted_from;
			return 0;
		}
		f->phase = 2;
		f->skip_to = at + f->carried;
	}
	if (f->phase == 2) {
		if (at < f->skip_to)
			return 0;
		f->phase = 0;
	}
	return f->cb(ev, f->ud);
}

static int follow_open(struct joblog_follow *f, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	f->fd = fd;
	f->dev = (uint64_t)st.st_dev;
	f->ino = (uint64_t)st.st_ino;
	f->off = 0;
	return 0;
}

int joblog_follow_read(struct joblog_follow *f, const char *dir, joblog_event_cb cb, void *ud, struct joblog_info *info)
{
	_cleanup_free_ char *path = path_join(dir, JOBLOG_FILE);
	struct stat st;
	int r;

	memset(info, 0, sizeof(*info));
	if (!path)
		return -ENOMEM;
	f->cb = cb;
	f->ud = ud;
	f->info = info;
	if (f->fd < 0) {
		r = follow_open(f, path);
		if (r < 0)
			return r;
		f->phase = 0;
	} else if (stat(path, &st) == 0 && ((uint64_t)st.st_ino != f->ino || (uint64_t)st.st_dev != f->dev)) {
		/* Compacted: the old log no longer grows; its rest first. */
		r = follow_chunk(f, follow_one, info);
		if (r < 0)
			return r;
		close(f->fd);
		f->fd = -1;
		f->prev_end = f->off;
		f->carried = 0;
		r = follow_open(f, path);
		if (r < 0)
			return r;
		f->phase = 1;
	}
	/* A file shorter than what was read was cut back after a failed
	 * commit: the retry writes the same records at the same place, so
	 * the reader waits for them there (read_from() finds nothing). */
	return follow_chunk(f, follow_one, info);
}

void joblog_follow_release(struct joblog_follow *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}
