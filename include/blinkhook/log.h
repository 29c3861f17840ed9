/* SPDX-License-Identifier: MIT */
/*
 * log — the daemon's and the CLI's messages, on stderr.
 *
 * When stderr is connected to the journal ($JOURNAL_STREAM names it), each
 * line starts with a "<N>" syslog priority that journald turns into the
 * entry's priority; on a terminal or in a file, lines read "level: message".
 * Only the outer layers log, each failure once; modules below return errors.
 */
#ifndef BLINKHOOK_LOG_H
#define BLINKHOOK_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

#include "blinkhook/util.h"

void log_setup(const char *program);
void log_set_max_level(int level);
int log_get_max_level(void);
bool log_to_journal(void);

void log_full(int level, const char *fmt, ...) _printf_(2, 3);
void log_fullv(int level, const char *fmt, va_list ap) _printf_(2, 0);

#define log_err(...) log_full(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)

/* A job's story: like log_full, and when stderr is the journal the entry
 * also carries BLINKHOOK_JOB_ID, BLINKHOOK_SERIAL and BLINKHOOK_STATE, so
 * that `journalctl BLINKHOOK_JOB_ID=...` finds every line about one job.
 * It speaks journald's native protocol itself (one datagram, no library);
 * if the journal cannot take it, the line goes to stderr as usual. */
void log_job(int level, const char *job_id, const char *serial, const char *state, const char *fmt, ...) _printf_(5, 6);

/* Logs and returns -abs(err), for "return log_errno(LOG_ERR, r, ...)";
 * %m in fmt stands for err's text (either sign), errno is left as it was. */
int log_errno(int level, int err, const char *fmt, ...) _printf_(3, 4);

/*
 * A budget of log lines, for what a stranger can make us log (refused
 * callbacks, bad spool files): up to burst lines an interval, the rest only
 * counted, by kind, for one line when the interval ends.  Times are
 * CLOCK_MONOTONIC microseconds; the timer for the interval's end is the
 * owner's, which arms it for b->start + b->interval when budget_take() says
 * so and then calls budget_flush().
 */
#define LOG_BUDGET_KINDS 4
struct log_budget {
	uint64_t interval;
	unsigned burst;
	uint64_t start; /* of the interval */
	unsigned logged;
	uint64_t unlogged[LOG_BUDGET_KINDS];
};

/* Whether a line of this kind may be logged; if not, it is counted, and
 * *ret_arm says whether it is the interval's first one counted (arm the
 * timer).  An interval that ended is flushed first (budget_due()). */
bool budget_take(struct log_budget *b, unsigned kind, bool *ret_arm);
static inline bool budget_due(const struct log_budget *b, uint64_t now)
{
	return now >= b->start + b->interval;
}
/* Ends the interval at now: the counts go to ret_unlogged and the seconds
 * it lasted to *ret_secs, for the owner's line; returns their sum. */
uint64_t budget_flush(struct log_budget *b, uint64_t now, uint64_t ret_unlogged[static LOG_BUDGET_KINDS],
		      uint64_t *ret_secs);

#endif
