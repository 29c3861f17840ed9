/* SPDX-License-Identifier: MIT */
/*
 * config — the INI file that blinkhookd and blinkhookctl read.
 *
 * One table in config.c lists every key with its parser, its field and its
 * range; the defaults are set in one place (config_init).  Unknown sections
 * and keys, bad values and out-of-range values are errors that name the file,
 * the line and the key.  The module owns the strings in struct config;
 * config_release frees them.  Nothing here logs.
 */
#ifndef BLINKHOOK_CONFIG_H
#define BLINKHOOK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blinkhook/netaddr.h"

/* The build's SYSCONFDIR (make SYSCONFDIR=...), where the default config is. */
#ifndef BLINKHOOK_SYSCONFDIR
#define BLINKHOOK_SYSCONFDIR "/etc"
#endif
#define CONFIG_DEFAULT_PATH BLINKHOOK_SYSCONFDIR "/blinkhook/blinkhookd.conf"
#define CONFIG_ERROR_MAX 512
#define CONFIG_MAX_PROXIES 32

enum interval_scope {
	INTERVAL_SCOPE_GLOBAL,
	INTERVAL_SCOPE_DEVICE,
};

/* Where the jobs are kept ([store] backend). */
enum store_backend {
	STORE_LOG,        /* the local job log in [state] dir (one machine) */
	STORE_POSTGRESQL, /* a PostgreSQL database shared by several nodes */
};

/* A node's name: what the PostgreSQL store writes as a claim's owner. */
#define CONFIG_NODE_MAX 63

/* What a callback that cannot be verified makes the daemon do. */
enum unverified_policy {
	UNVERIFIED_POLL,   /* ask Meraki for the job's status now (rate-limited) */
	UNVERIFIED_IGNORE, /* nothing: the job waits for [callback] wait */
};

struct config {
	char *path; /* the file read, for messages */

	/* [meraki] */
	char *base_url; /* without a trailing '/' */
	char *api_key_file;
	uint64_t min_interval_usec;
	enum interval_scope interval_scope;
	uint64_t request_timeout_usec;
	unsigned max_attempts;
	uint64_t retry_initial_usec;
	uint64_t retry_max_usec;
	char *ca_file;
	char *organization_id; /* whose devices resolve names and MACs; NULL: the one the key sees */

	/* [callback] */
	char *public_url; /* without a trailing '/' */
	struct listen_addr listen;
	char *secret_header;
	char *http_server_id;
	char *payload_template_id;
	char *shared_secret_file;
	struct cidr trusted_proxies[CONFIG_MAX_PROXIES];
	size_t n_trusted_proxies;
	uint64_t max_body;
	uint64_t wait_usec;
	uint64_t expire_usec;
	enum unverified_policy unverified;

	/* [queue] */
	char *queue_dir;

	/* [state] */
	char *state_dir;
	uint64_t retention_usec;

	/* [store] */
	enum store_backend store_backend;
	/* libpq's connection string, or NULL: then the credential
	 * postgresql-conninfo (credentials.h) must hold it. */
	char *store_conninfo;
	char *store_node; /* with postgresql: set, the host name by default */
	uint64_t store_lease_usec;
};

/* Sets every field to its default.  Always succeeds unless out of memory. */
int config_init(struct config *c);
void config_release(struct config *c);

/* Reads path over the defaults already in c.  On failure returns -EINVAL
 * (or -errno when the file cannot be read) and writes "FILE:LINE: key:
 * reason" into err; c then holds a partial result that the caller releases. */
int config_load(struct config *c, const char *path, char err[static CONFIG_ERROR_MAX]);

/* A reload: for each key that needs a restart (the key table says which)
 * and differs, swaps the values, so that loaded keeps the running one (and
 * running, released with loaded's values, the new one), and calls changed. */
void config_keep_restart_keys(struct config *running, struct config *loaded,
			      void (*changed)(const char *section, const char *name, void *ud), void *ud);

#endif
