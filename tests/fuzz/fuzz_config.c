/* SPDX-License-Identifier: MIT */
/*
 * fuzz_config — config_load() on the input written to a file.
 *
 * Checked: a failure's message starts with the file's path (then ':' and,
 * usually, the line); a success leaves every value inside the range the
 * table gives it and the cross-key rules (retry_max >= retry_initial,
 * expire > wait, a public_url or an http_server_id) true.
 */
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "blinkhook/config.h"
#include "blinkhook/util.h"
#include "fuzz.h"

static void check_range(const char *name, uint64_t v, uint64_t lo, uint64_t hi)
{
	FUZZ_CHECK(v >= lo && v <= hi, "%s = %llu is outside %llu..%llu", name, (unsigned long long)v,
		   (unsigned long long)lo, (unsigned long long)hi);
}

static void check_url(const char *name, const char *u)
{
	size_t n;

	if (!u)
		return;
	n = strlen(u);
	FUZZ_CHECK(strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0, "%s = \"%s\"", name, u);
	FUZZ_CHECK(n > 0 && u[n - 1] != '/', "%s = \"%s\" ends in '/'", name, u);
}

static void check_path(const char *name, const char *p)
{
	FUZZ_CHECK(!p || p[0] == '/', "%s = \"%s\" is not absolute", name, p);
}

static void check_config(const struct config *c)
{
	FUZZ_CHECK(c->base_url, "no base_url");
	check_url("base_url", c->base_url);
	FUZZ_CHECK(strncmp(c->base_url, "https://", 8) == 0 || strncmp(c->base_url, "http://127.", 11) == 0 ||
			   strncasecmp(c->base_url, "http://localhost", 16) == 0 ||
			   strncmp(c->base_url, "http://[", 8) == 0,
		   "base_url = \"%s\" is plain http to a host that is not loopback", c->base_url);
	check_url("public_url", c->public_url);
	FUZZ_CHECK(c->public_url || c->http_server_id, "neither public_url nor http_server_id");
	check_path("api_key_file", c->api_key_file);
	check_path("ca_file", c->ca_file);
	check_path("shared_secret_file", c->shared_secret_file);
	FUZZ_CHECK(c->queue_dir && c->state_dir, "no queue or state dir");
	check_path("queue dir", c->queue_dir);
	check_path("state dir", c->state_dir);

	check_range("min_interval", c->min_interval_usec, 0, USEC_PER_HOUR);
	check_range("request_timeout", c->request_timeout_usec, USEC_PER_SEC, 10 * USEC_PER_MIN);
	check_range("max_attempts", c->max_attempts, 1, 100);
	check_range("retry_initial", c->retry_initial_usec, 10 * USEC_PER_MSEC, USEC_PER_HOUR);
	check_range("retry_max", c->retry_max_usec, 10 * USEC_PER_MSEC, USEC_PER_DAY);
	check_range("max_body", c->max_body, 1024, (uint64_t)16 * 1024 * 1024);
	check_range("wait", c->wait_usec, 0, USEC_PER_DAY);
	check_range("expire", c->expire_usec, USEC_PER_SEC, 30 * USEC_PER_DAY);
	check_range("retention", c->retention_usec, USEC_PER_HOUR, 3650 * USEC_PER_DAY);
	FUZZ_CHECK(c->retry_max_usec >= c->retry_initial_usec, "retry_max < retry_initial");
	FUZZ_CHECK(c->expire_usec > c->wait_usec, "expire <= wait");
	FUZZ_CHECK(c->interval_scope == INTERVAL_SCOPE_GLOBAL || c->interval_scope == INTERVAL_SCOPE_DEVICE,
		   "interval_scope %d", (int)c->interval_scope);
	FUZZ_CHECK(!c->shared_secret_file || c->http_server_id, "shared_secret_file without http_server_id");
	FUZZ_CHECK(c->n_trusted_proxies <= CONFIG_MAX_PROXIES, "%zu trusted proxies", c->n_trusted_proxies);
	for (size_t i = 0; i < c->n_trusted_proxies; i++) {
		const struct cidr *p = &c->trusted_proxies[i];

		/* "unix" stands for a unix listen socket's peers: no address. */
		FUZZ_CHECK((p->family == AF_INET && p->prefix <= 32) || (p->family == AF_INET6 && p->prefix <= 128) ||
				   (p->family == AF_UNIX && p->prefix == 0),
			   "trusted proxy %zu: family %d prefix %u", i, p->family, p->prefix);
	}
	if (c->listen.is_unix)
		FUZZ_CHECK(c->listen.path && c->listen.path[0] == '/', "listen on a unix path that is not absolute");
	else
		FUZZ_CHECK(c->listen.host && c->listen.port > 0, "listen without host or port");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[512];
	char err[CONFIG_ERROR_MAX];
	struct config c;
	size_t plen;
	int r;

	if (!path[0])
		snprintf(path, sizeof(path), "%s/blinkhookd.conf", fuzz_dir());
	fuzz_write_file(path, data, size);

	FUZZ_CHECK(config_init(&c) == 0, "config_init failed");
	r = config_load(&c, path, err);
	plen = strlen(path);
	FUZZ_CHECK(memchr(err, 0, sizeof(err)), "the message is not terminated");
	if (r < 0) {
		FUZZ_CHECK(strncmp(err, path, plen) == 0 && err[plen] == ':',
			   "the message \"%s\" does not start with the path", err);
		FUZZ_CHECK(err[plen + 1] != 0, "the message \"%s\" says nothing", err);
	} else {
		FUZZ_CHECK(r == 0, "config_load returned %d", r);
		FUZZ_CHECK(c.path && strcmp(c.path, path) == 0, "config.path is \"%s\"", fuzz_str(c.path));
		check_config(&c);
	}
	config_release(&c);
	return 0;
}
