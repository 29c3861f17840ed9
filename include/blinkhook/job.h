/* SPDX-License-Identifier: MIT */
/*
 * job — a blink job, its states, the events that move it, and the table of
 * all jobs.
 *
 * Every change to a job is an event (struct job_event).  The daemon builds
 * an event, applies it to the table with job_table_apply(), which checks
 * that the transition is allowed, and appends the same event to the job log;
 * replay at start applies the logged events in order.  So the live table and
 * a replayed one cannot disagree: there is one code path for both.
 *
 *   queued ──attempt──► queued ──submitted──► submitted ──status──► submitted
 *      │                                         │
 *      └──────────── complete | failed | expired ◄┘   (final: never change)
 *
 *   queued ──resolved──► queued   (a job that named its device by name or
 *                                  MAC learns the serial, once, before its
 *                                  submission)
 *
 * A callback may arrive for a job that is still queued (the daemon crashed
 * after Meraki's 201 but before logging it), so status and final events are
 * accepted in queued too.
 */
#ifndef BLINKHOOK_JOB_H
#define BLINKHOOK_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blinkhook/json.h"
#include "blinkhook/util.h"

#define JOB_DURATION_MIN 1
#define JOB_DURATION_MAX 3600
#define JOB_DURATION_DEFAULT 20
#define SERIAL_MAX 14
/* The job-log record format; bumped when a record changes incompatibly. */
#define JOB_RECORD_VERSION 1
/* A job's nonce: 16 random bytes as 32 lowercase hex digits, made when the
 * job is queued and kept in its first record (and in compaction's
 * snapshot).  The job's callback secret binds it (secret.h), so that a job
 * that reuses the id of one dropped by retention never accepts the old
 * job's callbacks.  Jobs logged before it existed have none. */
#define JOB_NONCE_LEN 32
bool job_nonce_is_valid(const char *s);
int job_nonce_new(char buf[static JOB_NONCE_LEN + 1]);

/* A device named as Dashboard knows it, instead of by serial: its name (1 to
 * 255 bytes of UTF-8 without control characters) or its MAC.  The daemon
 * resolves either to a serial through the API before submitting. */
#define JOB_NAME_MAX 255
bool job_name_valid(const char *s);
/* A MAC in the lower-case colon form, "aa:bb:cc:dd:ee:ff". */
#define JOB_MAC_LEN 17
/* Reads aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or 12 bare hex
 * digits, either case, into the colon form; -EINVAL for anything else. */
int mac_normalize(const char *s, char ret[static JOB_MAC_LEN + 1]);
bool mac_is_normal(const char *s);

/* Longest text kept from the API or a callback (an error message). */
#define JOB_TEXT_MAX 1024

enum job_state {
	JOB_QUEUED,
	JOB_SUBMITTED,
	JOB_COMPLETE,
	JOB_FAILED,
	JOB_EXPIRED,
	_JOB_STATE_MAX,
};

const char *job_state_to_string(enum job_state s);
/* -EINVAL for an unknown name. */
int job_state_from_string(const char *s, enum job_state *ret);
static inline bool job_state_is_final(enum job_state s)
{
	return s >= JOB_COMPLETE;
}

/* Meraki's job status values: new, ready, scheduled, running, complete, failed. */
bool meraki_status_is_valid(const char *s);
bool meraki_status_is_final(const char *s);

enum job_event_kind {
	JOB_EV_QUEUED,    /* a new job: serial, duration */
	JOB_EV_ATTEMPT,   /* a submission failed and will be retried: attempts, error */
	JOB_EV_SUBMITTED, /* Meraki answered 201: leds_blink_id, attempts, meraki_status */
	JOB_EV_STATUS,    /* a progress status: meraki_status, source */
	JOB_EV_FINAL,     /* state is complete, failed or expired */
	JOB_EV_SNAPSHOT,  /* a whole job as compaction writes it: every field */
	JOB_EV_RESOLVED,  /* a queued job's name or mac found its device: serial */
	_JOB_EV_MAX,
};

/* One change.  Strings are borrowed; NULL means absent. */
struct job_event {
	uint64_t ts; /* realtime, microseconds */
	const char *id;
	enum job_event_kind kind;
	enum job_state state; /* JOB_EV_FINAL and JOB_EV_SNAPSHOT */
	uint64_t created;     /* JOB_EV_SNAPSHOT: the job's created_at */
	const char *serial;
	/* JOB_EV_QUEUED: exactly one of serial, name and mac (in the colon
	 * form); a snapshot has name or mac (or neither) and the serial once
	 * resolved.  Records from before 0.3.0 have neither. */
	const char *name;
	const char *mac;
	unsigned duration;
	const char *leds_blink_id;
	const char *meraki_status;
	const char *error;
	/* What reported it: api, callback, poll, prompted poll, queue, cancel,
	 * expiry.  In a snapshot: the job's status_source. */
	const char *source;
	unsigned attempts;
	const char *nonce; /* JOB_EV_QUEUED and JOB_EV_SNAPSHOT; NULL in records from before 0.3.0 */
	/* The first snapshot of a compacted log: the stream position (joblog.h)
	 * up to which the snapshots restate the records (the records after them
	 * in the new log are the previous log's from there on, then new ones),
	 * so that a follower prints nothing twice.  Readers from before 0.3.0
	 * ignore it. */
	bool compact_mark;
	uint64_t compacted_from;
};

struct job {
	char id[JOB_ID_MAX + 1];
	char serial[SERIAL_MAX + 1];   /* "" until a job queued by name or mac is resolved */
	char *name;                    /* what the request named instead of a serial, or NULL */
	char mac[JOB_MAC_LEN + 1];     /* ... or "" */
	char nonce[JOB_NONCE_LEN + 1]; /* "" for a job logged without one */
	unsigned duration;
	enum job_state state;
	char *leds_blink_id;
	char *meraki_status;
	char *error;
	/* How meraki_status was learned: the source of the event that set it
	 * ("api", "callback", "poll", "prompted poll"), or NULL. */
	char *status_source;
	unsigned attempts;
	uint64_t created_at; /* realtime usec */
	uint64_t updated_at;
	uint64_t log_seq; /* the job log's sequence number of this job's last record */
	/* The PostgreSQL store's: another node works this job (its claim), so
	 * dispatch leaves it alone; the store's last event applied here; seen
	 * in the claim's last renewal. */
	bool foreign;
	bool renewed;
	uint64_t store_seq;

	void *userdata; /* the daemon's per-job scheduling state */

	struct job *hash_next;
	struct job *lbi_next;    /* the index by leds_blink_id */
	struct job *prev, *next; /* creation order */
};

struct job_table {
	struct job **buckets;
	struct job **lbi_buckets; /* as many as buckets */
	size_t n_buckets;
	size_t n_jobs;
	size_t n_by_state[_JOB_STATE_MAX];
	struct job *first, *last;
};

int job_table_init(struct job_table *t);
/* Frees every job. */
void job_table_release(struct job_table *t);
struct job *job_table_find(const struct job_table *t, const char *id);
/* The job Meraki knows as leds_blink_id, or NULL. */
struct job *job_table_find_by_blink_id(const struct job_table *t, const char *leds_blink_id);
/* Applies ev.  Returns 0 and the job changed; 1 when the event changes
 * nothing (a repeat of a recorded status, anything after a final state);
 * -EEXIST for a second queued event, -ENOENT for an unknown job, -EINVAL for
 * an event that is not allowed in the job's state or lacks a field,
 * -ENOMEM.  On failure or 1 the table is unchanged. */
int job_table_apply(struct job_table *t, const struct job_event *ev, struct job **ret_job);
/* Whether ev would change the job (the same verdict as apply, no change). */
int job_table_check(const struct job_table *t, const struct job_event *ev);
/* Unlinks and frees one job (compaction, retention). */
void job_table_remove(struct job_table *t, struct job *j);

/* The job log's line for ev, with its trailing newline. */
int job_event_format(const struct job_event *ev, struct strbuf *sb);

/*
 * Reading records.  A parsed event's strings point into a store that the
 * caller owns and reuses from line to line (replay reads a million of them):
 * the decoded text of a record, or the json-c tree of one that took the slow
 * way.  Each parse into a store ends the life of the strings of the event
 * parsed before into it; job_event_store_release() those of the last one.
 */
#define JOB_EVENT_TEXT_MAX 8192 /* the longest record read fast; a store is as big */
struct job_event_store {
	struct json *root;
	char text[JOB_EVENT_TEXT_MAX];
};
#define JOB_EVENT_STORE_INIT \
	{                    \
		.root = NULL \
	}
void job_event_store_release(struct job_event_store *store);

/* Parses one line (without the newline) into *ret.  -EBADMSG for anything
 * malformed, -EPROTONOSUPPORT for a record version this build does not know;
 * on failure *ret is unchanged.  Lines in the shape job_event_format() gives
 * them, up to JOB_EVENT_TEXT_MAX bytes, are read by job_event_parse_flat(),
 * the rest by job_event_parse_json(); both give every line the same
 * verdict. */
int job_event_parse(const char *line, size_t len, struct job_event *ret, struct job_event_store *store);
/* The two halves of job_event_parse(), apart for the tests and the fuzzer,
 * which check that they agree.  The flat one reads without json-c what
 * json_parse_flat() reads, and declines everything else with -EOPNOTSUPP
 * (*ret unchanged); the json one is the reference, on json-c. */
int job_event_parse_flat(const char *line, size_t len, struct job_event *ret, struct job_event_store *store);
int job_event_parse_json(const char *line, size_t len, struct job_event *ret, struct job_event_store *store);
const char *job_event_name(const struct job_event *ev);

/* The snapshot event that recreates j (compaction). */
void job_snapshot(const struct job *j, struct job_event *ret);

/* What to show for the job's device in a table: its serial, or until that
 * is resolved the name or MAC the request gave. */
const char *job_device_label(const struct job *j);

/* The job as INTERFACE.md's JSON object. */
void job_format_json(const struct job *j, struct json_writer *w);

#endif
