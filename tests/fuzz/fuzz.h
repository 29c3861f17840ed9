/* SPDX-License-Identifier: MIT */
/*
 * What the fuzz targets share: a check that names the broken invariant and
 * aborts (libFuzzer then keeps the input as a crash), one scratch directory
 * per process, the comparison of two job events, and a UTF-8 check for text
 * bound for the job log.
 */
#ifndef BLINKHOOK_FUZZ_H
#define BLINKHOOK_FUZZ_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "blinkhook/job.h"
#include "blinkhook/netaddr.h"
#include "blinkhook/util.h"

#define FUZZ_CHECK(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant broken: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Some instant in 2026, whole seconds: the job log keeps no fraction. */
#define FUZZ_NOW UINT64_C(1795000000000000)

static char fuzz_dir_path[256];

static inline void fuzz_dir_remove(void)
{
	DIR *d = opendir(fuzz_dir_path);
	struct dirent *e;

	if (!d)
		return;
	/* The targets make plain files only. */
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			(void)unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	(void)rmdir(fuzz_dir_path);
}

/* The process's scratch directory, made at the first call and removed at
 * exit (a crash leaves it behind, beside the input that caused it). */
static inline const char *fuzz_dir(void)
{
	const char *tmp;

	if (fuzz_dir_path[0])
		return fuzz_dir_path;
	tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%s/blinkhook-fuzz.XXXXXX", tmp);
	FUZZ_CHECK(mkdtemp(fuzz_dir_path), "mkdtemp(\"%s\"): %s", fuzz_dir_path, strerror(errno));
	atexit(fuzz_dir_remove);
	return fuzz_dir_path;
}

/* Replaces path's contents with data. */
static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	FUZZ_CHECK(fd >= 0, "open(\"%s\"): %s", path, strerror(errno));
	FUZZ_CHECK(write_all(fd, data, size) >= 0, "write(\"%s\") failed", path);
	close(fd);
}

/* A NUL-terminated copy of data (cut at its first NUL, if any). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	FUZZ_CHECK(s, "out of memory");
	memcpy(s, data, size);
	s[size] = 0;
	return s;
}

static inline bool fuzz_str_equal(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static inline const char *fuzz_str(const char *s) { return s ? s : "(null)"; }

/* Whether s is valid UTF-8 with no overlong forms, surrogates or code points
 * past U+10FFFF: what the job log's reader accepts. */
static inline bool fuzz_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned c = *p, n, cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

/* Aborts unless a and b are the same event; the timestamps are compared to
 * the second, the precision of the job log. */
static inline void fuzz_check_same_event(const struct job_event *a, const struct job_event *b)
{
	FUZZ_CHECK(a->ts / USEC_PER_SEC == b->ts / USEC_PER_SEC, "ts %llu != %llu",
		   (unsigned long long)a->ts, (unsigned long long)b->ts);
	FUZZ_CHECK(fuzz_str_equal(a->id, b->id), "id \"%s\" != \"%s\"", fuzz_str(a->id), fuzz_str(b->id));
	FUZZ_CHECK(a->kind == b->kind, "kind %d != %d", (int)a->kind, (int)b->kind);
	if (a->kind == JOB_EV_FINAL || a->kind == JOB_EV_SNAPSHOT)
		FUZZ_CHECK(a->state == b->state, "state %d != %d", (int)a->state, (int)b->state);
	if (a->kind == JOB_EV_SNAPSHOT)
		FUZZ_CHECK(a->created / USEC_PER_SEC == b->created / USEC_PER_SEC, "created %llu != %llu",
			   (unsigned long long)a->created, (unsigned long long)b->created);
	FUZZ_CHECK(fuzz_str_equal(a->serial, b->serial), "serial \"%s\" != \"%s\"", fuzz_str(a->serial),
		   fuzz_str(b->serial));
	FUZZ_CHECK(fuzz_str_equal(a->name, b->name), "name \"%s\" != \"%s\"", fuzz_str(a->name), fuzz_str(b->name));
	FUZZ_CHECK(fuzz_str_equal(a->mac, b->mac), "mac \"%s\" != \"%s\"", fuzz_str(a->mac), fuzz_str(b->mac));
	FUZZ_CHECK(a->duration == b->duration, "duration %u != %u", a->duration, b->duration);
	FUZZ_CHECK(fuzz_str_equal(a->leds_blink_id, b->leds_blink_id), "leds_blink_id \"%s\" != \"%s\"",
		   fuzz_str(a->leds_blink_id), fuzz_str(b->leds_blink_id));
	FUZZ_CHECK(fuzz_str_equal(a->meraki_status, b->meraki_status), "meraki_status \"%s\" != \"%s\"",
		   fuzz_str(a->meraki_status), fuzz_str(b->meraki_status));
	FUZZ_CHECK(fuzz_str_equal(a->error, b->error), "error \"%s\" != \"%s\"", fuzz_str(a->error),
		   fuzz_str(b->error));
	FUZZ_CHECK(fuzz_str_equal(a->source, b->source), "source \"%s\" != \"%s\"", fuzz_str(a->source),
		   fuzz_str(b->source));
	FUZZ_CHECK(a->attempts == b->attempts, "attempts %u != %u", a->attempts, b->attempts);
}

/* Formats ev as a job-log line and reads it back: the line must be one line,
 * must parse, and must give the same event.  This is what a restart does
 * with every record the daemon writes; and it reads each without json-c,
 * unless the record is longer than the fast reader takes. */
static inline void fuzz_check_log_line(const struct job_event *ev)
{
	struct job_event_store store = JOB_EVENT_STORE_INIT;
	struct strbuf sb = STRBUF_INIT;
	struct job_event back;
	int r;

	FUZZ_CHECK(job_event_format(ev, &sb) >= 0, "job_event_format failed");
	FUZZ_CHECK(sb.len > 0 && sb.buf[sb.len - 1] == '\n' && memchr(sb.buf, '\n', sb.len) == sb.buf + sb.len - 1,
		   "the record is not one line: %s", sb.buf);
	r = job_event_parse(sb.buf, sb.len - 1, &back, &store);
	FUZZ_CHECK(r == 0, "job_event_parse of its own record: %d: %s", r, sb.buf);
	fuzz_check_same_event(ev, &back);
	if (sb.len - 1 <= JOB_EVENT_TEXT_MAX) {
		r = job_event_parse_flat(sb.buf, sb.len - 1, &back, &store);
		FUZZ_CHECK(r == 0, "job_event_parse_flat of its own record: %d: %s", r, sb.buf);
		fuzz_check_same_event(ev, &back);
	}
	job_event_store_release(&store);
	strbuf_release(&sb);
}

/* fuzz_make_peer PICK: the peer an input's first byte picks for the
 * netaddr fuzzers (IPv4, IPv6, IPv4-mapped, a unix socket's, none). */
static inline void fuzz_make_peer(unsigned pick, struct sockaddr_storage *ss, const struct sockaddr **ret)
{
	static const char *const v4[] = {"127.0.0.1", "10.1.2.3", "203.0.113.9"};
	static const char *const v6[] = {"::1", "fd00::5", "2001:db8::9"};

	memset(ss, 0, sizeof(*ss));
	switch (pick % 5) {
	case 0: {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		FUZZ_CHECK(inet_pton(AF_INET, v4[(pick / 5) % 3], &s4->sin_addr) == 1, "v4");
		break;
	}
	case 1:
	case 2: {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		char mapped[64];

		s6->sin6_family = AF_INET6;
		snprintf(mapped, sizeof(mapped), "::ffff:%s", v4[(pick / 5) % 3]);
		FUZZ_CHECK(inet_pton(AF_INET6, pick % 5 == 1 ? v6[(pick / 5) % 3] : mapped, &s6->sin6_addr) == 1, "v6");
		break;
	}
	case 3:
		ss->ss_family = AF_UNIX;
		break;
	default:
		*ret = NULL;
		return;
	}
	*ret = (const struct sockaddr *)ss;
}

/* fuzz_trusted PICK LIST: the trusted prefixes an input's first byte picks
 * for the netaddr fuzzers (its high bits; loopback always) into LIST, which
 * holds FUZZ_PREFIXES; returns how many. */
#define FUZZ_PREFIXES 6
static inline size_t fuzz_trusted(unsigned pick, struct cidr *list)
{
	static const char *const prefixes[FUZZ_PREFIXES] = {"127.0.0.1", "::1",  "10.0.0.0/8",
							    "fd00::/8",  "unix", "0.0.0.0/0"};
	size_t n = 0;

	for (size_t i = 0; i < FUZZ_PREFIXES; i++)
		if ((pick >> 2) & (1u << i) || i < 2)
			FUZZ_CHECK(netaddr_parse_cidr(prefixes[i], &list[n++]) == 0, "%s", prefixes[i]);
	return n;
}

#endif
