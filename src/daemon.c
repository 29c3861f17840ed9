/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "blinkhook/callback.h"
#include "blinkhook/daemon.h"
#include "blinkhook/httpd.h"
#include "blinkhook/job.h"
#include "blinkhook/joblog.h"
#include "blinkhook/json.h"
#include "blinkhook/log.h"
#include "blinkhook/meraki.h"
#include "blinkhook/queue.h"
#include "blinkhook/scheduler.h"
#include "blinkhook/secret.h"

/* Spool files taken per scan; the rest wait for the next round, so that a
 * burst of requests never holds the loop for long. */
#define SCAN_BATCH 256
/* Submissions in flight at once (only matters with a short min_interval). */
#define MAX_IN_FLIGHT 16
/* Connections: all together, and from one address that is not a trusted
 * proxy; an idle one is closed after the timeout.  Meraki sends one callback
 * at a time per job, so a peer holding more than a few is not Meraki.  All
 * together: as many as RLIMIT_NOFILE leaves after CONNECTION_FD_RESERVE
 * descriptors for everything else (the job log, its lock and AIO eventfd,
 * the spool's directories and the file being read, inotify, epoll, signalfd
 * and timers, curl's sockets for MAX_IN_FLIGHT calls and its resolver), and
 * at most CONNECTION_LIMIT_MAX (each may hold a 32 KiB buffer).  A trusted
 * proxy (and a unix socket's peers, together) may hold half of them. */
#define CONNECTION_FD_RESERVE 128
#define CONNECTION_LIMIT_MIN 16
#define CONNECTION_LIMIT_MAX 16384
#define CONNECTION_PER_IP_LIMIT 64
#define CONNECTION_TIMEOUT_SEC 15
#define COMMIT_RETRY_MIN (1 * USEC_PER_SEC)
#define COMMIT_RETRY_MAX (30 * USEC_PER_SEC)
/* On SIGTERM, how long requests to Meraki in flight may take to finish, so
 * that their answer is logged and the next start does not submit them again. */
#define STOP_GRACE (5 * USEC_PER_SEC)
#define POLL_INTERVAL_MIN (10 * USEC_PER_SEC)
/* Polls prompted by callbacks that cannot be verified: whoever can reach the
 * endpoint must not be able to spend the organisation's API budget (10
 * requests/s, shared with every other app) through us.  At most one per job
 * in PROMPT_JOB_INTERVAL, and PROMPT_RATE in any PROMPT_WINDOW over all jobs;
 * the rest are only counted. */
#define PROMPT_JOB_INTERVAL (10 * USEC_PER_SEC)
#define PROMPT_RATE 2
#define PROMPT_WINDOW USEC_PER_SEC
/* The log is compacted when it holds more than twice as many records as
 * there are jobs, plus this: about once each time the job count doubles. */
#define COMPACT_SLACK 1000

struct daemon;

/* The scheduling state of one unfinished job (job->userdata). */
struct jobctl {
	struct daemon *d;
	struct job *job;
	uint64_t not_before; /* monotonic: no submission before this */
	uint64_t poll_at;    /* realtime: when to ask Meraki, if still unfinished */
	unsigned polls;
	uint64_t prompted_at; /* monotonic: the last poll a callback prompted */
	bool in_flight;
	bool prompt_pending; /* the timer is due for a prompted poll */
	bool prompted;       /* the call in flight is a prompted poll */
	bool in_runq;
	bool orphan; /* the job ended while a call was in flight: freed when it returns */
	struct jobctl *rq_prev, *rq_next;
	sd_event_source *timer; /* poll and expiry, on CLOCK_REALTIME */
};

/* A callback answer that waits for the log to be synced up to seq. */
struct waiter {
	struct httpd_request *req;
	uint64_t seq;
	struct waiter *next;
};

/* A spool file to remove once the log is synced up to seq. */
struct taken {
	char *name;
	uint64_t seq;
	struct taken *next;
};

enum { CB_200, CB_400, CB_401, CB_404, CB_503, CB_MAX };
/* Why a prompted poll did not go. */
enum prompt_drop { PROMPT_DROP_IN_FLIGHT, PROMPT_DROP_JOB, PROMPT_DROP_RATE };

struct stats {
	uint64_t callbacks[CB_MAX]; /* answers given here; 405/413/415 are httpd's */
	uint64_t submissions[4]; /* by enum meraki_outcome */
	uint64_t polls;
	uint64_t prompted_polls;
	uint64_t prompts_dropped[3]; /* by enum prompt_drop */
	uint64_t syncs, sync_errors;
	uint64_t sync_usec;
	uint64_t rejected;
	uint64_t probes_answered, probes_refused;
};

/*
 * Refused callbacks are logged, but not without limit: whoever can reach the
 * endpoint could otherwise fill the journal, and spend our time writing it.
 * Up to REFUSALS_BURST lines in REFUSALS_INTERVAL; past that they are only
 * counted, and one line at the end of the interval says how many went
 * unlogged.  /metrics counts every one.
 */
#define REFUSALS_INTERVAL (10 * USEC_PER_SEC)
#define REFUSALS_BURST 20

struct refusals {
	uint64_t window_start; /* CLOCK_MONOTONIC */
	unsigned logged;
	uint64_t unlogged[3]; /* 400, 401, 404 */
	uint64_t unlogged_probes; /* selftest probes, answered or refused */
	sd_event_source *timer;
};

/*
 * The spool is taken in rounds: new/ is listed once, sorted, and the list
 * taken SCAN_BATCH names at a time, each batch committed before the next.
 * It is listed again only when the list is used up and inotify said that
 * something arrived, or on a timer after a failure of ours (out of
 * descriptors): a round that made no progress never starts another at once.
 * A file that can be neither taken nor moved to rejected/ is remembered by
 * name and inode and logged once.  Rejects are logged like refused
 * callbacks: up to REJECTS_BURST lines a REFUSALS_INTERVAL, then one line
 * that counts the rest; /metrics counts every one.
 */
#define SPOOL_RETRY_MIN (1 * USEC_PER_SEC)
#define SPOOL_RETRY_MAX (60 * USEC_PER_SEC)
#define SKIPPED_MAX 1024
#define REJECTS_BURST 20

struct skipped {
	char *name;
	uint64_t ino;
};

struct spool {
	char **names; /* this round's list */
	size_t n, next;
	bool relist;      /* something arrived since the list was made */
	uint64_t started; /* realtime: jobs created since were taken by this run */
	uint64_t backoff;
	sd_event_source *retry;
	struct skipped skipped[SKIPPED_MAX]; /* a ring: the oldest goes first */
	size_t skipped_next;
	uint64_t window_start; /* CLOCK_MONOTONIC */
	unsigned logged;
	uint64_t unlogged;
	sd_event_source *limit_timer;
};

struct daemon {
	struct config *cfg;
	char *api_key;
	bool api_key_from_env; /* read once: the environment block is wiped */
	char *static_secret;
	sd_event *event;
	struct joblog *log;
	struct job_table jobs;
	struct queue *queue;
	struct secret_key *key;
	struct secret_key *probe_key;
	struct meraki_client *meraki;
	struct httpd *httpd;
	struct pacer pacer;
	int listen_fd;
	bool listen_fd_ours;

	struct jobctl *rq_first, *rq_last;
	struct jobctl *orphans; /* ended jobs whose call is still in flight */
	size_t in_flight;
	struct waiter *waiters, **waiters_tail;
	struct taken *taken, **taken_tail;
	unsigned consecutive_429;

	sd_event_source *submit_timer, *commit_defer, *scan_defer, *commit_retry, *commit_io;
	uint64_t commit_t0; /* when the sync in flight began */
	sd_event_source *compact_io; /* the compaction child's end (maybe_compact) */
	uint64_t compact_t0, compact_before; /* when it began, and the records then */
	uint64_t drop_horizon; /* realtime: no final job was updated before (maybe_compact) */
	sd_event_source *inotify, *mhd_io, *mhd_timer, *curl_timer;
	sd_event_source *sig_term, *sig_int, *sig_hup, *stop_timer;

	bool ready;
	bool stopping;
	bool log_failing;
	bool scan_more;
	bool auth_error_logged;
	bool redirect_error_logged; /* until a reload */
	uint64_t commit_backoff;
	uint64_t last_status_notify;
	unsigned connection_limit;
	struct stats stats;
	struct refusals refusals;
	/* CLOCK_MONOTONIC starts of the last PROMPT_RATE prompted polls, the
	 * oldest at prompt_next. */
	uint64_t prompt_times[PROMPT_RATE];
	unsigned prompt_next;
	struct spool spool;
};

static void schedule_submit(struct daemon *d);
static void jobctl_arm(struct jobctl *c);
static void stop_if_idle(struct daemon *d);

static uint64_t rand64(void)
{
	uint64_t r = 0;
	(void)random_bytes(&r, sizeof(r));
	return r;
}

/* ---- the job log: record, commit, answer ---- */

static void enable_oneshot(sd_event_source *s) { (void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT); }

static void runq_remove(struct daemon *d, struct jobctl *c)
{
	if (!c->in_runq)
		return;
	if (c->rq_prev)
		c->rq_prev->rq_next = c->rq_next;
	else
		d->rq_first = c->rq_next;
	if (c->rq_next)
		c->rq_next->rq_prev = c->rq_prev;
	else
		d->rq_last = c->rq_prev;
	c->in_runq = false;
	c->rq_prev = c->rq_next = NULL;
}

static void jobctl_free(struct jobctl *c)
{
	struct daemon *d;

	if (!c)
		return;
	d = c->d;
	runq_remove(d, c);
	c->timer = sd_event_source_disable_unref(c->timer);
	c->job->userdata = NULL;
	if (c->in_flight) {
		/* The call's done function still holds c: it frees it. */
		c->orphan = true;
		c->rq_prev = NULL;
		c->rq_next = d->orphans;
		if (d->orphans)
			d->orphans->rq_prev = c;
		d->orphans = c;
		return;
	}
	free(c);
}

static void orphan_free(struct jobctl *c)
{
	struct daemon *d = c->d;

	if (c->rq_prev)
		c->rq_prev->rq_next = c->rq_next;
	else
		d->orphans = c->rq_next;
	if (c->rq_next)
		c->rq_next->rq_prev = c->rq_prev;
	free(c);
}

/* For a done function: true when the job ended meanwhile and c is gone. */
static bool jobctl_returned(struct jobctl *c)
{
	c->in_flight = false;
	c->d->in_flight--;
	if (!c->orphan)
		return false;
	struct daemon *d = c->d;
	schedule_submit(d);
	orphan_free(c);
	stop_if_idle(d);
	return true;
}

static void runq_append(struct daemon *d, struct jobctl *c)
{
	if (c->in_runq)
		return;
	c->rq_prev = d->rq_last;
	c->rq_next = NULL;
	if (d->rq_last)
		d->rq_last->rq_next = c;
	else
		d->rq_first = c;
	d->rq_last = c;
	c->in_runq = true;
}


static int jobctl_new(struct daemon *d, struct job *j)
{
	struct jobctl *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->d = d;
	c->job = j;
	j->userdata = c;
	if (j->state == JOB_QUEUED)
		runq_append(d, c);
	else
		c->poll_at = j->updated_at + j->duration * USEC_PER_SEC + d->cfg->wait_usec;
	jobctl_arm(c);
	return 0;
}

/* client: the address a callback came from, or NULL. */
static void log_job_event(const struct job *j, const struct job_event *ev, const char *client)
{
	const char *state = job_state_to_string(j->state);
	const char *from = client ? "callback from " : "from ";
	const char *source = client ? client : ev->source ? ev->source : "?";

	switch (ev->kind) {
	case JOB_EV_QUEUED:
		log_job(LOG_INFO, j->id, j->serial, state, "job %s: queued, blink %s for %us", j->id, j->serial,
			j->duration);
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
		log_job(LOG_INFO, j->id, j->serial, state, "job %s: Meraki reports %s (%s%s)", j->id,
			j->meraki_status, from, source);
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
static int record_from(struct daemon *d, const struct job_event *ev, struct job **ret_job, const char *client)
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

	r = job_table_check(&d->jobs, ev);
	if (r != 0) {
		if (ret_job)
			*ret_job = job_table_find(&d->jobs, ev->id);
		return r;
	}
	r = joblog_append(d->log, ev, &seq);
	if (r < 0)
		return r;
	r = job_table_apply(&d->jobs, ev, &j);
	if (r < 0) {
		/* The record is in the log and replay will apply it; the table
		 * cannot follow (out of memory).  Stop rather than diverge. */
		log_err("job %s: cannot apply an event that is already logged: %s; stopping", ev->id,
			strerror(-r));
		sd_event_exit(d->event, 1);
		return r;
	}
	j->log_seq = seq;
	enable_oneshot(d->commit_defer);
	log_job_event(j, ev, client);

	if (job_state_is_final(j->state))
		jobctl_free(j->userdata);
	else if (!j->userdata) {
		r = jobctl_new(d, j);
		if (r < 0)
			return r;
	}
	if (ret_job)
		*ret_job = j;
	return 0;
}

static int record(struct daemon *d, const struct job_event *ev, struct job **ret_job)
{
	return record_from(d, ev, ret_job, NULL);
}

static void mhd_kick(struct daemon *d);

static void waiters_answer(struct daemon *d, bool failed)
{
	uint64_t synced = joblog_synced_seq(d->log);
	struct waiter **p = &d->waiters;
	bool any = false;

	while (*p) {
		struct waiter *w = *p;
		if (w->seq <= synced || failed) {
			unsigned status = w->seq <= synced ? 200 : 503;
			d->stats.callbacks[status == 200 ? CB_200 : CB_503]++;
			httpd_reply(w->req, status);
			any = true;
			*p = w->next;
			free(w);
		} else
			p = &w->next;
	}
	d->waiters_tail = p;
	if (any)
		mhd_kick(d);
}

static void taken_remove(struct daemon *d)
{
	uint64_t synced = joblog_synced_seq(d->log);
	struct taken **p = &d->taken;
	bool any = false;

	while (*p) {
		struct taken *t = *p;
		if (t->seq <= synced) {
			int r = queue_remove(d->queue, t->name);
			if (r < 0)
				log_warn("cannot remove spool file \"%s/%s\": %s", queue_new_path(d->queue), t->name,
					 strerror(-r));
			any = true;
			*p = t->next;
			free(t->name);
			free(t);
		} else
			p = &t->next;
	}
	d->taken_tail = p;
	if (any) {
		int r = queue_sync(d->queue);
		if (r < 0)
			log_warn("cannot sync the spool directory: %s", strerror(-r));
	}
}

static void notify_status(struct daemon *d, bool force)
{
	uint64_t now = now_monotonic_usec();

	if (!force && now < d->last_status_notify + USEC_PER_SEC)
		return;
	d->last_status_notify = now;
	(void)sd_notifyf(false, "STATUS=%zu queued, %zu submitted, %zu complete, %zu failed, %zu expired",
			 d->jobs.n_by_state[JOB_QUEUED], d->jobs.n_by_state[JOB_SUBMITTED],
			 d->jobs.n_by_state[JOB_COMPLETE], d->jobs.n_by_state[JOB_FAILED],
			 d->jobs.n_by_state[JOB_EXPIRED]);
}

/* The end of a compaction whose snapshot a child wrote: the new log takes
 * over unless a sync is in flight (commit_done() calls again after it). */
static int compact_finish(struct daemon *d)
{
	int r = joblog_compact_finish(d->log);

	if (r == -EAGAIN || r == -EBUSY)
		return r;
	d->compact_io = sd_event_source_disable_unref(d->compact_io);
	if (r < 0) {
		log_warn("cannot compact the job log in \"%s\": %s; it keeps growing until a later try succeeds",
			 d->cfg->state_dir, strerror(-r));
		return r;
	}
	log_info("compacted the job log: %llu records to %llu (%llu of them committed meanwhile), %.3fs in the "
		 "background",
		 (unsigned long long)d->compact_before, (unsigned long long)joblog_records(d->log),
		 (unsigned long long)joblog_compact_carried(d->log),
		 (double)(now_monotonic_usec() - d->compact_t0) / USEC_PER_SEC);
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
	uint64_t before = joblog_records(d->log), now, t0;
	bool grown = before >= 2 * (uint64_t)d->jobs.n_jobs + COMPACT_SLACK, old = false;
	size_t dropped = 0;
	int r;

	if (joblog_compacting(d->log)) {
		(void)compact_finish(d);
		return;
	}
	/* After every commit: the common answer costs two comparisons. */
	if ((!grown && !at_start) || joblog_has_pending(d->log) || d->log_failing || joblog_syncing(d->log))
		return;
	now = now_realtime_usec();
	t0 = now_monotonic_usec();
	if (at_start) {
		d->drop_horizon = now;
		for (struct job *j = d->jobs.first; j; j = j->next)
			if (job_state_is_final(j->state))
				d->drop_horizon = MIN(d->drop_horizon, j->updated_at);
		old = d->drop_horizon + d->cfg->retention_usec < now;
	}
	if (!grown && !old)
		return;
	/* The walk over every job would hold the loop for longer than the
	 * child's whole snapshot does (600,000 jobs: tens of ms): skip it while
	 * no job can be past retention yet.  A job that turns final later is
	 * stamped after this walk, so the walk's time bounds it too. */
	if (d->drop_horizon + d->cfg->retention_usec < now) {
		d->drop_horizon = now;
		for (struct job *j = d->jobs.first, *next; j; j = next) {
			next = j->next;
			if (!job_state_is_final(j->state))
				continue;
			if (!j->userdata && j->updated_at + d->cfg->retention_usec < now) {
				job_table_remove(&d->jobs, j);
				dropped++;
			} else
				d->drop_horizon = MIN(d->drop_horizon, j->updated_at);
		}
	}
	r = at_start ? joblog_compact(d->log, &d->jobs) : joblog_compact_begin(d->log, &d->jobs);
	if (r == 1) {
		d->compact_t0 = t0;
		d->compact_before = before;
		r = sd_event_add_io(d->event, &d->compact_io, joblog_compact_fd(d->log), EPOLLIN, on_compact_io, d);
		if (r >= 0) {
			log_debug("compacting the job log: %llu records to %zu, %zu final job(s) past retention "
				  "dropped; the snapshot is written in the background",
				  (unsigned long long)before, d->jobs.n_jobs, dropped);
			return;
		}
		/* No way to hear of its end: give up this time (the old log is whole). */
		joblog_compact_abort(d->log);
	}
	if (r < 0) {
		log_warn("cannot compact the job log in \"%s\": %s; it keeps growing until a later try succeeds",
			 d->cfg->state_dir, strerror(-r));
		return;
	}
	log_info("compacted the job log: %llu records to %zu, %zu final job(s) past retention dropped, %.3fs",
		 (unsigned long long)before, d->jobs.n_jobs, dropped,
		 (double)(now_monotonic_usec() - t0) / USEC_PER_SEC);
}

static int on_commit_io(sd_event_source *s, int fd, uint32_t revents, void *ud);

/* The end of a commit (r its result; t0 when it began), or, with nothing to
 * write, the moment to keep the promises that waited for earlier ones. */
static int commit_done(struct daemon *d, int r, uint64_t t0)
{
	if (t0) {
		d->stats.syncs++;
		d->stats.sync_usec += now_monotonic_usec() - t0;
		if (r < 0) {
			d->stats.sync_errors++;
			if (!d->log_failing)
				log_err("cannot write the job log in \"%s\": %s; answering callbacks 503 and holding "
					"the queue until it can (free space on that file system)",
					d->cfg->state_dir, strerror(-r));
			d->log_failing = true;
			waiters_answer(d, true);
			d->commit_backoff = d->commit_backoff ? MIN(d->commit_backoff * 2, COMMIT_RETRY_MAX)
							      : COMMIT_RETRY_MIN;
			(void)sd_event_source_set_time_relative(d->commit_retry, d->commit_backoff);
			enable_oneshot(d->commit_retry);
			return r;
		}
		if (d->log_failing) {
			log_notice("the job log is writable again; taking requests");
			d->log_failing = false;
			d->commit_backoff = 0;
			(void)sd_event_source_set_enabled(d->commit_retry, SD_EVENT_OFF);
			enable_oneshot(d->scan_defer);
		}
	}
	/* Everything synced is durable: keep the promises that waited for it. */
	waiters_answer(d, false);
	taken_remove(d);
	if (d->scan_more) {
		d->scan_more = false;
		enable_oneshot(d->scan_defer);
	}
	schedule_submit(d);
	maybe_compact(d, false);
	notify_status(d, false);
	/* What came in while the disk synced is the next batch. */
	if (joblog_has_pending(d->log))
		enable_oneshot(d->commit_defer);
	return 0;
}

/* Starts a commit of everything appended.  The sync runs while the loop goes
 * on (on_commit_io ends it); with wait, or without asynchronous syncs, it
 * ends here.  One batch at a time: one in flight takes the next when it
 * ends. */
static int do_commit(struct daemon *d, bool wait)
{
	uint64_t t0;
	int r;

	if (joblog_syncing(d->log)) {
		if (!wait)
			return 0;
		r = joblog_commit(d->log); /* waits for the one in flight, then the rest */
		return commit_done(d, r, d->commit_t0);
	}
	if (!joblog_has_pending(d->log))
		return commit_done(d, 0, 0);
	t0 = now_monotonic_usec();
	r = wait ? joblog_commit(d->log) : joblog_commit_start(d->log);
	if (r != 1)
		return commit_done(d, r, t0);
	d->commit_t0 = t0;
	if (!d->commit_io) {
		r = sd_event_add_io(d->event, &d->commit_io, joblog_commit_fd(d->log), EPOLLIN, on_commit_io, d);
		if (r < 0) {
			/* No way to hear of its end: wait for it here. */
			log_warn("cannot watch the job log's syncs: %s; syncing in place", strerror(-r));
			return commit_done(d, joblog_commit(d->log), t0);
		}
		/* Before the requests that wait for it, but after the requests
		 * already read: they join the next batch. */
		(void)sd_event_source_set_priority(d->commit_io, SD_EVENT_PRIORITY_NORMAL - 1);
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
	r = joblog_commit_finish(d->log);
	if (r == -EAGAIN)
		return 0;
	(void)commit_done(d, r, d->commit_t0);
	return 0;
}

static int on_commit(sd_event_source *s, void *ud)
{
	(void)s;
	(void)do_commit(ud, false);
	return 0;
}

static int on_commit_retry(sd_event_source *s, uint64_t usec, void *ud)
{
	(void)s;
	(void)usec;
	(void)do_commit(ud, false);
	return 0;
}

/* ---- the spool ---- */

static int take_later(struct daemon *d, const char *name, uint64_t seq)
{
	struct taken *t = calloc(1, sizeof(*t));

	if (!t || !(t->name = strdup(name))) {
		free(t);
		return -ENOMEM;
	}
	t->seq = seq;
	*d->taken_tail = t;
	d->taken_tail = &t->next;
	return 0;
}

static void rejects_flush(struct daemon *d, uint64_t now)
{
	struct spool *sp = &d->spool;

	if (sp->unlogged > 0)
		log_notice("%llu more spool file(s) rejected or skipped in the last %llus not logged one by one; "
			   "/metrics counts them all, rejected/NAME.reason says why",
			   (unsigned long long)sp->unlogged,
			   (unsigned long long)((now - sp->window_start) / USEC_PER_SEC));
	sp->unlogged = 0;
	sp->logged = 0;
	sp->window_start = now;
	(void)sd_event_source_set_enabled(sp->limit_timer, SD_EVENT_OFF);
}

static int on_rejects_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	struct daemon *d = ud;
	uint64_t now = usec;

	(void)s;
	(void)sd_event_now(d->event, CLOCK_MONOTONIC, &now);
	rejects_flush(d, now);
	return 0;
}

/* Whether a reject may have its own log line. */
static bool reject_may_log(struct daemon *d)
{
	struct spool *sp = &d->spool;
	uint64_t now = 0;

	(void)sd_event_now(d->event, CLOCK_MONOTONIC, &now);
	if (now >= sp->window_start + REFUSALS_INTERVAL)
		rejects_flush(d, now);
	if (sp->logged < REJECTS_BURST) {
		sp->logged++;
		return true;
	}
	if (sp->unlogged++ == 0) {
		(void)sd_event_source_set_time(sp->limit_timer, sp->window_start + REFUSALS_INTERVAL);
		enable_oneshot(sp->limit_timer);
	}
	return false;
}

static bool spool_skipped(struct daemon *d, const char *name, uint64_t ino)
{
	for (size_t i = 0; i < SKIPPED_MAX; i++)
		if (d->spool.skipped[i].name && d->spool.skipped[i].ino == ino &&
		    strcmp(d->spool.skipped[i].name, name) == 0)
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
	struct spool *sp = &d->spool;

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
	struct skipped *k = &d->spool.skipped[d->spool.skipped_next];

	free(k->name);
	k->name = strdup(name); /* out of memory: logged again next round */
	k->ino = ino;
	d->spool.skipped_next = (d->spool.skipped_next + 1) % SKIPPED_MAX;
}

/* Moves a bad file to rejected/ (made durable once a batch), or, where even
 * that fails, leaves it to be skipped from now on. */
static void reject(struct daemon *d, const char *name, uint64_t ino, const char *reason)
{
	int r = queue_reject(d->queue, name, reason);

	if (r == -ENOENT)
		return; /* gone meanwhile: its producer took it back */
	d->stats.rejected++;
	if (r < 0)
		spool_skip(d, name, ino);
	if (!reject_may_log(d))
		return;
	if (r < 0)
		log_err("spool file \"%s/%s\" is bad (%s) and cannot be moved to rejected/: %s; skipping it from "
			"now on",
			queue_new_path(d->queue), name, reason, strerror(-r));
	else
		log_warn("spool file \"%s/%s\" rejected: %s (moved to rejected/%s)", queue_new_path(d->queue), name,
			 reason, r > 0 ? "; its reason file could not be written" : "");
}

static void finish_job(struct daemon *d, struct job *j, enum job_state state, const char *status,
		       const char *error, const char *source, unsigned attempts);

static void take_cancel(struct daemon *d, const char *name, uint64_t ino, const char *id)
{
	struct job *j = job_table_find(&d->jobs, id);
	struct jobctl *c = j ? j->userdata : NULL;

	if (!j) {
		reject(d, name, ino, "cancel names no known job");
		return;
	}
	if (j->state != JOB_QUEUED || (c && c->in_flight))
		log_notice("job %s: cancel request ignored, the job is %s", id,
			   c && c->in_flight ? "being submitted" : job_state_to_string(j->state));
	else
		finish_job(d, j, JOB_FAILED, NULL, "canceled", "cancel", 0);
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

	r = queue_file_ino(d->queue, name, &ino);
	if (r == -ENOENT)
		return 0;
	if (queue_error_is_transient(r))
		return r;
	if (r == 0 && spool_skipped(d, name, ino))
		return 0;
	r = queue_read(d->queue, name, &req, &reason);
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
	j = job_table_find(&d->jobs, req.id);
	if (j) {
		/* The same request, taken by an earlier run that stopped before
		 * it removed the file: a job from before this run, no younger
		 * than the file, for the same blink.  Anything else is a
		 * producer reusing an id, and must not vanish unseen. */
		if (j->created_at < d->spool.started && req.mtime <= j->created_at &&
		    strcmp(j->serial, req.serial) == 0 && j->duration == req.duration)
			(void)take_later(d, name, j->log_seq);
		else
			reject(d, name, ino, "its id is already used by another job");
		return 0;
	}
	struct job_event ev = {
		.ts = now_realtime_usec(),
		.id = req.id,
		.kind = JOB_EV_QUEUED,
		.serial = req.serial,
		.duration = req.duration,
		.source = "queue",
	};
	r = record(d, &ev, &j);
	if (r < 0) {
		log_err("cannot queue spool file \"%s/%s\": %s", queue_new_path(d->queue), name, strerror(-r));
		d->spool.relist = true; /* it waits for the log: look again then */
		return 0;
	}
	(void)take_later(d, name, j->log_seq);
	return 0;
}

static void spool_names_drop(struct spool *sp)
{
	queue_names_free(sp->names);
	sp->names = NULL;
	sp->n = sp->next = 0;
}

/* A failure of ours (r): look again later, ever less often while it lasts. */
static void spool_retry(struct daemon *d, int r, const char *what)
{
	struct spool *sp = &d->spool;

	sp->backoff = sp->backoff ? MIN(sp->backoff * 2, SPOOL_RETRY_MAX) : SPOOL_RETRY_MIN;
	log_err("cannot %s the spool \"%s\": %s; trying again in %llus", what, queue_new_path(d->queue),
		strerror(-r), (unsigned long long)(sp->backoff / USEC_PER_SEC));
	(void)sd_event_source_set_time_relative(sp->retry, sp->backoff);
	enable_oneshot(sp->retry);
}

static int on_spool_retry(sd_event_source *s, uint64_t usec, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	(void)usec;
	d->spool.relist = true;
	enable_oneshot(d->scan_defer);
	return 0;
}

static int on_scan(sd_event_source *s, void *ud)
{
	struct daemon *d = ud;
	struct spool *sp = &d->spool;
	size_t end;
	int r = 0, k;

	(void)s;
	if (d->stopping || d->log_failing)
		return 0;
	if (d->taken) {
		/* Files of the last batch wait for their commit: scan after it. */
		d->scan_more = true;
		enable_oneshot(d->commit_defer);
		return 0;
	}
	if (sp->next >= sp->n) {
		/* This round's list is used up: a new one only for news. */
		if (!sp->relist)
			return 0;
		sp->relist = false;
		spool_names_drop(sp);
		r = queue_list(d->queue, SIZE_MAX, &sp->names, &sp->n);
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
	}
	/* The batch's rejects durable at once: one sync, not one a file. */
	k = queue_reject_sync(d->queue);
	if (k < 0)
		log_warn("cannot sync the spool's rejected/: %s", strerror(-k));
	if (r < 0)
		spool_retry(d, r, "read a file in");
	else
		sp->backoff = 0;
	/* The rest of the list, or news: the next batch once this one is
	 * durable. */
	d->scan_more = r >= 0 && (sp->next < sp->n || sp->relist);
	if (joblog_has_pending(d->log) || d->taken)
		enable_oneshot(d->commit_defer);
	else if (d->scan_more)
		enable_oneshot(d->scan_defer);
	return 0;
}

static int on_inotify(sd_event_source *s, const struct inotify_event *ev, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	(void)ev; /* any event, IN_Q_OVERFLOW included, means: look again */
	d->spool.relist = true;
	enable_oneshot(d->scan_defer);
	return 0;
}

/* ---- Meraki: submissions and polls ---- */

static void callback_url(struct daemon *d, const char *id, struct strbuf *sb)
{
	(void)strbuf_addf(sb, "%s%s%s", d->cfg->public_url, CALLBACK_PATH_PREFIX, id);
}

/* attempts: the count to record with it, 0 for none. */
static void finish_job(struct daemon *d, struct job *j, enum job_state state, const char *status,
		       const char *error, const char *source, unsigned attempts)
{
	struct job_event ev = {
		.ts = now_realtime_usec(),
		.id = j->id,
		.kind = JOB_EV_FINAL,
		.state = state,
		.meraki_status = status,
		.error = error,
		.source = source,
		.attempts = attempts,
	};
	int r = record(d, &ev, NULL);
	if (r < 0)
		log_err("job %s: cannot record %s: %s", j->id, job_state_to_string(state), strerror(-r));
}

static void on_blink_done(void *ud, const struct meraki_result *res)
{
	struct jobctl *c = ud;
	struct daemon *d = c->d;
	struct job *j = c->job;
	uint64_t now = now_monotonic_usec();
	unsigned attempts = j->attempts + 1;
	int r;

	d->stats.submissions[res->outcome]++;
	/* The interval counts again from the answer: the API measures between
	 * arrivals, and network jitter must never bring two closer than that. */
	(void)pacer_note(&d->pacer, j->serial, now);
	if (jobctl_returned(c))
		return;
	if (res->outcome != MERAKI_RATE_LIMITED)
		d->consecutive_429 = 0;

	switch (res->outcome) {
	case MERAKI_OK: {
		struct job_event ev = {
			.ts = now_realtime_usec(),
			.id = j->id,
			.kind = JOB_EV_SUBMITTED,
			.leds_blink_id = res->leds_blink_id,
			.meraki_status = meraki_status_is_valid(res->status) && !meraki_status_is_final(res->status)
						 ? res->status
						 : NULL,
			.attempts = attempts,
			.source = "api",
		};
		r = record(d, &ev, NULL);
		if (r < 0) {
			log_err("job %s: cannot record the submission: %s", j->id, strerror(-r));
			break;
		}
		if (r == 0 && j->userdata) {
			runq_remove(d, c);
			c->poll_at = now_realtime_usec() + j->duration * USEC_PER_SEC + d->cfg->wait_usec;
			jobctl_arm(c);
		}
		if (meraki_status_is_final(res->status))
			finish_job(d, j, strcmp(res->status, "complete") == 0 ? JOB_COMPLETE : JOB_FAILED, res->status,
				   res->error, "api", 0);
		break;
	}
	case MERAKI_RATE_LIMITED: {
		uint64_t wait = res->retry_after_usec != UINT64_MAX
					? res->retry_after_usec
					: backoff_usec(++d->consecutive_429, d->cfg->retry_initial_usec,
						       d->cfg->retry_max_usec, rand64());
		/* The limit is the API's, not the job's: hold everything. */
		pacer_pause(&d->pacer, now + wait);
		log_warn("Meraki answered 429 (rate limited); holding submissions for %.1fs",
			 (double)wait / USEC_PER_SEC);
		break;
	}
	case MERAKI_RETRY:
		if (attempts >= d->cfg->max_attempts) {
			_cleanup_free_ char *msg = NULL;
			/* %.900s: within JOB_TEXT_MAX; the API text may be cut short. */
			if (asprintf(&msg, "gave up after %u attempts: %.900s", attempts,
				     res->error ? res->error : "no detail") < 0)
				msg = NULL;
			finish_job(d, j, JOB_FAILED, NULL, msg ? msg : res->error, "api", attempts);
		} else {
			struct job_event ev = {
				.ts = now_realtime_usec(),
				.id = j->id,
				.kind = JOB_EV_ATTEMPT,
				.attempts = attempts,
				.error = res->error,
				.source = "api",
			};
			r = record(d, &ev, NULL);
			if (r < 0)
				log_err("job %s: cannot record the attempt: %s", j->id, strerror(-r));
			c->not_before = now + backoff_usec(attempts, d->cfg->retry_initial_usec,
							   d->cfg->retry_max_usec, rand64());
		}
		break;
	case MERAKI_FAIL:
		if (res->auth_error && !d->auth_error_logged) {
			log_err("Meraki refused the API key (HTTP %ld: %s); every job will fail until the key is "
				"fixed (then: systemctl reload blinkhookd)",
				res->http_status, res->error ? res->error : "no detail");
			d->auth_error_logged = true;
		}
		if (res->foreign_redirect && !d->redirect_error_logged) {
			log_err("job %s: %s", j->id, res->error ? res->error : "redirect to another origin");
			d->redirect_error_logged = true;
		}
		finish_job(d, j, JOB_FAILED, NULL, res->error, "api", attempts);
		break;
	}
	schedule_submit(d);
	stop_if_idle(d);
}

static void submit(struct daemon *d, struct jobctl *c, uint64_t now)
{
	struct job *j = c->job;
	struct strbuf url = STRBUF_INIT;
	char secret[SECRET_MAX];
	struct meraki_blink_request req = {
		.serial = j->serial,
		.duration = j->duration,
		.http_server_id = d->cfg->http_server_id,
		.payload_template_id = d->cfg->payload_template_id,
	};
	int r;

	if (!d->cfg->http_server_id) {
		callback_url(d, j->id, &url);
		secret_for_job(d->key, j->id, j->nonce, secret);
		req.callback_url = url.buf;
		req.shared_secret = secret;
	}
	r = meraki_blink(d->meraki, &req, on_blink_done, c);
	secret_wipe(secret, sizeof(secret));
	strbuf_release(&url);
	(void)pacer_note(&d->pacer, j->serial, now);
	if (r < 0) {
		log_err("job %s: cannot start the request: %s", j->id, strerror(-r));
		c->not_before = now + d->cfg->retry_initial_usec;
		return;
	}
	c->in_flight = true;
	d->in_flight++;
}

/* Starts every submission that may go now and arms the timer for the next. */
static void schedule_submit(struct daemon *d)
{
	uint64_t now = now_monotonic_usec(), next = UINT64_MAX;

	if (d->stopping || d->log_failing || !d->ready)
		return;
	for (struct jobctl *c = d->rq_first; c && d->in_flight < MAX_IN_FLIGHT; c = c->rq_next) {
		uint64_t at;

		if (c->in_flight)
			continue;
		at = MAX(c->not_before, pacer_ready_at(&d->pacer, c->job->serial));
		if (at <= now) {
			submit(d, c, now);
			continue;
		}
		next = MIN(next, at);
		/* Globally paced: no later job can go before the pacer allows. */
		if (d->cfg->interval_scope == INTERVAL_SCOPE_GLOBAL && pacer_ready_at(&d->pacer, "") > now)
			break;
	}
	if (next == UINT64_MAX && d->rq_first && d->in_flight < MAX_IN_FLIGHT)
		next = pacer_ready_at(&d->pacer, "");
	if (next != UINT64_MAX && next > now) {
		(void)sd_event_source_set_time(d->submit_timer, next);
		enable_oneshot(d->submit_timer);
	}
}

static int on_submit_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	(void)s;
	(void)usec;
	schedule_submit(ud);
	return 0;
}

/* Records what a status request learned, as reported by source; true when
 * the job is final now (and its jobctl gone). */
static bool poll_record(struct daemon *d, struct job *j, const struct meraki_result *res, const char *source)
{
	if (res->outcome == MERAKI_OK && meraki_status_is_final(res->status)) {
		finish_job(d, j, strcmp(res->status, "complete") == 0 ? JOB_COMPLETE : JOB_FAILED, res->status,
			   strcmp(res->status, "failed") == 0 && !res->error ? "Meraki reported the blink as failed"
									       : res->error,
			   source, 0);
		return true;
	}
	if (res->outcome == MERAKI_OK && meraki_status_is_valid(res->status)) {
		struct job_event ev = {
			.ts = now_realtime_usec(),
			.id = j->id,
			.kind = JOB_EV_STATUS,
			.meraki_status = res->status,
			.source = source,
		};
		(void)record(d, &ev, NULL);
	} else if (res->outcome == MERAKI_FAIL)
		log_warn("job %s: polling its status failed: %s", j->id, res->error ? res->error : "no detail");
	return false;
}

static void on_poll_done(void *ud, const struct meraki_result *res)
{
	struct jobctl *c = ud;
	struct daemon *d = c->d;
	struct job *j = c->job;

	d->stats.polls++;
	if (jobctl_returned(c))
		return;
	if (poll_record(d, j, res, "poll")) {
		stop_if_idle(d);
		return;
	}
	c->polls++;
	c->poll_at = now_realtime_usec() +
		     (res->outcome == MERAKI_RATE_LIMITED && res->retry_after_usec != UINT64_MAX
			      ? res->retry_after_usec
			      : backoff_usec(c->polls, POLL_INTERVAL_MIN, MAX(d->cfg->retry_max_usec, POLL_INTERVAL_MIN),
					     rand64()));
	jobctl_arm(c);
	stop_if_idle(d);
}

/* A prompted poll's answer is recorded like any other; the regular polls
 * keep their schedule, except that none follows within POLL_INTERVAL_MIN. */
static void on_prompted_poll_done(void *ud, const struct meraki_result *res)
{
	struct jobctl *c = ud;
	struct daemon *d = c->d;
	struct job *j = c->job;
	uint64_t now = now_realtime_usec();

	d->stats.polls++;
	if (jobctl_returned(c))
		return;
	c->prompted = false;
	if (poll_record(d, j, res, "prompted poll")) {
		stop_if_idle(d);
		return;
	}
	c->poll_at = MAX(c->poll_at, now + (res->outcome == MERAKI_RATE_LIMITED && res->retry_after_usec != UINT64_MAX
						    ? res->retry_after_usec
						    : POLL_INTERVAL_MIN));
	jobctl_arm(c);
	stop_if_idle(d);
}

/* The timer found a prompted poll due: starts it if the job still wants one. */
static void prompted_poll_start(struct daemon *d, struct jobctl *c)
{
	struct job *j = c->job;
	int r;

	c->prompt_pending = false;
	if (j->state != JOB_SUBMITTED || !j->leds_blink_id || c->in_flight)
		return;
	r = meraki_get_blink(d->meraki, j->serial, j->leds_blink_id, on_prompted_poll_done, c);
	if (r < 0) {
		log_err("job %s: cannot start the status request: %s", j->id, strerror(-r));
		return;
	}
	c->in_flight = true;
	c->prompted = true;
	d->in_flight++;
	d->stats.prompted_polls++;
	log_debug("job %s: a callback without a valid secret prompted a status request", j->id);
}

/*
 * A callback for job j could not be verified: ask Meraki instead of
 * believing it, within the limits, on the job's own timer (so after this
 * answer went out, and never for a job that ended meanwhile).
 */
static void prompt_poll(struct daemon *d, struct job *j)
{
	struct jobctl *c = j->userdata;
	uint64_t now = 0;

	if (d->cfg->unverified != UNVERIFIED_POLL || !c || !c->timer)
		return;
	(void)sd_event_now(d->event, CLOCK_MONOTONIC, &now);
	if (c->in_flight || c->prompt_pending) {
		d->stats.prompts_dropped[PROMPT_DROP_IN_FLIGHT]++;
		return;
	}
	if (c->prompted_at && now < c->prompted_at + PROMPT_JOB_INTERVAL) {
		d->stats.prompts_dropped[PROMPT_DROP_JOB]++;
		return;
	}
	if (d->prompt_times[d->prompt_next] && now < d->prompt_times[d->prompt_next] + PROMPT_WINDOW) {
		d->stats.prompts_dropped[PROMPT_DROP_RATE]++;
		return;
	}
	d->prompt_times[d->prompt_next] = now;
	d->prompt_next = (d->prompt_next + 1) % PROMPT_RATE;
	c->prompted_at = now;
	c->prompt_pending = true;
	(void)sd_event_source_set_time(c->timer, 0);
	enable_oneshot(c->timer);
}

static int on_job_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	struct jobctl *c = ud;
	struct daemon *d = c->d;
	struct job *j = c->job;
	uint64_t now = now_realtime_usec();
	int r;

	(void)s;
	(void)usec;
	if (d->stopping || d->log_failing) {
		/* Try again shortly; nothing may be recorded now. */
		(void)sd_event_source_set_time_relative(c->timer, COMMIT_RETRY_MAX);
		enable_oneshot(c->timer);
		return 0;
	}
	if (now >= j->created_at + d->cfg->expire_usec) {
		char span[32], msg[96];
		format_timespan(span, sizeof(span), d->cfg->expire_usec);
		snprintf(msg, sizeof(msg), "no final status within %s", span);
		finish_job(d, j, JOB_EXPIRED, NULL, msg, "expiry", 0);
		return 0;
	}
	if (c->prompt_pending) {
		/* Fired early for it: the regular poll may not be due. */
		prompted_poll_start(d, c);
		if (!c->in_flight && now < c->poll_at) {
			jobctl_arm(c);
			return 0;
		}
	}
	if (c->in_flight && c->prompted)
		return 0; /* its done function arms the timer again; now it would only spin */
	if (j->state == JOB_SUBMITTED && j->leds_blink_id && !c->in_flight) {
		r = meraki_get_blink(d->meraki, j->serial, j->leds_blink_id, on_poll_done, c);
		if (r >= 0) {
			c->in_flight = true;
			d->in_flight++;
			log_info("job %s: no final status by callback yet; asking Meraki", j->id);
			return 0;
		}
		log_err("job %s: cannot start the status request: %s", j->id, strerror(-r));
		c->poll_at = now + POLL_INTERVAL_MIN;
	}
	jobctl_arm(c);
	return 0;
}

/* Arms the job's timer at its next deadline: a poll, or expiry. */
static void jobctl_arm(struct jobctl *c)
{
	struct daemon *d = c->d;
	uint64_t at = c->job->created_at + d->cfg->expire_usec;
	int r;

	if (c->job->state == JOB_SUBMITTED && c->poll_at)
		at = MIN(at, c->poll_at);
	if (!c->timer) {
		r = sd_event_add_time(d->event, &c->timer, CLOCK_REALTIME, at, USEC_PER_SEC, on_job_timer, c);
		if (r < 0) {
			log_err("job %s: cannot arm its timer: %s", c->job->id, strerror(-r));
			return;
		}
	} else
		(void)sd_event_source_set_time(c->timer, at);
	enable_oneshot(c->timer);
}

/* ---- callbacks from Meraki ---- */

/* Says how many refusals went unlogged, and starts a new interval at now. */
static void refusals_flush(struct daemon *d, uint64_t now)
{
	struct refusals *rf = &d->refusals;
	uint64_t n = rf->unlogged[0] + rf->unlogged[1] + rf->unlogged[2];

	if (n > 0)
		log_notice("%llu more refused callbacks in the last %llus not logged one by one "
			   "(400: %llu, 401: %llu, 404: %llu); /metrics counts them all",
			   (unsigned long long)n, (unsigned long long)((now - rf->window_start) / USEC_PER_SEC),
			   (unsigned long long)rf->unlogged[0], (unsigned long long)rf->unlogged[1],
			   (unsigned long long)rf->unlogged[2]);
	if (rf->unlogged_probes > 0)
		log_notice("%llu more selftest probes in the last %llus not logged one by one; /metrics counts "
			   "them all",
			   (unsigned long long)rf->unlogged_probes,
			   (unsigned long long)((now - rf->window_start) / USEC_PER_SEC));
	memset(rf->unlogged, 0, sizeof(rf->unlogged));
	rf->unlogged_probes = 0;
	rf->logged = 0;
	rf->window_start = now;
	(void)sd_event_source_set_enabled(rf->timer, SD_EVENT_OFF);
}

static int on_refusals_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	struct daemon *d = ud;
	uint64_t now = usec;

	(void)s;
	(void)sd_event_now(d->event, CLOCK_MONOTONIC, &now);
	refusals_flush(d, now);
	return 0;
}

/* Whether a refusal with this status may have its own log line; status 0
 * for a selftest probe, which shares the budget. */
static bool refusal_may_log(struct daemon *d, unsigned status)
{
	struct refusals *rf = &d->refusals;
	uint64_t now = 0;

	/* The loop's own clock: no system call a request. */
	(void)sd_event_now(d->event, CLOCK_MONOTONIC, &now);
	if (now >= rf->window_start + REFUSALS_INTERVAL)
		refusals_flush(d, now);
	if (rf->logged < REFUSALS_BURST) {
		rf->logged++;
		return true;
	}
	if (rf->unlogged[0] + rf->unlogged[1] + rf->unlogged[2] + rf->unlogged_probes == 0) {
		(void)sd_event_source_set_time(rf->timer, rf->window_start + REFUSALS_INTERVAL);
		enable_oneshot(rf->timer);
	}
	if (status == 0)
		rf->unlogged_probes++;
	else
		rf->unlogged[status == 400 ? 0 : status == 401 ? 1 : 2]++;
	return false;
}

static void on_callback(void *ud, struct httpd_request *req)
{
	struct daemon *d = ud;
	struct callback_verdict v;
	struct callback_env env = {
		.jobs = &d->jobs,
		.key = d->key,
		.static_secret = d->static_secret,
		.now = now_realtime_usec(),
	};
	const char *id = httpd_request_job_id(req), *body;
	struct job *j = NULL;
	size_t len;
	int r;

	body = httpd_request_body(req, &len);
	r = callback_evaluate(&env, id, body, len, httpd_request_secret_header(req), &v);
	if (r < 0) {
		d->stats.callbacks[CB_503]++;
		httpd_reply(req, 503);
		return;
	}
	if (v.http_status == 200)
		id = v.event.id; /* the receiver's URL names no job: the verdict does */
	if (v.http_status != 200) {
		/* callback_evaluate refuses with 400, 401 or 404 only. */
		d->stats.callbacks[v.http_status == 400 ? CB_400 : v.http_status == 401 ? CB_401 : CB_404]++;
		/* The id is the caller's text: print it only when it is a valid
		 * one.  What arrived is named, never a value: the body's shape
		 * and where a secret was presented. */
		if (refusal_may_log(d, v.http_status)) {
			if (job_id_is_valid(id))
				log_job(LOG_NOTICE, id, NULL, NULL,
					"callback for job %s from %s refused: %u, %s (shape: %s; secret in: %s)", id,
					httpd_request_client(req), v.http_status, v.reason,
					callback_shape_to_string(v.shape),
					callback_secret_sources_to_string(v.secret_sources));
			else
				log_notice("callback for job (invalid id) from %s refused: %u, %s (shape: %s; secret in: %s)",
					   httpd_request_client(req), v.http_status, v.reason,
					   callback_shape_to_string(v.shape),
					   callback_secret_sources_to_string(v.secret_sources));
		}
		httpd_reply(req, v.http_status);
		/* After the answer, which is the same whether or not the job
		 * exists: an unverified callback for a submitted job only makes
		 * us ask Meraki. */
		if (v.unverified)
			prompt_poll(d, job_table_find(&d->jobs, v.unverified->id));
		callback_verdict_release(&v);
		return;
	}
	if (v.record) {
		r = record_from(d, &v.event, &j, httpd_request_client(req));
		if (r < 0) {
			log_err("callback for job %s from %s: cannot record: %s", id, httpd_request_client(req),
				strerror(-r));
			d->stats.callbacks[CB_503]++;
			httpd_reply(req, 503);
			callback_verdict_release(&v);
			return;
		}
	}
	/* A callback that changed the job has its line from record_from; one
	 * that changed nothing (a repeat) is for debugging only. */
	if (!v.record || r != 0)
		log_job(LOG_DEBUG, id, NULL, NULL, "callback for job %s from %s: %s, %s", id,
			httpd_request_client(req), v.event.meraki_status, v.reason);
	callback_verdict_release(&v);
	if (!j)
		j = job_table_find(&d->jobs, id);
	if (!j || j->log_seq <= joblog_synced_seq(d->log)) {
		d->stats.callbacks[CB_200]++;
		httpd_reply(req, 200);
		return;
	}
	/* Answer once the status is durable: after the next group commit. */
	struct waiter *w = calloc(1, sizeof(*w));
	if (!w) {
		d->stats.callbacks[CB_503]++;
		httpd_reply(req, 503);
		return;
	}
	w->req = req;
	w->seq = j->log_seq;
	*d->waiters_tail = w;
	d->waiters_tail = &w->next;
	enable_oneshot(d->commit_defer);
}

/* ---- the selftest probe ---- */

/* A probe's nonce from its body, {"nonce":"..."}; NULL when malformed. */
static const char *probe_nonce(const struct json *v)
{
	const char *nonce = json_string(json_get(v, "nonce"), NULL);

	return nonce && probe_token_is_valid(nonce) ? nonce : NULL;
}

/* Answers a nonce with a MAC under the probe key that blinkhookctl reads,
 * and a salt of its own; nothing else, so that the answer proves to
 * blinkhookctl that the probe reached this daemon, and tells nobody else
 * which daemon it is.  Anyone may send one: it is logged and counted like a
 * refused callback. */
static void on_probe(void *ud, struct httpd_request *req)
{
	struct daemon *d = ud;
	_cleanup_json_ struct json *v = NULL;
	struct strbuf sb = STRBUF_INIT;
	char salt[PROBE_TOKEN_MAX], mac[SECRET_MAX];
	const char *nonce = NULL, *body;
	size_t len;

	body = httpd_request_body(req, &len);
	if (json_parse(body, len, 2, &v) >= 0)
		nonce = probe_nonce(v);
	if (!nonce) {
		d->stats.probes_refused++;
		if (refusal_may_log(d, 0))
			log_notice("selftest probe from %s refused: 400, no valid nonce", httpd_request_client(req));
		httpd_reply(req, 400);
		return;
	}
	if (probe_token_new(salt) < 0) {
		httpd_reply(req, 503);
		return;
	}
	probe_mac(d->probe_key, nonce, salt, mac);
	struct json_writer w;
	json_writer_init(&w, &sb);
	json_w_object_begin(&w);
	json_w_kstr(&w, "salt", salt);
	json_w_kstr(&w, "mac", mac);
	json_w_object_end(&w);
	if (json_writer_finish(&w) < 0 || strbuf_add(&sb, "\n", 1) < 0) {
		strbuf_release(&sb);
		httpd_reply(req, 503);
		return;
	}
	d->stats.probes_answered++;
	if (refusal_may_log(d, 0))
		log_info("selftest probe from %s answered", httpd_request_client(req));
	httpd_reply_json(req, 200, sb.buf);
	strbuf_release(&sb);
}

static void on_probe_refused(void *ud, const struct httpd_request *req, unsigned status)
{
	struct daemon *d = ud;

	d->stats.probes_refused++;
	if (refusal_may_log(d, 0))
		log_notice("selftest probe from %s refused: %u", httpd_request_client(req), status);
}

static bool on_healthy(void *ud)
{
	struct daemon *d = ud;
	return d->ready && !d->stopping && !d->log_failing;
}

static void on_metrics(void *ud, struct strbuf *sb)
{
	struct daemon *d = ud;
	static const char *const codes[CB_MAX] = {"200", "400", "401", "404", "503"};
	static const unsigned http_codes[] = {405, 413, 415};
	static const char *const outcomes[] = {"ok", "retry", "rate_limited", "fail"};

	strbuf_addstr(sb, "# HELP blinkhook_callbacks_total Callback requests by answer.\n"
			  "# TYPE blinkhook_callbacks_total counter\n");
	for (size_t i = 0; i < ELEMENTSOF(codes); i++)
		strbuf_addf(sb, "blinkhook_callbacks_total{code=\"%s\"} %llu\n", codes[i],
			    (unsigned long long)d->stats.callbacks[i]);
	for (size_t i = 0; i < ELEMENTSOF(http_codes); i++)
		strbuf_addf(sb, "blinkhook_callbacks_total{code=\"%u\"} %llu\n", http_codes[i],
			    (unsigned long long)httpd_refused(d->httpd, http_codes[i]));
	strbuf_addstr(sb, "# HELP blinkhook_jobs Jobs in the job table by state.\n# TYPE blinkhook_jobs gauge\n");
	for (unsigned s = 0; s < _JOB_STATE_MAX; s++)
		strbuf_addf(sb, "blinkhook_jobs{state=\"%s\"} %zu\n", job_state_to_string(s), d->jobs.n_by_state[s]);
	strbuf_addstr(sb, "# HELP blinkhook_submissions_total Blink submissions by outcome.\n"
			  "# TYPE blinkhook_submissions_total counter\n");
	for (size_t i = 0; i < ELEMENTSOF(outcomes); i++)
		strbuf_addf(sb, "blinkhook_submissions_total{outcome=\"%s\"} %llu\n", outcomes[i],
			    (unsigned long long)d->stats.submissions[i]);
	strbuf_addf(sb,
		    "# HELP blinkhook_prompted_polls_total Status polls prompted by callbacks that could not be "
		    "verified.\n# TYPE blinkhook_prompted_polls_total counter\nblinkhook_prompted_polls_total %llu\n"
		    "# HELP blinkhook_prompted_polls_dropped_total Prompted polls not sent, by the limit that "
		    "stopped them.\n# TYPE blinkhook_prompted_polls_dropped_total counter\n"
		    "blinkhook_prompted_polls_dropped_total{reason=\"in_flight\"} %llu\n"
		    "blinkhook_prompted_polls_dropped_total{reason=\"job_interval\"} %llu\n"
		    "blinkhook_prompted_polls_dropped_total{reason=\"rate\"} %llu\n",
		    (unsigned long long)d->stats.prompted_polls,
		    (unsigned long long)d->stats.prompts_dropped[PROMPT_DROP_IN_FLIGHT],
		    (unsigned long long)d->stats.prompts_dropped[PROMPT_DROP_JOB],
		    (unsigned long long)d->stats.prompts_dropped[PROMPT_DROP_RATE]);
	strbuf_addf(sb,
		    "# HELP blinkhook_polls_total Status polls sent.\n# TYPE blinkhook_polls_total counter\n"
		    "blinkhook_polls_total %llu\n"
		    "# HELP blinkhook_queue_depth Jobs waiting to be submitted.\n# TYPE blinkhook_queue_depth gauge\n"
		    "blinkhook_queue_depth %zu\n"
		    "# HELP blinkhook_spool_rejected_total Spool files moved to rejected/.\n"
		    "# TYPE blinkhook_spool_rejected_total counter\nblinkhook_spool_rejected_total %llu\n"
		    "# HELP blinkhook_connections_refused_total Connections refused for the per-address cap.\n"
		    "# TYPE blinkhook_connections_refused_total counter\nblinkhook_connections_refused_total %llu\n"
		    "# HELP blinkhook_connection_limit Connections served at once (from RLIMIT_NOFILE).\n"
		    "# TYPE blinkhook_connection_limit gauge\nblinkhook_connection_limit %u\n"
		    "# HELP blinkhook_requests_malformed_total Requests refused 400 and closed for their framing or "
		    "headers.\n"
		    "# TYPE blinkhook_requests_malformed_total counter\nblinkhook_requests_malformed_total %llu\n"
		    "# HELP blinkhook_probes_total Selftest probes by result.\n# TYPE blinkhook_probes_total counter\n"
		    "blinkhook_probes_total{result=\"answered\"} %llu\nblinkhook_probes_total{result=\"refused\"} %llu\n"
		    "# HELP blinkhook_log_syncs_total Job log group commits.\n# TYPE blinkhook_log_syncs_total counter\n"
		    "blinkhook_log_syncs_total %llu\n"
		    "# HELP blinkhook_log_sync_errors_total Failed job log commits.\n"
		    "# TYPE blinkhook_log_sync_errors_total counter\nblinkhook_log_sync_errors_total %llu\n"
		    "# HELP blinkhook_log_sync_seconds_total Time from each job-log write to the end of its sync.\n"
		    "# TYPE blinkhook_log_sync_seconds_total counter\nblinkhook_log_sync_seconds_total %.6f\n",
		    (unsigned long long)d->stats.polls, d->jobs.n_by_state[JOB_QUEUED],
		    (unsigned long long)d->stats.rejected, (unsigned long long)httpd_refused_connections(d->httpd),
		    d->connection_limit, (unsigned long long)httpd_refused_malformed(d->httpd),
		    (unsigned long long)d->stats.probes_answered, (unsigned long long)d->stats.probes_refused,
		    (unsigned long long)d->stats.syncs,
		    (unsigned long long)d->stats.sync_errors, (double)d->stats.sync_usec / USEC_PER_SEC);
}

static const struct httpd_ops httpd_ops = {
	.callback = on_callback,
	.metrics = on_metrics,
	.healthy = on_healthy,
	.probe = on_probe,
	.probe_refused = on_probe_refused,
};

/* ---- the loop's plumbing for libmicrohttpd and libcurl ---- */

static void mhd_rearm(struct daemon *d)
{
	uint64_t t = httpd_timeout(d->httpd);

	if (t == UINT64_MAX) {
		(void)sd_event_source_set_enabled(d->mhd_timer, SD_EVENT_OFF);
		return;
	}
	(void)sd_event_source_set_time_relative(d->mhd_timer, t);
	enable_oneshot(d->mhd_timer);
}

/* In external mode libmicrohttpd resumes connections only inside MHD_run(),
 * and nothing wakes the loop for it: run it on the next iteration. */
static void mhd_kick(struct daemon *d)
{
	if (!d->mhd_timer)
		return;
	(void)sd_event_source_set_time(d->mhd_timer, 0);
	enable_oneshot(d->mhd_timer);
}

static int on_mhd_io(sd_event_source *s, int fd, uint32_t revents, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	(void)fd;
	(void)revents;
	httpd_run(d->httpd);
	mhd_rearm(d);
	return 0;
}

static int on_mhd_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	(void)usec;
	return on_mhd_io(s, -1, 0, ud);
}

static int on_curl_io(sd_event_source *s, int fd, uint32_t revents, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	meraki_on_fd(d->meraki, fd, revents);
	return 0;
}

static int curl_watch(void *ud, int fd, uint32_t events, void **ctx)
{
	struct daemon *d = ud;
	sd_event_source *s = *ctx;
	int r;

	if (events == 0) {
		sd_event_source_disable_unref(s);
		*ctx = NULL;
		return 0;
	}
	if (s)
		return sd_event_source_set_io_events(s, events);
	r = sd_event_add_io(d->event, &s, fd, events, on_curl_io, d);
	if (r < 0)
		return r;
	*ctx = s;
	return 0;
}

static int on_curl_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	(void)usec;
	meraki_on_timer(d->meraki);
	return 0;
}

static int curl_set_timer(void *ud, uint64_t usec)
{
	struct daemon *d = ud;

	if (usec == UINT64_MAX)
		return sd_event_source_set_enabled(d->curl_timer, SD_EVENT_OFF);
	(void)sd_event_source_set_time_relative(d->curl_timer, usec);
	return sd_event_source_set_enabled(d->curl_timer, SD_EVENT_ONESHOT);
}

static const struct meraki_loop_ops meraki_ops = {
	.watch = curl_watch,
	.set_timer = curl_set_timer,
};

/* ---- start and stop ---- */

/* The end of a stop: what is recorded is committed and answered; everything
 * else is in the log or still in the spool, and the next start picks it up. */
static void finish_stop(struct daemon *d)
{
	(void)do_commit(d, true);
	waiters_answer(d, true);
	sd_event_exit(d->event, 0);
}

static void stop_if_idle(struct daemon *d)
{
	if (d->stopping && d->in_flight == 0)
		finish_stop(d);
}

static int on_stop_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	(void)usec;
	log_warn("%zu request(s) to Meraki still in flight after %llus; stopping without their answer (the "
		 "next start submits those jobs again)",
		 d->in_flight, (unsigned long long)(STOP_GRACE / USEC_PER_SEC));
	finish_stop(d);
	return 0;
}

static int on_stop(sd_event_source *s, const struct signalfd_siginfo *si, void *ud)
{
	struct daemon *d = ud;
	int r;

	(void)s;
	if (d->stopping) {
		log_info("received %s again; stopping now", strsignal((int)si->ssi_signo));
		finish_stop(d);
		return 0;
	}
	log_info("received %s; stopping", strsignal((int)si->ssi_signo));
	(void)sd_notify(false, "STOPPING=1");
	/* No new work from here: no intake, no submissions. Callbacks are still
	 * answered while the requests in flight finish. */
	d->stopping = true;
	if (d->in_flight == 0) {
		finish_stop(d);
		return 0;
	}
	log_info("waiting up to %llus for %zu request(s) to Meraki in flight",
		 (unsigned long long)(STOP_GRACE / USEC_PER_SEC), d->in_flight);
	r = sd_event_add_time_relative(d->event, &d->stop_timer, CLOCK_MONOTONIC, STOP_GRACE, 0, on_stop_timer, d);
	if (r < 0)
		finish_stop(d);
	return 0;
}

static bool str_eq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static void swap_str(char **a, char **b)
{
	char *t = *a;
	*a = *b;
	*b = t;
}

/*
 * SIGHUP: the config file and the API key again.  What can change while
 * running changes for what comes next; the listening address and the
 * directories need a restart and are kept, with a warning.  A config with an
 * error changes nothing.
 */
static void reload_config(struct daemon *d)
{
	struct config nc;
	char err[CONFIG_ERROR_MAX];
	char *secret = NULL;
	int r;

	if (config_init(&nc) < 0) {
		log_err("reload: out of memory; keeping the running configuration");
		return;
	}
	r = config_load(&nc, d->cfg->path, err);
	if (r >= 0 && nc.http_server_id && (r = config_load_callback_secret(&nc, &secret, err)) == -ENOENT)
		snprintf(err, sizeof(err), "http_server_id needs the receiver's secret");
	if (r < 0) {
		log_err("reload: %s; keeping the running configuration", err);
		config_release(&nc);
		return;
	}
	if (d->cfg->listen.is_unix != nc.listen.is_unix || !str_eq(d->cfg->listen.host, nc.listen.host) ||
	    d->cfg->listen.port != nc.listen.port || !str_eq(d->cfg->listen.path, nc.listen.path)) {
		log_warn("reload: [callback] listen changed; it takes effect at the next restart");
		struct listen_addr t = d->cfg->listen;
		d->cfg->listen = nc.listen;
		nc.listen = t;
	}
	if (!str_eq(d->cfg->queue_dir, nc.queue_dir)) {
		log_warn("reload: [queue] dir changed; it takes effect at the next restart");
		swap_str(&d->cfg->queue_dir, &nc.queue_dir);
	}
	if (!str_eq(d->cfg->state_dir, nc.state_dir)) {
		log_warn("reload: [state] dir changed; it takes effect at the next restart");
		swap_str(&d->cfg->state_dir, &nc.state_dir);
	}

	struct meraki_opts mo = {
		.base_url = nc.base_url,
		.ca_file = nc.ca_file,
		.timeout_usec = nc.request_timeout_usec,
	};
	struct httpd_opts ho = {
		.max_body = nc.max_body,
		.secret_header = nc.secret_header,
		.trusted_proxies = nc.trusted_proxies,
		.n_trusted_proxies = nc.n_trusted_proxies,
	};
	if (meraki_reconfigure(d->meraki, &mo) < 0 || httpd_reconfigure(d->httpd, &ho) < 0) {
		log_err("reload: out of memory; the configuration is partly applied");
		secret_free(secret);
		config_release(&nc);
		return;
	}
	d->redirect_error_logged = false;
	d->pacer.interval = nc.min_interval_usec;
	d->pacer.scope = nc.interval_scope;
	secret_free(d->static_secret);
	d->static_secret = secret;
	config_release(d->cfg);
	*d->cfg = nc;
	/* Deadlines follow the new wait and expire. */
	for (struct job *j = d->jobs.first; j; j = j->next)
		if (j->userdata)
			jobctl_arm(j->userdata);
	schedule_submit(d);
	log_info("reload: configuration from %s applied", d->cfg->path);
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *ud)
{
	struct daemon *d = ud;
	char err[CONFIG_ERROR_MAX], mask[16];
	const char *source;
	char *key = NULL;

	(void)s;
	(void)si;
	(void)sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)now_monotonic_usec());
	reload_config(d);
	/* The environment cannot change under a running process, and took
	 * precedence over a key file: a key from it stays (and was wiped
	 * from the environment block when it was read). */
	if (d->api_key_from_env) {
		api_key_mask(d->api_key, mask);
		log_info("reload: API key %s kept (the environment is read once, at start)", mask);
	} else if (config_load_api_key(d->cfg, &key, &source, err) < 0)
		log_err("reload: %s; keeping the current API key", err);
	else {
		api_key_mask(key, mask);
		if (meraki_set_api_key(d->meraki, key) >= 0) {
			log_info("reload: API key %s from %s", mask, source);
			d->auth_error_logged = false;
		}
		secret_free(key);
	}
	notify_status(d, true);
	(void)sd_notify(false, "READY=1");
	return 0;
}

/*
 * Raises the soft RLIMIT_NOFILE to the hard one (the daemon uses epoll, never
 * select, so more descriptors cost nothing), and returns the connections to
 * serve at once: what the limit leaves after the daemon's own descriptors,
 * so that a flood of connections never leaves it without one to take a spool
 * file, write its log or call the API.
 */
static unsigned connection_limit(void)
{
	struct rlimit rl;
	rlim_t n;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return CONNECTION_LIMIT_MIN;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit raised = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl.rlim_cur = rl.rlim_max;
	}
	n = rl.rlim_cur == RLIM_INFINITY ? CONNECTION_LIMIT_MAX + CONNECTION_FD_RESERVE : rl.rlim_cur;
	if (n < CONNECTION_LIMIT_MIN + CONNECTION_FD_RESERVE) {
		log_warn("only %llu file descriptors (ulimit -n); serving %u connections at once, which may leave "
			 "too few for the rest (set LimitNOFILE= or ulimit -n to 1024 or more)",
			 (unsigned long long)n, CONNECTION_LIMIT_MIN);
		return CONNECTION_LIMIT_MIN;
	}
	n = MIN(n - CONNECTION_FD_RESERVE, (rlim_t)CONNECTION_LIMIT_MAX);
	log_info("serving up to %llu connections at once (%llu file descriptors)", (unsigned long long)n,
		 (unsigned long long)rl.rlim_cur);
	return (unsigned)n;
}

static int open_listen_socket(struct daemon *d)
{
	const struct listen_addr *la = &d->cfg->listen;
	int n = sd_listen_fds(true), fd, r;

	if (n > 1)
		return log_errno(LOG_ERR, EINVAL, "systemd passed %d sockets; blinkhookd takes one", n);
	if (n == 1) {
		fd = SD_LISTEN_FDS_START;
		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
			return log_errno(LOG_ERR, EINVAL, "the socket systemd passed is not a listening stream socket");
		d->listen_fd = fd;
		d->listen_fd_ours = false;
		log_info("listening on the socket passed by systemd");
		return 0;
	}

	if (la->is_unix) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		struct stat st;

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", la->path);
		/* A socket left by an earlier run; anything else is not ours. */
		if (lstat(la->path, &st) == 0 && S_ISSOCK(st.st_mode))
			(void)unlink(la->path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return log_errno(LOG_ERR, errno, "cannot create a socket: %m");
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, SOMAXCONN) < 0) {
			r = -errno;
			close(fd);
			return log_errno(LOG_ERR, r, "cannot listen on \"%s\": %s", la->path, strerror(-r));
		}
		(void)chmod(la->path, 0660);
	} else {
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
		struct addrinfo *ai = NULL;
		char port[8];
		int one = 1;

		snprintf(port, sizeof(port), "%u", la->port);
		r = getaddrinfo(la->host, port, &hints, &ai);
		if (r != 0)
			return log_errno(LOG_ERR, EINVAL, "cannot resolve listen address \"%s\": %s", la->host,
					 gai_strerror(r));
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			r = -errno;
			freeaddrinfo(ai);
			return log_errno(LOG_ERR, r, "cannot create a socket: %s", strerror(-r));
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
			r = -errno;
			close(fd);
			freeaddrinfo(ai);
			return log_errno(LOG_ERR, r, "cannot listen on %s:%u: %s", la->host, la->port, strerror(-r));
		}
		freeaddrinfo(ai);
		log_info("listening on %s:%u", la->host, la->port);
	}
	d->listen_fd = fd;
	d->listen_fd_ours = true;
	return 0;
}

static int replay_one(const struct job_event *ev, void *ud)
{
	struct daemon *d = ud;
	int r = job_table_apply(&d->jobs, ev, NULL);

	/* A logged event that changes nothing is harmless (a repeat). */
	return r < 0 ? r : 0;
}

static int replay(struct daemon *d)
{
	struct joblog_info info;
	int r;

	r = joblog_replay(d->log, replay_one, d, &info);
	if (r == -EPROTONOSUPPORT)
		return log_errno(LOG_ERR, r,
				 "%s/%s: line %llu (byte offset %llu) has a record version this blinkhookd does not "
				 "know; run the newer blinkhookd that wrote it",
				 d->cfg->state_dir, JOBLOG_FILE, (unsigned long long)info.bad_line,
				 (unsigned long long)info.bad_offset);
	if (r < 0 && r != -EBADMSG && info.bad_line)
		return log_errno(LOG_ERR, r,
				 "%s/%s: line %llu (byte offset %llu) is a record this daemon cannot apply (%s); "
				 "copy the file aside and report it",
				 d->cfg->state_dir, JOBLOG_FILE, (unsigned long long)info.bad_line,
				 (unsigned long long)info.bad_offset, strerror(-r));
	if (r == -EBADMSG)
		return log_errno(LOG_ERR, r,
				 "%s/%s: line %llu (byte offset %llu) is damaged; "
				 "the daemon will not guess. Copy the file aside, then delete or repair that "
				 "line (blinkhookctl log shows what is readable) and start again",
				 d->cfg->state_dir, JOBLOG_FILE, (unsigned long long)info.bad_line,
				 (unsigned long long)info.bad_offset);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot read %s/%s: %s", d->cfg->state_dir, JOBLOG_FILE, strerror(-r));
	if (info.torn)
		log_warn("%s/%s: cut off a torn last record at byte offset %llu (%llu bytes; a crash during a "
			 "write). Nothing that was promised was in it.",
			 d->cfg->state_dir, JOBLOG_FILE, (unsigned long long)info.torn_offset,
			 (unsigned long long)info.torn_bytes);
	log_info("replayed %llu records: %zu jobs, %zu unfinished", (unsigned long long)info.records, d->jobs.n_jobs,
		 d->jobs.n_by_state[JOB_QUEUED] + d->jobs.n_by_state[JOB_SUBMITTED]);
	for (struct job *j = d->jobs.first; j; j = j->next)
		if (!job_state_is_final(j->state) && (r = jobctl_new(d, j)) < 0)
			return log_errno(LOG_ERR, r, "out of memory");
	return 0;
}

/* Meraki calls only https URLs on a public host: say so early. */
static void check_public_url(const struct config *c)
{
	static const char *const local[] = {"http://127.", "http://localhost", "http://[::1]"};

	if (!c->public_url || strncmp(c->public_url, "https://", 8) == 0)
		return;
	for (size_t i = 0; i < ELEMENTSOF(local); i++)
		if (strncmp(c->public_url, local[i], strlen(local[i])) == 0)
			return;
	log_warn("public_url \"%s\" is not https://: Meraki only calls https URLs with a valid certificate; put a "
		 "TLS reverse proxy in front (README: Behind a reverse proxy)",
		 c->public_url);
}

static int setup(struct daemon *d)
{
	char mask[16], ua[64];
	bool created = false;
	int r, fd;

	r = sd_event_default(&d->event);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot create the event loop: %s", strerror(-r));
	(void)sd_event_set_watchdog(d->event, true);

	r = mkdir_p(d->cfg->state_dir, 0750);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot create the state directory \"%s\": %s", d->cfg->state_dir,
				 strerror(-r));
	r = joblog_open(d->cfg->state_dir, &d->log);
	if (r == -EBUSY)
		return log_errno(LOG_ERR, r, "another blinkhookd is running on \"%s\"", d->cfg->state_dir);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot open the job log in \"%s\": %s", d->cfg->state_dir, strerror(-r));
	r = secret_key_load(d->cfg->state_dir, &d->key, &created);
	if (r == -EPERM)
		return log_errno(LOG_ERR, r, "\"%s/%s\" is readable by group or others; chmod 600 it",
				 d->cfg->state_dir, SECRET_KEY_FILE);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot load \"%s/%s\": %s (a damaged key: delete it; callbacks of "
				 "jobs in flight will then be refused and the jobs finish by polling)",
				 d->cfg->state_dir, SECRET_KEY_FILE, strerror(-r));
	if (created)
		log_info("created a new callback key \"%s/%s\"", d->cfg->state_dir, SECRET_KEY_FILE);
	r = probe_key_load(d->cfg->state_dir, true, &d->probe_key, &created);
	if (r == -EPERM)
		return log_errno(LOG_ERR, r, "\"%s/%s\" is writable by group or readable by others; chmod 640 it",
				 d->cfg->state_dir, PROBE_KEY_FILE);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot load \"%s/%s\": %s (a damaged key: delete it, a new one is made)",
				 d->cfg->state_dir, PROBE_KEY_FILE, strerror(-r));
	if (created)
		log_info("created a new selftest probe key \"%s/%s\"", d->cfg->state_dir, PROBE_KEY_FILE);
	check_public_url(d->cfg);
	if (d->cfg->http_server_id) {
		char err[CONFIG_ERROR_MAX];
		r = config_load_callback_secret(d->cfg, &d->static_secret, err);
		if (r < 0)
			return log_errno(LOG_ERR, r, "%s", r == -ENOENT ? "http_server_id needs the receiver's secret "
									  "(credential callback-secret or "
									  "shared_secret_file)"
									: err);
	}

	r = job_table_init(&d->jobs);
	if (r < 0)
		return log_errno(LOG_ERR, r, "out of memory");
	r = pacer_init(&d->pacer, d->cfg->min_interval_usec, d->cfg->interval_scope);
	if (r < 0)
		return log_errno(LOG_ERR, r, "out of memory");

	/* Event sources first: replay already schedules jobs on them. */
	if ((r = sd_event_add_defer(d->event, &d->commit_defer, on_commit, d)) < 0 ||
	    (r = sd_event_add_defer(d->event, &d->scan_defer, on_scan, d)) < 0 ||
	    (r = sd_event_add_time(d->event, &d->commit_retry, CLOCK_MONOTONIC, 0, 0, on_commit_retry, d)) < 0 ||
	    /* Accuracy 1 us, not sd-event's default 250 ms: these drive I/O that
	     * is due now (curl, libmicrohttpd) and the pacing of submissions. */
	    (r = sd_event_add_time(d->event, &d->submit_timer, CLOCK_MONOTONIC, 0, 1, on_submit_timer, d)) < 0 ||
	    (r = sd_event_add_time(d->event, &d->curl_timer, CLOCK_MONOTONIC, 0, 1, on_curl_timer, d)) < 0 ||
	    (r = sd_event_add_time(d->event, &d->mhd_timer, CLOCK_MONOTONIC, 0, 1, on_mhd_timer, d)) < 0 ||
	    (r = sd_event_add_time(d->event, &d->refusals.timer, CLOCK_MONOTONIC, 0, USEC_PER_SEC,
				   on_refusals_timer, d)) < 0 ||
	    (r = sd_event_add_time(d->event, &d->spool.limit_timer, CLOCK_MONOTONIC, 0, USEC_PER_SEC,
				   on_rejects_timer, d)) < 0 ||
	    (r = sd_event_add_time(d->event, &d->spool.retry, CLOCK_MONOTONIC, 0, 0, on_spool_retry, d)) < 0)
		return log_errno(LOG_ERR, r, "cannot set up the event loop: %s", strerror(-r));
	sd_event_source_set_enabled(d->commit_defer, SD_EVENT_OFF);
	sd_event_source_set_enabled(d->scan_defer, SD_EVENT_OFF);
	sd_event_source_set_enabled(d->commit_retry, SD_EVENT_OFF);
	sd_event_source_set_enabled(d->refusals.timer, SD_EVENT_OFF);
	sd_event_source_set_enabled(d->spool.limit_timer, SD_EVENT_OFF);
	sd_event_source_set_enabled(d->spool.retry, SD_EVENT_OFF);
	sd_event_source_set_enabled(d->submit_timer, SD_EVENT_OFF);
	sd_event_source_set_enabled(d->curl_timer, SD_EVENT_OFF);
	sd_event_source_set_enabled(d->mhd_timer, SD_EVENT_OFF);
	/* Commit after everything else that is ready: the batch grows. */
	sd_event_source_set_priority(d->commit_defer, SD_EVENT_PRIORITY_NORMAL + 10);

	r = replay(d);
	if (r < 0)
		return r;
	maybe_compact(d, true);

	d->spool.started = now_realtime_usec();
	r = queue_open(d->cfg->queue_dir, &d->queue);
	if (r == -ELOOP)
		return log_errno(LOG_ERR, r, "cannot open the spool \"%s\": it or its tmp/, new/ or rejected/ is a "
				 "symbolic link, which the daemon does not follow (make them directories)",
				 d->cfg->queue_dir);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot open the spool \"%s\": %s", d->cfg->queue_dir, strerror(-r));
	const char *lax = queue_lax_dir(d->queue);
	if (lax)
		log_warn("spool \"%s\": %s is writable by others than the daemon or not its own; only tmp/ and "
			 "new/ should be (see systemd/blinkhook.tmpfiles)",
			 d->cfg->queue_dir, lax);
	r = queue_sweep_tmp(d->queue, now_realtime_usec());
	if (r > 0)
		log_warn("moved %d stale file(s) from \"%s/tmp\" to rejected/ (a producer died while writing)", r,
			 d->cfg->queue_dir);
	r = sd_event_add_inotify(d->event, &d->inotify, queue_new_path(d->queue),
				 IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR, on_inotify, d);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot watch \"%s\": %s", queue_new_path(d->queue), strerror(-r));

	snprintf(ua, sizeof(ua), "blinkhook/%s", BLINKHOOK_VERSION);
	struct meraki_opts mo = {
		.base_url = d->cfg->base_url,
		.api_key = d->api_key,
		.ca_file = d->cfg->ca_file,
		.timeout_usec = d->cfg->request_timeout_usec,
		.user_agent = ua,
	};
	r = meraki_new(&mo, &meraki_ops, d, &d->meraki);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot set up the HTTP client: %s", strerror(-r));
	api_key_mask(d->api_key, mask);
	log_info("Meraki API at %s, key %s", d->cfg->base_url, mask);

	r = open_listen_socket(d);
	if (r < 0)
		return r;
	d->connection_limit = connection_limit();
	struct httpd_opts ho = {
		.listen_fd = d->listen_fd,
		.max_body = d->cfg->max_body,
		.secret_header = d->cfg->secret_header,
		.trusted_proxies = d->cfg->trusted_proxies,
		.n_trusted_proxies = d->cfg->n_trusted_proxies,
		.connection_limit = d->connection_limit,
		.per_ip_limit = CONNECTION_PER_IP_LIMIT,
		.proxy_limit = d->connection_limit / 2,
		.timeout_sec = CONNECTION_TIMEOUT_SEC,
	};
	r = httpd_new(&ho, &httpd_ops, d, &d->httpd);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot start the HTTP server");
	fd = httpd_epoll_fd(d->httpd);
	if (fd < 0 || (r = sd_event_add_io(d->event, &d->mhd_io, fd, EPOLLIN, on_mhd_io, d)) < 0)
		return log_errno(LOG_ERR, fd < 0 ? fd : r, "cannot watch the HTTP server");

	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);
	if ((r = sd_event_add_signal(d->event, &d->sig_term, SIGTERM, on_stop, d)) < 0 ||
	    (r = sd_event_add_signal(d->event, &d->sig_int, SIGINT, on_stop, d)) < 0 ||
	    (r = sd_event_add_signal(d->event, &d->sig_hup, SIGHUP, on_reload, d)) < 0)
		return log_errno(LOG_ERR, r, "cannot watch signals: %s", strerror(-r));

	/* The spool's current contents, before anything else. */
	d->spool.relist = true;
	(void)on_scan(NULL, d);
	d->ready = true;
	mhd_rearm(d);
	if (joblog_has_pending(d->log) || d->taken)
		enable_oneshot(d->commit_defer);
	else
		schedule_submit(d);
	return 0;
}

static void teardown(struct daemon *d)
{
	/* A count of unlogged refusals is not lost at a stop either. */
	if (d->refusals.timer)
		refusals_flush(d, now_monotonic_usec());
	if (d->spool.limit_timer)
		rejects_flush(d, now_monotonic_usec());
	spool_names_drop(&d->spool);
	for (size_t i = 0; i < SKIPPED_MAX; i++)
		free(d->spool.skipped[i].name);
	/* Waiters hold connections: answer them before the server goes. */
	if (d->log)
		waiters_answer(d, true);
	while (d->taken) {
		struct taken *t = d->taken;
		d->taken = t->next;
		free(t->name);
		free(t);
	}
	/* Calls in flight end here, without their done functions. */
	meraki_free(d->meraki);
	for (struct job *j = d->jobs.first; j; j = j->next)
		if (j->userdata) {
			((struct jobctl *)j->userdata)->in_flight = false;
			jobctl_free(j->userdata);
		}
	while (d->orphans) {
		struct jobctl *c = d->orphans;

		d->orphans = c->rq_next;
		free(c);
	}
	sd_event_source_disable_unref(d->mhd_io);
	sd_event_source_disable_unref(d->mhd_timer);
	httpd_free(d->httpd);
	if (d->listen_fd_ours && d->listen_fd >= 0)
		close(d->listen_fd);
	sd_event_source_disable_unref(d->curl_timer);
	sd_event_source_disable_unref(d->submit_timer);
	sd_event_source_disable_unref(d->commit_defer);
	sd_event_source_disable_unref(d->commit_io);
	sd_event_source_disable_unref(d->compact_io);
	sd_event_source_disable_unref(d->commit_retry);
	sd_event_source_disable_unref(d->refusals.timer);
	sd_event_source_disable_unref(d->spool.limit_timer);
	sd_event_source_disable_unref(d->spool.retry);
	sd_event_source_disable_unref(d->scan_defer);
	sd_event_source_disable_unref(d->inotify);
	sd_event_source_disable_unref(d->sig_term);
	sd_event_source_disable_unref(d->sig_int);
	sd_event_source_disable_unref(d->sig_hup);
	sd_event_source_disable_unref(d->stop_timer);
	queue_free(d->queue);
	pacer_release(&d->pacer);
	job_table_release(&d->jobs);
	secret_key_free(d->key);
	secret_key_free(d->probe_key);
	joblog_free(d->log);
	sd_event_unref(d->event);
	secret_free(d->static_secret);
	secret_free(d->api_key);
	config_release(d->cfg);
}

/* NOLINTNEXTLINE(readability-non-const-parameter): ours to wipe and free */
int daemon_run(struct config *cfg, char *api_key, const char *api_key_source)
{
	struct daemon d = {
		.cfg = cfg,
		.api_key = api_key,
		.api_key_from_env = api_key_source && strcmp(api_key_source, "environment") == 0,
		.listen_fd = -1,
	};
	int r;

	d.waiters_tail = &d.waiters;
	d.taken_tail = &d.taken;
	r = setup(&d);
	if (r >= 0) {
		notify_status(&d, true);
		(void)sd_notify(false, "READY=1");
		log_info("ready");
		r = sd_event_loop(d.event);
		if (r < 0)
			log_err("event loop failed: %s", strerror(-r));
		else if (r == 0 && joblog_has_pending(d.log) && joblog_commit(d.log) < 0)
			log_warn("stopping with unsynced records; callbacks for them were answered 503");
	}
	teardown(&d);
	return r < 0 ? r : (r > 0 ? -EIO : 0);
}
