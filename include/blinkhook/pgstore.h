/* SPDX-License-Identifier: MIT */
/*
 * pgstore — the PostgreSQL store ([store] backend = postgresql): the only
 * module that uses libpq.  The connection lives on the daemon's loop
 * (daemon-internal.h declares that part); what is here needs no loop.
 */
#ifndef BLINKHOOK_PGSTORE_H
#define BLINKHOOK_PGSTORE_H

#include <stdbool.h>

#include "blinkhook/config.h"

/* Checks a libpq connection string (key=value pairs or a postgresql:// URI)
 * without connecting.  from_config: it was read from the config file, where
 * a password must not be (the credential postgresql-conninfo is the place
 * for one).  On failure writes the reason into err (never the string itself,
 * which may hold a password) and returns -EINVAL. */
int pgstore_check_conninfo(const char *conninfo, bool from_config, char err[static CONFIG_ERROR_MAX]);

#endif
