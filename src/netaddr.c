/* SPDX-License-Identifier: MIT */
/*
 * netaddr — see include/blinkhook/netaddr.h for the contract.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "blinkhook/netaddr.h"
#include "blinkhook/util.h"

int netaddr_parse_listen(const char *s, struct listen_addr *ret)
{
	_cleanup_free_ char *host = NULL;
	const char *colon;
	uint64_t port;
	int r;

	if (!s)
		return -EINVAL;

	if (strncmp(s, "unix:", 5) == 0) {
		const char *path = s + 5;
		char *p;

		if (path[0] != '/' || str_has_control(path))
			return -EINVAL;
		if (strlen(path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
			return -ENAMETOOLONG;
		p = strdup(path);
		if (!p)
			return -ENOMEM;
		*ret = (struct listen_addr){.is_unix = true, .path = p};
		return 0;
	}

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		struct in6_addr a6;

		if (!close || close[1] != ':')
			return -EINVAL;
		host = strndup(s + 1, (size_t)(close - s - 1));
		if (!host)
			return -ENOMEM;
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return -EINVAL;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || colon == s)
			return -EINVAL;
		/* A bare IPv6 address needs brackets, or its port is ambiguous. */
		for (const char *h = s; h < colon; h++)
			if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') ||
			      *h == '.' || *h == '-'))
				return -EINVAL;
		host = strndup(s, (size_t)(colon - s));
		if (!host)
			return -ENOMEM;
	}

	r = parse_uint64(colon + 1, &port);
	if (r == -ERANGE || (r >= 0 && (port < 1 || port > 65535)))
		return -ERANGE;
	if (r < 0)
		return r;

	*ret = (struct listen_addr){.host = TAKE_PTR(host), .port = (uint16_t)port};
	return 0;
}

static void mask_host_bits(uint8_t *addr, size_t len, unsigned prefix)
{
	for (size_t i = 0; i < len; i++) {
		unsigned bits = prefix > i * 8 ? prefix - (unsigned)i * 8 : 0;

		if (bits < 8)
			addr[i] &= (uint8_t)(0xff00u >> bits);
	}
}

int netaddr_parse_cidr(const char *s, struct cidr *ret)
{
	char buf[INET6_ADDRSTRLEN];
	struct cidr c = {0};
	const char *slash;
	size_t len;
	unsigned max;

	if (!s)
		return -EINVAL;
	/* The peers of a unix listen socket, which have no address. */
	if (strcmp(s, "unix") == 0) {
		*ret = (struct cidr){.family = AF_UNIX};
		return 0;
	}
	slash = strchr(s, '/');
	len = slash ? (size_t)(slash - s) : strlen(s);
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';

	if (inet_pton(AF_INET, buf, c.addr) == 1) {
		c.family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c.addr) == 1) {
		c.family = AF_INET6;
		max = 128;
	} else
		return -EINVAL;

	c.prefix = max;
	if (slash) {
		uint64_t p;

		if (parse_uint64(slash + 1, &p) < 0 || p > max)
			return -EINVAL;
		c.prefix = (unsigned)p;
	}
	/* "10.1.2.3/8" means 10.0.0.0/8: a prefix written with its host's
	 * own address is a common shorthand, not worth an error. */
	mask_host_bits(c.addr, max / 8, c.prefix);

	*ret = c;
	return 0;
}

/* IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so that one comparison covers
 * a v4 peer, a v4 peer seen on a dual-stack socket, and mapped prefixes. */
static void to_v6(int family, const uint8_t *addr, unsigned prefix, uint8_t out[16], unsigned *ret_prefix)
{
	if (family == AF_INET) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, addr, 4);
		*ret_prefix = 96 + prefix;
	} else {
		memcpy(out, addr, 16);
		*ret_prefix = prefix;
	}
}

bool cidr_match(const struct cidr *c, int family, const void *addr)
{
	uint8_t net[16], a[16];
	unsigned prefix, unused;

	if (!c || !addr || (family != AF_INET && family != AF_INET6) || (c->family != AF_INET && c->family != AF_INET6))
		return false;

	to_v6(c->family, c->addr, c->prefix, net, &prefix);
	to_v6(family, addr, 0, a, &unused);
	mask_host_bits(a, sizeof(a), prefix);
	mask_host_bits(net, sizeof(net), prefix);
	return memcmp(a, net, sizeof(a)) == 0;
}

bool cidr_list_match(const struct cidr *list, size_t n, int family, const void *addr)
{
	assert(list || n == 0);
	for (size_t i = 0; i < n; i++)
		if (cidr_match(&list[i], family, addr))
			return true;
	return false;
}

bool cidr_list_match_peer(const struct cidr *list, size_t n, const struct sockaddr *peer)
{
	assert(list || n == 0);
	if (!peer)
		return false;
	if (peer->sa_family == AF_INET)
		return cidr_list_match(list, n, AF_INET, &((const struct sockaddr_in *)(const void *)peer)->sin_addr);
	if (peer->sa_family == AF_INET6)
		return cidr_list_match(list, n, AF_INET6,
				       &((const struct sockaddr_in6 *)(const void *)peer)->sin6_addr);
	if (peer->sa_family == AF_UNIX) {
		/* A unix socket's peers have no address: trusted only when
		 * trusted_proxies says "unix". */
		for (size_t i = 0; i < n; i++)
			if (list[i].family == AF_UNIX)
				return true;
	}
	return false;
}

void peer_to_string(const struct sockaddr *peer, char *buf, size_t len)
{
	assert(buf && len > 0);
	if (!peer) {
		snprintf(buf, len, "unknown");
		return;
	}
	if (peer->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)peer)->sin_addr, buf, (socklen_t)len);
	else if (peer->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)peer)->sin6_addr, buf, (socklen_t)len);
	else
		snprintf(buf, len, "local");
}

int xff_client(const char *header, const struct sockaddr *peer, const struct cidr *trusted, size_t n_trusted, char *buf,
	       size_t len)
{
	const char *end;
	int found = 0;

	assert(buf && len > 0);
	peer_to_string(peer, buf, len);
	if (!header || !cidr_list_match_peer(trusted, n_trusted, peer))
		return 0;

	end = header + strlen(header);
	/* At most a few hops are ever trusted; the walk stops at the first
	 * entry that is not a trusted proxy. */
	for (unsigned hops = 0; hops < XFF_MAX_HOPS && end > header; hops++) {
		const char *comma = memrchr(header, ',', (size_t)(end - header));
		const char *item = comma ? comma + 1 : header, *e = end;
		char text[INET6_ADDRSTRLEN];
		unsigned char a[16];
		size_t n;
		int fam;

		while (item < e && (*item == ' ' || *item == '\t'))
			item++;
		while (e > item && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		n = (size_t)(e - item);
		if (n >= sizeof(text))
			break; /* longer than any address: garbage */
		memcpy(text, item, n);
		text[n] = '\0';
		if (inet_pton(AF_INET, text, a) == 1)
			fam = AF_INET;
		else if (inet_pton(AF_INET6, text, a) == 1)
			fam = AF_INET6;
		else
			break; /* garbage: keep the last good answer */
		if (n >= len)
			break; /* cannot be told whole: the last good answer */
		memcpy(buf, text, n + 1);
		found = 1;
		if (!cidr_list_match(trusted, n_trusted, fam, a) || !comma)
			break;
		end = comma;
	}
	return found;
}

/* ---- RFC 7239 Forwarded ---- */

/* RFC 7230's tchar: what a token is made of. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* RFC 7239's obfnode and obfport: "_" 1*(ALPHA / DIGIT / "." / "_" / "-"). */
static bool is_obfuscated(const char *s)
{
	if (s[0] != '_' || !s[1])
		return false;
	for (s++; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
		      *s == '_' || *s == '-'))
			return false;
	return true;
}

static bool is_node_port(const char *s)
{
	size_t n = strspn(s, "0123456789");

	if (n > 0)
		return n <= 5 && !s[n];
	return is_obfuscated(s);
}

/* One element's "for", as the walk needs it. */
struct hop {
	enum { HOP_BAD, HOP_ADDR, HOP_NAME } kind;
	int family;
	unsigned char addr[16];
	char text[INET6_ADDRSTRLEN];
};

/* A decoded "for" value: nodename [":" node-port], where nodename is an
 * IPv4 address, an IPv6 address in brackets, "unknown" or obfuscated. */
static void parse_node(const char *v, struct hop *h)
{
	const char *rest;
	size_t n;

	h->kind = HOP_BAD;
	if (v[0] == '[') {
		const char *close = strchr(v, ']');

		if (!close || (n = (size_t)(close - v - 1)) >= sizeof(h->text))
			return;
		memcpy(h->text, v + 1, n);
		h->text[n] = '\0';
		if (inet_pton(AF_INET6, h->text, h->addr) != 1)
			return;
		h->family = AF_INET6;
		rest = close + 1;
	} else {
		n = strcspn(v, ":");
		if (n == 0 || n >= sizeof(h->text))
			return;
		memcpy(h->text, v, n);
		h->text[n] = '\0';
		if (inet_pton(AF_INET, h->text, h->addr) == 1)
			h->family = AF_INET;
		else if (strcasecmp(h->text, "unknown") == 0 || is_obfuscated(h->text))
			h->family = AF_UNSPEC;
		else
			return;
		rest = v + n;
	}
	if (*rest == ':' ? !is_node_port(rest + 1) : *rest != '\0')
		return;
	h->kind = h->family == AF_UNSPEC ? HOP_NAME : HOP_ADDR;
}

static const char *skip_ows(const char *s, const char *e)
{
	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	return s;
}

/* One element, s..e without its comma: pairs token "=" (token or quoted
 * string) joined by ';' (with optional blanks around it), exactly one "for". */
static void parse_element(const char *s, const char *e, struct hop *h)
{
	struct hop node = {.kind = HOP_BAD};
	bool have_for = false;

	h->kind = HOP_BAD;
	for (;;) {
		const char *name = s;
		char val[64]; /* longer than any node worth reading */
		size_t vlen = 0;
		bool too_long = false, is_for;

		while (s < e && is_tchar((unsigned char)*s))
			s++;
		if (s == name || s == e || *s != '=')
			return;
		is_for = s - name == 3 && strncasecmp(name, "for", 3) == 0;
		s++;
		if (s < e && *s == '"') {
			for (s++;;) {
				unsigned char c;

				if (s == e)
					return; /* no closing quote */
				c = (unsigned char)*s++;
				if (c == '"')
					break;
				if (c == '\\') {
					if (s == e)
						return;
					c = (unsigned char)*s++;
				}
				/* qdtext and quoted-pair: no control but HTAB. */
				if ((c < 0x20 && c != '\t') || c == 0x7f)
					return;
				if (vlen < sizeof(val) - 1)
					val[vlen++] = (char)c;
				else
					too_long = true;
			}
		} else {
			const char *v = s;

			while (s < e && is_tchar((unsigned char)*s)) {
				if (vlen < sizeof(val) - 1)
					val[vlen++] = *s;
				else
					too_long = true;
				s++;
			}
			if (s == v)
				return;
		}
		val[vlen] = '\0';
		if (is_for) {
			if (have_for)
				return; /* each parameter at most once */
			have_for = true;
			if (!too_long)
				parse_node(val, &node);
		}
		s = skip_ows(s, e);
		if (s == e)
			break;
		if (*s != ';')
			return;
		s = skip_ows(s + 1, e);
	}
	if (have_for)
		*h = node;
}

/* Whether a list header names nothing: blanks, commas and line ends only. */
static bool list_is_blank(const char *s)
{
	return s[strspn(s, " \t,\n")] == '\0';
}

int forwarded_client(const char *header, const struct sockaddr *peer, const struct cidr *trusted, size_t n_trusted,
		     char *buf, size_t len)
{
	/* The last XFF_MAX_HOPS non-empty elements, in a ring: only they can
	 * matter, but a quoted string may hold a comma, so the split runs
	 * from the left over the whole header. */
	struct {
		const char *s, *e;
	} ring[XFF_MAX_HOPS];
	size_t count = 0;
	int found = 0;

	assert(buf && len > 0);
	peer_to_string(peer, buf, len);
	if (!header || !cidr_list_match_peer(trusted, n_trusted, peer))
		return 0;

	for (const char *p = header; *p;) {
		const char *s = p, *e;
		bool quoted = false;

		/* To the next comma outside a quoted string, or the line's end
		 * (which ends an open quote too). */
		while (*p && *p != '\n' && (quoted || *p != ',')) {
			if (quoted && *p == '\\' && p[1] && p[1] != '\n')
				p++;
			else if (*p == '"')
				quoted = !quoted;
			p++;
		}
		e = p;
		if (*p)
			p++;
		s = skip_ows(s, e);
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (s == e)
			continue;
		ring[count % XFF_MAX_HOPS].s = s;
		ring[count % XFF_MAX_HOPS].e = e;
		count++;
	}

	for (size_t i = 0; i < XFF_MAX_HOPS && i < count; i++) {
		size_t k = (count - 1 - i) % XFF_MAX_HOPS;
		struct hop h;
		size_t n;

		parse_element(ring[k].s, ring[k].e, &h);
		if (h.kind == HOP_BAD)
			break; /* garbage: keep the last good answer */
		n = strlen(h.text);
		if (n >= len)
			break; /* cannot be told whole: the last good answer */
		memcpy(buf, h.text, n + 1);
		found = 1;
		/* "unknown" or obfuscated: the proxy will not say who sent it. */
		if (h.kind == HOP_NAME || !cidr_list_match(trusted, n_trusted, h.family, h.addr))
			break;
	}
	return found;
}

/* Whether two answers name the same client: the same address however
 * written, or the same text. */
static bool same_client(const char *a, const char *b)
{
	unsigned char x[16], y[16];

	if (inet_pton(AF_INET, a, x) == 1 && inet_pton(AF_INET, b, y) == 1)
		return memcmp(x, y, 4) == 0;
	if (inet_pton(AF_INET6, a, x) == 1 && inet_pton(AF_INET6, b, y) == 1)
		return memcmp(x, y, 16) == 0;
	return strcmp(a, b) == 0;
}

int proxied_client(const char *xff, const char *forwarded, const struct sockaddr *peer, const struct cidr *trusted,
		   size_t n_trusted, char *buf, size_t len)
{
	/* No answer of forwarded_client() is longer than a parameter value
	 * it reads (63 bytes). */
	char other[64];
	int r, r2;

	assert(buf && len > 0);
	/* A header that names nothing is as good as none. */
	if (forwarded && list_is_blank(forwarded))
		forwarded = NULL;
	if (xff && forwarded && list_is_blank(xff))
		xff = NULL;
	if (!forwarded)
		return xff_client(xff, peer, trusted, n_trusted, buf, len);
	if (!xff)
		return forwarded_client(forwarded, peer, trusted, n_trusted, buf, len);

	r = xff_client(xff, peer, trusted, n_trusted, buf, len);
	r2 = forwarded_client(forwarded, peer, trusted, n_trusted, other, len < sizeof(other) ? len : sizeof(other));
	if (r == r2 && same_client(buf, other))
		return r;
	/* They disagree: one of them is the client's word. */
	peer_to_string(peer, buf, len);
	return 0;
}
