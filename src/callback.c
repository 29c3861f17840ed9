/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "blinkhook/callback.h"

/* A ledsBlinkId as text: a string, or a number's exact decimal text, as the
 * API client keeps it (meraki.c), so that both compare alike. */
static const char *id_text(const struct json *v)
{
	const char *s = json_string(v, NULL);

	return s ? s : json_integer_text(v);
}

static bool presented_ok(const struct callback_env *env, const char *job_id, const char *s, size_t len)
{
	const struct job *j;

	if (env->static_secret)
		return secret_equal(env->static_secret, strlen(env->static_secret), s, len);
	/* The secret binds the job's nonce: an unknown job has none, and
	 * finds its 404 only with the secret of its id alone.  So a known job
	 * costs one SHA-256 block more than an unknown one (the nonce in the
	 * HMAC's message), some 50 ns: far below what a network answer's
	 * jitter lets anybody measure, and the answer itself (401 either way)
	 * says nothing. */
	j = job_table_find(env->jobs, job_id);
	return secret_verify(env->key, job_id, j ? j->nonce : NULL, s, len);
}

/* *ret_sources: the CALLBACK_SECRET_* places where a secret was presented
 * (whatever its value), for the log. */
static bool secret_ok(const struct callback_env *env, const char *job_id, const struct json *root,
		      const char *header_value, unsigned *ret_sources)
{
	const char *s;
	size_t len;
	bool ok = false;

	*ret_sources = 0;
	s = json_string(json_get(root, "sharedSecret"), &len);
	if (s)
		*ret_sources |= CALLBACK_SECRET_BODY;
	if (s && presented_ok(env, job_id, s, len))
		ok = true;
	if (header_value) {
		*ret_sources |= CALLBACK_SECRET_HEADER;
		s = header_value;
		if (strncasecmp(s, "Bearer ", 7) == 0)
			s += 7;
		/* Both are checked, so that the time taken does not say which
		 * one was present. */
		if (presented_ok(env, job_id, s, strlen(s)))
			ok = true;
	}
	return ok;
}

const char *callback_shape_to_string(enum callback_shape shape)
{
	switch (shape) {
	case CALLBACK_SHAPE_CALLBACK:
		return "callback";
	case CALLBACK_SHAPE_ALERT:
		return "alert";
	default:
		return "other";
	}
}

const char *callback_secret_sources_to_string(unsigned sources)
{
	static const char *const names[] = {"none", "body field", "configured header",
					    "body field and configured header"};

	return names[sources & (CALLBACK_SECRET_BODY | CALLBACK_SECRET_HEADER)];
}

/* Which of the two renderings of the callback template the body is, and
 * the object that holds the job in it: "message" in the callback shape, or
 * "alertData" in the alert webhook shape, whose alertType says it is an API
 * callback (an alert of another type sent to this URL is not one). */
static enum callback_shape shape_of(const struct json *root, const struct json **ret_job)
{
	const struct json *msg = json_get(root, "message"), *alert = json_get(root, "alertData");
	const char *type = json_string(json_get(root, "alertType"), NULL);

	*ret_job = NULL;
	if (msg && !alert) {
		*ret_job = msg;
		return CALLBACK_SHAPE_CALLBACK;
	}
	if (alert && !msg && json_kind_of(alert) == JSON_OBJECT && type && strcmp(type, "API callback") == 0) {
		*ret_job = alert;
		return CALLBACK_SHAPE_ALERT;
	}
	return CALLBACK_SHAPE_OTHER;
}

/* A job that an unverified callback may prompt a poll for: one that Meraki
 * has and that is not final yet. */
static const struct job *pollable(const struct job *j)
{
	return j && j->state == JOB_SUBMITTED && j->leds_blink_id ? j : NULL;
}

static void reject(struct callback_verdict *v, unsigned status, const char *reason)
{
	v->http_status = status;
	v->reason = reason;
	v->record = false;
}

int callback_evaluate(const struct callback_env *env, const char *job_id, const char *body, size_t len,
		      const char *header_value, struct callback_verdict *v)
{
	const struct json *msg;
	const char *status, *lbi, *err;
	size_t err_len = 0;
	int r;

	memset(v, 0, sizeof(*v));
	r = json_parse(body, len, CALLBACK_JSON_DEPTH, &v->root);
	if (r == -ENOMEM)
		return r;
	if (r < 0 || json_kind_of(v->root) != JSON_OBJECT) {
		reject(v, 400, "body is not a JSON object");
		return 0;
	}
	/* Only found here; a body of neither shape is refused after the
	 * secret and the job, as a malformed message always was. */
	v->shape = shape_of(v->root, &msg);
	if (!*job_id && env->static_secret) {
		/* A Dashboard-managed receiver has one URL for every job: the
		 * job is the one Meraki knows by this ledsBlinkId. */
		const struct job *j = job_table_find_by_blink_id(env->jobs, id_text(json_get(msg, "ledsBlinkId")));

		if (!secret_ok(env, job_id, v->root, header_value, &v->secret_sources)) {
			reject(v, 401, "missing or wrong secret");
			v->unverified = pollable(j);
			return 0;
		}
		if (!j) {
			reject(v, 404, "no job with this ledsBlinkId");
			return 0;
		}
		job_id = j->id;
	} else if (!job_id_is_valid(job_id)) {
		reject(v, 401, "missing or wrong secret");
		return 0;
	} else if (!secret_ok(env, job_id, v->root, header_value, &v->secret_sources)) {
		reject(v, 401, "missing or wrong secret");
		/* Looked up whether or not it exists, so that the lookup does
		 * not tell them apart (the secret's check above differs by
		 * one SHA-256 block, see presented_ok()); only the daemon
		 * learns what it found. */
		v->unverified = pollable(job_table_find(env->jobs, job_id));
		return 0;
	} else if (!job_table_find(env->jobs, job_id)) {
		reject(v, 404, "unknown job");
		return 0;
	}
	if (v->shape == CALLBACK_SHAPE_OTHER) {
		reject(v, 400,
		       "body is neither a callback (message) nor an alert (alertData, alertType \"API callback\")");
		return 0;
	}
	if (json_kind_of(msg) != JSON_OBJECT) {
		reject(v, 400, "the job (message or alertData) is not an object");
		return 0;
	}
	status = json_string(json_get(msg, "status"), NULL);
	if (!status || !meraki_status_is_valid(status)) {
		reject(v, 400, "the job's status is not a Meraki status");
		return 0;
	}
	lbi = id_text(json_get(msg, "ledsBlinkId"));
	if (json_get(msg, "ledsBlinkId") && (!lbi || !*lbi || strlen(lbi) > CALLBACK_ID_MAX)) {
		reject(v, 400, "the job's ledsBlinkId is not an id");
		return 0;
	}
	err = json_string(json_get(msg, "error"), &err_len);
	if (err && *err) {
		/* Keep what fits; an error text is for people, not for matching. */
		size_t n = err_len;

		/* Cut before a character, not inside one: the text goes to
		 * the job log, whose reader refuses invalid UTF-8 (the parse
		 * has checked that err is valid UTF-8). */
		if (n >= sizeof(v->error)) {
			n = sizeof(v->error) - 1;
			while (n > 0 && ((unsigned char)err[n] & 0xc0) == 0x80)
				n--;
		}
		memcpy(v->error, err, n);
		v->error[n] = 0;
	}

	v->event = (struct job_event){
		.ts = env->now,
		.id = job_id,
		.leds_blink_id = lbi,
		.meraki_status = status,
		.error = v->error[0] ? v->error : NULL,
		.source = "callback",
	};
	if (strcmp(status, "complete") == 0) {
		v->event.kind = JOB_EV_FINAL;
		v->event.state = JOB_COMPLETE;
	} else if (strcmp(status, "failed") == 0) {
		v->event.kind = JOB_EV_FINAL;
		v->event.state = JOB_FAILED;
		if (!v->event.error)
			v->event.error = "Meraki reported the blink as failed";
	} else
		v->event.kind = JOB_EV_STATUS;

	r = job_table_check(env->jobs, &v->event);
	if (r < 0) {
		reject(v, 400, r == -EINVAL ? "the job's ledsBlinkId belongs to another job" : "cannot apply");
		return 0;
	}
	v->http_status = 200;
	v->record = r == 0;
	v->reason = v->record ? "recorded" : "already recorded";
	return 0;
}

void callback_verdict_release(struct callback_verdict *v)
{
	json_free(v->root);
	v->root = NULL;
}
