/* SPDX-License-Identifier: MIT */
/*
 * What blinkhookctl's files share.  src/blinkhookctl.c owns the verb table,
 * option parsing, main(), the configuration and the job display helpers
 * (device labels, JSON output, spool look-ups); src/ctl-wait.c owns waiting
 * until jobs are final (wait, blink --wait).  Not a contract.
 */
#ifndef BLINKHOOK_CTL_H
#define BLINKHOOK_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blinkhook/config.h"
#include "blinkhook/job.h"
#include "blinkhook/util.h"

/* Exit codes of a wait, besides 0, 1 and 2: a job failed or expired; the
 * wait timed out. */
#define EXIT_JOB_FAILED 3
#define EXIT_TIMED_OUT 4

#define DEVICE_LABEL_MAX (JOB_NAME_MAX + 8)

/* Text from the log, the spool or the network for the terminal (util.h's
 * text_escape): the buffer lives until the end of the enclosing block, so
 * one printf can take several. */
#define ESC(s) text_escape((char[TEXT_ESCAPED_SIZE(JOB_TEXT_MAX)]){0}, TEXT_ESCAPED_SIZE(JOB_TEXT_MAX), (s))

/* src/blinkhookctl.c */
extern const char *config_path;
extern struct config cfg;
int apply_cb(const struct job_event *ev, void *ud);
void joblog_error(int r, const char *consequence);
const char *or_dash(const char *s);
const char *device_label(const struct job *j, char buf[static DEVICE_LABEL_MAX]);
void print_json(struct strbuf *sb);
int spool_job(const char *id, struct job *ret, char *name_buf);

/* src/ctl-wait.c */
int wait_jobs(char **ids, const struct job *queued, size_t n, uint64_t timeout, bool json);

#endif
