/* SPDX-License-Identifier: MIT */
/*
 * callback — what to do with a callback body that Meraki (or anyone) POSTed
 * to /callbacks/leds-blink/<job id>.  A pure function of the bytes, the
 * secret header, the job table and the keys, so that it can be tested and
 * fuzzed without a server; it changes nothing and logs nothing.
 *
 * Two shapes of body are callbacks: Meraki's callback shape, the job under
 * "message", and the alert webhook shape that some renderings of the
 * callback template use, the job under "alertData" and a top-level
 * alertType "API callback".  The secret rules are the same for both.
 *
 * The checks, in order (the first that fails decides the answer):
 *   400  the body is not a JSON object (or nests deeper than allowed)
 *   401  no secret, or not the job's: the top-level "sharedSecret" string,
 *        or the configured header (a "Bearer " prefix allowed)
 *   404  no such job
 *   400  the body is of neither shape, the job's status is not one of
 *        Meraki's six values, the job is not an object, or its ledsBlinkId
 *        names another Meraki job
 *   200  with an event to record, or with none for a repeat of what is
 *        already recorded (and for anything after a final state)
 * The secret is checked before the job's existence, so that nobody without a
 * secret learns which job ids exist.  A 401 still tells the caller (the
 * daemon, not the client) in unverified which known, submitted job it
 * concerned, so that the daemon may ask Meraki instead of believing it.
 *
 * With a configured receiver secret (http_server_id mode) and an empty job
 * id (the receiver's one URL for all jobs), the job is the one whose
 * leds_blink_id is message.ledsBlinkId; event.id then points at its id.
 */
#ifndef BLINKHOOK_CALLBACK_H
#define BLINKHOOK_CALLBACK_H

#include <stdbool.h>
#include <stddef.h>

#include "blinkhook/job.h"
#include "blinkhook/secret.h"

#define CALLBACK_JSON_DEPTH 16
#define CALLBACK_ID_MAX 128

struct callback_env {
	const struct job_table *jobs;
	const struct secret_key *key; /* per-job secrets */
	const char *static_secret;    /* http_server_id mode: one secret for all */
	uint64_t now;                 /* realtime usec, the event's timestamp */
};

enum callback_shape {
	CALLBACK_SHAPE_OTHER,
	CALLBACK_SHAPE_CALLBACK, /* the job under "message" */
	CALLBACK_SHAPE_ALERT,    /* the job under "alertData" */
};

/* Where a secret was presented (verdict.secret_sources). */
#define CALLBACK_SECRET_BODY 1u   /* a top-level "sharedSecret" string */
#define CALLBACK_SECRET_HEADER 2u /* the configured header */

struct callback_verdict {
	unsigned http_status;
	const char *reason; /* for the log; never holds a secret */
	enum callback_shape shape;
	unsigned secret_sources; /* CALLBACK_SECRET_*, whatever their values; 0 before the secret check */
	/* A 401 for a job that exists, is submitted and has a ledsBlinkId:
	 * that job, else NULL.  Never to be told to the client. */
	const struct job *unverified;
	bool record; /* event holds a change to record */
	struct job_event event;
	char error[JOB_TEXT_MAX + 1];
	struct json *root; /* the event's strings live here */
};

/* Fills *ret; the caller releases it with callback_verdict_release().
 * Returns -ENOMEM only; every verdict on the input is in ret->http_status. */
int callback_evaluate(const struct callback_env *env, const char *job_id, const char *body, size_t len,
		      const char *header_value, struct callback_verdict *ret);
void callback_verdict_release(struct callback_verdict *v);

/* For the log: "callback", "alert", "other"; and the secret sources as
 * "none", "body field", "configured header" or both. */
const char *callback_shape_to_string(enum callback_shape shape);
const char *callback_secret_sources_to_string(unsigned sources);

#endif
