/* SPDX-License-Identifier: MIT */
/*
 * pgstore — the PostgreSQL store: see include/blinkhook/pgstore.h, and
 * daemon-internal.h for its part of the daemon.  The only user of libpq.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "blinkhook/pgstore.h"
#include "blinkhook/util.h"

int pgstore_check_conninfo(const char *conninfo, bool from_config, char err[static CONFIG_ERROR_MAX])
{
	PQconninfoOption *opts;
	char *msg = NULL;
	int r = 0;

	opts = PQconninfoParse(conninfo, &msg);
	if (!opts) {
		/* libpq's message quotes at most a key, not a value. */
		if (msg) {
			snprintf(err, CONFIG_ERROR_MAX, "conninfo: %.*s", (int)strcspn(msg, "\n"), msg);
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
