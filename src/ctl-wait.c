/* SPDX-License-Identifier: MIT */
/*
 * ctl-wait.c: blinkhookctl's waiting until jobs are final (blink --wait,
 * wait): the live display, the inotify watch of the job log and the spool,
 * and the look-up of requests the daemon rejected.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blinkhook/config.h"
#include "blinkhook/job.h"
#include "blinkhook/joblog.h"
#include "blinkhook/json.h"
#include "blinkhook/queue.h"
#include "ctl.h"

/* ---- waiting until jobs are final (blink --wait, wait) ---- */

/* The fallback tick: the live display's elapsed times, and a look at the
 * spool for a request the daemon rejected (which writes nothing to the
 * log).  inotify wakes the wait for everything else. */
#define WAIT_TICK_MSEC 1000

struct wait_item {
	char id[JOB_ID_MAX + 1];
	/* The job as last found outside the table (in the spool, rejected, or
	 * as the blink queued it), and whether it holds one. */
	struct job local;
	bool have_local;
	char reason[256];            /* a rejected request's reason: local.error */
	char name[JOB_NAME_MAX + 1]; /* local.name's */
	const struct job *cur;
	bool spooled; /* last found in the spool's new/, not taken yet */
	/* What the plain display last printed of it. */
	bool printed;
	enum job_state shown_state;
	char shown_meraki[32];
};

struct waiter {
	struct job_table t;
	struct joblog_follow f;
	struct wait_item *items;
	size_t n;
	bool live;            /* redrawn in place on a terminal */
	size_t drawn;         /* lines of the live display on the screen */
	unsigned cols;        /* the terminal's width */
	struct strbuf screen; /* what was drawn last */
	bool warned;
	bool warned_spool; /* said that requests stay in the spool */
};

/* How long a request may wait in the spool before the wait asks whether
 * the daemon runs: it takes one within a second when it does. */
#define WAIT_SPOOL_WARN_USEC (10 * USEC_PER_SEC)

/* A request the daemon moved to rejected/: it never becomes a job. */
static int rejected_job(const char *id, struct wait_item *it)
{
	_cleanup_free_ char *path = NULL, *buf = NULL;
	uint64_t since = it->have_local ? it->local.created_at : 0;
	struct stat st;
	size_t len;

	/* A reason older than the request seen (its whole second: the reason
	 * may share it) was left by an earlier request with the same id. */
	since -= since % USEC_PER_SEC;
	if (asprintf(&path, "%s/rejected/%s.json.reason", cfg.queue_dir, id) < 0) {
		path = NULL;
		return -ENOMEM;
	}
	if (stat(path, &st) < 0 ||
	    (uint64_t)st.st_mtim.tv_sec * USEC_PER_SEC + (uint64_t)st.st_mtim.tv_nsec / 1000 < since)
		return -ENOENT;
	if (read_file_capped(AT_FDCWD, path, QUEUE_FILE_MAX, &buf, &len) < 0)
		return -ENOENT;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	snprintf(it->reason, sizeof(it->reason), "rejected by the daemon: %.*s", (int)len, buf);
	if (!it->have_local) {
		memset(&it->local, 0, sizeof(it->local));
		snprintf(it->local.id, sizeof(it->local.id), "%s", id);
		it->local.created_at = now_realtime_usec();
	}
	it->local.state = JOB_FAILED;
	it->local.error = it->reason;
	it->local.updated_at = now_realtime_usec();
	it->have_local = true;
	return 0;
}

/* Finds each job where it is now: the log, else the spool, else rejected/,
 * else where it was last seen (a request the daemon took between the read
 * of the log and the look into the spool: the next read finds it). */
static void wait_resolve(struct waiter *w)
{
	for (size_t i = 0; i < w->n; i++) {
		struct wait_item *it = &w->items[i];
		struct job spooled;

		it->spooled = false;
		it->cur = job_table_find(&w->t, it->id);
		if (it->cur)
			continue;
		if (spool_job(it->id, &spooled, it->name) >= 0) {
			it->local = spooled;
			it->have_local = true;
			it->spooled = true;
		} else if (rejected_job(it->id, it) < 0 && !it->have_local)
			continue;
		it->cur = &it->local;
	}
}

/* Reads what the log gained since the last call. */
static int wait_refresh(struct waiter *w)
{
	struct joblog_info info;
	int r;

	r = joblog_follow_read(&w->f, cfg.state_dir, apply_cb, &w->t, &info);
	if (r < 0 && r != -ENOENT) {
		joblog_error(r, NULL);
		return r;
	}
	if (info.damaged && !w->warned) {
		fprintf(stderr, "blinkhookctl: warning: %s/%s: skipped %llu damaged line(s)\n", cfg.state_dir,
			JOBLOG_FILE, (unsigned long long)info.damaged);
		w->warned = true;
	}
	wait_resolve(w);
	return 0;
}

static void format_elapsed(char *buf, size_t size, uint64_t usec)
{
	unsigned long long s = usec / USEC_PER_SEC;

	if (s < 60)
		snprintf(buf, size, "%llus", s);
	else if (s < 3600)
		snprintf(buf, size, "%llum%02llus", s / 60, s % 60);
	else
		snprintf(buf, size, "%lluh%02llum", s / 3600, s / 60 % 60);
}

/* One line of the display: id, target, state, Meraki's status, the time
 * since the job was queued (until it became final), and its error. */
static void wait_line(const struct wait_item *it, char *buf, size_t size)
{
	const struct job *j = it->cur;
	char elapsed[32], label[DEVICE_LABEL_MAX];
	uint64_t end;

	if (!j) {
		snprintf(buf, size, "%-24s  (not found yet)", ESC(it->id));
		return;
	}
	end = job_state_is_final(j->state) ? j->updated_at : now_realtime_usec();
	format_elapsed(elapsed, sizeof(elapsed), end > j->created_at ? end - j->created_at : 0);
	snprintf(buf, size, "%-24s  %-14s  %-9s  %-9s  %6s%s%s", ESC(j->id), ESC(device_label(j, label)),
		 job_state_to_string(j->state), ESC(or_dash(j->meraki_status)), elapsed, j->error ? "  " : "",
		 j->error ? ESC(j->error) : "");
}

static void wait_show(struct waiter *w)
{
	char line[TEXT_ESCAPED_SIZE(JOB_TEXT_MAX) + 256];

	if (w->live) {
		/* Up to the display's first line, then each line anew, cut to
		 * the terminal's width so that none wraps (which would break
		 * the count of lines to go back up).  A screen that would look
		 * the same is left alone. */
		struct strbuf sb = STRBUF_INIT;

		if (w->drawn)
			(void)strbuf_addf(&sb, "\033[%zuA", w->drawn);
		for (size_t i = 0; i < w->n; i++) {
			wait_line(&w->items[i], line, sizeof(line));
			(void)strbuf_addf(&sb, "\r\033[2K%.*s\n", (int)(w->cols - 1), line);
		}
		if (sb.buf && (sb.len != w->screen.len || memcmp(sb.buf, w->screen.buf, sb.len) != 0)) {
			fwrite(sb.buf, 1, sb.len, stderr);
			fflush(stderr);
			strbuf_release(&w->screen);
			w->screen = sb;
			w->drawn = w->n;
		} else
			strbuf_release(&sb);
		return;
	}
	for (size_t i = 0; i < w->n; i++) {
		struct wait_item *it = &w->items[i];
		const char *meraki = it->cur ? or_dash(it->cur->meraki_status) : "";

		if (!it->cur ||
		    (it->printed && it->shown_state == it->cur->state && strcmp(it->shown_meraki, meraki) == 0))
			continue;
		wait_line(it, line, sizeof(line));
		fprintf(stderr, "%s\n", line);
		it->printed = true;
		it->shown_state = it->cur->state;
		snprintf(it->shown_meraki, sizeof(it->shown_meraki), "%s", meraki);
	}
	fflush(stderr);
}

/* Once, when requests have stayed in the spool for a while: a daemon that
 * does not run looks like a wait that never ends. */
static void wait_warn_spooled(struct waiter *w)
{
	bool said = false;

	for (size_t i = 0; i < w->n; i++) {
		if (!w->items[i].spooled)
			continue;
		fprintf(stderr,
			"blinkhookctl: %s is still in the spool after %llu s: is blinkhookd running? (systemctl "
			"status blinkhookd)\n",
			ESC(w->items[i].id), (unsigned long long)(WAIT_SPOOL_WARN_USEC / USEC_PER_SEC));
		said = true;
	}
	w->warned_spool = true;
	if (said && w->live) {
		/* The display starts anew below what was said. */
		w->drawn = 0;
		strbuf_release(&w->screen);
	}
}

/* When a wait ends, each job that failed or expired with its whole error,
 * which the display cuts to the terminal's width. */
static void wait_report_failures(const struct waiter *w)
{
	for (size_t i = 0; i < w->n; i++) {
		const struct job *j = w->items[i].cur;

		if (j && (j->state == JOB_FAILED || j->state == JOB_EXPIRED))
			fprintf(stderr, "blinkhookctl: %s %s: %s\n", ESC(j->id), job_state_to_string(j->state),
				ESC(or_dash(j->error)));
	}
}

static bool wait_all_final(const struct waiter *w)
{
	for (size_t i = 0; i < w->n; i++)
		if (!w->items[i].cur || !job_state_is_final(w->items[i].cur->state))
			return false;
	return true;
}

/* Empties the inotify queue: what changed is read from the log itself. */
static void wait_drain(int fd)
{
	_Alignas(struct inotify_event) char buf[4096];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

static void wait_free(struct waiter *w)
{
	job_table_release(&w->t);
	joblog_follow_release(&w->f);
	strbuf_release(&w->screen);
	free(w->items);
}

/*
 * Waits until every job in ids[] is final or timeout passes, showing
 * progress on stderr; with json, prints the jobs as an array on stdout at
 * the end, else (for wait) the ids.  blink passes the jobs it queued
 * (queued[], never "not found"); wait passes ids that must exist.  Returns
 * the exit code.
 *
 * The log is watched with inotify on the state directory, not on the file:
 * compaction replaces jobs.log by a rename, which joblog_follow_read() reads
 * across when it sees the new file.
 */
int wait_jobs(char **ids, const struct job *queued, size_t n, uint64_t timeout, bool json)
{
	_cleanup_close_ int ifd = -1;
	_cleanup_free_ char *new_dir = NULL;
	struct waiter w = {.f = JOBLOG_FOLLOW_INIT, .screen = STRBUF_INIT};
	uint64_t start, deadline;
	int log_wd = -1, spool_wd = -1, r, rc;

	if (job_table_init(&w.t) < 0 || !(w.items = calloc(n, sizeof(*w.items)))) {
		job_table_release(&w.t);
		fprintf(stderr, "blinkhookctl: out of memory\n");
		return 1;
	}
	w.n = n;
	for (size_t i = 0; i < n; i++) {
		snprintf(w.items[i].id, sizeof(w.items[i].id), "%s", ids[i]);
		if (queued) {
			w.items[i].local = queued[i];
			w.items[i].have_local = true;
		}
	}
	if (isatty(STDERR_FILENO)) {
		struct winsize ws = {0};
		const char *term = getenv("TERM");

		if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_col < 20 || ws.ws_row < 2)
			ws = (struct winsize){.ws_row = 24, .ws_col = 80};
		w.cols = ws.ws_col;
		/* More lines than the screen holds cannot be gone back up to. */
		w.live = !(term && strcmp(term, "dumb") == 0) && n < ws.ws_row;
	}

	/* Watched before the first read, so that nothing written between the
	 * two goes unnoticed. */
	ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ifd < 0) {
		fprintf(stderr, "blinkhookctl: inotify: %m\n");
		wait_free(&w);
		return 1;
	}
	if (asprintf(&new_dir, "%s/new", cfg.queue_dir) < 0)
		new_dir = NULL;
	start = deadline = now_monotonic_usec();
	deadline = timeout < UINT64_MAX - deadline ? deadline + timeout : UINT64_MAX;
	for (bool first = true;; first = false) {
		/* The state directory may not exist before the daemon's first
		 * start: the tick tries again. */
		if (log_wd < 0)
			log_wd = inotify_add_watch(ifd, cfg.state_dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO);
		if (spool_wd < 0 && new_dir)
			spool_wd = inotify_add_watch(ifd, new_dir, IN_DELETE | IN_MOVED_FROM);
		if (wait_refresh(&w) < 0) {
			wait_free(&w);
			return 1;
		}
		if (first) {
			bool missing = false;

			for (size_t i = 0; i < n; i++) {
				if (w.items[i].cur)
					continue;
				/* Taken by the daemon between the two looks? */
				if (wait_refresh(&w) < 0) {
					wait_free(&w);
					return 1;
				}
				if (w.items[i].cur)
					continue;
				/* Each unknown id, not only the first. */
				fprintf(stderr, "blinkhookctl: no job \"%s\"\n", ESC(w.items[i].id));
				missing = true;
			}
			if (missing) {
				wait_free(&w);
				return 1;
			}
		}
		if (!w.warned_spool && now_monotonic_usec() - start >= WAIT_SPOOL_WARN_USEC)
			wait_warn_spooled(&w);
		wait_show(&w);
		if (wait_all_final(&w)) {
			rc = 0;
			for (size_t i = 0; i < n; i++)
				if (w.items[i].cur->state != JOB_COMPLETE)
					rc = EXIT_JOB_FAILED;
			break;
		}
		uint64_t now = now_monotonic_usec();
		if (now >= deadline) {
			char span[64], what[128];
			size_t left = 0, spooled = 0;

			rc = EXIT_TIMED_OUT;
			for (size_t i = 0; i < n; i++) {
				left += !job_state_is_final(w.items[i].cur->state);
				spooled += w.items[i].spooled;
				/* A failure known wins: it says more than "not yet". */
				if (job_state_is_final(w.items[i].cur->state) && w.items[i].cur->state != JOB_COMPLETE)
					rc = EXIT_JOB_FAILED;
			}
			/* A request still in the spool goes on only once a
			 * daemon takes it. */
			if (!spooled)
				snprintf(what, sizeof(what), "they go on");
			else if (spooled == left)
				snprintf(what, sizeof(what), "still in the spool: is blinkhookd running?");
			else
				snprintf(what, sizeof(what), "%zu go on, %zu still in the spool", left - spooled,
					 spooled);
			format_timespan(span, sizeof(span), timeout);
			fprintf(stderr, "blinkhookctl: timed out after %s: %zu job(s) not final yet (%s)\n", span, left,
				what);
			break;
		}
		uint64_t msec = (deadline - now + 999) / 1000;
		struct pollfd p = {.fd = ifd, .events = POLLIN};
		r = poll(&p, 1, (int)(msec < WAIT_TICK_MSEC ? msec : WAIT_TICK_MSEC));
		if (r < 0 && errno != EINTR) {
			fprintf(stderr, "blinkhookctl: poll: %m\n");
			wait_free(&w);
			return 1;
		}
		if (r > 0)
			wait_drain(ifd);
	}
	wait_report_failures(&w);
	if (!json && !queued) /* blink printed them already */
		for (size_t i = 0; i < n; i++)
			printf("%s\n", w.items[i].id);
	if (json) {
		struct strbuf sb = STRBUF_INIT;
		struct json_writer jw;

		json_writer_init(&jw, &sb);
		json_w_array_begin(&jw);
		for (size_t i = 0; i < n; i++)
			job_format_json(w.items[i].cur, &jw);
		json_w_array_end(&jw);
		if (json_writer_finish(&jw) >= 0)
			print_json(&sb);
		else
			rc = 1;
		strbuf_release(&sb);
	}
	wait_free(&w);
	return rc;
}
