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
		.ts = ts, .id = id, .kind = JOB_EV_QUEUED, .serial = SERIAL, .duration = 20, .source = "queue",
	};
}

static struct job_event ev_attempt(const char *id, uint64_t ts, unsigned attempts, const char *error)
{
	return (struct job_event){
		.ts = ts, .id = id, .kind = JOB_EV_ATTEMPT, .attempts = attempts, .error = error, .source = "api",
	};
}

static struct job_event ev_submitted(const char *id, uint64_t ts, const char *lbi)
{
	return (struct job_event){
		.ts = ts, .id = id, .kind = JOB_EV_SUBMITTED, .leds_blink_id = lbi, .attempts = 1,
		.meraki_status = "new", .source = "api",
	};
}

static struct job_event ev_status(const char *id, uint64_t ts, const char *status)
{
	return (struct job_event){
		.ts = ts, .id = id, .kind = JOB_EV_STATUS, .meraki_status = status, .source = "callback",
	};
}

static struct job_event ev_final(const char *id, uint64_t ts, enum job_state state)
{
	return (struct job_event){
		.ts = ts, .id = id, .kind = JOB_EV_FINAL, .state = state, .source = "callback",
		.meraki_status = state == JOB_COMPLETE ? "complete" : state == JOB_FAILED ? "failed" : NULL,
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
	char lbi[64], status[64], error[64];
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
		/* But a second queued event is still an error. */
		apply_refused(&t, ev_queued("f", TS0), -EEXIST);
		job_table_release(&t);
	}
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
}

static void roundtrip(const struct job_event *ev)
{
	struct strbuf sb = STRBUF_INIT;
	struct job_event got;
	struct json *root = NULL;

	assert_int_equal(job_event_format(ev, &sb), 0);
	/* One line, ending in its newline. */
	assert_true(sb.len > 1);
	assert_int_equal(sb.buf[sb.len - 1], '\n');
	assert_ptr_equal(memchr(sb.buf, '\n', sb.len), sb.buf + sb.len - 1);
	assert_int_equal(job_event_parse(sb.buf, sb.len - 1, &got, &root), 0);
	assert_non_null(root);
	assert_event_equal(&got, ev);
	json_free(root);
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
		.ts = TS0, .id = "all", .kind = JOB_EV_QUEUED, .serial = SERIAL, .duration = 1,
		.leds_blink_id = LBI, .meraki_status = "ready", .error = "e", .source = "queue",
		.attempts = 1000000,
	};
	roundtrip(&ev);
	/* The fewest fields. */
	ev = (struct job_event){.ts = TS0, .id = "few", .kind = JOB_EV_FINAL, .state = JOB_EXPIRED};
	roundtrip(&ev);
}

static void assert_parse_error(const char *line, int want)
{
	struct job_event ev = {.id = "untouched"};
	struct json *root = NULL;
	int r = job_event_parse(line, strlen(line), &ev, &root);

	if (r != want)
		fail_msg("job_event_parse(%s) = %d, want %d", line, r, want);
	assert_null(root);
	assert_string_equal(ev.id, "untouched");
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
	struct job_event ev;
	struct json *root = NULL;

	memcpy(buf, nul, sizeof(nul));
	buf[sizeof(nul) - 1] = 0;
	buf[sizeof(nul)] = ' ';
	assert_int_equal(job_event_parse(buf, sizeof(buf), &ev, &root), -EBADMSG);
	assert_null(root);
	/* The same line without the NUL is fine: the rejections above are not
	 * a parser that rejects everything. */
	assert_int_equal(job_event_parse(nul, strlen(nul), &ev, &root), 0);
	assert_int_equal(ev.kind, JOB_EV_FINAL);
	assert_int_equal(ev.state, JOB_EXPIRED);
	assert_int_equal(ev.ts, TS0);
	json_free(root);
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
	assert_int_equal(m.n, 10);
	assert_json_str(&m, "id", "fmt-1");
	assert_json_str(&m, "serial", SERIAL);
	assert_json_int(&m, "duration", 45);
	assert_json_str(&m, "state", "queued");
	assert_json_str(&m, "leds_blink_id", NULL);
	assert_json_str(&m, "meraki_status", NULL);
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
	assert_int_equal(m.n, 10);
	assert_json_str(&m, "id", "fmt-1");
	assert_json_str(&m, "serial", SERIAL);
	assert_json_int(&m, "duration", 45);
	assert_json_str(&m, "state", "failed");
	assert_json_str(&m, "leds_blink_id", LBI);
	assert_json_str(&m, "meraki_status", "failed");
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_names),
		cmocka_unit_test(test_meraki_status),
		cmocka_unit_test(test_event_names),
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_final_states),
		cmocka_unit_test(test_status_repeat_and_order),
		cmocka_unit_test(test_status_on_queued),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_counters_many),
		cmocka_unit_test(test_remove),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_event_roundtrip),
		cmocka_unit_test(test_event_parse_rejects),
		cmocka_unit_test(test_format_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
