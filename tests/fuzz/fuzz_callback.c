/* SPDX-License-Identifier: MIT */
/*
 * fuzz_callback — callback_evaluate() on a fixed table of jobs, with a fixed
 * key.
 *
 * The input's first byte picks the case; the rest is the request:
 *   bits 0-2  the job id in the URL: 0 queued, 1 submitted (with a
 *             ledsBlinkId), 2 complete, 3 an unknown id, 4 an invalid id,
 *             5 none (a webhook receiver's one URL: the job is found by
 *             message.ledsBlinkId, or alertData.ledsBlinkId in the alert
 *             shape); 6 and 7 wrap around to 0 and 1
 *   bits 3-4  the secret header: 0 none; 1 the rest's first line (the body
 *             is what follows the '\n'); 2 "Bearer " and the job's secret;
 *             3 the job's secret alone
 *   bit 5     http_server_id mode: one configured secret for every job
 * In the body and in a header line, each "@SECRET@" becomes the secret that
 * mode expects, so that the fuzzer gets past a 401 it could never guess its
 * way through.
 * Printable seeds: '@' is job 0 without a header, 'A' to 'E' jobs 1 to 5,
 * add 8 for header mode 1, 16 for 2, 24 for 3, 32 for the configured secret.
 *
 * The body may be in either shape: Meraki's callback (the job under
 * "message") or the alert webhook's (under "alertData", alertType "API
 * callback"); seeds of both are in the corpus.
 *
 * Checked on every input: the answer is 200, 400, 401 or 404; without the
 * right secret nothing but "not an object" (400) or 401; 404 only for the
 * unknown id or, at the receiver's URL, an unknown ledsBlinkId; the reason
 * never holds the job's secret; a recorded event names a job of the table
 * (at the receiver's URL, the one with that ledsBlinkId), job_table_check()
 * accepts it, it applies, and its job-log line reads back as the same event;
 * the same callback again changes nothing; a 200 is of one of the two
 * shapes; a 401 names the submitted job for a prompted poll exactly when it
 * concerned that job, and nothing else ever names a job for one; where the
 * secret was presented is reported as it was.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "blinkhook/callback.h"
#include "blinkhook/job.h"
#include "blinkhook/secret.h"
#include "blinkhook/util.h"
#include "fuzz.h"

#define SERIAL "Q2AA-BBBB-CCC1"
#define STATIC_SECRET "configured-webhook-secret_0123"
#define SECRET_TOKEN "@SECRET@"

enum { ID_QUEUED, ID_SUBMITTED, ID_COMPLETE, ID_UNKNOWN, ID_INVALID, ID_RECEIVER, N_IDS };

static const char *const ids[N_IDS] = {
	[ID_QUEUED] = "01a21cbc4f622b9f51fc06ea",       [ID_SUBMITTED] = "01a21cbc4f622b9f51fc06eb",
	[ID_COMPLETE] = "01a21cbc4f622b9f51fc06ec",     [ID_UNKNOWN] = "01a21cbc4f622b9f51fc06ed",
	[ID_INVALID] = "01a21cbc4f622b9f51fc06ea/../x", [ID_RECEIVER] = "",
};

static struct secret_key *key;

static void apply(struct job_table *t, const struct job_event *ev)
{
	int r = job_table_apply(t, ev, NULL);

	FUZZ_CHECK(r == 0, "setting up the table: %d", r);
}

/* The jobs' nonces: fixed, so that an input replays alike.  The queued job
 * has none, as one logged before 0.3.0 (its secret is of its id alone). */
static const char *const nonces[N_IDS] = {
	[ID_SUBMITTED] = "5f0c2a9e7d3b41c68e2f90a1b4c7d3e2",
	[ID_COMPLETE] = "c41e8b27a09f4d5b9e3c7a61f2d08b45",
};

/* The same three jobs for every input, built anew because a recorded event
 * is applied to them. */
static void table_setup(struct job_table *t)
{
	uint64_t ts = FUZZ_NOW - 60 * USEC_PER_SEC;

	FUZZ_CHECK(job_table_init(t) == 0, "out of memory");
	for (unsigned i = ID_QUEUED; i <= ID_COMPLETE; i++)
		apply(t, &(struct job_event){.ts = ts,
					     .id = ids[i],
					     .kind = JOB_EV_QUEUED,
					     .serial = SERIAL,
					     .duration = 7,
					     .source = "queue",
					     .nonce = nonces[i]});
	apply(t, &(struct job_event){.ts = ts + USEC_PER_SEC,
				     .id = ids[ID_SUBMITTED],
				     .kind = JOB_EV_SUBMITTED,
				     .leds_blink_id = "573083052582915028",
				     .meraki_status = "new",
				     .attempts = 1,
				     .source = "api"});
	apply(t, &(struct job_event){.ts = ts + USEC_PER_SEC,
				     .id = ids[ID_COMPLETE],
				     .kind = JOB_EV_SUBMITTED,
				     .leds_blink_id = "573083052582915029",
				     .meraki_status = "new",
				     .attempts = 1,
				     .source = "api"});
	apply(t, &(struct job_event){.ts = ts + 2 * USEC_PER_SEC,
				     .id = ids[ID_COMPLETE],
				     .kind = JOB_EV_FINAL,
				     .state = JOB_COMPLETE,
				     .meraki_status = "complete",
				     .source = "callback"});
}

/* body with every SECRET_TOKEN replaced by secret. */
static void substitute(const char *in, size_t len, const char *secret, struct strbuf *out)
{
	const size_t tlen = strlen(SECRET_TOKEN);
	const char *p = in, *end = in + len, *hit;

	while ((hit = memmem(p, (size_t)(end - p), SECRET_TOKEN, tlen))) {
		FUZZ_CHECK(strbuf_add(out, p, (size_t)(hit - p)) >= 0 && strbuf_addstr(out, secret) >= 0,
			   "out of memory");
		p = hit + tlen;
	}
	FUZZ_CHECK(strbuf_add(out, p, (size_t)(end - p)) >= 0, "out of memory");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf body = STRBUF_INIT, header = STRBUF_INIT;
	struct callback_verdict v;
	struct job_table jobs;
	struct callback_env env;
	char job_secret[SECRET_MAX];
	const char *rest, *end, *expected, *header_value = NULL;
	unsigned sel, which, mode;
	bool static_mode, presented;
	int r;

	if (size < 1)
		return 0;
	if (!key) {
		unsigned char kb[SECRET_KEY_SIZE];

		for (unsigned i = 0; i < sizeof(kb); i++)
			kb[i] = (unsigned char)(0x01 + i);
		FUZZ_CHECK(secret_key_from_bytes(kb, sizeof(kb), &key) == 0, "secret_key_from_bytes");
	}

	sel = data[0];
	which = (sel & 7) % N_IDS;
	mode = (sel >> 3) & 3;
	static_mode = (sel >> 5) & 1;
	rest = (const char *)data + 1;
	end = (const char *)data + size;

	/* With the job's nonce where it has one: an unknown job's secret is
	 * of its id alone. */
	secret_for_job(key, ids[which], nonces[which], job_secret);
	expected = static_mode ? STATIC_SECRET : job_secret;

	switch (mode) {
	case 1: {
		const char *nl = memchr(rest, '\n', (size_t)(end - rest));
		const char *hend = nl ? nl : end;

		/* A header value is a C string: a NUL ends it. */
		substitute(rest, (size_t)(hend - rest), expected, &header);
		header_value = header.buf ? header.buf : "";
		rest = nl ? nl + 1 : end;
		break;
	}
	case 2:
		FUZZ_CHECK(strbuf_addf(&header, "Bearer %s", expected) >= 0, "out of memory");
		header_value = header.buf;
		break;
	case 3:
		FUZZ_CHECK(strbuf_addstr(&header, expected) >= 0, "out of memory");
		header_value = header.buf;
		break;
	default:
		break;
	}
	substitute(rest, (size_t)(end - rest), expected, &body);

	table_setup(&jobs);
	env = (struct callback_env){
		.jobs = &jobs,
		.key = key,
		.static_secret = static_mode ? STATIC_SECRET : NULL,
		.now = FUZZ_NOW,
	};
	/* body.buf stays NULL for an empty body: hand over a real pointer. */
	r = callback_evaluate(&env, ids[which], body.buf ? body.buf : "", body.len, header_value, &v);
	FUZZ_CHECK(r == 0, "callback_evaluate returned %d", r);

	FUZZ_CHECK(v.http_status == 200 || v.http_status == 400 || v.http_status == 401 || v.http_status == 404,
		   "status %u", v.http_status);
	FUZZ_CHECK(v.reason, "no reason for %u", v.http_status);
	FUZZ_CHECK(!strstr(v.reason, job_secret) && !strstr(v.reason, STATIC_SECRET),
		   "the reason \"%s\" holds a secret", v.reason);

	/* Whether the input held the secret anywhere; if not, the only answers
	 * are the two given before the secret is checked. */
	presented = (header_value && strstr(header_value, expected)) ||
		    (body.buf && memmem(body.buf, body.len, expected, strlen(expected)));
	if (!presented)
		FUZZ_CHECK(v.http_status == 401 ||
				   (v.http_status == 400 && strcmp(v.reason, "body is not a JSON object") == 0),
			   "%u \"%s\" without the secret", v.http_status, v.reason);
	if (which == ID_INVALID || (which == ID_RECEIVER && !static_mode))
		FUZZ_CHECK(v.http_status == 400 || v.http_status == 401, "%u for an invalid job id", v.http_status);
	if (v.http_status == 404)
		FUZZ_CHECK(which == ID_UNKNOWN || (which == ID_RECEIVER && static_mode), "404 for a job that exists");
	if (v.http_status != 200)
		FUZZ_CHECK(!v.record, "a %u with an event to record", v.http_status);
	if (v.http_status == 200)
		FUZZ_CHECK(v.shape == CALLBACK_SHAPE_CALLBACK || v.shape == CALLBACK_SHAPE_ALERT,
			   "200 for a body of shape %s", callback_shape_to_string(v.shape));
	if (v.http_status == 200 || v.http_status == 404)
		FUZZ_CHECK(!(v.secret_sources & CALLBACK_SECRET_HEADER) == !header_value, "the header reported as %s",
			   callback_secret_sources_to_string(v.secret_sources));
	if (v.unverified) {
		FUZZ_CHECK(v.http_status == 401, "a %u names a job for a prompted poll", v.http_status);
		FUZZ_CHECK(v.unverified == job_table_find(&jobs, ids[ID_SUBMITTED]),
			   "a prompted poll for %s, which is not the submitted job", v.unverified->id);
	}
	if (v.http_status == 401 && which == ID_SUBMITTED)
		FUZZ_CHECK(v.unverified, "a 401 for the submitted job names it for no prompted poll");

	if (v.record) {
		const struct job *known;
		struct job *j = NULL;

		known = v.event.id ? job_table_find(&jobs, v.event.id) : NULL;
		FUZZ_CHECK(known, "an event for job \"%s\", which is not in the table", fuzz_str(v.event.id));
		if (which == ID_RECEIVER)
			FUZZ_CHECK(known->leds_blink_id && v.event.leds_blink_id &&
					   strcmp(known->leds_blink_id, v.event.leds_blink_id) == 0,
				   "the receiver's callback for ledsBlinkId \"%s\" went to job %s (\"%s\")",
				   fuzz_str(v.event.leds_blink_id), known->id, fuzz_str(known->leds_blink_id));
		else
			FUZZ_CHECK(strcmp(known->id, ids[which]) == 0, "a callback for %s recorded for %s", ids[which],
				   known->id);
		FUZZ_CHECK(job_table_check(&jobs, &v.event) == 0, "job_table_check refuses the event to record");
		r = job_table_apply(&jobs, &v.event, &j);
		FUZZ_CHECK(r == 0, "job_table_apply: %d", r);
		FUZZ_CHECK(!v.event.error || fuzz_utf8_valid(v.event.error), "error is not UTF-8");
		FUZZ_CHECK(!v.event.error || strlen(v.event.error) <= JOB_TEXT_MAX, "error longer than %d",
			   JOB_TEXT_MAX);
		fuzz_check_log_line(&v.event);
		/* A second delivery of the same callback changes nothing. */
		FUZZ_CHECK(job_table_check(&jobs, &v.event) == 1, "the same callback again would change the job");
	}

	callback_verdict_release(&v);
	job_table_release(&jobs);
	strbuf_release(&body);
	strbuf_release(&header);
	return 0;
}
