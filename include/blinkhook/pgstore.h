/* SPDX-License-Identifier: MIT */
/*
 * pgstore — the PostgreSQL store ([store] backend = postgresql): the only
 * module that uses libpq.  The connection lives on the daemon's loop
 * (daemon-internal.h declares that part); what is here needs no loop.
 */
#ifndef BLINKHOOK_PGSTORE_H
#define BLINKHOOK_PGSTORE_H

#include <stdbool.h>
#include <stddef.h>

#include "blinkhook/config.h"
#include "blinkhook/job.h"

/* Checks a libpq connection string (key=value pairs or a postgresql:// URI)
 * without connecting.  from_config: it was read from the config file, where
 * a password must not be (the credential postgresql-conninfo is the place
 * for one).  On failure writes the reason into err (never the string itself,
 * which may hold a password) and returns -EINVAL. */
int pgstore_check_conninfo(const char *conninfo, bool from_config, char err[static CONFIG_ERROR_MAX]);

/* libpq's error about a connection string it cannot parse (msg), one line,
 * into buf, every quoted piece that may hold a password replaced by
 * "(hidden)": libpq quotes pieces of the string, the whole URI even. */
void pgstore_parse_error(const char *msg, char *buf, size_t len);

/* Every occurrence of secret (a password of three characters or more) in
 * msg, a string in a buffer of size bytes, replaced by "(hidden)". */
void pgstore_scrub(char *msg, size_t size, const char *secret);

/* Whether an error's SQLSTATE says the session cannot go on as the store's:
 * class 08 (connection exception), 25 (invalid transaction state: a
 * read-only server after a failover, 25006), 53 (insufficient resources),
 * 57 (operator intervention: 57P01 admin_shutdown, 57P03 cannot_connect_now,
 * ...).  The connection is then made again. */
bool pgstore_sqlstate_lost(const char *sqlstate);

/* The oldest PostgreSQL the store works with (xid8, pg_current_xact_id,
 * pg_snapshot_xmin came with 13), as server_version_num counts. */
#define PGSTORE_MIN_SERVER 130000
/* Whether a server of this server_version_num (libpq's PQserverVersion)
 * will do: 0, or -ENOTSUP with what to tell the operator in err (0, an
 * unknown version, passes: the schema's statements will tell). */
int pgstore_check_server_version(int version, char err[static CONFIG_ERROR_MAX]);

/* Reads every event in the database, oldest first, into cb (blinkhookctl;
 * it blocks); with follow, then each new one as the daemons commit it
 * (LISTEN/NOTIFY), until cb or the connection fails.  Records it cannot
 * parse are skipped.  -ENOENT when the daemon has not made the schema yet
 * (no jobs; not when following); other failures with err set. */
int pgstore_read_events(const char *conninfo, bool follow, int (*cb)(const struct job_event *ev, void *ud), void *ud,
			char err[static CONFIG_ERROR_MAX]);

#endif
