/* SPDX-License-Identifier: MIT */
/*
 * pgstore — the PostgreSQL store: see include/blinkhook/pgstore.h, and
 * daemon-internal.h for its part of the daemon.  The only user of libpq.
 *
 * Owns d->pg: one connection, driven by libpq's asynchronous calls on the
 * daemon's loop (never a blocking one), made again with a back-off when it
 * is lost; on each connection the schema is created or migrated first.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>

#include <libpq-fe.h>
#include <systemd/sd-event.h>

#include "blinkhook/credentials.h"
#include "blinkhook/log.h"
#include "blinkhook/pgstore.h"
#include "blinkhook/secret.h"
#include "blinkhook/util.h"
#include "daemon-internal.h"
#include "pgschema.h"

/* What stands in a message for a part of the connection string that may be
 * (part of) a password. */
#define HIDDEN "(hidden)"

/* Whether a quoted part of libpq's parse error may be shown: an option's
 * name that libpq took as a key (lower-case letters and underscores, as
 * all of libpq's are), or one punctuation mark (= ] : / ? & @ ,).  Anything else
 * may be a password's piece: libpq quotes the word after a value with a
 * blank in it ("missing = after ..."), a percent-encoded token, even the
 * whole URI. */
static bool parse_error_shows(const char *msg, const char *tok, size_t n)
{
	if (n == 1 && strchr("=]:/?&@,", tok[0]))
		return true;
	if (n == 0 || n > 32 || strspn(tok, "abcdefghijklmnopqrstuvwxyz_") < n)
		return false;
	return strncmp(msg, "invalid connection option", 25) == 0 ||
	       strncmp(msg, "invalid URI query parameter", 27) == 0;
}

void pgstore_parse_error(const char *msg, char *buf, size_t len)
{
	struct strbuf sb = STRBUF_INIT;
	const char *p = msg, *end = msg + strcspn(msg, "\n");

	while (p < end) {
		const char *q = memchr(p, '"', (size_t)(end - p)), *close;

		if (!q) {
			(void)strbuf_add(&sb, p, (size_t)(end - p));
			break;
		}
		/* A quote left alone: what follows it is hidden. */
		if (!(close = memchr(q + 1, '"', (size_t)(end - q - 1)))) {
			(void)strbuf_add(&sb, p, (size_t)(q + 1 - p));
			(void)strbuf_addstr(&sb, HIDDEN);
			break;
		}
		(void)strbuf_add(&sb, p, (size_t)(q + 1 - p));
		if (parse_error_shows(msg, q + 1, (size_t)(close - q - 1)))
			(void)strbuf_add(&sb, q + 1, (size_t)(close - q - 1));
		else {
			/* Hidden up to the last quote: the piece may hold a
			 * quote itself. */
			(void)strbuf_addstr(&sb, HIDDEN);
			while ((q = memchr(close + 1, '"', (size_t)(end - close - 1))))
				close = q;
		}
		(void)strbuf_addstr(&sb, "\"");
		p = close + 1;
	}
	snprintf(buf, len, "%s", sb.buf ? sb.buf : "invalid connection string");
	if (sb.buf)
		secret_wipe(sb.buf, sb.len);
	strbuf_release(&sb);
}

void pgstore_scrub(char *msg, size_t size, const char *secret)
{
	struct strbuf sb = STRBUF_INIT;
	size_t n = secret ? strlen(secret) : 0;
	const char *p = msg, *at;

	/* A password of one or two characters would blot out the message
	 * (and such a one is no secret). */
	if (n < 3 || !strstr(msg, secret))
		return;
	while ((at = strstr(p, secret))) {
		(void)strbuf_add(&sb, p, (size_t)(at - p));
		(void)strbuf_addstr(&sb, HIDDEN);
		p = at + n;
	}
	(void)strbuf_addstr(&sb, p);
	/* Out of memory: nothing of the message rather than the secret. */
	snprintf(msg, size, "%s", sb.buf ? sb.buf : HIDDEN);
	if (sb.buf)
		secret_wipe(sb.buf, sb.len);
	strbuf_release(&sb);
}

int pgstore_check_conninfo(const char *conninfo, bool from_config, char err[static CONFIG_ERROR_MAX])
{
	PQconninfoOption *opts;
	char *msg = NULL;
	int r = 0;

	opts = PQconninfoParse(conninfo, &msg);
	if (!opts) {
		/* libpq's message may quote a piece of the string, the whole
		 * URI even, password and all: those are hidden. */
		if (msg) {
			char safe[CONFIG_ERROR_MAX - 16];

			pgstore_parse_error(msg, safe, sizeof(safe));
			snprintf(err, CONFIG_ERROR_MAX, "conninfo: %s", safe);
			secret_wipe(msg, strlen(msg));
			PQfreemem(msg);
		} else
			snprintf(err, CONFIG_ERROR_MAX, "conninfo: out of memory");
		return -EINVAL;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (from_config && strcmp(o->keyword, "password") == 0 && o->val && *o->val) {
			snprintf(err, CONFIG_ERROR_MAX,
				 "conninfo: holds a password; put the whole string into the credential "
				 "postgresql-conninfo (or use a .pgpass file) instead");
			r = -EINVAL;
		}
	/* The parsed copy holds the password too. */
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (o->val)
			secret_wipe(o->val, strlen(o->val));
	PQconninfoFree(opts);
	return r;
}

/* ---- the connection on the daemon's loop ---- */

/* What is in flight on the connection (one query at a time). */
enum pg_query {
	Q_NONE,
	Q_KEY,     /* the callback key every node shares, made by the first */
	Q_LOAD,    /* the events, replayed into the table at the first connection */
	Q_COMMIT,  /* a batch of records and the jobs they changed */
	Q_LISTEN,  /* for the other nodes' commits */
	Q_TICK,    /* renew this node's claims, claim what nobody holds */
	Q_SYNC,    /* the events other nodes committed, into the table */
	Q_RESERVE, /* a submission slot for every node */
	Q_RETAIN,  /* final jobs past [state] retention deleted, a batch */
};

/* A callback waiting for the table to have what other nodes committed. */
struct pg_waiter {
	pg_synced_fn fn;
	void *ud;
	struct pg_waiter *next;
};

enum pg_state {
	PG_DOWN,       /* waiting for the next try */
	PG_CONNECTING, /* PQconnectPoll() until it is made */
	PG_MIGRATING,  /* the schema's transaction in flight */
	PG_UP,
};

struct pgstore {
	struct daemon *d;
	char *conninfo; /* secret_alloc()'s memory: it may hold a password */
	PGconn *conn;
	enum pg_state state;
	sd_event_source *io, *retry;
	int io_fd;
	/* libpq heeds connect_timeout only in its blocking calls: the daemon
	 * keeps its own deadlines, on the attempt and on each query. */
	sd_event_source *deadline;
	uint64_t connect_usec;
	unsigned host_skip; /* hosts skipped at the start of a try */
	char *password;     /* the conninfo's, hidden in messages */
	bool q_lost;        /* the query's error says the session is done for */
	uint64_t backoff;
	bool ever_up;     /* the first connection was made */
	bool down_logged; /* "unreachable" said, "reachable again" not yet */
	bool fatal;       /* the schema is newer than this daemon: no retry */
	bool old_said;    /* "the server is too old" said, no connection since */
	char *schema_sql; /* the migration's text, built once */

	/* The ledger's store: records appended (JSON, comma-separated) and the
	 * ids of the jobs they changed (one a line), pending and in flight (or
	 * failed: then sent first again), as the job log keeps them. */
	enum pg_query q;
	bool have_key, loaded;
	struct secret_key *key; /* the key read by Q_KEY, until it is taken */
	struct strbuf pending, inflight;
	struct strbuf pending_ids, inflight_ids;
	uint64_t appended_seq, inflight_seq, synced_seq;
	uint64_t loaded_records;

	/* Several nodes: the claim tick (every lease / 3), the callbacks
	 * waiting for the next sync and for the one in flight, the ids claimed
	 * at the last tick (one a line, made this node's after the next sync),
	 * the highest event seq read, the seq committed when the tick went,
	 * the slot reserved and its scope, and what waits for a query of its
	 * own. */
	sd_event_source *tick;
	struct pg_waiter *waiters, *sync_waiters;
	struct strbuf claimed;
	int64_t seen_seq;
	uint64_t tick_synced;
	uint64_t reserve_delay;
	char reserve_key[SERIAL_MAX + 1];
	/* The job the slot is for, and how long its lease holds from the
	 * reservation's answer (the slot is good only within it). */
	char reserve_job[JOB_ID_MAX + 1];
	uint64_t reserve_lease;
	char q_error[256]; /* the first error result of the query in flight */
	bool waiting;      /* pgstore_commit_wait() reports the end itself */
	bool listening, want_tick, want_sync, want_reserve, reserved;
	/* The last query sent was a commit (the next waiting query of another
	 * kind goes before the next commit); commits fail with an error that
	 * is not a lost connection ("a commit failed" said, not yet that they
	 * succeed again). */
	bool last_commit, commit_failing;

	/* The first load, a page at a time: the last seq read (a load cut
	 * short by a lost connection goes on from there), the rows of the
	 * page in flight, the pages read.  Retention: when the next pass is
	 * due (monotonic), whether the last batch was full (another follows
	 * at once), the jobs deleted by this pass. */
	int64_t load_after;
	uint64_t load_rows, load_pages;
	uint64_t retain_next, retain_deleted;
	bool retain_more;
	bool reserve_lost; /* the job is not this node's any more */
	/* The read of the events in flight goes by xid (else by seq); a full
	 * page of it calls for the next; this node's lock on its name was
	 * taken by the last connection, its refusal said. */
	bool sync_by_xid, sync_more, node_locked, node_lock_said;
	/* The read in flight goes by xid or seq (the first of a connection
	 * after a loss, with sync_xmin_saved); a read is under way (its first
	 * page sent, not yet ended). */
	bool sync_either, sync_open;
	/* The schema's round trip, whose results may come over several reads:
	 * the version read, the idle seconds of an earlier session of this
	 * node that it ended (-1: none), its first error. */
	int mig_version;
	/* The server process of the last connection given up on (0: none). */
	int last_pid;
	long long mig_ended_idle;
	char mig_err[256];
	/* The ids of the jobs queued here that the last commit found taken by
	 * other jobs (one a line), and those whose events the next sync reads
	 * whole (this node's own job of that id was dropped). */
	struct strbuf taken, resync;
	/* The xmin of the last read of the events ("" before the first), that
	 * of the read in flight, and how many events that one brought. */
	char sync_xmin[24], sync_xmin_next[24];
	uint64_t sync_rows;
	/* The xmin of the last read before the connection was lost ("" when
	 * none was noted, or once a read of the new connection ended), and
	 * the highest seq seen when the read in flight began (a read cut
	 * short gives back what its pages raised, so the next read's window
	 * is not moved past events it did not finish reading). */
	char sync_xmin_saved[24];
	int64_t sync_seen_start;
	/* A read of the events, a page at a time: whether it goes by xid
	 * (else by seq) and from which, the jobs it reads whole (taken from
	 * resync at its first page, given back if it fails) and their array
	 * literal, the pages read, the rows and last seq of the page in
	 * flight (whether a full page calls for the next: sync_more, above).
	 * The ids claimed that this node did not know, read whole once (one a
	 * line). */
	char sync_from[24], sync_seq_from[24];
	struct strbuf resyncing, sync_whole;
	/* The jobs whose end the store lost that were read again (once each). */
	struct strbuf lost_ends;
	uint64_t sync_pages, sync_page_rows;
	int64_t sync_page_after;
	struct strbuf reread;
	/* When the tick in flight went, and until when the last one answered
	 * renewed this node's leases (monotonic). */
	uint64_t tick_sent, renewed_until;
};

static void hex_encode(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Exactly 2n lower-case hex digits into n bytes. */
static int hex_decode(const char *hex, uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hex_value(hex[2 * i]), lo = hi < 0 ? -1 : hex_value(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		b[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int on_pg_io(sd_event_source *s, int fd, uint32_t revents, void *ud);
static void pg_connect(struct pgstore *pg);
static void pg_commit_end(struct pgstore *pg, int r);
static void waiters_run(struct daemon *d, struct pg_waiter *w, int r);
static void sync_abandon(struct pgstore *pg);

/* libpq's message, one line, without its final newline. */
static void pg_message(const char *msg, char *buf, size_t len)
{
	size_t n;

	if (!msg || !*msg)
		msg = "no detail";
	n = strcspn(msg, "\n");
	snprintf(buf, len, "%.*s", (int)MIN(n, len - 1), msg);
}

/* Watches the connection's socket for events (EPOLLIN, EPOLLOUT); libpq may
 * open another socket on a reconnect or a next host, so the source follows
 * PQsocket(). */
static int pg_watch(struct pgstore *pg, uint32_t events)
{
	int fd = PQsocket(pg->conn), r;

	if (fd < 0)
		return -EBADF;
	if (pg->io && pg->io_fd != fd)
		pg->io = sd_event_source_disable_unref(pg->io);
	if (!pg->io) {
		r = sd_event_add_io(pg->d->event, &pg->io, fd, events, on_pg_io, pg);
		if (r < 0)
			return r;
		(void)sd_event_source_set_description(pg->io, "postgresql");
		pg->io_fd = fd;
		return 0;
	}
	r = sd_event_source_set_io_events(pg->io, events);
	if (r >= 0)
		r = sd_event_source_set_enabled(pg->io, SD_EVENT_ON);
	return r;
}

/* Arms the deadline of what starts now: a connection, or a query (which
 * replaces the one before). */
static void pg_deadline(struct pgstore *pg, uint64_t usec)
{
	(void)sd_event_source_set_time_relative(pg->deadline, usec);
	enable_oneshot(pg->deadline);
}

/* The connection is gone or could not be made: close it, say so once, try
 * again after the back-off (1 s doubling to 30 s). */
static void pg_lost(struct pgstore *pg, const char *why)
{
	char msg[256];

	pg_message(why, msg, sizeof(msg));
	pgstore_scrub(msg, sizeof(msg), pg->password);
	pg->io = sd_event_source_disable_unref(pg->io);
	(void)sd_event_source_set_enabled(pg->deadline, SD_EVENT_OFF);
	pg->q_lost = false;
	if (pg->conn) {
		/* Its server process may go on (blocked on a lock, say) and
		 * keep this node's name locked: the next connection ends it. */
		if (pg->state == PG_UP || pg->state == PG_MIGRATING)
			pg->last_pid = PQbackendPID(pg->conn);
		PQfinish(pg->conn);
		pg->conn = NULL;
	}
	pg->state = PG_DOWN;
	/* A commit in flight may or may not have been made: its records are
	 * sent again (a job's row takes the newer; an event may be doubled). */
	if (pg->q == Q_COMMIT) {
		pg->q = Q_NONE;
		pg_commit_end(pg, -EIO);
	}
	pg->q = Q_NONE;
	/* A new connection listens again and reads what it may have missed;
	 * callbacks waiting are answered 503 (Meraki tries again). */
	pg->listening = false;
	pg->want_sync = pg->want_tick = true;
	/* The xids of another server (a standby promoted after an
	 * asynchronous failover reuses those it never received) say nothing
	 * of what this node read: the first read of a new connection goes by
	 * seq, and a read cut short starts again.  Yet a transaction running
	 * at the last read may commit meanwhile with a seq far below the
	 * highest seen: the last xmin is kept, and that first read goes by
	 * either (a promoted standby's reused lower xids are found by seq). */
	if (pg->sync_xmin[0])
		memcpy(pg->sync_xmin_saved, pg->sync_xmin, sizeof(pg->sync_xmin_saved));
	pg->sync_xmin[0] = '\0';
	sync_abandon(pg);
	waiters_run(pg->d, TAKE_PTR(pg->sync_waiters), -EIO);
	waiters_run(pg->d, TAKE_PTR(pg->waiters), -EIO);
	if (pg->want_reserve) {
		pg->want_reserve = false;
		dispatch_reserved(pg->d, -EIO, 0, 0);
	}
	if (pg->fatal)
		return;
	pg->backoff = pg->backoff ? MIN(pg->backoff * 2, COMMIT_RETRY_MAX) : COMMIT_RETRY_MIN;
	if (!pg->down_logged) {
		if (pg->ever_up)
			log_err("the PostgreSQL store is unreachable (%s): answering callbacks 503 and holding the "
				"queue; reconnecting (every %llus at most)",
				msg, (unsigned long long)(COMMIT_RETRY_MAX / USEC_PER_SEC));
		else
			log_err("cannot connect to the PostgreSQL store (%s): answering callbacks 503 and holding "
				"the queue; trying again (every %llus at most)",
				msg, (unsigned long long)(COMMIT_RETRY_MAX / USEC_PER_SEC));
		pg->down_logged = true;
	} else
		log_debug("PostgreSQL store: still unreachable (%s); next try in %llus", msg,
			  (unsigned long long)(pg->backoff / USEC_PER_SEC));
	(void)sd_event_source_set_time_relative(pg->retry, pg->backoff);
	enable_oneshot(pg->retry);
	daemon_notify_status(pg->d, true);
}

/* A query may take the lease, at least this long. */
#define QUERY_TIMEOUT_MIN (10 * USEC_PER_SEC)

/* The query's deadline, from the config as it is now: [store] lease is
 * applied by a reload, and so is this. */
static uint64_t pg_query_usec(const struct pgstore *pg)
{
	return MAX(pg->d->cfg->store_lease_usec, QUERY_TIMEOUT_MIN);
}

/* A connection not made, or a query not answered, in time: a server that
 * neither answers nor closes (stopped, or a network that drops packets). */
static int on_pg_deadline(sd_event_source *s, uint64_t usec, void *ud)
{
	struct pgstore *pg = ud;
	char why[96];

	(void)s;
	(void)usec;
	if (pg->state == PG_CONNECTING) {
		/* The next try starts at the next host: one that never
		 * answers must not hold up the others for good. */
		pg->host_skip++;
		snprintf(why, sizeof(why), "no connection within %llus",
			 (unsigned long long)(pg->connect_usec / USEC_PER_SEC));
		pg_lost(pg, why);
	} else if (pg->state == PG_MIGRATING || (pg->state == PG_UP && pg->q != Q_NONE)) {
		snprintf(why, sizeof(why), "no answer within %llus",
			 (unsigned long long)(pg_query_usec(pg) / USEC_PER_SEC));
		pg_lost(pg, why);
	}
	return 0;
}

/* A comma-separated list with its first k elements (modulo their number)
 * moved to its end, newly allocated. */
static char *list_rotate(const char *list, unsigned k)
{
	size_t n = 1, len = strlen(list);
	const char *p = list;
	char *out;

	for (const char *c = list; *c; c++)
		n += *c == ',';
	k %= (unsigned)n;
	for (unsigned i = 0; i < k; i++)
		p = strchr(p, ',') + 1;
	out = malloc(len + 2);
	if (!out)
		return NULL;
	if (k == 0)
		memcpy(out, list, len + 1);
	else
		snprintf(out, len + 2, "%s,%.*s", p, (int)(p - list - 1), list);
	return out;
}

/* PQconnectStart() with the hosts (and their addresses and ports) taken in
 * another order: the first host_skip moved to the end.  NULL when there is
 * only one host, or on a failure: the caller starts the plain way. */
static PGconn *pg_connect_start_skipping(struct pgstore *pg)
{
	const char *keywords[64], *values[64];
	char *rotated[3] = {NULL, NULL, NULL};
	PQconninfoOption *opts = PQconninfoParse(pg->conninfo, NULL);
	PGconn *conn = NULL;
	size_t n = 0;
	int nr = 0;
	bool several = false;

	if (!opts)
		return NULL;
	for (PQconninfoOption *o = opts; o->keyword && n < ELEMENTSOF(keywords) - 1; o++) {
		if (!o->val)
			continue;
		keywords[n] = o->keyword;
		values[n] = o->val;
		if (strchr(o->val, ',') && nr < 3 &&
		    (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0 ||
		     strcmp(o->keyword, "port") == 0)) {
			several = true;
			rotated[nr] = list_rotate(o->val, pg->host_skip);
			if (!rotated[nr])
				goto out;
			values[n] = rotated[nr++];
		}
		n++;
	}
	keywords[n] = values[n] = NULL;
	if (several)
		conn = PQconnectStartParams(keywords, values, 0);
out:
	for (int i = 0; i < nr; i++)
		free(rotated[i]);
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (o->val)
			secret_wipe(o->val, strlen(o->val));
	PQconninfoFree(opts);
	return conn;
}

bool pgstore_sqlstate_lost(const char *sqlstate)
{
	static const char *const classes[] = {"08", "25", "53", "57"};

	if (!sqlstate || strlen(sqlstate) != 5)
		return false;
	for (size_t i = 0; i < ELEMENTSOF(classes); i++)
		if (strncmp(sqlstate, classes[i], 2) == 0)
			return true;
	return false;
}

static void pg_query_done(struct pgstore *pg);
static void pg_next(struct pgstore *pg);
static void pg_idle(struct pgstore *pg);

/* Sends a query and watches for its results (and for the socket to take
 * the rest of it, when libpq could not write it all at once). */
static int pg_send(struct pgstore *pg, enum pg_query q, const char *sql, int n, const char *const *params)
{
	if (!PQsendQueryParams(pg->conn, sql, n, NULL, params, NULL, NULL, 0))
		return -EIO;
	pg->q = q;
	pg->last_commit = q == Q_COMMIT;
	pg->q_error[0] = '\0';
	pg_deadline(pg, pg_query_usec(pg));
	if (pg_watch(pg, EPOLLIN | (PQflush(pg->conn) == 1 ? EPOLLOUT : 0)) < 0)
		return -EIO;
	return 0;
}

static int64_t seq_value(const char *s)
{
	return strtoll(s, NULL, 10);
}

/* One event at the first connection: applied as the log's replay applies
 * it; its job is another node's when that node holds its claim. */
static int load_one(struct pgstore *pg, const struct job_event *ev, const char *seq, const char *foreign)
{
	struct job *j = NULL;
	int64_t s = seq_value(seq);
	int r;

	pg->seen_seq = MAX(pg->seen_seq, s);
	pg->load_after = MAX(pg->load_after, s);
	pg->load_rows++;
	/* Two nodes may both have recorded a job's end (a callback on one, a
	 * poll on the other): the first stands, the other is left out. */
	if (job_table_check(&pg->d->ledger.jobs, ev) != 0)
		return 0;
	r = job_table_apply(&pg->d->ledger.jobs, ev, &j);
	if (r < 0)
		return r;
	j->foreign = strcmp(foreign, "t") == 0;
	j->store_seq = (uint64_t)s;
	return 0;
}

/* Whether id is among the lines of sb. */
static bool ids_have(const struct strbuf *sb, const char *id)
{
	size_t n = strlen(id);

	for (const char *p = sb->buf; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len == n && memcmp(p, id, n) == 0)
			return true;
		if (!nl)
			break;
		p = nl + 1;
	}
	return false;
}

/* One event another node committed: into the table when this node has not
 * seen it and it applies (a repeat, or one behind what this node knows, is
 * left out); the job's control follows.  A job first seen this way is that
 * node's, unless this node has just claimed it. */
static void sync_one(struct pgstore *pg, struct job_event_store *store, const char *text, const char *job_id,
		     const char *seq, const char *node)
{
	struct daemon *d = pg->d;
	struct job_event ev;
	struct job *j;
	int64_t s = seq_value(seq);
	bool created;

	pg->seen_seq = MAX(pg->seen_seq, s);
	/* This node's: applied when it was recorded; unless the job is read
	 * whole (its table entry was dropped: claims_take). */
	if (strcmp(node, d->cfg->store_node) == 0 && !ids_have(&pg->resyncing, job_id))
		return;
	if (job_event_parse(text, strlen(text), &ev, store) < 0)
		return;
	j = job_table_find(&d->ledger.jobs, ev.id);
	if (j && (uint64_t)s <= j->store_seq)
		return;
	if (job_table_check(&d->ledger.jobs, &ev) != 0) {
		if (j)
			j->store_seq = (uint64_t)s;
		return;
	}
	created = !j;
	if (job_table_apply(&d->ledger.jobs, &ev, &j) < 0)
		return;
	/* A job read whole is worked only once the read has ended
	 * (claims_take): a later page may still bring its submission. */
	if (created)
		j->foreign = !ids_have(&pg->claimed, j->id) || ids_have(&pg->resyncing, j->id);
	j->store_seq = (uint64_t)s;
	log_job(LOG_DEBUG, j->id, j->serial, job_state_to_string(j->state), "job %s: %s, recorded by node %s", j->id,
		job_state_to_string(j->state), node);
	if (dispatch_job_changed(d, j) < 0)
		log_err("job %s: out of memory", j->id);
}

/* One element of a text array literal: "s" (its first n bytes), quoted,
 * after a comma unless it is the first. */
static int array_add(struct strbuf *sb, bool *first, const char *s, size_t n)
{
	int r = strbuf_addstr(sb, *first ? "\"" : ",\"");

	for (size_t i = 0; i < n && r >= 0; i++)
		r = strbuf_addf(sb, "%s%c", s[i] == '"' || s[i] == '\\' ? "\\" : "", s[i]);
	*first = false;
	return r < 0 ? r : strbuf_addstr(sb, "\"");
}

/* The lines of ids (one a line) into a text array literal's elements. */
static int array_add_lines(struct strbuf *sb, bool *first, const struct strbuf *ids)
{
	const char *p = ids->buf;
	int r = 0;

	while (p && *p && r >= 0) {
		size_t n = strcspn(p, "\n");

		r = array_add(sb, first, p, n);
		p += n + (p[n] == '\n');
	}
	return r;
}

/* The tick's list, a text array literal: the ids of the unfinished jobs
 * this node works, and of those claimed and not yet taken. */
static int tick_ids(struct pgstore *pg, struct strbuf *sb)
{
	bool first = true;
	int r = strbuf_addstr(sb, "{");

	for (const struct job *j = pg->d->ledger.jobs.first; j && r >= 0; j = j->next)
		if (!j->foreign && !job_state_is_final(j->state))
			r = array_add(sb, &first, j->id, strlen(j->id));
	if (r >= 0)
		r = array_add_lines(sb, &first, &pg->claimed);
	return r < 0 ? r : strbuf_addstr(sb, "}");
}

/* The tick's answer: the ids renewed (still this node's) and those claimed
 * (this node's after the sync that follows reads their events).  A job this
 * node works that was not renewed, though committed before the tick went,
 * was claimed by another node meanwhile (this node's lease ran out): it is
 * let go. */
static void tick_results(struct pgstore *pg, PGresult *res)
{
	struct daemon *d = pg->d;
	struct strbuf claimed = STRBUF_INIT;

	/* The claims not yet taken (their sync failed, or has not come) stay
	 * while the tick renewed them; those it took now join them. */
	for (int i = 0; i < PQntuples(res); i++) {
		const char *id = PQgetvalue(res, i, 0);
		struct job *j = job_table_find(&d->ledger.jobs, id);
		bool took = strcmp(PQgetvalue(res, i, 1), "t") == 0;

		if (took || ids_have(&pg->claimed, id))
			(void)strbuf_addf(&claimed, "%s\n", id);
		if (!took && j)
			j->renewed = true;
	}
	strbuf_release(&pg->claimed);
	pg->claimed = claimed;
	/* Each lease renewed holds at least the lease from when the tick went. */
	pg->renewed_until = pg->tick_sent + d->cfg->store_lease_usec;
	for (struct job *j = d->ledger.jobs.first; j; j = j->next) {
		if (!j->foreign && !j->renewed && !job_state_is_final(j->state) && j->log_seq <= pg->tick_synced) {
			log_job(LOG_NOTICE, j->id, j->serial, job_state_to_string(j->state),
				"job %s: another node holds its claim now (this node's lease ran out); letting it go",
				j->id);
			j->foreign = true;
			(void)dispatch_job_changed(d, j);
		}
		j->renewed = false;
	}
	if (pg->claimed.len)
		pg->want_sync = true;
}

/* After a sync: the jobs claimed at the tick before it are this node's.  A
 * job claimed that this node does not know (its events came before the
 * reads' window, or were never read) is read whole at the next sync, and
 * stays claimed until then: nobody else may take it, and leaving it
 * unknown would renew a claim nobody works. */
static void claims_take(struct pgstore *pg)
{
	struct daemon *d = pg->d;
	struct strbuf keep = STRBUF_INIT, again = STRBUF_INIT;
	const char *p = pg->claimed.buf;

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		char id[JOB_ID_MAX + 1];
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		struct job *j;
		bool reread;

		snprintf(id, sizeof(id), "%.*s", (int)MIN(n, (size_t)JOB_ID_MAX), p);
		p = nl ? nl + 1 : p + n;
		j = job_table_find(&d->ledger.jobs, id);
		reread = ids_have(&pg->reread, id);
		/* The tick claims only unfinished rows: a job this node holds
		 * final, its end committed before the tick went, is one whose
		 * end the database lost (a failover with asynchronous
		 * replication: the promoted standby never received it).  The
		 * store is the truth: the job is read again as it has it, and
		 * worked from there (asked of Meraki as any submitted job). */
		if (j && !reread && !j->foreign && job_state_is_final(j->state) && !j->userdata &&
		    j->log_seq <= pg->tick_synced && !ids_have(&pg->lost_ends, id)) {
			log_job(LOG_WARNING, j->id, j->serial, job_state_to_string(j->state),
				"job %s: %s here, but the PostgreSQL store has it unfinished (its end was lost, as "
				"in a failover); reading it again from the store",
				j->id, job_state_to_string(j->state));
			/* Once a job: should its events say final again (a
			 * row the version guard kept from an update), the next
			 * tick's claim is left alone rather than read again. */
			(void)strbuf_addf(&pg->lost_ends, "%s\n", id);
			job_table_remove(&d->ledger.jobs, j);
			j = NULL;
		} else if (!j) {
			if (reread) {
				log_job(LOG_WARNING, id, NULL, NULL,
					"job %s: claimed, but the PostgreSQL store has no events for it; left alone",
					id);
				continue;
			}
			log_job(LOG_NOTICE, id, NULL, NULL,
				"job %s: claimed, but this node has not read its events; reading them whole", id);
		}
		if (!j) {
			(void)strbuf_addf(&keep, "%s\n", id);
			(void)strbuf_addf(&again, "%s\n", id);
			if (!ids_have(&pg->resync, id))
				(void)strbuf_addf(&pg->resync, "%s\n", id);
			pg->want_sync = true;
			continue;
		}
		if (job_state_is_final(j->state) || (!j->foreign && !reread))
			continue;
		j->foreign = false;
		log_job(LOG_INFO, j->id, j->serial, job_state_to_string(j->state),
			"job %s: claimed (its node's lease ran out)%s", j->id,
			reread ? "; its events were read whole" : "");
		if (dispatch_job_changed(d, j) < 0)
			log_err("job %s: out of memory", j->id);
	}
	strbuf_release(&pg->claimed);
	pg->claimed = keep;
	strbuf_release(&pg->reread);
	pg->reread = again;
	/* A job claimed waits in the run queue: the scheduler starts it. */
	dispatch_schedule(d);
}

static void waiters_run(struct daemon *d, struct pg_waiter *w, int r)
{
	while (w) {
		struct pg_waiter *next = w->next;

		w->fn(d, w->ud, r);
		free(w);
		w = next;
	}
}

/* Every result the connection has ready; at the end of a query's results,
 * its handler. */
static void pg_results(struct pgstore *pg)
{
	struct job_event_store *store = NULL;
	PGresult *res;

	while (pg->conn && pg->q != Q_NONE && !PQisBusy(pg->conn)) {
		res = PQgetResult(pg->conn);
		if (!res) {
			pg_query_done(pg);
			continue;
		}
		if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
			if (!pg->q_error[0])
				pg_message(PQresultErrorMessage(res), pg->q_error, sizeof(pg->q_error));
			/* A server gone read-only (a failover), shutting down or
			 * out of resources: another, or this one later. */
			if (pgstore_sqlstate_lost(PQresultErrorField(res, PG_DIAG_SQLSTATE)))
				pg->q_lost = true;
		} else if (pg->q == Q_KEY && !pg->q_error[0] && !pg->key && PQntuples(res) >= 1) {
			const char *hex = PQgetvalue(res, 0, 0);
			uint8_t bytes[SECRET_KEY_SIZE];
			int r = -EINVAL;

			if (strlen(hex) == 2 * (size_t)SECRET_KEY_SIZE && hex_decode(hex, bytes, sizeof(bytes)) == 0)
				r = secret_key_from_bytes(bytes, sizeof(bytes), &pg->key);
			secret_wipe(bytes, sizeof(bytes));
			if (r < 0)
				snprintf(pg->q_error, sizeof(pg->q_error),
					 "the callback key in the table keys is damaged");
		} else if (pg->q == Q_LOAD && !pg->q_error[0]) {
			/* The job log's records, in their order, through the
			 * same function that replays the log. */
			if (!store)
				store = calloc(1, sizeof(*store));
			/* The first page's xmin (a load resumed after a lost
			 * connection has none: the reads start by seq). */
			if (pg->load_pages == 0 && pg->load_after == 0 && PQntuples(res) >= 1 && PQnfields(res) == 5)
				snprintf(pg->sync_xmin, sizeof(pg->sync_xmin), "%s", PQgetvalue(res, 0, 4));
			for (int i = 0; store && i < PQntuples(res) && !pg->q_error[0]; i++) {
				const char *text = PQgetvalue(res, i, 0);
				struct job_event ev;
				int r = job_event_parse(text, strlen(text), &ev, store);

				if (r >= 0)
					r = load_one(pg, &ev, PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
				if (r < 0) {
					errno = -r;
					snprintf(pg->q_error, sizeof(pg->q_error),
						 "cannot apply the event of job %.64s (%m)", PQgetvalue(res, i, 1));
				}
				pg->loaded_records++;
			}
			if (!store)
				snprintf(pg->q_error, sizeof(pg->q_error), "out of memory");
		} else if (pg->q == Q_SYNC && !pg->q_error[0]) {
			if (!store)
				store = calloc(1, sizeof(*store));
			/* The first page's xmin: the oldest snapshot of the read. */
			if (pg->sync_pages == 0 && !pg->sync_xmin_next[0] && PQntuples(res) >= 1 && PQnfields(res) == 5)
				snprintf(pg->sync_xmin_next, sizeof(pg->sync_xmin_next), "%s", PQgetvalue(res, 0, 4));
			for (int i = 0; store && i < PQntuples(res); i++) {
				if (PQgetisnull(res, i, 0))
					continue; /* no event: the xmin alone */
				pg->sync_rows++;
				pg->sync_page_rows++;
				pg->sync_page_after = MAX(pg->sync_page_after, seq_value(PQgetvalue(res, i, 2)));
				sync_one(pg, store, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
					 PQgetvalue(res, i, 3));
			}
		} else if (pg->q == Q_COMMIT && !pg->q_error[0] && PQntuples(res) == 1 && PQnfields(res) == 2) {
			if (*PQgetvalue(res, 0, 1) && strbuf_addf(&pg->taken, "%s\n", PQgetvalue(res, 0, 1)) < 0)
				snprintf(pg->q_error, sizeof(pg->q_error), "out of memory");
		} else if (pg->q == Q_TICK && !pg->q_error[0]) {
			tick_results(pg, res);
		} else if (pg->q == Q_RESERVE && !pg->q_error[0]) {
			pg->reserve_lost = PQntuples(res) == 0;
			if (PQntuples(res) == 1) {
				long long lease = strtoll(PQgetvalue(res, 0, 1), NULL, 10);

				pg->reserve_delay = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
				pg->reserve_lease = lease > 0 ? (uint64_t)lease : 0;
				pg->reserved = true;
			}
		} else if (pg->q == Q_RETAIN && !pg->q_error[0] && PQntuples(res) == 1) {
			uint64_t n = strtoull(PQgetvalue(res, 0, 0), NULL, 10);

			pg->retain_deleted += n;
			pg->retain_more = n >= RETAIN_BATCH;
		}
		PQclear(res);
	}
	if (store) {
		job_event_store_release(store);
		free(store);
	}
}

/* The jobs queued here whose ids the commit found taken by other jobs:
 * dropped from the table (their records were left out of the database);
 * intake rejects their requests (pgstore_id_taken()), and the next sync
 * reads the other jobs of those ids whole. */
static void taken_drop(struct pgstore *pg)
{
	struct daemon *d = pg->d;
	const char *p = pg->taken.buf;

	while (p && *p) {
		size_t n = strcspn(p, "\n");
		char id[JOB_ID_MAX + 1];
		struct job *j;

		snprintf(id, sizeof(id), "%.*s", (int)MIN(n, (size_t)JOB_ID_MAX), p);
		p += n + (p[n] == '\n');
		j = job_table_find(&d->ledger.jobs, id);
		if (j) {
			log_job(LOG_WARNING, j->id, j->serial, NULL,
				"job %s: another node queued a job with this id first; this node's request is rejected",
				j->id);
			j->foreign = true;
			(void)dispatch_job_changed(d, j);
			job_table_remove(&d->ledger.jobs, j);
		}
		if (!ids_have(&pg->resync, id))
			(void)strbuf_addf(&pg->resync, "%s\n", id);
		pg->want_sync = true;
	}
}

/* The commit's end: r 0, or -EIO with the batch kept for the next try. */
static void pg_commit_end(struct pgstore *pg, int r)
{
	if (r == 0) {
		pg->synced_seq = pg->inflight_seq;
		strbuf_reset(&pg->inflight);
		strbuf_reset(&pg->inflight_ids);
		taken_drop(pg);
	}
	if (!pg->waiting)
		ledger_store_committed(pg->d, r);
}

/* Retention in this node's table: final jobs past it are dropped, as the
 * log store's compaction drops them (the database's rows go by the
 * retention pass; another node's events synced since the load may have
 * brought some back).  A job with a control is left alone. */
static size_t retain_table(struct daemon *d)
{
	uint64_t now = now_realtime_usec();
	size_t dropped = 0;

	for (struct job *j = d->ledger.jobs.first, *next; j; j = next) {
		next = j->next;
		if (job_state_is_final(j->state) && !j->userdata && j->updated_at + d->cfg->retention_usec < now) {
			job_table_remove(&d->ledger.jobs, j);
			dropped++;
		}
	}
	return dropped;
}

/* How often a node runs a pass (and at its first load). */
#define RETAIN_EVERY (10 * USEC_PER_MIN)

/* A retention pass is due every RETAIN_EVERY (the first right after the
 * load), and its next batch at once after a full one.  It is the least
 * urgent of the queries: it goes when nothing else waits. */
static bool retain_due(const struct pgstore *pg)
{
	return pg->retain_more || now_monotonic_usec() >= pg->retain_next;
}

static int retain_send(struct pgstore *pg)
{
	char retention[32];
	const char *params[1] = {retention};

	snprintf(retention, sizeof(retention), "%llu microseconds", (unsigned long long)pg->d->cfg->retention_usec);
	pg->retain_more = false;
	return pg_send(pg, Q_RETAIN, pgsql_retain, 1, params);
}

/* A pass's end (its last batch, or a failure: the next pass tries again). */
static void retain_done(struct pgstore *pg)
{
	size_t dropped = retain_table(pg->d);

	if (pg->retain_deleted > 0 || dropped > 0)
		log_info("deleted %llu final job(s) past retention from the PostgreSQL store (%zu from this "
			 "node's table)",
			 (unsigned long long)pg->retain_deleted, dropped);
	pg->retain_deleted = 0;
	pg->retain_next = now_monotonic_usec() + RETAIN_EVERY;
}

/* A slot is reserved for a job whose records are all in the database: the
 * reservation checks its row (a job queued here and not yet committed
 * would be found nobody's, and let go). */
static bool reserve_ready(const struct pgstore *pg)
{
	const struct job *j = job_table_find(&pg->d->ledger.jobs, pg->reserve_job);

	return !j || j->log_seq <= pg->synced_seq;
}

/* The commit waits for its turn: after a commit, a query of another kind
 * that waits (LISTEN, a slot, a read or its next page) goes first, or a
 * steady stream of records (one arriving within each commit's round trip)
 * would hold them back for good.  Not at a stop: then the commit is what
 * matters. */
static bool commit_yields(const struct pgstore *pg)
{
	return pg->last_commit && !pg->waiting &&
	       (!pg->listening || (pg->want_reserve && reserve_ready(pg)) || pg->want_sync || pg->waiters ||
		pg->sync_more);
}

/* A read of the other nodes' events: its next page, or a new read (by xid
 * from the last read's xmin, or by seq before the first such read, by
 * either at the first of a connection after a loss when one was noted, and
 * the jobs to read whole).  0 also when out of memory (the next query's end
 * tries again). */
static int sync_send(struct pgstore *pg)
{
	char page_after[24];
	const char *params[4];

	if (!pg->sync_more) {
		struct strbuf whole = STRBUF_INIT;
		bool first = true;

		if (strbuf_addstr(&whole, "{") < 0 || array_add_lines(&whole, &first, &pg->resync) < 0 ||
		    strbuf_addstr(&whole, "}") < 0) {
			strbuf_release(&whole);
			return 0;
		}
		strbuf_release(&pg->sync_whole);
		pg->sync_whole = whole;
		strbuf_release(&pg->resyncing);
		pg->resyncing = pg->resync;
		pg->resync = (struct strbuf)STRBUF_INIT;
		pg->want_sync = false;
		pg->sync_waiters = TAKE_PTR(pg->waiters);
		pg->sync_by_xid = pg->sync_xmin[0] != '\0';
		pg->sync_either = !pg->sync_by_xid && pg->sync_xmin_saved[0] != '\0';
		if (pg->sync_by_xid)
			snprintf(pg->sync_from, sizeof(pg->sync_from), "%s", pg->sync_xmin);
		else if (pg->sync_either)
			snprintf(pg->sync_from, sizeof(pg->sync_from), "%s", pg->sync_xmin_saved);
		if (!pg->sync_by_xid)
			snprintf(pg->sync_seq_from, sizeof(pg->sync_seq_from), "%lld",
				 (long long)MAX(pg->seen_seq - SYNC_OVERLAP, 0));
		if (!pg->sync_by_xid && !pg->sync_either)
			memcpy(pg->sync_from, pg->sync_seq_from, sizeof(pg->sync_from));
		pg->sync_seen_start = pg->seen_seq;
		pg->sync_open = true;
		pg->sync_xmin_next[0] = '\0';
		pg->sync_rows = pg->sync_pages = 0;
		pg->sync_page_after = 0;
	}
	pg->sync_more = false;
	pg->sync_page_rows = 0;
	snprintf(page_after, sizeof(page_after), "%lld", (long long)pg->sync_page_after);
	params[0] = pg->sync_from;
	params[1] = pg->sync_whole.buf;
	params[2] = page_after;
	params[3] = pg->sync_seq_from;
	if (pg->sync_either)
		return pg_send(pg, Q_SYNC, pgsql_sync_either, 4, params);
	return pg_send(pg, Q_SYNC, pg->sync_by_xid ? pgsql_sync_xid : pgsql_sync_seq, 3, params);
}

/* A read that failed or was cut short: the jobs it was to read whole are
 * read at the next, and the highest seq seen is what it was when the read
 * began (the next read by seq covers what this one did not finish; events
 * its pages applied are left out when read again). */
static void sync_abandon(struct pgstore *pg)
{
	const char *p = pg->resyncing.buf;

	while (p && *p) {
		size_t n = strcspn(p, "\n");
		char id[JOB_ID_MAX + 1];

		snprintf(id, sizeof(id), "%.*s", (int)MIN(n, (size_t)JOB_ID_MAX), p);
		p += n + (p[n] == '\n');
		if (!ids_have(&pg->resync, id))
			(void)strbuf_addf(&pg->resync, "%s\n", id);
	}
	strbuf_reset(&pg->resyncing);
	pg->sync_more = false;
	if (pg->sync_open)
		pg->seen_seq = pg->sync_seen_start;
	pg->sync_open = false;
}

/* Connected, loaded, nothing in flight: a tick that fell due first, then
 * a commit (taking turns with the rest, and not while its retry waits for
 * its back-off), then what waits for a query of its own. */
static void pg_idle(struct pgstore *pg)
{
	char lease[32];
	int r = 0;

	if (!pg->conn || pg->state != PG_UP || pg->q != Q_NONE || !pg->loaded)
		return;
	snprintf(lease, sizeof(lease), "%llu microseconds", (unsigned long long)pg->d->cfg->store_lease_usec);
	/* The tick goes before the next commit: under a steady stream of
	 * commits (callbacks, intake) it would otherwise wait for a moment
	 * with nothing pending, and the leases it renews could run out while
	 * this node still works their jobs.  So a renewal waits for one query
	 * at most (the one in flight when it fell due). */
	if (pg->want_tick) {
		struct strbuf ids = STRBUF_INIT;
		const char *tparams[3];

		r = tick_ids(pg, &ids);
		if (r < 0) {
			strbuf_release(&ids);
			return; /* out of memory: the next tick tries again */
		}
		pg->want_tick = false;
		pg->tick_synced = pg->synced_seq;
		pg->tick_sent = now_monotonic_usec();
		tparams[0] = pg->d->cfg->store_node;
		tparams[1] = lease;
		tparams[2] = ids.buf;
		r = pg_send(pg, Q_TICK, pgsql_tick, 3, tparams);
		strbuf_release(&ids);
		if (r < 0)
			pg_lost(pg, PQerrorMessage(pg->conn));
		return;
	}
	/* A commit that failed is tried again by the ledger's retry timer,
	 * after its back-off: kicking it here would resend it at once, in a
	 * loop, when the error stays (a REVOKE, a trigger that raises). */
	if (pgstore_has_pending(pg->d) && !ledger_commit_held(pg->d) && !commit_yields(pg)) {
		ledger_kick(pg->d);
		return;
	}
	if (!pg->listening)
		r = pg_send(pg, Q_LISTEN, "LISTEN " PG_CHANNEL, 0, NULL);
	else if (pg->want_reserve && reserve_ready(pg)) {
		/* The slot: min_interval and a fifth (at most 1 s), so that
		 * two nodes' delays in starting their requests cannot bring
		 * them closer than min_interval. */
		uint64_t slot = pg->d->cfg->min_interval_usec + MIN(pg->d->cfg->min_interval_usec / 5, USEC_PER_SEC);

		char slot_len[32];
		const char *rparams[5];

		snprintf(slot_len, sizeof(slot_len), "%llu microseconds", (unsigned long long)slot);
		rparams[0] = pg->reserve_key;
		rparams[1] = slot_len;
		rparams[2] = pg->reserve_job;
		rparams[3] = pg->d->cfg->store_node;
		rparams[4] = lease;
		pg->reserved = pg->reserve_lost = false;
		r = pg_send(pg, Q_RESERVE, pgsql_reserve, 5, rparams);
	} else if (pg->sync_more || pg->want_sync || pg->waiters) {
		r = sync_send(pg);
	} else if (retain_due(pg))
		r = retain_send(pg);
	if (r < 0)
		pg_lost(pg, PQerrorMessage(pg->conn));
}

/* One page of the first load: LOAD_PAGE events after pg->load_after. */
static void load_page(struct pgstore *pg)
{
	char after[24], retention[32];
	const char *params[3] = {pg->d->cfg->store_node, after, retention};

	snprintf(after, sizeof(after), "%lld", (long long)pg->load_after);
	snprintf(retention, sizeof(retention), "%llu microseconds", (unsigned long long)pg->d->cfg->retention_usec);
	pg->load_rows = 0;
	if (pg_send(pg, Q_LOAD, pgsql_load, 3, params) < 0)
		pg_lost(pg, PQerrorMessage(pg->conn));
}

static void pg_loaded(struct pgstore *pg)
{
	struct daemon *d = pg->d;
	int r;

	pg->loaded = true;
	log_info("loaded %llu records from the PostgreSQL store: %zu jobs, %zu unfinished, in %llu page(s) of at "
		 "most %d",
		 (unsigned long long)pg->loaded_records, d->ledger.jobs.n_jobs,
		 d->ledger.jobs.n_by_state[JOB_QUEUED] + d->ledger.jobs.n_by_state[JOB_SUBMITTED],
		 (unsigned long long)pg->load_pages, LOAD_PAGE);
	for (struct job *j = d->ledger.jobs.first; j; j = j->next)
		if (!job_state_is_final(j->state) && (r = dispatch_job_changed(d, j)) < 0) {
			(void)log_errno(LOG_ERR, r, "out of memory");
			sd_event_exit(d->event, 1);
			return;
		}
	ledger_store_ready(d);
	pg->want_tick = true;
	pg_idle(pg);
}

static void pg_query_done(struct pgstore *pg)
{
	enum pg_query q = pg->q;

	/* The session is done for: everything is answered as at a loss (a
	 * commit kept for the next connection), the connection made again. */
	if (pg->q_lost) {
		pg_lost(pg, pg->q_error);
		return;
	}
	(void)sd_event_source_set_enabled(pg->deadline, SD_EVENT_OFF);
	pg->q = Q_NONE;
	switch (q) {
	case Q_KEY:
		if (pg->q_error[0]) {
			log_err("cannot read the callback key from the PostgreSQL store: %s; stopping", pg->q_error);
			pg->fatal = true;
			sd_event_exit(pg->d->event, 1);
			return;
		}
		/* Another node's insert of the key committed while this one
		 * waited on it: neither statement saw a key.  The next will. */
		if (!pg->key) {
			pg_next(pg);
			return;
		}
		/* Every node signs and verifies with the database's key; the
		 * local one (state dir) serves the log store only. */
		secret_key_free(pg->d->key);
		pg->d->key = TAKE_PTR(pg->key);
		pg->have_key = true;
		pg_next(pg);
		return;
	case Q_LOAD:
		if (pg->q_error[0]) {
			log_err("cannot load the jobs from the PostgreSQL store: %s; stopping", pg->q_error);
			pg->fatal = true;
			sd_event_exit(pg->d->event, 1);
			return;
		}
		pg->load_pages++;
		/* A full page: there may be more. */
		if (pg->load_rows >= LOAD_PAGE) {
			load_page(pg);
			return;
		}
		pg_loaded(pg);
		return;
	case Q_COMMIT:
		/* Said once per failing stretch (each retry at debug level),
		 * and once when a commit goes through again. */
		if (pg->q_error[0] && !pg->commit_failing)
			log_err("PostgreSQL store: a commit failed: %s; answering callbacks 503 and holding the "
				"queue; trying again (every %llus at most)",
				pg->q_error, (unsigned long long)(COMMIT_RETRY_MAX / USEC_PER_SEC));
		else if (pg->q_error[0])
			log_debug("PostgreSQL store: a commit failed again: %s", pg->q_error);
		else if (pg->commit_failing)
			log_notice("PostgreSQL store: commits succeed again; taking requests");
		pg->commit_failing = pg->q_error[0] != '\0';
		pg_commit_end(pg, pg->q_error[0] ? -EIO : 0);
		break;
	case Q_LISTEN:
		if (!pg->q_error[0])
			pg->listening = true;
		break;
	case Q_TICK:
		if (pg->q_error[0])
			log_warn("PostgreSQL store: renewing and taking claims failed: %s", pg->q_error);
		break;
	case Q_SYNC:
		if (!pg->q_error[0]) {
			pg->sync_pages++;
			/* A full page: the next goes at once (after a tick
			 * due); the waiters wait for the last. */
			if (pg->sync_page_rows >= LOAD_PAGE) {
				pg->sync_more = true;
				break;
			}
			strbuf_reset(&pg->resyncing);
			pg->sync_open = false;
			/* The read's xmin, once it ended: one cut short keeps the
			 * last (and the one saved across a loss). */
			if (pg->sync_xmin_next[0]) {
				memcpy(pg->sync_xmin, pg->sync_xmin_next, sizeof(pg->sync_xmin));
				pg->sync_xmin_saved[0] = '\0';
			}
			log_debug(
				"PostgreSQL store: read %llu events of other nodes' commits in %llu page(s) (by %s %s%s%s); "
				"the next read from transaction %s on",
				(unsigned long long)pg->sync_rows, (unsigned long long)pg->sync_pages,
				pg->sync_by_xid || pg->sync_either ? "transaction from" : "seq after", pg->sync_from,
				pg->sync_either ? " or seq after " : "", pg->sync_either ? pg->sync_seq_from : "",
				pg->sync_xmin);
			claims_take(pg);
		} else {
			sync_abandon(pg);
			log_warn("PostgreSQL store: reading the other nodes' events failed: %s", pg->q_error);
		}
		waiters_run(pg->d, TAKE_PTR(pg->sync_waiters), pg->q_error[0] ? -EIO : 0);
		break;
	case Q_RETAIN:
		if (pg->q_error[0]) {
			log_warn("PostgreSQL store: deleting the final jobs past retention failed: %s", pg->q_error);
			pg->retain_more = false;
		}
		if (!pg->retain_more)
			retain_done(pg);
		break;
	case Q_RESERVE:
		pg->want_reserve = false;
		if (pg->q_error[0])
			log_warn("PostgreSQL store: reserving a submission slot failed: %s", pg->q_error);
		if (pg->reserve_lost) {
			/* Not this node's any more (its lease ran out while it was
			 * stopped or cut off; another node may have taken it): it
			 * is not submitted here.  A tick takes it back if nobody
			 * else holds it. */
			struct job *j = job_table_find(&pg->d->ledger.jobs, pg->reserve_job);

			if (j && !j->foreign && !job_state_is_final(j->state)) {
				log_job(LOG_NOTICE, j->id, j->serial, job_state_to_string(j->state),
					"job %s: this node's lease ran out before its submission; letting it go",
					j->id);
				j->foreign = true;
				(void)dispatch_job_changed(pg->d, j);
			}
			dispatch_reserved(pg->d, -ESTALE, 0, 0);
			break;
		}
		dispatch_reserved(pg->d, pg->reserved ? 0 : -EIO, pg->reserve_delay, pg->reserve_lease);
		break;
	default:
		return;
	}
	pg_idle(pg);
}

static void pg_up(struct pgstore *pg, int version)
{
	(void)sd_event_source_set_enabled(pg->deadline, SD_EVENT_OFF);
	pg->state = PG_UP;
	pg->backoff = 0;
	if (pg->down_logged || !pg->ever_up)
		/* host:port, as a multi-host list may name one host twice. */
		log_notice("%s the PostgreSQL store at %s:%s (server %s, schema version %d) as node %s",
			   pg->down_logged && pg->ever_up ? "reconnected to" : "connected to", PQhost(pg->conn) ?: "?",
			   PQport(pg->conn) ?: "?", PQparameterStatus(pg->conn, "server_version") ?: "?", version,
			   pg->d->cfg->store_node);
	pg->ever_up = true;
	pg->down_logged = false;
	daemon_notify_status(pg->d, true);
	pg_next(pg);
}

/* After the first connection's schema: the key, then the jobs, before
 * anything is taken; after a reconnection, straight to work. */
static void pg_next(struct pgstore *pg)
{
	if (!pg->have_key) {
		uint8_t bytes[SECRET_KEY_SIZE];
		char hex[2 * SECRET_KEY_SIZE + 1];
		const char *params[1] = {hex};
		int r = random_bytes(bytes, sizeof(bytes));

		if (r >= 0) {
			hex_encode(bytes, sizeof(bytes), hex);
			r = pg_send(pg, Q_KEY, pgsql_key, 1, params);
		}
		secret_wipe(bytes, sizeof(bytes));
		secret_wipe(hex, sizeof(hex));
		if (r < 0)
			pg_lost(pg, PQerrorMessage(pg->conn));
		return;
	}
	if (pg->loaded) {
		ledger_store_ready(pg->d);
		pg_idle(pg);
		return;
	}
	/* A load cut short by a lost connection goes on after its last
	 * page (each page was applied whole). */
	if (pg->load_after == 0)
		pg->loaded_records = pg->load_pages = 0;
	load_page(pg);
}

int pgstore_check_server_version(int version, char err[static CONFIG_ERROR_MAX])
{
	if (version <= 0 || version >= PGSTORE_MIN_SERVER)
		return 0;
	/* Before 10 the major version had two parts (90624 is 9.6.24). */
	if (version < 100000)
		snprintf(err, CONFIG_ERROR_MAX, "PostgreSQL %d.%d is too old: the store needs %d or later",
			 version / 10000, version / 100 % 100, PGSTORE_MIN_SERVER / 10000);
	else
		snprintf(err, CONFIG_ERROR_MAX, "PostgreSQL %d is too old: the store needs %d or later",
			 version / 10000, PGSTORE_MIN_SERVER / 10000);
	return -ENOTSUP;
}

/* The class of the session lock each node holds on its name (the two-int
 * form; not ASCII): two daemons configured with the same [store] node would
 * take each other's events for their own. */
#define NODE_LOCK_CLASS "1580962247"

/* The connection is made: create or migrate the schema before anything
 * else goes (this node's name lock first).  A server too old for the store
 * is skipped like one that does not answer: another host of the conninfo
 * may do, and this one may be upgraded; the daemon stops only on a schema
 * newer than it knows. */
static void pg_migrate(struct pgstore *pg)
{
	_cleanup_free_ char *sql = NULL;
	char *node, *app;
	char err[CONFIG_ERROR_MAX];
	_cleanup_free_ char *app_name = NULL;
	uint64_t lease = pg->d->cfg->store_lease_usec;
	unsigned long long keep, dead;
	int r;

	pg->mig_err[0] = '\0';
	pg->mig_version = -1;
	pg->mig_ended_idle = -1;
	pg->node_locked = false;
	if (pgstore_check_server_version(PQserverVersion(pg->conn), err) < 0) {
		/* Said once, until a connection is made; pg_lost() says
		 * "unreachable" once too. */
		if (!pg->old_said)
			log_err("%s (%s:%s)", err, PQhost(pg->conn) ?: "?", PQport(pg->conn) ?: "?");
		pg->old_said = true;
		pg->host_skip++;
		pg_lost(pg, "the server is too old");
		return;
	}
	if (asprintf(&app_name, "blinkhookd node %s", pg->d->cfg->store_node) < 0) {
		app_name = NULL;
		pg_lost(pg, "out of memory");
		return;
	}
	if (PQsetnonblocking(pg->conn, 1) != 0 ||
	    !(node = PQescapeLiteral(pg->conn, pg->d->cfg->store_node, strlen(pg->d->cfg->store_node)))) {
		pg_lost(pg, PQerrorMessage(pg->conn));
		return;
	}
	if (!(app = PQescapeLiteral(pg->conn, app_name, strlen(app_name)))) {
		PQfreemem(node);
		pg_lost(pg, PQerrorMessage(pg->conn));
		return;
	}
	/* The server notices a client gone without a word (a power loss, a
	 * network cut) only when TCP keepalive gives up, two hours by
	 * default: until then this node's name stays locked.  The probes go
	 * at a third of the lease.  And a session of this node's name idle
	 * for two leases is that of a dead daemon (a live one runs its claim
	 * tick every lease / 3): it is ended before the lock is tried (the
	 * end is asynchronous: the next try takes the lock).  So is this
	 * daemon's own last session, given up on (a query past its deadline
	 * may still run, or wait for a lock, and hold the name). */
	keep = MAX(lease / 3 / USEC_PER_SEC, 1ULL);
	dead = MAX(2 * lease / USEC_PER_SEC, 1ULL);
	r = asprintf(&sql,
		     "SET tcp_keepalives_idle = %llu; SET tcp_keepalives_interval = %llu; "
		     "SET tcp_keepalives_count = 3; SET application_name = %s;"
		     "SELECT pg_terminate_backend(a.pid) AS ended, "
		     "floor(extract(epoch from now() - a.state_change))::bigint AS ended_idle "
		     "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
		     "WHERE l.locktype = 'advisory' AND l.classid = " NODE_LOCK_CLASS "::oid "
		     "AND l.objid = hashtext(%s)::oid AND l.objsubid = 2 AND l.granted "
		     "AND a.pid <> pg_backend_pid() AND pg_has_role(a.usesysid, 'MEMBER') "
		     "AND (a.pid = %d OR (a.state = 'idle' AND a.state_change < now() - interval '%llu seconds'));"
		     "SELECT pg_try_advisory_lock(" NODE_LOCK_CLASS ", hashtext(%s)) AS node_lock;%s",
		     keep, keep, app, node, pg->last_pid, dead, node, pg->schema_sql);
	PQfreemem(node);
	PQfreemem(app);
	if (r < 0) {
		sql = NULL;
		pg_lost(pg, "out of memory");
		return;
	}
	if (!PQsendQuery(pg->conn, sql)) {
		pg_lost(pg, PQerrorMessage(pg->conn));
		return;
	}
	pg->old_said = false;
	pg->state = PG_MIGRATING;
	pg_deadline(pg, pg_query_usec(pg));
	/* The rest of the query may wait for the socket to take it. */
	if (pg_watch(pg, EPOLLIN | (PQflush(pg->conn) == 1 ? EPOLLOUT : 0)) < 0)
		pg_lost(pg, "cannot watch the connection's socket");
}

/* The schema transaction's results, one a statement: the version is the one
 * tuple-bearing result with one integer.  They may come over several reads
 * of the socket (a synchronous standby delays the COMMIT's): what they say
 * is kept in pg, and acted on at the end, when PQgetResult() says so. */
static void pg_migrate_results(struct pgstore *pg)
{
	PGresult *res;

	while (!PQisBusy(pg->conn) && (res = PQgetResult(pg->conn))) {
		ExecStatusType st = PQresultStatus(res);

		if (st == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQfnumber(res, "node_lock") == 0)
			pg->node_locked = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		else if (st == PGRES_TUPLES_OK && PQfnumber(res, "ended_idle") >= 0) {
			int f = PQfnumber(res, "ended_idle");

			for (int i = 0; i < PQntuples(res); i++)
				if (strcmp(PQgetvalue(res, i, 0), "t") == 0)
					pg->mig_ended_idle =
						MAX(pg->mig_ended_idle, strtoll(PQgetvalue(res, i, f), NULL, 10));
		} else if (st == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) == 1)
			pg->mig_version = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
		else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !pg->mig_err[0])
			pg_message(PQresultErrorMessage(res), pg->mig_err, sizeof(pg->mig_err));
		PQclear(res);
	}
	/* Not the end yet: PQgetResult() has not said NULL. */
	if (PQisBusy(pg->conn))
		return;
	if (pg->mig_ended_idle >= 0) {
		log_notice("ended the PostgreSQL session of an earlier run of node %s (idle for %llds)",
			   pg->d->cfg->store_node, pg->mig_ended_idle);
		pg->mig_ended_idle = -1;
	}
	if (pg->mig_err[0]) {
		char why[300];

		snprintf(why, sizeof(why), "creating or migrating the schema: %s", pg->mig_err);
		pg_lost(pg, why);
		return;
	}
	/* Another daemon holds this node's name (or this one's former
	 * session, not yet ended: the lock comes once it is). */
	if (!pg->node_locked) {
		if (!pg->node_lock_said)
			log_err("another blinkhookd is connected to the PostgreSQL store as node %s; each node needs its "
				"own [store] node",
				pg->d->cfg->store_node);
		pg->node_lock_said = true;
		pg_lost(pg, "another blinkhookd is connected as this node");
		return;
	}
	pg->node_lock_said = false;
	if (pg->mig_version > PGSQL_SCHEMA_VERSION) {
		log_err("the PostgreSQL store's schema is version %d, newer than this blinkhookd knows (%d): run the "
			"newer blinkhookd that migrated it",
			pg->mig_version, PGSQL_SCHEMA_VERSION);
		pg->fatal = true;
		pg_lost(pg, "schema too new");
		sd_event_exit(pg->d->event, 1);
		return;
	}
	pg_up(pg, pg->mig_version);
}

static void pg_connect_poll(struct pgstore *pg)
{
	PostgresPollingStatusType st = PQconnectPoll(pg->conn);

	/* libpq may have closed the socket and opened another (the next
	 * address or host; a read-only server skipped): often under the same
	 * number, which the watch on the old one would never see.  So the
	 * watch is made anew at each step. */
	pg->io = sd_event_source_disable_unref(pg->io);
	switch (st) {
	case PGRES_POLLING_READING:
		if (pg_watch(pg, EPOLLIN) < 0)
			pg_lost(pg, "cannot watch the connection's socket");
		return;
	case PGRES_POLLING_WRITING:
		if (pg_watch(pg, EPOLLOUT) < 0)
			pg_lost(pg, "cannot watch the connection's socket");
		return;
	case PGRES_POLLING_OK:
		pg_migrate(pg);
		return;
	default:
		pg_lost(pg, PQerrorMessage(pg->conn));
		return;
	}
}

static int on_pg_io(sd_event_source *s, int fd, uint32_t revents, void *ud)
{
	struct pgstore *pg = ud;

	(void)s;
	(void)fd;
	if (pg->state == PG_CONNECTING) {
		pg_connect_poll(pg);
		return 0;
	}
	if ((revents & EPOLLOUT) && PQflush(pg->conn) == 0)
		(void)sd_event_source_set_io_events(pg->io, EPOLLIN);
	if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return 0;
	if (!PQconsumeInput(pg->conn) || PQstatus(pg->conn) == CONNECTION_BAD) {
		pg_lost(pg, PQerrorMessage(pg->conn));
		return 0;
	}
	if (pg->state == PG_MIGRATING) {
		pg_migrate_results(pg);
		return 0;
	}
	/* Another node committed: read its events (this node's own commits
	 * notify it too, and need nothing). */
	for (PGnotify *n; (n = PQnotifies(pg->conn));) {
		if (n->be_pid != PQbackendPID(pg->conn))
			pg->want_sync = true;
		PQfreemem(n);
	}
	if (pg->q != Q_NONE) {
		pg_results(pg);
		return 0;
	}
	if (pg->want_sync) {
		pg_idle(pg);
		return 0;
	}
	/* Idle: what comes is the server's word that it ends the session (a
	 * shutdown, a failover) or a notice; a result with no query in flight
	 * means the connection is done for. */
	while (!PQisBusy(pg->conn)) {
		PGresult *res = PQgetResult(pg->conn);

		if (!res)
			break;
		PQclear(res);
	}
	if (PQstatus(pg->conn) == CONNECTION_BAD)
		pg_lost(pg, PQerrorMessage(pg->conn));
	return 0;
}

/* libpq would print the server's notices on stderr ("relation ... already
 * exists, skipping" at each start): they are for debugging only. */
static void pg_notice(void *ud, const char *msg)
{
	char buf[256];

	(void)ud;
	pg_message(msg, buf, sizeof(buf));
	log_debug("PostgreSQL: %s", buf);
}

static void pg_connect(struct pgstore *pg)
{
	pg->conn = pg->host_skip ? pg_connect_start_skipping(pg) : NULL;
	if (!pg->conn)
		pg->conn = PQconnectStart(pg->conninfo);
	if (!pg->conn) {
		pg_lost(pg, "out of memory");
		return;
	}
	(void)PQsetNoticeProcessor(pg->conn, pg_notice, NULL);
	if (PQstatus(pg->conn) == CONNECTION_BAD) {
		pg_lost(pg, PQerrorMessage(pg->conn));
		return;
	}
	pg->state = PG_CONNECTING;
	pg_deadline(pg, pg->connect_usec);
	/* PQconnectStart() has begun; the first poll says what to wait for. */
	pg_connect_poll(pg);
}

/* Every lease / 3: renew this node's claims, take those that ran out. */
static int on_pg_tick(sd_event_source *s, uint64_t usec, void *ud)
{
	struct pgstore *pg = ud;

	(void)usec;
	pg->want_tick = true;
	pg_idle(pg);
	(void)sd_event_source_set_time_relative(s, MAX(pg->d->cfg->store_lease_usec / 3, 100 * USEC_PER_MSEC));
	enable_oneshot(s);
	return 0;
}

static int on_pg_retry(sd_event_source *s, uint64_t usec, void *ud)
{
	(void)s;
	(void)usec;
	pg_connect(ud);
	return 0;
}

/* Without connect_timeout, a try may take this long. */
#define CONNECT_TIMEOUT_DEFAULT (10 * USEC_PER_SEC)
/* The deadlines (connect_timeout as libpq reads it: whole seconds, 2 at
 * least; none or 0, which for libpq is forever, the default), the password
 * to hide, and the timer.  At the open, after the conninfo was checked. */
static int pg_deadlines_setup(struct pgstore *pg)
{
	PQconninfoOption *opts = PQconninfoParse(pg->conninfo, NULL);
	int r = 0;

	pg->connect_usec = CONNECT_TIMEOUT_DEFAULT;
	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (!o->val)
			continue;
		if (strcmp(o->keyword, "connect_timeout") == 0) {
			long t = strtol(o->val, NULL, 10);

			if (t > 0)
				pg->connect_usec = (uint64_t)MIN(MAX(t, 2L), 3600L) * USEC_PER_SEC;
		} else if (strcmp(o->keyword, "password") == 0 && *o->val && !pg->password) {
			pg->password = secret_alloc(strlen(o->val) + 1);
			if (pg->password)
				memcpy(pg->password, o->val, strlen(o->val) + 1);
			else
				r = -ENOMEM;
		}
	}
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (o->val)
			secret_wipe(o->val, strlen(o->val));
	PQconninfoFree(opts);
	if (r < 0)
		return r;
	r = sd_event_add_time(pg->d->event, &pg->deadline, CLOCK_MONOTONIC, 0, 0, on_pg_deadline, pg);
	if (r < 0)
		return r;
	(void)sd_event_source_set_description(pg->deadline, "postgresql-deadline");
	return sd_event_source_set_enabled(pg->deadline, SD_EVENT_OFF);
}

int pgstore_open(struct daemon *d)
{
	_cleanup_free_ struct pgstore *pg = NULL;
	char err[CONFIG_ERROR_MAX];
	const char *source = NULL;
	int r;

	pg = calloc(1, sizeof(*pg));
	if (!pg)
		return log_errno(LOG_ERR, ENOMEM, "out of memory");
	pg->d = d;
	pg->io_fd = -1;
	r = credentials_load_pg_conninfo(d->cfg, &pg->conninfo, &source, err);
	if (r >= 0) {
		r = pgstore_check_conninfo(pg->conninfo, strcmp(source, "config") == 0, err);
		if (r < 0)
			secret_free(pg->conninfo);
	}
	if (r < 0) {
		log_err("%s: [store] %s", d->cfg->path, err);
		return r;
	}
	pg->schema_sql = pgsql_schema();
	if (!pg->schema_sql) {
		r = -ENOMEM;
		secret_free(pg->conninfo);
		return log_errno(LOG_ERR, r, "out of memory");
	}
	r = pg_deadlines_setup(pg);
	if (r < 0)
		goto fail_loop;
	r = sd_event_add_time(d->event, &pg->retry, CLOCK_MONOTONIC, 0, 0, on_pg_retry, pg);
	if (r < 0)
		goto fail_loop;
	(void)sd_event_source_set_description(pg->retry, "postgresql-retry");
	(void)sd_event_source_set_enabled(pg->retry, SD_EVENT_OFF);
	r = sd_event_add_time_relative(d->event, &pg->tick, CLOCK_MONOTONIC,
				       MAX(d->cfg->store_lease_usec / 3, 100 * USEC_PER_MSEC), 0, on_pg_tick, pg);
	if (r < 0)
		goto fail_loop;
	(void)sd_event_source_set_description(pg->tick, "postgresql-claims");
	enable_oneshot(pg->tick);
	log_info("PostgreSQL store: node %s, connection string from %s", d->cfg->store_node, source);
	d->pg = TAKE_PTR(pg);
	pg_connect(d->pg);
	return 0;

fail_loop:
	sd_event_source_disable_unref(pg->retry);
	sd_event_source_disable_unref(pg->deadline);
	secret_free(pg->password);
	secret_free(pg->conninfo);
	free(pg->schema_sql);
	return log_errno(LOG_ERR, r, "cannot set up the event loop: %m");
}

void pgstore_close(struct daemon *d)
{
	struct pgstore *pg = d->pg;

	if (!pg)
		return;
	sd_event_source_disable_unref(pg->io);
	sd_event_source_disable_unref(pg->retry);
	sd_event_source_disable_unref(pg->deadline);
	sd_event_source_disable_unref(pg->tick);
	waiters_run(d, TAKE_PTR(pg->sync_waiters), -ECANCELED);
	waiters_run(d, TAKE_PTR(pg->waiters), -ECANCELED);
	strbuf_release(&pg->claimed);
	strbuf_release(&pg->taken);
	strbuf_release(&pg->resync);
	strbuf_release(&pg->resyncing);
	strbuf_release(&pg->lost_ends);
	strbuf_release(&pg->sync_whole);
	strbuf_release(&pg->reread);
	if (pg->conn)
		PQfinish(pg->conn);
	secret_key_free(pg->key);
	secret_free(pg->password);
	secret_free(pg->conninfo);
	free(pg->schema_sql);
	strbuf_release(&pg->pending);
	strbuf_release(&pg->inflight);
	strbuf_release(&pg->pending_ids);
	strbuf_release(&pg->inflight_ids);
	free(pg);
	d->pg = NULL;
}

bool pgstore_up(const struct daemon *d)
{
	return d->pg && d->pg->state == PG_UP;
}

/* ---- the ledger's store ---- */

int pgstore_append(struct daemon *d, const struct job_event *ev, uint64_t *ret_seq)
{
	struct pgstore *pg = d->pg;
	size_t before = pg->pending.len, before_ids = pg->pending_ids.len;
	int r;

	if (before)
		r = strbuf_addstr(&pg->pending, ",");
	else
		r = 0;
	if (r >= 0)
		r = job_event_format(ev, &pg->pending);
	if (r >= 0) {
		/* Without its newline: an element of a JSON array. */
		pg->pending.buf[--pg->pending.len] = '\0';
		r = strbuf_addf(&pg->pending_ids, "%s\n", ev->id);
	}
	if (r < 0) {
		pg->pending.len = before;
		if (pg->pending.buf)
			pg->pending.buf[before] = '\0';
		pg->pending_ids.len = before_ids;
		if (pg->pending_ids.buf)
			pg->pending_ids.buf[before_ids] = '\0';
		return r;
	}
	*ret_seq = ++pg->appended_seq;
	return 0;
}

/* Any query in flight holds the commit back: one at a time; its end takes
 * the commit up (pg_idle). */
bool pgstore_busy(const struct daemon *d)
{
	return d->pg->q != Q_NONE;
}

int pgstore_reserve(struct daemon *d, const char *scope, const char *job_id)
{
	struct pgstore *pg = d->pg;

	if (pg->state != PG_UP || !pg->loaded)
		return -EIO;
	if (pg->want_reserve)
		return -EBUSY;
	snprintf(pg->reserve_key, sizeof(pg->reserve_key), "%s", scope[0] ? scope : "global");
	snprintf(pg->reserve_job, sizeof(pg->reserve_job), "%s", job_id);
	pg->want_reserve = true;
	pg_idle(pg);
	return 0;
}

bool pgstore_id_taken(const struct daemon *d, const char *id)
{
	return ids_have(&d->pg->taken, id);
}

uint64_t pgstore_lease_until(const struct daemon *d)
{
	return d->pg->renewed_until;
}

int pgstore_when_synced(struct daemon *d, pg_synced_fn fn, void *ud)
{
	struct pgstore *pg = d->pg;
	struct pg_waiter *w;

	if (pg->state != PG_UP || !pg->loaded)
		return -EIO;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fn = fn;
	w->ud = ud;
	w->next = pg->waiters;
	pg->waiters = w;
	pg_idle(pg);
	return 0;
}

void pgstore_cancel_waiters(struct daemon *d)
{
	waiters_run(d, TAKE_PTR(d->pg->sync_waiters), -ECANCELED);
	waiters_run(d, TAKE_PTR(d->pg->waiters), -ECANCELED);
}

bool pgstore_has_pending(const struct daemon *d)
{
	const struct pgstore *pg = d->pg;

	return pg->pending.len > 0 || (pg->q != Q_COMMIT && pg->inflight.len > 0);
}

uint64_t pgstore_synced_seq(const struct daemon *d)
{
	return d->pg->synced_seq;
}

/* The jobs the batch changed, as the table has them now, with their nonces
 * (the job JSON leaves those out). */
static int jobs_json(struct pgstore *pg, struct strbuf *sb)
{
	struct json_writer w;
	const char *p = pg->inflight_ids.buf, *end = p + pg->inflight_ids.len;

	json_writer_init(&w, sb);
	json_w_array_begin(&w);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		char id[JOB_ID_MAX + 1];
		size_t n = (size_t)((nl ? nl : end) - p);
		const struct job *j;

		snprintf(id, sizeof(id), "%.*s", (int)MIN(n, (size_t)JOB_ID_MAX), p);
		p += n + 1;
		j = job_table_find(&pg->d->ledger.jobs, id);
		if (!j)
			continue;
		json_w_object_begin(&w);
		json_w_key(&w, "job");
		job_format_json(j, &w);
		json_w_kstr(&w, "nonce", j->nonce);
		json_w_object_end(&w);
	}
	json_w_array_end(&w);
	return json_writer_finish(&w);
}

int pgstore_commit_start(struct daemon *d)
{
	struct pgstore *pg = d->pg;
	struct strbuf events = STRBUF_INIT, jobs = STRBUF_INIT;
	const char *params[4];
	char lease[32];
	int r;

	if (pg->q == Q_COMMIT)
		return -EBUSY;
	if (pg->state != PG_UP || pg->q != Q_NONE || !pg->loaded)
		return -EIO;
	if (pg->pending.len == 0 && pg->inflight.len == 0)
		return 0;
	/* A tick that fell due goes first (pg_idle), and so does a query
	 * waiting for its turn after a commit; the commit follows at its end. */
	if (pg->want_tick || commit_yields(pg)) {
		pg_idle(pg);
		if (pg->q != Q_NONE)
			return -EAGAIN;
		if (pg->state != PG_UP)
			return -EIO;
	}
	/* The batch: a failed one first, then everything pending. */
	if (pg->pending.len) {
		if ((pg->inflight.len && strbuf_addstr(&pg->inflight, ",") < 0) ||
		    strbuf_add(&pg->inflight, pg->pending.buf, pg->pending.len) < 0 ||
		    strbuf_add(&pg->inflight_ids, pg->pending_ids.buf, pg->pending_ids.len) < 0)
			return -ENOMEM;
		strbuf_reset(&pg->pending);
		strbuf_reset(&pg->pending_ids);
	}
	pg->inflight_seq = pg->appended_seq;
	/* The last commit's taken ids served its spool files (run at its end);
	 * at a stop they wait for the end of the commits that follow. */
	if (!pg->waiting)
		strbuf_reset(&pg->taken);
	r = strbuf_addstr(&events, "[");
	if (r >= 0)
		r = strbuf_add(&events, pg->inflight.buf, pg->inflight.len);
	if (r >= 0)
		r = strbuf_addstr(&events, "]");
	if (r >= 0)
		r = jobs_json(pg, &jobs);
	if (r < 0) {
		strbuf_release(&events);
		strbuf_release(&jobs);
		return r;
	}
	snprintf(lease, sizeof(lease), "%llu microseconds", (unsigned long long)d->cfg->store_lease_usec);
	params[0] = d->cfg->store_node;
	params[1] = events.buf;
	params[2] = jobs.buf;
	params[3] = lease;
	r = pg_send(pg, Q_COMMIT, pgsql_commit, 4, params);
	strbuf_release(&events);
	strbuf_release(&jobs);
	if (r < 0) {
		pg_lost(pg, PQerrorMessage(pg->conn));
		return -EIO;
	}
	return 1;
}

/* Waits, in place, for the query in flight to end: at a stop only. */
static void pg_wait(struct pgstore *pg)
{
	/* The query's deadline, as in the loop (on_pg_deadline). */
	uint64_t usec = pg_query_usec(pg);
	int timeout = (int)MIN(usec / USEC_PER_MSEC, (uint64_t)INT_MAX);
	char why[64];

	snprintf(why, sizeof(why), "no answer within %llus", (unsigned long long)(usec / USEC_PER_SEC));
	while (pg->conn && pg->q != Q_NONE) {
		int f = PQflush(pg->conn);
		struct pollfd pfd = {.fd = PQsocket(pg->conn), .events = (short)(POLLIN | (f == 1 ? POLLOUT : 0))};
		int n = poll(&pfd, 1, timeout);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || f < 0) {
			pg_lost(pg, n == 0 ? why : PQerrorMessage(pg->conn));
			return;
		}
		if (!PQconsumeInput(pg->conn)) {
			pg_lost(pg, PQerrorMessage(pg->conn));
			return;
		}
		pg_results(pg);
	}
}

static int commit_wait_for(struct daemon *d, uint64_t want);

/* At a stop: what was appended, committed before the daemon goes. */
int pgstore_commit_wait(struct daemon *d)
{
	struct pgstore *pg = d->pg;
	uint64_t want = pg->appended_seq;
	int r;

	pg->waiting = true;
	r = commit_wait_for(d, want);
	pg->waiting = false;
	return r;
}

static int commit_wait_for(struct daemon *d, uint64_t want)
{
	struct pgstore *pg = d->pg;
	int r;

	pg_wait(pg);
	if (pg->synced_seq >= want)
		return 0;
	r = pgstore_commit_start(d);
	if (r == -EAGAIN) {
		/* A tick went first. */
		pg_wait(pg);
		r = pgstore_commit_start(d);
	}
	if (r != 1)
		return r;
	pg_wait(pg);
	return pg->synced_seq >= want ? 0 : -EIO;
}

/* ---- reading, for blinkhookctl ---- */

static void notice_ignore(void *ud, const char *msg)
{
	(void)ud;
	(void)msg;
}

/* A reader of the events (blinkhookctl): with follow, the seqs it printed
 * of the transactions at or after the xmin its next read asks from, so
 * that an event read again is not printed twice; those below the xmin
 * are never read again and go.  The set holds the events of the
 * transactions that had not ended at the last read (and of those begun
 * since): small, sorted by seq. */
struct pg_printed {
	int64_t seq;
	uint64_t xid;
};
struct pg_reader {
	PGconn *conn;
	struct job_event_store *store;
	int (*cb)(const struct job_event *ev, void *ud);
	void *ud;
	bool follow;
	uint64_t xmin; /* the next read's: events with xid >= it (0: all) */
	struct pg_printed *printed;
	size_t n, cap;
};

/* Where seq is in the printed set, or would go. */
static size_t printed_find(const struct pg_reader *rd, int64_t seq)
{
	size_t lo = 0, hi = rd->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rd->printed[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int printed_add(struct pg_reader *rd, int64_t seq, uint64_t xid)
{
	size_t at = printed_find(rd, seq);

	if (rd->n == rd->cap) {
		size_t cap = rd->cap ? rd->cap * 2 : 64;
		struct pg_printed *p = reallocarray(rd->printed, cap, sizeof(*p));

		if (!p)
			return -ENOMEM;
		rd->printed = p;
		rd->cap = cap;
	}
	memmove(rd->printed + at + 1, rd->printed + at, (rd->n - at) * sizeof(*rd->printed));
	rd->printed[at] = (struct pg_printed){.seq = seq, .xid = xid};
	rd->n++;
	return 0;
}

/* One read: every event of the transactions at or after rd->xmin, a page
 * (LOAD_PAGE rows) at a time, into cb, each once; rd->xmin moves on to the
 * xmin of the read's first page (a transaction not seen by it had not
 * ended then: it comes at the next read). */
static int read_events(struct pg_reader *rd, char err[static CONFIG_ERROR_MAX])
{
	char after[24], xmin[24], msg[256];
	const char *params[2] = {after, xmin};
	int64_t seq = 0;
	uint64_t next_xmin = rd->xmin;
	bool first = true;
	size_t kept = 0;
	int r = 0;

	snprintf(xmin, sizeof(xmin), "%llu", (unsigned long long)rd->xmin);
	for (int rows = LOAD_PAGE; rows >= LOAD_PAGE && r >= 0;) {
		PGresult *res;

		snprintf(after, sizeof(after), "%lld", (long long)seq);
		res = PQexecParams(rd->conn, pgsql_read, 2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1) {
			pg_message(PQresultErrorMessage(res), msg, sizeof(msg));
			snprintf(err, CONFIG_ERROR_MAX, "cannot read the PostgreSQL store: %s", msg);
			PQclear(res);
			return -EIO;
		}
		if (first)
			next_xmin = strtoull(PQgetvalue(res, 0, 3), NULL, 10);
		first = false;
		rows = 0;
		for (int i = 0; i < PQntuples(res) && r >= 0; i++) {
			const char *text = PQgetvalue(res, i, 0);
			uint64_t xid = strtoull(PQgetvalue(res, i, 2), NULL, 10);
			struct job_event ev;
			size_t at;

			if (PQgetisnull(res, i, 0))
				continue;
			rows++;
			seq = strtoll(PQgetvalue(res, i, 1), NULL, 10);
			if (rd->follow) {
				at = printed_find(rd, seq);
				if (at < rd->n && rd->printed[at].seq == seq)
					continue;
				/* Read again next time: remembered. */
				if (xid >= next_xmin && printed_add(rd, seq, xid) < 0) {
					snprintf(err, CONFIG_ERROR_MAX, "out of memory");
					PQclear(res);
					return -ENOMEM;
				}
			}
			/* A reader takes what it can, as from the job log. */
			if (job_event_parse(text, strlen(text), &ev, rd->store) >= 0)
				r = rd->cb(&ev, rd->ud);
		}
		PQclear(res);
	}
	if (r < 0) {
		snprintf(err, CONFIG_ERROR_MAX, "stopped reading the PostgreSQL store");
		return r;
	}
	/* The events below the next read's xmin are never read again. */
	rd->xmin = next_xmin;
	for (size_t i = 0; i < rd->n; i++)
		if (rd->printed[i].xid >= next_xmin)
			rd->printed[kept++] = rd->printed[i];
	rd->n = kept;
	return 0;
}

int pgstore_read_events(const char *conninfo, bool follow, int (*cb)(const struct job_event *ev, void *ud), void *ud,
			char err[static CONFIG_ERROR_MAX])
{
	struct pg_reader rd = {.cb = cb, .ud = ud, .follow = follow};
	bool have_events = false;
	PGresult *res = NULL;
	char msg[256];
	int r = 0;

	/* libpq's own word on a string it cannot parse may quote it whole. */
	r = pgstore_check_conninfo(conninfo, false, err);
	if (r < 0)
		return r;
	rd.conn = PQconnectdb(conninfo);
	if (!rd.conn) {
		snprintf(err, CONFIG_ERROR_MAX, "out of memory");
		return -ENOMEM;
	}
	(void)PQsetNoticeProcessor(rd.conn, notice_ignore, NULL);
	if (PQstatus(rd.conn) != CONNECTION_OK) {
		pg_message(PQerrorMessage(rd.conn), msg, sizeof(msg));
		snprintf(err, CONFIG_ERROR_MAX, "cannot connect to the PostgreSQL store: %s", msg);
		r = -ECONNREFUSED;
		goto out;
	}
	r = pgstore_check_server_version(PQserverVersion(rd.conn), err);
	if (r < 0)
		goto out;
	rd.store = calloc(1, sizeof(*rd.store));
	if (!rd.store) {
		snprintf(err, CONFIG_ERROR_MAX, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	if (follow) {
		/* Listening before the first read: nothing committed between
		 * the two is missed. */
		res = PQexec(rd.conn, "LISTEN " PG_CHANNEL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			pg_message(PQresultErrorMessage(res), msg, sizeof(msg));
			snprintf(err, CONFIG_ERROR_MAX, "cannot listen on the PostgreSQL store: %s", msg);
			r = -EIO;
			goto out;
		}
	}
	for (;;) {
		PGnotify *n;
		struct pollfd pfd;

		/* Until the daemon made the schema there are no jobs, and
		 * nothing to read; once made, it stays. */
		if (!have_events) {
			PQclear(res);
			res = PQexec(rd.conn, "SELECT to_regclass('events') IS NOT NULL");
			if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
				pg_message(PQresultErrorMessage(res), msg, sizeof(msg));
				snprintf(err, CONFIG_ERROR_MAX, "cannot read the PostgreSQL store: %s", msg);
				r = -EIO;
				goto out;
			}
			have_events = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
			if (!have_events && !follow) {
				r = -ENOENT;
				goto out;
			}
		}
		if (have_events) {
			r = read_events(&rd, err);
			if (r < 0)
				goto out;
		}
		if (!follow)
			break;
		fflush(stdout);
		/* Woken by the daemons' commits; every few seconds anyway,
		 * to notice a lost connection (and a transaction that ended
		 * without a commit's notification, whose events a later read
		 * still finds by their xid). */
		pfd = (struct pollfd){.fd = PQsocket(rd.conn), .events = POLLIN};
		if (poll(&pfd, 1, 5000) < 0 && errno != EINTR) {
			r = -errno;
			snprintf(err, CONFIG_ERROR_MAX, "poll: %m");
			goto out;
		}
		if (!PQconsumeInput(rd.conn)) {
			pg_message(PQerrorMessage(rd.conn), msg, sizeof(msg));
			snprintf(err, CONFIG_ERROR_MAX, "lost the PostgreSQL store: %s", msg);
			r = -ECONNRESET;
			goto out;
		}
		while ((n = PQnotifies(rd.conn)))
			PQfreemem(n);
	}
out:
	if (rd.store) {
		job_event_store_release(rd.store);
		free(rd.store);
	}
	free(rd.printed);
	PQclear(res);
	PQfinish(rd.conn);
	return r;
}
