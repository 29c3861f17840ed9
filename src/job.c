/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "blinkhook/job.h"

static const char *const state_names[_JOB_STATE_MAX] = {
	[JOB_QUEUED] = "queued", [JOB_SUBMITTED] = "submitted", [JOB_COMPLETE] = "complete",
	[JOB_FAILED] = "failed", [JOB_EXPIRED] = "expired",
};

bool job_nonce_is_valid(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");

	return n == JOB_NONCE_LEN && s[n] == '\0';
}

int job_nonce_new(char buf[static JOB_NONCE_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[JOB_NONCE_LEN / 2];
	int r;

	r = random_bytes(rnd, sizeof(rnd));
	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof(rnd); i++) {
		buf[2 * i] = hex[rnd[i] >> 4];
		buf[2 * i + 1] = hex[rnd[i] & 15];
	}
	buf[JOB_NONCE_LEN] = '\0';
	return 0;
}

bool job_name_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	if (!s || !*s || strlen(s) > JOB_NAME_MAX)
		return false;
	for (; *p; p += n) {
		n = utf8_len(p);
		if (n == 0 || *p < 0x20 || *p == 0x7f)
			return false;
		/* U+0080..U+009F, the C1 controls: a terminal's escapes too. */
		if (p[0] == 0xc2 && p[1] < 0xa0)
			return false;
	}
	return true;
}

int mac_normalize(const char *s, char ret[static JOB_MAC_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	size_t len = s ? strlen(s) : 0, group, sep_at;
	char sep = 0, digits[12];
	size_t nd = 0;

	/* The separator and how many digits it follows: colons and dashes
	 * after every 2 (17 characters), dots after every 4 (14), none (12). */
	if (len == 17) {
		sep = s[2];
		group = 2;
		if (sep != ':' && sep != '-')
			return -EINVAL;
	} else if (len == 14) {
		sep = '.';
		group = 4;
	} else if (len == 12)
		group = 12;
	else
		return -EINVAL;
	sep_at = group;
	for (size_t i = 0; i < len; i++) {
		if (sep && i == sep_at) {
			if (s[i] != sep)
				return -EINVAL;
			sep_at += group + 1;
			continue;
		}
		if (hex_value(s[i]) < 0 || nd >= 12)
			return -EINVAL;
		digits[nd++] = s[i];
	}
	if (nd != 12)
		return -EINVAL;
	for (size_t i = 0, o = 0; i < 12; i++) {
		ret[o++] = hex[hex_value(digits[i])];
		if (i % 2 == 1 && i < 11)
			ret[o++] = ':';
	}
	ret[JOB_MAC_LEN] = '\0';
	return 0;
}

bool mac_is_normal(const char *s)
{
	char norm[JOB_MAC_LEN + 1];

	return s && mac_normalize(s, norm) == 0 && strcmp(s, norm) == 0;
}

const char *job_state_to_string(enum job_state s)
{
	return (unsigned)s < _JOB_STATE_MAX ? state_names[s] : "unknown";
}

int job_state_from_string(const char *s, enum job_state *ret)
{
	for (unsigned i = 0; i < _JOB_STATE_MAX; i++)
		if (strcmp(s, state_names[i]) == 0) {
			*ret = (enum job_state)i;
			return 0;
		}
	return -EINVAL;
}

/* Meraki's values in the order a job moves through them; the two final ones
 * share the last rank. */
static const struct {
	const char *name;
	int rank;
} meraki_statuses[] = {
	{"new", 0}, {"ready", 1}, {"scheduled", 2}, {"running", 3}, {"complete", 4}, {"failed", 4},
};

static int meraki_status_rank(const char *s)
{
	if (!s)
		return -1;
	for (size_t i = 0; i < ELEMENTSOF(meraki_statuses); i++)
		if (strcmp(s, meraki_statuses[i].name) == 0)
			return meraki_statuses[i].rank;
	return -1;
}

bool meraki_status_is_valid(const char *s)
{
	return meraki_status_rank(s) >= 0;
}
bool meraki_status_is_final(const char *s)
{
	return meraki_status_rank(s) == 4;
}

static const char *const event_names[_JOB_EV_MAX] = {
	[JOB_EV_QUEUED] = "queued", [JOB_EV_ATTEMPT] = "attempt", [JOB_EV_SUBMITTED] = "submitted",
	[JOB_EV_STATUS] = "status", [JOB_EV_SNAPSHOT] = "job",    [JOB_EV_RESOLVED] = "resolved",
};

const char *job_event_name(const struct job_event *ev)
{
	if (ev->kind == JOB_EV_FINAL)
		return job_state_to_string(ev->state);
	return (unsigned)ev->kind < _JOB_EV_MAX ? event_names[ev->kind] : "unknown";
}

/* ---- the table ---- */

/* FNV-1a: ids are short and random enough. */
static uint64_t hash_id(const char *s)
{
	return fnv1a64_str(s);
}

int job_table_init(struct job_table *t)
{
	memset(t, 0, sizeof(*t));
	t->n_buckets = 1024;
	/* NOLINTBEGIN(bugprone-sizeof-expression): arrays of pointers */
	t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
	t->lbi_buckets = calloc(t->n_buckets, sizeof(*t->lbi_buckets));
	/* NOLINTEND(bugprone-sizeof-expression) */
	if (!t->buckets || !t->lbi_buckets) {
		free(t->buckets);
		free(t->lbi_buckets);
		t->buckets = t->lbi_buckets = NULL;
		return -ENOMEM;
	}
	return 0;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->leds_blink_id);
	free(j->meraki_status);
	free(j->error);
	free(j->status_source);
	free(j->name);
	free(j);
}

void job_table_release(struct job_table *t)
{
	struct job *j = t->first;
	while (j) {
		struct job *n = j->next;
		job_free(j);
		j = n;
	}
	free(t->buckets);
	free(t->lbi_buckets);
	memset(t, 0, sizeof(*t));
}

struct job *job_table_find(const struct job_table *t, const char *id)
{
	struct job *j;

	if (!t->buckets)
		return NULL;
	for (j = t->buckets[hash_id(id) & (t->n_buckets - 1)]; j; j = j->hash_next)
		if (strcmp(j->id, id) == 0)
			return j;
	return NULL;
}

struct job *job_table_find_by_blink_id(const struct job_table *t, const char *lbi)
{
	struct job *j;

	if (!t->lbi_buckets || !lbi)
		return NULL;
	for (j = t->lbi_buckets[hash_id(lbi) & (t->n_buckets - 1)]; j; j = j->lbi_next)
		if (strcmp(j->leds_blink_id, lbi) == 0)
			return j;
	return NULL;
}

static void lbi_unlink(struct job_table *t, struct job *j)
{
	if (!j->leds_blink_id)
		return;
	for (struct job **p = &t->lbi_buckets[hash_id(j->leds_blink_id) & (t->n_buckets - 1)]; *p; p = &(*p)->lbi_next)
		if (*p == j) {
			*p = j->lbi_next;
			break;
		}
	j->lbi_next = NULL;
}

static void lbi_link(struct job_table *t, struct job *j)
{
	size_t k;

	if (!j->leds_blink_id)
		return;
	k = hash_id(j->leds_blink_id) & (t->n_buckets - 1);
	j->lbi_next = t->lbi_buckets[k];
	t->lbi_buckets[k] = j;
}

static int table_grow(struct job_table *t)
{
	size_t n = t->n_buckets * 2;
	/* NOLINTBEGIN(bugprone-sizeof-expression): arrays of pointers */
	struct job **b = calloc(n, sizeof(*b));
	struct job **lb = calloc(n, sizeof(*lb));
	/* NOLINTEND(bugprone-sizeof-expression) */

	if (!b || !lb) {
		free(b);
		free(lb);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct job *j = t->buckets[i];
		while (j) {
			struct job *next = j->hash_next;
			size_t k = hash_id(j->id) & (n - 1);
			j->hash_next = b[k];
			b[k] = j;
			j = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	free(t->lbi_buckets);
	t->lbi_buckets = lb;
	t->n_buckets = n;
	for (struct job *j = t->first; j; j = j->next)
		lbi_link(t, j);
	return 0;
}

void job_table_remove(struct job_table *t, struct job *j)
{
	lbi_unlink(t, j);
	struct job **p = &t->buckets[hash_id(j->id) & (t->n_buckets - 1)];

	for (; *p; p = &(*p)->hash_next)
		if (*p == j) {
			*p = j->hash_next;
			break;
		}
	if (j->prev)
		j->prev->next = j->next;
	else
		t->first = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		t->last = j->prev;
	t->n_jobs--;
	t->n_by_state[j->state]--;
	job_free(j);
}

static bool text_ok(const char *s)
{
	return !s || strlen(s) <= JOB_TEXT_MAX;
}

/* The verdict of apply, without changing anything. */
static int verdict(const struct job *j, const struct job_event *ev)
{
	if (!ev->id || !job_id_is_valid(ev->id) || ev->ts == 0)
		return -EINVAL;
	if (!text_ok(ev->error) || !text_ok(ev->leds_blink_id) || !text_ok(ev->source))
		return -EINVAL;
	if (ev->meraki_status && !meraki_status_is_valid(ev->meraki_status))
		return -EINVAL;
	if (ev->nonce && !job_nonce_is_valid(ev->nonce))
		return -EINVAL;

	if (ev->kind == JOB_EV_QUEUED || ev->kind == JOB_EV_SNAPSHOT) {
		if (j)
			return -EEXIST;
		if (ev->kind == JOB_EV_SNAPSHOT && ((unsigned)ev->state >= _JOB_STATE_MAX || ev->created == 0))
			return -EINVAL;
		if ((ev->serial && !serial_is_valid(ev->serial)) || (ev->name && !job_name_valid(ev->name)) ||
		    (ev->mac && !mac_is_normal(ev->mac)) || ev->duration < JOB_DURATION_MIN ||
		    ev->duration > JOB_DURATION_MAX)
			return -EINVAL;
		/* A new job names one device one way; a snapshot may have a
		 * name or mac and the serial it resolved to. */
		if ((ev->name && ev->mac) || (!ev->serial && !ev->name && !ev->mac) ||
		    (ev->kind == JOB_EV_QUEUED && ev->serial && (ev->name || ev->mac)))
			return -EINVAL;
		return 0;
	}
	if (!j)
		return -ENOENT;
	if (job_state_is_final(j->state))
		return 1; /* final is final: repeats and late reports change nothing */

	/* Reports about another Meraki job than the one we know are not ours. */
	if (ev->leds_blink_id && j->leds_blink_id && strcmp(ev->leds_blink_id, j->leds_blink_id) != 0 &&
	    ev->kind != JOB_EV_SUBMITTED)
		return -EINVAL;

	switch (ev->kind) {
	case JOB_EV_RESOLVED:
		if (!ev->serial || !serial_is_valid(ev->serial))
			return -EINVAL;
		if (j->serial[0]) /* resolved once, for good */
			return strcmp(j->serial, ev->serial) == 0 ? 1 : -EINVAL;
		return j->state == JOB_QUEUED ? 0 : -EINVAL;
	case JOB_EV_ATTEMPT:
		return j->state == JOB_QUEUED && ev->attempts > 0 ? 0 : -EINVAL;
	case JOB_EV_SUBMITTED:
		if (!ev->leds_blink_id || !*ev->leds_blink_id)
			return -EINVAL;
		/* Moved to submitted by a status report without an id: the 201
		 * of a resubmission after a crash still has something to add. */
		if (j->state == JOB_SUBMITTED && j->leds_blink_id)
			return strcmp(j->leds_blink_id, ev->leds_blink_id) == 0 ? 1 : -EINVAL;
		return 0;
	case JOB_EV_STATUS:
		if (!ev->meraki_status || meraki_status_is_final(ev->meraki_status))
			return -EINVAL;
		/* A repeat, or a progress report older than what we know. */
		if (meraki_status_rank(ev->meraki_status) <= meraki_status_rank(j->meraki_status))
			return 1;
		return 0;
	case JOB_EV_FINAL:
		/* In range too: apply counts the job under n_by_state[ev->state]. */
		return job_state_is_final(ev->state) && ev->state < _JOB_STATE_MAX ? 0 : -EINVAL;
	default:
		return -EINVAL;
	}
}

int job_table_check(const struct job_table *t, const struct job_event *ev)
{
	return verdict(ev->id ? job_table_find(t, ev->id) : NULL, ev);
}

static void set_state(struct job_table *t, struct job *j, enum job_state s)
{
	t->n_by_state[j->state]--;
	j->state = s;
	t->n_by_state[s]++;
}

int job_table_apply(struct job_table *t, const struct job_event *ev, struct job **ret_job)
{
	struct job *j = ev->id ? job_table_find(t, ev->id) : NULL, *old = NULL;
	int r;

	/* A queued event for a final job is a new job that reuses the id of
	 * one dropped past retention by a compaction that did not finish: the
	 * old log still holds the old one.  It replaces it, as the drop did.
	 * (The live path never gets here: intake refuses an id in the table,
	 * and job_table_check still says -EEXIST.) */
	if (j && ev->kind == JOB_EV_QUEUED && job_state_is_final(j->state)) {
		old = j;
		j = NULL;
	}
	r = verdict(j, ev);
	if (r != 0)
		return r;

	if (ev->kind == JOB_EV_QUEUED || ev->kind == JOB_EV_SNAPSHOT) {
		size_t k;

		if (!old && t->n_jobs >= t->n_buckets && table_grow(t) < 0)
			return -ENOMEM;
		j = calloc(1, sizeof(*j));
		if (!j)
			return -ENOMEM;
		if (ev->name && !(j->name = strdup(ev->name))) {
			free(j);
			return -ENOMEM;
		}
		if (old)
			job_table_remove(t, old);
		/* verdict() has checked the lengths. */
		(void)STR_COPY(j->id, ev->id);
		if (ev->serial)
			(void)STR_COPY(j->serial, ev->serial);
		if (ev->mac)
			(void)STR_COPY(j->mac, ev->mac);
		if (ev->nonce)
			(void)STR_COPY(j->nonce, ev->nonce);
		j->duration = ev->duration;
		j->state = JOB_QUEUED;
		j->created_at = j->updated_at = ev->ts;
		k = hash_id(j->id) & (t->n_buckets - 1);
		j->hash_next = t->buckets[k];
		t->buckets[k] = j;
		j->prev = t->last;
		if (t->last)
			t->last->next = j;
		else
			t->first = j;
		t->last = j;
		t->n_jobs++;
		t->n_by_state[JOB_QUEUED]++;
		if (ev->kind == JOB_EV_QUEUED)
			goto done;
		/* A snapshot: the rest of the fields below, then its state. */
		j->created_at = ev->created;
	}

	/* Copy the strings first, so that running out of memory changes nothing. */
	{
		_cleanup_free_ char *lbi = NULL, *ms = NULL, *err = NULL, *src = NULL;
		/* The status's source: what reported the status the event
		 * carries, or in a snapshot what the job had. */
		bool sets_source = ev->source && (ev->meraki_status || ev->kind == JOB_EV_SNAPSHOT);

		if ((ev->leds_blink_id && !(lbi = strdup(ev->leds_blink_id))) ||
		    (ev->meraki_status && !(ms = strdup(ev->meraki_status))) ||
		    (ev->error && !(err = strdup(ev->error))) || (sets_source && !(src = strdup(ev->source))))
			return -ENOMEM;
		if (lbi) {
			lbi_unlink(t, j);
			free(j->leds_blink_id);
			j->leds_blink_id = TAKE_PTR(lbi);
			lbi_link(t, j);
		}
		if (ms) {
			free(j->meraki_status);
			j->meraki_status = TAKE_PTR(ms);
		}
		if (src) {
			free(j->status_source);
			j->status_source = TAKE_PTR(src);
		}
		if (err || ev->kind == JOB_EV_SUBMITTED) {
			/* A successful submission makes an earlier attempt's error stale. */
			free(j->error);
			j->error = TAKE_PTR(err);
		}
	}
	if (ev->attempts > 0)
		j->attempts = ev->attempts;
	if (ev->kind == JOB_EV_RESOLVED)
		(void)STR_COPY(j->serial, ev->serial);
	switch (ev->kind) {
	case JOB_EV_SUBMITTED:
	case JOB_EV_STATUS:
		/* A status report for a queued job means Meraki has it already. */
		if (j->state == JOB_QUEUED)
			set_state(t, j, JOB_SUBMITTED);
		break;
	case JOB_EV_FINAL:
	case JOB_EV_SNAPSHOT:
		set_state(t, j, ev->state);
		break;
	default:
		break;
	}
	j->updated_at = ev->ts;
done:
	if (ret_job)
		*ret_job = j;
	return 0;
}

/* ---- records ---- */

int job_event_format(const struct job_event *ev, struct strbuf *sb)
{
	struct json_writer w;
	char ts[RFC3339_MAX];
	int r;

	format_rfc3339(ts, ev->ts);
	json_writer_init(&w, sb);
	json_w_object_begin(&w);
	json_w_kint(&w, "v", JOB_RECORD_VERSION);
	json_w_kstr(&w, "ts", ts);
	json_w_kstr(&w, "id", ev->id);
	json_w_kstr(&w, "event", job_event_name(ev));
	if (ev->serial)
		json_w_kstr(&w, "serial", ev->serial);
	if (ev->name)
		json_w_kstr(&w, "name", ev->name);
	if (ev->mac)
		json_w_kstr(&w, "mac", ev->mac);
	if (ev->duration)
		json_w_kint(&w, "duration", ev->duration);
	if (ev->leds_blink_id)
		json_w_kstr(&w, "leds_blink_id", ev->leds_blink_id);
	if (ev->meraki_status)
		json_w_kstr(&w, "meraki_status", ev->meraki_status);
	if (ev->attempts)
		json_w_kint(&w, "attempts", ev->attempts);
	if (ev->error)
		json_w_kstr(&w, "error", ev->error);
	if (ev->source)
		json_w_kstr(&w, "source", ev->source);
	if (ev->nonce)
		json_w_kstr(&w, "nonce", ev->nonce);
	if (ev->kind == JOB_EV_SNAPSHOT) {
		char created[RFC3339_MAX];
		format_rfc3339(created, ev->created);
		json_w_kstr(&w, "state", job_state_to_string(ev->state));
		json_w_kstr(&w, "created_at", created);
		if (ev->compact_mark)
			json_w_kint(&w, "compacted_from", (int64_t)ev->compacted_from);
	}
	json_w_object_end(&w);
	r = json_writer_finish(&w);
	if (r < 0)
		return r;
	return strbuf_add(sb, "\n", 1);
}

/* The members a record may have; the index of each in a record's table. */
enum {
	REC_V,
	REC_TS,
	REC_ID,
	REC_EVENT,
	REC_SERIAL,
	REC_NAME,
	REC_MAC,
	REC_DURATION,
	REC_LEDS_BLINK_ID,
	REC_MERAKI_STATUS,
	REC_ATTEMPTS,
	REC_ERROR,
	REC_SOURCE,
	REC_NONCE,
	REC_STATE,
	REC_CREATED_AT,
	REC_COMPACTED_FROM,
	REC_COUNT,
};

static const struct {
	const char *name;
	size_t len;
} record_keys[REC_COUNT] = {
#define KEY(i, s) [i] = {s, sizeof(s) - 1}
	KEY(REC_V, "v"),
	KEY(REC_TS, "ts"),
	KEY(REC_ID, "id"),
	KEY(REC_EVENT, "event"),
	KEY(REC_SERIAL, "serial"),
	KEY(REC_NAME, "name"),
	KEY(REC_MAC, "mac"),
	KEY(REC_DURATION, "duration"),
	KEY(REC_LEDS_BLINK_ID, "leds_blink_id"),
	KEY(REC_MERAKI_STATUS, "meraki_status"),
	KEY(REC_ATTEMPTS, "attempts"),
	KEY(REC_ERROR, "error"),
	KEY(REC_SOURCE, "source"),
	KEY(REC_NONCE, "nonce"),
	KEY(REC_STATE, "state"),
	KEY(REC_CREATED_AT, "created_at"),
	KEY(REC_COMPACTED_FROM, "compacted_from"),
#undef KEY
};

/* A member as either reader found it, in the terms of json.h's accessors,
 * which the json-c reader asks. */
struct member {
	const char *str; /* json_string(): a string without a NUL, else NULL */
	int64_t num;
	bool present; /* json_get() finds it: there, and not null */
	bool is_int;  /* json_int64() reads it, into num */
};

static int opt_string(const struct member *m, const char **ret)
{
	if (!m->present) {
		*ret = NULL;
		return 0;
	}
	*ret = m->str;
	return *ret ? 0 : -EBADMSG;
}

static int opt_uint(const struct member *m, unsigned max, unsigned *ret)
{
	if (!m->present) {
		*ret = 0;
		return 0;
	}
	if (!m->is_int || m->num < 0 || (uint64_t)m->num > max)
		return -EBADMSG;
	*ret = (unsigned)m->num;
	return 0;
}

/* The event a record's members make, or why they make none.  Both readers
 * end here, so that they differ only in how they find the members, and in
 * read_stamp: parse_rfc3339() for the reference, and its short cut
 * parse_stamp() for the fast one, so that the tests compare the two. */
static int record_to_event(const struct member m[static REC_COUNT], int (*read_stamp)(const char *, uint64_t *),
			   struct job_event *ret)
{
	struct job_event ev = {0};
	const char *name, *ts;

	if (!m[REC_V].is_int)
		return -EBADMSG;
	if (m[REC_V].num != JOB_RECORD_VERSION)
		return -EPROTONOSUPPORT;
	ts = m[REC_TS].str;
	ev.id = m[REC_ID].str;
	name = m[REC_EVENT].str;
	if (!ts || !ev.id || !name || read_stamp(ts, &ev.ts) < 0 || !job_id_is_valid(ev.id))
		return -EBADMSG;
	/* The log keeps whole seconds: a finer stamp read now would not survive
	 * being written again (compaction). */
	ev.ts -= ev.ts % USEC_PER_SEC;
	if (ev.ts == 0)
		return -EBADMSG;

	ev.kind = _JOB_EV_MAX;
	for (unsigned i = 0; i < _JOB_EV_MAX; i++)
		if (event_names[i] && strcmp(name, event_names[i]) == 0)
			ev.kind = (enum job_event_kind)i;
	if (ev.kind == _JOB_EV_MAX) {
		if (job_state_from_string(name, &ev.state) < 0 || !job_state_is_final(ev.state))
			return -EBADMSG;
		ev.kind = JOB_EV_FINAL;
	}

	if (opt_string(&m[REC_SERIAL], &ev.serial) < 0 || opt_string(&m[REC_NAME], &ev.name) < 0 ||
	    opt_string(&m[REC_MAC], &ev.mac) < 0 || opt_string(&m[REC_LEDS_BLINK_ID], &ev.leds_blink_id) < 0 ||
	    opt_string(&m[REC_MERAKI_STATUS], &ev.meraki_status) < 0 || opt_string(&m[REC_ERROR], &ev.error) < 0 ||
	    opt_string(&m[REC_SOURCE], &ev.source) < 0 || opt_string(&m[REC_NONCE], &ev.nonce) < 0 ||
	    opt_uint(&m[REC_DURATION], JOB_DURATION_MAX, &ev.duration) < 0 ||
	    opt_uint(&m[REC_ATTEMPTS], 1000000, &ev.attempts) < 0)
		return -EBADMSG;
	if ((ev.serial && !serial_is_valid(ev.serial)) || (ev.name && !job_name_valid(ev.name)) ||
	    (ev.mac && !mac_is_normal(ev.mac)))
		return -EBADMSG;
	if ((ev.kind == JOB_EV_QUEUED || ev.kind == JOB_EV_SNAPSHOT) &&
	    ((!ev.serial && !ev.name && !ev.mac) || (ev.name && ev.mac) || ev.duration == 0))
		return -EBADMSG;
	if (ev.kind == JOB_EV_RESOLVED && !ev.serial)
		return -EBADMSG;
	if (ev.nonce && !job_nonce_is_valid(ev.nonce))
		return -EBADMSG;
	if (ev.kind == JOB_EV_SNAPSHOT) {
		const char *st = m[REC_STATE].str;
		const char *created = m[REC_CREATED_AT].str;
		if (!st || !created || job_state_from_string(st, &ev.state) < 0 || read_stamp(created, &ev.created) < 0)
			return -EBADMSG;
		ev.created -= ev.created % USEC_PER_SEC;
		if (ev.created == 0)
			return -EBADMSG;
		if (m[REC_COMPACTED_FROM].present) {
			if (!m[REC_COMPACTED_FROM].is_int || m[REC_COMPACTED_FROM].num < 0)
				return -EBADMSG;
			ev.compact_mark = true;
			ev.compacted_from = (uint64_t)m[REC_COMPACTED_FROM].num;
		}
	}

	*ret = ev;
	return 0;
}

/* Exactly n digits at s (stopping at the first byte that is none). */
static bool fixed_digits(const char *s, unsigned n, unsigned *ret)
{
	unsigned v = 0;

	for (unsigned i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*ret = v;
	return true;
}

/* Days from 1970-01-01 to a valid date from then on (Howard Hinnant's
 * days_from_civil): years that start in March put the leap day last. */
static uint64_t days_since_epoch(unsigned year, unsigned mon, unsigned mday)
{
	unsigned y = year - (mon <= 2), era = y / 400, yoe = y % 400;
	unsigned doy = (153 * (mon > 2 ? mon - 3 : mon + 9) + 2) / 5 + mday - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return (uint64_t)era * 146097 + doe - 719468;
}

/*
 * parse_rfc3339() without timegm() for the one form job_event_format()
 * writes, "YYYY-MM-DDTHH:MM:SSZ": timegm() made a stamp cost four times
 * this, and with json-c out of the way that was an eighth of replay.
 * Everything else (fractions, offsets, a leap second, a date before 1970,
 * one that does not exist) goes to parse_rfc3339(), so the result is always
 * its result.
 */
static int parse_stamp(const char *s, uint64_t *ret)
{
	unsigned year, mon, mday, hour, min, sec;

	/* In order, each only once the one before matched: none reads past
	 * the NUL of a shorter s. */
	if (!fixed_digits(s, 4, &year) || s[4] != '-' || !fixed_digits(s + 5, 2, &mon) || s[7] != '-' ||
	    !fixed_digits(s + 8, 2, &mday) || s[10] != 'T' || !fixed_digits(s + 11, 2, &hour) || s[13] != ':' ||
	    !fixed_digits(s + 14, 2, &min) || s[16] != ':' || !fixed_digits(s + 17, 2, &sec) || s[19] != 'Z' || s[20])
		return parse_rfc3339(s, ret);
	if (year < 1970 || mon < 1 || mon > 12 || mday < 1 || mday > (unsigned)days_in_month((int)year, (int)mon) ||
	    hour > 23 || min > 59 || sec > 59)
		return parse_rfc3339(s, ret);
	*ret = (days_since_epoch(year, mon, mday) * 86400 + (uint64_t)hour * 3600 + (uint64_t)min * 60 + sec) *
	       USEC_PER_SEC;
	return 0;
}

void job_event_store_release(struct job_event_store *store)
{
	json_free(store->root);
	store->root = NULL;
}

/* The index of a record's key, or -1.  The search starts at *next, the
 * member after the one found last: job_event_format() writes them in the
 * order of the table, so it mostly finds each at the first try. */
static int record_key(const char *key, size_t len, unsigned *next)
{
	for (unsigned i = 0; i < REC_COUNT; i++) {
		unsigned k = (*next + i) % REC_COUNT;

		if (len == record_keys[k].len && key[0] == record_keys[k].name[0] &&
		    memcmp(key, record_keys[k].name, len) == 0) {
			*next = k + 1;
			return (int)k;
		}
	}
	return -1;
}

/* The most members a record read fast may have: ours have at most 16. */
#define RECORD_MEMBERS_MAX 20

int job_event_parse_flat(const char *line, size_t len, struct job_event *ret, struct job_event_store *store)
{
	struct json_member mem[RECORD_MEMBERS_MAX];
	struct member m[REC_COUNT] = {0};
	unsigned next = 0;
	size_t n;

	job_event_store_release(store);
	if (json_parse_flat(line, len, store->text, sizeof(store->text), mem, ELEMENTSOF(mem), &n) < 0)
		return -EOPNOTSUPP;
	for (size_t i = 0; i < n; i++) {
		/* A member with another key is ignored, as by the json-c reader,
		 * which asks for none but ours. */
		int k = record_key(mem[i].key, mem[i].key_len, &next);

		if (k < 0)
			continue;
		/* json_parse_flat() reads no repeated key, no null and no string
		 * with a NUL in it: what json_get() and json_string() would say
		 * follows from the kind alone. */
		m[k].present = true;
		if (mem[i].kind == JSON_STRING)
			m[k].str = mem[i].str;
		else {
			m[k].is_int = true;
			m[k].num = (int64_t)mem[i].num;
		}
	}
	return record_to_event(m, parse_stamp, ret);
}

int job_event_parse_json(const char *line, size_t len, struct job_event *ret, struct job_event_store *store)
{
	_cleanup_json_ struct json *root = NULL;
	struct member m[REC_COUNT];
	int r;

	job_event_store_release(store);
	if (json_parse(line, len, 4, &root) < 0)
		return -EBADMSG;
	for (unsigned k = 0; k < REC_COUNT; k++) {
		const struct json *v = json_get(root, record_keys[k].name);

		m[k].present = v != NULL;
		m[k].str = json_string(v, NULL);
		m[k].is_int = json_int64(v, &m[k].num) == 0;
	}
	r = record_to_event(m, parse_rfc3339, ret);
	if (r < 0)
		return r;
	store->root = TAKE_PTR(root);
	return 0;
}

int job_event_parse(const char *line, size_t len, struct job_event *ret, struct job_event_store *store)
{
	int r = job_event_parse_flat(line, len, ret, store);

	return r == -EOPNOTSUPP ? job_event_parse_json(line, len, ret, store) : r;
}

void job_snapshot(const struct job *j, struct job_event *ret)
{
	*ret = (struct job_event){
		.ts = j->updated_at,
		.id = j->id,
		.kind = JOB_EV_SNAPSHOT,
		.state = j->state,
		.created = j->created_at,
		.serial = j->serial[0] ? j->serial : NULL,
		.name = j->name,
		.mac = j->mac[0] ? j->mac : NULL,
		.duration = j->duration,
		.leds_blink_id = j->leds_blink_id,
		.meraki_status = j->meraki_status,
		.error = j->error,
		.source = j->status_source,
		.attempts = j->attempts,
		.nonce = j->nonce[0] ? j->nonce : NULL,
	};
}

const char *job_device_label(const struct job *j)
{
	return j->serial[0] ? j->serial : j->name ? j->name : j->mac;
}

void job_format_json(const struct job *j, struct json_writer *w)
{
	char created[RFC3339_MAX], updated[RFC3339_MAX];

	format_rfc3339(created, j->created_at);
	format_rfc3339(updated, j->updated_at);
	json_w_object_begin(w);
	json_w_kstr(w, "id", j->id);
	json_w_kstr(w, "serial", j->serial[0] ? j->serial : NULL);
	json_w_kstr(w, "name", j->name);
	json_w_kstr(w, "mac", j->mac[0] ? j->mac : NULL);
	json_w_kint(w, "duration", j->duration);
	json_w_kstr(w, "state", job_state_to_string(j->state));
	json_w_kstr(w, "leds_blink_id", j->leds_blink_id);
	json_w_kstr(w, "meraki_status", j->meraki_status);
	json_w_kstr(w, "status_source", j->status_source);
	json_w_kint(w, "attempts", j->attempts);
	json_w_kstr(w, "error", j->error);
	json_w_kstr(w, "created_at", created);
	json_w_kstr(w, "updated_at", updated);
	json_w_object_end(w);
}
