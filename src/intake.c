/* SPDX-License-Identifier: MIT */
/*
 * intake — the spool: new/ listed in rounds and taken in batches, bad files
 * moved to rejected/ (their log lines limited), cancels, and a retry on a
 * timer after a failure of ours.  A taken file is removed once the record
 * that took it is durable (the ledger's barrier).
 *
 * Owns d->intake.  Calls the ledger (record, the barrier, a commit) and
 * dispatch (a cancel finishes a job; whether a job is being submitted).
 *
 * The spool is taken in rounds: new/ is listed once, sorted, and the list
 * taken SCAN_BATCH names (or SCAN_BATCH_TIME of work) at a time, each batch
 * committed before the next.
 * It is listed again only when the list is used up and inotify said that
 * something arrived, or on a timer after a failure of ours (out of
 * descriptors): a round that made no progress never starts another at once.
 * A file that can be neither taken nor moved to rejected/ is remembered by
 * name and inode and logged once.  Rejects are logged like refused
 * callbacks: up to REJECTS_BURST lines a LOG_LIMIT_INTERVAL, then one line
 * that counts the rest; /metrics counts every one.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>

#include <systemd/sd-event.h>

#include "blinkhook/log.h"
#include "daemon-internal.h"

/* Spool files taken per scan, and the time one scan may work (a reject
 * costs a rename and a reason file, which under load can take milliseconds
 * each); the rest wait for the next turn of the loop, so that a burst of
 * requests or garbage never holds /healthz and callbacks for long. */
#define SCAN_BATCH 256
#define SCAN_BATCH_TIME (25 * USEC_PER_MSEC)
#define SPOOL_RETRY_MIN (1 * USEC_PER_SEC)
#define SPOOL_RETRY_MAX (60 * USEC_PER_SEC)
#define REJECTS_BURST 20

static void reject(struct daemon *d, const char *name, uint64_t ino, const char *reason);

/* A spool file to remove once the record that took it is durable: its
 * name, and after it the id of the job it queued ("" for none). */
static bool remove_taken(struct daemon *d, void *ud, int r)
{
	char *name = ud;
	const char *id = name + strlen(name) + 1;

	if (r == -EIO)
		return false; /* not durable: the file stays until it is */
	/* The PostgreSQL store found the id taken by another node's job,
	 * queued there at the same moment: rejected as the log store does. */
	if (r == 0 && *id && d->pg && pgstore_id_taken(d, id))
		reject(d, name, 0, "its id is already used by another job");
	else if (r == 0) {
		int k = queue_remove(d->intake.queue, name);
		if (k < 0)
			(void)log_errno(LOG_WARNING, k, "cannot remove spool file \"%s/%s\": %m",
					queue_new_path(d->intake.queue), name);
		d->intake.removed = true;
	}
	assert(d->intake.n_taken > 0);
	d->intake.n_taken--;
	free(name);
	return true;
}

static int take_later_job(struct daemon *d, const char *name, const char *id, uint64_t seq)
{
	size_t n = strlen(name) + 1, m = strlen(id) + 1;
	char *copy = malloc(n + m);
	int r;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, name, n);
	memcpy(copy + n, id, m);
	r = ledger_when_durable(d, seq, remove_taken, copy);
	if (r < 0) {
		free(copy);
		return r;
	}
	d->intake.n_taken++;
	return 0;
}

static int take_later(struct daemon *d, const char *name, uint64_t seq)
{
	return take_later_job(d, name, "", seq);
}

static void rejects_flush(struct daemon *d, uint64_t now)
{
	struct intake *sp = &d->intake;
	uint64_t n[LOG_BUDGET_KINDS], secs;

	if (budget_flush(&sp->rejects, now, n, &secs) > 0)
		log_notice("%llu more spool file(s) rejected, skipped or removed as taken in the last %llus not "
			   "logged one by one; /metrics counts the rejected, and each moved file's reason is beside it "
			   "in rejected/, its name with .reason added",
			   (unsigned long long)n[0], (unsigned long long)secs);
	(void)sd_event_source_set_enabled(sp->limit_timer, SD_EVENT_OFF);
}

static int on_rejects_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	(void)s;
	rejects_flush(ud, budget_now(ud, usec));
	return 0;
}

/* Whether a reject may have its own log line. */
static bool reject_may_log(struct daemon *d)
{
	return budget_may_log(d, &d->intake.rejects, d->intake.limit_timer, 0, rejects_flush);
}

static bool spool_skipped(struct daemon *d, const char *name, uint64_t ino)
{
	for (size_t i = 0; i < SKIPPED_MAX; i++)
		if (d->intake.skipped[i].name && d->intake.skipped[i].ino == ino &&
		    strcmp(d->intake.skipped[i].name, name) == 0)
			return true;
	return false;
}

static int cmp_name(const void *key, const void *elem)
{
	return strcmp(key, *(char *const *)elem);
}

/* Forgets skipped files that are gone from the new list: a later file of
 * the same name (its inode number perhaps reused) gets its own try. */
static void spool_skipped_prune(struct daemon *d)
{
	struct intake *sp = &d->intake;

	for (size_t i = 0; i < SKIPPED_MAX; i++) {
		struct skipped *k = &sp->skipped[i];

		if (k->name && !(sp->n && bsearch(k->name, sp->names, sp->n, sizeof(*sp->names), cmp_name))) {
			free(k->name);
			k->name = NULL;
		}
	}
}

static void spool_skip(struct daemon *d, const char *name, uint64_t ino)
{
	struct skipped *k = &d->intake.skipped[d->intake.skipped_next];

	free(k->name);
	k->name = strdup(name); /* out of memory: logged again next round */
	k->ino = ino;
	d->intake.skipped_next = (d->intake.skipped_next + 1) % SKIPPED_MAX;
}

/* Moves a bad file to rejected/ (made durable once a batch), or, where even
 * that fails, leaves it to be skipped from now on. */
static void reject(struct daemon *d, const char *name, uint64_t ino, const char *reason)
{
	char as[QUEUE_REJECTED_NAME_MAX];
	int r = queue_reject_named(d->intake.queue, name, reason, as);

	if (r == -ENOENT)
		return; /* gone meanwhile: its producer took it back */
	d->intake.rejected++;
	if (r < 0)
		spool_skip(d, name, ino);
	if (!reject_may_log(d))
		return;
	if (r < 0)
		(void)log_errno(
			LOG_ERR, r,
			"spool file \"%s/%s\" is bad (%s) and cannot be moved to rejected/: %m; skipping it from "
			"now on",
			queue_new_path(d->intake.queue), name, reason);
	else
		log_warn("spool file \"%s/%s\" rejected: %s (moved to rejected/%s%s)", queue_new_path(d->intake.queue),
			 name, reason, as, r > 0 ? "; its reason file could not be written" : "");
}

static void take_cancel(struct daemon *d, const char *name, uint64_t ino, const char *id)
{
	struct job *j = job_table_find(&d->ledger.jobs, id);

	if (!j) {
		reject(d, name, ino, "cancel names no known job");
		return;
	}
	if (j->state != JOB_QUEUED || dispatch_job_busy(j))
		log_notice("job %s: cancel request ignored, the job is %s", id,
			   j->state == JOB_QUEUED ? "being submitted" : job_state_to_string(j->state));
	else
		dispatch_finish_job(d, j, JOB_FAILED, NULL, "canceled", "cancel", 0);
	(void)take_later(d, name, j->log_seq);
}

/* Takes new/name: 0, or a transient error of ours (the file waits). */
static int take_one(struct daemon *d, const char *name)
{
	struct queue_request req;
	const char *reason = NULL;
	struct job *j;
	uint64_t ino = 0;
	int r;

	r = queue_file_ino(d->intake.queue, name, &ino);
	if (r == -ENOENT)
		return 0;
	if (queue_error_is_transient(r))
		return r;
	if (r == 0 && spool_skipped(d, name, ino))
		return 0;
	r = queue_read(d->intake.queue, name, &req, &reason);
	if (r == -ENOENT)
		return 0;
	if (r == -EINVAL) {
		reject(d, name, ino, reason);
		return 0;
	}
	if (r < 0)
		return r;
	if (req.cancel[0]) {
		take_cancel(d, name, ino, req.cancel);
		return 0;
	}
	j = job_table_find(&d->ledger.jobs, req.id);
	if (j) {
		/* The same request, taken by an earlier run that stopped before
		 * it removed the file: a job from before this run, no younger
		 * than the file, for the same blink.  Anything else is a
		 * producer reusing an id, and must not vanish unseen. */
		if (j->created_at < d->intake.started && req.mtime <= j->created_at && j->duration == req.duration &&
		    strcmp(j->mac, req.mac) == 0 && strcmp(j->name ? j->name : "", req.name) == 0 &&
		    (!req.serial[0] || strcmp(j->serial, req.serial) == 0)) {
			/* A producer can make one look so (cp -p, touch -d):
			 * it is removed, but not unseen. */
			if (reject_may_log(d))
				log_job(LOG_NOTICE, j->id, NULL, NULL,
					"spool file \"%s/%s\" removed: job %s took the same request before a restart",
					queue_new_path(d->intake.queue), name, j->id);
			(void)take_later(d, name, j->log_seq);
		} else
			reject(d, name, ino, "its id is already used by another job");
		return 0;
	}
	struct job_event ev = {
		.ts = now_realtime_usec(),
		.id = req.id,
		.kind = JOB_EV_QUEUED,
		.serial = req.serial[0] ? req.serial : NULL,
		.name = req.name[0] ? req.name : NULL,
		.mac = req.mac[0] ? req.mac : NULL,
		.duration = req.duration,
		.source = "queue",
	};
	r = ledger_record(d, &ev, &j);
	if (r < 0) {
		(void)log_errno(LOG_ERR, r, "cannot queue spool file \"%s/%s\": %m", queue_new_path(d->intake.queue),
				name);
		d->intake.relist = true; /* it waits for the log: look again then */
		return 0;
	}
	(void)take_later_job(d, name, j->id, j->log_seq);
	return 0;
}

static void spool_names_drop(struct intake *sp)
{
	queue_names_free(sp->names);
	sp->names = NULL;
	sp->n = sp->next = 0;
}

/* A failure of ours (r): look again later, ever less often while it lasts. */
static void spool_retry(struct daemon *d, int r, const char *what)
{
	struct intake *sp = &d->intake;

	sp->backoff = sp->backoff ? MIN(sp->backoff * 2, SPOOL_RETRY_MAX) : SPOOL_RETRY_MIN;
	(void)log_errno(LOG_ERR, r, "cannot %s the spool \"%s\": %m; trying again in %llus", what,
			queue_new_path(d->intake.queue), (unsigned long long)(sp->backoff / USEC_PER_SEC));
	(void)sd_event_source_set_time_relative(sp->retry, sp->backoff);
	enable_oneshot(sp->retry);
}

static int on_spool_retry(sd_event_source *s, uint64_t usec, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	(void)usec;
	d->intake.relist = true;
	enable_oneshot(d->intake.scan_defer);
	return 0;
}

static int on_scan(sd_event_source *s, void *ud)
{
	struct daemon *d = ud;
	struct intake *sp = &d->intake;
	uint64_t start = now_monotonic_usec();
	size_t end;
	int r = 0, k;

	(void)s;
	if (d->stopping || d->ledger.log_failing)
		return 0;
	if (d->intake.n_taken) {
		/* Files of the last batch wait for their commit: scan after it. */
		d->intake.scan_more = true;
		ledger_kick(d);
		return 0;
	}
	if (sp->next >= sp->n) {
		/* This round's list is used up: a new one only for news. */
		if (!sp->relist)
			return 0;
		sp->relist = false;
		spool_names_drop(sp);
		r = queue_list(d->intake.queue, SIZE_MAX, &sp->names, &sp->n);
		if (r < 0) {
			spool_names_drop(sp);
			spool_retry(d, r, "list");
			return 0;
		}
		spool_skipped_prune(d);
	}
	end = MIN(sp->n, sp->next + SCAN_BATCH);
	for (; sp->next < end; sp->next++) {
		r = take_one(d, sp->names[sp->next]);
		if (r < 0)
			break; /* this one waits for the retry */
		if (now_monotonic_usec() - start >= SCAN_BATCH_TIME) {
			sp->next++;
			break; /* the rest on the next turn: the loop answers first */
		}
	}
	/* The batch's rejects durable at once: one sync, not one a file. */
	k = queue_reject_sync(d->intake.queue);
	if (k < 0)
		(void)log_errno(LOG_WARNING, k, "cannot sync the spool's rejected/: %m");
	if (r < 0)
		spool_retry(d, r, "read a file in");
	else
		sp->backoff = 0;
	/* The rest of the list, or news: the next batch once this one is
	 * durable. */
	d->intake.scan_more = r >= 0 && (sp->next < sp->n || sp->relist);
	if (ledger_pending(d) || d->intake.n_taken)
		ledger_kick(d);
	else if (d->intake.scan_more)
		enable_oneshot(d->intake.scan_defer);
	return 0;
}

static int on_inotify(sd_event_source *s, const struct inotify_event *ev, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	(void)ev; /* any event, IN_Q_OVERFLOW included, means: look again */
	d->intake.relist = true;
	enable_oneshot(d->intake.scan_defer);
	return 0;
}

void intake_after_commit(struct daemon *d, bool log_recovered)
{
	if (d->intake.removed) {
		int r = queue_sync(d->intake.queue);
		if (r < 0)
			(void)log_errno(LOG_WARNING, r, "cannot sync the spool directory: %m");
		d->intake.removed = false;
	}
	if (log_recovered || d->intake.scan_more) {
		d->intake.scan_more = false;
		enable_oneshot(d->intake.scan_defer);
	}
}

int intake_init(struct daemon *d)
{
	struct intake *sp = &d->intake;
	int r;

	sp->rejects = (struct log_budget){.interval = LOG_LIMIT_INTERVAL, .burst = REJECTS_BURST};
	if ((r = sd_event_add_defer(d->event, &sp->scan_defer, on_scan, d)) < 0 ||
	    (r = sd_event_add_time(d->event, &sp->limit_timer, CLOCK_MONOTONIC, 0, USEC_PER_SEC, on_rejects_timer, d)) <
		    0 ||
	    (r = sd_event_add_time(d->event, &sp->retry, CLOCK_MONOTONIC, 0, 0, on_spool_retry, d)) < 0)
		return log_errno(LOG_ERR, r, "cannot set up the event loop: %m");
	(void)sd_event_source_set_description(sp->scan_defer, "spool-scan");
	(void)sd_event_source_set_description(sp->limit_timer, "spool-rejects-limit");
	(void)sd_event_source_set_description(sp->retry, "spool-retry");
	(void)sd_event_source_set_enabled(sp->scan_defer, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(sp->limit_timer, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(sp->retry, SD_EVENT_OFF);
	return 0;
}

int intake_open(struct daemon *d)
{
	struct intake *sp = &d->intake;
	int r;

	sp->started = now_realtime_usec();
	r = queue_open(d->cfg->queue_dir, &sp->queue);
	if (r == -ELOOP)
		return log_errno(LOG_ERR, r,
				 "cannot open the spool \"%s\": it or its tmp/, new/ or rejected/ is a "
				 "symbolic link, which the daemon does not follow (make them directories)",
				 d->cfg->queue_dir);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot open the spool \"%s\": %m", d->cfg->queue_dir);
	const char *lax = queue_lax_dir(sp->queue);
	if (lax)
		log_warn("spool \"%s\": %s is writable by others than the daemon or not its own; only tmp/ and "
			 "new/ should be; run `systemd-tmpfiles --create` to set the modes",
			 d->cfg->queue_dir, lax);
	r = queue_sweep_tmp(sp->queue, now_realtime_usec());
	if (r > 0)
		log_warn("moved %d stale file(s) from \"%s/tmp\" to rejected/ (a producer died while writing)", r,
			 d->cfg->queue_dir);
	r = sd_event_add_inotify(d->event, &sp->inotify, queue_new_path(sp->queue),
				 IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR, on_inotify, d);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot watch \"%s\": %m", queue_new_path(sp->queue));
	(void)sd_event_source_set_description(sp->inotify, "spool-inotify");
	return 0;
}

/* The spool's current contents, before anything else. */
void intake_start(struct daemon *d)
{
	d->intake.relist = true;
	(void)on_scan(NULL, d);
}

/* A count of unlogged rejects is not lost at a stop either. */
void intake_flush(struct daemon *d)
{
	if (d->intake.limit_timer)
		rejects_flush(d, now_monotonic_usec());
}

void intake_close(struct daemon *d)
{
	struct intake *sp = &d->intake;

	spool_names_drop(sp);
	for (size_t i = 0; i < SKIPPED_MAX; i++)
		free(sp->skipped[i].name);
	sd_event_source_disable_unref(sp->limit_timer);
	sd_event_source_disable_unref(sp->retry);
	sd_event_source_disable_unref(sp->scan_defer);
	sd_event_source_disable_unref(sp->inotify);
	queue_free(sp->queue);
}
