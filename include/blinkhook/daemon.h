/* SPDX-License-Identifier: MIT */
/*
 * daemon — blinkhookd's event loop and its rooms (src/lifecycle.c, ledger.c,
 * intake.c, dispatch.c, endpoint.c; src/daemon-internal.h says who owns
 * what).  Only the rooms include libsystemd: sd-event drives
 * libmicrohttpd, the curl multi handle, the spool's inotify watch and every
 * timer; sd-daemon gives the listening socket and takes the notify messages.
 *
 * Everything runs on one thread, so no job state needs a lock.  Read
 * lifecycle.c from daemon_run() up.
 */
#ifndef BLINKHOOK_DAEMON_H
#define BLINKHOOK_DAEMON_H

#include "blinkhook/config.h"

#include "blinkhook/version.h"

/* Runs until SIGTERM or SIGINT; takes over the config (and frees it).  The
 * API key is already checked by the caller and passed in (secret_alloc()'s
 * memory, from credentials_load_api_key(), with its source).  Returns 0 on a
 * clean stop, a negative errno after logging why it could not run. */
int daemon_run(struct config *cfg, char *api_key, const char *api_key_source);

#endif
