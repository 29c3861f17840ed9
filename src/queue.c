/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "blinkhook/json.h"
#include "blinkhook/queue.h"

struct queue {
	char *dir;
	char *new_path;
	int top_fd, tmp_fd, new_fd, rejected_fd;
	uid_t uid;        /* ours: the daemon's */
	gid_t gid;        /* new/'s: the spool's group, that producers write as */
	bool unsynced;    /* rejects moved since the last queue_reject_sync() */
	char reason[192]; /* a reason that names numbers (queue_read) */
};

struct parse_state {
	struct queue_request *req;
	const char *reason;
	bool has_duration;
	unsigned n_devices; /* how many of serial, name, mac */
};

static int request_member(const char *key, const struct json *val, void *ud)
{
	struct parse_state *st = ud;
	const char *s;
	int64_t n;

	if (strcmp(key, "serial") == 0) {
		s = json_string(val, NULL);
		if (!s || !serial_is_valid(s)) {
			st->reason = "serial is not a Meraki serial (Q2XX-XXXX-XXXX)";
			return -EINVAL;
		}
		(void)STR_COPY(st->req->serial, s);
		st->n_devices++;
	} else if (strcmp(key, "name") == 0) {
		s = json_string(val, NULL);
		if (!s || !job_name_valid(s)) {
			st->reason = "name is not 1 to 255 bytes of text without control characters";
			return -EINVAL;
		}
		(void)STR_COPY(st->req->name, s);
		st->n_devices++;
	} else if (strcmp(key, "mac") == 0) {
		s = json_string(val, NULL);
		if (!s || mac_normalize(s, st->req->mac) < 0) {
			st->reason =
				"mac is not a MAC address (aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or 12 hex digits)";
			return -EINVAL;
		}
		st->n_devices++;
	} else if (strcmp(key, "duration") == 0) {
		if (json_int64(val, &n) < 0 || n < JOB_DURATION_MIN || n > JOB_DURATION_MAX) {
			st->reason = "duration is not a whole number of seconds from 1 to 3600";
			return -EINVAL;
		}
		st->req->duration = (unsigned)n;
		st->has_duration = true;
	} else if (strcmp(key, "id") == 0) {
		s = json_string(val, NULL);
		if (!s || !job_id_is_valid(s)) {
			st->reason = "id is not 1 to 64 characters of A-Z a-z 0-9 _ -";
			return -EINVAL;
		}
		(void)STR_COPY(st->req->id, s);
	} else if (strcmp(key, "cancel") == 0) {
		s = json_string(val, NULL);
		if (!s || !job_id_is_valid(s)) {
			st->reason = "cancel is not a job id";
			return -EINVAL;
		}
		(void)STR_COPY(st->req->cancel, s);
	} else {
		st->reason = "unknown field";
		return -EINVAL;
	}
	return 0;
}

int queue_parse_request(const char *buf, size_t len, struct queue_request *ret, const char **ret_reason)
{
	_cleanup_json_ struct json *root = NULL;
	struct queue_request req = {0};
	struct parse_state st = {.req = &req};

	if (len > QUEUE_FILE_MAX) {
		*ret_reason = "file is larger than 4096 bytes";
		return -EINVAL;
	}
	if (json_parse(buf, len, 4, &root) < 0) {
		*ret_reason = "not valid JSON";
		return -EINVAL;
	}
	if (json_kind_of(root) != JSON_OBJECT) {
		*ret_reason = "not a JSON object";
		return -EINVAL;
	}
	if (json_object_each(root, request_member, &st) != 0) {
		*ret_reason = st.reason;
		return -EINVAL;
	}
	if (req.cancel[0]) {
		if (st.n_devices || st.has_duration || req.id[0]) {
			*ret_reason = "a cancel request has no other field";
			return -EINVAL;
		}
		*ret = req;
		return 0;
	}
	if (st.n_devices == 0) {
		*ret_reason = "serial is missing (or a name or mac instead)";
		return -EINVAL;
	}
	if (st.n_devices > 1) {
		*ret_reason = "names more than one device: give exactly one of serial, name and mac";
		return -EINVAL;
	}
	if (!st.has_duration)
		req.duration = JOB_DURATION_DEFAULT;
	*ret = req;
	return 0;
}

int queue_format_request(const struct queue_request *req, struct strbuf *sb)
{
	struct json_writer w;
	int r;

	json_writer_init(&w, sb);
	json_w_object_begin(&w);
	if (req->cancel[0])
		json_w_kstr(&w, "cancel", req->cancel);
	else {
		if (req->id[0])
			json_w_kstr(&w, "id", req->id);
		if (req->name[0])
			json_w_kstr(&w, "name", req->name);
		else if (req->mac[0])
			json_w_kstr(&w, "mac", req->mac);
		else
			json_w_kstr(&w, "serial", req->serial);
		json_w_kint(&w, "duration", req->duration);
	}
	json_w_object_end(&w);
	r = json_writer_finish(&w);
	return r < 0 ? r : strbuf_add(sb, "\n", 1);
}

/* Directory modes when the daemon makes the spool (systemd-tmpfiles makes it
 * with the same modes in a packaged install).  The Postfix maildrop model:
 * only tmp/ and new/ are writable by the queue group, sticky so that a member
 * cannot remove or rename another's file (the daemon owns them and still
 * can); the top directory and rejected/ are the daemon's, which the group may
 * read but not change. */
#define MODE_TOP 02751
#define MODE_DROP 03770
#define MODE_REJECTED 02750

/* Opens dirfd/name as a directory, never through a symbolic link (-ELOOP
 * for one: O_NOFOLLOW | O_DIRECTORY alone says ENOTDIR). */
static int open_dir_at(int dirfd, const char *name)
{
	struct stat st;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	if ((errno == ENOTDIR || errno == ELOOP) && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		return -ELOOP;
	return -errno;
}

/* Opens (making it first if missing) dirfd/sub. */
static int open_sub(int dirfd, const char *sub, unsigned mode)
{
	int fd;

	if (mkdirat(dirfd, sub, mode & 0777) < 0) {
		if (errno != EEXIST)
			return -errno;
		return open_dir_at(dirfd, sub);
	}
	fd = open_dir_at(dirfd, sub);
	/* One we made: its mode whatever the umask, set-group-id so that every
	 * file in it stays in the spool's group (without it, where that is not
	 * allowed: RestrictSUIDSGID=). */
	if (fd >= 0 && fchmod(fd, mode) < 0)
		(void)fchmod(fd, mode & ~(unsigned)(S_ISUID | S_ISGID)); /* the sticky bit stays */
	return fd;
}

void queue_free(struct queue *q)
{
	if (!q)
		return;
	if (q->top_fd >= 0)
		close(q->top_fd);
	if (q->tmp_fd >= 0)
		close(q->tmp_fd);
	if (q->new_fd >= 0)
		close(q->new_fd);
	if (q->rejected_fd >= 0)
		close(q->rejected_fd);
	free(q->new_path);
	free(q->dir);
	free(q);
}

int queue_open(const char *dir, struct queue **ret)
{
	struct queue *q = calloc(1, sizeof(*q));
	struct stat st;
	bool existed;
	int r;

	if (!q)
		return -ENOMEM;
	q->top_fd = q->tmp_fd = q->new_fd = q->rejected_fd = -1;
	q->uid = geteuid();
	q->dir = strdup(dir);
	q->new_path = path_join(dir, "new");
	if (!q->dir || !q->new_path) {
		r = -ENOMEM;
		goto fail;
	}
	existed = lstat(dir, &st) == 0;
	if (!existed && (r = mkdir_p(dir, MODE_TOP & 0777)) < 0)
		goto fail;
	if ((r = q->top_fd = open_dir_at(AT_FDCWD, dir)) < 0)
		goto fail;
	if (!existed && fchmod(q->top_fd, MODE_TOP) < 0)
		(void)fchmod(q->top_fd, MODE_TOP & ~(unsigned)(S_ISUID | S_ISGID));
	if ((r = q->tmp_fd = open_sub(q->top_fd, "tmp", MODE_DROP)) < 0 ||
	    (r = q->new_fd = open_sub(q->top_fd, "new", MODE_DROP)) < 0 ||
	    (r = q->rejected_fd = open_sub(q->top_fd, "rejected", MODE_REJECTED)) < 0)
		goto fail;
	if (fstat(q->new_fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	q->gid = st.st_gid;
	*ret = q;
	return 0;
fail:
	queue_free(q);
	return r;
}

const char *queue_lax_dir(const struct queue *q)
{
	struct stat st;

	if (fstat(q->top_fd, &st) == 0 && (st.st_uid != q->uid || (st.st_mode & 0022)))
		return "the spool's top directory";
	if (fstat(q->rejected_fd, &st) == 0 && (st.st_uid != q->uid || (st.st_mode & 0022)))
		return "rejected/";
	return NULL;
}

int queue_new_fd(const struct queue *q)
{
	return q->new_fd;
}
const char *queue_new_path(const struct queue *q)
{
	return q->new_path;
}

/* A directory stream over a copy of dirfd, from its start (the copy shares
 * the offset that an earlier walk left at the end); NULL with errno set. */
static DIR *dir_stream(int dirfd)
{
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	DIR *d;

	if (fd < 0)
		return NULL;
	d = fdopendir(fd);
	if (!d) {
		int saved = errno;

		close(fd);
		errno = saved;
		return NULL;
	}
	rewinddir(d);
	return d;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void queue_names_free(char **names)
{
	if (!names)
		return;
	for (char **p = names; *p; p++)
		free(*p);
	free(names);
}

int queue_list(struct queue *q, size_t max, char ***ret_names, size_t *ret_n)
{
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, alloc = 0;
	int r = 0;

	d = dir_stream(q->new_fd);
	if (!d)
		return negative_errno();
	/* Read every name, then keep the oldest max: a directory's order is not
	 * the order the files came in. */
	while ((errno = 0, de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue; /* hidden files are a producer's own business */
		if (n + 1 >= alloc) {
			size_t na = alloc ? alloc * 2 : 64;
			char **nn = realloc(names, na * sizeof(*nn));
			if (!nn) {
				r = -ENOMEM;
				break;
			}
			names = nn;
			alloc = na;
		}
		if (!(names[n] = strdup(de->d_name))) {
			r = -ENOMEM;
			break;
		}
		n++;
	}
	if (r == 0 && errno)
		r = -errno;
	closedir(d);
	if (r < 0) {
		if (names)
			names[n] = NULL;
		queue_names_free(names);
		return r;
	}
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = max; i < n; i++)
		free(names[i]);
	n = MIN(n, max);
	if (!names && !(names = calloc(1, sizeof(*names))))
		return -ENOMEM;
	names[n] = NULL;
	*ret_names = names;
	*ret_n = n;
	return 0;
}

/* An id for a request whose producer chose none: the same for the same file
 * across restarts (so a crash between logging the job and removing the file
 * does not queue it twice), and different for a later file of the same name. */
static void derive_id(const char *name, const struct stat *st, char id[static JOB_ID_MAX + 1])
{
	/* h1 starts from the seed ids were first derived with, not FNV's own
	 * offset: a file keeps its id across an upgrade. */
	uint64_t h1 = fnv1a64_add(UINT64_C(1469598103934665603), name, strlen(name)), h2 = UINT64_C(0x9e3779b97f4a7c15);
	uint64_t parts[] = {(uint64_t)st->st_ino, (uint64_t)st->st_size, (uint64_t)st->st_mtim.tv_sec,
			    (uint64_t)st->st_mtim.tv_nsec, (uint64_t)st->st_dev};

	for (const char *p = name; *p; p++)
		h2 = (h2 ^ (unsigned char)*p) * FNV1A64_PRIME + 7;
	for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
		h1 = (h1 ^ parts[i]) * FNV1A64_PRIME;
		h2 = (h2 ^ (parts[i] >> 7)) * FNV1A64_PRIME + 13;
	}
	snprintf(id, JOB_ID_MAX + 1, "q%016llx%016llx", (unsigned long long)h1, (unsigned long long)h2);
}

static const char *file_type(mode_t mode)
{
	return S_ISLNK(mode)                    ? "a symbolic link"
	       : S_ISDIR(mode)                  ? "a directory"
	       : S_ISFIFO(mode)                 ? "a FIFO"
	       : S_ISSOCK(mode)                 ? "a socket"
	       : S_ISCHR(mode) || S_ISBLK(mode) ? "a device"
						: "not a regular file";
}

/* Whether a file in new/ may be trusted as a request: a regular file with one
 * link (not a hard link to a file elsewhere), owned by us or in the spool's
 * group (as the set-group-id new/ makes every file a producer writes). */
static int check_file(struct queue *q, const struct stat *st, const char **ret_reason)
{
	if (S_ISLNK(st->st_mode)) {
		*ret_reason = "a symbolic link, not a file";
		return -EINVAL;
	}
	if (!S_ISREG(st->st_mode)) {
		snprintf(q->reason, sizeof(q->reason), "%s, not a regular file", file_type(st->st_mode));
		*ret_reason = q->reason;
		return -EINVAL;
	}
	if (st->st_nlink != 1) {
		snprintf(q->reason, sizeof(q->reason), "has %llu hard links; a request has exactly one",
			 (unsigned long long)st->st_nlink);
		*ret_reason = q->reason;
		return -EINVAL;
	}
	if (st->st_uid != q->uid && st->st_gid != q->gid) {
		snprintf(q->reason, sizeof(q->reason),
			 "owned by user %u and group %u: neither the daemon's user nor the spool's group (%u)",
			 (unsigned)st->st_uid, (unsigned)st->st_gid, (unsigned)q->gid);
		*ret_reason = q->reason;
		return -EINVAL;
	}
	if (st->st_size > QUEUE_FILE_MAX) {
		*ret_reason = "file is larger than 4096 bytes";
		return -EINVAL;
	}
	return 0;
}

bool queue_error_is_transient(int r)
{
	return r == -EMFILE || r == -ENFILE || r == -ENOMEM || r == -ENOBUFS || r == -EINTR || r == -EAGAIN;
}

/* An error opening or reading new/NAME (st: what lstat said): a reason to
 * reject the file for, unless it is gone or the error is ours and passes. */
static int read_failed(struct queue *q, int r, const struct stat *st, const char **ret_reason)
{
	if (r == -ENOENT || queue_error_is_transient(r))
		return r;
	if (r == -EACCES || r == -EPERM)
		snprintf(q->reason, sizeof(q->reason),
			 "the daemon may not read it (mode %04o, user %u, group %u): a request must be readable "
			 "by the spool's group",
			 (unsigned)(st->st_mode & 07777), (unsigned)st->st_uid, (unsigned)st->st_gid);
	else if (r == -ELOOP)
		snprintf(q->reason, sizeof(q->reason), "a symbolic link, not a file");
	else if (r == -ENXIO)
		snprintf(q->reason, sizeof(q->reason), "a socket or device, not a regular file");
	else {
		errno = -r;
		snprintf(q->reason, sizeof(q->reason), "cannot be read: %m");
	}
	*ret_reason = q->reason;
	return -EINVAL;
}

int queue_read(struct queue *q, const char *name, struct queue_request *ret, const char **ret_reason)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	struct queue_request req;
	struct stat lst, st;
	size_t len = 0;
	ssize_t n;
	int r;

	/* Before opening it: a device or FIFO is not even opened. */
	if (fstatat(q->new_fd, name, &lst, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	r = check_file(q, &lst, ret_reason);
	if (r < 0)
		return r;
	fd = openat(q->new_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return read_failed(q, -errno, &lst, ret_reason);
	if (fstat(fd, &st) < 0)
		return read_failed(q, -errno, &lst, ret_reason);
	/* And what was opened: it may have been swapped or linked since. */
	if (st.st_dev != lst.st_dev || st.st_ino != lst.st_ino) {
		*ret_reason = "replaced while it was being opened";
		return -EINVAL;
	}
	r = check_file(q, &st, ret_reason);
	if (r < 0)
		return r;
	buf = malloc(QUEUE_FILE_MAX + 1);
	if (!buf)
		return -ENOMEM;
	while (len <= QUEUE_FILE_MAX && (n = read(fd, buf + len, QUEUE_FILE_MAX + 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return read_failed(q, -errno, &st, ret_reason);
		}
		len += (size_t)n;
	}
	r = queue_parse_request(buf, len, &req, ret_reason);
	if (r < 0)
		return r;
	if (!req.id[0] && !req.cancel[0])
		derive_id(name, &st, req.id);
	req.mtime = (uint64_t)st.st_mtim.tv_sec * USEC_PER_SEC + (uint64_t)st.st_mtim.tv_nsec / 1000;
	*ret = req;
	return 0;
}

int queue_file_ino(struct queue *q, const char *name, uint64_t *ret_ino)
{
	struct stat st;

	if (fstatat(q->new_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	*ret_ino = (uint64_t)st.st_ino;
	return 0;
}

/* Writes rejected/NAME.reason: a new file, never through a link (a member
 * who could plant one there must not make us write elsewhere); a stale one
 * in our own rejected/ is replaced.  Not synced: queue_reject_sync() syncs
 * the directory once a batch, and the reason is advice, the file the thing. */
static int write_reason(struct queue *q, const char *name, const char *reason)
{
	_cleanup_free_ char *rname = NULL;
	_cleanup_close_ int fd = -1;
	struct strbuf sb = STRBUF_INIT;
	int r;

	if (asprintf(&rname, "%s.reason", name) < 0)
		return -ENOMEM;
	fd = openat(q->rejected_fd, rname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0 && errno == EEXIST && unlinkat(q->rejected_fd, rname, 0) == 0)
		fd = openat(q->rejected_fd, rname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return -errno;
	r = strbuf_addf(&sb, "%s\n", reason);
	if (r >= 0)
		r = write_all(fd, sb.buf, sb.len);
	strbuf_release(&sb);
	return r < 0 ? r : 0;
}

/* A directory is never moved into rejected/: a member's `mkdir new/x; chmod
 * 777 new/x` would become a directory there that anybody may write in.  An
 * empty one is removed (-ENOENT: nothing is left to reject), any other is
 * left where it is (-EISDIR; the caller skips it from now on). */
static int drop_dir(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0)
		return -ENOENT;
	return -EISDIR;
}

/* Moves fromfd/name into rejected/, under its own name or, where that is
 * taken, NAME.N (never over another reject), and writes its reason; the name
 * used goes to dst.  0 when both are done, 1 when the file moved but its
 * reason could not be written. */
static int move_aside(struct queue *q, int fromfd, const char *name, const char *reason,
		      char dst[static QUEUE_REJECTED_NAME_MAX])
{
	struct stat st;

	if (fstatat(fromfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return drop_dir(fromfd, name);
	for (unsigned i = 0;; i++) {
		/* Room for ".NN" and ".reason" within NAME_MAX. */
		if (i == 0 && strlen(name) <= 200)
			snprintf(dst, QUEUE_REJECTED_NAME_MAX, "%s", name);
		else
			snprintf(dst, QUEUE_REJECTED_NAME_MAX, "%.200s.%u", name, i);
		if (renameat2(fromfd, name, q->rejected_fd, dst, RENAME_NOREPLACE) == 0)
			break;
		if (errno == EINVAL) {
			/* A file system without RENAME_NOREPLACE: rejected/ is ours,
			 * so nobody else creates names in it meanwhile. */
			if (fstatat(q->rejected_fd, dst, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
				if (renameat(fromfd, name, q->rejected_fd, dst) == 0)
					break;
				return -errno;
			}
			errno = EEXIST;
		}
		if (errno != EEXIST)
			return -errno;
		if (i >= 99)
			return -EEXIST;
	}
	q->unsynced = true;
	/* A directory swapped in between the look and the move (its owner may
	 * replace a file of theirs): back where it came from, or gone if empty. */
	if (fstatat(q->rejected_fd, dst, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
		if (renameat2(q->rejected_fd, dst, fromfd, name, RENAME_NOREPLACE) < 0)
			(void)unlinkat(q->rejected_fd, dst, AT_REMOVEDIR);
		return -EISDIR;
	}
	return write_reason(q, dst, reason) < 0 ? 1 : 0;
}

int queue_reject_named(struct queue *q, const char *name, const char *reason,
		       char ret_as[static QUEUE_REJECTED_NAME_MAX])
{
	return move_aside(q, q->new_fd, name, reason, ret_as);
}

int queue_reject(struct queue *q, const char *name, const char *reason)
{
	char as[QUEUE_REJECTED_NAME_MAX];

	return queue_reject_named(q, name, reason, as);
}

int queue_reject_sync(struct queue *q)
{
	int r = 0, k;

	if (!q->unsynced)
		return 0;
	q->unsynced = false;
	if ((k = fsync_dirfd(q->rejected_fd)) < 0)
		r = k;
	if ((k = fsync_dirfd(q->new_fd)) < 0 && r == 0)
		r = k;
	if ((k = fsync_dirfd(q->tmp_fd)) < 0 && r == 0)
		r = k;
	return r;
}

int queue_remove(struct queue *q, const char *name)
{
	if (unlinkat(q->new_fd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int queue_sync(struct queue *q)
{
	return fsync_dirfd(q->new_fd);
}

int queue_sweep_tmp(struct queue *q, uint64_t now)
{
	char dst[QUEUE_REJECTED_NAME_MAX];
	DIR *d;
	struct dirent *de;
	int moved = 0;

	d = dir_stream(q->tmp_fd);
	if (!d)
		return negative_errno();
	while ((de = readdir(d))) {
		struct stat st;
		uint64_t mtime;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(q->tmp_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		mtime = (uint64_t)st.st_mtim.tv_sec * USEC_PER_SEC + (uint64_t)st.st_mtim.tv_nsec / 1000;
		if (mtime + QUEUE_TMP_STALE_USEC > now)
			continue; /* a producer may still be writing it */
		/* A producer writes regular files only; anything else (a
		 * directory, FIFO, link) is no request and never moved into
		 * rejected/: an empty directory goes, the rest stays. */
		if (S_ISDIR(st.st_mode))
			(void)drop_dir(q->tmp_fd, de->d_name);
		if (!S_ISREG(st.st_mode))
			continue;
		if (move_aside(q, q->tmp_fd, de->d_name,
			       "left in tmp/ for over a minute: its producer died while writing it", dst) >= 0)
			moved++;
	}
	closedir(d);
	(void)queue_reject_sync(q);
	return moved;
}

int queue_enqueue(const char *dir, struct queue_request *req)
{
	_cleanup_free_ char *tmp = NULL, *new = NULL, *name = NULL, *tmp_file = NULL, *new_file = NULL;
	_cleanup_close_ int fd = -1;
	struct strbuf sb = STRBUF_INIT;
	int r;

	char fresh[JOB_ID_MAX + 1];

	if ((r = job_id_new(fresh)) < 0)
		return r;
	if (!req->id[0] && !req->cancel[0])
		(void)STR_COPY(req->id, fresh);
	tmp = path_join(dir, "tmp");
	new = path_join(dir, "new");
	/* Named by time, so that the daemon takes files in the order they came. */
	if (!tmp || !new ||
	    asprintf(&name, "%s%s.json", req->cancel[0] ? fresh : req->id, req->cancel[0] ? "-cancel" : "") < 0)
		return -ENOMEM;
	if ((r = mkdir_p(tmp, 0770)) < 0 || (r = mkdir_p(new, 0770)) < 0)
		return r;
	tmp_file = path_join(tmp, name);
	new_file = path_join(new, name);
	if (!tmp_file || !new_file)
		return -ENOMEM;
	/* O_EXCL: a producer-chosen id that is already waiting is not overwritten. */
	fd = open(tmp_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return -errno;
	/* Readable by the spool's group whatever the producer's umask (077
	 * would leave a file the daemon cannot read). */
	r = fchmod(fd, 0640) < 0 ? -errno : 0;
	if (r >= 0)
		r = queue_format_request(req, &sb);
	if (r >= 0)
		r = write_all(fd, sb.buf, sb.len);
	strbuf_release(&sb);
	if (r >= 0 && fsync(fd) < 0)
		r = -errno;
	if (r >= 0 && access(new_file, F_OK) == 0)
		r = -EEXIST;
	if (r >= 0 && rename(tmp_file, new_file) < 0)
		r = -errno;
	if (r < 0) {
		(void)unlink(tmp_file);
		return r;
	}
	return fsync_dir(new);
}
