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

#define CONFIG_DEFAULT_PATH "/etc/blinkhook/blinkhookd.conf"
#define CONFIG_ERROR_MAX 512
#define CONFIG_MAX_PROXIES 32

enum interval_scope {
	INTERVAL_SCOPE_GLOBAL,
	INTERVAL_SCOPE_DEVICE,
};

/* What a callback that cannot be verified makes the daemon do. */
enum unverified_policy {
	UNVERIFIED_POLL,   /* ask Meraki for the job's status now (rate-limited) */
	UNVERIFIED_IGNORE, /* nothing: the job waits for [callback] wait */
};

/* An address prefix from trusted_proxies: "127.0.0.1", "10.0.0.0/8", "::1",
 * "fd00::/8". addr is in network byte order, 4 or 16 bytes used.  "unix"
 * (family AF_UNIX, nothing else set) stands for the peers of a unix listen
 * socket, which no address prefix matches. */
struct cidr {
	int family; /* AF_INET, AF_INET6, or AF_UNIX for "unix" */
	uint8_t addr[16];
	unsigned prefix;
};

/* Where the callback endpoint listens when not socket-activated. */
struct listen_addr {
	bool is_unix;
	char *host; /* "127.0.0.1", "::1", "localhost"; NULL for unix */
	uint16_t port;
	char *path; /* for unix:/path */
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
};

/* Sets every field to its default.  Always succeeds unless out of memory. */
int config_init(struct config *c);
void config_release(struct config *c);

/* Reads path over the defaults already in c.  On failure returns -EINVAL
 * (or -errno when the file cannot be read) and writes "FILE:LINE: key:
 * reason" into err; c then holds a partial result that the caller releases. */
int config_load(struct config *c, const char *path, char err[static CONFIG_ERROR_MAX]);

/* Parses a listen value ("127.0.0.1:8787", "[::1]:8787", "unix:/run/x.sock"). */
int config_parse_listen(const char *s, struct listen_addr *ret);
/* Parses one trusted_proxies entry. */
int config_parse_cidr(const char *s, struct cidr *ret);
/* Whether addr (4 or 16 bytes in network order, of family) lies in c.  An
 * IPv4-mapped IPv6 address matches IPv4 prefixes. */
bool cidr_match(const struct cidr *c, int family, const void *addr);

/* Finds the API key, first found wins: the credential "meraki-api-key" in
 * $CREDENTIALS_DIRECTORY, $MERAKI_DASHBOARD_API_KEY, then api_key_file (which
 * must not be readable by group or others).  *ret_source names where it came
 * from ("credential", "environment", "file"), a static string.  On failure
 * writes the reason into err.  $MERAKI_DASHBOARD_API_KEY is wiped (its bytes
 * in the environment block overwritten, then unset) whenever it is set,
 * whichever source wins.  The key is in secret_alloc()'s memory: release it
 * with secret_free(); so is config_load_callback_secret()'s secret. */
int config_load_api_key(const struct config *c, char **ret_key, const char **ret_source,
			char err[static CONFIG_ERROR_MAX]);

/* Reads the callback secret for http_server_id mode: the credential
 * "callback-secret", then shared_secret_file.  -ENOENT when neither is set. */
int config_load_callback_secret(const struct config *c, char **ret_secret,
				char err[static CONFIG_ERROR_MAX]);

/* "…abcd": the last 4 characters of a key behind an ellipsis, for display. */
void api_key_mask(const char *key, char buf[static 16]);

/* A reload: for each key that needs a restart (the key table says which)
 * and differs, swaps the values, so that loaded keeps the running one (and
 * running, released with loaded's values, the new one), and calls changed. */
void config_keep_restart_keys(struct config *running, struct config *loaded,
			      void (*changed)(const char *section, const char *name, void *ud), void *ud);

#endif
