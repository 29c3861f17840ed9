/* SPDX-License-Identifier: MIT */
/*
 * dispatch — what goes to Meraki and when: the run queue, each unfinished
 * job's control (struct jobctl, job->userdata), submissions, polls (regular,
 * and prompted by callbacks that cannot be verified), expiry, the pacer, and
 * the wiring of libcurl's sockets and timer into the loop.
 *
 * Owns d->dispatch (but for the organization cache, d->dispatch.org: its
 * sub-room resolve.c, which looks devices up by name or MAC) and every
 * jobctl.  Calls the ledger (record) and lifecycle (a stop waits for the
 * calls in flight).
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-event.h>

#include "blinkhook/callback.h"
#include "blinkhook/credentials.h"
#include "blinkhook/log.h"
#include "blinkhook/version.h"
#include "daemon-internal.h"

/* Submissions in flight at once (only matters with a short min_interval). */
#define MAX_IN_FLIGHT 16
#define POLL_INTERVAL_MIN (10 * USEC_PER_SEC)
/* Polls prompted by callbacks that cannot be verified: whoever can reach the
 * endpoint must not be able to spend the organisation's API budget (10
 * requests/s, shared with every other app) through us.  At most one per job
 * in PROMPT_JOB_INTERVAL, and PROMPT_RATE in any PROMPT_WINDOW over all jobs;
 * the rest are only counted. */
#define PROMPT_JOB_INTERVAL (10 * USEC_PER_SEC)
#define PROMPT_WINDOW USEC_PER_SEC

static const bool jobctl_legal[JC_STATE_MAX][JC_STATE_MAX] = {
	[JC_NEW] = {[JC_WAITING] = true, [JC_WATCHING] = true},
	[JC_WAITING] = {[JC_SUBMITTING] = true, [JC_WATCHING] = true},
	[JC_SUBMITTING] = {[JC_WAITING] = true, [JC_ORPHANED] = true},
	[JC_WATCHING] = {[JC_POLLING] = true},
	[JC_POLLING] = {[JC_WATCHING] = true, [JC_ORPHANED] = true},
	[JC_ORPHANED] = {[JC_DONE] = true},
};

/* Whether a call to Meraki is in flight for c. */
static bool jobctl_busy(const struct jobctl *c)
{
	return c->state == JC_SUBMITTING || c->state == JC_POLLING || c->state == JC_ORPHANED;
}

/* The one way a jobctl changes state; it keeps the count in flight. */
void jobctl_enter(struct jobctl *c, enum jobctl_state state)
{
	bool was_busy = jobctl_busy(c);

	assert(state < JC_STATE_MAX && jobctl_legal[c->state][state]);
	c->state = state;
	if (jobctl_busy(c) && !was_busy)
		c->d->dispatch.in_flight++;
	else if (!jobctl_busy(c) && was_busy) {
		assert(c->d->dispatch.in_flight > 0);
		c->d->dispatch.in_flight--;
	}
}

static void jobctl_arm(struct jobctl *c);

const struct meraki_ops meraki_client_ops = {
	.new_client = meraki_new,
	.free_client = meraki_free,
	.set_api_key = meraki_set_api_key,
	.reconfigure = meraki_reconfigure,
	.blink = meraki_blink,
	.get_blink = meraki_get_blink,
	.list_organizations = meraki_list_organizations,
	.find_devices = meraki_find_devices,
	.on_fd = meraki_on_fd,
	.on_timer = meraki_on_timer,
};

static uint64_t rand64(void)
{
	uint64_t r = 0;
	(void)random_bytes(&r, sizeof(r));
	return r;
}

static void runq_remove(struct daemon *d, struct jobctl *c)
{
	if (!c->in_runq)
		return;
	TAILQ_REMOVE(&d->dispatch.runq, c, link);
	c->in_runq = false;
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
	if (jobctl_busy(c)) {
		/* The call's done function still holds c: it frees it. */
		jobctl_enter(c, JC_ORPHANED);
		c->job = NULL;
		TAILQ_INSERT_HEAD(&d->dispatch.orphans, c, link);
		return;
	}
	free(c);
}

static void orphan_free(struct jobctl *c)
{
	TAILQ_REMOVE(&c->d->dispatch.orphans, c, link);
	free(c);
}

/* For a done function: true when the job ended meanwhile and c is gone;
 * otherwise c is back where the call began (waiting, or watching). */
bool jobctl_returned(struct jobctl *c)
{
	struct daemon *d = c->d;

	if (c->state != JC_ORPHANED) {
		jobctl_enter(c, c->state == JC_SUBMITTING ? JC_WAITING : JC_WATCHING);
		return false;
	}
	assert(!c->job);
	jobctl_enter(c, JC_DONE);
	dispatch_schedule(d);
	orphan_free(c);
	daemon_stop_if_idle(d);
	return true;
}

static void runq_append(struct daemon *d, struct jobctl *c)
{
	if (c->in_runq)
		return;
	TAILQ_INSERT_TAIL(&d->dispatch.runq, c, link);
	c->in_runq = true;
}
static int jobctl_new(struct daemon *d, struct job *j)
{
	struct jobctl *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->d = d;
	c->job = j;
	snprintf(c->serial, sizeof(c->serial), "%s", j->serial);
	j->userdata = c;
	if (j->state == JOB_QUEUED) {
		jobctl_enter(c, JC_WAITING);
		runq_append(d, c);
	} else {
		jobctl_enter(c, JC_WATCHING);
		c->poll_at = j->updated_at + j->duration * USEC_PER_SEC + d->cfg->wait_usec;
	}
	jobctl_arm(c);
	return 0;
}

static void callback_url(struct daemon *d, const char *id, struct strbuf *sb)
{
	(void)strbuf_addf(sb, "%s%s%s", d->cfg->public_url, CALLBACK_PATH_PREFIX, id);
}

/* attempts: the count to record with it, 0 for none. */
void dispatch_finish_job(struct daemon *d, struct job *j, enum job_state state, const char *status, const char *error,
			 const char *source, unsigned attempts)
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
	int r = ledger_record(d, &ev, NULL);
	if (r < 0)
		(void)log_errno(LOG_ERR, r, "job %s: cannot record %s: %m", j->id, job_state_to_string(state));
}

/* A waiting control whose job Meraki has (its answer, or a callback while
 * the request was in flight or the job waited for a retry) leaves the run
 * queue and watches: it is never submitted again. */
static void jobctl_watch_if_submitted(struct daemon *d, struct jobctl *c)
{
	struct job *j = c->job;

	if (c->state != JC_WAITING || j->state != JOB_SUBMITTED)
		return;
	runq_remove(d, c);
	jobctl_enter(c, JC_WATCHING);
	c->poll_at = now_realtime_usec() + j->duration * USEC_PER_SEC + d->cfg->wait_usec;
	jobctl_arm(c);
}

/* A call that failed (res->outcome is not MERAKI_OK): a submission (what
 * NULL) or a look-up (what says what was asked, and the job's error says
 * so too).  A 429 holds every call for its Retry-After (or the back-off),
 * without counting an attempt; a transport error or 5xx counts one of the
 * job's max_attempts and backs off; any other 4xx fails the job. */
void api_failure(struct daemon *d, struct jobctl *c, const struct meraki_result *res, const char *what)
{
	struct job *j = c->job;
	uint64_t now = now_monotonic_usec();
	unsigned attempts = j->attempts + 1;
	const char *detail = res->error ? res->error : "no detail";
	_cleanup_free_ char *msg = NULL;

	if (res->outcome != MERAKI_RATE_LIMITED)
		d->dispatch.consecutive_429 = 0;
	switch (res->outcome) {
	case MERAKI_RATE_LIMITED: {
		uint64_t wait = res->retry_after_usec != UINT64_MAX
					? res->retry_after_usec
					: backoff_usec(++d->dispatch.consecutive_429, d->cfg->retry_initial_usec,
						       d->cfg->retry_max_usec, rand64());
		/* The limit is the API's, not the job's: hold everything. */
		pacer_pause(&d->dispatch.pacer, now + wait);
		if (what)
			log_warn("Meraki answered 429 (rate limited) to %s; holding calls for %.1fs", what,
				 (double)wait / USEC_PER_SEC);
		else {
			log_warn("Meraki answered 429 (rate limited); holding submissions for %.1fs",
				 (double)wait / USEC_PER_SEC);
			jobctl_watch_if_submitted(d, c);
		}
		break;
	}
	case MERAKI_RETRY:
		/* A callback during the request: Meraki has the job already. */
		if (!what && j->state == JOB_SUBMITTED) {
			jobctl_watch_if_submitted(d, c);
			break;
		}
		if (attempts >= d->cfg->max_attempts) {
			/* Within JOB_TEXT_MAX; the API text may be cut short. */
			if ((what ? asprintf(&msg, "gave up after %u attempts: %s: %.800s", attempts, what, detail)
				  : asprintf(&msg, "gave up after %u attempts: %.900s", attempts, detail)) < 0)
				msg = NULL;
			dispatch_finish_job(d, j, JOB_FAILED, NULL, msg ? msg : res->error, "api", attempts);
		} else {
			if (what && asprintf(&msg, "%s: %.900s", what, detail) < 0)
				msg = NULL;
			struct job_event ev = {
				.ts = now_realtime_usec(),
				.id = j->id,
				.kind = JOB_EV_ATTEMPT,
				.attempts = attempts,
				.error = msg ? msg : res->error,
				.source = "api",
			};
			int r = ledger_record(d, &ev, NULL);
			if (r < 0)
				(void)log_errno(LOG_ERR, r, "job %s: cannot record the attempt: %m", j->id);
			c->not_before = now + backoff_usec(attempts, d->cfg->retry_initial_usec, d->cfg->retry_max_usec,
							   rand64());
		}
		break;
	case MERAKI_FAIL:
	default:
		if (res->auth_error && !d->dispatch.auth_error_logged) {
			log_err("Meraki refused the API key (HTTP %ld: %s); every job will fail until the key is "
				"fixed (then: systemctl reload blinkhookd)",
				res->http_status, detail);
			d->dispatch.auth_error_logged = true;
		}
		if (!what && res->foreign_redirect && !d->dispatch.redirect_error_logged) {
			log_err("job %s: %s", j->id, res->error ? res->error : "redirect to another origin");
			d->dispatch.redirect_error_logged = true;
		}
		if (what && asprintf(&msg, "%s: %.900s", what, detail) < 0)
			msg = NULL;
		dispatch_finish_job(d, j, JOB_FAILED, NULL, msg ? msg : res->error, "api", attempts);
		break;
	}
}

static void on_blink_done(void *ud, const struct meraki_result *res)
{
	struct jobctl *c = ud;
	struct daemon *d = c->d;
	struct job *j;
	uint64_t now = now_monotonic_usec();
	unsigned attempts;
	int r;

	d->dispatch.submissions[res->outcome]++;
	/* The interval counts again from the answer: the API measures between
	 * arrivals, and network jitter must never bring two closer than that.
	 * The serial is c's own copy: an orphan's job may be gone. */
	(void)pacer_note(&d->dispatch.pacer, c->serial, now);
	if (jobctl_returned(c))
		return;
	j = c->job;
	attempts = j->attempts + 1;
	if (res->outcome != MERAKI_RATE_LIMITED)
		d->dispatch.consecutive_429 = 0;

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
		r = ledger_record(d, &ev, NULL);
		/* Also when the record changes nothing (r == 1) or is refused
		 * (another ledsBlinkId): a callback during the request made the
		 * job submitted already. */
		if (j->userdata)
			jobctl_watch_if_submitted(d, c);
		if (r < 0) {
			(void)log_errno(LOG_ERR, r, "job %s: cannot record the submission: %m", j->id);
			break;
		}
		if (meraki_status_is_final(res->status))
			dispatch_finish_job(d, j, strcmp(res->status, "complete") == 0 ? JOB_COMPLETE : JOB_FAILED,
					    res->status, res->error, "api", 0);
		break;
	}
	case MERAKI_RATE_LIMITED:
	case MERAKI_RETRY:
	case MERAKI_FAIL:
		api_failure(d, c, res, NULL);
		break;
	}
	dispatch_schedule(d);
	daemon_stop_if_idle(d);
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

	/* Only a queued job goes to Meraki: a submitted one is watched. */
	assert(j->state == JOB_QUEUED);
	if (!d->cfg->http_server_id) {
		callback_url(d, j->id, &url);
		secret_for_job(d->key, j->id, j->nonce, secret);
		req.callback_url = url.buf;
		req.shared_secret = secret;
	}
	r = d->dispatch.ops->blink(d->dispatch.meraki, &req, on_blink_done, c);
	secret_wipe(secret, sizeof(secret));
	strbuf_release(&url);
	(void)pacer_note(&d->dispatch.pacer, j->serial, now);
	if (r < 0) {
		(void)log_errno(LOG_ERR, r, "job %s: cannot start the request: %m", j->id);
		c->not_before = now + d->cfg->retry_initial_usec;
		return;
	}
	jobctl_enter(c, JC_SUBMITTING);
}

/* A slot is used at least this long before the lease checked with it runs
 * out. */
#define SLOT_LEASE_MARGIN (500 * USEC_PER_MSEC)

/* With the PostgreSQL store, a submission also needs the slot every node
 * reserves in the database (one at a time): true with *at moved to the
 * slot's time when this node holds one for c (its job, in its scope);
 * false while one is being reserved (or cannot be now). */
static bool pg_slot(struct daemon *d, struct jobctl *c, uint64_t now, uint64_t *at)
{
	struct dispatch *dp = &d->dispatch;
	const char *key = d->cfg->interval_scope == INTERVAL_SCOPE_GLOBAL ? "" : c->job->serial;

	/* A slot nobody took (its job ended or passed to another node) is
	 * given up after a while: only this node waits for it. */
	if (dp->slot_at && now > dp->slot_at + 2 * d->cfg->min_interval_usec + 5 * USEC_PER_SEC)
		dp->slot_at = 0;
	/* The slot is its job's, and good only while the lease checked with
	 * it holds (less a margin for the request's start): a node stopped
	 * past it (SIGSTOP, a long pause) reserves again, and that fences the
	 * job anew; another node may have taken it meanwhile. */
	if (dp->slot_at) {
		const struct job *sj = job_table_find(&d->ledger.jobs, dp->slot_job);

		if (!sj || sj->foreign || sj->state != JOB_QUEUED ||
		    now + SLOT_LEASE_MARGIN >= MAX(dp->slot_lease_until, pgstore_lease_until(d)))
			dp->slot_at = 0;
	}
	if (dp->slot_at && strcmp(dp->slot_key, key) == 0 && strcmp(dp->slot_job, c->job->id) == 0) {
		*at = MAX(*at, dp->slot_at);
		return true;
	}
	if (!dp->slot_at && !dp->reserving && pgstore_reserve(d, key, c->job->id) >= 0) {
		dp->reserving = true;
		snprintf(dp->slot_key, sizeof(dp->slot_key), "%s", key);
		snprintf(dp->slot_job, sizeof(dp->slot_job), "%s", c->job->id);
	}
	return false;
}

void dispatch_reserved(struct daemon *d, int r, uint64_t delay_usec, uint64_t lease_usec)
{
	struct dispatch *dp = &d->dispatch;
	uint64_t now = now_monotonic_usec();

	dp->reserving = false;
	if (r >= 0) {
		dp->slot_at = MAX(now + delay_usec, 1);
		dp->slot_lease_until = now + lease_usec;
	} else if (r != -ESTALE && !TAILQ_EMPTY(&dp->runq)) {
		/* The store is lost: its return schedules again; meanwhile try
		 * in a second. */
		(void)sd_event_source_set_time(dp->submit_timer, now_monotonic_usec() + USEC_PER_SEC);
		enable_oneshot(dp->submit_timer);
		return;
	}
	dispatch_schedule(d);
}

/* Starts every submission that may go now and arms the timer for the next. */
void dispatch_schedule(struct daemon *d)
{
	uint64_t now = now_monotonic_usec(), next = UINT64_MAX;

	if (d->stopping || d->ledger.log_failing || !d->ready)
		return;
	/* cn: the next, taken first, since a look-up may end c's job. */
	for (struct jobctl *c = TAILQ_FIRST(&d->dispatch.runq), *cn; c && d->dispatch.in_flight < MAX_IN_FLIGHT;
	     c = cn) {
		uint64_t at;

		cn = TAILQ_NEXT(c, link);
		if (c->state != JC_WAITING)
			continue;
		if (!c->job->serial[0]) {
			/* A look-up waits only for what holds the API (a 429). */
			at = MAX(c->not_before, d->dispatch.pacer.paused_until);
			if (at <= now)
				resolve(d, c, now);
			else
				next = MIN(next, at);
			continue;
		}
		at = MAX(c->not_before, pacer_ready_at(&d->dispatch.pacer, c->job->serial));
		if (at <= now && d->pg && !pg_slot(d, c, now, &at)) {
			/* The reservation's answer schedules again; a slot
			 * reserved for a later job waits for that job. */
			if (d->cfg->interval_scope == INTERVAL_SCOPE_GLOBAL && !d->dispatch.slot_at)
				break;
			continue;
		}
		if (at <= now) {
			if (d->pg)
				d->dispatch.slot_at = 0; /* taken */
			submit(d, c, now);
			continue;
		}
		next = MIN(next, at);
		/* Globally paced: no later job can go before the pacer allows. */
		if (d->cfg->interval_scope == INTERVAL_SCOPE_GLOBAL && pacer_ready_at(&d->dispatch.pacer, "") > now)
			break;
	}
	if (next == UINT64_MAX && !TAILQ_EMPTY(&d->dispatch.runq) && d->dispatch.in_flight < MAX_IN_FLIGHT)
		next = pacer_ready_at(&d->dispatch.pacer, "");
	if (next != UINT64_MAX && next > now) {
		(void)sd_event_source_set_time(d->dispatch.submit_timer, next);
		enable_oneshot(d->dispatch.submit_timer);
	}
}

static int on_submit_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	(void)s;
	(void)usec;
	dispatch_schedule(ud);
	return 0;
}

/* Records what a status request learned, as reported by source; true when
 * the job is final now (and its jobctl gone). */
static bool poll_record(struct daemon *d, struct job *j, const struct meraki_result *res, const char *source)
{
	if (res->outcome == MERAKI_OK && meraki_status_is_final(res->status)) {
		dispatch_finish_job(d, j, strcmp(res->status, "complete") == 0 ? JOB_COMPLETE : JOB_FAILED, res->status,
				    strcmp(res->status, "failed") == 0 && !res->error
					    ? "Meraki reported the blink as failed"
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
		(void)ledger_record(d, &ev, NULL);
	} else if (res->outcome == MERAKI_FAIL)
		log_warn("job %s: polling its status failed: %s", j->id, res->error ? res->error : "no detail");
	return false;
}

static void on_poll_done(void *ud, const struct meraki_result *res)
{
	struct jobctl *c = ud;
	struct daemon *d = c->d;

	d->dispatch.polls++;
	if (jobctl_returned(c))
		return;
	if (poll_record(d, c->job, res, "poll")) {
		daemon_stop_if_idle(d);
		return;
	}
	c->polls++;
	c->poll_at = now_realtime_usec() +
		     (res->outcome == MERAKI_RATE_LIMITED && res->retry_after_usec != UINT64_MAX
			      ? res->retry_after_usec
			      : backoff_usec(c->polls, POLL_INTERVAL_MIN,
					     MAX(d->cfg->retry_max_usec, POLL_INTERVAL_MIN), rand64()));
	jobctl_arm(c);
	daemon_stop_if_idle(d);
}

/* A prompted poll's answer is recorded like any other; the regular polls
 * keep their schedule, except that none follows within POLL_INTERVAL_MIN. */
static void on_prompted_poll_done(void *ud, const struct meraki_result *res)
{
	struct jobctl *c = ud;
	struct daemon *d = c->d;
	uint64_t now = now_realtime_usec();

	d->dispatch.polls++;
	if (jobctl_returned(c))
		return;
	c->prompted = false;
	if (poll_record(d, c->job, res, "prompted poll")) {
		daemon_stop_if_idle(d);
		return;
	}
	c->poll_at = MAX(c->poll_at, now + (res->outcome == MERAKI_RATE_LIMITED && res->retry_after_usec != UINT64_MAX
						    ? res->retry_after_usec
						    : POLL_INTERVAL_MIN));
	jobctl_arm(c);
	daemon_stop_if_idle(d);
}

/* The timer found a prompted poll due: starts it if the job still wants one. */
static void prompted_poll_start(struct daemon *d, struct jobctl *c)
{
	struct job *j = c->job;
	int r;

	c->prompt_pending = false;
	if (j->state != JOB_SUBMITTED || !j->leds_blink_id || c->state != JC_WATCHING)
		return;
	r = d->dispatch.ops->get_blink(d->dispatch.meraki, j->serial, j->leds_blink_id, on_prompted_poll_done, c);
	if (r < 0) {
		(void)log_errno(LOG_ERR, r, "job %s: cannot start the status request: %m", j->id);
		return;
	}
	jobctl_enter(c, JC_POLLING);
	c->prompted = true;
	d->dispatch.prompted_polls++;
	log_debug("job %s: a callback without a valid secret prompted a status request", j->id);
}

/*
 * A callback for job j could not be verified: ask Meraki instead of
 * believing it, within the limits, on the job's own timer (so after this
 * answer went out, and never for a job that ended meanwhile).
 */
void dispatch_prompt_poll(struct daemon *d, const struct job *j)
{
	struct jobctl *c = j->userdata;
	uint64_t now = 0;

	if (d->cfg->unverified != UNVERIFIED_POLL || !c || !c->timer)
		return;
	(void)sd_event_now(d->event, CLOCK_MONOTONIC, &now);
	if (jobctl_busy(c) || c->prompt_pending) {
		d->dispatch.prompts_dropped[PROMPT_DROP_IN_FLIGHT]++;
		return;
	}
	if (c->prompted_at && now < c->prompted_at + PROMPT_JOB_INTERVAL) {
		d->dispatch.prompts_dropped[PROMPT_DROP_JOB]++;
		return;
	}
	if (d->dispatch.prompt_times[d->dispatch.prompt_next] &&
	    now < d->dispatch.prompt_times[d->dispatch.prompt_next] + PROMPT_WINDOW) {
		d->dispatch.prompts_dropped[PROMPT_DROP_RATE]++;
		return;
	}
	d->dispatch.prompt_times[d->dispatch.prompt_next] = now;
	d->dispatch.prompt_next = (d->dispatch.prompt_next + 1) % PROMPT_RATE;
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
	if (d->stopping || d->ledger.log_failing) {
		/* Try again shortly; nothing may be recorded now. */
		(void)sd_event_source_set_time_relative(c->timer, COMMIT_RETRY_MAX);
		enable_oneshot(c->timer);
		return 0;
	}
	if (now >= j->created_at + d->cfg->expire_usec) {
		char span[32], msg[96];
		format_timespan(span, sizeof(span), d->cfg->expire_usec);
		snprintf(msg, sizeof(msg), "no final status within %s", span);
		dispatch_finish_job(d, j, JOB_EXPIRED, NULL, msg, "expiry", 0);
		return 0;
	}
	if (c->prompt_pending) {
		/* Fired early for it: the regular poll may not be due. */
		prompted_poll_start(d, c);
		if (!jobctl_busy(c) && now < c->poll_at) {
			jobctl_arm(c);
			return 0;
		}
	}
	if (c->state == JC_POLLING && c->prompted)
		return 0; /* its done function arms the timer again; now it would only spin */
	if (j->state == JOB_SUBMITTED && j->leds_blink_id && c->state == JC_WATCHING) {
		r = d->dispatch.ops->get_blink(d->dispatch.meraki, j->serial, j->leds_blink_id, on_poll_done, c);
		if (r >= 0) {
			jobctl_enter(c, JC_POLLING);
			log_info("job %s: no final status by callback yet; asking Meraki", j->id);
			return 0;
		}
		(void)log_errno(LOG_ERR, r, "job %s: cannot start the status request: %m", j->id);
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
			(void)log_errno(LOG_ERR, r, "job %s: cannot arm its timer: %m", c->job->id);
			return;
		}
		(void)sd_event_source_set_description(c->timer, "job-timer");
	} else
		(void)sd_event_source_set_time(c->timer, at);
	enable_oneshot(c->timer);
}

static int on_curl_io(sd_event_source *s, int fd, uint32_t revents, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	d->dispatch.ops->on_fd(d->dispatch.meraki, fd, revents);
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
	(void)sd_event_source_set_description(s, "curl-io");
	*ctx = s;
	return 0;
}

static int on_curl_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	(void)usec;
	d->dispatch.ops->on_timer(d->dispatch.meraki);
	return 0;
}

static int curl_set_timer(void *ud, uint64_t usec)
{
	struct daemon *d = ud;

	if (usec == UINT64_MAX)
		return sd_event_source_set_enabled(d->dispatch.curl_timer, SD_EVENT_OFF);
	(void)sd_event_source_set_time_relative(d->dispatch.curl_timer, usec);
	return sd_event_source_set_enabled(d->dispatch.curl_timer, SD_EVENT_ONESHOT);
}

static const struct meraki_loop_ops meraki_loop_ops = {
	.watch = curl_watch,
	.set_timer = curl_set_timer,
};

/* The job changed (recorded, or replayed): a final one loses its control,
 * an unfinished one without it gets one. */
int dispatch_job_changed(struct daemon *d, struct job *j)
{
	assert(!j->userdata || ((struct jobctl *)j->userdata)->job == j);
	/* Another node's claim (PostgreSQL store): that node submits, polls
	 * and expires it; a call in flight here ends as an orphan's. */
	if (job_state_is_final(j->state) || j->foreign)
		jobctl_free(j->userdata);
	else if (!j->userdata)
		return jobctl_new(d, j);
	else
		jobctl_watch_if_submitted(d, j->userdata);
	return 0;
}

bool dispatch_job_busy(const struct job *j)
{
	const struct jobctl *c = j->userdata;

	return c && jobctl_busy(c);
}

int dispatch_init(struct daemon *d)
{
	struct dispatch *dp = &d->dispatch;
	int r;

	if (!dp->ops)
		dp->ops = &meraki_client_ops;
	TAILQ_INIT(&dp->runq);
	TAILQ_INIT(&dp->orphans);
	r = pacer_init(&dp->pacer, d->cfg->min_interval_usec, d->cfg->interval_scope);
	if (r < 0)
		return log_errno(LOG_ERR, r, "out of memory");
	/* Accuracy 1 us, not sd-event's default 250 ms: these drive I/O that
	 * is due now (curl) and the pacing of submissions. */
	if ((r = sd_event_add_time(d->event, &dp->submit_timer, CLOCK_MONOTONIC, 0, 1, on_submit_timer, d)) < 0 ||
	    (r = sd_event_add_time(d->event, &dp->curl_timer, CLOCK_MONOTONIC, 0, 1, on_curl_timer, d)) < 0)
		return log_errno(LOG_ERR, r, "cannot set up the event loop: %m");
	(void)sd_event_source_set_description(dp->submit_timer, "submit");
	(void)sd_event_source_set_description(dp->curl_timer, "curl-timer");
	(void)sd_event_source_set_enabled(dp->submit_timer, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(dp->curl_timer, SD_EVENT_OFF);
	return 0;
}

int dispatch_start(struct daemon *d)
{
	char mask[16], ua[64];
	int r;

	snprintf(ua, sizeof(ua), "blinkhook/%s", BLINKHOOK_VERSION);
	struct meraki_opts mo = {
		.base_url = d->cfg->base_url,
		.api_key = d->api_key,
		.ca_file = d->cfg->ca_file,
		.timeout_usec = d->cfg->request_timeout_usec,
		.user_agent = ua,
	};
	r = d->dispatch.ops->new_client(&mo, &meraki_loop_ops, d, &d->dispatch.meraki);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot set up the HTTP client: %m");
	api_key_mask(d->api_key, mask);
	log_info("Meraki API at %s, key %s", d->cfg->base_url, mask);
	return 0;
}

/* Calls in flight end here, without their done functions. */
void dispatch_close(struct daemon *d)
{
	struct dispatch *dp = &d->dispatch;

	if (dp->ops)
		dp->ops->free_client(dp->meraki);
	dp->meraki = NULL;
	for (struct job *j = d->ledger.jobs.first; j; j = j->next)
		if (j->userdata) {
			struct jobctl *c = j->userdata;

			runq_remove(d, c);
			sd_event_source_disable_unref(c->timer);
			j->userdata = NULL;
			free(c);
		}
	while (!TAILQ_EMPTY(&dp->orphans)) {
		struct jobctl *c = TAILQ_FIRST(&dp->orphans);

		TAILQ_REMOVE(&dp->orphans, c, link);
		free(c);
	}
	sd_event_source_disable_unref(dp->curl_timer);
	sd_event_source_disable_unref(dp->submit_timer);
	pacer_release(&dp->pacer);
	org_cache_reset(&dp->org);
}

/* A reload: the API's address and limits, and the pacing, from nc. */
int dispatch_reconfigure(struct daemon *d, const struct config *nc)
{
	struct meraki_opts mo = {
		.base_url = nc->base_url,
		.ca_file = nc->ca_file,
		.timeout_usec = nc->request_timeout_usec,
	};
	int r = d->dispatch.ops->reconfigure(d->dispatch.meraki, &mo);

	if (r < 0)
		return r;
	d->dispatch.redirect_error_logged = false;
	org_cache_reset(&d->dispatch.org);
	d->dispatch.pacer.interval = nc->min_interval_usec;
	d->dispatch.pacer.scope = nc->interval_scope;
	return 0;
}

/* Deadlines follow a new wait and expire. */
void dispatch_rearm_all(struct daemon *d)
{
	for (struct job *j = d->ledger.jobs.first; j; j = j->next)
		if (j->userdata)
			jobctl_arm(j->userdata);
	dispatch_schedule(d);
}

void dispatch_set_api_key(struct daemon *d, const char *key, const char *mask, const char *source)
{
	if (d->dispatch.ops->set_api_key(d->dispatch.meraki, key) >= 0) {
		log_info("reload: API key %s from %s", mask, source);
		d->dispatch.auth_error_logged = false;
		org_cache_reset(&d->dispatch.org); /* another key may see other organizations */
	}
}
