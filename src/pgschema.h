/* SPDX-License-Identifier: MIT */
/* The PostgreSQL store's SQL: the schema's migrations and the statements
 * pgstore.c sends (src/pgschema.c, which does not include libpq); not part
 * of the public API.  Each statement's comment, in pgschema.c, says what
 * its parameters are. */
#ifndef BLINKHOOK_PGSCHEMA_H
#define BLINKHOOK_PGSCHEMA_H

/* The schema version this daemon makes and knows. */
extern const int pgsql_schema_version;
#define PGSQL_SCHEMA_VERSION pgsql_schema_version

/* What a commit notifies at its end: blinkhookctl log --follow listens. */
#define PG_CHANNEL "blinkhook_events"
/* The events read again below the highest seen, before the first read that
 * knows the xmin: a transaction that took its seq before another's may
 * commit after it. */
#define SYNC_OVERLAP 1000
/* Claims taken at one tick, at most. */
#define CLAIM_MAX "100"
/* The rows of one page of the first load: no single result holds the
 * whole history (keyset pagination on seq, so a page costs the same at the
 * end of the table as at its start). */
#define LOAD_PAGE 5000
/* Final jobs deleted by one statement of the retention pass, at most. */
#define RETAIN_BATCH 1000

extern const char pgsql_key[], pgsql_commit[], pgsql_tick[], pgsql_sync_xid[], pgsql_sync_seq[], pgsql_load[],
	pgsql_sync_either[], pgsql_retain[], pgsql_reserve[], pgsql_read[];

/* The schema transaction's text (the migrations this daemon knows, each
 * run once); malloc()ed, NULL when out of memory. */
char *pgsql_schema(void);

#endif
