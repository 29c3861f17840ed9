/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "blinkhook/job.h"
#include "blinkhook/json.h"

/* Whole seconds: the log keeps time stamps at seconds precision. */
#define TS0 (UINT64_C(1764241648) * USEC_PER_SEC)
#define SERIAL "Q2AB-CD12-EF34"
#define LBI "573083052582915028"

static struct job *const NOT_SET = (struct job *)(uintptr_t)0x1;

/* ---- helpers ---- */

static struct job_event ev_queued(const char *id, uint64_t ts)
{
	return (struct job_event){
		.ts = ts,
		.id = id,
		.kind = JOB_EV_QUEUED,
		.serial = SERIAL,
		.duration = 20,
		.source = "queue",
	};
}

static struct job_event ev_attempt(const char *id, uint64_t ts, unsigned attempts, const char *error)
{
	return (struct job_event){
		.ts = ts,
		.id = id,
		.kind = JOB_EV_ATTEMPT,
		.attempts = attempts,
		.error = error,
		.source = "api",
	};
}

static struct job_event ev_submitted(const char *id, uint64_t ts, const char *lbi)
{
	return (struct job_event){
		.ts = ts,
		.id = id,
		.kind = JOB_EV_SUBMITTED,
		.leds_blink_id = lbi,
		.attempts = 1,
		.meraki_status = "new",
		.source = "api",
	};
}

static struct job_event ev_status(const char *id, uint64_t ts, const char *status)
{
	return (struct job_event){
		.ts = ts,
		.id = id,
		.kind = JOB_EV_STATUS,
		.meraki_status = status,
		.source = "callback",
	};
}

static struct job_event ev_final(const char *id, uint64_t ts, enum job_state state)
{
	return (struct job_event){
		.ts = ts,
		.id = id,
		.kind = JOB_EV_FINAL,
		.state = state,
		.source = "callback",
		.meraki_status = state == JOB_COMPLETE ? "complete"
				 : state == JOB_FAILED ? "failed"
						       : NULL,
	};
}

static void assert_str_or_null(const char *got, const char *want)
{
	if (!want || !got)
		assert_ptr_equal(got, want);
	else
		assert_string_equal(got, want);
}

/* The counters agree with a walk over the jobs, and the walk with n_jobs. */
static void assert_counters(const struct job_table *t)
{
	size_t by_state[_JOB_STATE_MAX] = {0}, n = 0;
	const struct job *prev = NULL;

	for (const struct job *j = t->first; j; j = j->next) {
		assert_ptr_equal(j->prev, prev);
		assert_ptr_equal(job_table_find(t, j->id), j);
		by_state[j->state]++;
		n++;
		prev = j;
	}
	assert_ptr_equal(t->last, prev);
	assert_int_equal(n, t->n_jobs);
	for (unsigned s = 0; s < _JOB_STATE_MAX; s++)
		assert_int_equal(by_state[s], t->n_by_state[s]);
}

static void apply_ok(struct job_table *t, struct job_event ev)
{
	struct job *j = NOT_SET;

	assert_int_equal(job_table_check(t, &ev), 0);
	assert_int_equal(job_table_apply(t, &ev, &j), 0);
	assert_ptr_equal(j, job_table_find(t, ev.id));
}

/* A snapshot of what a job holds, to tell that a refused event changed
 * nothing. */
struct snapshot {
	enum job_state state;
	char lbi[64], status[64], error[64], status_source[64];
	unsigned attempts, duration;
	uint64_t created_at, updated_at;
	size_t n_jobs, by_state[_JOB_STATE_MAX];
};

static void take_snapshot(const struct job_table *t, const struct job *j, struct snapshot *s)
{
	memset(s, 0, sizeof(*s));
	s->state = j->state;
	snprintf(s->lbi, sizeof(s->lbi), "%s", j->leds_blink_id ? j->leds_blink_id : "(null)");
	snprintf(s->status, sizeof(s->status), "%s", j->meraki_status ? j->meraki_status : "(null)");
	snprintf(s->error, sizeof(s->error), "%s", j->error ? j->error : "(null)");
	snprintf(s->status_source, sizeof(s->status_source), "%s", j->status_source ? j->status_source : "(null)");
	s->attempts = j->attempts;
	s->duration = j->duration;
	s->created_at = j->created_at;
	s->updated_at = j->updated_at;
	s->n_jobs = t->n_jobs;
	memcpy(s->by_state, t->n_by_state, sizeof(s->by_state));
}

/* ev gets verdict want (1 or an error) from both check and apply, and the
 * table is unchanged. */
static void apply_refused(struct job_table *t, struct job_event ev, int want)
{
	struct job *j = ev.id ? job_table_find(t, ev.id) : NULL;
	struct job *out = NOT_SET;
	struct snapshot before, after;

	if (j)
		take_snapshot(t, j, &before);
	assert_int_equal(job_table_check(t, &ev), want);
	assert_int_equal(job_table_apply(t, &ev, &out), want);
	/* ret_job is written only on success. */
	assert_ptr_equal(out, NOT_SET);
	if (j) {
		assert_ptr_equal(job_table_find(t, ev.id), j);
		take_snapshot(t, j, &after);
		assert_memory_equal(&before, &after, sizeof(before));
	}
	assert_counters(t);
}

/* ---- names ---- */

static void test_state_names(void **state)
{
	(void)state;
	const char *names[] = {"queued", "submitted", "complete", "failed", "expired"};

	assert_int_equal(ELEMENTSOF(names), _JOB_STATE_MAX);
	for (unsigned i = 0; i < _JOB_STATE_MAX; i++) {
		enum job_state s = _JOB_STATE_MAX;

		assert_string_equal(job_state_to_string((enum job_state)i), names[i]);
		assert_int_equal(job_state_from_string(names[i], &s), 0);
		assert_int_equal(s, i);
		assert_int_equal(job_state_is_final((enum job_state)i), i >= JOB_COMPLETE);
	}
	assert_string_equal(job_state_to_string(_JOB_STATE_MAX), "unknown");

	const char *bad[] = {"", "Queued", "queued ", "done", "unknown", "new"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		enum job_state s = JOB_EXPIRED;

		assert_int_equal(job_state_from_string(bad[i], &s), -EINVAL);
		assert_int_equal(s, JOB_EXPIRED);
	}
}

static void test_meraki_status(void **state)
{
	(void)state;
	const char *progress[] = {"new", "ready", "scheduled", "running"};
	const char *final[] = {"complete", "failed"};
	const char *bad[] = {"", "Complete", "expired", "queued", "runnin", "running ", NULL};

	for (size_t i = 0; i < ELEMENTSOF(progress); i++) {
		assert_true(meraki_status_is_valid(progress[i]));
		assert_false(meraki_status_is_final(progress[i]));
	}
	for (size_t i = 0; i < ELEMENTSOF(final); i++) {
		assert_true(meraki_status_is_valid(final[i]));
		assert_true(meraki_status_is_final(final[i]));
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		assert_false(meraki_status_is_valid(bad[i]));
		assert_false(meraki_status_is_final(bad[i]));
	}
}

static void test_event_names(void **state)
{
	(void)state;
	struct job_event ev = {0};

	ev.kind = JOB_EV_QUEUED;
	assert_string_equal(job_event_name(&ev), "queued");
	ev.kind = JOB_EV_ATTEMPT;
	assert_string_equal(job_event_name(&ev), "attempt");
	ev.kind = JOB_EV_SUBMITTED;
	assert_string_equal(job_event_name(&ev), "submitted");
	ev.kind = JOB_EV_STATUS;
	assert_string_equal(job_event_name(&ev), "status");
	ev.kind = JOB_EV_FINAL;
	ev.state = JOB_COMPLETE;
	assert_string_equal(job_event_name(&ev), "complete");
	ev.state = JOB_FAILED;
	assert_string_equal(job_event_name(&ev), "failed");
	ev.state = JOB_EXPIRED;
	assert_string_equal(job_event_name(&ev), "expired");
}

/* ---- transitions ---- */

static void test_lifecycle(void **state)
{
	(void)state;
	struct job_table t;
	struct job *j;

	assert_int_equal(job_table_init(&t), 0);
	assert_null(job_table_find(&t, "a1"));

	apply_ok(&t, ev_queued("a1", TS0));
	j = job_table_find(&t, "a1");
	assert_non_null(j);
	assert_string_equal(j->id, "a1");
	assert_string_equal(j->serial, SERIAL);
	assert_int_equal(j->duration, 20);
	assert_int_equal(j->state, JOB_QUEUED);
	assert_null(j->leds_blink_id);
	assert_null(j->meraki_status);
	assert_null(j->error);
	assert_int_equal(j->attempts, 0);
	assert_int_equal(j->created_at, TS0);
	assert_int_equal(j->updated_at, TS0);
	assert_int_equal(t.n_jobs, 1);
	assert_int_equal(t.n_by_state[JOB_QUEUED], 1);
	assert_ptr_equal(t.first, j);
	assert_ptr_equal(t.last, j);

	/* A failed submission: still queued, with the error and the count. */
	apply_ok(&t, ev_attempt("a1", TS0 + 10 * USEC_PER_SEC, 1, "HTTP 503"));
	assert_int_equal(j->state, JOB_QUEUED);
	assert_int_equal(j->attempts, 1);
	assert_string_equal(j->error, "HTTP 503");
	assert_int_equal(j->updated_at, TS0 + 10 * USEC_PER_SEC);
	assert_int_equal(j->created_at, TS0);
	apply_ok(&t, ev_attempt("a1", TS0 + 20 * USEC_PER_SEC, 2, "timeout"));
	assert_int_equal(j->attempts, 2);
	assert_string_equal(j->error, "timeout");

	/* Submitted: the Meraki id, and the stale error is gone. */
	struct job_event sub = ev_submitted("a1", TS0 + 30 * USEC_PER_SEC, LBI);
	sub.attempts = 3;
	apply_ok(&t, sub);
	assert_int_equal(j->state, JOB_SUBMITTED);
	assert_string_equal(j->leds_blink_id, LBI);
	assert_string_equal(j->meraki_status, "new");
	assert_null(j->error);
	assert_int_equal(j->attempts, 3);
	assert_int_equal(t.n_by_state[JOB_QUEUED], 0);
	assert_int_equal(t.n_by_state[JOB_SUBMITTED], 1);

	/* Progress. */
	apply_ok(&t, ev_status("a1", TS0 + 31 * USEC_PER_SEC, "scheduled"));
	assert_int_equal(j->state, JOB_SUBMITTED);
	assert_string_equal(j->meraki_status, "scheduled");
	assert_int_equal(j->updated_at, TS0 + 31 * USEC_PER_SEC);
	struct job_event running = ev_status("a1", TS0 + 32 * USEC_PER_SEC, "running");
	running.leds_blink_id = LBI; /* the same Meraki job: fine */
	apply_ok(&t, running);
	assert_string_equal(j->meraki_status, "running");
	assert_string_equal(j->leds_blink_id, LBI);
	assert_int_equal(j->attempts, 3);

	/* Final. */
	apply_ok(&t, ev_final("a1", TS0 + 60 * USEC_PER_SEC, JOB_COMPLETE));
	assert_int_equal(j->state, JOB_COMPLETE);
	assert_string_equal(j->meraki_status, "complete");
	assert_int_equal(j->updated_at, TS0 + 60 * USEC_PER_SEC);
	assert_int_equal(t.n_by_state[JOB_SUBMITTED], 0);
	assert_int_equal(t.n_by_state[JOB_COMPLETE], 1);
	assert_counters(&t);

	/* ret_job may be NULL. */
	struct job_event q2 = ev_queued("a2", TS0);
	assert_int_equal(job_table_apply(&t, &q2, NULL), 0);
	assert_non_null(job_table_find(&t, "a2"));
	assert_ptr_equal(t.first, j);
	assert_ptr_equal(t.last, job_table_find(&t, "a2"));
	assert_counters(&t);

	job_table_release(&t);
	assert_int_equal(t.n_jobs, 0);
	assert_null(t.first);
	/* release leaves a table that finds nothing. */
	assert_null(job_table_find(&t, "a1"));
}

static void test_final_states(void **state)
{
	(void)state;
	const enum job_state finals[] = {JOB_COMPLETE, JOB_FAILED, JOB_EXPIRED};

	for (size_t i = 0; i < ELEMENTSOF(finals); i++) {
		struct job_table t;
		struct job *j;

		assert_int_equal(job_table_init(&t), 0);
		apply_ok(&t, ev_queued("f", TS0));
		/* From queued straight to final (a cancel, an expiry). */
		struct job_event fin = ev_final("f", TS0 + USEC_PER_SEC, finals[i]);
		fin.error = "canceled";
		apply_ok(&t, fin);
		j = job_table_find(&t, "f");
		assert_int_equal(j->state, finals[i]);
		assert_string_equal(j->error, "canceled");
		assert_int_equal(t.n_by_state[finals[i]], 1);
		assert_int_equal(t.n_by_state[JOB_QUEUED], 0);

		/* Final is final: everything after it changes nothing. */
		for (size_t k = 0; k < ELEMENTSOF(finals); k++)
			apply_refused(&t, ev_final("f", TS0 + 2 * USEC_PER_SEC, finals[k]), 1);
		apply_refused(&t, ev_status("f", TS0 + 2 * USEC_PER_SEC, "running"), 1);
		apply_refused(&t, ev_submitted("f", TS0 + 2 * USEC_PER_SEC, LBI), 1);
		apply_refused(&t, ev_attempt("f", TS0 + 2 * USEC_PER_SEC, 5, "late"), 1);
		struct job_event late = ev_final("f", TS0 + 3 * USEC_PER_SEC, JOB_FAILED);
		late.error = "something else";
		apply_refused(&t, late, 1);
		/* The live path refuses a second queued event (replay takes it:
		 * test_queued_replaces_final). */
		struct job_event again = ev_queued("f", TS0);
		assert_int_equal(job_table_check(&t, &again), -EEXIST);
		job_table_release(&t);
	}
}

/* Q, F, Q for one id: a compaction dropped the final job, intake took a new
 * job with its id, and the compaction did not finish, so the old log holds
 * all three.  The new job replaces the final one; Q, Q is still damage. */
static void test_queued_replaces_final(void **state)
{
	(void)state;
	struct job_table t;
	struct job *j, *out = NULL;

	assert_int_equal(job_table_init(&t), 0);
	apply_ok(&t, ev_queued("r", TS0));
	apply_ok(&t, ev_submitted("r", TS0 + USEC_PER_SEC, LBI));
	apply_ok(&t, ev_final("r", TS0 + 2 * USEC_PER_SEC, JOB_COMPLETE));
	apply_ok(&t, ev_queued("s", TS0 + 3 * USEC_PER_SEC));

	struct job_event q = ev_queued("r", TS0 + 4 * USEC_PER_SEC);
	q.serial = "QBBB-BBBB-BBBB";
	q.duration = 30;
	assert_int_equal(job_table_apply(&t, &q, &out), 0);
	j = job_table_find(&t, "r");
	assert_ptr_equal(out, j);
	assert_int_equal(j->state, JOB_QUEUED);
	assert_string_equal(j->serial, "QBBB-BBBB-BBBB");
	assert_int_equal(j->duration, 30);
	assert_null(j->leds_blink_id);
	assert_null(j->meraki_status);
	assert_int_equal(j->created_at, TS0 + 4 * USEC_PER_SEC);
	/* The old Meraki job's id no longer finds it. */
	assert_null(job_table_find_by_blink_id(&t, LBI));
	assert_int_equal(t.n_jobs, 2);
	assert_int_equal(t.n_by_state[JOB_COMPLETE], 0);
	assert_int_equal(t.n_by_state[JOB_QUEUED], 2);
	assert_ptr_equal(t.last, j);
	assert_counters(&t);
	/* The new job goes on as any other. */
	apply_ok(&t, ev_submitted("r", TS0 + 5 * USEC_PER_SEC, "9999"));
	assert_int_equal(j->state, JOB_SUBMITTED);

	/* A queued event for a job that is not final is damage. */
	apply_refused(&t, ev_queued("r", TS0 + 6 * USEC_PER_SEC), -EEXIST);
	apply_refused(&t, ev_queued("s", TS0 + 6 * USEC_PER_SEC), -EEXIST);
	job_table_release(&t);
}

static void test_status_repeat_and_order(void **state)
{
	(void)state;
	struct job_table t;
	struct job *j;

	assert_int_equal(job_table_init(&t), 0);
	apply_ok(&t, ev_queued("s", TS0));
	apply_ok(&t, ev_submitted("s", TS0 + 1 * USEC_PER_SEC, LBI));
	j = job_table_find(&t, "s");

	apply_ok(&t, ev_status("s", TS0 + 2 * USEC_PER_SEC, "running"));
	/* The same status again. */
	apply_refused(&t, ev_status("s", TS0 + 3 * USEC_PER_SEC, "running"), 1);
	/* An older progress status arriving late. */
	apply_refused(&t, ev_status("s", TS0 + 4 * USEC_PER_SEC, "scheduled"), 1);
	apply_refused(&t, ev_status("s", TS0 + 4 * USEC_PER_SEC, "new"), 1);
	assert_string_equal(j->meraki_status, "running");
	assert_int_equal(j->updated_at, TS0 + 2 * USEC_PER_SEC);
	/* The same submission again (a replayed 201) changes nothing. */
	apply_refused(&t, ev_submitted("s", TS0 + 5 * USEC_PER_SEC, LBI), 1);
	job_table_release(&t);
}

static void test_status_on_queued(void **state)
{
	(void)state;
	struct job_table t;
	struct job *j;

	assert_int_equal(job_table_init(&t), 0);
	apply_ok(&t, ev_queued("q", TS0));
	apply_ok(&t, ev_queued("other", TS0));
	/* The daemon crashed after Meraki's 201: a callback reports progress
	 * for a job the log still has as queued. */
	struct job_event st = ev_status("q", TS0 + USEC_PER_SEC, "scheduled");
	st.leds_blink_id = LBI;
	apply_ok(&t, st);
	j = job_table_find(&t, "q");
	assert_int_equal(j->state, JOB_SUBMITTED);
	assert_string_equal(j->meraki_status, "scheduled");
	assert_string_equal(j->leds_blink_id, LBI);
	assert_int_equal(t.n_by_state[JOB_QUEUED], 1);
	assert_int_equal(t.n_by_state[JOB_SUBMITTED], 1);
	assert_counters(&t);

	/* A final report on a queued job is accepted too. */
	apply_ok(&t, ev_final("other", TS0 + USEC_PER_SEC, JOB_FAILED));
	assert_int_equal(job_table_find(&t, "other")->state, JOB_FAILED);
	assert_int_equal(t.n_by_state[JOB_QUEUED], 0);
	assert_counters(&t);
	job_table_release(&t);
}

static void test_refusals(void **state)
{
	(void)state;
	struct job_table t;
	struct job_event ev;
	char long_text[JOB_TEXT_MAX + 2];

	memset(long_text, 'x', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = 0;

	assert_int_equal(job_table_init(&t), 0);
	apply_ok(&t, ev_queued("j", TS0));

	/* A second queued event. */
	apply_refused(&t, ev_queued("j", TS0 + USEC_PER_SEC), -EEXIST);

	/* Unknown jobs. */
	apply_refused(&t, ev_attempt("nope", TS0, 1, "x"), -ENOENT);
	apply_refused(&t, ev_submitted("nope", TS0, LBI), -ENOENT);
	apply_refused(&t, ev_status("nope", TS0, "running"), -ENOENT);
	apply_refused(&t, ev_final("nope", TS0, JOB_COMPLETE), -ENOENT);

	/* Bad queued events. */
	const char *bad_serials[] = {"", "Q2AB-CD12-EF3", "Q2AB-CD12-EF345", "Q2AB_CD12-EF34", "Q2AB-CD!2-EF34"};
	for (size_t i = 0; i < ELEMENTSOF(bad_serials); i++) {
		ev = ev_queued("new1", TS0);
		ev.serial = bad_serials[i];
		apply_refused(&t, ev, -EINVAL);
	}
	ev = ev_queued("new1", TS0);
	ev.serial = NULL;
	apply_refused(&t, ev, -EINVAL);
	const unsigned bad_durations[] = {0, JOB_DURATION_MAX + 1, 100000};
	for (size_t i = 0; i < ELEMENTSOF(bad_durations); i++) {
		ev = ev_queued("new1", TS0);
		ev.duration = bad_durations[i];
		apply_refused(&t, ev, -EINVAL);
	}
	assert_null(job_table_find(&t, "new1"));
	/* The bounds themselves are fine. */
	ev = ev_queued("dmin", TS0);
	ev.duration = JOB_DURATION_MIN;
	apply_ok(&t, ev);
	ev = ev_queued("dmax", TS0);
	ev.duration = JOB_DURATION_MAX;
	apply_ok(&t, ev);

	/* Bad ids and time stamps. */
	ev = ev_queued(NULL, TS0);
	apply_refused(&t, ev, -EINVAL);
	ev = ev_queued("has space", TS0);
	apply_refused(&t, ev, -EINVAL);
	ev = ev_queued("", TS0);
	apply_refused(&t, ev, -EINVAL);
	ev = ev_queued("zero-ts", 0);
	apply_refused(&t, ev, -EINVAL);

	/* Events not allowed in the job's state or lacking a field. */
	apply_refused(&t, ev_attempt("j", TS0, 0, "no count"), -EINVAL);
	apply_refused(&t, ev_submitted("j", TS0, NULL), -EINVAL);
	apply_refused(&t, ev_submitted("j", TS0, ""), -EINVAL);
	apply_refused(&t, ev_status("j", TS0, NULL), -EINVAL);
	apply_refused(&t, ev_status("j", TS0, "complete"), -EINVAL); /* final goes by a final event */
	apply_refused(&t, ev_status("j", TS0, "bogus"), -EINVAL);
	apply_refused(&t, ev_final("j", TS0, JOB_QUEUED), -EINVAL);
	apply_refused(&t, ev_final("j", TS0, JOB_SUBMITTED), -EINVAL);
	apply_refused(&t, ev_final("j", TS0, _JOB_STATE_MAX), -EINVAL);
	apply_refused(&t, ev_final("j", TS0, (enum job_state)1000), -EINVAL);
	ev = ev_attempt("j", TS0, 1, long_text);
	apply_refused(&t, ev, -EINVAL);
	ev = ev_status("j", TS0, "running");
	ev.source = long_text;
	apply_refused(&t, ev, -EINVAL);

	/* Once submitted: no more attempts, and reports about another Meraki
	 * job are not ours. */
	apply_ok(&t, ev_submitted("j", TS0 + USEC_PER_SEC, LBI));
	apply_refused(&t, ev_attempt("j", TS0, 2, "late"), -EINVAL);
	apply_refused(&t, ev_submitted("j", TS0, "999"), -EINVAL);
	ev = ev_status("j", TS0, "running");
	ev.leds_blink_id = "999";
	apply_refused(&t, ev, -EINVAL);
	ev = ev_final("j", TS0, JOB_COMPLETE);
	ev.leds_blink_id = "999";
	apply_refused(&t, ev, -EINVAL);
	assert_int_equal(job_table_find(&t, "j")->state, JOB_SUBMITTED);

	job_table_release(&t);
}

static void test_counters_many(void **state)
{
	(void)state;
	struct job_table t;
	char id[32];
	size_t want[_JOB_STATE_MAX] = {0};

	assert_int_equal(job_table_init(&t), 0);
	for (unsigned i = 0; i < 500; i++) {
		snprintf(id, sizeof(id), "c%u", i);
		apply_ok(&t, ev_queued(id, TS0 + i));
		switch (i % 5) {
		case 0:
			want[JOB_QUEUED]++;
			break;
		case 1:
			apply_ok(&t, ev_submitted(id, TS0 + i + 1, LBI));
			want[JOB_SUBMITTED]++;
			break;
		case 2:
			apply_ok(&t, ev_submitted(id, TS0 + i + 1, LBI));
			apply_ok(&t, ev_final(id, TS0 + i + 2, JOB_COMPLETE));
			want[JOB_COMPLETE]++;
			break;
		case 3:
			apply_ok(&t, ev_attempt(id, TS0 + i + 1, 1, "503"));
			apply_ok(&t, ev_final(id, TS0 + i + 2, JOB_FAILED));
			/* A late report after the final one. */
			apply_refused(&t, ev_final(id, TS0 + i + 3, JOB_COMPLETE), 1);
			want[JOB_FAILED]++;
			break;
		default:
			apply_ok(&t, ev_status(id, TS0 + i + 1, "ready"));
			apply_ok(&t, ev_final(id, TS0 + i + 2, JOB_EXPIRED));
			want[JOB_EXPIRED]++;
			break;
		}
	}
	assert_int_equal(t.n_jobs, 500);
	for (unsigned s = 0; s < _JOB_STATE_MAX; s++)
		assert_int_equal(t.n_by_state[s], want[s]);
	assert_counters(&t);
	job_table_release(&t);
}

static void test_remove(void **state)
{
	(void)state;
	struct job_table t;
	const char *ids[] = {"r0", "r1", "r2", "r3", "r4"};

	assert_int_equal(job_table_init(&t), 0);
	for (size_t i = 0; i < ELEMENTSOF(ids); i++)
		apply_ok(&t, ev_queued(ids[i], TS0));
	apply_ok(&t, ev_final("r2", TS0 + 1, JOB_COMPLETE));
	apply_ok(&t, ev_submitted("r4", TS0 + 1, LBI));

	/* The middle, the first, the last. */
	job_table_remove(&t, job_table_find(&t, "r2"));
	assert_null(job_table_find(&t, "r2"));
	assert_int_equal(t.n_jobs, 4);
	assert_int_equal(t.n_by_state[JOB_COMPLETE], 0);
	assert_counters(&t);
	assert_string_equal(t.first->next->next->id, "r3");

	job_table_remove(&t, job_table_find(&t, "r0"));
	assert_string_equal(t.first->id, "r1");
	assert_null(t.first->prev);
	assert_counters(&t);

	job_table_remove(&t, job_table_find(&t, "r4"));
	assert_string_equal(t.last->id, "r3");
	assert_null(t.last->next);
	assert_int_equal(t.n_by_state[JOB_SUBMITTED], 0);
	assert_int_equal(t.n_by_state[JOB_QUEUED], 2);
	assert_counters(&t);

	/* A removed id is unknown, and may be queued again. */
	apply_refused(&t, ev_status("r0", TS0, "running"), -ENOENT);
	apply_ok(&t, ev_queued("r0", TS0 + 5));
	assert_string_equal(t.last->id, "r0");

	job_table_remove(&t, job_table_find(&t, "r1"));
	job_table_remove(&t, job_table_find(&t, "r3"));
	job_table_remove(&t, job_table_find(&t, "r0"));
	assert_int_equal(t.n_jobs, 0);
	assert_null(t.first);
	assert_null(t.last);
	assert_counters(&t);
	job_table_release(&t);
}

static void test_growth(void **state)
{
	(void)state;
	struct job_table t;
	char id[32];
	unsigned i;
	const unsigned n = 5000;

	assert_int_equal(job_table_init(&t), 0);
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "grow-%05u", i);
		apply_ok(&t, ev_queued(id, TS0 + i));
		if (i % 3 == 0)
			apply_ok(&t, ev_submitted(id, TS0 + i + 1, LBI));
	}
	assert_int_equal(t.n_jobs, n);
	assert_true(t.n_buckets > 1024);
	/* Every job findable, and still in creation order. */
	i = 0;
	for (const struct job *j = t.first; j; j = j->next, i++) {
		snprintf(id, sizeof(id), "grow-%05u", i);
		assert_string_equal(j->id, id);
		assert_ptr_equal(job_table_find(&t, id), j);
		assert_int_equal(j->state, i % 3 == 0 ? JOB_SUBMITTED : JOB_QUEUED);
	}
	assert_int_equal(i, n);
	assert_null(job_table_find(&t, "grow-05000"));
	assert_int_equal(t.n_by_state[JOB_SUBMITTED], (n + 2) / 3);
	assert_counters(&t);

	/* Remove every other one; the rest stay findable. */
	for (i = 0; i < n; i += 2) {
		snprintf(id, sizeof(id), "grow-%05u", i);
		job_table_remove(&t, job_table_find(&t, id));
	}
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "grow-%05u", i);
		if (i % 2)
			assert_non_null(job_table_find(&t, id));
		else
			assert_null(job_table_find(&t, id));
	}
	assert_int_equal(t.n_jobs, n / 2);
	assert_counters(&t);
	job_table_release(&t);
}

/* ---- records ---- */

static void assert_event_equal(const struct job_event *got, const struct job_event *want)
{
	assert_int_equal(got->ts, want->ts);
	assert_str_or_null(got->id, want->id);
	assert_int_equal(got->kind, want->kind);
	if (want->kind == JOB_EV_FINAL)
		assert_int_equal(got->state, want->state);
	assert_str_or_null(got->serial, want->serial);
	assert_int_equal(got->duration, want->duration);
	assert_str_or_null(got->leds_blink_id, want->leds_blink_id);
	assert_str_or_null(got->meraki_status, want->meraki_status);
	assert_str_or_null(got->error, want->error);
	assert_str_or_null(got->source, want->source);
	assert_int_equal(got->attempts, want->attempts);
	assert_str_or_null(got->nonce, want->nonce);
}

/* Every field, whatever the kind: what the two readers give must be the same
 * to the bit. */
static void assert_event_identical(const struct job_event *got, const struct job_event *want)
{
	assert_event_equal(got, want);
	assert_int_equal(got->state, want->state);
	assert_int_equal(got->created, want->created);
}

/* For input whose verdict is json-c's own quirk, not our rule. */
#define JSON_C_DECIDES 1

/* line through both readers and job_event_parse(): the json-c reader must
 * give want (unless JSON_C_DECIDES), and so must job_event_parse(); the fast
 * reader want_flat, which is want or -EOPNOTSUPP (declined), or -1 for
 * "either".  Accepted events are identical; a refused parse leaves *ret
 * alone. */
static void check_readers_n(const char *line, size_t len, int want_flat, int want)
{
	struct job_event_store fs = JOB_EVENT_STORE_INIT, js = JOB_EVENT_STORE_INIT, ps = JOB_EVENT_STORE_INIT;
	struct job_event f = {.id = "untouched"}, j = {.id = "untouched"}, p = {.id = "untouched"};
	int rf = job_event_parse_flat(line, len, &f, &fs);
	int rj = job_event_parse_json(line, len, &j, &js);
	int rp = job_event_parse(line, len, &p, &ps);

	if (want == JSON_C_DECIDES)
		want = rj;
	if (rj != want || rp != want || (want_flat == -1 ? rf != want && rf != -EOPNOTSUPP : rf != want_flat))
		fail_msg("%.*s: flat %d, json %d, parse %d; want %d, %d", (int)len, line, rf, rj, rp, want_flat, want);
	/* The fast reader never falls back by itself. */
	assert_null(fs.root);
	if (rf == 0)
		assert_event_identical(&f, &j);
	else
		assert_string_equal(f.id, "untouched");
	if (want == 0)
		assert_event_identical(&p, &j);
	else {
		assert_null(js.root);
		assert_null(ps.root);
		assert_string_equal(j.id, "untouched");
		assert_string_equal(p.id, "untouched");
	}
	job_event_store_release(&fs);
	job_event_store_release(&js);
	job_event_store_release(&ps);
}

static void check_readers(const char *line, int want_flat, int want)
{
	check_readers_n(line, strlen(line), want_flat, want);
}

static void roundtrip(const struct job_event *ev)
{
	struct job_event_store store = JOB_EVENT_STORE_INIT;
	struct strbuf sb = STRBUF_INIT;
	struct job_event got;

	assert_int_equal(job_event_format(ev, &sb), 0);
	/* One line, ending in its newline. */
	assert_true(sb.len > 1);
	assert_int_equal(sb.buf[sb.len - 1], '\n');
	assert_ptr_equal(memchr(sb.buf, '\n', sb.len), sb.buf + sb.len - 1);
	assert_int_equal(job_event_parse(sb.buf, sb.len - 1, &got, &store), 0);
	assert_event_equal(&got, ev);
	/* Our own records never need json-c, and it reads them the same. */
	assert_int_equal(job_event_parse_flat(sb.buf, sb.len - 1, &got, &store), 0);
	assert_null(store.root);
	assert_event_equal(&got, ev);
	check_readers_n(sb.buf, sb.len - 1, 0, 0);
	job_event_store_release(&store);
	strbuf_release(&sb);
}

static void test_event_roundtrip(void **state)
{
	(void)state;
	struct job_event ev;

	ev = ev_queued("rt-queued_1", TS0);
	ev.duration = 3600;
	roundtrip(&ev);

	ev = ev_attempt("rt", TS0 + 1 * USEC_PER_SEC, 7, "HTTP 503: \"busy\"\nretry \\ later \xc3\xa9");
	roundtrip(&ev);

	ev = ev_submitted("rt", TS0 + 2 * USEC_PER_SEC, LBI);
	ev.attempts = 2;
	roundtrip(&ev);

	ev = ev_status("rt", TS0 + 3 * USEC_PER_SEC, "running");
	ev.leds_blink_id = LBI;
	ev.source = "poll";
	roundtrip(&ev);

	const enum job_state finals[] = {JOB_COMPLETE, JOB_FAILED, JOB_EXPIRED};
	for (size_t i = 0; i < ELEMENTSOF(finals); i++) {
		ev = ev_final("rt", TS0 + 4 * USEC_PER_SEC, finals[i]);
		ev.leds_blink_id = LBI;
		ev.error = finals[i] == JOB_COMPLETE ? NULL : "no callback within 5min";
		ev.attempts = 3;
		roundtrip(&ev);
	}

	/* Every field at once, whatever the kind. */
	ev = (struct job_event){
		.ts = TS0,
		.id = "all",
		.kind = JOB_EV_QUEUED,
		.serial = SERIAL,
		.duration = 1,
		.leds_blink_id = LBI,
		.meraki_status = "ready",
		.error = "e",
		.source = "queue",
		.attempts = 1000000,
	};
	roundtrip(&ev);
	/* The fewest fields. */
	ev = (struct job_event){.ts = TS0, .id = "few", .kind = JOB_EV_FINAL, .state = JOB_EXPIRED};
	roundtrip(&ev);

	/* Snapshots, as compaction writes them, with and without the optional
	 * fields. */
	ev = (struct job_event){
		.ts = TS0 + 5 * USEC_PER_SEC,
		.id = "snap",
		.kind = JOB_EV_SNAPSHOT,
		.state = JOB_FAILED,
		.created = TS0,
		.serial = SERIAL,
		.duration = 20,
		.leds_blink_id = LBI,
		.meraki_status = "failed",
		.error = "LED blink failed: device offline",
		.attempts = 8,
	};
	roundtrip(&ev);
	ev = (struct job_event){
		.ts = TS0,
		.id = "snap-q",
		.kind = JOB_EV_SNAPSHOT,
		.state = JOB_QUEUED,
		.created = TS0,
		.serial = SERIAL,
		.duration = JOB_DURATION_MAX,
	};
	roundtrip(&ev);
}

/* Text as peers send it, through the writer's escapes, comes back through
 * the fast reader as json-c reads it. */
static void test_event_fast_reader_text(void **state)
{
	(void)state;
	static const char *const texts[] = {
		"",
		"plain",
		"quote \" backslash \\ slash / tab \t cr \r lf \n",
		"\x01\x02\x1f\x7f controls",
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf \xed\x9f\xbf \xee\x80\x80",
		"\"\"\"\\\\\\",
		/* A character of each length right before the closing quote
		 * (source is a record's last member). */
		"\xc3\xa9",
		"x\xe2\x82\xac",
		"\xf0\x9f\x98\x80",
		"\x7f",
		/* Not UTF-8, and last: the writer makes each bad byte U+FFFD. */
		"\xff\xfe \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xc3 cut \xe2\x82",
	};
	const enum job_event_kind kinds[] = {JOB_EV_ATTEMPT, JOB_EV_STATUS, JOB_EV_FINAL};

	for (size_t i = 0; i < ELEMENTSOF(texts); i++)
		for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
			struct job_event ev = {
				.ts = TS0,
				.id = "text",
				.kind = kinds[k],
				.state = JOB_FAILED,
				.attempts = 1,
				.meraki_status = kinds[k] == JOB_EV_STATUS ? "running" : NULL,
				.leds_blink_id = texts[i],
				.error = texts[i],
				.source = texts[i],
			};
			struct job_event_store store = JOB_EVENT_STORE_INIT;
			struct strbuf sb = STRBUF_INIT;
			struct job_event got;

			assert_int_equal(job_event_format(&ev, &sb), 0);
			assert_int_equal(job_event_parse_flat(sb.buf, sb.len - 1, &got, &store), 0);
			check_readers_n(sb.buf, sb.len - 1, 0, 0);
			/* Valid UTF-8 comes back as it went; what json-c makes
			 * of the rest, check_readers_n has compared. */
			if (i < ELEMENTSOF(texts) - 1)
				assert_string_equal(got.error, texts[i]);
			job_event_store_release(&store);
			strbuf_release(&sb);
		}

	/* The longest error a record keeps, every byte escaped as \u00XX: the
	 * record stays within what the fast reader takes. */
	{
		char text[JOB_TEXT_MAX + 1];
		struct job_event ev = {.ts = TS0, .id = "long", .kind = JOB_EV_FINAL, .state = JOB_FAILED};
		struct job_event_store store = JOB_EVENT_STORE_INIT;
		struct strbuf sb = STRBUF_INIT;
		struct job_event got;

		memset(text, 0x01, JOB_TEXT_MAX);
		text[JOB_TEXT_MAX] = 0;
		ev.error = text;
		assert_int_equal(job_event_format(&ev, &sb), 0);
		assert_true(sb.len - 1 <= JOB_EVENT_TEXT_MAX);
		assert_int_equal(job_event_parse_flat(sb.buf, sb.len - 1, &got, &store), 0);
		assert_string_equal(got.error, text);
		check_readers_n(sb.buf, sb.len - 1, 0, 0);
		job_event_store_release(&store);
		strbuf_release(&sb);
	}
}

#define REC(rest) "{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\"," rest "}"

/* What the fast reader leaves to json-c, and what it refuses by itself:
 * either way job_event_parse() gives json-c's verdict. */
static void test_event_fast_reader_declines(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		int want;
	} declined[] = {
		/* White space, where our writer puts none. */
		{"{\"v\":1, \"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}", 0},
		{" " REC("\"event\":\"expired\""), 0},
		{REC("\"event\":\"expired\"") " ", 0},
		{REC("\"event\":\"expired\"") "\r", 0},
		{REC("\"event\" : \"expired\""), 0},
		/* Values outside the subset, for our keys and for others. */
		{REC("\"event\":\"expired\",\"error\":null"), 0},
		{REC("\"event\":\"expired\",\"x\":null"), 0},
		{REC("\"event\":\"expired\",\"x\":true"), 0},
		{REC("\"event\":\"expired\",\"error\":false"), -EBADMSG},
		{REC("\"event\":\"expired\",\"x\":{\"a\":[1,{}]}"), 0},
		{REC("\"event\":\"expired\",\"source\":{}"), -EBADMSG},
		{REC("\"event\":\"expired\",\"x\":[]"), 0},
		{REC("\"event\":\"expired\",\"x\":1.5"), 0},
		{REC("\"event\":\"expired\",\"x\":1e2"), 0},
		{REC("\"event\":\"attempt\",\"attempts\":1.0"), -EBADMSG},
		{REC("\"event\":\"attempt\",\"attempts\":2E0"), -EBADMSG},
		{REC("\"event\":\"attempt\",\"attempts\":-1"), -EBADMSG},
		{REC("\"event\":\"attempt\",\"attempts\":-0"), JSON_C_DECIDES},
		{REC("\"event\":\"attempt\",\"attempts\":01"), JSON_C_DECIDES},
		{REC("\"event\":\"attempt\",\"x\":00"), JSON_C_DECIDES},
		{REC("\"event\":\"expired\",\"x\":1000000000000000000"), 0},
		{REC("\"event\":\"expired\",\"x\":99999999999999999999999"), 0},
		{REC("\"event\":\"attempt\",\"attempts\":1000000000000000000"), -EBADMSG},
		{"{\"v\":1000000000000000001,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}",
		 -EPROTONOSUPPORT},
		{"{\"v\":-1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}", -EPROTONOSUPPORT},
		/* Repeated keys: json-c keeps the last. */
		{REC("\"event\":\"expired\",\"id\":\"b\""), 0},
		{REC("\"event\":\"expired\",\"id\":\"b c\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"x\":1,\"x\":2"), 0},
		{REC("\"event\":\"queued\",\"serial\":\"Q2AB-CD12-EF34\",\"duration\":0,\"duration\":20"), 0},
		{"{\"\":1,\"\":2,\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}", 0},
		/* Keys that are not plain. */
		{"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"\\u0069d\":\"a\",\"event\":\"expired\"}", 0},
		{REC("\"event\":\"expired\",\"id\\u0000x\":\"b\""), 0},
		{REC("\"event\":\"expired\",\"id\\u0000x\":\"b c\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"caf\xc3\xa9\":1"), 0},
		{REC("\"event\":\"expired\",\"x\x7f\":1"), 0},
		{REC("\"event\":\"expired\",\"x\x01\":1"), 0},
		{"{'v':1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}", JSON_C_DECIDES},
		/* Escapes outside the subset. */
		{REC("\"event\":\"expired\",\"error\":\"\\u0000\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"x\":\"\\u0000\""), 0},
		{REC("\"event\":\"expired\",\"error\":\"\\ud83d\\ude00\""), 0},
		{REC("\"event\":\"expired\",\"error\":\"\\ud800\""), JSON_C_DECIDES},
		{REC("\"event\":\"expired\",\"error\":\"\\udfff\\ud800x\""), JSON_C_DECIDES},
		{REC("\"event\":\"expired\",\"error\":\"\\x\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\\a\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\\u12\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\\u12g4\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\\\""), -EBADMSG},
		/* Raw bytes our writer escapes, and bytes that are not UTF-8. */
		{REC("\"event\":\"expired\",\"error\":\"a\x01"
		     "b\""),
		 JSON_C_DECIDES},
		{REC("\"event\":\"expired\",\"error\":\"a\tb\""), JSON_C_DECIDES},
		{REC("\"event\":\"expired\",\"error\":\"a\nb\""), JSON_C_DECIDES},
		{REC("\"event\":\"expired\",\"error\":\"\xff\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\xc0\xaf\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\xe0\x80\xaf\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\xed\xa0\x80\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\xf4\x90\x80\x80\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\xf8\x88\x80\x80\x80\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\xc3\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\xe2\x82\""), -EBADMSG},
		{REC("\"event\":\"expired\",\"error\":\"\xc3"), -EBADMSG},
		{"{\"v\":1,\"e\xc3", -EBADMSG},
		{"{\"v\":1,\"e\":\"\xf0\x9f\x98", -EBADMSG},
		/* Not a flat object, or not one object. */
		{"", -EBADMSG},
		{"{", -EBADMSG},
		{"}", -EBADMSG},
		{"[1,2,3]", -EBADMSG},
		{"\"v\"", -EBADMSG},
		{"not json", -EBADMSG},
		{"{\"v\":1,}", -EBADMSG},
		{"{,\"v\":1}", -EBADMSG},
		{"{\"v\"}", -EBADMSG},
		{"{\"v\":}", -EBADMSG},
		{"{\"v\"1}", -EBADMSG},
		{"{\"v\":1\"ts\":2}", -EBADMSG},
		{"{\"v\":1}}", -EBADMSG},
		{"{\"v\":1}{}", -EBADMSG},
		{REC("\"event\":\"expired\"") " trailing", -EBADMSG},
		{REC("\"event\":\"expired\",\"x\":\"unterminated"), -EBADMSG},
		{REC("\"event\":\"expired\",\"x\":1x"), -EBADMSG},
		{REC("\"event\":\"expired\",\"x\":tru"), -EBADMSG},
	};
	/* Within the subset, refused by the fast reader itself. */
	static const struct {
		const char *line;
		int want;
	} refused[] = {
		{"{}", -EBADMSG},
		{"{\"x\":1}", -EBADMSG},
		{"{\"v\":2,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}", -EPROTONOSUPPORT},
		{"{\"v\":0,\"ts\":\"yesterday\"}", -EPROTONOSUPPORT},
		{"{\"v\":999999999999999999}", -EPROTONOSUPPORT},
		{"{\"v\":\"1\",\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}", -EBADMSG},
		{"{\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}", -EBADMSG},
		{REC("\"event\":\"exploded\""), -EBADMSG},
		{REC("\"event\":\"queued\""), -EBADMSG},
		{REC("\"event\":1"), -EBADMSG},
		{REC("\"event\":\"attempt\",\"attempts\":\"2\""), -EBADMSG},
		{REC("\"event\":\"attempt\",\"attempts\":1000001"), -EBADMSG},
		{REC("\"event\":\"attempt\",\"attempts\":999999999999999999"), -EBADMSG},
		{REC("\"event\":\"attempt\",\"error\":5"), -EBADMSG},
		{REC("\"event\":\"queued\",\"serial\":\"Q2AB-CD12-EF34\",\"duration\":3601"), -EBADMSG},
		{REC("\"event\":\"queued\",\"serial\":\"Q2AB-CD12-EF34\",\"duration\":0"), -EBADMSG},
		{REC("\"event\":\"job\",\"serial\":\"Q2AB-CD12-EF34\",\"duration\":20,\"state\":\"lost\","
		     "\"created_at\":\"2025-11-27T11:07:28Z\""),
		 -EBADMSG},
		{REC("\"event\":\"job\",\"serial\":\"Q2AB-CD12-EF34\",\"duration\":20,\"state\":\"queued\""), -EBADMSG},
		{REC("\"event\":\"job\",\"serial\":\"Q2AB-CD12-EF34\",\"duration\":20,\"state\":\"queued\","
		     "\"created_at\":\"1970-01-01T00:00:00Z\""),
		 -EBADMSG},
		{"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a b\",\"event\":\"expired\"}", -EBADMSG},
		{"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"caf\\u00e9\",\"event\":\"expired\"}", -EBADMSG},
	};
	/* Within the subset and accepted: the members other readers write, and
	 * those that only matter for some events. */
	static const char *const accepted[] = {
		REC("\"event\":\"expired\",\"x\":\"y\",\"z\":7,\"\":\"\""),
		REC("\"event\":\"expired\",\"error\":\"'\\u0027\x7f\""),
		REC("\"event\":\"expired\",\"state\":5,\"created_at\":\"never\""),
		REC("\"event\":\"attempt\",\"attempts\":0"),
		REC("\"event\":\"attempt\",\"attempts\":1000000"),
		REC("\"event\":\"status\",\"meraki_status\":\"\\u0072unning\",\"error\":\"\\/\\b\\f\\u00E9\\uFFFF\""),
		REC("\"duration\":3600,\"event\":\"queued\",\"serial\":\"Q2AB-CD12-EF34\""),
		"{\"source\":\"x\",\"event\":\"expired\",\"id\":\"a\",\"ts\":\"2025-11-27T11:07:28Z\",\"v\":1}",
	};
	char line[JOB_EVENT_TEXT_MAX + 256];
	int n;

	for (size_t i = 0; i < ELEMENTSOF(declined); i++)
		check_readers(declined[i].line, -EOPNOTSUPP, declined[i].want);
	for (size_t i = 0; i < ELEMENTSOF(refused); i++)
		check_readers(refused[i].line, refused[i].want, refused[i].want);
	for (size_t i = 0; i < ELEMENTSOF(accepted); i++)
		check_readers(accepted[i], 0, 0);

	/* A raw NUL, anywhere. */
	{
		static const char nul[] = REC("\"event\":\"expired\",\"error\":\"a\0b\"");
		check_readers_n(nul, sizeof(nul) - 1, -EOPNOTSUPP, -EBADMSG);
		check_readers_n(nul, 1, -EOPNOTSUPP, -EBADMSG);
	}

	/* More members than the fast reader takes. */
	n = snprintf(line, sizeof(line), "{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"");
	for (int i = 0; i < 20; i++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, ",\"x%d\":%d", i, i);
	snprintf(line + n, sizeof(line) - (size_t)n, "}");
	check_readers(line, -EOPNOTSUPP, 0);

	/* A line longer than the fast reader's buffer, and one just short. */
	for (size_t want_len = JOB_EVENT_TEXT_MAX; want_len <= JOB_EVENT_TEXT_MAX + 1; want_len++) {
		static const char head[] =
			"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\",\"x\":\"";
		size_t pad = want_len - (sizeof(head) - 1) - 2;

		memcpy(line, head, sizeof(head) - 1);
		memset(line + sizeof(head) - 1, 'x', pad);
		memcpy(line + sizeof(head) - 1 + pad, "\"}", 2);
		check_readers_n(line, want_len, want_len <= JOB_EVENT_TEXT_MAX ? 0 : -EOPNOTSUPP, 0);
	}
}

/* The fast reader's own reading of "YYYY-MM-DDTHH:MM:SSZ" gives what
 * parse_rfc3339() gives, which the json-c reader uses: every day from 1970
 * to 2100 at a time of day that moves, the leap days, and the edges. */
static void test_event_fast_reader_stamps(void **state)
{
	(void)state;
	static const char *const stamps[] = {
		"1970-01-01T00:00:00Z",
		"1970-01-01T00:00:01Z",
		"1969-12-31T23:59:59Z",
		"0000-01-01T00:00:00Z",
		"2000-02-29T12:00:00Z",
		"2100-02-29T12:00:00Z",
		"2024-02-29T23:59:59Z",
		"2025-02-29T00:00:00Z",
		"2016-12-31T23:59:60Z",
		"2025-11-27T11:07:60Z",
		"2025-11-27T11:07:61Z",
		"9999-12-31T23:59:59Z",
		"9999-12-31T23:59:60Z",
		"2025-13-01T00:00:00Z",
		"2025-00-10T00:00:00Z",
		"2025-01-00T00:00:00Z",
		"2025-01-32T00:00:00Z",
		"2025-04-31T00:00:00Z",
		"2025-11-27T24:00:00Z",
		"2025-11-27T23:60:00Z",
		"2025-11-27T11:07:28z",
		"2025-11-27t11:07:28Z",
		"2025-11-27T11:07:28.999999Z",
		"2025-11-27T11:07:28.5",
		"2025-11-27T11:07:28+01:30",
		"2025-11-27T11:07:28-00:00",
		"2025-11-27T11:07:28",
		"2025-11-27T11:07:28ZZ",
		"2025-11-27 11:07:28Z",
		"+2025-11-27T11:07:28Z",
		"2025-11-2711:07:28Z",
		"2025-1-27T11:07:28Z",
		"2025-11-27T11:07:2Z",
		"2025-11-27T11:07:2aZ",
		"",
	};
	char line[256], ts[RFC3339_MAX];

	for (uint64_t day = 0; day <= 47846; day++) {
		uint64_t t = day * 86400 + (day * 3607) % 86400;

		format_rfc3339(ts, t * USEC_PER_SEC);
		snprintf(line, sizeof(line),
			 REC("\"event\":\"job\",\"serial\":\"" SERIAL "\",\"duration\":20,"
			     "\"state\":\"queued\",\"created_at\":\"%s\""),
			 ts);
		/* REC's own ts stays; created_at goes through the short cut. */
		check_readers(line, t ? 0 : -EBADMSG, t ? 0 : -EBADMSG);
		snprintf(line, sizeof(line), "{\"v\":1,\"ts\":\"%s\",\"id\":\"a\",\"event\":\"expired\"}", ts);
		check_readers(line, t ? 0 : -EBADMSG, t ? 0 : -EBADMSG);
	}
	for (size_t i = 0; i < ELEMENTSOF(stamps); i++) {
		uint64_t usec;
		int want;

		want = parse_rfc3339(stamps[i], &usec) < 0 || usec < USEC_PER_SEC ? -EBADMSG : 0;
		snprintf(line, sizeof(line), "{\"v\":1,\"ts\":\"%s\",\"id\":\"a\",\"event\":\"expired\"}", stamps[i]);
		check_readers(line, want, want);
	}
}

#undef REC

static void assert_parse_error(const char *line, int want)
{
	struct job_event_store store = JOB_EVENT_STORE_INIT;
	struct job_event ev = {.id = "untouched"};
	int r = job_event_parse(line, strlen(line), &ev, &store);

	if (r != want)
		fail_msg("job_event_parse(%s) = %d, want %d", line, r, want);
	assert_null(store.root);
	assert_string_equal(ev.id, "untouched");
	/* Whichever reader read it, the other agrees. */
	check_readers(line, -1, want);
}

static void test_event_parse_rejects(void **state)
{
	(void)state;

	/* A version this build does not know. */
	assert_parse_error("{\"v\":2,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"status\","
			   "\"meraki_status\":\"running\"}",
			   -EPROTONOSUPPORT);
	assert_parse_error("{\"v\":0,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}",
			   -EPROTONOSUPPORT);

	const char *bad[] = {
		"",
		"not json",
		"[1,2,3]",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"} trailing",
		/* missing fields */
		"{\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}",
		"{\"v\":1,\"id\":\"a\",\"event\":\"expired\"}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"event\":\"expired\"}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\"}",
		/* bad types */
		"{\"v\":\"1\",\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}",
		"{\"v\":1.0,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}",
		"{\"v\":1,\"ts\":1764241648,\"id\":\"a\",\"event\":\"expired\"}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":7,\"event\":\"expired\"}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":null}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"attempt\",\"attempts\":\"2\"}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"attempt\",\"attempts\":-1}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"attempt\",\"attempts\":1.5}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"attempt\",\"error\":5}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"submitted\","
		"\"leds_blink_id\":573083052582915028}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"status\",\"meraki_status\":true}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"status\",\"source\":[]}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"queued\","
		"\"serial\":\"Q2AB-CD12-EF34\",\"duration\":\"20\"}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"queued\","
		"\"serial\":\"Q2AB-CD12-EF34\",\"duration\":3601}",
		/* bad values */
		"{\"v\":1,\"ts\":\"yesterday\",\"id\":\"a\",\"event\":\"expired\"}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a b\",\"event\":\"expired\"}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"\",\"event\":\"expired\"}",
		/* unknown events, and states that are not events */
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"exploded\"}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"unknown\"}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"Complete\"}",
		/* queued without a valid serial or duration */
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"queued\",\"duration\":20}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"queued\","
		"\"serial\":\"Q2AB-CD12\",\"duration\":20}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"queued\","
		"\"serial\":\"Q2AB-CD12-EF34\"}",
		"{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"queued\","
		"\"serial\":\"Q2AB-CD12-EF34\",\"duration\":0}",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		assert_parse_error(bad[i], -EBADMSG);

	/* A raw NUL inside the line. */
	static const char nul[] = "{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"a\",\"event\":\"expired\"}";
	char buf[sizeof(nul) + 1];
	struct job_event_store store = JOB_EVENT_STORE_INIT;
	struct job_event ev;

	memcpy(buf, nul, sizeof(nul));
	buf[sizeof(nul) - 1] = 0;
	buf[sizeof(nul)] = ' ';
	assert_int_equal(job_event_parse(buf, sizeof(buf), &ev, &store), -EBADMSG);
	assert_null(store.root);
	check_readers_n(buf, sizeof(buf), -EOPNOTSUPP, -EBADMSG);
	/* The same line without the NUL is fine: the rejections above are not
	 * a parser that rejects everything. */
	assert_int_equal(job_event_parse(nul, strlen(nul), &ev, &store), 0);
	assert_int_equal(ev.kind, JOB_EV_FINAL);
	assert_int_equal(ev.state, JOB_EXPIRED);
	assert_int_equal(ev.ts, TS0);
	job_event_store_release(&store);
}

/* ---- the job as JSON ---- */

/* The members of an object as json_object_each() gives them: json_get()
 * cannot tell a null member from a missing one. */
struct members {
	unsigned n;
	const char *key[16];
	const struct json *val[16];
};

static int collect_member(const char *key, const struct json *val, void *ud)
{
	struct members *m = ud;

	assert_true(m->n < ELEMENTSOF(m->key));
	m->key[m->n] = key;
	m->val[m->n] = val;
	m->n++;
	return 0;
}

static const struct json *member(const struct members *m, const char *key)
{
	for (unsigned i = 0; i < m->n; i++)
		if (strcmp(m->key[i], key) == 0)
			return m->val[i];
	fail_msg("member \"%s\" is missing", key);
	return NULL;
}

static void assert_json_str(const struct members *m, const char *key, const char *want)
{
	const struct json *v = member(m, key);

	if (!want) {
		assert_int_equal(json_kind_of(v), JSON_NULL);
		return;
	}
	assert_int_equal(json_kind_of(v), JSON_STRING);
	assert_string_equal(json_string(v, NULL), want);
}

static void assert_json_int(const struct members *m, const char *key, int64_t want)
{
	int64_t x = -1;

	assert_int_equal(json_int64(member(m, key), &x), 0);
	assert_int_equal(x, want);
}

static void format_and_parse(const struct job *j, struct json **ret_root)
{
	struct strbuf sb = STRBUF_INIT;
	struct json_writer w;

	json_writer_init(&w, &sb);
	job_format_json(j, &w);
	assert_int_equal(json_writer_finish(&w), 0);
	assert_null(memchr(sb.buf, '\n', sb.len));
	assert_int_equal(json_parse(sb.buf, sb.len, 8, ret_root), 0);
	strbuf_release(&sb);
}

static void test_format_json(void **state)
{
	(void)state;
	struct job_table t;
	struct json *root = NULL;
	struct members m = {0};
	char ts[RFC3339_MAX];

	assert_int_equal(job_table_init(&t), 0);

	/* Fresh: the unset fields are null, not missing. */
	struct job_event q = ev_queued("fmt-1", TS0);
	q.duration = 45;
	apply_ok(&t, q);
	format_and_parse(job_table_find(&t, "fmt-1"), &root);
	assert_int_equal(json_kind_of(root), JSON_OBJECT);
	assert_int_equal(json_object_each(root, collect_member, &m), 0);
	assert_int_equal(m.n, 13);
	assert_json_str(&m, "id", "fmt-1");
	assert_json_str(&m, "name", NULL);
	assert_json_str(&m, "mac", NULL);
	assert_json_str(&m, "serial", SERIAL);
	assert_json_int(&m, "duration", 45);
	assert_json_str(&m, "state", "queued");
	assert_json_str(&m, "leds_blink_id", NULL);
	assert_json_str(&m, "meraki_status", NULL);
	assert_json_str(&m, "status_source", NULL);
	assert_json_int(&m, "attempts", 0);
	assert_json_str(&m, "error", NULL);
	assert_json_str(&m, "created_at", "2025-11-27T11:07:28Z");
	assert_json_str(&m, "updated_at", "2025-11-27T11:07:28Z");
	json_free(root);
	root = NULL;

	/* Later: every field set. */
	apply_ok(&t, ev_attempt("fmt-1", TS0 + 5 * USEC_PER_SEC, 1, "HTTP 502"));
	apply_ok(&t, ev_submitted("fmt-1", TS0 + 10 * USEC_PER_SEC, LBI));
	struct job_event fin = ev_final("fmt-1", TS0 + 75 * USEC_PER_SEC, JOB_FAILED);
	fin.error = "LED \"blink\" refused";
	fin.attempts = 2;
	apply_ok(&t, fin);
	format_and_parse(job_table_find(&t, "fmt-1"), &root);
	m.n = 0;
	assert_int_equal(json_object_each(root, collect_member, &m), 0);
	assert_int_equal(m.n, 13);
	assert_json_str(&m, "id", "fmt-1");
	assert_json_str(&m, "serial", SERIAL);
	assert_json_int(&m, "duration", 45);
	assert_json_str(&m, "state", "failed");
	assert_json_str(&m, "leds_blink_id", LBI);
	assert_json_str(&m, "meraki_status", "failed");
	assert_json_str(&m, "status_source", "callback");
	assert_json_int(&m, "attempts", 2);
	assert_json_str(&m, "error", "LED \"blink\" refused");
	format_rfc3339(ts, TS0);
	assert_json_str(&m, "created_at", ts);
	format_rfc3339(ts, TS0 + 75 * USEC_PER_SEC);
	assert_json_str(&m, "updated_at", ts);
	assert_string_equal(ts, "2025-11-27T11:08:43Z");
	json_free(root);

	job_table_release(&t);
}

#define NONCE "0123456789abcdef0123456789abcdef"

/* A job's nonce goes into its first record, through both readers, into the
 * table, into compaction's snapshot and back; a record from before nonces
 * still reads, as a job without one; the public JSON never shows it. */
static void test_nonce(void **state)
{
	(void)state;
	char a[JOB_NONCE_LEN + 1], b[JOB_NONCE_LEN + 1];
	struct job_event_store store = JOB_EVENT_STORE_INIT;
	struct strbuf sb = STRBUF_INIT;
	struct job_table t, t2;
	struct job_event ev, snap, got;
	struct json *root = NULL;
	struct members m = {0};
	struct job *j;

	assert_int_equal(job_nonce_new(a), 0);
	assert_int_equal(job_nonce_new(b), 0);
	assert_true(job_nonce_is_valid(a));
	assert_string_not_equal(a, b);
	assert_true(job_nonce_is_valid(NONCE));
	assert_false(job_nonce_is_valid(""));
	assert_false(job_nonce_is_valid("0123456789abcdef0123456789abcde"));   /* 31 */
	assert_false(job_nonce_is_valid("0123456789abcdef0123456789abcdef0")); /* 33 */
	assert_false(job_nonce_is_valid("0123456789ABCDEF0123456789abcdef"));

	ev = ev_queued("n-1", TS0);
	ev.nonce = NONCE;
	roundtrip(&ev);
	assert_int_equal(job_table_init(&t), 0);
	apply_ok(&t, ev);
	j = job_table_find(&t, "n-1");
	assert_string_equal(j->nonce, NONCE);
	apply_ok(&t, ev_submitted("n-1", TS0 + USEC_PER_SEC, LBI));

	/* Compaction keeps it. */
	job_snapshot(j, &snap);
	assert_string_equal(snap.nonce, NONCE);
	roundtrip(&snap);
	assert_int_equal(job_event_format(&snap, &sb), 0);
	assert_int_equal(job_event_parse(sb.buf, sb.len - 1, &got, &store), 0);
	assert_int_equal(job_table_init(&t2), 0);
	assert_int_equal(job_table_apply(&t2, &got, NULL), 0);
	assert_string_equal(job_table_find(&t2, "n-1")->nonce, NONCE);
	job_event_store_release(&store);
	strbuf_release(&sb);

	/* Not in the job's JSON: still its thirteen members. */
	format_and_parse(j, &root);
	assert_int_equal(json_object_each(root, collect_member, &m), 0);
	assert_int_equal(m.n, 13);
	assert_null(json_get(root, "nonce"));
	json_free(root);

	/* A queued record from before nonces: a job without one, whose
	 * snapshot has none either. */
	check_readers("{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"old\",\"event\":\"queued\","
		      "\"serial\":\"Q2XX-AAAA-0001\",\"duration\":20,\"source\":\"queue\"}",
		      0, 0);
	ev = ev_queued("old", TS0);
	apply_ok(&t, ev);
	assert_string_equal(job_table_find(&t, "old")->nonce, "");
	job_snapshot(job_table_find(&t, "old"), &snap);
	assert_null(snap.nonce);

	/* A nonce of the wrong shape: refused by both readers and by apply. */
	check_readers("{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"x\",\"event\":\"queued\","
		      "\"serial\":\"Q2XX-AAAA-0001\",\"duration\":20,\"nonce\":\"0123\"}",
		      -EBADMSG, -EBADMSG);
	check_readers("{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"x\",\"event\":\"queued\","
		      "\"serial\":\"Q2XX-AAAA-0001\",\"duration\":20,\"nonce\":12}",
		      -EBADMSG, -EBADMSG);
	ev = ev_queued("bad", TS0);
	ev.nonce = "0123456789ABCDEF0123456789ABCDEF";
	assert_int_equal(job_table_apply(&t, &ev, NULL), -EINVAL);
	assert_null(job_table_find(&t, "bad"));

	job_table_release(&t);
	job_table_release(&t2);
}

/* A job's snapshot, written and read back by each reader into a fresh table:
 * the job there, which the caller checks and releases with t. */
static struct job *snapshot_through_log(const struct job *j, struct job_table *t, bool flat)
{
	struct job_event_store store = JOB_EVENT_STORE_INIT;
	struct strbuf sb = STRBUF_INIT;
	struct job_event ev;
	struct job *got = NULL;

	job_snapshot(j, &ev);
	assert_int_equal(job_event_format(&ev, &sb), 0);
	assert_int_equal(job_table_init(t), 0);
	if (flat)
		assert_int_equal(job_event_parse_flat(sb.buf, sb.len - 1, &ev, &store), 0);
	else
		assert_int_equal(job_event_parse_json(sb.buf, sb.len - 1, &ev, &store), 0);
	assert_int_equal(job_table_apply(t, &ev, &got), 0);
	job_event_store_release(&store);
	strbuf_release(&sb);
	return got;
}

/* status_source: what reported the status the job holds, from the events'
 * source; kept by snapshots; absent from old records. */
static void test_status_source(void **state)
{
	(void)state;
	struct job_table t, t2;
	struct job *j;

	assert_int_equal(job_table_init(&t), 0);
	apply_ok(&t, ev_queued("src", TS0));
	j = job_table_find(&t, "src");
	assert_null(j->status_source);
	apply_ok(&t, ev_submitted("src", TS0 + USEC_PER_SEC, LBI));
	assert_string_equal(j->status_source, "api");
	struct job_event st = ev_status("src", TS0 + 2 * USEC_PER_SEC, "running");
	st.source = "poll";
	apply_ok(&t, st);
	assert_string_equal(j->status_source, "poll");

	/* Through compaction, by either reader, while not final. */
	for (int flat = 0; flat <= 1; flat++) {
		struct job *k = snapshot_through_log(j, &t2, flat);
		assert_string_equal(k->status_source, "poll");
		assert_string_equal(k->meraki_status, "running");
		job_table_release(&t2);
	}

	struct job_event fin = ev_final("src", TS0 + 3 * USEC_PER_SEC, JOB_COMPLETE);
	fin.source = "prompted poll";
	apply_ok(&t, fin);
	assert_string_equal(j->status_source, "prompted poll");
	for (int flat = 0; flat <= 1; flat++) {
		struct job *k = snapshot_through_log(j, &t2, flat);
		assert_string_equal(k->status_source, "prompted poll");
		job_table_release(&t2);
	}

	/* An event without a status leaves it: expiry says nothing of Meraki. */
	apply_ok(&t, ev_queued("src2", TS0));
	apply_ok(&t, ev_submitted("src2", TS0 + USEC_PER_SEC, LBI "2"));
	struct job_event exp = {.ts = TS0 + 9 * USEC_PER_SEC,
				.id = "src2",
				.kind = JOB_EV_FINAL,
				.state = JOB_EXPIRED,
				.error = "no final status",
				.source = "expiry"};
	apply_ok(&t, exp);
	assert_string_equal(job_table_find(&t, "src2")->status_source, "api");

	/* A snapshot of an older version, without source: null, by both readers. */
	static const char old[] = "{\"v\":1,\"ts\":\"2025-11-27T11:08:43Z\",\"id\":\"old\",\"event\":\"job\","
				  "\"serial\":\"" SERIAL "\",\"duration\":20,\"leds_blink_id\":\"1\","
				  "\"meraki_status\":\"complete\",\"state\":\"complete\","
				  "\"created_at\":\"2025-11-27T11:07:28Z\"}";
	for (int flat = 0; flat <= 1; flat++) {
		struct job_event_store store = JOB_EVENT_STORE_INIT;
		struct job_event ev;
		struct job *k = NULL;

		assert_int_equal(job_table_init(&t2), 0);
		if (flat)
			assert_int_equal(job_event_parse_flat(old, strlen(old), &ev, &store), 0);
		else
			assert_int_equal(job_event_parse_json(old, strlen(old), &ev, &store), 0);
		assert_int_equal(job_table_apply(&t2, &ev, &k), 0);
		assert_null(k->status_source);
		assert_string_equal(k->meraki_status, "complete");
		job_event_store_release(&store);
		job_table_release(&t2);
	}
	job_table_release(&t);
}

/* A record's line parsed by both readers (which must agree) into an event
 * applied to t. */
static void replay_line(struct job_table *t, const char *line, int want_apply)
{
	struct job_event_store store = JOB_EVENT_STORE_INIT, store2 = JOB_EVENT_STORE_INIT;
	struct job_event ev, ev2;

	assert_int_equal(job_event_parse_flat(line, strlen(line), &ev, &store), 0);
	assert_int_equal(job_event_parse_json(line, strlen(line), &ev2, &store2), 0);
	assert_int_equal(job_table_apply(t, &ev, NULL), want_apply);
	job_event_store_release(&store);
	job_event_store_release(&store2);
}

#define REC_AT(ts, id, rest) "{\"v\":1,\"ts\":\"" ts "\",\"id\":\"" id "\"," rest "}"

/* A job that names its device by name or MAC: serial null until the
 * "resolved" event, which the log keeps and replay understands. */
static void test_name_and_mac(void **state)
{
	(void)state;
	struct job_table t, t2;
	struct json *root = NULL;
	struct members m = {0};
	struct strbuf sb = STRBUF_INIT;
	struct job_event_store store = JOB_EVENT_STORE_INIT;
	struct job_event got, snap;
	struct job *j;

	assert_int_equal(job_table_init(&t), 0);
	struct job_event q = ev_queued("by-name", TS0);
	q.serial = NULL;
	q.name = "edge-sw-1 \xc3\xa9";
	apply_ok(&t, q);
	j = job_table_find(&t, "by-name");
	assert_string_equal(j->serial, "");
	assert_string_equal(j->name, "edge-sw-1 \xc3\xa9");
	format_and_parse(j, &root);
	assert_int_equal(json_object_each(root, collect_member, &m), 0);
	assert_json_str(&m, "serial", NULL);
	assert_json_str(&m, "name", "edge-sw-1 \xc3\xa9");
	assert_json_str(&m, "mac", NULL);
	json_free(root);
	root = NULL;
	m.n = 0;

	/* The record of the queued event, read back. */
	assert_int_equal(job_event_format(&q, &sb), 0);
	assert_non_null(strstr(sb.buf, "\"name\":\"edge-sw-1"));
	assert_null(strstr(sb.buf, "\"serial\""));
	assert_int_equal(job_event_parse(sb.buf, sb.len - 1, &got, &store), 0);
	assert_string_equal(got.name, q.name);
	assert_null(got.serial);
	strbuf_reset(&sb);

	/* Resolved once, for good. */
	struct job_event res = {.ts = TS0 + USEC_PER_SEC, .id = "by-name", .kind = JOB_EV_RESOLVED, .source = "api"};
	assert_int_equal(job_table_check(&t, &res), -EINVAL); /* no serial */
	res.serial = "Q2AB";
	assert_int_equal(job_table_check(&t, &res), -EINVAL);
	res.serial = SERIAL;
	apply_ok(&t, res);
	assert_string_equal(j->serial, SERIAL);
	assert_int_equal(j->state, JOB_QUEUED);
	assert_int_equal(job_table_apply(&t, &res, NULL), 1); /* the same again: nothing */
	res.serial = "Q2ZZ-ZZZZ-ZZZZ";
	assert_int_equal(job_table_apply(&t, &res, NULL), -EINVAL); /* another: refused */
	res.serial = SERIAL;
	assert_int_equal(job_event_format(&res, &sb), 0);
	assert_non_null(strstr(sb.buf, "\"event\":\"resolved\""));
	assert_int_equal(job_event_parse(sb.buf, sb.len - 1, &got, &store), 0);
	assert_int_equal(got.kind, JOB_EV_RESOLVED);
	assert_string_equal(got.serial, SERIAL);
	strbuf_reset(&sb);
	format_and_parse(j, &root);
	assert_int_equal(json_object_each(root, collect_member, &m), 0);
	assert_json_str(&m, "serial", SERIAL);
	assert_json_str(&m, "name", "edge-sw-1 \xc3\xa9");
	json_free(root);
	root = NULL;
	m.n = 0;

	/* A snapshot keeps both, and recreates the job. */
	job_snapshot(j, &snap);
	assert_int_equal(job_event_format(&snap, &sb), 0);
	assert_int_equal(job_event_parse(sb.buf, sb.len - 1, &got, &store), 0);
	assert_int_equal(job_table_init(&t2), 0);
	assert_int_equal(job_table_apply(&t2, &got, NULL), 0);
	assert_string_equal(job_table_find(&t2, "by-name")->serial, SERIAL);
	assert_string_equal(job_table_find(&t2, "by-name")->name, "edge-sw-1 \xc3\xa9");
	strbuf_reset(&sb);
	job_table_release(&t2);

	/* By MAC, unresolved: the snapshot has no serial. */
	q = ev_queued("by-mac", TS0);
	q.serial = NULL;
	q.mac = "00:18:0a:12:34:ab";
	apply_ok(&t, q);
	job_snapshot(job_table_find(&t, "by-mac"), &snap);
	assert_null(snap.serial);
	assert_int_equal(job_event_format(&snap, &sb), 0);
	assert_int_equal(job_event_parse(sb.buf, sb.len - 1, &got, &store), 0);
	assert_int_equal(job_table_init(&t2), 0);
	assert_int_equal(job_table_apply(&t2, &got, NULL), 0);
	assert_string_equal(job_table_find(&t2, "by-mac")->mac, "00:18:0a:12:34:ab");
	assert_string_equal(job_table_find(&t2, "by-mac")->serial, "");
	assert_null(job_table_find(&t2, "by-mac")->name);
	strbuf_reset(&sb);
	job_table_release(&t2);

	/* Refused: a serial with a name in a new job, name and MAC, a MAC not
	 * in the colon form, nothing, a bad name; a resolution once submitted
	 * changes nothing. */
	q = ev_queued("bad", TS0);
	q.name = "x";
	assert_int_equal(job_table_check(&t, &q), -EINVAL);
	q.serial = NULL;
	q.mac = "00:18:0a:12:34:ab";
	assert_int_equal(job_table_check(&t, &q), -EINVAL);
	q.name = NULL;
	q.mac = "00180a1234ab";
	assert_int_equal(job_table_check(&t, &q), -EINVAL);
	q.mac = NULL;
	assert_int_equal(job_table_check(&t, &q), -EINVAL);
	q.name = "bad\nname";
	assert_int_equal(job_table_check(&t, &q), -EINVAL);
	apply_ok(&t, ev_submitted("by-name", TS0 + 2 * USEC_PER_SEC, LBI));
	assert_int_equal(job_table_apply(&t, &res, NULL), 1);

	/* Records as the log has them, through both readers; a record from
	 * before 0.3.0 still reads. */
	assert_int_equal(job_table_init(&t2), 0);
	replay_line(&t2,
		    REC_AT("2025-11-27T11:07:28Z", "r1",
			   "\"event\":\"queued\",\"mac\":\"00:18:0a:12:34:ab\",\"duration\":20,\"source\":\"queue\""),
		    0);
	replay_line(&t2,
		    REC_AT("2025-11-27T11:07:29Z", "r1",
			   "\"event\":\"resolved\",\"serial\":\"" SERIAL "\",\"source\":\"api\""),
		    0);
	assert_string_equal(job_table_find(&t2, "r1")->serial, SERIAL);
	replay_line(&t2,
		    REC_AT("2025-11-27T11:07:28Z", "old",
			   "\"event\":\"queued\",\"serial\":\"" SERIAL "\",\"duration\":20,\"source\":\"queue\""),
		    0);
	assert_null(job_table_find(&t2, "old")->name);
	assert_string_equal(job_table_find(&t2, "old")->mac, "");
	job_table_release(&t2);
	{
		static const char *const bad[] = {
			REC_AT("2025-11-27T11:07:28Z", "r", "\"event\":\"queued\",\"duration\":20"),
			REC_AT("2025-11-27T11:07:28Z", "r",
			       "\"event\":\"queued\",\"name\":\"a\",\"mac\":\"00:18:0a:12:34:ab\",\"duration\":20"),
			REC_AT("2025-11-27T11:07:28Z", "r",
			       "\"event\":\"queued\",\"mac\":\"00180a1234ab\",\"duration\":20"),
			REC_AT("2025-11-27T11:07:28Z", "r", "\"event\":\"queued\",\"name\":\"\",\"duration\":20"),
			REC_AT("2025-11-27T11:07:28Z", "r", "\"event\":\"resolved\""),
			REC_AT("2025-11-27T11:07:28Z", "r", "\"event\":\"resolved\",\"serial\":\"Q2\""),
		};
		for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
			assert_int_equal(job_event_parse_flat(bad[i], strlen(bad[i]), &got, &store), -EBADMSG);
			assert_int_equal(job_event_parse_json(bad[i], strlen(bad[i]), &got, &store), -EBADMSG);
		}
	}
	job_event_store_release(&store);
	strbuf_release(&sb);
	job_table_release(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_names),
		cmocka_unit_test(test_meraki_status),
		cmocka_unit_test(test_event_names),
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_final_states),
		cmocka_unit_test(test_queued_replaces_final),
		cmocka_unit_test(test_status_repeat_and_order),
		cmocka_unit_test(test_status_on_queued),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_counters_many),
		cmocka_unit_test(test_remove),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_event_roundtrip),
		cmocka_unit_test(test_event_parse_rejects),
		cmocka_unit_test(test_event_fast_reader_text),
		cmocka_unit_test(test_event_fast_reader_declines),
		cmocka_unit_test(test_event_fast_reader_stamps),
		cmocka_unit_test(test_format_json),
		cmocka_unit_test(test_nonce),
		cmocka_unit_test(test_status_source),
		cmocka_unit_test(test_name_and_mac),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
