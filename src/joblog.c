/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/aio_abi.h>

#include "blinkhook/joblog.h"
#include "joblog-internal.h"

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

/* Replay's view of the log's first records: where its snapshots end and
 * where its records start in the stream (joblog.h, following). */
struct replay_ctx {
	joblog_event_cb cb;
	void *ud;
	struct joblog *l;
	const struct joblog_info *info;
	bool leading, first;
};

static int replay_one(const struct job_event *ev, void *ud)
{
	struct replay_ctx *c = ud;

	if (c->leading) {
		/* A position no log reaches (4 EiB of records) is taken for 0,
		 * so that the next compaction's still fits the record's int. */
		if (c->first && ev->kind == JOB_EV_SNAPSHOT && ev->compact_mark &&
		    ev->compacted_from <= (uint64_t)INT64_MAX / 2)
			c->l->stream_base = ev->compacted_from;
		c->first = false;
		if (ev->kind != JOB_EV_SNAPSHOT) {
			c->leading = false;
			c->l->snap_end = c->info->at;
		}
	}
	return c->cb(ev, c->ud);
}

int joblog_replay(struct joblog *l, joblog_event_cb cb, void *ud, struct joblog_info *info)
{
	struct replay_ctx ctx = {.cb = cb, .ud = ud, .l = l, .info = info, .leading = true, .first = true};
	void *map = NULL;
	size_t len = 0, end = 0;
	int r;

	memset(info, 0, sizeof(*info));
	l->stream_base = l->snap_end = 0;
	r = map_file(l->fd, 0, &map, &len);
	if (r < 0)
		return r;
	r = map ? walk(map, len, 0, true, replay_one, &ctx, info, &end) : 0;
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
	/* Nothing but snapshots: the records will start at the end. */
	if (ctx.leading)
		l->snap_end = l->durable_size;
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

/* Opens the log at path to read it, with a shared flock() (joblog.h): held
 * while the descriptor is, it keeps a compaction from freeing the blocks of
 * a log replaced meanwhile before they are read.  flock() asks for no write
 * access: a reader that may only read the file takes it too.  A file found
 * unlinked once locked was replaced between the open and the lock (and may
 * have been emptied): the new log is opened instead. */
static int open_shared(const char *path, struct stat *ret_st)
{
	for (int tries = 0;; tries++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC), r;

		if (fd < 0)
			return negative_errno();
		while ((r = flock(fd, LOCK_SH)) < 0 && errno == EINTR)
			;
		if (r < 0 || fstat(fd, ret_st) < 0) {
			r = negative_errno();
			close(fd);
			return r;
		}
		if (ret_st->st_nlink > 0 || tries >= 3)
			return fd;
		close(fd);
	}
}

int joblog_read(const char *dir, uint64_t start, joblog_event_cb cb, void *ud, struct joblog_info *info,
		uint64_t *ret_end)
{
	_cleanup_free_ char *path = path_join(dir, JOBLOG_FILE);
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, end = 0;
	struct stat st;
	int r;

	memset(info, 0, sizeof(*info));
	if (!path)
		return -ENOMEM;
	fd = open_shared(path, &st);
	if (fd < 0)
		return fd;
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

/* The records of the file f reads from its offset on; then the mark is
 * the stream position after the last of them. */
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
	if (!f->leading)
		f->mark = f->base + (f->off - f->snap_end);
	return 0;
}

/* Hands on what is new (joblog.h says how): a log's first record says where
 * its records start in the stream, and whether its snapshots are news. */
static int follow_one(const struct job_event *ev, void *ud)
{
	struct joblog_follow *f = ud;
	uint64_t at = f->info->at;

	if (f->first_record) {
		f->first_record = false;
		if (f->reopened && ev->kind == JOB_EV_SNAPSHOT && ev->compact_mark) {
			f->base = ev->compacted_from;
			/* Past the mark: what lay between was compacted away
			 * unread, and the snapshots are what it came to. */
			f->show_snapshots = f->base > f->mark;
			if (f->show_snapshots)
				f->info->compacted_unread = true;
		} else if (f->reopened && ev->kind != JOB_EV_SNAPSHOT) {
			/* A compaction that left no job: the writer goes on from
			 * the old log's end, which is where the mark is now. */
			f->base = f->mark;
			f->show_snapshots = true;
		} else {
			/* The first read, or a log that starts a new stream: all
			 * of it is news. */
			f->base = ev->kind == JOB_EV_SNAPSHOT && ev->compact_mark ? ev->compacted_from : 0;
			f->mark = f->base;
			f->show_snapshots = true;
		}
	}
	if (f->leading) {
		if (ev->kind == JOB_EV_SNAPSHOT)
			return f->show_snapshots ? f->cb(ev, f->ud) : 0;
		f->leading = false;
		f->snap_end = at;
	}
	/* Carried over from a log read before: handed on already. */
	if (f->base + (at - f->snap_end) < f->mark)
		return 0;
	return f->cb(ev, f->ud);
}

static int follow_open(struct joblog_follow *f, const char *path)
{
	struct stat st = {0};
	int fd = open_shared(path, &st);

	if (fd < 0)
		return fd;
	f->fd = fd;
	f->dev = (uint64_t)st.st_dev;
	f->ino = (uint64_t)st.st_ino;
	f->off = 0;
	f->leading = f->first_record = true;
	f->snap_end = 0;
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
	} else if (stat(path, &st) == 0 && ((uint64_t)st.st_ino != f->ino || (uint64_t)st.st_dev != f->dev)) {
		/* Compacted: the old log no longer grows; its rest first. */
		r = follow_chunk(f, follow_one, info);
		if (r < 0)
			return r;
		close(f->fd);
		f->fd = -1;
		r = follow_open(f, path);
		if (r < 0)
			return r;
		f->reopened = true;
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
