/* SPDX-License-Identifier: MIT */
/*
 * ledger — the job log and the job table: the one way a job changes
 * (ledger_record), group commits on the loop, the barrier that runs what
 * waits for the log to be durable, replay at start, and compaction.
 *
 * Owns d->ledger.  Calls dispatch (a job changed: its control follows;
 * after a commit: submit what may go), intake (after a commit: scan on) and
 * lifecycle (status).  What waits on the barrier is the waiter's own: the
 * ledger only runs it.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <systemd/sd-event.h>

#include "blinkhook/log.h"
#include "daemon-internal.h"

/* The log is compacted when it holds more than twice as many records as
 * there are jobs, plus this: about once each time the job count doubles. */
#define COMPACT_SLACK 1000

/* After a failed compaction the next waits, doubling from the first to the
 * last: each try forks and writes a whole snapshot, and on a nearly full disk
 * takes the space the commits need. */
#define COMPACT_RETRY_MIN (1 * USEC_PER_MIN)
#define COMPACT_RETRY_MAX (1 * USEC_PER_HOUR)

/* client: the address a callback came from, or NULL. */
static void log_job_event(const struct job *j, const struct job_event *ev, const char *client)
{
	const char *state = job_state_to_string(j->state);
	const char *from = client ? "callback from " : "from ";
	const char *source = client ? client : ev->source ? ev->source : "?";

	switch (ev->kind) {
	case JOB_EV_QUEUED:
		if (j->serial[0])
			log_job(LOG_INFO, j->id, j->serial, state, "job %s: queued, blink %s for %us", j->id, j->serial,
				j->duration);
		else
			log_job(LOG_INFO, j->id, NULL, state, "job %s: queued, blink the device %s '%s' for %us", j->id,
				j->name ? "named" : "with MAC", j->name ? j->name : j->mac, j->duration);
		break;
	case JOB_EV_RESOLVED:
		log_job(LOG_INFO, j->id, j->serial, state, "job %s: %s '%s' is %s", j->id, j->name ? "name" : "MAC",
			j->name ? j->name : j->mac, j->serial);
		break;
	case JOB_EV_ATTEMPT:
		log_job(LOG_WARNING, j->id, j->serial, state, "job %s: attempt %u failed (%s), will retry", j->id,
			j->attempts, j->error ? j->error : "no detail");
		break;
	case JOB_EV_SUBMITTED:
		log_job(LOG_INFO, j->id, j->serial, state, "job %s: submitted to Meraki as ledsBlinkId %s (attempt %u)",
			j->id, j->leds_blink_id, j->attempts);
		break;
	case JOB_EV_STATUS:
		log_job(LOG_INFO, j->id, j->serial, state, "job %s: Meraki reports %s (%s%s)", j->id, j->meraki_status,
			from, source);
		break;
	case JOB_EV_FINAL:
		log_job(j->state == JOB_COMPLETE ? LOG_INFO : LOG_WARNING, j->id, j->serial, state,
			"job %s: %s%s%s (%s%s)", j->id, state, j->error ? ": " : "", j->error ? j->error : "", from,
			source);
		break;
	default:
		break;
	}
}

/*
 * The one way a job changes: check the event, append it to the log, apply it
 * to the table.  Returns 0 when it changed the job, 1 when it changes
 * nothing, or a negative errno (the job is then unchanged).
 */
int ledger_record_from(struct daemon *d, const struct job_event *ev, struct job **ret_job, const char *client)
{
	char nonce[JOB_NONCE_LEN + 1];
	struct job_event queued;
	struct job *j = NULL;
	uint64_t seq;
	int r;

	/* A new job's first record carries its nonce, which its secret binds. */
	if (ev->kind == JOB_EV_QUEUED && !ev->nonce) {
		r = job_nonce_new(nonce);
		if (r < 0)
			return r;
		queued = *ev;
		queued.nonce = nonce;
		ev = &queued;
	}

	r = job_table_check(&d->ledger.jobs, ev);
	if (r != 0) {
		if (ret_job)
			*ret_job = job_table_find(&d->ledger.jobs, ev->id);
		return r;
	}
	r = d->pg ? pgstore_append(d, ev, &seq) : joblog_append(d->ledger.log, ev, &seq);
	if (r < 0)
		return r;
	r = job_table_apply(&d->ledger.jobs, ev, &j);
	if (r < 0) {
		/* The record is in the log and replay will apply it; the table
		 * cannot follow (out of memory).  Stop rather than diverge. */
		(void)log_errno(LOG_ERR, r, "job %s: cannot apply an event that is already logged: %m; stopping",
				ev->id);
		sd_event_exit(d->event, 1);
		return r;
	}
	j->log_seq = seq;
	ledger_kick(d);
	log_job_event(j, ev, client);

	r = dispatch_job_changed(d, j);
	if (r < 0)
		return r;
	if (ret_job)
		*ret_job = j;
	return 0;
}

int ledger_record(struct daemon *d, const struct job_event *ev, struct job **ret_job)
{
	return ledger_record_from(d, ev, ret_job, NULL);
}

/*
 * The barrier: what waits for the log to be durable up to a seq (answers to
 * callbacks, removals of spool files), in one list, run after each commit.
 */
int ledger_when_durable(struct daemon *d, uint64_t seq, durable_fn fn, void *ud)
{
	struct durable *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->seq = seq;
	w->fn = fn;
	w->ud = ud;
	*d->ledger.durable_tail = w;
	d->ledger.durable_tail = &w->next;
	return 0;
}

/* Runs what is durable now; with failed (a commit failed), also offers the
 * rest the failure, and keeps what would rather wait for a later commit. */
static void durable_run(struct daemon *d, bool failed)
{
	uint64_t synced = ledger_synced_seq(d);
	struct durable **p = &d->ledger.durable;

	while (*p) {
		struct durable *w = *p;
		bool done = w->seq <= synced ? (w->fn(d, w->ud, 0), true) : failed && w->fn(d, w->ud, -EIO);

		if (done) {
			*p = w->next;
			free(w);
		} else
			p = &w->next;
	}
	d->ledger.durable_tail = p;
}

void ledger_fail_pending(struct daemon *d)
{
	durable_run(d, true);
}

void ledger_cancel_pending(struct daemon *d)
{
	if (d->pg)
		pgstore_cancel_waiters(d);
	if (d->ledger.log || d->pg)
		durable_run(d, true);
	while (d->ledger.durable) {
		struct durable *w = d->ledger.durable;

		d->ledger.durable = w->next;
		w->fn(d, w->ud, -ECANCELED);
		free(w);
	}
	d->ledger.durable_tail = &d->ledger.durable;
}

/* The last commit at the end of the loop, in place. */
int ledger_commit_in_place(struct daemon *d)
{
	return d->pg ? pgstore_commit_wait(d) : joblog_commit(d->ledger.log);
}

uint64_t ledger_synced_seq(const struct daemon *d)
{
	return d->pg ? pgstore_synced_seq(d) : joblog_synced_seq(d->ledger.log);
}

void ledger_kick(struct daemon *d)
{
	enable_oneshot(d->ledger.commit_defer);
}

/* A commit failed and its retry waits for the back-off (on_commit_retry):
 * the PostgreSQL store does not send it before. */
bool ledger_commit_held(const struct daemon *d)
{
	int enabled = SD_EVENT_OFF;

	return d->ledger.commit_retry && sd_event_source_get_enabled(d->ledger.commit_retry, &enabled) >= 0 &&
	       enabled != SD_EVENT_OFF;
}

bool ledger_pending(const struct daemon *d)
{
	return d->pg ? pgstore_has_pending(d) : joblog_has_pending(d->ledger.log);
}

/* Puts the next try off (once per step of the back-off, so once per failure). */
static int compact_failed(struct daemon *d, int r)
{
	struct ledger *lg = &d->ledger;

	lg->compact_backoff = lg->compact_backoff ? MIN(lg->compact_backoff * 2, COMPACT_RETRY_MAX) : COMPACT_RETRY_MIN;
	lg->compact_not_before = now_monotonic_usec() + lg->compact_backoff;
	return log_errno(LOG_WARNING, r,
			 "cannot compact the job log in \"%s\": %m; it keeps growing until a later try succeeds (the "
			 "next in %llus)",
			 d->cfg->state_dir, (unsigned long long)(lg->compact_backoff / USEC_PER_SEC));
}

/* The end of a compaction whose snapshot a child wrote: the new log takes
 * over unless a sync is in flight (commit_done() calls again after it). */
static int compact_finish(struct daemon *d)
{
	struct ledger *lg = &d->ledger;
	int r = joblog_compact_finish(lg->log);

	/* Not ended yet (its report may be in, its end of file not): watch
	 * for the end again, in case a sync in flight had us stop. */
	if (r == -EAGAIN && lg->compact_io)
		(void)sd_event_source_set_enabled(lg->compact_io, SD_EVENT_ON);
	if (r == -EAGAIN || r == -EBUSY)
		return r;
	lg->compact_io = sd_event_source_disable_unref(lg->compact_io);
	if (r < 0)
		return compact_failed(d, r);
	lg->compact_backoff = 0;
	log_info("compacted the job log: %llu records to %llu, %zu final job(s) past retention dropped, %llu "
		 "committed meanwhile, %.3fs in the background",
		 (unsigned long long)lg->compact_before, (unsigned long long)joblog_records(lg->log),
		 lg->compact_dropped, (unsigned long long)joblog_compact_carried(lg->log),
		 (double)(now_monotonic_usec() - lg->compact_t0) / USEC_PER_SEC);
	return 0;
}

static int on_compact_io(sd_event_source *s, int fd, uint32_t revents, void *ud)
{
	struct daemon *d = ud;

	(void)fd;
	(void)revents;
	/* Waiting for a sync: the child's end stays readable, so stop
	 * watching it; commit_done() finishes. */
	if (compact_finish(d) == -EBUSY)
		(void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
	return 0;
}

/* Drops final jobs past retention and rewrites the log as one record a job,
 * when the log has grown well past that (or, at start, when there is
 * anything to drop).  At start it runs in place; later a child process
 * writes the snapshot from its copy of the table while the loop goes on
 * (joblog.h), and records committed meanwhile are carried over. */
static void maybe_compact(struct daemon *d, bool at_start)
{
	struct ledger *lg = &d->ledger;
	uint64_t before = joblog_records(lg->log), now, t0;
	bool grown = before >= 2 * (uint64_t)lg->jobs.n_jobs + COMPACT_SLACK, old = false;
	size_t dropped = 0;
	int r;

	if (joblog_compacting(lg->log)) {
		(void)compact_finish(d);
		return;
	}
	/* After every commit: the common answer costs two comparisons. */
	if ((!grown && !at_start) || d->stopping || joblog_has_pending(lg->log) || lg->log_failing ||
	    joblog_syncing(lg->log) || (!at_start && now_monotonic_usec() < lg->compact_not_before))
		return;
	now = now_realtime_usec();
	t0 = now_monotonic_usec();
	if (at_start) {
		lg->drop_horizon = now;
		for (struct job *j = lg->jobs.first; j; j = j->next)
			if (job_state_is_final(j->state))
				lg->drop_horizon = MIN(lg->drop_horizon, j->updated_at);
		old = lg->drop_horizon + d->cfg->retention_usec < now;
	}
	if (!grown && !old)
		return;
	/* The walk over every job would hold the loop for longer than the
	 * child's whole snapshot does (600,000 jobs: tens of ms): skip it while
	 * no job can be past retention yet.  A job that turns final later is
	 * stamped after this walk, so the walk's time bounds it too.  A final
	 * job has no control: dispatch frees it when the job ends, and an
	 * orphaned call holds no job, so any final job may be dropped. */
	if (lg->drop_horizon + d->cfg->retention_usec < now) {
		lg->drop_horizon = now;
		for (struct job *j = lg->jobs.first, *next; j; j = next) {
			next = j->next;
			if (!job_state_is_final(j->state))
				continue;
			assert(!j->userdata);
			if (j->updated_at + d->cfg->retention_usec < now) {
				job_table_remove(&lg->jobs, j);
				dropped++;
			} else
				lg->drop_horizon = MIN(lg->drop_horizon, j->updated_at);
		}
	}
	/* No job left: the new log would have no snapshot to say where its
	 * records start in the stream (joblog.h), and a follower that missed
	 * it between two reads could skip what comes after.  It waits for the
	 * next job (at start there is no follower of this daemon's yet). */
	if (!at_start && !lg->jobs.first)
		return;
	r = at_start ? joblog_compact(lg->log, &lg->jobs) : joblog_compact_begin(lg->log, &lg->jobs);
	if (r == 1) {
		lg->compact_t0 = t0;
		lg->compact_before = before;
		lg->compact_dropped = dropped;
		r = sd_event_add_io(d->event, &lg->compact_io, joblog_compact_fd(lg->log), EPOLLIN, on_compact_io, d);
		if (r >= 0) {
			(void)sd_event_source_set_description(lg->compact_io, "compaction");
			log_debug("compacting the job log: %llu records to %zu, %zu final job(s) past retention "
				  "dropped; the snapshot is written in the background",
				  (unsigned long long)before, lg->jobs.n_jobs, dropped);
			return;
		}
		/* No way to hear of its end: give up this time (the old log is whole). */
		joblog_compact_abort(lg->log);
	}
	if (r < 0) {
		(void)compact_failed(d, r);
		return;
	}
	lg->compact_backoff = 0;
	log_info("compacted the job log: %llu records to %zu, %zu final job(s) past retention dropped, %.3fs",
		 (unsigned long long)before, lg->jobs.n_jobs, dropped,
		 (double)(now_monotonic_usec() - t0) / USEC_PER_SEC);
}

static int on_commit_io(sd_event_source *s, int fd, uint32_t revents, void *ud);

/* The end of a commit (r its result; t0 when it began), or, with nothing to
 * write, the moment to keep the promises that waited for earlier ones. */
static int commit_done(struct daemon *d, int r, uint64_t t0)
{
	bool recovered = false;

	if (t0) {
		d->ledger.syncs++;
		d->ledger.sync_usec += now_monotonic_usec() - t0;
		if (r < 0) {
			d->ledger.sync_errors++;
			/* The PostgreSQL store says when it goes away itself. */
			if (!d->ledger.log_failing && !d->pg)
				(void)log_errno(
					LOG_ERR, r,
					"cannot write the job log in \"%s\": %m; answering callbacks 503 and holding "
					"the queue until it can (free space on that file system)",
					d->cfg->state_dir);
			d->ledger.log_failing = true;
			durable_run(d, true);
			d->ledger.commit_backoff = d->ledger.commit_backoff
							   ? MIN(d->ledger.commit_backoff * 2, COMMIT_RETRY_MAX)
							   : COMMIT_RETRY_MIN;
			(void)sd_event_source_set_time_relative(d->ledger.commit_retry, d->ledger.commit_backoff);
			enable_oneshot(d->ledger.commit_retry);
			/* A compaction whose child ended during this sync waits
			 * for the sync's end (on_compact_io): finish it now, or the
			 * child stays a zombie and its file takes space while the
			 * commits fail. */
			if (!d->pg && joblog_compacting(d->ledger.log))
				(void)compact_finish(d);
			return r;
		}
		if (d->ledger.log_failing) {
			if (!d->pg)
				log_notice("the job log is writable again; taking requests");
			d->ledger.log_failing = false;
			d->ledger.commit_backoff = 0;
			(void)sd_event_source_set_enabled(d->ledger.commit_retry, SD_EVENT_OFF);
			recovered = true;
		}
	}
	/* Everything synced is durable: keep the promises that waited for it. */
	durable_run(d, false);
	intake_after_commit(d, recovered);
	dispatch_schedule(d);
	if (!d->pg) /* the database keeps its own house */
		maybe_compact(d, false);
	daemon_notify_status(d, false);
	/* What came in while the disk synced is the next batch. */
	if (ledger_pending(d))
		enable_oneshot(d->ledger.commit_defer);
	return 0;
}

/* The end of the PostgreSQL store's commit (r its result). */
void ledger_store_committed(struct daemon *d, int r)
{
	(void)commit_done(d, r, d->ledger.commit_t0);
}

/* The PostgreSQL store is (again) connected, its jobs loaded: take
 * requests, and commit what waited. */
void ledger_store_ready(struct daemon *d)
{
	struct ledger *lg = &d->ledger;

	if (!lg->log_failing)
		return;
	lg->log_failing = false;
	lg->commit_backoff = 0;
	(void)sd_event_source_set_enabled(lg->commit_retry, SD_EVENT_OFF);
	durable_run(d, false);
	intake_after_commit(d, true);
	dispatch_schedule(d);
	if (ledger_pending(d))
		ledger_kick(d);
}

/* Starts a commit of everything appended.  The sync runs while the loop goes
 * on (on_commit_io ends it); with wait, or without asynchronous syncs, it
 * ends here.  One batch at a time: one in flight takes the next when it
 * ends. */
int ledger_commit(struct daemon *d, bool wait)
{
	uint64_t t0;
	int r;

	if (d->pg) {
		/* A failed commit goes again when its back-off is over (at a
		 * stop, at once), however often records come in meanwhile;
		 * what waits for the new records is answered now, as a
		 * failed try would (callbacks 503, not kept until then). */
		if (!wait && ledger_commit_held(d)) {
			durable_run(d, true);
			return 0;
		}
		/* One query at a time on the connection: pgstore takes the
		 * commit up when the one in flight (any kind) ends. */
		if (pgstore_busy(d)) {
			/* What is in flight may be a tick, a read or a slot
			 * rather than a commit: the wait is timed from here. */
			if (wait) {
				t0 = now_monotonic_usec();
				return commit_done(d, pgstore_commit_wait(d), t0);
			}
			return 0;
		}
		if (!pgstore_has_pending(d))
			return commit_done(d, 0, 0);
		t0 = now_monotonic_usec();
		r = wait ? pgstore_commit_wait(d) : pgstore_commit_start(d);
		if (r == -EAGAIN)
			return 0; /* a claim tick or a waiting query went first: its end takes the commit up */
		if (r != 1)
			return commit_done(d, r, t0);
		d->ledger.commit_t0 = t0;
		return 0;
	}
	if (joblog_syncing(d->ledger.log)) {
		if (!wait)
			return 0;
		r = joblog_commit(d->ledger.log); /* waits for the one in flight, then the rest */
		return commit_done(d, r, d->ledger.commit_t0);
	}
	if (!joblog_has_pending(d->ledger.log))
		return commit_done(d, 0, 0);
	t0 = now_monotonic_usec();
	r = wait ? joblog_commit(d->ledger.log) : joblog_commit_start(d->ledger.log);
	if (r != 1)
		return commit_done(d, r, t0);
	d->ledger.commit_t0 = t0;
	if (!d->ledger.commit_io) {
		r = sd_event_add_io(d->event, &d->ledger.commit_io, joblog_commit_fd(d->ledger.log), EPOLLIN,
				    on_commit_io, d);
		if (r < 0) {
			/* No way to hear of its end: wait for it here. */
			(void)log_errno(LOG_WARNING, r, "cannot watch the job log's syncs: %m; syncing in place");
			return commit_done(d, joblog_commit(d->ledger.log), t0);
		}
		(void)sd_event_source_set_description(d->ledger.commit_io, "commit-io");
		/* Before the requests that wait for it, but after the requests
		 * already read: they join the next batch. */
		(void)sd_event_source_set_priority(d->ledger.commit_io, SD_EVENT_PRIORITY_NORMAL - 1);
	}
	return 0;
}

static int on_commit_io(sd_event_source *s, int fd, uint32_t revents, void *ud)
{
	struct daemon *d = ud;
	int r;

	(void)s;
	(void)fd;
	(void)revents;
	r = joblog_commit_finish(d->ledger.log);
	if (r == -EAGAIN)
		return 0;
	(void)commit_done(d, r, d->ledger.commit_t0);
	return 0;
}

static int on_commit(sd_event_source *s, void *ud)
{
	(void)s;
	(void)ledger_commit(ud, false);
	return 0;
}

static int on_commit_retry(sd_event_source *s, uint64_t usec, void *ud)
{
	(void)s;
	(void)usec;
	(void)ledger_commit(ud, false);
	return 0;
}

static int replay_one(const struct job_event *ev, void *ud)
{
	struct daemon *d = ud;
	int r = job_table_apply(&d->ledger.jobs, ev, NULL);

	/* A logged event that changes nothing is harmless (a repeat). */
	return r < 0 ? r : 0;
}

int ledger_replay(struct daemon *d)
{
	struct joblog_info info;
	int r;

	/* The PostgreSQL store loads its jobs once it is connected, and holds
	 * the queue and the callbacks until then (ledger_open). */
	if (d->pg)
		return 0;
	r = joblog_replay(d->ledger.log, replay_one, d, &info);
	if (r == -EPROTONOSUPPORT)
		return log_errno(LOG_ERR, r,
				 "%s/%s: line %llu (byte offset %llu) has a record version this blinkhookd does not "
				 "know; run the newer blinkhookd that wrote it",
				 d->cfg->state_dir, JOBLOG_FILE, (unsigned long long)info.bad_line,
				 (unsigned long long)info.bad_offset);
	if (r < 0 && r != -EBADMSG && info.bad_line)
		return log_errno(LOG_ERR, r,
				 "%s/%s: line %llu (byte offset %llu) is a record this daemon cannot apply (%m); "
				 "copy the file aside and report it",
				 d->cfg->state_dir, JOBLOG_FILE, (unsigned long long)info.bad_line,
				 (unsigned long long)info.bad_offset);
	if (r == -EBADMSG)
		return log_errno(LOG_ERR, r,
				 "%s/%s: line %llu (byte offset %llu) is damaged; "
				 "the daemon will not guess. Copy the file aside, then delete or repair that "
				 "line (blinkhookctl log shows what is readable) and start again",
				 d->cfg->state_dir, JOBLOG_FILE, (unsigned long long)info.bad_line,
				 (unsigned long long)info.bad_offset);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot read %s/%s: %m", d->cfg->state_dir, JOBLOG_FILE);
	if (info.torn)
		log_warn("%s/%s: cut off a torn last record at byte offset %llu (%llu bytes; a crash during a "
			 "write). Nothing that was promised was in it.",
			 d->cfg->state_dir, JOBLOG_FILE, (unsigned long long)info.torn_offset,
			 (unsigned long long)info.torn_bytes);
	log_info("replayed %llu records: %zu jobs, %zu unfinished", (unsigned long long)info.records,
		 d->ledger.jobs.n_jobs,
		 d->ledger.jobs.n_by_state[JOB_QUEUED] + d->ledger.jobs.n_by_state[JOB_SUBMITTED]);
	for (struct job *j = d->ledger.jobs.first; j; j = j->next)
		if (!job_state_is_final(j->state) && (r = dispatch_job_changed(d, j)) < 0)
			return log_errno(LOG_ERR, r, "out of memory");
	maybe_compact(d, true);
	return 0;
}

int ledger_open(struct daemon *d)
{
	int r;

	d->ledger.durable_tail = &d->ledger.durable;
	r = mkdir_p(d->cfg->state_dir, 0750);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot create the state directory \"%s\": %m", d->cfg->state_dir);
	/* With the PostgreSQL store, nothing is taken before its jobs are
	 * loaded: as if the store had failed, until ledger_store_ready(). */
	if (d->cfg->store_backend == STORE_POSTGRESQL) {
		d->ledger.log_failing = true;
		r = job_table_init(&d->ledger.jobs);
		return r < 0 ? log_errno(LOG_ERR, r, "out of memory") : 0;
	}
	r = joblog_open(d->cfg->state_dir, &d->ledger.log);
	if (r == -EBUSY)
		return log_errno(LOG_ERR, r, "another blinkhookd is running on \"%s\"", d->cfg->state_dir);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot open the job log in \"%s\": %m", d->cfg->state_dir);
	r = job_table_init(&d->ledger.jobs);
	if (r < 0)
		return log_errno(LOG_ERR, r, "out of memory");
	return 0;
}

int ledger_init(struct daemon *d)
{
	int r;

	if ((r = sd_event_add_defer(d->event, &d->ledger.commit_defer, on_commit, d)) < 0 ||
	    (r = sd_event_add_time(d->event, &d->ledger.commit_retry, CLOCK_MONOTONIC, 0, 0, on_commit_retry, d)) < 0)
		return log_errno(LOG_ERR, r, "cannot set up the event loop: %m");
	(void)sd_event_source_set_description(d->ledger.commit_defer, "commit");
	(void)sd_event_source_set_description(d->ledger.commit_retry, "commit-retry");
	(void)sd_event_source_set_enabled(d->ledger.commit_defer, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(d->ledger.commit_retry, SD_EVENT_OFF);
	/* Commit after everything else that is ready: the batch grows. */
	(void)sd_event_source_set_priority(d->ledger.commit_defer, SD_EVENT_PRIORITY_NORMAL + 10);
	return 0;
}

void ledger_close(struct daemon *d)
{
	sd_event_source_disable_unref(d->ledger.commit_defer);
	sd_event_source_disable_unref(d->ledger.commit_io);
	sd_event_source_disable_unref(d->ledger.compact_io);
	sd_event_source_disable_unref(d->ledger.commit_retry);
	job_table_release(&d->ledger.jobs);
	joblog_free(d->ledger.log);
}
