/* SPDX-License-Identifier: MIT */
/*
 * credentials — reading the secrets: the Meraki API key and the callback
 * secret, from systemd's credentials ($CREDENTIALS_DIRECTORY), the
 * environment or the files the config names.
 *
 * The only module that opens secret material: each value is read into
 * secret_alloc()'s memory, every intermediate copy is wiped, and the
 * messages it writes name where a secret came from, never the secret.
 * Nothing here logs.
 */
#ifndef BLINKHOOK_CREDENTIALS_H
#define BLINKHOOK_CREDENTIALS_H

#include "blinkhook/config.h"

/* Finds the API key, first found wins: the credential "meraki-api-key" in
 * $CREDENTIALS_DIRECTORY, $MERAKI_DASHBOARD_API_KEY, then api_key_file (which
 * must not be readable by group or others).  *ret_source names where it came
 * from ("credential", "environment", "file"), a static string.  On failure
 * writes the reason into err.  $MERAKI_DASHBOARD_API_KEY is wiped (its bytes
 * in the environment block overwritten, then unset) whenever it is set,
 * whichever source wins.  The key is in secret_alloc()'s memory: release it
 * with secret_free(); so is credentials_load_callback_secret()'s secret. */
int credentials_load_api_key(const struct config *c, char **ret_key, const char **ret_source,
			     char err[static CONFIG_ERROR_MAX]);

/* Reads the callback secret for http_server_id mode: the credential
 * "callback-secret", then shared_secret_file.  -ENOENT when neither is set. */
int credentials_load_callback_secret(const struct config *c, char **ret_secret, char err[static CONFIG_ERROR_MAX]);

/* The PostgreSQL store's connection string: the credential
 * "postgresql-conninfo" (so that a password need not be in the config),
 * else [store] conninfo.  *ret_source is "credential" or "config".  -ENOENT,
 * with err set, when neither is set.  Release it with secret_free(). */
int credentials_load_pg_conninfo(const struct config *c, char **ret_conninfo, const char **ret_source,
				 char err[static CONFIG_ERROR_MAX]);

/* "…abcd": the last 4 characters of a key behind an ellipsis, for display. */
void api_key_mask(const char *key, char buf[static 16]);

#endif
