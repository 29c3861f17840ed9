/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#define TESTLIB_KEY_FILES
#include "testlib.h"

#include "blinkhook/config.h"
#include "blinkhook/netaddr.h"
#include "blinkhook/util.h"

static char conf_path[300];

static int group_setup(void **state)
{
	(void)state;
	if (key_env_group_setup("test_config") < 0)
		return -1;
	snprintf(conf_path, sizeof(conf_path), "%s/blinkhookd.conf", tmpdir);
	return 0;
}

static int load(struct config *c, const char *text, char err[static CONFIG_ERROR_MAX])
{
	write_file(conf_path, text, strlen(text), 0644);
	assert_int_equal(config_init(c), 0);
	return config_load(c, conf_path, err);
}

/* Loads text and expects exactly the error path + suffix. */
static void assert_load_error(const char *text, const char *suffix)
{
	char err[CONFIG_ERROR_MAX], want[CONFIG_ERROR_MAX];
	struct config c;
	int r;

	r = load(&c, text, err);
	snprintf(want, sizeof(want), "%s%s", conf_path, suffix);
	if (r != -EINVAL || strcmp(err, want) != 0)
		fail_msg("for:\n%s\ngot %d \"%s\"\nwant \"%s\"", text, r, err, want);
	config_release(&c);
}

#define PUBLIC "[callback]\npublic_url = https://hooks.example.com\n"

static void test_full_file(void **state)
{
	static const char text[] = "# blinkhookd.conf: every key set\n"
				   "; a comment of the other kind\n"
				   "[meraki]\n"
				   "base_url = https://api.meraki.ca/api/v1/   # Canada\n"
				   "api_key_file = /etc/blinkhook/api-key ; inline\n"
				   "min_interval = 15s\n"
				   "interval_scope = device\n"
				   "request_timeout = 45s\n"
				   "max_attempts = 12\n"
				   "retry_initial = 500ms\n"
				   "retry_max = 10min\n"
				   "ca_file = /etc/ssl/corp.pem\n"
				   "organization_id = 549236\n"
				   "\n"
				   "[callback]\n"
				   "public_url = https://hooks.example.com/blinkhook/\n"
				   "listen = [::1]:9000\n"
				   "secret_header = X-Blink-Secret\n"
				   "http_server_id = aHR0cHM6Ly93d3cuZXhhbXBsZS5jb20vd2ViaG9va3M=\n"
				   "payload_template_id = wpt_2100\n"
				   "shared_secret_file = /etc/blinkhook/callback-secret\n"
				   "trusted_proxies = 10.0.0.0/8, 192.168.1.1 fd00::/8,::1\n"
				   "max_body = 128KiB\n"
				   "wait = 2min\n"
				   "expire = 2h\n"
				   "unverified = ignore\n"
				   "\n"
				   "[queue]\n"
				   "dir = /srv/blinkhook/spool\n"
				   "\n"
				   "[state]\n"
				   "dir = /srv/blinkhook/state   # the job log\n"
				   "retention = 7d\n";
	char err[CONFIG_ERROR_MAX];
	struct config c;
	struct cidr want;

	(void)state;
	assert_int_equal(load(&c, text, err), 0);
	assert_string_equal(err, "");
	assert_string_equal(c.path, conf_path);

	assert_string_equal(c.base_url, "https://api.meraki.ca/api/v1");
	assert_string_equal(c.api_key_file, "/etc/blinkhook/api-key");
	assert_true(c.min_interval_usec == 15 * USEC_PER_SEC);
	assert_int_equal(c.interval_scope, INTERVAL_SCOPE_DEVICE);
	assert_true(c.request_timeout_usec == 45 * USEC_PER_SEC);
	assert_int_equal(c.max_attempts, 12);
	assert_true(c.retry_initial_usec == 500 * USEC_PER_MSEC);
	assert_true(c.retry_max_usec == 10 * USEC_PER_MIN);
	assert_string_equal(c.ca_file, "/etc/ssl/corp.pem");
	assert_string_equal(c.organization_id, "549236");

	assert_string_equal(c.public_url, "https://hooks.example.com/blinkhook");
	assert_false(c.listen.is_unix);
	assert_string_equal(c.listen.host, "::1");
	assert_int_equal(c.listen.port, 9000);
	assert_null(c.listen.path);
	assert_string_equal(c.secret_header, "X-Blink-Secret");
	assert_string_equal(c.http_server_id, "aHR0cHM6Ly93d3cuZXhhbXBsZS5jb20vd2ViaG9va3M=");
	assert_string_equal(c.payload_template_id, "wpt_2100");
	assert_string_equal(c.shared_secret_file, "/etc/blinkhook/callback-secret");

	assert_int_equal(c.n_trusted_proxies, 4);
	assert_int_equal(netaddr_parse_cidr("10.0.0.0/8", &want), 0);
	assert_memory_equal(&c.trusted_proxies[0], &want, sizeof(want));
	assert_int_equal(netaddr_parse_cidr("192.168.1.1", &want), 0);
	assert_memory_equal(&c.trusted_proxies[1], &want, sizeof(want));
	assert_int_equal(netaddr_parse_cidr("fd00::/8", &want), 0);
	assert_memory_equal(&c.trusted_proxies[2], &want, sizeof(want));
	assert_int_equal(netaddr_parse_cidr("::1", &want), 0);
	assert_memory_equal(&c.trusted_proxies[3], &want, sizeof(want));

	assert_true(c.max_body == 128 * 1024);
	assert_true(c.wait_usec == 2 * USEC_PER_MIN);
	assert_true(c.expire_usec == 2 * USEC_PER_HOUR);
	assert_int_equal(c.unverified, UNVERIFIED_IGNORE);
	assert_string_equal(c.queue_dir, "/srv/blinkhook/spool");
	assert_string_equal(c.state_dir, "/srv/blinkhook/state");
	assert_true(c.retention_usec == 7 * USEC_PER_DAY);

	config_release(&c);
	/* Releasing twice is harmless. */
	config_release(&c);
}

static void assert_defaults(const struct config *c)
{
	struct cidr lo4, lo6;

	assert_string_equal(c->base_url, "https://api.meraki.com/api/v1");
	assert_null(c->api_key_file);
	assert_true(c->min_interval_usec == 10 * USEC_PER_SEC);
	assert_int_equal(c->interval_scope, INTERVAL_SCOPE_GLOBAL);
	assert_int_equal(c->unverified, UNVERIFIED_POLL);
	assert_true(c->request_timeout_usec == 30 * USEC_PER_SEC);
	assert_int_equal(c->max_attempts, 8);
	assert_true(c->retry_initial_usec == USEC_PER_SEC);
	assert_true(c->retry_max_usec == 5 * USEC_PER_MIN);
	assert_null(c->ca_file);
	assert_null(c->organization_id);

	assert_false(c->listen.is_unix);
	assert_string_equal(c->listen.host, "127.0.0.1");
	assert_int_equal(c->listen.port, 8787);
	assert_null(c->listen.path);
	assert_null(c->secret_header);
	assert_null(c->http_server_id);
	assert_null(c->payload_template_id);
	assert_null(c->shared_secret_file);
	assert_int_equal(c->n_trusted_proxies, 2);
	assert_int_equal(netaddr_parse_cidr("127.0.0.1", &lo4), 0);
	assert_int_equal(netaddr_parse_cidr("::1", &lo6), 0);
	assert_memory_equal(&c->trusted_proxies[0], &lo4, sizeof(lo4));
	assert_memory_equal(&c->trusted_proxies[1], &lo6, sizeof(lo6));
	assert_true(c->max_body == 64 * 1024);
	assert_true(c->wait_usec == 5 * USEC_PER_MIN);
	assert_true(c->expire_usec == USEC_PER_HOUR);
	assert_string_equal(c->queue_dir, "/var/spool/blinkhook");
	assert_string_equal(c->state_dir, "/var/lib/blinkhook");
	assert_true(c->retention_usec == 30 * USEC_PER_DAY);
	assert_int_equal(c->store_backend, STORE_LOG);
	assert_null(c->store_conninfo);
	assert_null(c->store_node);
	assert_true(c->store_lease_usec == 30 * USEC_PER_SEC);
}

static void test_defaults(void **state)
{
	char err[CONFIG_ERROR_MAX];
	struct config c;

	(void)state;
	assert_int_equal(config_init(&c), 0);
	assert_defaults(&c);
	assert_null(c.public_url);
	config_release(&c);

	assert_int_equal(load(&c, PUBLIC, err), 0);
	assert_defaults(&c);
	assert_string_equal(c.public_url, "https://hooks.example.com");
	config_release(&c);
}

static void test_errors(void **state)
{
	(void)state;
	assert_load_error(PUBLIC "[meraki]\ncolour = red\n", ":4: [meraki] colour: unknown key");
	assert_load_error(PUBLIC "\n[foo]\nbar = 1\n", ":4: [foo]: unknown section");
	assert_load_error(PUBLIC "[Meraki]\n", ":3: [Meraki]: unknown section");
	assert_load_error("min_interval = 5s\n" PUBLIC, ":1: min_interval: not in any [section]");
	assert_load_error(PUBLIC "[meraki]\n\n\n\nmin_interval = 10x\n",
			  ":7: min_interval: \"10x\" is not a time span (e.g. 30s, 5min, 1.5h)");
	assert_load_error(PUBLIC "[meraki]\nmin_interval =\n",
			  ":4: min_interval: \"\" is not a time span (e.g. 30s, 5min, 1.5h)");
	assert_load_error(PUBLIC "[meraki]\nrequest_timeout = 20min\n",
			  ":4: request_timeout: \"20min\" is out of range (1s..10min)");
	assert_load_error(PUBLIC "[meraki]\nrequest_timeout = 999999999999999999999s\n",
			  ":4: request_timeout: \"999999999999999999999s\" is out of range "
			  "(1s..10min)");
	assert_load_error(PUBLIC "[meraki]\nmin_interval = 2h\n", ":4: min_interval: \"2h\" is out of range (0..1h)");
	assert_load_error(PUBLIC "[meraki]\nmax_attempts = 0\n", ":4: max_attempts: \"0\" is out of range (1..100)");
	assert_load_error(PUBLIC "[meraki]\nmax_attempts = 8.5\n", ":4: max_attempts: \"8.5\" is not a whole number");
	assert_load_error(PUBLIC "[meraki]\ninterval_scope = network\n",
			  ":4: interval_scope: \"network\" is not one of: global, device");
	assert_load_error(PUBLIC "unverified = believe\n", ":3: unverified: \"believe\" is not one of: poll, ignore");
	assert_load_error(PUBLIC "unverified =\n", ":3: unverified: \"\" is not one of: poll, ignore");
	assert_load_error(PUBLIC "max_body = 32MiB\n", ":3: max_body: \"32MiB\" is out of range (1KiB..16MiB)");
	assert_load_error(PUBLIC "max_body = lots\n", ":3: max_body: \"lots\" is not a size (e.g. 512, 64KiB, 1MiB)");
	assert_load_error(PUBLIC "[state]\nretention = 11y\n",
			  ":4: retention: \"11y\" is not a time span (e.g. 30s, 5min, 1.5h)");
	assert_load_error(PUBLIC "[state]\nretention = 3651d\n",
			  ":4: retention: \"3651d\" is out of range (1h..3650d)");

	/* URLs. */
	assert_load_error(PUBLIC "[meraki]\nbase_url = ftp://api.meraki.com\n",
			  ":4: base_url: \"ftp://api.meraki.com\" is not an http:// or https:// URL");
	assert_load_error(PUBLIC "[meraki]\nbase_url = api.meraki.com/api/v1\n",
			  ":4: base_url: \"api.meraki.com/api/v1\" is not an http:// or https:// URL");
	assert_load_error(PUBLIC "[meraki]\nbase_url =\n", ":4: base_url: must not be empty");
	/* The API key would travel in clear text: plain http only on loopback. */
	assert_load_error(PUBLIC "[meraki]\nbase_url = http://api.meraki.com/api/v1\n",
			  ":4: base_url: \"http://api.meraki.com/api/v1\" must be https:// (http:// only to a "
			  "loopback host): the API key would travel in clear text");
	assert_load_error(PUBLIC "[meraki]\nbase_url = HTTP://10.0.0.1:8080/api/v1\n",
			  ":4: base_url: \"HTTP://10.0.0.1:8080/api/v1\" must be https:// (http:// only to a "
			  "loopback host): the API key would travel in clear text");
	static const char *const not_loopback[] = {
		"http://[::2]/api/v1",     "http://127.0.0.1.example.net/api/v1", "http://localhost.example.net/x",
		"http://128.0.0.1/api/v1", "http://[::ffff:10.0.0.1]/api/v1",     "http://localhost@evil.example/x",
	};
	for (size_t i = 0; i < ELEMENTSOF(not_loopback); i++) {
		char text[256], suffix[256];

		snprintf(text, sizeof(text), PUBLIC "[meraki]\nbase_url = %s\n", not_loopback[i]);
		snprintf(suffix, sizeof(suffix),
			 ":4: base_url: \"%s\" must be https:// (http:// only to a loopback host): the API key "
			 "would travel in clear text",
			 not_loopback[i]);
		if (strchr(not_loopback[i], '@'))
			snprintf(suffix, sizeof(suffix), ":4: base_url: \"%s\" must not contain user information",
				 not_loopback[i]);
		assert_load_error(text, suffix);
	}
	assert_load_error("[callback]\npublic_url = https://\n", ":2: public_url: \"https://\" has no host");
	assert_load_error("[callback]\npublic_url = https:///x\n", ":2: public_url: \"https:///x\" has no host");
	assert_load_error("[callback]\npublic_url = https://h.example/x?a=b\n",
			  ":2: public_url: \"https://h.example/x?a=b\" must not have a query or "
			  "fragment");
	assert_load_error("[callback]\npublic_url = https://h.example/x#frag\n",
			  ":2: public_url: \"https://h.example/x#frag\" must not have a query or "
			  "fragment");
	assert_load_error("[callback]\npublic_url = https://h.example/a b\n",
			  ":2: public_url: \"https://h.example/a b\" contains a blank, control or "
			  "non-ASCII character");
	assert_load_error("[callback]\npublic_url = https://user:pw@h.example/\n",
			  ":2: public_url: \"https://user:pw@h.example/\" must not contain user "
			  "information");
	assert_load_error("[callback]\npublic_url = https://h.example:99999/\n",
			  ":2: public_url: \"https://h.example:99999/\" has a bad port");
	assert_load_error("[callback]\npublic_url = https://[zz]/\n",
			  ":2: public_url: \"https://[zz]/\" has a bad IPv6 host");

	/* Paths. */
	assert_load_error(PUBLIC "[queue]\ndir = spool\n", ":4: dir: must be an absolute path, not \"spool\"");
	assert_load_error(PUBLIC "[state]\ndir =\n", ":4: dir: must not be empty");
	assert_load_error(PUBLIC "[meraki]\napi_key_file = key.txt\n",
			  ":4: api_key_file: must be an absolute path, not \"key.txt\"");
	assert_load_error(PUBLIC "[meraki]\nca_file = ./ca.pem\n",
			  ":4: ca_file: must be an absolute path, not \"./ca.pem\"");

	/* listen, trusted_proxies, secret_header. */
	assert_load_error(PUBLIC "listen = localhost\n", ":3: listen: \"localhost\" is not host:port, [v6addr]:port or "
							 "unix:/path");
	assert_load_error(PUBLIC "listen = ::1:8787\n",
			  ":3: listen: \"::1:8787\" is not host:port, [v6addr]:port or unix:/path");
	assert_load_error(PUBLIC "listen = 127.0.0.1:0\n", ":3: listen: \"127.0.0.1:0\": port must be 1..65535");
	assert_load_error(PUBLIC "trusted_proxies = 127.0.0.1 10.0.0.0/33\n",
			  ":3: trusted_proxies: \"10.0.0.0/33\" is not an IP address, "
			  "address/prefix or \"unix\"");
	assert_load_error(PUBLIC "trusted_proxies = proxy.example.com\n",
			  ":3: trusted_proxies: \"proxy.example.com\" is not an IP address, "
			  "address/prefix or \"unix\"");
	assert_load_error(PUBLIC "secret_header = X Secret\n",
			  ":3: secret_header: \"X Secret\" is not a valid HTTP header name");
	/* An organization id goes into URL paths. */
	assert_load_error(PUBLIC "[meraki]\norganization_id = 54/92\n",
			  ":4: organization_id: \"54/92\" is not an id (1 to 64 letters, digits, _ or -)");
	assert_load_error(PUBLIC "[meraki]\norganization_id = 549 236\n",
			  ":4: organization_id: \"549 236\" is not an id (1 to 64 letters, digits, _ or -)");
	assert_load_error(PUBLIC "payload_template_id = a\x01z\n",
			  ":3: payload_template_id: contains control characters");

	/* Checks made after the whole file. */
	assert_load_error("[meraki]\nmin_interval = 5s\n", ": public_url: required ([callback] section)");
	assert_load_error("[callback]\npublic_url =          # REQUIRED\n",
			  ":2: public_url: required ([callback] section)");
	assert_load_error(PUBLIC "[meraki]\nretry_initial = 10s\nretry_max = 5s\n",
			  ":5: retry_max: must not be less than retry_initial (10s)");
	assert_load_error(PUBLIC "[meraki]\nretry_initial = 10min\n",
			  ":4: retry_initial: must not be greater than retry_max (5min)");
	assert_load_error(PUBLIC "expire = 5min\n", ":3: expire: must be greater than wait (5min)");
	assert_load_error(PUBLIC "wait = 1h\n", ":3: wait: must be less than expire (1h)");
	assert_load_error(PUBLIC "shared_secret_file = /etc/blinkhook/secret\n",
			  ":3: shared_secret_file: only used with http_server_id");

	/* What inih cannot parse. */
	assert_load_error(PUBLIC "this is not a key\n", ":3: syntax error");
	assert_load_error("[callback\n", ":1: syntax error");
	/* The first problem in the file is the one reported. */
	assert_load_error("[callback]\ngarbage\ncolour = red\n", ":2: syntax error");
	assert_load_error("[callback]\ncolour = red\ngarbage\n", ":2: [callback] colour: unknown key");
}

static void test_error_nul_byte(void **state)
{
	static const char text[] = PUBLIC "wait = 1s\0garbage\n";
	char err[CONFIG_ERROR_MAX], want[CONFIG_ERROR_MAX];
	struct config c;

	(void)state;
	write_file(conf_path, text, sizeof(text) - 1, 0644);
	assert_int_equal(config_init(&c), 0);
	assert_int_equal(config_load(&c, conf_path, err), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: syntax error (NUL byte)", conf_path);
	assert_string_equal(err, want);
	config_release(&c);
}

static void test_long_lines(void **state)
{
	char text[1024], err[CONFIG_ERROR_MAX], want[CONFIG_ERROR_MAX];
	struct config c;
	int n;

	(void)state;
	/* The installed inih reads lines into a fixed buffer; a line that
	 * does not fit is an error, not two lines. */
	n = snprintf(text, sizeof(text), PUBLIC "http_server_id = ");
	memset(text + n, 'a', 300);
	snprintf(text + n + 300, sizeof(text) - (size_t)n - 300, "\n");
	assert_int_equal(load(&c, text, err), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: line too long", conf_path);
	assert_memory_equal(err, want, strlen(want));
	config_release(&c);

	/* 32 proxies fit; 33 are too many. */
	n = snprintf(text, sizeof(text), PUBLIC "trusted_proxies =");
	for (int i = 0; i < 32; i++)
		n += snprintf(text + n, sizeof(text) - (size_t)n, " ::%x", i);
	snprintf(text + n, sizeof(text) - (size_t)n, "\n");
	assert_int_equal(load(&c, text, err), 0);
	assert_int_equal(c.n_trusted_proxies, 32);
	config_release(&c);

	snprintf(text + n, sizeof(text) - (size_t)n, " ::ff\n");
	assert_int_equal(load(&c, text, err), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: trusted_proxies: more than 32 entries", conf_path);
	assert_string_equal(err, want);
	config_release(&c);
}

static void test_comments_and_layout(void **state)
{
	static const char text[] = "\xef\xbb\xbf# a BOM, then comments\r\n"
				   "; semicolon comment\r\n"
				   "  # indented comment\r\n"
				   "  [callback]\r\n"
				   "\tpublic_url = https://hooks.example.com  ; inline\r\n"
				   "  http_server_id = abc#def\r\n"
				   "  payload_template_id = wpt_1 #comment\r\n"
				   "secret_header = # only a comment\r\n"
				   "trusted_proxies =\r\n"
				   "[meraki]\r\n"
				   "max_attempts = 3\r\n"
				   "max_attempts = 5\r\n"
				   "request_timeout = 1min 30s   # sums work\r\n"
				   "[callback]\r\n"
				   "listen = unix:/run/blinkhook/http.sock\r\n";
	char err[CONFIG_ERROR_MAX];
	struct config c;

	(void)state;
	assert_int_equal(load(&c, text, err), 0);
	assert_string_equal(c.public_url, "https://hooks.example.com");
	/* A '#' inside a value, with no blank before it, is kept. */
	assert_string_equal(c.http_server_id, "abc#def");
	assert_string_equal(c.payload_template_id, "wpt_1");
	assert_null(c.secret_header);
	/* An empty list trusts no one. */
	assert_int_equal(c.n_trusted_proxies, 0);
	/* The last of a repeated key wins. */
	assert_int_equal(c.max_attempts, 5);
	assert_true(c.request_timeout_usec == 90 * USEC_PER_SEC);
	assert_true(c.listen.is_unix);
	assert_null(c.listen.host);
	assert_string_equal(c.listen.path, "/run/blinkhook/http.sock");
	config_release(&c);
}

static void test_indented_line_is_not_a_continuation(void **state)
{
	char err[CONFIG_ERROR_MAX];
	struct config c;

	(void)state;
	/* inih alone would append "  max_attempts = 4" to min_interval's
	 * value; here it is a key of its own. */
	assert_int_equal(load(&c, PUBLIC "[meraki]\n  min_interval = 1s\n  max_attempts = 4\n", err), 0);
	assert_true(c.min_interval_usec == USEC_PER_SEC);
	assert_int_equal(c.max_attempts, 4);
	config_release(&c);
}

static void test_urls(void **state)
{
	char err[CONFIG_ERROR_MAX];
	struct config c;

	(void)state;
	assert_int_equal(load(&c,
			      "[meraki]\nbase_url = HTTP://[::1]:8080/api/v1//\n"
			      "[callback]\npublic_url = http://127.0.0.1:9999/\n",
			      err),
			 0);
	assert_string_equal(c.base_url, "http://[::1]:8080/api/v1");
	assert_string_equal(c.public_url, "http://127.0.0.1:9999");
	config_release(&c);

	/* Plain http to loopback (a local simulator or tunnel) is allowed. */
	static const char *const loopback[] = {
		"http://127.0.0.1:8080/api/v1", "http://127.255.0.9/api/v1", "http://localhost:1/api/v1",
		"http://LocalHost/api/v1",      "http://[::1]/api/v1",       "http://[0:0:0:0:0:0:0:1]:80/x",
	};
	for (size_t i = 0; i < ELEMENTSOF(loopback); i++) {
		char text[256];

		snprintf(text, sizeof(text), "[meraki]\nbase_url = %s\n[callback]\npublic_url = https://h.example\n",
			 loopback[i]);
		assert_int_equal(load(&c, text, err), 0);
		config_release(&c);
	}
	/* public_url is not the key's way: plain http stays allowed there. */
	assert_int_equal(load(&c, "[callback]\npublic_url = http://bh.example.net/\n", err), 0);
	config_release(&c);
}

static void test_http_server_id_mode(void **state)
{
	char err[CONFIG_ERROR_MAX];
	struct config c;

	(void)state;
	/* With a Dashboard-managed receiver, public_url is optional. */
	assert_int_equal(load(&c,
			      "[callback]\nhttp_server_id = abc\n"
			      "shared_secret_file = /etc/blinkhook/secret\n",
			      err),
			 0);
	assert_null(c.public_url);
	assert_string_equal(c.http_server_id, "abc");
	assert_string_equal(c.shared_secret_file, "/etc/blinkhook/secret");
	config_release(&c);
}

static void count_changed(const char *section, const char *name, void *ud)
{
	(void)name;
	assert_string_equal(section, "store");
	(*(unsigned *)ud)++;
}

static void test_reload(void **state)
{
	char err[CONFIG_ERROR_MAX];
	struct config c;

	(void)state;
	assert_int_equal(load(&c, PUBLIC "listen = [::1]:1\n[queue]\ndir = /a\n", err), 0);
	/* Loading again over the result replaces (and frees) what was set. */
	{
		static const char text[] = PUBLIC "listen = unix:/run/x\n[queue]\ndir = /b\n";

		write_file(conf_path, text, sizeof(text) - 1, 0644);
	}
	assert_int_equal(config_load(&c, conf_path, err), 0);
	assert_true(c.listen.is_unix);
	assert_string_equal(c.queue_dir, "/b");
	config_release(&c);
}

/* [store]: the backend, its connection string, the node's name (the host
 * name by default) and the lease, range checked. */
static void test_store(void **state)
{
	char err[CONFIG_ERROR_MAX], host[256] = "";
	struct config c;

	(void)state;
	assert_int_equal(load(&c,
			      PUBLIC "[store]\nbackend = postgresql\n"
				     "conninfo = host=db1,db2 dbname=blinkhook target_session_attrs=read-write\n"
				     "node = node-1.a_b\nlease = 10s\n",
			      err),
			 0);
	assert_int_equal(c.store_backend, STORE_POSTGRESQL);
	assert_string_equal(c.store_conninfo, "host=db1,db2 dbname=blinkhook target_session_attrs=read-write");
	assert_string_equal(c.store_node, "node-1.a_b");
	assert_true(c.store_lease_usec == 10 * USEC_PER_SEC);
	config_release(&c);

	/* Without node, the host name up to its first dot; the conninfo may
	 * be left to the credential. */
	assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
	host[strcspn(host, ".")] = '\0';
	assert_int_equal(load(&c, PUBLIC "[store]\nbackend = postgresql\n", err), 0);
	assert_null(c.store_conninfo);
	assert_string_equal(c.store_node, host);
	config_release(&c);

	assert_int_equal(load(&c, PUBLIC "[store]\nbackend = log\nlease = 1s\n", err), 0);
	assert_int_equal(c.store_backend, STORE_LOG);
	assert_null(c.store_node);
	config_release(&c);

	assert_load_error(PUBLIC "[store]\nbackend = sqlite\n",
			  ":4: backend: \"sqlite\" is not one of: log, postgresql");
	assert_load_error(PUBLIC "[store]\nbackend = postgresql\nlease = 500ms\n",
			  ":5: lease: \"500ms\" is out of range (1s..1h)");
	assert_load_error(PUBLIC "[store]\nbackend = postgresql\nlease = 2h\n",
			  ":5: lease: \"2h\" is out of range (1s..1h)");
	assert_load_error(PUBLIC "[store]\nbackend = postgresql\nnode = a b\n",
			  ":5: node: \"a b\" is not a name of 1..63 letters, digits, '.', '_' or '-'");
	assert_load_error(PUBLIC "[store]\nnode = "
				 "n123456789012345678901234567890123456789012345678901234567890123\n",
			  ":4: node: \"n123456789012345678901234567890123456789012345678901234567890123\" is not a "
			  "name of 1..63 letters, digits, '.', '_' or '-'");
	assert_load_error(PUBLIC "[store]\nconninfo = host=db\n", ":4: conninfo: only used with backend = postgresql");
	assert_load_error(PUBLIC "[store]\nnode = a\n", ":4: node: only used with backend = postgresql");
	assert_load_error(PUBLIC "[store]\nconninfo = host=db\x01\nbackend = postgresql\n",
			  ":4: conninfo: contains control characters");
	assert_load_error(PUBLIC "[store]\ncolour = red\n", ":4: [store] colour: unknown key");
}

/* A reload keeps the store's backend, conninfo and node until a restart;
 * the lease changes at once. */
static void test_store_reload(void **state)
{
	char err[CONFIG_ERROR_MAX];
	struct config running, loaded;
	unsigned n_changed = 0;

	(void)state;
	assert_int_equal(load(&running, PUBLIC "[store]\nbackend = postgresql\nconninfo = host=a\nnode = n1\n", err),
			 0);
	assert_int_equal(load(&loaded, PUBLIC "[store]\nlease = 5s\n", err), 0);
	config_keep_restart_keys(&running, &loaded, count_changed, &n_changed);
	assert_int_equal(n_changed, 3);
	assert_int_equal(loaded.store_backend, STORE_POSTGRESQL);
	assert_string_equal(loaded.store_conninfo, "host=a");
	assert_string_equal(loaded.store_node, "n1");
	assert_true(loaded.store_lease_usec == 5 * USEC_PER_SEC);
	config_release(&running);
	config_release(&loaded);
}

static void test_unreadable(void **state)
{
	char err[CONFIG_ERROR_MAX], want[CONFIG_ERROR_MAX];
	_cleanup_free_ char *missing = tmp_path("missing.conf");
	struct config c;

	(void)state;
	assert_int_equal(config_init(&c), 0);
	assert_int_equal(config_load(&c, missing, err), -ENOENT);
	snprintf(want, sizeof(want), "%s: No such file or directory", missing);
	assert_string_equal(err, want);
	assert_int_equal(config_load(&c, tmpdir, err), -EINVAL);
	snprintf(want, sizeof(want), "%s: not a regular file", tmpdir);
	assert_string_equal(err, want);
	config_release(&c);
}

/* "unix" stands for a unix listen socket's peers: trusted only when listed,
 * never by default, and no address matches it. */
static void test_trusted_proxies_unix(void **state)
{
	char err[CONFIG_ERROR_MAX];
	struct config c;
	struct cidr u = {.prefix = 99}, lo4;
	uint8_t a4[4] = {127, 0, 0, 1}, a6[16] = {0};

	(void)state;
	assert_int_equal(netaddr_parse_cidr("unix", &u), 0);
	assert_int_equal(u.family, AF_UNIX);
	assert_int_equal(u.prefix, 0);
	assert_false(cidr_match(&u, AF_INET, a4));
	assert_false(cidr_match(&u, AF_INET6, a6));
	assert_false(cidr_match(&u, AF_UNIX, a6));
	assert_int_equal(netaddr_parse_cidr("UNIX", &u), -EINVAL);
	assert_int_equal(netaddr_parse_cidr("unix:/run/x.sock", &u), -EINVAL);
	assert_int_equal(netaddr_parse_cidr("unix/8", &u), -EINVAL);

	assert_int_equal(load(&c, PUBLIC "trusted_proxies = 127.0.0.1, unix\n", err), 0);
	assert_int_equal(c.n_trusted_proxies, 2);
	assert_int_equal(netaddr_parse_cidr("127.0.0.1", &lo4), 0);
	assert_memory_equal(&c.trusted_proxies[0], &lo4, sizeof(lo4));
	assert_int_equal(c.trusted_proxies[1].family, AF_UNIX);
	config_release(&c);

	/* The default trusts loopback addresses, not the unix socket. */
	assert_int_equal(load(&c, PUBLIC, err), 0);
	for (size_t i = 0; i < c.n_trusted_proxies; i++)
		assert_int_not_equal(c.trusted_proxies[i].family, AF_UNIX);
	config_release(&c);

	assert_load_error(PUBLIC "trusted_proxies = unix:/run/blinkhook/http.sock\n",
			  ":3: trusted_proxies: \"unix:/run/blinkhook/http.sock\" is not an IP address, "
			  "address/prefix or \"unix\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_full_file, key_env_teardown),
		cmocka_unit_test_teardown(test_defaults, key_env_teardown),
		cmocka_unit_test_teardown(test_errors, key_env_teardown),
		cmocka_unit_test_teardown(test_error_nul_byte, key_env_teardown),
		cmocka_unit_test_teardown(test_long_lines, key_env_teardown),
		cmocka_unit_test_teardown(test_comments_and_layout, key_env_teardown),
		cmocka_unit_test_teardown(test_indented_line_is_not_a_continuation, key_env_teardown),
		cmocka_unit_test_teardown(test_urls, key_env_teardown),
		cmocka_unit_test_teardown(test_store, key_env_teardown),
		cmocka_unit_test_teardown(test_store_reload, key_env_teardown),
		cmocka_unit_test_teardown(test_http_server_id_mode, key_env_teardown),
		cmocka_unit_test_teardown(test_reload, key_env_teardown),
		cmocka_unit_test_teardown(test_unreadable, key_env_teardown),
		cmocka_unit_test_teardown(test_trusted_proxies_unix, key_env_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, key_env_group_teardown);
}
