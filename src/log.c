/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>

#include "blinkhook/log.h"

/* The longest message before escaping; longer ones are cut. */
#define LOG_LINE_MAX 2048

static const char *program = "blinkhook";
static int max_level = LOG_INFO;
static bool journal;

void log_setup(const char *name)
{
	const char *e = getenv("JOURNAL_STREAM");
	const char *lvl = getenv("BLINKHOOK_LOG_LEVEL");
	unsigned long long dev, ino;
	char *end;
	struct stat st;

	program = name;
	/* JOURNAL_STREAM is inherited by children whose stderr went elsewhere:
	 * believe it only when it names our stderr. */
	if (e && (errno = 0, dev = strtoull(e, &end, 10), errno == 0 && end != e && *end == ':') &&
	    (e = end + 1, ino = strtoull(e, &end, 10), errno == 0 && end != e && *end == '\0') &&
	    fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino)
		journal = true;
	if (lvl && strcmp(lvl, "debug") == 0)
		max_level = LOG_DEBUG;
	setvbuf(stderr, NULL, _IOLBF, 0);
}

void log_set_max_level(int level)
{
	max_level = level;
}
int log_get_max_level(void)
{
	return max_level;
}
bool log_to_journal(void)
{
	return journal;
}

static const char *level_name(int level)
{
	switch (level) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
		return "notice";
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

void log_fullv(int level, const char *fmt, va_list ap)
{
	char buf[LOG_LINE_MAX], text[TEXT_ESCAPED_SIZE(LOG_LINE_MAX)];
	int saved = errno;

	if (level > max_level)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One message, one line, nothing for a terminal to obey: a newline
	 * from a peer must not forge a line, nor an ESC sequence in a file
	 * name or an API's error text retitle or clear the reader's screen. */
	text_escape(text, sizeof(text), buf);
	if (journal)
		fprintf(stderr, "<%d>%s\n", level, text);
	else
		fprintf(stderr, "%s: %s: %s\n", program, level_name(level), text);
	errno = saved;
}

void log_full(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_fullv(level, fmt, ap);
	va_end(ap);
}

int log_errno(int level, int err, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	/* %m in fmt names err, not whatever errno held. */
	errno = err < 0 ? -err : err;
	va_start(ap, fmt);
	log_fullv(level, fmt, ap);
	va_end(ap);
	errno = saved;
	return err < 0 ? err : -err;
}

/* journald's socket for native entries: KEY=value lines in one datagram. */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

static int journal_fd = -1;

static bool journal_send(int level, const char *job_id, const char *serial, const char *state, const char *msg)
{
	static const struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = JOURNAL_SOCKET};
	char head[64];
	struct iovec iov[12];
	struct msghdr mh = {.msg_name = (void *)&sa, .msg_namelen = sizeof(sa), .msg_iov = iov};
	size_t n = 0;

	if (journal_fd < 0)
		journal_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (journal_fd < 0)
		return false;
#define ADD(s)                                 \
	do {                                   \
		iov[n].iov_base = (void *)(s); \
		iov[n++].iov_len = strlen(s);  \
	} while (0)
	snprintf(head, sizeof(head), "PRIORITY=%d\nSYSLOG_IDENTIFIER=%s\n", level, program);
	ADD(head);
	ADD("MESSAGE=");
	ADD(msg);
	ADD("\nBLINKHOOK_JOB_ID=");
	ADD(job_id);
	if (serial) {
		ADD("\nBLINKHOOK_SERIAL=");
		ADD(serial);
	}
	if (state) {
		ADD("\nBLINKHOOK_STATE=");
		ADD(state);
	}
	ADD("\n");
#undef ADD
	mh.msg_iovlen = n;
	return sendmsg(journal_fd, &mh, MSG_NOSIGNAL) >= 0;
}

void log_job(int level, const char *job_id, const char *serial, const char *state, const char *fmt, ...)
{
	char buf[LOG_LINE_MAX], text[TEXT_ESCAPED_SIZE(LOG_LINE_MAX)];
	char id[TEXT_ESCAPED_SIZE(JOB_ID_MAX)], ser[TEXT_ESCAPED_SIZE(16)];
	va_list ap;
	int saved = errno;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* Each field of a native entry ends at a newline: escaped like a
	 * line, the ids too, though they are checked for their shape before
	 * they get here. */
	text_escape(text, sizeof(text), buf);
	text_escape(id, sizeof(id), job_id);
	text_escape(ser, sizeof(ser), serial);
	if (!journal || !journal_send(level, id, serial ? ser : NULL, state, text))
		log_full(level, "%s", buf);
	errno = saved;
}

bool budget_take(struct log_budget *b, unsigned kind, bool *ret_arm)
{
	uint64_t n = 0;

	*ret_arm = false;
	if (b->logged < b->burst) {
		b->logged++;
		return true;
	}
	for (unsigned i = 0; i < LOG_BUDGET_KINDS; i++)
		n += b->unlogged[i];
	*ret_arm = n == 0;
	b->unlogged[kind < LOG_BUDGET_KINDS ? kind : 0]++;
	return false;
}

uint64_t budget_flush(struct log_budget *b, uint64_t now, uint64_t ret_unlogged[static LOG_BUDGET_KINDS],
		      uint64_t *ret_secs)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < LOG_BUDGET_KINDS; i++) {
		ret_unlogged[i] = b->unlogged[i];
		n += b->unlogged[i];
		b->unlogged[i] = 0;
	}
	*ret_secs = now > b->start ? (now - b->start) / USEC_PER_SEC : 0;
	b->logged = 0;
	b->start = now;
	return n;
}
