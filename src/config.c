/* SPDX-License-Identifier: MIT */
/*
 * config — see include/blinkhook/config.h for the contract.
 *
 * inih splits the file into sections and key = value pairs; this file feeds
 * it the lines itself (to know each key's line number, which the installed
 * inih does not pass to the handler) and checks every value against the one
 * table below.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "blinkhook/config.h"
#include "blinkhook/netaddr.h"
#include "blinkhook/util.h"

/* A config file is a few dozen lines; anything this large is a mistake. */
#define CONFIG_FILE_MAX ((size_t)1024 * 1024)

#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

#define KIB UINT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

enum kind {
	KIND_STRING,     /* any text without control characters */
	KIND_TOKEN,      /* an HTTP header name */
	KIND_ID,         /* an API id that goes into URL paths: 1 to 64 of A-Z a-z 0-9 _ - */
	KIND_URL,        /* absolute http(s) URL, stored without a trailing '/' */
	KIND_API_URL,    /* the same, https:// unless the host is loopback */
	KIND_PATH,       /* absolute path */
	KIND_TIMESPAN,   /* uint64_t microseconds in [min, max] */
	KIND_SIZE,       /* uint64_t bytes in [min, max] */
	KIND_UINT,       /* unsigned in [min, max] */
	KIND_SCOPE,      /* enum interval_scope */
	KIND_UNVERIFIED, /* enum unverified_policy */
	KIND_LISTEN,     /* struct listen_addr */
	KIND_CIDRS,      /* trusted_proxies and n_trusted_proxies */
	KIND_BACKEND,    /* enum store_backend */
	KIND_NAME,       /* [A-Za-z0-9._-], 1..max characters */
};

struct key {
	const char *section;
	const char *name;
	size_t offset;
	uint64_t min, max;
	enum kind kind;
	/* For strings: an empty value is an error rather than "unset". */
	bool required;
	/* A reload keeps the running value: it takes effect at a restart. */
	bool restart;
};

#define KEY(sec, nm, kd, field, lo, hi, req)                                    \
	{                                                                       \
		sec, nm, offsetof(struct config, field), lo, hi, kd, req, false \
	}
#define KEY_RESTART(sec, nm, kd, field, lo, hi, req)                           \
	{                                                                      \
		sec, nm, offsetof(struct config, field), lo, hi, kd, req, true \
	}

static const struct key keys[] = {
	KEY("meraki", "base_url", KIND_API_URL, base_url, 0, 0, true),
	KEY("meraki", "api_key_file", KIND_PATH, api_key_file, 0, 0, false),
	KEY("meraki", "min_interval", KIND_TIMESPAN, min_interval_usec, 0, USEC_PER_HOUR, false),
	KEY("meraki", "interval_scope", KIND_SCOPE, interval_scope, 0, 0, false),
	KEY("meraki", "request_timeout", KIND_TIMESPAN, request_timeout_usec, USEC_PER_SEC, 10 * USEC_PER_MIN, false),
	KEY("meraki", "max_attempts", KIND_UINT, max_attempts, 1, 100, false),
	KEY("meraki", "retry_initial", KIND_TIMESPAN, retry_initial_usec, 10 * USEC_PER_MSEC, USEC_PER_HOUR, false),
	KEY("meraki", "retry_max", KIND_TIMESPAN, retry_max_usec, 10 * USEC_PER_MSEC, USEC_PER_DAY, false),
	KEY("meraki", "ca_file", KIND_PATH, ca_file, 0, 0, false),
	KEY("meraki", "organization_id", KIND_ID, organization_id, 0, 0, false),

	/* public_url is required unless http_server_id is set: checked once
	 * the whole file is read. */
	KEY("callback", "public_url", KIND_URL, public_url, 0, 0, false),
	KEY_RESTART("callback", "listen", KIND_LISTEN, listen, 0, 0, false),
	KEY("callback", "secret_header", KIND_TOKEN, secret_header, 0, 0, false),
	KEY("callback", "http_server_id", KIND_STRING, http_server_id, 0, 0, false),
	KEY("callback", "payload_template_id", KIND_STRING, payload_template_id, 0, 0, false),
	KEY("callback", "shared_secret_file", KIND_PATH, shared_secret_file, 0, 0, false),
	KEY("callback", "trusted_proxies", KIND_CIDRS, trusted_proxies, 0, 0, false),
	KEY("callback", "max_body", KIND_SIZE, max_body, KIB, 16 * MIB, false),
	KEY("callback", "wait", KIND_TIMESPAN, wait_usec, 0, USEC_PER_DAY, false),
	KEY("callback", "expire", KIND_TIMESPAN, expire_usec, USEC_PER_SEC, 30 * USEC_PER_DAY, false),
	KEY("callback", "unverified", KIND_UNVERIFIED, unverified, 0, 0, false),

	KEY_RESTART("queue", "dir", KIND_PATH, queue_dir, 0, 0, true),

	KEY_RESTART("state", "dir", KIND_PATH, state_dir, 0, 0, true),
	KEY("state", "retention", KIND_TIMESPAN, retention_usec, USEC_PER_HOUR, 3650 * USEC_PER_DAY, false),

	/* The store is opened once: a change of database or name waits for a
	 * restart.  The lease below 1s would expire between two renewals on a
	 * loaded host; above an hour a dead node's jobs would wait too long. */
	KEY_RESTART("store", "backend", KIND_BACKEND, store_backend, 0, 0, false),
	KEY_RESTART("store", "conninfo", KIND_STRING, store_conninfo, 0, 0, false),
	KEY_RESTART("store", "node", KIND_NAME, store_node, 1, CONFIG_NODE_MAX, false),
	KEY("store", "lease", KIND_TIMESPAN, store_lease_usec, USEC_PER_SEC, USEC_PER_HOUR, false),
};

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

void config_keep_restart_keys(struct config *running, struct config *loaded,
			      void (*changed)(const char *section, const char *name, void *ud), void *ud)
{
	for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
		const struct key *k = &keys[i];
		void *a = (char *)running + k->offset, *b = (char *)loaded + k->offset;
		bool same;

		if (!k->restart)
			continue;
		/* Only these kinds need a restart; a new one needs a case. */
		assert(k->kind == KIND_PATH || k->kind == KIND_LISTEN || k->kind == KIND_STRING ||
		       k->kind == KIND_NAME || k->kind == KIND_BACKEND);
		if (k->kind == KIND_BACKEND) {
			enum store_backend *ea = a, *eb = b, t = *ea;

			same = *ea == *eb;
			*ea = *eb;
			*eb = t;
		} else if (k->kind == KIND_LISTEN) {
			const struct listen_addr *la = a, *lb = b;
			same = la->is_unix == lb->is_unix && str_eq(la->host, lb->host) && la->port == lb->port &&
			       str_eq(la->path, lb->path);
			if (!same) {
				struct listen_addr t = *la;
				*(struct listen_addr *)a = *lb;
				*(struct listen_addr *)b = t;
			}
		} else {
			char **sa = a, **sb = b;
			same = str_eq(*sa, *sb);
			if (!same) {
				char *t = *sa;
				*sa = *sb;
				*sb = t;
			}
		}
		if (!same)
			changed(k->section, k->name, ud);
	}
}

static const struct key *key_find(const char *section, const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(keys); i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static bool section_known(const char *section, size_t len)
{
	for (size_t i = 0; i < ELEMENTSOF(keys); i++)
		if (strlen(keys[i].section) == len && memcmp(keys[i].section, section, len) == 0)
			return true;
	return false;
}

static void *field_of(struct config *c, const struct key *k)
{
	return (uint8_t *)c + k->offset;
}

int config_init(struct config *c)
{
	static const char *const proxies[] = {"127.0.0.1", "::1"};

	*c = (struct config){
		.min_interval_usec = 10 * USEC_PER_SEC,
		.interval_scope = INTERVAL_SCOPE_GLOBAL,
		.request_timeout_usec = 30 * USEC_PER_SEC,
		.max_attempts = 8,
		.retry_initial_usec = USEC_PER_SEC,
		.retry_max_usec = 5 * USEC_PER_MIN,
		.listen = {.is_unix = false, .port = 8787},
		.max_body = 64 * KIB,
		.wait_usec = 5 * USEC_PER_MIN,
		.expire_usec = USEC_PER_HOUR,
		.retention_usec = 30 * USEC_PER_DAY,
		.store_backend = STORE_LOG,
		.store_lease_usec = 30 * USEC_PER_SEC,
	};
	for (size_t i = 0; i < ELEMENTSOF(proxies); i++)
		if (netaddr_parse_cidr(proxies[i], &c->trusted_proxies[c->n_trusted_proxies++]) < 0)
			return -EINVAL;

	c->base_url = strdup("https://api.meraki.com/api/v1");
	c->listen.host = strdup("127.0.0.1");
	c->queue_dir = strdup("/var/spool/blinkhook");
	c->state_dir = strdup("/var/lib/blinkhook");
	if (!c->base_url || !c->listen.host || !c->queue_dir || !c->state_dir) {
		config_release(c);
		return -ENOMEM;
	}
	return 0;
}

void config_release(struct config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->base_url);
	free(c->api_key_file);
	free(c->ca_file);
	free(c->organization_id);
	free(c->public_url);
	free(c->listen.host);
	free(c->listen.path);
	free(c->secret_header);
	free(c->http_server_id);
	free(c->payload_template_id);
	free(c->shared_secret_file);
	free(c->queue_dir);
	free(c->state_dir);
	free(c->store_node);
	if (c->store_conninfo) /* it may hold a password */
		secret_wipe(c->store_conninfo, strlen(c->store_conninfo));
	free(c->store_conninfo);
	/* Harmless to release twice, or to init again. */
	*c = (struct config){0};
}

/* Parser state: the input not yet handed to inih, and the first error. */
struct parse {
	struct config *c;
	const char *path;
	const char *p, *end;
	unsigned line;
	unsigned section_line;
	/* Where each key was last set, for the checks made after the file. */
	unsigned key_line[ELEMENTSOF(keys)];
	bool failed;
	unsigned err_line;
	int error;
	char *err;
};

_printf_(4, 0) static void vset_error(struct parse *ps, int error, unsigned line, const char *fmt, va_list ap)
{
	int n;

	if (line > 0)
		n = snprintf(ps->err, CONFIG_ERROR_MAX, "%s:%u: ", ps->path, line);
	else
		n = snprintf(ps->err, CONFIG_ERROR_MAX, "%s: ", ps->path);
	if (n >= 0 && n < CONFIG_ERROR_MAX)
		vsnprintf(ps->err + n, CONFIG_ERROR_MAX - (size_t)n, fmt, ap);
	ps->failed = true;
	ps->err_line = line;
	ps->error = error;
}

/* Keeps only the first error: the rest often follow from it. */
_printf_(4, 5) static void fail(struct parse *ps, int error, unsigned line, const char *fmt, ...)
{
	va_list ap;

	if (ps->failed)
		return;
	va_start(ap, fmt);
	vset_error(ps, error, line, fmt, ap);
	va_end(ap);
}

/* Replaces an error found later in the file by one on an earlier line. */
_printf_(4, 5) static void fail_earlier(struct parse *ps, int error, unsigned line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset_error(ps, error, line, fmt, ap);
	va_end(ap);
}

static bool is_tchar(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!is_tchar(*s))
			return false;
	return true;
}

static void rstrip(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
}

/* inih strips inline comments that start with " ;" only; INTERFACE.md also
 * shows "key = value   # comment", so a '#' at the start of the value or
 * after a blank starts a comment too. */
static void strip_hash_comment(char *v)
{
	for (char *s = v; *s; s++)
		if (*s == '#' && (s == v || s[-1] == ' ' || s[-1] == '\t')) {
			*s = '\0';
			break;
		}
	rstrip(v);
}

/* Checks an absolute http(s) URL and returns a copy without trailing '/'
 * and with the scheme in lower case, or NULL with *ret_reason set. */
static char *url_normalize(const char *v, const char **ret_reason)
{
	const char *host, *host_end, *auth_end;
	size_t scheme_len, n;
	char *out;

	if (strncasecmp(v, "https://", 8) == 0)
		scheme_len = 8;
	else if (strncasecmp(v, "http://", 7) == 0)
		scheme_len = 7;
	else {
		*ret_reason = "is not an http:// or https:// URL";
		return NULL;
	}
	for (const char *s = v; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) {
			*ret_reason = "contains a blank, control or non-ASCII character";
			return NULL;
		}
	if (strpbrk(v, "?#")) {
		*ret_reason = "must not have a query or fragment";
		return NULL;
	}

	host = v + scheme_len;
	auth_end = host + strcspn(host, "/");
	if (memchr(host, '@', (size_t)(auth_end - host))) {
		*ret_reason = "must not contain user information";
		return NULL;
	}
	if (*host == '[') {
		struct in6_addr a6;
		char buf[INET6_ADDRSTRLEN];

		host_end = memchr(host, ']', (size_t)(auth_end - host));
		if (!host_end || (size_t)(host_end - host - 1) >= sizeof(buf)) {
			*ret_reason = "has a bad IPv6 host";
			return NULL;
		}
		memcpy(buf, host + 1, (size_t)(host_end - host - 1));
		buf[host_end - host - 1] = '\0';
		if (inet_pton(AF_INET6, buf, &a6) != 1) {
			*ret_reason = "has a bad IPv6 host";
			return NULL;
		}
		host_end++;
	} else
		host_end = host + strcspn(host, ":/");
	if (host_end == host) {
		*ret_reason = "has no host";
		return NULL;
	}
	if (host_end < auth_end) {
		uint64_t port;
		char buf[8];
		size_t len = (size_t)(auth_end - host_end - 1);

		if (*host_end != ':' || len == 0 || len >= sizeof(buf)) {
			*ret_reason = "has a bad port";
			return NULL;
		}
		memcpy(buf, host_end + 1, len);
		buf[len] = '\0';
		if (parse_uint64(buf, &port) < 0 || port < 1 || port > 65535) {
			*ret_reason = "has a bad port";
			return NULL;
		}
	}

	n = strlen(v);
	while (n > (size_t)(auth_end - v) && v[n - 1] == '/')
		n--;
	out = strndup(v, n);
	if (!out) {
		*ret_reason = NULL;
		return NULL;
	}
	for (size_t i = 0; i < scheme_len; i++)
		out[i] = (char)(out[i] >= 'A' && out[i] <= 'Z' ? out[i] + 'a' - 'A' : out[i]);
	return out;
}

/* Whether a URL url_normalize() accepted names 127.0.0.0/8, ::1 or
 * localhost: the only hosts plain http is good enough for. */
static bool url_host_is_loopback(const char *url)
{
	const char *host = strstr(url, "://") + 3;
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr a6;
	struct in_addr a4;
	size_t n;

	if (*host == '[') {
		n = strcspn(host + 1, "]");
		if (n >= sizeof(buf))
			return false;
		memcpy(buf, host + 1, n);
		buf[n] = '\0';
		return inet_pton(AF_INET6, buf, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
	}
	n = strcspn(host, ":/");
	if (n == strlen("localhost") && strncasecmp(host, "localhost", n) == 0)
		return true;
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, host, n);
	buf[n] = '\0';
	return inet_pton(AF_INET, buf, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

static void set_string(char **field, char *v)
{
	free(*field);
	*field = v;
}

/* Stores a copy of v in *field: -ENOMEM or 0. */
static int set_copy(char **field, const char *v)
{
	char *copy = strdup(v);

	if (!copy)
		return -ENOMEM;
	set_string(field, copy);
	return 0;
}

static void format_size(char *buf, size_t len, uint64_t bytes)
{
	static const struct {
		const char *name;
		uint64_t factor;
	} units[] = {{"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB}};

	for (size_t i = 0; i < ELEMENTSOF(units); i++)
		if (bytes > 0 && bytes % units[i].factor == 0) {
			snprintf(buf, len, "%" PRIu64 "%s", bytes / units[i].factor, units[i].name);
			return;
		}
	snprintf(buf, len, "%" PRIu64, bytes);
}

static void format_value(const struct key *k, char *buf, size_t len, uint64_t v)
{
	if (k->kind == KIND_TIMESPAN)
		format_timespan(buf, len, v);
	else if (k->kind == KIND_SIZE)
		format_size(buf, len, v);
	else
		snprintf(buf, len, "%" PRIu64, v);
}

static void fail_range(struct parse *ps, const struct key *k, const char *v)
{
	char lo[32], hi[32];

	format_value(k, lo, sizeof(lo), k->min);
	format_value(k, hi, sizeof(hi), k->max);
	fail(ps, -EINVAL, ps->line, "%s: \"%s\" is out of range (%s..%s)", k->name, v, lo, hi);
}

/* For kinds parsed into a number: the number, range checked. */
static int parse_number(struct parse *ps, const struct key *k, const char *v, uint64_t *ret)
{
	static const char *const what[] = {
		[KIND_TIMESPAN] = "a time span (e.g. 30s, 5min, 1.5h)",
		[KIND_SIZE] = "a size (e.g. 512, 64KiB, 1MiB)",
		[KIND_UINT] = "a whole number",
	};
	uint64_t n;
	int r;

	if (k->kind == KIND_TIMESPAN)
		r = parse_timespan(v, &n);
	else if (k->kind == KIND_SIZE)
		r = parse_size(v, &n);
	else
		r = parse_uint64(v, &n);
	if (r == -ERANGE || (r >= 0 && (n < k->min || n > k->max))) {
		fail_range(ps, k, v);
		return -EINVAL;
	}
	if (r < 0) {
		fail(ps, -EINVAL, ps->line, "%s: \"%s\" is not %s", k->name, v, what[k->kind]);
		return -EINVAL;
	}
	*ret = n;
	return 0;
}

static int parse_proxies(struct parse *ps, const struct key *k, const char *v)
{
	struct cidr list[CONFIG_MAX_PROXIES] = {{0}};
	size_t n = 0;
	const char *s = v;

	while (*s) {
		char item[INET6_ADDRSTRLEN + 8];
		size_t len;

		s += strspn(s, " \t,");
		len = strcspn(s, " \t,");
		if (len == 0)
			break;
		if (n == CONFIG_MAX_PROXIES) {
			fail(ps, -EINVAL, ps->line, "%s: more than %d entries", k->name, CONFIG_MAX_PROXIES);
			return -EINVAL;
		}
		if (len < sizeof(item)) {
			memcpy(item, s, len);
			item[len] = '\0';
		}
		if (len >= sizeof(item) || netaddr_parse_cidr(item, &list[n]) < 0) {
			fail(ps, -EINVAL, ps->line, "%s: \"%.*s\" is not an IP address, address/prefix or \"unix\"",
			     k->name, (int)MIN(len, (size_t)64), s);
			return -EINVAL;
		}
		n++;
		s += len;
	}

	memcpy(ps->c->trusted_proxies, list, n * sizeof(list[0]));
	ps->c->n_trusted_proxies = n;
	return 0;
}

static int parse_value(struct parse *ps, const struct key *k, char *v)
{
	void *field = field_of(ps->c, k);
	const char *reason = NULL;
	uint64_t n;
	int r;

	switch (k->kind) {
	case KIND_STRING:
	case KIND_TOKEN:
	case KIND_ID:
	case KIND_URL:
	case KIND_API_URL:
	case KIND_PATH:
	case KIND_NAME:
		if (!*v) {
			if (k->required) {
				fail(ps, -EINVAL, ps->line, "%s: must not be empty", k->name);
				return -EINVAL;
			}
			set_string(field, NULL);
			return 0;
		}
		if (str_has_control(v)) {
			fail(ps, -EINVAL, ps->line, "%s: contains control characters", k->name);
			return -EINVAL;
		}
		break;
	default:
		break;
	}

	switch (k->kind) {
	case KIND_STRING:
		if (set_copy(field, v) < 0)
			goto oom;
		return 0;

	case KIND_ID:
		if (!job_id_is_valid(v)) {
			fail(ps, -EINVAL, ps->line, "%s: \"%s\" is not an id (1 to 64 letters, digits, _ or -)",
			     k->name, v);
			return -EINVAL;
		}
		if (set_copy(field, v) < 0)
			goto oom;
		return 0;

	case KIND_TOKEN:
		if (!is_token(v)) {
			fail(ps, -EINVAL, ps->line, "%s: \"%s\" is not a valid HTTP header name", k->name, v);
			return -EINVAL;
		}
		if (set_copy(field, v) < 0)
			goto oom;
		return 0;

	case KIND_URL:
	case KIND_API_URL: {
		char *u = url_normalize(v, &reason);

		if (!u) {
			if (!reason)
				goto oom;
			fail(ps, -EINVAL, ps->line, "%s: \"%s\" %s", k->name, v, reason);
			return -EINVAL;
		}
		if (k->kind == KIND_API_URL && strncmp(u, "https://", 8) != 0 && !url_host_is_loopback(u)) {
			fail(ps, -EINVAL, ps->line,
			     "%s: \"%s\" must be https:// (http:// only to a loopback host): the API key "
			     "would travel in clear text",
			     k->name, v);
			free(u);
			return -EINVAL;
		}
		set_string(field, u);
		return 0;
	}

	case KIND_PATH:
		if (v[0] != '/') {
			fail(ps, -EINVAL, ps->line, "%s: must be an absolute path, not \"%s\"", k->name, v);
			return -EINVAL;
		}
		if (set_copy(field, v) < 0)
			goto oom;
		return 0;

	case KIND_TIMESPAN:
	case KIND_SIZE:
		r = parse_number(ps, k, v, &n);
		if (r < 0)
			return r;
		*(uint64_t *)field = n;
		return 0;

	case KIND_UINT:
		r = parse_number(ps, k, v, &n);
		if (r < 0)
			return r;
		*(unsigned *)field = (unsigned)n;
		return 0;

	case KIND_SCOPE:
		if (strcmp(v, "global") == 0)
			*(enum interval_scope *)field = INTERVAL_SCOPE_GLOBAL;
		else if (strcmp(v, "device") == 0)
			*(enum interval_scope *)field = INTERVAL_SCOPE_DEVICE;
		else {
			fail(ps, -EINVAL, ps->line, "%s: \"%s\" is not one of: global, device", k->name, v);
			return -EINVAL;
		}
		return 0;

	case KIND_UNVERIFIED:
		if (strcmp(v, "poll") == 0)
			*(enum unverified_policy *)field = UNVERIFIED_POLL;
		else if (strcmp(v, "ignore") == 0)
			*(enum unverified_policy *)field = UNVERIFIED_IGNORE;
		else {
			fail(ps, -EINVAL, ps->line, "%s: \"%s\" is not one of: poll, ignore", k->name, v);
			return -EINVAL;
		}
		return 0;

	case KIND_LISTEN: {
		struct listen_addr l;

		r = netaddr_parse_listen(v, &l);
		if (r == -ENOMEM)
			goto oom;
		if (r == -ERANGE) {
			fail(ps, -EINVAL, ps->line, "%s: \"%s\": port must be 1..65535", k->name, v);
			return -EINVAL;
		}
		if (r == -ENAMETOOLONG) {
			fail(ps, -EINVAL, ps->line, "%s: \"%s\": socket path too long (max %zu)", k->name, v,
			     sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
			return -EINVAL;
		}
		if (r < 0) {
			fail(ps, -EINVAL, ps->line, "%s: \"%s\" is not host:port, [v6addr]:port or unix:/path", k->name,
			     v);
			return -EINVAL;
		}
		free(ps->c->listen.host);
		free(ps->c->listen.path);
		ps->c->listen = l;
		return 0;
	}

	case KIND_CIDRS:
		return parse_proxies(ps, k, v);

	case KIND_BACKEND:
		if (strcmp(v, "log") == 0)
			*(enum store_backend *)field = STORE_LOG;
		else if (strcmp(v, "postgresql") == 0)
			*(enum store_backend *)field = STORE_POSTGRESQL;
		else {
			fail(ps, -EINVAL, ps->line, "%s: \"%s\" is not one of: log, postgresql", k->name, v);
			return -EINVAL;
		}
		return 0;

	case KIND_NAME:
		if (strlen(v) < k->min || strlen(v) > k->max || strspn(v, NAME_CHARS) != strlen(v)) {
			fail(ps, -EINVAL, ps->line,
			     "%s: \"%s\" is not a name of %" PRIu64 "..%" PRIu64 " letters, digits, '.', '_' or '-'",
			     k->name, v, k->min, k->max);
			return -EINVAL;
		}
		if (set_copy(field, v) < 0)
			goto oom;
		return 0;
	}
	return -EINVAL;

oom:
	fail(ps, -ENOMEM, ps->line, "out of memory");
	return -ENOMEM;
}

/* Called by inih right after it read the key's line from reader(), so
 * ps->line is that line. */
static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *ps = user;
	_cleanup_free_ char *v = NULL;
	const struct key *k;

	if (ps->failed)
		return 1;
	if (!*section) {
		fail(ps, -EINVAL, ps->line, "%s: not in any [section]", name);
		return 1;
	}
	k = key_find(section, name);
	if (!k) {
		if (section_known(section, strlen(section)))
			fail(ps, -EINVAL, ps->line, "[%s] %s: unknown key", section, name);
		else
			fail(ps, -EINVAL, ps->section_line, "[%s]: unknown section", section);
		return 1;
	}

	v = strdup(value);
	if (!v) {
		fail(ps, -ENOMEM, ps->line, "out of memory");
		return 1;
	}
	strip_hash_comment(v);
	/* A repeated key is not an error: the last one wins, as in systemd's
	 * unit files, so a drop-in style "append to the end" override works. */
	ps->key_line[k - keys] = ps->line;
	parse_value(ps, k, v);
	/* Errors are kept in ps; inih's own count is for syntax errors only. */
	return 1;
}

/* inih's fgets-style reader.  Besides counting lines, it removes leading
 * blanks: inih would otherwise read an indented line as the continuation of
 * the previous value (Python configparser style), so an indented "key = value"
 * would silently become part of another key's value. */
static char *reader(char *str, int num, void *stream)
{
	struct parse *ps = stream;
	const char *s, *eol;
	size_t n;

	if (ps->failed || ps->p >= ps->end)
		return NULL;

	s = ps->p;
	eol = memchr(s, '\n', (size_t)(ps->end - s));
	if (!eol)
		eol = ps->end;
	ps->p = eol < ps->end ? eol + 1 : eol;
	ps->line++;

	if (ps->line == 1 && eol - s >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;
	n = (size_t)(eol - s);
	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	if (n > 0 && s[n - 1] == '\r')
		n--;

	if (memchr(s, '\0', n)) {
		fail(ps, -EINVAL, ps->line, "syntax error (NUL byte)");
		return NULL;
	}
	/* The line, its '\n' and the NUL must fit inih's buffer; a longer line
	 * would be split into two. */
	if (num < 2 || n > (size_t)num - 2) {
		fail(ps, -EINVAL, ps->line, "line too long (at most %d characters)", num - 2);
		return NULL;
	}

	/* inih calls the handler only for keys, so an unknown section without
	 * keys would pass unnoticed; and the section's own line is the one to
	 * report. */
	if (n > 0 && *s == '[') {
		const char *close = memchr(s, ']', n);

		ps->section_line = ps->line;
		if (close && !section_known(s + 1, (size_t)(close - s - 1))) {
			fail(ps, -EINVAL, ps->line, "[%.*s]: unknown section",
			     (int)MIN((size_t)(close - s - 1), (size_t)64), s + 1);
			return NULL;
		}
	}

	memcpy(str, s, n);
	str[n] = '\n';
	str[n + 1] = '\0';
	return str;
}

static unsigned key_line(const struct parse *ps, const char *section, const char *name)
{
	const struct key *k = key_find(section, name);

	return k ? ps->key_line[k - keys] : 0;
}

/* [store] node's default: the host name, up to its first dot (the node's
 * name in claims and logs, short as the host is usually called). */
static void set_default_node(struct parse *ps)
{
	char host[256] = "";
	size_t n;

	if (gethostname(host, sizeof(host) - 1) < 0 || !*host) {
		fail(ps, -EINVAL, 0, "node: the host name is unknown; set [store] node");
		return;
	}
	n = MIN(strcspn(host, "."), strspn(host, NAME_CHARS));
	if (n == 0 || n > CONFIG_NODE_MAX) {
		fail(ps, -EINVAL, 0, "node: the host name \"%.64s\" is no valid node name; set [store] node", host);
		return;
	}
	host[n] = '\0';
	if (set_copy(&ps->c->store_node, host) < 0)
		fail(ps, -ENOMEM, 0, "out of memory");
}

/* Checks that involve more than one key, once the whole file is read.  The
 * error names the key the user wrote, when there is one. */
static void check_whole(struct parse *ps)
{
	const struct config *c = ps->c;
	char buf[32];

	if (!c->public_url && !c->http_server_id)
		fail(ps, -EINVAL, key_line(ps, "callback", "public_url"), "public_url: required ([callback] section)");

	if (c->retry_max_usec < c->retry_initial_usec) {
		unsigned line = key_line(ps, "meraki", "retry_max");

		if (line > 0 || key_line(ps, "meraki", "retry_initial") == 0) {
			format_timespan(buf, sizeof(buf), c->retry_initial_usec);
			fail(ps, -EINVAL, line, "retry_max: must not be less than retry_initial (%s)", buf);
		} else {
			format_timespan(buf, sizeof(buf), c->retry_max_usec);
			fail(ps, -EINVAL, key_line(ps, "meraki", "retry_initial"),
			     "retry_initial: must not be greater than retry_max (%s)", buf);
		}
	}

	if (c->expire_usec <= c->wait_usec) {
		unsigned line = key_line(ps, "callback", "expire");

		if (line > 0 || key_line(ps, "callback", "wait") == 0) {
			format_timespan(buf, sizeof(buf), c->wait_usec);
			fail(ps, -EINVAL, line, "expire: must be greater than wait (%s)", buf);
		} else {
			format_timespan(buf, sizeof(buf), c->expire_usec);
			fail(ps, -EINVAL, key_line(ps, "callback", "wait"), "wait: must be less than expire (%s)", buf);
		}
	}

	/* The receiver's secret belongs to http_server_id mode; in url mode
	 * each job gets its own secret, so a file here would be ignored. */
	if (c->shared_secret_file && !c->http_server_id)
		fail(ps, -EINVAL, key_line(ps, "callback", "shared_secret_file"),
		     "shared_secret_file: only used with http_server_id");

	/* A connection string the log store would ignore is a mistake. */
	if (c->store_backend != STORE_POSTGRESQL) {
		if (c->store_conninfo)
			fail(ps, -EINVAL, key_line(ps, "store", "conninfo"),
			     "conninfo: only used with backend = postgresql");
		if (c->store_node)
			fail(ps, -EINVAL, key_line(ps, "store", "node"), "node: only used with backend = postgresql");
	} else if (!c->store_node)
		set_default_node(ps);
}

int config_load(struct config *c, const char *path, char err[static CONFIG_ERROR_MAX])
{
	_cleanup_free_ char *buf = NULL;
	struct parse ps;
	size_t len;
	char *p;
	int r;

	err[0] = '\0';
	p = strdup(path);
	if (!p) {
		snprintf(err, CONFIG_ERROR_MAX, "%s: out of memory", path);
		return -ENOMEM;
	}
	free(c->path);
	c->path = p;

	r = read_file_capped(AT_FDCWD, path, CONFIG_FILE_MAX, &buf, &len);
	if (r < 0) {
		if (r == -EFBIG)
			snprintf(err, CONFIG_ERROR_MAX, "%s: larger than %zu bytes", path, CONFIG_FILE_MAX);
		else if (r == -EINVAL)
			snprintf(err, CONFIG_ERROR_MAX, "%s: not a regular file", path);
		else {
			errno = -r;
			snprintf(err, CONFIG_ERROR_MAX, "%s: %m", path);
		}
		return r;
	}

	ps = (struct parse){
		.c = c,
		.path = path,
		.p = buf,
		.end = buf + len,
		.err = err,
	};
	r = ini_parse_stream(reader, &ps, handler, &ps);
	if (r < 0) {
		snprintf(err, CONFIG_ERROR_MAX, "%s: out of memory", path);
		return -ENOMEM;
	}
	/* inih returns the first line it could not parse; our reader stops at
	 * our first error, so a syntax error it reports on an earlier line is
	 * the first problem in the file. */
	if (r > 0 && (!ps.failed || (unsigned)r < ps.err_line))
		fail_earlier(&ps, -EINVAL, (unsigned)r, "syntax error");
	if (!ps.failed)
		check_whole(&ps);

	return ps.failed ? ps.error : 0;
}
