/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "blinkhook/callback.h"
#include "blinkhook/job.h"
#include "blinkhook/json.h"
#include "blinkhook/secret.h"
#include "blinkhook/util.h"

#define SERIAL "Q2XX-AAAA-0001"
#define NOW UINT64_C(1795000000000000) /* some time in 2026 */
#define STATIC_SECRET "configured-webhook-secret_0123"

/* The three jobs every test starts with. */
#define ID_QUEUED "job-queued"
#define ID_SUBMITTED "job-submitted"
#define ID_COMPLETE "job-complete"
#define ID_UNKNOWN "job-unknown"

struct fixture {
	struct job_table jobs;
	struct secret_key *key;
	struct callback_env env;
	char s_queued[SECRET_MAX], s_submitted[SECRET_MAX], s_complete[SECRET_MAX], s_unknown[SECRET_MAX];
};

static void apply(struct job_table *t, const struct job_event *ev)
{
	assert_int_equal(job_table_apply(t, ev, NULL), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	unsigned char kb[SECRET_KEY_SIZE];
	uint64_t ts = NOW - 60 * USEC_PER_SEC;

	if (!f)
		return -1;
	for (unsigned i = 0; i < sizeof(kb); i++)
		kb[i] = (unsigned char)(0x01 + i);
	if (job_table_init(&f->jobs) < 0 || secret_key_from_bytes(kb, sizeof(kb), &f->key) < 0)
		return -1;

	apply(&f->jobs, &(struct job_event){.ts = ts,
					    .id = ID_QUEUED,
					    .kind = JOB_EV_QUEUED,
					    .serial = SERIAL,
					    .duration = 20,
					    .source = "queue"});

	apply(&f->jobs, &(struct job_event){.ts = ts,
					    .id = ID_SUBMITTED,
					    .kind = JOB_EV_QUEUED,
					    .serial = SERIAL,
					    .duration = 20,
					    .source = "queue"});
	apply(&f->jobs, &(struct job_event){.ts = ts + 1,
					    .id = ID_SUBMITTED,
					    .kind = JOB_EV_SUBMITTED,
					    .leds_blink_id = "42",
					    .meraki_status = "new",
					    .attempts = 1,
					    .source = "api"});

	apply(&f->jobs, &(struct job_event){.ts = ts,
					    .id = ID_COMPLETE,
					    .kind = JOB_EV_QUEUED,
					    .serial = SERIAL,
					    .duration = 20,
					    .source = "queue"});
	apply(&f->jobs, &(struct job_event){.ts = ts + 1,
					    .id = ID_COMPLETE,
					    .kind = JOB_EV_SUBMITTED,
					    .leds_blink_id = "43",
					    .meraki_status = "new",
					    .attempts = 1,
					    .source = "api"});
	apply(&f->jobs, &(struct job_event){.ts = ts + 2,
					    .id = ID_COMPLETE,
					    .kind = JOB_EV_FINAL,
					    .state = JOB_COMPLETE,
					    .meraki_status = "complete",
					    .source = "callback"});

	assert_int_equal(job_table_find(&f->jobs, ID_QUEUED)->state, JOB_QUEUED);
	assert_int_equal(job_table_find(&f->jobs, ID_SUBMITTED)->state, JOB_SUBMITTED);
	assert_int_equal(job_table_find(&f->jobs, ID_COMPLETE)->state, JOB_COMPLETE);

	secret_for_job(f->key, ID_QUEUED, NULL, f->s_queued);
	secret_for_job(f->key, ID_SUBMITTED, NULL, f->s_submitted);
	secret_for_job(f->key, ID_COMPLETE, NULL, f->s_complete);
	secret_for_job(f->key, ID_UNKNOWN, NULL, f->s_unknown);

	f->env = (struct callback_env){.jobs = &f->jobs, .key = f->key, .now = NOW};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	job_table_release(&f->jobs);
	secret_key_free(f->key);
	free(f);
	return 0;
}

/* ---- building bodies in Meraki's callback shape ---- */

struct body {
	/* Each string member: NULL leaves it out; *_raw (JSON text) wins
	 * over the string form when set. */
	const char *secret, *secret_raw;
	const char *lbi, *lbi_raw;
	const char *status, *status_raw;
	const char *error, *error_raw;
	const char *message_raw; /* replaces the whole message */
	bool no_message;
	const char *extra_top;     /* raw members added at the top, "k":v,... */
	const char *extra_message; /* raw members added to message */
};

static void add_member(struct strbuf *sb, const char *key, const char *str, const char *raw)
{
	if (!str && !raw)
		return;
	assert_int_equal(strbuf_addf(sb, ",\"%s\":", key), 0);
	if (raw)
		assert_int_equal(strbuf_addstr(sb, raw), 0);
	else
		assert_int_equal(json_escape(sb, str), 0);
}

/* The body as a malloc'd string. */
static char *make_body(const struct body *b)
{
	struct strbuf sb = STRBUF_INIT;

	assert_int_equal(strbuf_addstr(&sb, "{\"callbackId\":\"1284392014819\","
					    "\"organization\":{\"id\":\"2930418\",\"name\":\"My organization\"},"
					    "\"network\":{\"id\":\"L_1234567890\",\"name\":\"Main Office\"},"
					    "\"sentAt\":\"2026-11-18T14:05:02.123456Z\""),
			 0);
	add_member(&sb, "sharedSecret", b->secret, b->secret_raw);
	if (b->extra_top)
		assert_int_equal(strbuf_addf(&sb, ",%s", b->extra_top), 0);
	if (b->message_raw)
		assert_int_equal(strbuf_addf(&sb, ",\"message\":%s", b->message_raw), 0);
	else if (!b->no_message) {
		assert_int_equal(
			strbuf_addstr(&sb, ",\"message\":{\"url\":\"/devices/" SERIAL "/liveTools/leds/blink/42\""), 0);
		add_member(&sb, "ledsBlinkId", b->lbi, b->lbi_raw);
		add_member(&sb, "status", b->status, b->status_raw);
		assert_int_equal(strbuf_addstr(&sb, ",\"request\":{\"serial\":\"" SERIAL "\",\"duration\":20}"), 0);
		add_member(&sb, "error", b->error, b->error_raw);
		if (b->extra_message)
			assert_int_equal(strbuf_addf(&sb, ",%s", b->extra_message), 0);
		assert_int_equal(strbuf_addstr(&sb, "}"), 0);
	}
	assert_int_equal(strbuf_addstr(&sb, "}"), 0);
	return sb.buf;
}

/* Evaluates len bytes of body; checks what must hold of every verdict. */
static void eval_len(struct fixture *f, const char *id, const char *body, size_t len, const char *header,
		     struct callback_verdict *v)
{
	const char *secrets[] = {f->s_queued, f->s_submitted, f->s_complete, f->s_unknown, STATIC_SECRET};

	assert_int_equal(callback_evaluate(&f->env, id, body, len, header, v), 0);
	assert_non_null(v->reason);
	assert_true(strlen(v->reason) > 0);
	/* The reason goes to the log: never a secret in it. */
	for (size_t i = 0; i < ELEMENTSOF(secrets); i++)
		assert_null(strstr(v->reason, secrets[i]));
	if (header && strlen(header) >= 8)
		assert_null(strstr(v->reason, header));
	if (v->http_status != 200)
		assert_false(v->record);
	if (v->record) {
		/* Whatever is to be recorded, the table takes. */
		assert_int_equal(job_table_check(f->env.jobs, &v->event), 0);
		assert_int_equal(v->event.ts, f->env.now);
		assert_string_equal(v->event.id, id);
		assert_string_equal(v->event.source, "callback");
	}
}

static void eval(struct fixture *f, const char *id, const char *body, const char *header, struct callback_verdict *v)
{
	eval_len(f, id, body, strlen(body), header, v);
}

/* Builds, evaluates, releases; returns the status; *ret_record (may be
 * NULL) says whether there was something to record. */
static unsigned verdict_of(struct fixture *f, const char *id, const struct body *b, const char *header,
			   bool *ret_record)
{
	_cleanup_free_ char *body = make_body(b);
	struct callback_verdict v;
	unsigned status;

	eval(f, id, body, header, &v);
	status = v.http_status;
	if (ret_record)
		*ret_record = v.record;
	callback_verdict_release(&v);
	return status;
}

static unsigned status_of(struct fixture *f, const char *id, const struct body *b)
{
	return verdict_of(f, id, b, NULL, NULL);
}

static unsigned raw_status_of(struct fixture *f, const char *id, const char *body, size_t len)
{
	struct callback_verdict v;
	unsigned status;

	eval_len(f, id, body, len, NULL, &v);
	status = v.http_status;
	callback_verdict_release(&v);
	return status;
}

/* Applies a verdict's event to the table, as the daemon does. */
static struct job *record(struct fixture *f, struct callback_verdict *v)
{
	struct job *j = NULL;

	assert_true(v->record);
	assert_int_equal(job_table_apply(&f->jobs, &v->event, &j), 0);
	assert_non_null(j);
	return j;
}

/* ---- 200 ---- */

static void test_complete_records_final(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *body = make_body(
		&(struct body){.secret = f->s_submitted, .lbi = "42", .status = "complete", .error_raw = "null"});
	struct callback_verdict v;
	struct job *j;

	eval(f, ID_SUBMITTED, body, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_true(v.record);
	assert_int_equal(v.event.kind, JOB_EV_FINAL);
	assert_int_equal(v.event.state, JOB_COMPLETE);
	assert_string_equal(v.event.meraki_status, "complete");
	assert_string_equal(v.event.leds_blink_id, "42");
	assert_null(v.event.error);
	j = record(f, &v);
	assert_int_equal(j->state, JOB_COMPLETE);
	assert_string_equal(j->meraki_status, "complete");
	callback_verdict_release(&v);
	assert_null(v.root);
	callback_verdict_release(&v); /* twice is harmless */

	/* Meraki sending it again: answered, nothing new. */
	eval(f, ID_SUBMITTED, body, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_false(v.record);
	callback_verdict_release(&v);
}

static void test_complete_for_queued_job(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *body = make_body(&(struct body){.secret = f->s_queued, .lbi = "77", .status = "complete"});
	struct callback_verdict v;
	struct job *j;

	/* The daemon crashed after the 201 and before logging it: the
	 * callback is the first it hears of the Meraki job. */
	eval(f, ID_QUEUED, body, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_true(v.record);
	assert_int_equal(v.event.kind, JOB_EV_FINAL);
	assert_int_equal(v.event.state, JOB_COMPLETE);
	assert_string_equal(v.event.leds_blink_id, "77");
	j = record(f, &v);
	assert_int_equal(j->state, JOB_COMPLETE);
	assert_string_equal(j->leds_blink_id, "77");
	callback_verdict_release(&v);
}

static void test_failed_records_error(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *body = make_body(&(struct body){
		.secret = f->s_submitted, .lbi = "42", .status = "failed", .error = "Device is offline"});
	struct callback_verdict v;
	struct job *j;

	eval(f, ID_SUBMITTED, body, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_true(v.record);
	assert_int_equal(v.event.kind, JOB_EV_FINAL);
	assert_int_equal(v.event.state, JOB_FAILED);
	assert_string_equal(v.event.meraki_status, "failed");
	assert_string_equal(v.event.error, "Device is offline");
	j = record(f, &v);
	assert_int_equal(j->state, JOB_FAILED);
	assert_string_equal(j->error, "Device is offline");
	callback_verdict_release(&v);
}

static void test_failed_default_error(void **state)
{
	struct fixture *f = *state;
	const struct body bodies[] = {
		{.secret = f->s_submitted, .lbi = "42", .status = "failed"},
		{.secret = f->s_submitted, .lbi = "42", .status = "failed", .error_raw = "null"},
		{.secret = f->s_submitted, .lbi = "42", .status = "failed", .error = ""},
	};

	for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
		_cleanup_free_ char *body = make_body(&bodies[i]);
		struct callback_verdict v;

		eval(f, ID_SUBMITTED, body, NULL, &v);
		assert_int_equal(v.http_status, 200);
		assert_true(v.record);
		assert_int_equal(v.event.state, JOB_FAILED);
		assert_non_null(v.event.error);
		assert_true(strlen(v.event.error) > 0);
		assert_string_equal(v.event.error, "Meraki reported the blink as failed");
		callback_verdict_release(&v);
	}
}

static void test_error_on_complete_kept(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *body = make_body(&(struct body){
		.secret = f->s_submitted, .lbi = "42", .status = "complete", .error = "odd but harmless"});
	struct callback_verdict v;

	eval(f, ID_SUBMITTED, body, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_int_equal(v.event.state, JOB_COMPLETE);
	assert_string_equal(v.event.error, "odd but harmless");
	callback_verdict_release(&v);
}

static void test_progress_status(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *running =
		make_body(&(struct body){.secret = f->s_submitted, .lbi = "42", .status = "running"});
	struct callback_verdict v;
	struct job *j;
	bool rec;

	eval(f, ID_SUBMITTED, running, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_true(v.record);
	assert_int_equal(v.event.kind, JOB_EV_STATUS);
	assert_string_equal(v.event.meraki_status, "running");
	assert_string_equal(v.event.leds_blink_id, "42");
	assert_null(v.event.error);
	j = record(f, &v);
	assert_int_equal(j->state, JOB_SUBMITTED);
	assert_string_equal(j->meraki_status, "running");
	callback_verdict_release(&v);

	/* The same status again: 200, nothing to record. */
	eval(f, ID_SUBMITTED, running, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_false(v.record);
	callback_verdict_release(&v);

	/* An older one, late: likewise. */
	assert_int_equal(verdict_of(f, ID_SUBMITTED,
				    &(struct body){.secret = f->s_submitted, .lbi = "42", .status = "scheduled"}, NULL,
				    &rec),
			 200);
	assert_false(rec);
	/* The status the job was submitted with ("new"). */
	assert_int_equal(verdict_of(f, ID_SUBMITTED,
				    &(struct body){.secret = f->s_submitted, .lbi = "42", .status = "new"}, NULL, &rec),
			 200);
	assert_false(rec);
}

static void test_every_progress_status(void **state)
{
	struct fixture *f = *state;
	static const char *const progress[] = {"ready", "scheduled", "running"};

	/* The submitted job knows "new": each later one is news. */
	for (size_t i = 0; i < ELEMENTSOF(progress); i++) {
		_cleanup_free_ char *body =
			make_body(&(struct body){.secret = f->s_submitted, .lbi = "42", .status = progress[i]});
		struct callback_verdict v;

		eval(f, ID_SUBMITTED, body, NULL, &v);
		assert_int_equal(v.http_status, 200);
		assert_true(v.record);
		assert_int_equal(v.event.kind, JOB_EV_STATUS);
		assert_string_equal(v.event.meraki_status, progress[i]);
		callback_verdict_release(&v);
	}
}

static void test_progress_for_queued_job(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *body = make_body(&(struct body){.secret = f->s_queued, .lbi = "42", .status = "new"});
	struct callback_verdict v;
	struct job *j;

	eval(f, ID_QUEUED, body, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_int_equal(v.event.kind, JOB_EV_STATUS);
	j = record(f, &v);
	/* Meraki has it, so the job is submitted now. */
	assert_int_equal(j->state, JOB_SUBMITTED);
	assert_string_equal(j->leds_blink_id, "42");
	callback_verdict_release(&v);
}

static void test_final_job_never_changes(void **state)
{
	struct fixture *f = *state;
	static const char *const statuses[] = {"new", "ready", "scheduled", "running", "complete", "failed"};
	static const char *const lbis[] = {"43", "999"};

	for (size_t i = 0; i < ELEMENTSOF(statuses); i++)
		for (size_t k = 0; k < ELEMENTSOF(lbis); k++) {
			bool rec = true;

			assert_int_equal(verdict_of(f, ID_COMPLETE,
						    &(struct body){.secret = f->s_complete,
								   .lbi = lbis[k],
								   .status = statuses[i],
								   .error = "late"},
						    NULL, &rec),
					 200);
			assert_false(rec);
		}
	assert_int_equal(job_table_find(&f->jobs, ID_COMPLETE)->state, JOB_COMPLETE);
}

static void test_ledsblinkid_absent_or_null(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *absent = make_body(&(struct body){.secret = f->s_submitted, .status = "running"});
	_cleanup_free_ char *null =
		make_body(&(struct body){.secret = f->s_submitted, .lbi_raw = "null", .status = "running"});
	struct callback_verdict v;

	/* A custom template may leave the id out: the job id in the URL and
	 * the secret say whose it is. */
	eval(f, ID_SUBMITTED, absent, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_true(v.record);
	assert_null(v.event.leds_blink_id);
	callback_verdict_release(&v);

	eval(f, ID_SUBMITTED, null, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_true(v.record);
	assert_null(v.event.leds_blink_id);
	callback_verdict_release(&v);
}

static void test_unknown_fields_ignored(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *body = make_body(&(struct body){
		.secret = f->s_submitted,
		.lbi = "42",
		.status = "running",
		.extra_top = "\"futureField\":{\"a\":[1,2,{\"b\":null}],\"c\":true},\"version\":2.5,"
			     "\"alertType\":\"x\"",
		.extra_message = "\"callback\":{\"id\":\"1284392014819\",\"url\":\"https://example.net/cb\","
				 "\"status\":\"running\"},\"createdAt\":\"2026-11-18T14:05:00Z\",\"n\":-1",
	});
	struct callback_verdict v;

	eval(f, ID_SUBMITTED, body, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_true(v.record);
	assert_string_equal(v.event.meraki_status, "running");
	callback_verdict_release(&v);
}

static void test_long_error_truncated(void **state)
{
	struct fixture *f = *state;
	char *msg = malloc(5001);
	_cleanup_free_ char *body = NULL;
	struct callback_verdict v;
	struct job *j;

	assert_non_null(msg);
	for (size_t i = 0; i < 5000; i++)
		msg[i] = (char)('a' + i % 26);
	msg[5000] = 0;
	body = make_body(&(struct body){.secret = f->s_submitted, .lbi = "42", .status = "failed", .error = msg});

	eval(f, ID_SUBMITTED, body, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_true(v.record);
	assert_non_null(v.event.error);
	assert_int_equal(strlen(v.event.error), JOB_TEXT_MAX);
	assert_memory_equal(v.event.error, msg, JOB_TEXT_MAX);
	j = record(f, &v);
	assert_int_equal(strlen(j->error), JOB_TEXT_MAX);
	callback_verdict_release(&v);
	free(msg);
}

/* A cut must not split a UTF-8 character: the event goes to the job log,
 * whose reader (like every JSON reader here) refuses invalid UTF-8. */
static void test_long_error_truncated_utf8(void **state)
{
	struct fixture *f = *state;
	static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x92\xa1"};

	for (size_t c = 0; c < ELEMENTSOF(chars); c++)
		for (size_t lead = 0; lead < 4; lead++) {
			struct strbuf msg = STRBUF_INIT, line = STRBUF_INIT;
			_cleanup_free_ char *body = NULL;
			_cleanup_(job_event_store_release) struct job_event_store store = JOB_EVENT_STORE_INIT;
			struct callback_verdict v;
			struct job_event back;
			size_t n;

			for (size_t i = 0; i < lead; i++)
				assert_int_equal(strbuf_addstr(&msg, "x"), 0);
			while (msg.len < 2 * JOB_TEXT_MAX)
				assert_int_equal(strbuf_addstr(&msg, chars[c]), 0);
			body = make_body(&(struct body){
				.secret = f->s_submitted, .lbi = "42", .status = "failed", .error = msg.buf});

			eval(f, ID_SUBMITTED, body, NULL, &v);
			assert_int_equal(v.http_status, 200);
			assert_non_null(v.event.error);
			n = strlen(v.event.error);
			assert_true(n <= JOB_TEXT_MAX);
			assert_true(n > JOB_TEXT_MAX - 4);
			assert_memory_equal(v.event.error, msg.buf, n);
			/* Whole characters only, so the log line reads back. */
			assert_int_equal((n - lead) % strlen(chars[c]), 0);
			assert_int_equal(job_event_format(&v.event, &line), 0);
			assert_int_equal(job_event_parse(line.buf, line.len - 1, &back, &store), 0);
			assert_string_equal(back.error, v.event.error);

			callback_verdict_release(&v);
			strbuf_release(&msg);
			strbuf_release(&line);
		}
}

static void test_error_not_a_string_ignored(void **state)
{
	struct fixture *f = *state;
	static const char *const errors[] = {"42", "{\"code\":1}", "[\"x\"]", "true"};

	for (size_t i = 0; i < ELEMENTSOF(errors); i++) {
		_cleanup_free_ char *body = make_body(&(struct body){
			.secret = f->s_submitted, .lbi = "42", .status = "failed", .error_raw = errors[i]});
		struct callback_verdict v;

		eval(f, ID_SUBMITTED, body, NULL, &v);
		assert_int_equal(v.http_status, 200);
		assert_int_equal(v.event.state, JOB_FAILED);
		assert_string_equal(v.event.error, "Meraki reported the blink as failed");
		callback_verdict_release(&v);
	}
}

/* ---- 401 ---- */

static void test_secret_missing_or_wrong(void **state)
{
	struct fixture *f = *state;
	char changed[SECRET_MAX], longer[SECRET_MAX + 8], prefix[SECRET_MAX];
	char with_nul[SECRET_MAX + 16];

	memcpy(changed, f->s_submitted, SECRET_MAX);
	changed[10] = changed[10] == 'A' ? 'B' : 'A';
	snprintf(longer, sizeof(longer), "%sA", f->s_submitted);
	snprintf(prefix, sizeof(prefix), "%.42s", f->s_submitted);
	snprintf(with_nul, sizeof(with_nul), "\"%s\\u0000\"", f->s_submitted);

	const struct body bad[] = {
		{.lbi = "42", .status = "complete"},                                    /* missing */
		{.secret = changed, .lbi = "42", .status = "complete"},                 /* one character */
		{.secret = longer, .lbi = "42", .status = "complete"},                  /* longer */
		{.secret = prefix, .lbi = "42", .status = "complete"},                  /* a prefix */
		{.secret = "", .lbi = "42", .status = "complete"},                      /* empty */
		{.secret_raw = "12345", .lbi = "42", .status = "complete"},             /* a number */
		{.secret_raw = "{\"value\":\"x\"}", .lbi = "42", .status = "complete"}, /* an object */
		{.secret_raw = "null", .lbi = "42", .status = "complete"},              /* null */
		{.secret_raw = "true", .lbi = "42", .status = "complete"},              /* a bool */
		{.secret_raw = "[]", .lbi = "42", .status = "complete"},                /* an array */
		{.secret_raw = with_nul, .lbi = "42", .status = "complete"},            /* NUL appended */
		{.secret = f->s_queued, .lbi = "42", .status = "complete"},             /* another job's */
		{.secret = f->s_complete, .lbi = "42", .status = "complete"},           /* another job's */
		{.secret = STATIC_SECRET, .lbi = "42", .status = "complete"},           /* not configured */
	};

	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		assert_int_equal(status_of(f, ID_SUBMITTED, &bad[i]), 401);

	/* The secret under another name, or inside message, counts for nothing. */
	char extra[128];
	snprintf(extra, sizeof(extra), "\"shared_secret\":\"%s\",\"secret\":\"%s\"", f->s_submitted, f->s_submitted);
	assert_int_equal(
		status_of(f, ID_SUBMITTED, &(struct body){.lbi = "42", .status = "complete", .extra_top = extra}), 401);
	snprintf(extra, sizeof(extra), "\"sharedSecret\":\"%s\"", f->s_submitted);
	assert_int_equal(
		status_of(f, ID_SUBMITTED, &(struct body){.lbi = "42", .status = "complete", .extra_message = extra}),
		401);

	/* Nothing was recorded along the way. */
	assert_int_equal(job_table_find(&f->jobs, ID_SUBMITTED)->state, JOB_SUBMITTED);
}

static void test_secret_in_header_when_none_configured(void **state)
{
	struct fixture *f = *state;

	/* The daemon passes NULL when no secret header is configured, however
	 * many Authorization headers the request had: a body without the
	 * field is then unauthenticated. */
	assert_int_equal(verdict_of(f, ID_SUBMITTED, &(struct body){.lbi = "42", .status = "complete"}, NULL, NULL),
			 401);
}

static void test_secret_in_header(void **state)
{
	struct fixture *f = *state;
	char bearer[SECRET_MAX + 16], lower[SECRET_MAX + 16], wrong[SECRET_MAX + 16], other[SECRET_MAX + 16];
	const struct body nosecret = {.lbi = "42", .status = "running"};
	bool rec;

	snprintf(bearer, sizeof(bearer), "Bearer %s", f->s_submitted);
	snprintf(lower, sizeof(lower), "bearer %s", f->s_submitted);
	snprintf(wrong, sizeof(wrong), "Bearer %.42sX", f->s_submitted);
	snprintf(other, sizeof(other), "Bearer %s", f->s_queued);

	assert_int_equal(verdict_of(f, ID_SUBMITTED, &nosecret, f->s_submitted, &rec), 200);
	assert_true(rec);
	assert_int_equal(verdict_of(f, ID_SUBMITTED, &nosecret, bearer, &rec), 200);
	assert_true(rec);
	assert_int_equal(verdict_of(f, ID_SUBMITTED, &nosecret, lower, &rec), 200);
	assert_true(rec);

	assert_int_equal(verdict_of(f, ID_SUBMITTED, &nosecret, wrong, NULL), 401);
	assert_int_equal(verdict_of(f, ID_SUBMITTED, &nosecret, other, NULL), 401);
	assert_int_equal(verdict_of(f, ID_SUBMITTED, &nosecret, "", NULL), 401);
	assert_int_equal(verdict_of(f, ID_SUBMITTED, &nosecret, "Bearer ", NULL), 401);
	assert_int_equal(verdict_of(f, ID_SUBMITTED, &nosecret, "Bearer", NULL), 401);

	/* Either place will do when both are there. */
	assert_int_equal(verdict_of(f, ID_SUBMITTED,
				    &(struct body){.secret = f->s_submitted, .lbi = "42", .status = "running"},
				    "Bearer wrong", NULL),
			 200);
	assert_int_equal(verdict_of(f, ID_SUBMITTED,
				    &(struct body){.secret = "wrong", .lbi = "42", .status = "running"}, bearer, NULL),
			 200);
	assert_int_equal(verdict_of(f, ID_SUBMITTED,
				    &(struct body){.secret = "wrong", .lbi = "42", .status = "running"}, "Bearer wrong",
				    NULL),
			 401);
}

static void test_invalid_job_id(void **state)
{
	struct fixture *f = *state;
	const struct body b = {.secret = f->s_submitted, .lbi = "42", .status = "complete"};

	assert_int_equal(status_of(f, "", &b), 401);
	assert_int_equal(status_of(f, "../job-submitted", &b), 401);
	assert_int_equal(status_of(f, "job submitted", &b), 401);
}

static void test_secret_checked_before_lookup(void **state)
{
	struct fixture *f = *state;

	/* Without the right secret nobody learns whether a job exists. */
	assert_int_equal(status_of(f, ID_UNKNOWN, &(struct body){.lbi = "42", .status = "complete"}), 401);
	assert_int_equal(
		status_of(f, ID_UNKNOWN, &(struct body){.secret = f->s_submitted, .lbi = "42", .status = "complete"}),
		401);
	assert_int_equal(status_of(f, ID_UNKNOWN, &(struct body){.secret = "wrong", .status = "complete"}), 401);
	/* ...and not by a malformed message either. */
	assert_int_equal(status_of(f, ID_UNKNOWN, &(struct body){.secret = "wrong", .no_message = true}), 401);
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = "wrong", .status = "bogus"}), 401);
}

/* A job with a nonce (every job queued since 0.3.0) takes only the secret
 * that binds it: not its id's alone (an earlier job's with the same id, or
 * one from before nonces), nor another nonce's. */
static void test_secret_binds_nonce(void **state)
{
	struct fixture *f = *state;
	static const char nonce[] = "00112233445566778899aabbccddeeff";
	char right[SECRET_MAX], id_only[SECRET_MAX], other[SECRET_MAX], bearer[SECRET_MAX + 16];

	apply(&f->jobs, &(struct job_event){.ts = NOW,
					    .id = "job-nonce",
					    .kind = JOB_EV_QUEUED,
					    .serial = SERIAL,
					    .duration = 20,
					    .source = "queue",
					    .nonce = nonce});
	apply(&f->jobs, &(struct job_event){.ts = NOW,
					    .id = "job-nonce",
					    .kind = JOB_EV_SUBMITTED,
					    .leds_blink_id = "44",
					    .meraki_status = "new",
					    .attempts = 1,
					    .source = "api"});
	secret_for_job(f->key, "job-nonce", nonce, right);
	secret_for_job(f->key, "job-nonce", NULL, id_only);
	secret_for_job(f->key, "job-nonce", "ffeeddccbbaa99887766554433221100", other);

	assert_int_equal(
		status_of(f, "job-nonce", &(struct body){.secret = id_only, .lbi = "44", .status = "complete"}), 401);
	assert_int_equal(status_of(f, "job-nonce", &(struct body){.secret = other, .lbi = "44", .status = "complete"}),
			 401);
	snprintf(bearer, sizeof(bearer), "Bearer %s", id_only);
	assert_int_equal(verdict_of(f, "job-nonce", &(struct body){.lbi = "44", .status = "complete"}, bearer, NULL),
			 401);
	assert_int_equal(job_table_find(&f->jobs, "job-nonce")->state, JOB_SUBMITTED);
	assert_int_equal(status_of(f, "job-nonce", &(struct body){.secret = right, .lbi = "44", .status = "complete"}),
			 200);
	snprintf(bearer, sizeof(bearer), "Bearer %s", right);
	assert_int_equal(verdict_of(f, "job-nonce", &(struct body){.lbi = "44", .status = "complete"}, bearer, NULL),
			 200);
}

/* ---- 404 ---- */

static void test_unknown_job(void **state)
{
	struct fixture *f = *state;
	char bearer[SECRET_MAX + 16];

	assert_int_equal(
		status_of(f, ID_UNKNOWN, &(struct body){.secret = f->s_unknown, .lbi = "42", .status = "complete"}),
		404);
	snprintf(bearer, sizeof(bearer), "Bearer %s", f->s_unknown);
	assert_int_equal(verdict_of(f, ID_UNKNOWN, &(struct body){.lbi = "42", .status = "complete"}, bearer, NULL),
			 404);
	assert_null(job_table_find(&f->jobs, ID_UNKNOWN));
}

/* ---- 400 ---- */

static void test_not_a_json_object(void **state)
{
	struct fixture *f = *state;
	static const char *const bodies[] = {
		"",
		" ",
		"not json",
		"{",
		"{\"sharedSecret\":",
		"[]",
		"[{\"message\":{}}]",
		"\"a string\"",
		"42",
		"-1.5",
		"true",
		"null",
		"{} {}",
		"{}x",
		"{\"a\":1,}",
		"<html><body>hi</body></html>",
	};

	for (size_t i = 0; i < ELEMENTSOF(bodies); i++)
		assert_int_equal(raw_status_of(f, ID_SUBMITTED, bodies[i], strlen(bodies[i])), 400);

	/* A good body with trailing white space is fine; with anything else not. */
	_cleanup_free_ char *good =
		make_body(&(struct body){.secret = f->s_submitted, .lbi = "42", .status = "running"});
	struct strbuf sb = STRBUF_INIT;
	assert_int_equal(strbuf_addf(&sb, "%s \r\n", good), 0);
	assert_int_equal(raw_status_of(f, ID_SUBMITTED, sb.buf, sb.len), 200);
	strbuf_reset(&sb);
	assert_int_equal(strbuf_addf(&sb, "%s,", good), 0);
	assert_int_equal(raw_status_of(f, ID_SUBMITTED, sb.buf, sb.len), 400);
	strbuf_release(&sb);
}

static void test_message_missing_or_not_object(void **state)
{
	struct fixture *f = *state;
	const char *s = f->s_submitted;

	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .no_message = true}), 400);
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .message_raw = "null"}), 400);
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .message_raw = "\"complete\""}), 400);
	assert_int_equal(
		status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .message_raw = "[{\"status\":\"complete\"}]"}),
		400);
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .message_raw = "7"}), 400);
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .message_raw = "{}"}), 400);
}

static void test_status_missing_unknown_or_not_string(void **state)
{
	struct fixture *f = *state;
	static const char *const unknown[] = {"completed", "Complete", "COMPLETE", "done",   "",
					      " running",  "running ", "expired",  "queued", "submitted"};
	static const char *const raw[] = {"1", "null", "true", "{\"value\":\"complete\"}", "[\"complete\"]"};
	const char *s = f->s_submitted;

	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .lbi = "42"}), 400);
	for (size_t i = 0; i < ELEMENTSOF(unknown); i++)
		assert_int_equal(
			status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .lbi = "42", .status = unknown[i]}),
			400);
	for (size_t i = 0; i < ELEMENTSOF(raw); i++)
		assert_int_equal(
			status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .lbi = "42", .status_raw = raw[i]}),
			400);
	/* A status at the top instead of in message is not one. */
	assert_int_equal(status_of(f, ID_SUBMITTED,
				   &(struct body){.secret = s, .lbi = "42", .extra_top = "\"status\":\"complete\""}),
			 400);
	assert_int_equal(job_table_find(&f->jobs, ID_SUBMITTED)->state, JOB_SUBMITTED);
}

static void test_ledsblinkid_mismatch_or_bad(void **state)
{
	struct fixture *f = *state;
	char long_id[CALLBACK_ID_MAX + 2];
	const char *s = f->s_submitted;

	memset(long_id, '4', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = 0;

	/* Another Meraki job than the one this job is. */
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .lbi = "43", .status = "complete"}),
			 400);
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .lbi = "420", .status = "running"}),
			 400);
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .lbi = "4", .status = "failed"}), 400);
	/* As a number: compared as its decimal text, so another one is refused. */
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .lbi_raw = "43", .status = "complete"}),
			 400);
	assert_int_equal(
		status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .lbi_raw = "42.0", .status = "complete"}), 400);
	/* Not a string or an integer, or empty, or too long. */
	assert_int_equal(status_of(f, ID_SUBMITTED,
				   &(struct body){.secret = s, .lbi_raw = "{\"id\":\"42\"}", .status = "complete"}),
			 400);
	assert_int_equal(
		status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .lbi_raw = "[\"42\"]", .status = "complete"}),
		400);
	assert_int_equal(
		status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .lbi_raw = "true", .status = "complete"}), 400);
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = s, .lbi = "", .status = "complete"}), 400);
	assert_int_equal(status_of(f, ID_QUEUED, &(struct body){.secret = f->s_queued, .lbi = "", .status = "running"}),
			 400);
	assert_int_equal(
		status_of(f, ID_QUEUED, &(struct body){.secret = f->s_queued, .lbi = long_id, .status = "running"}),
		400);
	assert_int_equal(
		status_of(f, ID_QUEUED, &(struct body){.secret = f->s_queued, .lbi_raw = "7e0", .status = "running"}),
		400);
	assert_int_equal(job_table_find(&f->jobs, ID_SUBMITTED)->state, JOB_SUBMITTED);
	assert_int_equal(job_table_find(&f->jobs, ID_QUEUED)->state, JOB_QUEUED);
}

/* A ledsBlinkId the API sent as a number is the job's as its decimal text,
 * whatever its size: never through 64 bits, where a 20-digit id would read
 * as INT64_MAX or UINT64_MAX and match another. */
static void test_ledsblinkid_numeric(void **state)
{
	struct fixture *f = *state;
	struct callback_verdict v;
	_cleanup_free_ char *body = NULL;

	apply(&f->jobs, &(struct job_event){.ts = NOW - 1,
					    .id = ID_UNKNOWN,
					    .kind = JOB_EV_QUEUED,
					    .serial = SERIAL,
					    .duration = 20,
					    .source = "queue"});
	apply(&f->jobs, &(struct job_event){.ts = NOW,
					    .id = ID_UNKNOWN,
					    .kind = JOB_EV_SUBMITTED,
					    .leds_blink_id = "98765432109876543210",
					    .attempts = 1,
					    .source = "api"});
	static const char *const others[] = {"9223372036854775807", "18446744073709551615", "98765432109876543211",
					     "-98765432109876543210", "98765432109876543210.0"};
	for (size_t i = 0; i < ELEMENTSOF(others); i++)
		assert_int_equal(
			status_of(f, ID_UNKNOWN,
				  &(struct body){.secret = f->s_unknown, .lbi_raw = others[i], .status = "running"}),
			400);

	body = make_body(
		&(struct body){.secret = f->s_unknown, .lbi_raw = "98765432109876543210", .status = "complete"});
	eval(f, ID_UNKNOWN, body, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_string_equal(v.event.leds_blink_id, "98765432109876543210");
	assert_int_equal(record(f, &v)->state, JOB_COMPLETE);
	callback_verdict_release(&v);

	/* The small one too, as a number. */
	assert_int_equal(status_of(f, ID_SUBMITTED,
				   &(struct body){.secret = f->s_submitted, .lbi_raw = "42", .status = "running"}),
			 200);

	/* A Dashboard receiver's callback finds its job by the id's text too. */
	f->env.static_secret = STATIC_SECRET;
	assert_int_equal(status_of(f, "",
				   &(struct body){.secret = STATIC_SECRET,
						  .lbi_raw = "9223372036854775807",
						  .status = "complete"}),
			 404);
	free(body);
	body = make_body(&(struct body){.secret = STATIC_SECRET, .lbi_raw = "42", .status = "running"});
	assert_int_equal(callback_evaluate(&f->env, "", body, strlen(body), NULL, &v), 0);
	assert_int_equal(v.http_status, 200);
	assert_string_equal(v.event.id, ID_SUBMITTED);
	callback_verdict_release(&v);
}

/* {"sharedSecret":..., "message":{...}, "deep":[[[...]]]}: the object itself
 * is one level, so "deep" nests depth - 1 arrays. */
static char *nested_body(struct fixture *f, unsigned depth)
{
	struct strbuf sb = STRBUF_INIT;

	assert_int_equal(strbuf_addf(&sb,
				     "{\"sharedSecret\":\"%s\",\"message\":{\"ledsBlinkId\":\"42\","
				     "\"status\":\"running\"},\"deep\":",
				     f->s_submitted),
			 0);
	for (unsigned i = 1; i < depth; i++)
		assert_int_equal(strbuf_addstr(&sb, "["), 0);
	assert_int_equal(strbuf_addstr(&sb, "0"), 0);
	for (unsigned i = 1; i < depth; i++)
		assert_int_equal(strbuf_addstr(&sb, "]"), 0);
	assert_int_equal(strbuf_addstr(&sb, "}"), 0);
	return sb.buf;
}

static void test_depth_limit(void **state)
{
	struct fixture *f = *state;
	static const unsigned bad[] = {CALLBACK_JSON_DEPTH + 1, CALLBACK_JSON_DEPTH + 2, 100, 10000};

	/* Depth CALLBACK_JSON_DEPTH itself is left untested: json-c counts
	 * one level more than the document has, so json_parse() refuses it
	 * today, and that may be corrected there. */
	for (unsigned d = 2; d < CALLBACK_JSON_DEPTH; d++) {
		_cleanup_free_ char *b = nested_body(f, d);
		assert_int_equal(raw_status_of(f, ID_SUBMITTED, b, strlen(b)), 200);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		_cleanup_free_ char *b = nested_body(f, bad[i]);
		assert_int_equal(raw_status_of(f, ID_SUBMITTED, b, strlen(b)), 400);
	}
	/* Too deep is refused before the secret is looked at. */
	{
		_cleanup_free_ char *b = nested_body(f, 100);
		memcpy(strstr(b, f->s_submitted), "XXXX", 4);
		assert_int_equal(raw_status_of(f, ID_SUBMITTED, b, strlen(b)), 400);
	}
}

static void test_nul_byte(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *good =
		make_body(&(struct body){.secret = f->s_submitted, .lbi = "42", .status = "running"});
	size_t len = strlen(good);
	_cleanup_free_ char *b = malloc(len + 2);
	char *p;

	assert_non_null(b);
	assert_int_equal(raw_status_of(f, ID_SUBMITTED, good, len), 200);

	/* In a string (the callbackId). */
	memcpy(b, good, len + 1);
	p = strstr(b, "1284392014819");
	assert_non_null(p);
	p[4] = 0;
	assert_int_equal(raw_status_of(f, ID_SUBMITTED, b, len), 400);

	/* Between tokens. */
	memcpy(b, good, len + 1);
	p = strstr(b, ",\"organization\"");
	assert_non_null(p);
	memmove(p + 1, p, len + 1 - (size_t)(p - b));
	*p = 0;
	assert_int_equal(raw_status_of(f, ID_SUBMITTED, b, len + 1), 400);

	/* After the end. */
	memcpy(b, good, len + 1);
	assert_int_equal(raw_status_of(f, ID_SUBMITTED, b, len + 1), 400);

	/* Escaped as \u0000 it is JSON, and fine in a field nobody reads. */
	_cleanup_free_ char *esc = make_body(&(struct body){
		.secret = f->s_submitted, .lbi = "42", .status = "running", .extra_top = "\"note\":\"a\\u0000b\""});
	assert_int_equal(raw_status_of(f, ID_SUBMITTED, esc, strlen(esc)), 200);
}

static void test_invalid_utf8(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {
		"\xff", "\x80", "\xc3", "\xc3\x28", "\xe2\x82", "\xf0\x9f\x92", "\xf8\x88\x80\x80\x80",
	};
	char extra[64];

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		snprintf(extra, sizeof(extra), "\"note\":\"a%sb\"", bad[i]);
		_cleanup_free_ char *b = make_body(
			&(struct body){.secret = f->s_submitted, .lbi = "42", .status = "running", .extra_top = extra});
		assert_int_equal(raw_status_of(f, ID_SUBMITTED, b, strlen(b)), 400);
	}
	/* In the error text that would be recorded. */
	_cleanup_free_ char *b = make_body(&(struct body){
		.secret = f->s_submitted, .lbi = "42", .status = "failed", .error_raw = "\"bad \xfe text\""});
	assert_int_equal(raw_status_of(f, ID_SUBMITTED, b, strlen(b)), 400);

	/* Valid multi-byte UTF-8 is fine. */
	_cleanup_free_ char *ok =
		make_body(&(struct body){.secret = f->s_submitted,
					 .lbi = "42",
					 .status = "failed",
					 .error = "Ger\xc3\xa4t offline \xe2\x82\xac \xf0\x9f\x92\xa1"});
	struct callback_verdict v;
	eval(f, ID_SUBMITTED, ok, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_string_equal(v.event.error, "Ger\xc3\xa4t offline \xe2\x82\xac \xf0\x9f\x92\xa1");
	callback_verdict_release(&v);
}

/* ---- http_server_id mode: one configured secret ---- */

static void test_static_secret(void **state)
{
	struct fixture *f = *state;
	char bearer[64];
	bool rec;

	f->env.static_secret = STATIC_SECRET;
	snprintf(bearer, sizeof(bearer), "Bearer %s", STATIC_SECRET);

	/* Good for every job. */
	assert_int_equal(verdict_of(f, ID_SUBMITTED,
				    &(struct body){.secret = STATIC_SECRET, .lbi = "42", .status = "running"}, NULL,
				    &rec),
			 200);
	assert_true(rec);
	assert_int_equal(verdict_of(f, ID_QUEUED,
				    &(struct body){.secret = STATIC_SECRET, .lbi = "42", .status = "running"}, NULL,
				    &rec),
			 200);
	assert_true(rec);
	assert_int_equal(verdict_of(f, ID_COMPLETE,
				    &(struct body){.secret = STATIC_SECRET, .lbi = "43", .status = "complete"}, NULL,
				    &rec),
			 200);
	assert_false(rec);
	assert_int_equal(verdict_of(f, ID_SUBMITTED, &(struct body){.lbi = "42", .status = "running"}, bearer, &rec),
			 200);
	assert_true(rec);
	assert_int_equal(
		verdict_of(f, ID_SUBMITTED, &(struct body){.lbi = "42", .status = "running"}, STATIC_SECRET, &rec),
		200);

	/* The per-job secrets are not accepted in this mode. */
	assert_int_equal(
		status_of(f, ID_SUBMITTED, &(struct body){.secret = f->s_submitted, .lbi = "42", .status = "running"}),
		401);
	assert_int_equal(
		status_of(f, ID_QUEUED, &(struct body){.secret = f->s_queued, .lbi = "42", .status = "running"}), 401);
	/* Nor anything close to the configured one. */
	assert_int_equal(status_of(f, ID_SUBMITTED,
				   &(struct body){.secret = STATIC_SECRET "x", .lbi = "42", .status = "running"}),
			 401);
	assert_int_equal(
		status_of(f, ID_SUBMITTED,
			  &(struct body){.secret = "configured-webhook-secret_012", .lbi = "42", .status = "running"}),
		401);
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = "", .lbi = "42", .status = "running"}),
			 401);
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.lbi = "42", .status = "running"}), 401);

	/* Unknown job: 404 with the secret, 401 without. */
	assert_int_equal(status_of(f, ID_UNKNOWN, &(struct body){.secret = STATIC_SECRET, .status = "running"}), 404);
	assert_int_equal(status_of(f, ID_UNKNOWN, &(struct body){.secret = "wrong", .status = "running"}), 401);

	/* The other checks still apply. */
	assert_int_equal(
		status_of(f, ID_SUBMITTED, &(struct body){.secret = STATIC_SECRET, .lbi = "43", .status = "running"}),
		400);
}

static void test_static_secret_works_without_key(void **state)
{
	struct fixture *f = *state;

	f->env.static_secret = STATIC_SECRET;
	f->env.key = NULL;
	assert_int_equal(
		status_of(f, ID_SUBMITTED, &(struct body){.secret = STATIC_SECRET, .lbi = "42", .status = "complete"}),
		200);
	assert_int_equal(status_of(f, ID_SUBMITTED, &(struct body){.secret = "x", .lbi = "42", .status = "complete"}),
			 401);
}

/* ---- the alert shape, the shape check, what the verdict tells ---- */

/* A body in the alert webhook shape: secret (NULL: none) at the top, the job
 * (raw JSON, NULL: none) under alertData, alert_type (NULL: none). */
static char *make_alert(const char *secret, const char *alert_type, const char *job_raw)
{
	struct strbuf sb = STRBUF_INIT;

	assert_int_equal(strbuf_addstr(&sb, "{\"version\":\"0.1\",\"sentAt\":\"2026-11-18T14:05:02.123456Z\","
					    "\"organizationId\":\"2930418\",\"organizationName\":\"My organization\","
					    "\"networkId\":\"L_1234567890\",\"alertId\":\"1284392014819\","
					    "\"alertTypeId\":\"api_callback\",\"alertLevel\":\"informational\""),
			 0);
	add_member(&sb, "sharedSecret", secret, NULL);
	add_member(&sb, "alertType", alert_type, NULL);
	if (job_raw)
		assert_int_equal(strbuf_addf(&sb, ",\"alertData\":%s", job_raw), 0);
	assert_int_equal(strbuf_addstr(&sb, "}"), 0);
	return sb.buf;
}

#define ALERT_JOB(status) \
	"{\"ledsBlinkId\":\"42\",\"url\":\"/x\",\"status\":\"" status "\",\"request\":{\"serial\":\"" SERIAL "\"}}"

static unsigned alert_verdict(struct fixture *f, const char *id, const char *secret, const char *alert_type,
			      const char *job_raw, const char *header, struct callback_verdict *v)
{
	_cleanup_free_ char *body = make_alert(secret, alert_type, job_raw);

	eval(f, id, body, header, v);
	return v->http_status;
}

static void test_alert_shape(void **state)
{
	struct fixture *f = *state;
	struct callback_verdict v;
	char bearer[SECRET_MAX + 16];

	/* Progress, then final with Meraki's error: recorded as from the
	 * callback shape. */
	assert_int_equal(alert_verdict(f, ID_SUBMITTED, f->s_submitted, "API callback", ALERT_JOB("running"), NULL, &v),
			 200);
	assert_int_equal(v.shape, CALLBACK_SHAPE_ALERT);
	assert_int_equal(v.secret_sources, CALLBACK_SECRET_BODY);
	assert_int_equal(v.event.kind, JOB_EV_STATUS);
	assert_string_equal(v.event.meraki_status, "running");
	assert_string_equal(v.event.leds_blink_id, "42");
	assert_null(v.unverified);
	record(f, &v);
	callback_verdict_release(&v);
	assert_int_equal(alert_verdict(f, ID_SUBMITTED, f->s_submitted, "API callback",
				       "{\"ledsBlinkId\":\"42\",\"status\":\"failed\",\"error\":\"Device is offline\"}",
				       NULL, &v),
			 200);
	assert_int_equal(v.event.kind, JOB_EV_FINAL);
	assert_int_equal(v.event.state, JOB_FAILED);
	assert_string_equal(v.event.error, "Device is offline");
	record(f, &v);
	callback_verdict_release(&v);
	assert_int_equal(job_table_find(&f->jobs, ID_SUBMITTED)->state, JOB_FAILED);

	/* The secret rules are the same: in a header, */
	snprintf(bearer, sizeof(bearer), "Bearer %s", f->s_queued);
	assert_int_equal(alert_verdict(f, ID_QUEUED, NULL, "API callback", ALERT_JOB("running"), bearer, &v), 200);
	assert_int_equal(v.secret_sources, CALLBACK_SECRET_HEADER);
	assert_true(v.record);
	callback_verdict_release(&v);
	/* ...none, a wrong one or another job's is 401, */
	assert_int_equal(alert_verdict(f, ID_QUEUED, NULL, "API callback", ALERT_JOB("running"), NULL, &v), 401);
	assert_int_equal(v.shape, CALLBACK_SHAPE_ALERT);
	callback_verdict_release(&v);
	assert_int_equal(alert_verdict(f, ID_QUEUED, "wrong", "API callback", ALERT_JOB("running"), NULL, &v), 401);
	callback_verdict_release(&v);
	assert_int_equal(alert_verdict(f, ID_QUEUED, f->s_complete, "API callback", ALERT_JOB("running"), NULL, &v),
			 401);
	callback_verdict_release(&v);
	/* ...and a job's status is checked as in the callback shape. */
	assert_int_equal(alert_verdict(f, ID_QUEUED, f->s_queued, "API callback", ALERT_JOB("done"), NULL, &v), 400);
	callback_verdict_release(&v);
	assert_int_equal(alert_verdict(f, ID_QUEUED, f->s_queued, "API callback", "{\"ledsBlinkId\":7}", NULL, &v),
			 400);
	callback_verdict_release(&v);

	/* In http_server_id mode the job is found by alertData.ledsBlinkId. */
	f->env.static_secret = STATIC_SECRET;
	assert_int_equal(alert_verdict(f, "", STATIC_SECRET, "API callback", ALERT_JOB("running"), NULL, &v), 200);
	assert_string_equal(v.event.id, ID_SUBMITTED);
	assert_false(v.record); /* failed above: final is final */
	callback_verdict_release(&v);
}

static void test_other_shape(void **state)
{
	struct fixture *f = *state;
	struct callback_verdict v;
	const char *s = f->s_submitted;

	/* An alert of another type, one without its type, with alertData not
	 * an object, both shapes at once, neither: 400 with the right secret. */
	static const char *const types[] = {"Settings changed", "api callback", ""};
	for (size_t i = 0; i < ELEMENTSOF(types); i++) {
		assert_int_equal(alert_verdict(f, ID_SUBMITTED, s, types[i], ALERT_JOB("complete"), NULL, &v), 400);
		assert_int_equal(v.shape, CALLBACK_SHAPE_OTHER);
		callback_verdict_release(&v);
	}
	assert_int_equal(alert_verdict(f, ID_SUBMITTED, s, NULL, ALERT_JOB("complete"), NULL, &v), 400);
	callback_verdict_release(&v);
	assert_int_equal(alert_verdict(f, ID_SUBMITTED, s, "API callback", "\"complete\"", NULL, &v), 400);
	assert_int_equal(v.shape, CALLBACK_SHAPE_OTHER);
	callback_verdict_release(&v);
	assert_int_equal(alert_verdict(f, ID_SUBMITTED, s, "API callback", "null", NULL, &v), 400);
	callback_verdict_release(&v);
	assert_int_equal(alert_verdict(f, ID_SUBMITTED, s, "API callback", NULL, NULL, &v), 400);
	callback_verdict_release(&v);
	assert_int_equal(status_of(f, ID_SUBMITTED,
				   &(struct body){.secret = s,
						  .lbi = "42",
						  .status = "complete",
						  .extra_top = "\"alertType\":\"API callback\","
							       "\"alertData\":" ALERT_JOB("complete")}),
			 400);
	assert_int_equal(job_table_find(&f->jobs, ID_SUBMITTED)->state, JOB_SUBMITTED);

	/* Still after the secret and the job: without the secret 401, for an
	 * unknown job with its secret 404, whatever the shape. */
	assert_int_equal(alert_verdict(f, ID_SUBMITTED, "wrong", "Settings changed", ALERT_JOB("complete"), NULL, &v),
			 401);
	assert_int_equal(v.shape, CALLBACK_SHAPE_OTHER);
	callback_verdict_release(&v);
	assert_int_equal(alert_verdict(f, ID_UNKNOWN, f->s_unknown, "Settings changed", NULL, NULL, &v), 404);
	callback_verdict_release(&v);

	assert_string_equal(callback_shape_to_string(CALLBACK_SHAPE_CALLBACK), "callback");
	assert_string_equal(callback_shape_to_string(CALLBACK_SHAPE_ALERT), "alert");
	assert_string_equal(callback_shape_to_string(CALLBACK_SHAPE_OTHER), "other");
}

static void test_secret_sources(void **state)
{
	struct fixture *f = *state;
	struct callback_verdict v;
	const struct {
		const char *secret, *secret_raw, *header;
		unsigned want;
		const char *name;
	} cases[] = {
		{NULL, NULL, NULL, 0, "none"},
		{"wrong", NULL, NULL, CALLBACK_SECRET_BODY, "body field"},
		{"", NULL, NULL, CALLBACK_SECRET_BODY, "body field"},
		{NULL, "12345", NULL, 0, "none"}, /* not a string: no secret at all */
		{NULL, "null", NULL, 0, "none"},
		{NULL, NULL, "Bearer wrong", CALLBACK_SECRET_HEADER, "configured header"},
		{"wrong", NULL, "Bearer wrong", CALLBACK_SECRET_BODY | CALLBACK_SECRET_HEADER,
		 "body field and configured header"},
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_free_ char *body = make_body(&(struct body){.secret = cases[i].secret,
								     .secret_raw = cases[i].secret_raw,
								     .lbi = "42",
								     .status = "complete"});
		eval(f, ID_SUBMITTED, body, cases[i].header, &v);
		assert_int_equal(v.http_status, 401);
		assert_int_equal(v.shape, CALLBACK_SHAPE_CALLBACK);
		assert_int_equal(v.secret_sources, cases[i].want);
		assert_string_equal(callback_secret_sources_to_string(v.secret_sources), cases[i].name);
		callback_verdict_release(&v);
	}
	/* And when the secret is right, where it was. */
	_cleanup_free_ char *good =
		make_body(&(struct body){.secret = f->s_submitted, .lbi = "42", .status = "running"});
	eval(f, ID_SUBMITTED, good, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_int_equal(v.secret_sources, CALLBACK_SECRET_BODY);
	callback_verdict_release(&v);
	/* A body that is no JSON object gets no further: nothing known. */
	eval(f, ID_SUBMITTED, "[]", "Bearer x", &v);
	assert_int_equal(v.http_status, 400);
	assert_int_equal(v.shape, CALLBACK_SHAPE_OTHER);
	assert_int_equal(v.secret_sources, 0);
	callback_verdict_release(&v);
}

/* A 401 names the job for the daemon's prompted poll only when it is known,
 * submitted and has a ledsBlinkId; the answer itself is the same. */
static void test_unverified_job(void **state)
{
	struct fixture *f = *state;
	struct callback_verdict v, u;
	_cleanup_free_ char *body = make_body(&(struct body){.secret = "wrong", .lbi = "42", .status = "failed"});

	eval(f, ID_SUBMITTED, body, NULL, &v);
	assert_int_equal(v.http_status, 401);
	assert_ptr_equal(v.unverified, job_table_find(&f->jobs, ID_SUBMITTED));
	assert_false(v.record);
	eval(f, ID_UNKNOWN, body, NULL, &u);
	assert_int_equal(u.http_status, 401);
	assert_null(u.unverified);
	assert_string_equal(u.reason, v.reason);
	callback_verdict_release(&u);
	callback_verdict_release(&v);

	/* Queued (no ledsBlinkId yet), final, an invalid id: none. */
	const char *none[] = {ID_QUEUED, ID_COMPLETE, "bad id", ""};
	for (size_t i = 0; i < ELEMENTSOF(none); i++) {
		eval(f, none[i], body, NULL, &v);
		assert_int_equal(v.http_status, 401);
		assert_null(v.unverified);
		callback_verdict_release(&v);
	}
	/* Whatever the shape and the secret's place. */
	assert_int_equal(alert_verdict(f, ID_SUBMITTED, NULL, "API callback", ALERT_JOB("complete"), "Bearer x", &v),
			 401);
	assert_ptr_equal(v.unverified, job_table_find(&f->jobs, ID_SUBMITTED));
	callback_verdict_release(&v);
	assert_int_equal(alert_verdict(f, ID_SUBMITTED, NULL, "Settings changed", NULL, NULL, &v), 401);
	assert_ptr_equal(v.unverified, job_table_find(&f->jobs, ID_SUBMITTED));
	callback_verdict_release(&v);
	/* Not for anything verified. */
	_cleanup_free_ char *good =
		make_body(&(struct body){.secret = f->s_submitted, .lbi = "42", .status = "running"});
	eval(f, ID_SUBMITTED, good, NULL, &v);
	assert_int_equal(v.http_status, 200);
	assert_null(v.unverified);
	callback_verdict_release(&v);

	/* http_server_id mode: the job by its ledsBlinkId, if any. */
	f->env.static_secret = STATIC_SECRET;
	eval(f, "", body, NULL, &v);
	assert_int_equal(v.http_status, 401);
	assert_ptr_equal(v.unverified, job_table_find(&f->jobs, ID_SUBMITTED));
	callback_verdict_release(&v);
	_cleanup_free_ char *other = make_body(&(struct body){.secret = "wrong", .lbi = "43", .status = "failed"});
	eval(f, "", other, NULL, &v);
	assert_int_equal(v.http_status, 401);
	assert_null(v.unverified); /* the job Meraki knows as 43 is complete */
	callback_verdict_release(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_complete_records_final, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_binds_nonce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_complete_for_queued_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_records_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_default_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_on_complete_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_progress_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_progress_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_progress_for_queued_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_final_job_never_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ledsblinkid_absent_or_null, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_fields_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_error_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_error_truncated_utf8, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_not_a_string_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_missing_or_wrong, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_in_header_when_none_configured, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_in_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_job_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_checked_before_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_json_object, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_missing_or_not_object, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_missing_unknown_or_not_string, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ledsblinkid_mismatch_or_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ledsblinkid_numeric, setup, teardown),
		cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nul_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_utf8, setup, teardown),
		cmocka_unit_test_setup_teardown(test_static_secret, setup, teardown),
		cmocka_unit_test_setup_teardown(test_static_secret_works_without_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alert_shape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_shape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_sources, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unverified_job, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
