/* SPDX-License-Identifier: MIT */
/*
 * pgschema — the PostgreSQL store's SQL: the schema's migrations and every
 * statement pgstore.c sends, with what each does and takes.  Text only: no
 * libpq here (pgstore.c is its one user).
 */
#include <stdio.h>
#include <stdlib.h>

#include "blinkhook/util.h"
#include "pgschema.h"

/* pg_advisory_xact_lock's key for the migration: an arbitrary constant,
 * never to change (daemons of different versions must take the same lock). */
#define SCHEMA_LOCK "7094995889669714287"
/* A number macro as the SQL text's literal. */
#define PG_STR_(x) #x
#define PG_STR(x) PG_STR_(x)

/* The schema: each migration runs once, in order, in the one transaction
 * that checks the version, under an advisory lock, so that nodes starting
 * at the same moment on an empty database create it once.  A migration is
 * never edited once released: a change is a new one at the end. */
static const char *const migrations[] = {
	/* 1: the jobs (the fields of the job JSON, the claim, the version:
	 * the seq of the last event written into the row, so that an older
	 * state never overwrites a newer one whatever the nodes' clocks say),
	 * their events (the job log's records, each with its transaction id,
	 * so that a reader reads only the events of transactions that were
	 * not finished at its last read: pg_snapshot_xmin), the pacing state,
	 * the callback key. */
	"CREATE TABLE jobs ("
	" id text PRIMARY KEY,"
	" serial text, name text, mac text,"
	" duration integer NOT NULL,"
	" state text NOT NULL,"
	" leds_blink_id text, meraki_status text, status_source text,"
	" attempts integer NOT NULL DEFAULT 0,"
	" error text,"
	" nonce text NOT NULL,"
	" created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,"
	" owner text, lease_until timestamptz,"
	" version bigint NOT NULL DEFAULT 0);"
	"CREATE INDEX jobs_leds_blink_id ON jobs (leds_blink_id) WHERE leds_blink_id IS NOT NULL;"
	"CREATE TABLE events ("
	" seq bigserial PRIMARY KEY,"
	" job_id text NOT NULL,"
	" at timestamptz NOT NULL DEFAULT now(),"
	" node text NOT NULL,"
	" record jsonb NOT NULL,"
	" xid xid8 NOT NULL DEFAULT pg_current_xact_id());"
	"CREATE INDEX events_job ON events (job_id, seq);"
	"CREATE INDEX events_xid ON events (xid);"
	"CREATE TABLE pacing ("
	" scope text PRIMARY KEY,"
	" next_allowed timestamptz NOT NULL);"
	"CREATE TABLE keys ("
	" name text PRIMARY KEY,"
	" key bytea NOT NULL,"
	" created_at timestamptz NOT NULL DEFAULT now());",
};
const int pgsql_schema_version = (int)ELEMENTSOF(migrations);

/* The callback key: this node's candidate goes in unless one is there; the
 * one that is comes back (a CTE's insert is not seen by the statement's own
 * snapshot, hence the union; when another node's insert committed while
 * this one waited for it, neither part has a row, and the query goes
 * again).  $1 the candidate, hex. */
const char pgsql_key[] = "WITH ins AS (INSERT INTO keys (name, key) VALUES ('callback', decode($1, 'hex'))"
			 " ON CONFLICT (name) DO NOTHING RETURNING key)"
			 " SELECT encode(key, 'hex') FROM ins"
			 " UNION ALL SELECT encode(key, 'hex') FROM keys WHERE name = 'callback'";

/* One transaction, one statement: the records into events, and each job
 * they changed into jobs as the table has it now (inserted, or updated
 * unless the row is newer); listeners hear of it at the commit.  A job
 * inserted is this node's claim (it took it from its spool).  A job queued
 * in this batch whose id another job holds already (the same explicit id
 * put into two nodes' spools at once; the other's insert may have
 * committed while this one waited for it) is left out, its records too,
 * and its id comes back: the row and its nonce, which the other job's
 * callback secret binds, are never overwritten (a job's nonce is never
 * updated; a batch sent again after a lost connection finds its own
 * nonce, and goes on as an update).  $1 the node, $2 the records, $3 the
 * jobs, $4 the lease. */
const char pgsql_commit[] =
	"WITH r AS (SELECT e.r, e.n FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS e (r, n)),"
	" j AS (SELECT DISTINCT ON (x->'job'->>'id') x->'job' AS j, x->'job'->>'id' AS id, x->>'nonce' AS nonce"
	" FROM jsonb_array_elements($3::jsonb) AS x),"
	" q AS (SELECT id FROM j WHERE id IN (SELECT r->>'id' FROM r WHERE r->>'event' = 'queued')),"
	" fresh AS (INSERT INTO jobs (id, serial, name, mac, duration, state, leds_blink_id, meraki_status, status_source,"
	" attempts, error, nonce, created_at, updated_at, owner, lease_until)"
	" SELECT id, j->>'serial', j->>'name', j->>'mac', (j->>'duration')::integer, j->>'state', j->>'leds_blink_id',"
	" j->>'meraki_status', j->>'status_source', (j->>'attempts')::integer, j->>'error', nonce,"
	" (j->>'created_at')::timestamptz, (j->>'updated_at')::timestamptz, $1, now() + $4::interval"
	" FROM j WHERE id IN (SELECT id FROM q) ON CONFLICT (id) DO NOTHING RETURNING id),"
	" taken AS (SELECT id FROM j WHERE id IN (SELECT id FROM q) AND id NOT IN (SELECT id FROM fresh)"
	" AND NOT EXISTS (SELECT 1 FROM jobs x WHERE x.id = j.id AND x.nonce = j.nonce)),"
	" ev AS (INSERT INTO events (job_id, node, record)"
	" SELECT r->>'id', $1, r FROM r WHERE r->>'id' IN (SELECT id FROM j) AND r->>'id' NOT IN (SELECT id FROM taken)"
	" ORDER BY n RETURNING job_id, seq),"
	" v AS (SELECT job_id, max(seq) AS version FROM ev GROUP BY job_id),"
	" jb AS (INSERT INTO jobs (id, serial, name, mac, duration, state, leds_blink_id, meraki_status, status_source,"
	" attempts, error, nonce, created_at, updated_at, owner, lease_until, version)"
	" SELECT id, j->>'serial', j->>'name', j->>'mac', (j->>'duration')::integer, j->>'state', j->>'leds_blink_id',"
	" j->>'meraki_status', j->>'status_source', (j->>'attempts')::integer, j->>'error', nonce,"
	" (j->>'created_at')::timestamptz, (j->>'updated_at')::timestamptz, $1, now() + $4::interval,"
	" coalesce(v.version, 0) FROM j LEFT JOIN v ON v.job_id = j.id"
	" WHERE id NOT IN (SELECT id FROM fresh) AND id NOT IN (SELECT id FROM taken)"
	" ON CONFLICT (id) DO UPDATE SET serial = excluded.serial, name = excluded.name, mac = excluded.mac,"
	" duration = excluded.duration,"
	" state = excluded.state, leds_blink_id = excluded.leds_blink_id, meraki_status = excluded.meraki_status,"
	" status_source = excluded.status_source, attempts = excluded.attempts, error = excluded.error,"
	" created_at = excluded.created_at, updated_at = excluded.updated_at, version = excluded.version"
	" WHERE jobs.nonce = excluded.nonce AND jobs.version < excluded.version"
	" AND jobs.state NOT IN ('complete', 'failed', 'expired'))"
	" SELECT pg_notify('" PG_CHANNEL "', ''), (SELECT coalesce(string_agg(id, chr(10)), '') FROM taken)";

/* The tick, one statement: the unfinished jobs this node works (or has
 * claimed and not yet taken), by the list of their ids in memory, renewed
 * when still its own (the ids back, claimed false): never "every job whose
 * owner is this node", which would keep renewing a claim nobody works.
 * Then those nobody holds (no owner, or a lease run out), and those the
 * table says are this node's though it does not work them (a claim whose
 * answer was lost with the connection), claimed (claimed true).  $1 the
 * node, $2 the lease, $3 the ids (a text array). */
const char pgsql_tick[] =
	"WITH mine AS (UPDATE jobs SET lease_until = now() + $2::interval"
	" WHERE owner = $1 AND id = ANY($3::text[]) AND state IN ('queued', 'submitted') RETURNING id),"
	" took AS (UPDATE jobs SET owner = $1, lease_until = now() + $2::interval WHERE id IN ("
	" SELECT id FROM jobs WHERE state IN ('queued', 'submitted') AND NOT id = ANY($3::text[])"
	" AND (owner IS NULL OR owner = $1 OR lease_until IS NULL OR lease_until < now())"
	" ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT " CLAIM_MAX ") RETURNING id)"
	" SELECT id, false FROM mine UNION ALL SELECT id, true FROM took";

/* The events another node's commit may have brought, and every event of
 * the jobs $2 (a text array), with the node that wrote each, and the
 * snapshot's xmin (the oldest transaction still running: every one before
 * it has ended), also when no event comes (hence the outer join).
 *
 * Which events: those of the transactions that had not ended at the last
 * read, that is whose xid is at least that read's xmin ($1): a transaction
 * that took its seq before another's and committed after it is among them
 * (it was running then, or began after), and nothing else is read again.
 * Without such an xmin, those after SYNC_OVERLAP below the highest seq
 * seen ($1 of pgsql_sync_seq): after a load that noted none (an empty
 * database), and at the first read of every later connection (a promoted
 * standby may give out again the xids of transactions it never received).
 * That first read, when an earlier connection noted an xmin, takes both
 * (pgsql_sync_either, $4 the seq): the transactions running at the last
 * read before the loss may have committed since with seqs far below the
 * highest seen (only their xids find them), and a promoted standby's
 * reused lower xids are found by the seq; reading more is harmless (an
 * event already applied is left out).
 * The cost is the events since the oldest transaction
 * running at the last read: small, unless a long transaction elsewhere in
 * the cluster holds the xmin back.
 *
 * A page at a time (LOAD_PAGE events after the seq $3, in seq order): a
 * read after a long cut-off is many short queries, none near the query
 * deadline; the caller keeps the first page's xmin (the oldest snapshot). */
#define SYNC_PAGE_SQL PG_STR(LOAD_PAGE)
const char pgsql_sync_xid[] =
	"SELECT e.record::text, e.job_id, e.seq, e.node, x.xmin FROM"
	" (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin) x LEFT JOIN"
	" (SELECT record, job_id, seq, node FROM events WHERE xid >= $1::xid8 AND seq > $3::bigint"
	" UNION ALL SELECT record, job_id, seq, node FROM events WHERE job_id = ANY($2::text[]) AND xid < $1::xid8"
	" AND seq > $3::bigint ORDER BY seq LIMIT " SYNC_PAGE_SQL ") e"
	" ON true ORDER BY e.seq";
const char pgsql_sync_seq[] =
	"SELECT e.record::text, e.job_id, e.seq, e.node, x.xmin FROM"
	" (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin) x LEFT JOIN"
	" (SELECT record, job_id, seq, node FROM events WHERE seq > greatest($1::bigint, $3::bigint)"
	" UNION ALL SELECT record, job_id, seq, node FROM events WHERE job_id = ANY($2::text[]) AND seq <= $1::bigint"
	" AND seq > $3::bigint ORDER BY seq LIMIT " SYNC_PAGE_SQL ") e"
	" ON true ORDER BY e.seq";
const char pgsql_sync_either[] =
	"SELECT e.record::text, e.job_id, e.seq, e.node, x.xmin FROM"
	" (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin) x LEFT JOIN"
	" (SELECT record, job_id, seq, node FROM events WHERE (xid >= $1::xid8 OR seq > $4::bigint)"
	" AND seq > $3::bigint"
	" UNION ALL SELECT record, job_id, seq, node FROM events WHERE job_id = ANY($2::text[])"
	" AND xid < $1::xid8 AND seq <= $4::bigint AND seq > $3::bigint ORDER BY seq LIMIT " SYNC_PAGE_SQL ") e"
	" ON true ORDER BY e.seq";

#define LOAD_PAGE_SQL PG_STR(LOAD_PAGE)
/* The events of the jobs still needed, one page after the seq $2, and
 * whether each event's job is another node's claim, and the snapshot's
 * xmin (the first page's starts the reads of the other nodes' events):
 * every event of a job
 * that is not final, or final within the retention $3 (those past it are
 * the retention pass's to delete; the log store drops them at its
 * compaction).  $1 the node. */
const char pgsql_load[] = "SELECT e.record::text, e.job_id, e.seq, j.owner IS DISTINCT FROM $1,"
			  " pg_snapshot_xmin(pg_current_snapshot())::text"
			  " FROM events e LEFT JOIN jobs j ON j.id = e.job_id WHERE e.seq > $2::bigint"
			  " AND (j.id IS NULL OR j.state NOT IN ('complete', 'failed', 'expired')"
			  " OR j.updated_at >= now() - $3::interval)"
			  " ORDER BY e.seq LIMIT " LOAD_PAGE_SQL;

/* blinkhookctl's read: one page of events after the seq $1 (keyset on
 * seq, so that no result holds the whole history), of the transactions
 * whose xid is at least $2 ('0': all), with each event's xid and the
 * snapshot's xmin (also when no event comes, hence the outer join): a
 * transaction that took its seq before another's and committed after it
 * was running at that read, or began after it, so its xid is at least the
 * xmin; the next read of a follower asks for those. */
const char pgsql_read[] = "SELECT e.record::text, e.seq, e.xid::text, x.xmin FROM"
			  " (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin) x LEFT JOIN"
			  " (SELECT record, seq, xid FROM events WHERE seq > $1::bigint AND xid >= $2::xid8"
			  " ORDER BY seq LIMIT " LOAD_PAGE_SQL ") e ON true ORDER BY e.seq";

/* Retention: final jobs past [state] retention (their updated_at is when
 * they turned final, as the log store counts it) and their events go, at
 * most RETAIN_BATCH jobs a statement so that no transaction holds many rows
 * locked for long; a job another node's pass has locked is skipped (SKIP
 * LOCKED), not waited for.  The number deleted comes back.  $1 the
 * retention. */
#define RETAIN_BATCH_SQL PG_STR(RETAIN_BATCH)
const char pgsql_retain[] = "WITH old AS (SELECT id FROM jobs WHERE state IN ('complete', 'failed', 'expired')"
			    " AND updated_at < now() - $1::interval LIMIT " RETAIN_BATCH_SQL " FOR UPDATE SKIP LOCKED),"
			    " ev AS (DELETE FROM events WHERE job_id IN (SELECT id FROM old)),"
			    " jb AS (DELETE FROM jobs WHERE id IN (SELECT id FROM old) RETURNING 1)"
			    " SELECT count(*) FROM jb";

/* The next slot of a pacing scope, for one job, fenced by its lease: only
 * while the job is still queued, this node's, and its lease has not run out (a node
 * stopped or cut off past its lease must not submit what another node took
 * meanwhile) is the lease renewed to cover the submission and the scope's
 * row moved on by $2 from the later of its time and now.  The answer: the
 * wait until the slot comes, and how long the lease holds from now, both
 * in microseconds; no row when the job is not this node's any more.
 * $1 the scope, $2 the slot's length, $3 the job, $4 the node, $5 the
 * lease. */
const char pgsql_reserve[] =
	"WITH own AS (UPDATE jobs SET lease_until = greatest(lease_until, now() + $5::interval)"
	" WHERE id = $3 AND owner = $4 AND lease_until > now() AND state = 'queued' RETURNING lease_until),"
	" slot AS (INSERT INTO pacing (scope, next_allowed) SELECT $1, now() + $2::interval FROM own"
	" ON CONFLICT (scope) DO UPDATE SET next_allowed = greatest(pacing.next_allowed, now()) + $2::interval"
	" RETURNING next_allowed)"
	" SELECT greatest(0, (extract(epoch FROM (slot.next_allowed - $2::interval - now())) * 1000000)::bigint),"
	" (extract(epoch FROM (own.lease_until - now())) * 1000000)::bigint FROM slot, own";

/* The schema transaction's text: the lock, the version table, each
 * migration in a DO block that runs it only past the version found, and
 * the version at the end; malloc()ed, NULL when out of memory. */
char *pgsql_schema(void)
{
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);

	if (!f)
		return NULL;
	fputs("BEGIN;"
	      "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK ");"
	      "CREATE TABLE IF NOT EXISTS schema_version ("
	      " version integer PRIMARY KEY,"
	      " applied_at timestamptz NOT NULL DEFAULT now());",
	      f);
	for (int i = 0; i < PGSQL_SCHEMA_VERSION; i++)
		fprintf(f,
			"DO $blinkhook$ BEGIN "
			"IF (SELECT coalesce(max(version), 0) FROM schema_version) < %d THEN "
			"%s "
			"INSERT INTO schema_version (version) VALUES (%d); "
			"END IF; END $blinkhook$;",
			i + 1, migrations[i], i + 1);
	fputs("SELECT coalesce(max(version), 0) FROM schema_version;"
	      "COMMIT;",
	      f);
	if (fclose(f) != 0 || !s) {
		free(s);
		return NULL;
	}
	return s;
}
