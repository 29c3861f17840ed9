/* SPDX-License-Identifier: MIT */
/*
 * util — small helpers with no state of their own: time spans and sizes as
 * the config writes them, safe number parsing, clocks, RFC 3339 stamps, file
 * helpers that make writes durable, and the shapes of serials and job ids.
 *
 * Every function returns >= 0 on success and -errno on failure; out-parameters
 * are named ret_* and are written only on success.  Nothing here logs.
 */
#ifndef BLINKHOOK_UTIL_H
#define BLINKHOOK_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MIN (UINT64_C(60) * USEC_PER_SEC)
#define USEC_PER_HOUR (UINT64_C(60) * USEC_PER_MIN)
#define USEC_PER_DAY (UINT64_C(24) * USEC_PER_HOUR)

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define SWAP(a, b)                       \
	do {                             \
		__typeof__(a) _t_ = (a); \
		(a) = (b);               \
		(b) = _t_;               \
	} while (0)

/* Ownership helpers in the systemd manner: a variable declared with _cleanup_
 * is released when it goes out of scope; TAKE_PTR hands it on. */
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

static inline void freep(void *p)
{
	free(*(void **)p);
}
static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define TAKE_PTR(p)                      \
	({                               \
		__typeof__(p) _p_ = (p); \
		(p) = NULL;              \
		_p_;                     \
	})
#define TAKE_FD(fd)              \
	({                       \
		int _fd_ = (fd); \
		(fd) = -1;       \
		_fd_;            \
	})

/* -errno for a call that failed, never 0: a caller's "r < 0" must hold even
 * if a library forgot to set errno. */
static inline int negative_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

/* Copies the string src into dst of size bytes, always terminated; -E2BIG
 * (dst holding what fitted) when src is longer.  STR_COPY for arrays. */
int str_copy(char *dst, size_t size, const char *src);
#define STR_COPY(dst, src) str_copy((dst), sizeof(dst), (src))
/* Whether s holds a C0 control character or DEL. */
bool str_has_control(const char *s);
/* The value of the hexadecimal digit c (either case), -1 when it is none. */
int hex_value(char c);

/* FNV-1a, 64 bits: the one hash of the in-memory tables (job ids, serials,
 * peers' addresses).  fnv1a64_add() goes on from h over more bytes. */
#define FNV1A64_OFFSET UINT64_C(14695981039346656037)
#define FNV1A64_PRIME UINT64_C(1099511628211)
uint64_t fnv1a64_add(uint64_t h, const void *data, size_t len);
static inline uint64_t fnv1a64(const void *data, size_t len)
{
	return fnv1a64_add(FNV1A64_OFFSET, data, len);
}
uint64_t fnv1a64_str(const char *s);

/* "10s", "5min", "1.5h", "30d", "250ms", "2min 30s"; a bare number is seconds.
 * -EINVAL on anything else, -ERANGE past UINT64_MAX microseconds. */
int parse_timespan(const char *s, uint64_t *ret_usec);
/* "64KiB", "1MiB", "512" (bytes), "1.5KiB". -EINVAL / -ERANGE likewise. */
int parse_size(const char *s, uint64_t *ret_bytes);
/* A whole decimal number with no sign, spaces or trailing text. */
int parse_uint64(const char *s, uint64_t *ret);
/* Formats a span as the shortest exact form ("10s", "5min", "1500ms"). */
void format_timespan(char *buf, size_t len, uint64_t usec);

uint64_t now_realtime_usec(void);
uint64_t now_monotonic_usec(void);

/* RFC 3339 UTC with seconds precision: "2026-11-27T11:07:28Z" (21 bytes with
 * the NUL). */
#define RFC3339_MAX 32
void format_rfc3339(char buf[static RFC3339_MAX], uint64_t realtime_usec);
int parse_rfc3339(const char *s, uint64_t *ret_usec);
/* The days of a month (1..12) of the proleptic Gregorian calendar. */
int days_in_month(int year, int month);

/* A Meraki serial: three groups of four ASCII letters or digits joined by '-'. */
bool serial_is_valid(const char *s);
/* A job id: 1 to 64 characters of [A-Za-z0-9_-]. */
#define JOB_ID_MAX 64
bool job_id_is_valid(const char *s);
/* A new, unique, roughly time-ordered job id (24 characters). */
int job_id_new(char buf[static JOB_ID_MAX + 1]);

/* The length of the valid UTF-8 sequence at p: 1 for an ASCII byte (NUL
 * too), 2 to 4 for a sequence RFC 3629 allows (no overlong form, no
 * surrogate, nothing past U+10FFFF), 0 when there is none.  A byte is read
 * only when those before it continue the sequence, so a NUL or any
 * non-continuation byte ends the reading.  Inline: json.c's writer calls it
 * for every byte of a string. */
static inline size_t utf8_len(const unsigned char *p)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}
/* The length of s's first at most max bytes (of len), not cutting a UTF-8
 * character in two (such text may end up in the job log, whose reader
 * refuses invalid UTF-8). */
size_t utf8_prefix(const char *s, size_t len, size_t max);

/* Text from outside (a file name, an id, an error text from the API or a
 * callback) made safe for a terminal or a log line: the C0 controls (newline
 * and ESC too), DEL, the C1 controls as UTF-8 (U+0080..U+009F) and every byte
 * that is not part of valid UTF-8 (a raw 0x9b is CSI to some terminals)
 * become "\xNN"; valid UTF-8 such as "Zürich" and the backslash stay as they
 * are, so it reads as written but cannot be decoded back.  Writes at most
 * size bytes into dst, always NUL-terminated (size > 0), cut before a whole
 * escape or character that does not fit; returns dst.  NULL reads as "". */
#define TEXT_ESCAPED_SIZE(n) (4 * (n) + 1) /* room for n bytes, all escaped */
const char *text_escape(char *dst, size_t size, const char *src);

/* Memory for keys (the API key, the callback secret, secret.c's key
 * states): pages of their own, marked MADV_DONTDUMP so that a core dump
 * leaves them out, and MADV_DONTFORK; secret_free() wipes and unmaps them
 * (NULL is fine).  NULL when out of memory. */
void *secret_alloc(size_t len);
void secret_free(void *p);
static inline void secret_freep(void *p)
{
	secret_free(*(void **)p);
}
/* Wipes len bytes of memory, a write the compiler may not skip: the one
 * wipe, which secret_free() does too. */
void secret_wipe(void *p, size_t len);
char *secret_strdup(const char *s);

/* Fills buf from the kernel's CSPRNG. */
int random_bytes(void *buf, size_t len);

/* write(2) until done, retrying EINTR. */
int write_all(int fd, const void *buf, size_t len);
/* Reads a whole file of at most max bytes into a NUL-terminated buffer;
 * -EFBIG when it is larger. */
int read_file_capped(int dirfd, const char *path, size_t max, char **ret_buf, size_t *ret_len);
/* At a program's exit: whether what it printed reached stdout (a full disk
 * or a closed pipe shows only when the buffer is flushed).  Output that is
 * lost turns exit code r into 1, with a message naming program, unless
 * already_failed (the program said why it failed already). */
int close_stdout(const char *program, int r, bool already_failed);
/* fsync(2) of a directory, so that a rename or unlink in it is durable. */
int fsync_dir(const char *path);
int fsync_dirfd(int dirfd);
/* mkdir -p with the given mode for directories it creates. */
int mkdir_p(const char *path, unsigned mode);
/* Writes data to dir/name atomically: a temporary file, fsync, rename,
 * fsync of the directory. */
int write_file_atomic(const char *dir, const char *name, const void *data, size_t len, unsigned mode);

/* Path joining into a new string; NULL when out of memory. */
char *path_join(const char *a, const char *b);

/* A growable byte buffer, always NUL-terminated. */
struct strbuf {
	char *buf;
	size_t len;
	size_t alloc;
};
#define STRBUF_INIT        \
	{                  \
		NULL, 0, 0 \
	}
int strbuf_grow(struct strbuf *sb, size_t extra);
int strbuf_add(struct strbuf *sb, const void *data, size_t len);
int strbuf_addstr(struct strbuf *sb, const char *s);
int strbuf_addf(struct strbuf *sb, const char *fmt, ...) _printf_(2, 3);
void strbuf_reset(struct strbuf *sb);
void strbuf_release(struct strbuf *sb);
/* Removes the first n bytes. */
void strbuf_consume(struct strbuf *sb, size_t n);

#endif
