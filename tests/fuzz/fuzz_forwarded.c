/* SPDX-License-Identifier: MIT */
/*
 * fuzz_forwarded — forwarded_client(), the walk over RFC 7239 Forwarded, and
 * proxied_client(), which weighs it against X-Forwarded-For.  The first byte
 * picks the peer and the trusted prefixes as in fuzz_xff; the rest, up to
 * its first NUL, is the Forwarded header (its lines joined by '\n'); what
 * follows that NUL, up to the next, is an X-Forwarded-For header.
 *
 * Checked: an untrusted peer always yields the peer; an answer from the
 * header is an address, "unknown" or an obfuscated identifier that stood in
 * the header; the X-Forwarded-For header, written as Forwarded elements (in
 * several forms: quoted or not, with ports, other parameters, names in other
 * cases, over several lines), walks to the same answer as xff_client() gives
 * for it; with both headers, proxied_client() answers the peer or what both
 * walks agree on.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "blinkhook/netaddr.h"
#include "fuzz.h"

static bool is_name(const char *s)
{
	if (strcasecmp(s, "unknown") == 0)
		return true;
	if (s[0] != '_' || !s[1])
		return false;
	return strspn(s + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == strlen(s + 1);
}

/* An X-Forwarded-For header as Forwarded elements, one per entry: an
 * address in one of several equivalent forms, anything else as "for=" (no
 * value: as malformed as the entry was). */
static char *xff_as_forwarded(const char *xff, unsigned pick)
{
	struct strbuf sb = STRBUF_INIT;
	const char *p = xff;

	for (unsigned i = 0;; i++) {
		const char *comma = strchr(p, ','), *e = comma ? comma : p + strlen(p);
		char text[INET6_ADDRSTRLEN];
		unsigned char a[16];
		unsigned v = (pick + i) % 4;
		size_t n;
		int r;

		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		n = (size_t)(e - p);
		if (i > 0)
			FUZZ_CHECK(strbuf_addstr(&sb, i % 3 == 2 ? "\n" : ", ") == 0, "oom");
		if (n < sizeof(text)) {
			memcpy(text, p, n);
			text[n] = '\0';
		} else
			text[0] = '\0';
		if (text[0] && inet_pton(AF_INET, text, a) == 1) {
			static const char *const forms[][2] = {{"for=", ""},
							       {"for=\"", "\""},
							       {"For=\"", ":8080\";proto=https"},
							       {"by=_x; FOR=\"", ":_p\""}};
			r = strbuf_addf(&sb, "%s%s%s", forms[v][0], text, forms[v][1]);
		} else if (text[0] && inet_pton(AF_INET6, text, a) == 1) {
			static const char *const forms[][2] = {{"for=\"[", "]\""},
							       {"fOr=\"[", "]:4711\""},
							       {"proto=http;for=\"[", "]\""},
							       {"for=\"[", "]:_p\" ; by=unknown"}};
			r = strbuf_addf(&sb, "%s%s%s", forms[v][0], text, forms[v][1]);
		} else
			r = strbuf_addstr(&sb, "for=");
		FUZZ_CHECK(r == 0, "oom");
		if (!comma)
			break;
		p = comma + 1;
	}
	return sb.buf ? sb.buf : strdup("");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss;
	const struct sockaddr *peer = NULL;
	struct cidr list[FUZZ_PREFIXES];
	char buf[INET6_ADDRSTRLEN], want[INET6_ADDRSTRLEN], peer_text[INET6_ADDRSTRLEN], both[INET6_ADDRSTRLEN];
	size_t n;
	unsigned pick;
	char *input, *header, *xff = NULL, *stripped, *q;
	bool trusted;
	int r, r2, rb;

	if (size < 1)
		return 0;
	pick = data[0];
	n = fuzz_trusted(pick, list);
	fuzz_make_peer(pick, &ss, &peer);
	peer_to_string(peer, peer_text, sizeof(peer_text));
	trusted = cidr_list_match_peer(list, n, peer);

	input = fuzz_strndup(data + 1, size - 1);
	header = input;
	if (strlen(input) < size - 1)
		xff = input + strlen(input) + 1; /* after the first NUL, up to the next */

	r = forwarded_client(header, peer, list, n, buf, sizeof(buf));
	FUZZ_CHECK(r == 0 || r == 1, "returned %d", r);
	FUZZ_CHECK(memchr(buf, '\0', sizeof(buf)), "answer not terminated");
	if (!trusted)
		FUZZ_CHECK(r == 0, "an untrusted peer's header was read");
	if (r == 0)
		FUZZ_CHECK(strcmp(buf, peer_text) == 0, "\"%s\" is not the peer \"%s\"", buf, peer_text);
	else {
		unsigned char a[16];

		FUZZ_CHECK(inet_pton(AF_INET, buf, a) == 1 || inet_pton(AF_INET6, buf, a) == 1 || is_name(buf),
			   "\"%s\" is no address or name", buf);
		/* It stood in the header, perhaps with quoted pairs. */
		stripped = strdup(header);
		FUZZ_CHECK(stripped, "oom");
		q = stripped;
		for (const char *p = header; *p; p++)
			if (*p != '\\')
				*q++ = *p;
		*q = '\0';
		FUZZ_CHECK(strstr(stripped, buf), "\"%s\" is not in the header", buf);
		free(stripped);
	}
	/* Alone, Forwarded is walked as it is. */
	rb = proxied_client(NULL, header, peer, list, n, both, sizeof(both));
	FUZZ_CHECK(strcmp(both, strspn(header, " \t,\n") == strlen(header) ? peer_text : buf) == 0 &&
			   rb == (strspn(header, " \t,\n") == strlen(header) ? 0 : r),
		   "proxied_client \"%s\" (%d), forwarded_client \"%s\" (%d)", both, rb, buf, r);

	if (xff) {
		char *converted = xff_as_forwarded(xff, pick);

		r = xff_client(xff, peer, list, n, want, sizeof(want));
		r2 = forwarded_client(converted, peer, list, n, buf, sizeof(buf));
		FUZZ_CHECK(r == r2 && strcmp(want, buf) == 0, "X-Forwarded-For \"%s\" (%d), as Forwarded \"%s\" (%d)",
			   want, r, buf, r2);

		/* Both headers: the peer, or what both walks agree on. */
		r2 = forwarded_client(header, peer, list, n, buf, sizeof(buf));
		rb = proxied_client(xff, header, peer, list, n, both, sizeof(both));
		FUZZ_CHECK(rb == 0 || rb == 1, "returned %d", rb);
		if (rb == 0)
			FUZZ_CHECK(strcmp(both, peer_text) == 0, "\"%s\" is not the peer", both);
		if (rb == 1 && strspn(header, " \t,\n") != strlen(header) && strspn(xff, " \t,\n") != strlen(xff))
			FUZZ_CHECK(r == 1 && r2 == 1 && strcmp(both, want) == 0,
				   "both headers: \"%s\", X-Forwarded-For \"%s\" (%d), Forwarded \"%s\" (%d)", both,
				   want, r, buf, r2);
		free(converted);
	}
	free(input);
	return 0;
}
