/* SPDX-License-Identifier: MIT */
/*
 * netaddr — addresses as the config writes them and as peers present them:
 * listen addresses, address prefixes (trusted_proxies), and the client a
 * request came from behind trusted proxies (the X-Forwarded-For and
 * Forwarded walks).
 *
 * Pure functions on text and socket addresses: nothing here reads a file,
 * allocates beyond the strings it returns, or logs.
 */
#ifndef BLINKHOOK_NETADDR_H
#define BLINKHOOK_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

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

/* Parses a listen value ("127.0.0.1:8787", "[::1]:8787", "unix:/run/x.sock"). */
int netaddr_parse_listen(const char *s, struct listen_addr *ret);
/* Parses one trusted_proxies entry. */
int netaddr_parse_cidr(const char *s, struct cidr *ret);
/* Whether addr (4 or 16 bytes in network order, of family) lies in c.  An
 * IPv4-mapped IPv6 address matches IPv4 prefixes. */
bool cidr_match(const struct cidr *c, int family, const void *addr);
/* Whether addr lies in any of the n prefixes of list. */
bool cidr_list_match(const struct cidr *list, size_t n, int family, const void *addr);
/* Whether a peer is in list: an IPv4 or IPv6 peer by its address, a peer of
 * a unix socket (which has none) when list holds "unix"; NULL never is. */
bool cidr_list_match_peer(const struct cidr *list, size_t n, const struct sockaddr *peer);

/* A peer as text for logs: its address, "local" for a unix socket's peer,
 * "unknown" for NULL.  INET6_ADDRSTRLEN bytes always suffice. */
void peer_to_string(const struct sockaddr *peer, char *buf, size_t len);

/* The longest X-Forwarded-For walk: every trusted_proxies entry a hop of its
 * own, then the client. */
#define XFF_MAX_HOPS 33

/*
 * The client of a request: writes the peer (as peer_to_string does) into
 * buf, or, when the peer is in trusted and header (the X-Forwarded-For
 * values joined by ',', or NULL) is present, the rightmost entry that is not
 * itself in trusted, as it was written.  Entries further left were written
 * by whoever sent the request and prove nothing, so only the right end is
 * read, however long the header, at most XFF_MAX_HOPS entries.  An entry
 * that is not a bare IPv4 or IPv6 address (with a port, in brackets,
 * garbage, empty) ends the walk: the last address found stands.  Returns 1
 * when buf holds an address from the header, 0 when it holds the peer.
 * len of INET6_ADDRSTRLEN or more always fits.
 */
int xff_client(const char *header, const struct sockaddr *peer, const struct cidr *trusted, size_t n_trusted, char *buf,
	       size_t len);

/*
 * The same for an RFC 7239 Forwarded header: header holds its lines joined
 * by '\n' (a line's error, an open quote, does not reach into the next) or
 * by ','.  Elements are split at the commas outside quoted strings and read
 * from the right, at most XFF_MAX_HOPS of them; in each, the "for" parameter
 * (name in any case, value a token or a quoted string) names the hop:
 * "192.0.2.60", "192.0.2.60:4711" and "[2001:db8::1]:4711" name an address
 * (written to buf without port and brackets), walked on as in xff_client();
 * "unknown" or an obfuscated identifier ("_hidden", port optional) is a hop
 * the proxy will not name: the walk stops there and buf holds it as written,
 * as it would an untrusted address.  An element that breaks RFC 7239's
 * syntax, or has no "for" or two, ends the walk as garbage does in
 * xff_client(): the last good answer stands.  Empty elements are skipped.
 * Returns 1 when buf holds a name from the header, 0 when it holds the peer.
 */
int forwarded_client(const char *header, const struct sockaddr *peer, const struct cidr *trusted, size_t n_trusted,
		     char *buf, size_t len);

/*
 * The client when a request may carry either header or both (NULL: absent):
 * with one, what its walk finds.  With both, each is walked and the answer
 * stands only if the two agree (the same address, or the same text); if they
 * differ, a proxy wrote one and the client the other, and nothing says which:
 * the client is the peer.  A proxy that writes one header should remove the
 * other from what its clients send.  Returns as xff_client() does.
 */
int proxied_client(const char *xff, const char *forwarded, const struct sockaddr *peer, const struct cidr *trusted,
		   size_t n_trusted, char *buf, size_t len);

#endif
