/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <cmocka.h>

#include "blinkhook/netaddr.h"
#include "blinkhook/util.h"

/* ---- listen ---- */

static void assert_listen(const char *s, bool is_unix, const char *host, unsigned port, const char *path)
{
	struct listen_addr l;

	assert_int_equal(netaddr_parse_listen(s, &l), 0);
	assert_int_equal(l.is_unix, is_unix);
	assert_int_equal(l.port, port);
	if (host)
		assert_string_equal(l.host, host);
	else
		assert_null(l.host);
	if (path)
		assert_string_equal(l.path, path);
	else
		assert_null(l.path);
	free(l.host);
	free(l.path);
}

static void test_parse_listen(void **state)
{
	char longpath[200];
	struct listen_addr l = {.port = 4242};

	(void)state;
	assert_listen("127.0.0.1:8787", false, "127.0.0.1", 8787, NULL);
	assert_listen("0.0.0.0:1", false, "0.0.0.0", 1, NULL);
	assert_listen("localhost:65535", false, "localhost", 65535, NULL);
	assert_listen("[::1]:8787", false, "::1", 8787, NULL);
	assert_listen("[::]:80", false, "::", 80, NULL);
	assert_listen("unix:/run/blinkhook.sock", true, NULL, 0, "/run/blinkhook.sock");

	assert_int_equal(netaddr_parse_listen("", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen(NULL, &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("localhost", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen(":8787", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("host:", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("host:x", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("host:-1", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("host:0", &l), -ERANGE);
	assert_int_equal(netaddr_parse_listen("host:65536", &l), -ERANGE);
	assert_int_equal(netaddr_parse_listen("::1:8787", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("[::1]", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("[::1]8787", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("[zz]:8787", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("[127.0.0.1]:8787", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("ho st:80", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("unix:", &l), -EINVAL);
	assert_int_equal(netaddr_parse_listen("unix:run/x.sock", &l), -EINVAL);

	longpath[0] = '/';
	memset(longpath + 1, 'p', 107);
	longpath[108] = '\0';
	{
		char s[220];

		snprintf(s, sizeof(s), "unix:%s", longpath);
		assert_int_equal(netaddr_parse_listen(s, &l), -ENAMETOOLONG);
		/* 107 characters fit sun_path with its NUL. */
		longpath[107] = '\0';
		snprintf(s, sizeof(s), "unix:%s", longpath);
		assert_listen(s, true, NULL, 0, longpath);
	}
	/* Untouched on failure. */
	assert_int_equal(l.port, 4242);
}

/* ---- CIDR ---- */

static void assert_cidr(const char *s, int family, const char *addr, unsigned prefix)
{
	struct cidr c;
	uint8_t want[16] = {0};

	assert_int_equal(netaddr_parse_cidr(s, &c), 0);
	assert_int_equal(c.family, family);
	assert_int_equal(c.prefix, prefix);
	assert_int_equal(inet_pton(family, addr, want), 1);
	assert_memory_equal(c.addr, want, family == AF_INET ? 4 : 16);
}

static void test_parse_cidr(void **state)
{
	struct cidr c = {.prefix = 99};

	(void)state;
	assert_cidr("127.0.0.1", AF_INET, "127.0.0.1", 32);
	assert_cidr("10.0.0.0/8", AF_INET, "10.0.0.0", 8);
	/* Host bits are masked away. */
	assert_cidr("10.1.2.3/8", AF_INET, "10.0.0.0", 8);
	assert_cidr("192.168.77.200/20", AF_INET, "192.168.64.0", 20);
	assert_cidr("0.0.0.0/0", AF_INET, "0.0.0.0", 0);
	assert_cidr("1.2.3.4/0", AF_INET, "0.0.0.0", 0);
	assert_cidr("::1", AF_INET6, "::1", 128);
	assert_cidr("fd00::/8", AF_INET6, "fd00::", 8);
	assert_cidr("fdab:cdef::1/12", AF_INET6, "fda0::", 12);
	assert_cidr("2001:db8::1/32", AF_INET6, "2001:db8::", 32);
	assert_cidr("::/0", AF_INET6, "::", 0);
	assert_cidr("::ffff:10.1.2.3/104", AF_INET6, "::ffff:10.0.0.0", 104);

	assert_int_equal(netaddr_parse_cidr("", &c), -EINVAL);
	assert_int_equal(netaddr_parse_cidr(NULL, &c), -EINVAL);
	assert_int_equal(netaddr_parse_cidr("/8", &c), -EINVAL);
	assert_int_equal(netaddr_parse_cidr("10.0.0.0/", &c), -EINVAL);
	assert_int_equal(netaddr_parse_cidr("10.0.0.0/33", &c), -EINVAL);
	assert_int_equal(netaddr_parse_cidr("10.0.0.0/-1", &c), -EINVAL);
	assert_int_equal(netaddr_parse_cidr("10.0.0.0/8/8", &c), -EINVAL);
	assert_int_equal(netaddr_parse_cidr("10.0.0/8", &c), -EINVAL);
	assert_int_equal(netaddr_parse_cidr("::/129", &c), -EINVAL);
	assert_int_equal(netaddr_parse_cidr("fe80::1%eth0", &c), -EINVAL);
	assert_int_equal(netaddr_parse_cidr("localhost", &c), -EINVAL);
	assert_int_equal(netaddr_parse_cidr(" 10.0.0.1", &c), -EINVAL);
	assert_int_equal(c.prefix, 99);
}

static bool match(const char *prefix, const char *addr)
{
	uint8_t a[16];
	struct cidr c;
	int family = strchr(addr, ':') ? AF_INET6 : AF_INET;

	assert_int_equal(netaddr_parse_cidr(prefix, &c), 0);
	assert_int_equal(inet_pton(family, addr, a), 1);
	return cidr_match(&c, family, a);
}

static void test_cidr_match(void **state)
{
	struct cidr c;
	uint8_t a[16] = {0};

	(void)state;
	assert_true(match("127.0.0.1", "127.0.0.1"));
	assert_false(match("127.0.0.1", "127.0.0.2"));
	assert_true(match("10.0.0.0/8", "10.255.1.2"));
	assert_false(match("10.0.0.0/8", "11.0.0.1"));
	assert_true(match("10.1.2.3/8", "10.9.9.9"));
	assert_true(match("192.168.64.0/20", "192.168.79.255"));
	assert_false(match("192.168.64.0/20", "192.168.80.0"));
	assert_true(match("0.0.0.0/0", "203.0.113.9"));

	assert_true(match("::1", "::1"));
	assert_false(match("::1", "::2"));
	assert_true(match("fd00::/8", "fdff:1::9"));
	assert_false(match("fd00::/8", "fe80::1"));
	assert_true(match("2001:db8::/33", "2001:db8:7fff::1"));
	assert_false(match("2001:db8::/33", "2001:db8:8000::1"));
	assert_true(match("::/0", "2001:db8::1"));

	/* IPv4-mapped IPv6 peers (a dual-stack socket) match IPv4 prefixes. */
	assert_true(match("127.0.0.1", "::ffff:127.0.0.1"));
	assert_true(match("10.0.0.0/8", "::ffff:10.20.30.40"));
	assert_false(match("10.0.0.0/8", "::ffff:11.20.30.40"));
	assert_true(match("0.0.0.0/0", "::ffff:1.2.3.4"));
	/* ... and a mapped prefix matches plain IPv4. */
	assert_true(match("::ffff:10.0.0.0/104", "10.1.1.1"));
	assert_false(match("::ffff:10.0.0.0/104", "11.1.1.1"));

	/* Families do not otherwise mix. */
	assert_false(match("0.0.0.0/0", "::1"));
	assert_false(match("0.0.0.0/0", "2001:db8::1"));
	assert_false(match("::1", "127.0.0.1"));
	/* "::" is not 0.0.0.0. */
	assert_false(match("0.0.0.0", "::"));

	assert_int_equal(netaddr_parse_cidr("10.0.0.0/8", &c), 0);
	assert_false(cidr_match(&c, AF_UNIX, a));
	assert_false(cidr_match(&c, AF_INET, NULL));
	assert_false(cidr_match(NULL, AF_INET, a));
}

/* ---- the X-Forwarded-For walk ---- */

/* A peer's socket address from its text: an IPv4 or IPv6 address, "unix"
 * for a unix socket's peer. */
static const struct sockaddr *peer_of(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strcmp(text, "unix") == 0) {
		ss->ss_family = AF_UNIX;
	} else if (strchr(text, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(40000);
		assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(40000);
		assert_int_equal(inet_pton(AF_INET, text, &s4->sin_addr), 1);
	}
	return (const struct sockaddr *)ss;
}

/* trusted: space-separated trusted_proxies entries. */
static size_t trusted_of(const char *trusted, struct cidr list[static 8])
{
	char buf[256], *save = NULL;
	size_t n = 0;

	assert_true(strlen(trusted) < sizeof(buf));
	strcpy(buf, trusted);
	for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		assert_true(n < 8);
		assert_int_equal(netaddr_parse_cidr(tok, &list[n]), 0);
		n++;
	}
	return n;
}

/* Asserts what xff_client() makes of a request from peer with header (NULL:
 * none) given trusted: the client it writes and whether that came from the
 * header. */
static void assert_xff(const char *peer, const char *trusted, const char *header, const char *want, int want_rc)
{
	struct sockaddr_storage ss;
	struct cidr list[8];
	size_t n = trusted_of(trusted, list);
	char buf[INET6_ADDRSTRLEN];

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(xff_client(header, peer ? peer_of(peer, &ss) : NULL, list, n, buf, sizeof(buf)), want_rc);
	assert_string_equal(buf, want);
}

static void test_xff_no_header(void **state)
{
	(void)state;
	assert_xff("127.0.0.1", "127.0.0.1", NULL, "127.0.0.1", 0);
	assert_xff("203.0.113.5", "127.0.0.1", NULL, "203.0.113.5", 0);
	assert_xff("2001:db8::5", "::1", NULL, "2001:db8::5", 0);
	assert_xff("unix", "unix", NULL, "local", 0);
	assert_xff(NULL, "127.0.0.1", "198.51.100.7", "unknown", 0);
	/* An empty header names nobody. */
	assert_xff("127.0.0.1", "127.0.0.1", "", "127.0.0.1", 0);
}

static void test_xff_one_hop(void **state)
{
	(void)state;
	assert_xff("127.0.0.1", "127.0.0.1", "198.51.100.7", "198.51.100.7", 1);
	assert_xff("127.0.0.1", "127.0.0.1", " \t198.51.100.7\t ", "198.51.100.7", 1);
	assert_xff("10.9.8.7", "10.0.0.0/8", "198.51.100.7", "198.51.100.7", 1);
	/* An IPv4-mapped peer on a dual-stack socket is the IPv4 proxy. */
	assert_xff("::ffff:127.0.0.1", "127.0.0.1", "198.51.100.7", "198.51.100.7", 1);
}

static void test_xff_several_hops(void **state)
{
	(void)state;
	/* The rightmost entry that is not a trusted proxy, whatever the
	 * client wrote further left. */
	assert_xff("127.0.0.1", "127.0.0.1 10.0.0.0/8", "1.1.1.1, 198.51.100.7, 10.0.0.2, 10.0.0.1", "198.51.100.7", 1);
	assert_xff("127.0.0.1", "127.0.0.1", "1.1.1.1, 198.51.100.7", "198.51.100.7", 1);
	/* Lines joined by ',' (one per proxy) walk as one list. */
	assert_xff("127.0.0.1", "127.0.0.1 10.0.0.1", "6.6.6.6,198.51.100.7,10.0.0.1", "198.51.100.7", 1);
	/* Every entry trusted: the leftmost stands. */
	assert_xff("127.0.0.1", "127.0.0.1 10.0.0.0/8", "10.0.0.3, 10.0.0.2", "10.0.0.3", 1);
	/* A forged "trusted" entry left of an untrusted one changes nothing. */
	assert_xff("127.0.0.1", "127.0.0.1 10.0.0.0/8", "10.0.0.9, 198.51.100.7", "198.51.100.7", 1);
}

static void test_xff_untrusted_peer(void **state)
{
	(void)state;
	/* Only a trusted proxy may say who the client is. */
	assert_xff("203.0.113.5", "127.0.0.1", "198.51.100.7", "203.0.113.5", 0);
	assert_xff("2001:db8::5", "127.0.0.1 ::1", "198.51.100.7", "2001:db8::5", 0);
	assert_xff("127.0.0.1", "", "198.51.100.7", "127.0.0.1", 0);
	/* A unix socket's peer is trusted only when "unix" is listed. */
	assert_xff("unix", "127.0.0.1 ::1", "198.51.100.7", "local", 0);
	assert_xff("unix", "unix", "198.51.100.7", "198.51.100.7", 1);
	assert_xff("unix", "127.0.0.1 unix", "2001:db8::7, 127.0.0.1", "2001:db8::7", 1);
}

static void test_xff_garbage(void **state)
{
	(void)state;
	/* Nothing readable at the right end: the peer stands. */
	assert_xff("127.0.0.1", "127.0.0.1", "unknown", "127.0.0.1", 0);
	assert_xff("127.0.0.1", "127.0.0.1", "198.51.100.7, garbage", "127.0.0.1", 0);
	assert_xff("127.0.0.1", "127.0.0.1", ",", "127.0.0.1", 0);
	assert_xff("127.0.0.1", "127.0.0.1", "198.51.100.7,", "127.0.0.1", 0);
	assert_xff("127.0.0.1", "127.0.0.1", "1.2.3", "127.0.0.1", 0);
	assert_xff("127.0.0.1", "127.0.0.1", "1.2.3.4\n", "127.0.0.1", 0);
	/* Garbage behind trusted hops: the last good answer stands. */
	assert_xff("127.0.0.1", "127.0.0.1 10.0.0.0/8", "198.51.100.7, junk, 10.0.0.1", "10.0.0.1", 1);
	assert_xff("127.0.0.1", "127.0.0.1 10.0.0.0/8", "198.51.100.7, , 10.0.0.1", "10.0.0.1", 1);
	/* Garbage left of the client is never read. */
	assert_xff("127.0.0.1", "127.0.0.1", "junk, 198.51.100.7", "198.51.100.7", 1);
}

static void test_xff_ipv6(void **state)
{
	(void)state;
	assert_xff("::1", "::1", "2001:db8::7", "2001:db8::7", 1);
	assert_xff("::1", "::1 fd00::/8", "2001:db8::7, fd00::2", "2001:db8::7", 1);
	assert_xff("127.0.0.1", "127.0.0.1", "2001:db8:0:0:0:0:0:7", "2001:db8:0:0:0:0:0:7", 1);
	assert_xff("::1", "::1", "::ffff:198.51.100.7", "::ffff:198.51.100.7", 1);
	/* A zone is not an address. */
	assert_xff("::1", "::1", "fe80::1%eth0", "::1", 0);
	/* The longest form of an address fits. */
	assert_xff("::1", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
		   "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 1);
}

static void test_xff_ports_and_brackets(void **state)
{
	(void)state;
	/* X-Forwarded-For carries bare addresses; anything else is not read. */
	assert_xff("127.0.0.1", "127.0.0.1", "198.51.100.7:4711", "127.0.0.1", 0);
	assert_xff("127.0.0.1", "127.0.0.1", "[2001:db8::7]", "127.0.0.1", 0);
	assert_xff("127.0.0.1", "127.0.0.1", "[2001:db8::7]:4711", "127.0.0.1", 0);
	assert_xff("127.0.0.1", "127.0.0.1 10.0.0.1", "198.51.100.7, 10.0.0.1:80", "127.0.0.1", 0);
}

static void test_xff_long_header(void **state)
{
	struct sockaddr_storage ss;
	struct cidr list[8];
	size_t n = trusted_of("127.0.0.1 10.0.0.0/8", list);
	struct strbuf sb = STRBUF_INIT;
	char buf[INET6_ADDRSTRLEN];

	(void)state;
	/* 100,000 forged entries on the left: only the right end is read. */
	for (unsigned i = 0; i < 100000; i++)
		assert_int_equal(strbuf_addf(&sb, "%u.%u.%u.%u, ", 1 + i % 200, i % 251, i % 13, i % 7), 0);
	assert_int_equal(strbuf_addstr(&sb, "198.51.100.7, 10.0.0.2"), 0);
	assert_int_equal(xff_client(sb.buf, peer_of("127.0.0.1", &ss), list, n, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "198.51.100.7");

	/* More trusted hops than the walk takes: it stops after XFF_MAX_HOPS
	 * entries, at a trusted one, and never reaches the forged client. */
	strbuf_reset(&sb);
	assert_int_equal(strbuf_addstr(&sb, "198.51.100.7"), 0);
	for (unsigned i = 0; i < XFF_MAX_HOPS + 5; i++)
		assert_int_equal(strbuf_addf(&sb, ", 10.0.%u.%u", i / 250, 1 + i % 250), 0);
	assert_int_equal(xff_client(sb.buf, peer_of("127.0.0.1", &ss), list, n, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "10.0.0.6"); /* the 33rd from the right of 38 */

	/* One entry longer than any address. */
	strbuf_reset(&sb);
	for (unsigned i = 0; i < 1000; i++)
		assert_int_equal(strbuf_addstr(&sb, "1"), 0);
	assert_int_equal(xff_client(sb.buf, peer_of("127.0.0.1", &ss), list, n, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "127.0.0.1");
	strbuf_release(&sb);
}

/* A buffer too small for the address found: the peer, cut, never a part of
 * a forwarded address. */
static void test_xff_small_buffer(void **state)
{
	struct sockaddr_storage ss;
	struct cidr list[8];
	size_t n = trusted_of("127.0.0.1", list);
	char buf[10];

	(void)state;
	assert_int_equal(xff_client("198.51.100.7", peer_of("127.0.0.1", &ss), list, n, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "127.0.0.1");
	assert_int_equal(xff_client("1.2.3.4", peer_of("127.0.0.1", &ss), list, n, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "1.2.3.4");
}

/* ---- Forwarded (RFC 7239) ---- */

/* As assert_xff(), for forwarded_client(). */
static void assert_fwd(const char *peer, const char *trusted, const char *header, const char *want, int want_rc)
{
	struct sockaddr_storage ss;
	struct cidr list[8];
	size_t n = trusted_of(trusted, list);
	char buf[INET6_ADDRSTRLEN];

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(forwarded_client(header, peer ? peer_of(peer, &ss) : NULL, list, n, buf, sizeof(buf)),
			 want_rc);
	assert_string_equal(buf, want);
}

static void test_fwd_forms(void **state)
{
	(void)state;
	assert_fwd("127.0.0.1", "127.0.0.1", NULL, "127.0.0.1", 0);
	assert_fwd("127.0.0.1", "127.0.0.1", "", "127.0.0.1", 0);
	/* RFC 7239's own examples. */
	assert_fwd("127.0.0.1", "127.0.0.1", "for=\"_gazonk\"", "_gazonk", 1);
	assert_fwd("127.0.0.1", "127.0.0.1", "For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17", 1);
	assert_fwd("127.0.0.1", "127.0.0.1", "for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60", 1);
	assert_fwd("127.0.0.1", "127.0.0.1", "for=192.0.2.43, for=198.51.100.17", "198.51.100.17", 1);
	/* Parameter names in any case, in any order, blanks around ';'. */
	assert_fwd("127.0.0.1", "127.0.0.1", "proto=https ; FOR=198.51.100.7 ;by=_proxy", "198.51.100.7", 1);
	assert_fwd("127.0.0.1", "127.0.0.1", "fOr=\"198.51.100.7\"", "198.51.100.7", 1);
	/* Ports, numeric or obfuscated; quoted pairs in a quoted string. */
	assert_fwd("127.0.0.1", "127.0.0.1", "for=\"198.51.100.7:8080\"", "198.51.100.7", 1);
	assert_fwd("127.0.0.1", "127.0.0.1", "for=\"[2001:db8::7]:_p0rt\"", "2001:db8::7", 1);
	assert_fwd("127.0.0.1", "127.0.0.1", "for=\"[2001:db8::7]\"", "2001:db8::7", 1);
	assert_fwd("127.0.0.1", "127.0.0.1", "for=\"198.51.100\\.7\"", "198.51.100.7", 1);
	/* A comma in a quoted string splits no element. */
	assert_fwd("127.0.0.1", "127.0.0.1", "for=198.51.100.7;ext=\"a, for=6.6.6.6\"", "198.51.100.7", 1);
	/* Empty elements are skipped (RFC 7230's #rule). */
	assert_fwd("127.0.0.1", "127.0.0.1", " , for=198.51.100.7 ,, ", "198.51.100.7", 1);
	/* An IPv6 peer, a unix socket's peer. */
	assert_fwd("::1", "::1", "for=\"[2001:db8::7]\"", "2001:db8::7", 1);
	assert_fwd("unix", "unix", "for=198.51.100.7", "198.51.100.7", 1);
}

static void test_fwd_walk(void **state)
{
	(void)state;
	/* The rightmost hop that is not a trusted proxy. */
	assert_fwd("127.0.0.1", "127.0.0.1 10.0.0.0/8",
		   "for=1.1.1.1, for=198.51.100.7, for=10.0.0.2, for=\"10.0.0.1:99\"", "198.51.100.7", 1);
	/* Lines joined by '\n' walk as one list. */
	assert_fwd("127.0.0.1", "127.0.0.1 10.0.0.1", "for=6.6.6.6\nfor=198.51.100.7\nfor=10.0.0.1", "198.51.100.7", 1);
	/* Every hop trusted: the leftmost stands. */
	assert_fwd("127.0.0.1", "127.0.0.1 10.0.0.0/8", "for=10.0.0.3, for=10.0.0.2", "10.0.0.3", 1);
	/* Only a trusted proxy may say who the client is. */
	assert_fwd("203.0.113.5", "127.0.0.1", "for=198.51.100.7", "203.0.113.5", 0);
	assert_fwd("unix", "127.0.0.1", "for=198.51.100.7", "local", 0);
	assert_fwd(NULL, "127.0.0.1", "for=198.51.100.7", "unknown", 0);
	/* "unknown" and obfuscated identifiers stop the walk as an untrusted
	 * hop does, whatever stands further left. */
	assert_fwd("127.0.0.1", "127.0.0.1 10.0.0.0/8", "for=198.51.100.7, for=unknown, for=10.0.0.1", "unknown", 1);
	assert_fwd("127.0.0.1", "127.0.0.1", "for=198.51.100.7, for=UNKNOWN", "UNKNOWN", 1);
	assert_fwd("127.0.0.1", "127.0.0.1", "for=198.51.100.7, for=\"_hidden:_port\"", "_hidden", 1);
	assert_fwd("127.0.0.1", "127.0.0.1", "for=198.51.100.7, for=\"unknown:4711\"", "unknown", 1);
}

static void test_fwd_garbage(void **state)
{
	(void)state;
	/* Garbage ends the walk: the last good answer stands, as with
	 * X-Forwarded-For. */
	assert_fwd("127.0.0.1", "127.0.0.1", "for=198.51.100.7, garbage", "127.0.0.1", 0);
	assert_fwd("127.0.0.1", "127.0.0.1 10.0.0.1", "for=198.51.100.7, junk, for=10.0.0.1", "10.0.0.1", 1);
	/* Garbage left of the client changes nothing. */
	assert_fwd("127.0.0.1", "127.0.0.1", "for=\"x, for=198.51.100.7", "127.0.0.1", 0);
	assert_fwd("127.0.0.1", "127.0.0.1", "junk;;, for=198.51.100.7", "198.51.100.7", 1);
	/* An open quote ends at its line's end, not later. */
	assert_fwd("127.0.0.1", "127.0.0.1", "for=\"6.6.6.6\nfor=198.51.100.7", "198.51.100.7", 1);
	/* Forms RFC 7239 does not allow. */
	static const char *const bad[] = {
		"for=198.51.100.7:80",                                     /* ':' outside quotes */
		"for=[2001:db8::7]",                                       /* '[' outside quotes */
		"for=\"2001:db8::7\"",                                     /* IPv6 without brackets */
		"for=\"[198.51.100.7]\"",                                  /* IPv4 in brackets */
		"for=\"[2001:db8::7]:\"",                                  /* empty port */
		"for=\"198.51.100.7:123456\"",                             /* six digits */
		"for=\"198.51.100.7:8x\"",                                 /* not a port */
		"for=\"[fe80::1%eth0]\"",                                  /* a zone */
		"for=_",                                                   /* an empty obfuscated name */
		"for=\"_a b\"",                                            /* not an obfuscated name */
		"for=",                                                    /* no value */
		"for=\"198.51.100.7",                                      /* no closing quote */
		"for=\"198.51.\001100.7\"",                                /* a control character */
		"for=198.51.100.7;for=198.51.100.8",                       /* two "for" */
		"proto=https",                                             /* no "for" */
		"for =198.51.100.7",                                       /* a blank before '=' */
		"=198.51.100.7",                                           /* no name */
		"for=198.51.100.7 proto=http",                             /* no ';' */
		"for=198.51.100.7;",                                       /* an empty pair */
		"for=localhost",                                           /* a name, not an address */
		"for=\"_a234567890123456789012345678901234567890123456\"", /* longer than any address */
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char h[128];

		assert_fwd("127.0.0.1", "127.0.0.1", bad[i], "127.0.0.1", 0);
		snprintf(h, sizeof(h), "for=10.0.0.1, %s", bad[i]);
		assert_fwd("127.0.0.1", "127.0.0.1", h, "127.0.0.1", 0);
	}
}

static void test_fwd_long_header(void **state)
{
	struct strbuf sb = STRBUF_INIT;

	(void)state;
	/* Many hops of the client's own, then the proxy's: the walk reads
	 * the right end only, and at most XFF_MAX_HOPS trusted hops. */
	for (int i = 0; i < 5000; i++)
		assert_int_equal(strbuf_addf(&sb, "for=\"[2001:db8::%x]:%d\", ", i, i), 0);
	assert_int_equal(strbuf_addstr(&sb, "for=198.51.100.7"), 0);
	assert_fwd("127.0.0.1", "127.0.0.1", sb.buf, "198.51.100.7", 1);
	strbuf_release(&sb);

	for (int i = 0; i < 40; i++)
		assert_int_equal(strbuf_addf(&sb, "%sfor=10.0.0.%d", i ? "," : "", i + 1), 0);
	/* 40 trusted hops: the walk gives up after 33, at the 33rd from the right. */
	assert_fwd("127.0.0.1", "127.0.0.1 10.0.0.0/8", sb.buf, "10.0.0.8", 1);
	strbuf_release(&sb);
}

/* As assert_xff(), for proxied_client() with both headers. */
static void assert_both(const char *xff, const char *fwd, const char *want, int want_rc)
{
	struct sockaddr_storage ss;
	struct cidr list[8];
	size_t n = trusted_of("127.0.0.1", list);
	char buf[INET6_ADDRSTRLEN];

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(proxied_client(xff, fwd, peer_of("127.0.0.1", &ss), list, n, buf, sizeof(buf)), want_rc);
	assert_string_equal(buf, want);
}

static void test_proxied_client(void **state)
{
	(void)state;
	/* One header: its walk. */
	assert_both(NULL, NULL, "127.0.0.1", 0);
	assert_both("198.51.100.7", NULL, "198.51.100.7", 1);
	assert_both(NULL, "for=198.51.100.7", "198.51.100.7", 1);
	/* Both, agreeing (however written): that client. */
	assert_both("198.51.100.7", "for=\"198.51.100.7:4711\"", "198.51.100.7", 1);
	assert_both("2001:db8::7", "for=\"[2001:DB8:0::7]\"", "2001:db8::7", 1);
	assert_both("6.6.6.6, 198.51.100.7", "for=198.51.100.7", "198.51.100.7", 1);
	/* Both, disagreeing: a proxy wrote one, the client the other, and
	 * the client is not believed either way. */
	assert_both("198.51.100.7", "for=203.0.113.9", "127.0.0.1", 0);
	assert_both("203.0.113.9", "for=198.51.100.7", "127.0.0.1", 0);
	assert_both("198.51.100.7", "for=unknown", "127.0.0.1", 0);
	assert_both("198.51.100.7", "garbage", "127.0.0.1", 0);
	/* A header that names nothing is as none. */
	assert_both("198.51.100.7", " , ", "198.51.100.7", 1);
	assert_both(" ", "for=198.51.100.7", "198.51.100.7", 1);
	assert_both("", "", "127.0.0.1", 0);
}

static void test_peer_to_string(void **state)
{
	struct sockaddr_storage ss;
	char buf[INET6_ADDRSTRLEN];

	(void)state;
	peer_to_string(peer_of("192.0.2.1", &ss), buf, sizeof(buf));
	assert_string_equal(buf, "192.0.2.1");
	peer_to_string(peer_of("2001:db8::1", &ss), buf, sizeof(buf));
	assert_string_equal(buf, "2001:db8::1");
	peer_to_string(peer_of("unix", &ss), buf, sizeof(buf));
	assert_string_equal(buf, "local");
	peer_to_string(NULL, buf, sizeof(buf));
	assert_string_equal(buf, "unknown");
}

static void test_cidr_list_match_peer(void **state)
{
	struct sockaddr_storage ss;
	struct cidr list[8];
	size_t n = trusted_of("10.0.0.0/8 fd00::/8", list);

	(void)state;
	assert_true(cidr_list_match_peer(list, n, peer_of("10.1.2.3", &ss)));
	assert_true(cidr_list_match_peer(list, n, peer_of("::ffff:10.1.2.3", &ss)));
	assert_true(cidr_list_match_peer(list, n, peer_of("fd12::1", &ss)));
	assert_false(cidr_list_match_peer(list, n, peer_of("11.1.2.3", &ss)));
	assert_false(cidr_list_match_peer(list, n, peer_of("unix", &ss)));
	assert_false(cidr_list_match_peer(list, n, NULL));
	assert_false(cidr_list_match_peer(NULL, 0, peer_of("10.1.2.3", &ss)));
	n = trusted_of("unix", list);
	assert_true(cidr_list_match_peer(list, n, peer_of("unix", &ss)));
	assert_false(cidr_list_match_peer(list, n, peer_of("10.1.2.3", &ss)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_listen),       cmocka_unit_test(test_parse_cidr),
		cmocka_unit_test(test_cidr_match),         cmocka_unit_test(test_cidr_list_match_peer),
		cmocka_unit_test(test_peer_to_string),     cmocka_unit_test(test_xff_no_header),
		cmocka_unit_test(test_xff_one_hop),        cmocka_unit_test(test_xff_several_hops),
		cmocka_unit_test(test_xff_untrusted_peer), cmocka_unit_test(test_xff_garbage),
		cmocka_unit_test(test_xff_ipv6),           cmocka_unit_test(test_xff_ports_and_brackets),
		cmocka_unit_test(test_xff_long_header),    cmocka_unit_test(test_xff_small_buffer),
		cmocka_unit_test(test_fwd_forms),          cmocka_unit_test(test_fwd_walk),
		cmocka_unit_test(test_fwd_garbage),        cmocka_unit_test(test_fwd_long_header),
		cmocka_unit_test(test_proxied_client),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
