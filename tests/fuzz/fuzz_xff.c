/* SPDX-License-Identifier: MIT */
/*
 * fuzz_xff — xff_client(), the walk over X-Forwarded-For, on the input as
 * the header.  The first byte picks the peer (IPv4, IPv6, IPv4-mapped, a
 * unix socket's, none) and whether it and a few prefixes are trusted; the
 * rest, up to its first NUL, is the header.
 *
 * Checked against a second, naive walk (split at every ',', trim, read from
 * the right): the same answer; an untrusted peer always yields the peer; an
 * answer from the header is an address that stood in it whole, and every
 * entry right of it is a trusted proxy's address.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "blinkhook/netaddr.h"
#include "fuzz.h"

#define MAX_ITEMS 4096

/* The reference: every item of the header, trimmed, from the right. */
static int naive_walk(const char *header, const struct cidr *list, size_t n, char *out, size_t len)
{
	static char copy[1 << 16];
	char *items[MAX_ITEMS];
	size_t count = 0, hlen = strlen(header);
	int found = 0;

	if (hlen >= sizeof(copy))
		return -1; /* not compared */
	memcpy(copy, header, hlen + 1);
	items[count++] = copy;
	for (char *p = copy; *p; p++)
		if (*p == ',') {
			if (count == MAX_ITEMS)
				return -1;
			*p = '\0';
			items[count++] = p + 1;
		}
	for (size_t hops = 0; hops < XFF_MAX_HOPS && hops < count; hops++) {
		char *item = items[count - 1 - hops], *e;
		unsigned char a[16];
		int fam;

		while (*item == ' ' || *item == '\t')
			item++;
		e = item + strlen(item);
		while (e > item && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		if (inet_pton(AF_INET, item, a) == 1)
			fam = AF_INET;
		else if (inet_pton(AF_INET6, item, a) == 1)
			fam = AF_INET6;
		else
			break;
		if (strlen(item) >= len)
			break;
		snprintf(out, len, "%s", item);
		found = 1;
		if (!cidr_list_match(list, n, fam, a))
			break;
	}
	return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss;
	const struct sockaddr *peer = NULL;
	struct cidr list[FUZZ_PREFIXES];
	char buf[INET6_ADDRSTRLEN], want[INET6_ADDRSTRLEN], peer_text[INET6_ADDRSTRLEN];
	size_t n;
	unsigned pick;
	char *header;
	int r, ref;

	if (size < 1)
		return 0;
	pick = data[0];
	n = fuzz_trusted(pick, list);
	fuzz_make_peer(pick, &ss, &peer);
	header = fuzz_strndup(data + 1, size - 1);

	peer_to_string(peer, peer_text, sizeof(peer_text));
	r = xff_client(size > 1 ? header : NULL, peer, list, n, buf, sizeof(buf));
	FUZZ_CHECK(r == 0 || r == 1, "returned %d", r);
	FUZZ_CHECK(memchr(buf, '\0', sizeof(buf)), "answer not terminated");
	if (!cidr_list_match_peer(list, n, peer) || size == 1)
		FUZZ_CHECK(r == 0, "an untrusted peer's header was read");
	if (r == 0)
		FUZZ_CHECK(strcmp(buf, peer_text) == 0, "\"%s\" is not the peer \"%s\"", buf, peer_text);
	else {
		unsigned char a[16];

		FUZZ_CHECK(inet_pton(AF_INET, buf, a) == 1 || inet_pton(AF_INET6, buf, a) == 1,
			   "\"%s\" is not an address", buf);
		FUZZ_CHECK(strstr(header, buf), "\"%s\" is not in the header", buf);
	}

	if (size > 1 && cidr_list_match_peer(list, n, peer)) {
		snprintf(want, sizeof(want), "%s", peer_text);
		ref = naive_walk(header, list, n, want, sizeof(want));
		if (ref >= 0) {
			FUZZ_CHECK(r == ref, "walk %d, reference %d", r, ref);
			FUZZ_CHECK(strcmp(buf, want) == 0, "walk \"%s\", reference \"%s\"", buf, want);
		}
	}
	free(header);
	return 0;
}
