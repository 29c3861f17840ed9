/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "blinkhook/httpd.h"
#include "blinkhook/log.h"

enum route {
	ROUTE_CALLBACK,
	ROUTE_HEALTHZ,
	ROUTE_METRICS,
	ROUTE_PROBE,
	ROUTE_NOT_FOUND,
};

struct httpd_request {
	struct httpd *httpd;
	struct MHD_Connection *conn;
	enum route route;
	const char *job_id; /* points into the URL, which MHD keeps */
	struct strbuf body;
	unsigned status; /* 0 until a response is queued */
	unsigned answer; /* given by httpd_reply() while suspended */
	bool suspended;
	bool started;
	char client[HTTPD_CLIENT_MAX];
};

/* Answers that carry no request data are made once and shared. */
static const struct {
	unsigned status;
	const char *body;
} canned[] = {
	{200, "{\"ok\":true}\n"},
	{400, "{\"error\":\"bad request\"}\n"},
	{401, "{\"error\":\"unauthorized\"}\n"},
	{404, "{\"error\":\"not found\"}\n"},
	{405, "{\"error\":\"method not allowed\"}\n"},
	{413, "{\"error\":\"payload too large\"}\n"},
	{415, "{\"error\":\"unsupported media type\"}\n"},
	{500, "{\"error\":\"internal error\"}\n"},
	{503, "{\"error\":\"unavailable, try again\"}\n"},
};

/* Open connections per peer address and class, for the per-IP cap.  The
 * class (trusted proxy or not) is part of the key: a connection stays in the
 * class it was counted in even when a reload changes the trust. */
struct peer {
	int family;
	bool trusted;
	uint8_t addr[16];
	unsigned n;
	struct peer *next;
};
#define PEER_BUCKETS 256

struct httpd {
	struct MHD_Daemon *mhd;
	struct peer *peers[PEER_BUCKETS];
	unsigned held[2]; /* open connections of untrusted [0] and trusted [1] peers */
	uint64_t refused_per_ip;
	struct httpd_opts opts;
	char *secret_header;
	struct cidr proxies[CONFIG_MAX_PROXIES];
	const struct httpd_ops *ops;
	void *ud;
	struct MHD_Response *responses[ELEMENTSOF(canned)];
	struct MHD_Response *allow_post, *allow_get;
	struct MHD_Response *bad_close, *too_big_close; /* 400 and 413, then the connection closes */
	uint64_t refused[3];                            /* 405, 413, 415 on the callback route */
	uint64_t refused_malformed;
};

static const char *canned_body(unsigned status)
{
	for (size_t i = 0; i < ELEMENTSOF(canned); i++)
		if (canned[i].status == status)
			return canned[i].body;
	return canned[7].body;
}

static struct MHD_Response *canned_response(struct httpd *h, unsigned status)
{
	for (size_t i = 0; i < ELEMENTSOF(canned); i++)
		if (canned[i].status == status)
			return h->responses[i];
	return h->responses[7]; /* 500: a status we do not give */
}

static enum MHD_Result queue(struct httpd_request *r, unsigned status)
{
	struct httpd *h = r->httpd;
	struct MHD_Response *resp = canned_response(h, status);

	if (status == 405)
		resp = r->route == ROUTE_CALLBACK || r->route == ROUTE_PROBE ? h->allow_post : h->allow_get;
	if (r->route == ROUTE_CALLBACK && (status == 405 || status == 413 || status == 415))
		h->refused[status == 405 ? 0 : status == 413 ? 1 : 2]++;
	r->status = status;
	return MHD_queue_response(r->conn, status, resp);
}

/* An answer after which the connection closes: nothing the peer sent after
 * this request's headers is read as another request. */
static enum MHD_Result queue_close(struct httpd_request *r, unsigned status)
{
	struct httpd *h = r->httpd;

	if (r->route == ROUTE_CALLBACK && status == 413)
		h->refused[1]++;
	r->status = status;
	return MHD_queue_response(r->conn, status, status == 413 ? h->too_big_close : h->bad_close);
}

/*
 * A chunked body grew past the cap.  libmicrohttpd 0.9.75 takes no answer
 * while it reads a body (MHD_queue_response refuses), and it would read the
 * rest to its end: so the 413 goes onto the socket here, the sending side is
 * shut, and returning MHD_NO closes the connection without reading on.
 */
static enum MHD_Result refuse_rest(struct httpd_request *r)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	const char *body = canned_body(413);
	char msg[256];
	int n;

	if (r->route == ROUTE_CALLBACK)
		r->httpd->refused[1]++;
	r->status = 413;
	n = snprintf(msg, sizeof(msg),
		     "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\n\r\n%s",
		     strlen(body), body);
	/* The socket is non-blocking and has sent everything before this
	 * request: the few bytes fit, and if not, the peer gets the close. */
	if (ci && n > 0 && (size_t)n < sizeof(msg)) {
		(void)send(ci->connect_fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)shutdown(ci->connect_fd, SHUT_WR);
	}
	return MHD_NO;
}

static bool sockaddr_trusted(const struct httpd *h, const struct sockaddr *sa)
{
	return cidr_list_match_peer(h->proxies, h->opts.n_trusted_proxies, sa);
}

/* Appends each X-Forwarded-For line's value, in order, to a list: a proxy
 * may add a line of its own instead of extending the client's.  Forwarded
 * lines are joined by '\n', so that an open quote in one (the client's) does
 * not swallow the next (the proxy's). */
struct xff {
	struct strbuf sb, fwd;
	bool failed, fwd_seen;
};

static enum MHD_Result collect_xff(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct xff *x = cls;

	(void)kind;
	if (!key || !value)
		return MHD_YES;
	if (strcasecmp(key, "X-Forwarded-For") == 0) {
		if ((x->sb.len && strbuf_add(&x->sb, ",", 1) < 0) || strbuf_addstr(&x->sb, value) < 0)
			x->failed = true;
	} else if (strcasecmp(key, "Forwarded") == 0) {
		if ((x->fwd_seen && strbuf_add(&x->fwd, "\n", 1) < 0) || strbuf_addstr(&x->fwd, value) < 0)
			x->failed = true;
		x->fwd_seen = true;
	}
	return MHD_YES;
}

/* The client: the peer, or, when the peer is a trusted proxy, what
 * proxied_client() finds in its X-Forwarded-For and Forwarded lines. */
static void find_client(struct httpd_request *r)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *peer = ci ? ci->client_addr : NULL;
	struct xff x = {STRBUF_INIT, STRBUF_INIT, false, false};

	/* The headers are only read from a peer that may write them. */
	if (sockaddr_trusted(r->httpd, peer))
		(void)MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_xff, &x);
	/* Out of memory for a header: the peer, which is never wrong. */
	(void)proxied_client(x.failed ? NULL : x.sb.buf, x.failed || !x.fwd_seen ? NULL : x.fwd.buf, peer,
			     r->httpd->proxies, r->httpd->opts.n_trusted_proxies, r->client, sizeof(r->client));
	strbuf_release(&x.sb);
	strbuf_release(&x.fwd);
}

/* A peer's address bytes; every peer of a unix socket is one (they have no
 * address to tell them apart); false for anything else. */
static bool peer_key(const struct sockaddr *sa, int *ret_family, uint8_t addr[static 16])
{
	memset(addr, 0, 16);
	if (sa && sa->sa_family == AF_UNIX) {
		*ret_family = AF_UNIX;
		return true;
	}
	if (sa && sa->sa_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		*ret_family = AF_INET;
		return true;
	}
	if (sa && sa->sa_family == AF_INET6) {
		memcpy(addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		*ret_family = AF_INET6;
		return true;
	}
	return false;
}

static struct peer **peer_slot(struct httpd *h, int family, bool proxy, const uint8_t addr[static 16])
{
	struct peer **p;

	for (p = &h->peers[fnv1a64(addr, 16) % PEER_BUCKETS]; *p; p = &(*p)->next)
		if ((*p)->family == family && (*p)->trusted == proxy && memcmp((*p)->addr, addr, 16) == 0)
			break;
	return p;
}

/* A trusted proxy, or a peer of a unix socket (which only a proxy is). */
static bool peer_trusted(const struct httpd *h, const struct sockaddr *sa)
{
	return (sa && sa->sa_family == AF_UNIX) || sockaddr_trusted(h, sa);
}

/* How many connections one peer may hold (0: no cap).  A trusted proxy
 * carries everybody's callbacks and gets far more than one client, but not
 * every connection: each one is a descriptor, and the daemon needs some of
 * its own. */
static unsigned peer_cap(const struct httpd *h, bool proxy)
{
	return proxy ? h->opts.proxy_limit : h->opts.per_ip_limit;
}

/* How many connections all peers of a class may hold together (0: no cap).
 * The proxies' share is kept free for them: clients from many addresses
 * (anybody on the host can bind 127.0.0.2 and up) must not fill the
 * connection limit and lock the proxy, and every callback behind it, out. */
static unsigned class_cap(const struct httpd *h, bool proxy)
{
	if (!h->opts.proxy_limit || h->opts.proxy_limit >= h->opts.connection_limit)
		return 0;
	return proxy ? h->opts.proxy_limit : h->opts.connection_limit - h->opts.proxy_limit;
}

/* At accept: refuse a peer that holds its share of connections already, or
 * whose class does. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *sa, socklen_t len)
{
	struct httpd *h = cls;
	bool proxy = peer_trusted(h, sa);
	unsigned cap = peer_cap(h, proxy), all = class_cap(h, proxy);
	uint8_t addr[16];
	struct peer *p;
	int family;

	(void)len;
	if (all && h->held[proxy] >= all) {
		h->refused_per_ip++;
		return MHD_NO;
	}
	if (!cap || !peer_key(sa, &family, addr))
		return MHD_YES;
	p = *peer_slot(h, family, proxy, addr);
	if (p && p->n >= cap) {
		h->refused_per_ip++;
		return MHD_NO;
	}
	return MHD_YES;
}

static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			      enum MHD_ConnectionNotificationCode toe)
{
	struct httpd *h = cls;
	struct peer *p = *socket_context, **slot;
	const union MHD_ConnectionInfo *ci;
	uint8_t addr[16];
	bool proxy;
	int family;

	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (p)
			h->held[p->trusted]--;
		if (p && --p->n == 0) {
			slot = peer_slot(h, p->family, p->trusted, p->addr);
			*slot = p->next;
			free(p);
		}
		*socket_context = NULL;
		return;
	}
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	/* Every peer is counted, trusted or not: trust may change at a reload
	 * while its connections stay. */
	if (!ci || !peer_key(ci->client_addr, &family, addr))
		return;
	proxy = peer_trusted(h, ci->client_addr);
	slot = peer_slot(h, family, proxy, addr);
	if (!*slot) {
		/* Out of memory: the connection goes uncounted, not refused. */
		if (!(*slot = calloc(1, sizeof(**slot))))
			return;
		(*slot)->family = family;
		(*slot)->trusted = proxy;
		memcpy((*slot)->addr, addr, 16);
	}
	(*slot)->n++;
	h->held[proxy]++;
	*socket_context = *slot;
}

/* What the headers of a request hold, for strict_headers(). */
struct header_scan {
	unsigned hosts, lengths, encodings;
	const char *length;
	size_t length_size;
	bool chunked;
	bool bad;
};

static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
				   const char *value, size_t value_size)
{
	struct header_scan *s = cls;

	(void)kind;
	if (!key || !value || key_size == 0) {
		s->bad = true;
		return MHD_NO;
	}
	for (size_t i = 0; i < key_size; i++)
		if (!is_tchar((unsigned char)key[i]))
			s->bad = true;
	for (size_t i = 0; i < value_size; i++) {
		unsigned char c = (unsigned char)value[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			s->bad = true;
	}
	/*
	 * What follows relies on how libmicrohttpd 0.9.75 leaves a header line
	 * in its read buffer: "key" NUL (the colon) optional SP/HTAB "value"
	 * NUL NUL (the CR LF), key and value pointing into it.  On an upgrade,
	 * re-check in connection.c (get_next_header_line, process_header_line,
	 * process_broken_line) that this still holds, and run
	 * tests/integration/28-http-strict.sh (every shape must stay refused);
	 * then change the version below.  Another version fails the build
	 * unless it was checked so (-DBLINKHOOK_MHD_LAYOUT_CHECKED).
	 * (defined(): cppcheck reads no system header.)
	 */
#if defined(MHD_VERSION) && MHD_VERSION != 0x00097500 && !defined(BLINKHOOK_MHD_LAYOUT_CHECKED)
#error "scan_header() relies on libmicrohttpd 0.9.75's header buffer layout: re-check it (see the comment there)"
#endif
	/* libmicrohttpd ends a value at its first NUL byte, and overwrites the
	 * line's CR LF with two NULs: a value that is not followed by two NULs
	 * had more on its line after a NUL, which the application would never
	 * see (a line ended by a bare LF looks alike, and is refused too unless
	 * it is the last). */
	if (value[value_size] != 0 || value[value_size + 1] != 0)
		s->bad = true;
	/* obs-fold: a line beginning with SP or HTAB continues the previous
	 * header; libmicrohttpd appends it to a copy of the key, so the key no
	 * longer sits right before its value (separated by the colon's NUL and
	 * blanks).  RFC 9112 lets a server refuse it, and a proxy may have read
	 * the header otherwise. */
	if ((uintptr_t)value <= (uintptr_t)key + key_size || key[key_size] != 0)
		s->bad = true;
	else
		for (const char *c = key + key_size + 1; c < value; c++)
			if (*c != ' ' && *c != '\t') {
				s->bad = true;
				break;
			}
	if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
		s->hosts++;
	else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		/* 1*DIGIT: no sign, blank or list inside.  libmicrohttpd 0.9.75
		 * refuses such a length itself before the application sees the
		 * request; this holds if a later version reads it otherwise. */
		if (value_size == 0 || strspn(value, "0123456789") != value_size)
			s->bad = true;
		/* Repeats of one length are harmless; two lengths are not. */
		if (s->lengths++ && (value_size != s->length_size || memcmp(value, s->length, value_size) != 0))
			s->bad = true;
		s->length = value;
		s->length_size = value_size;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		s->encodings++;
		s->chunked = strcasecmp(value, "chunked") == 0;
	}
	return s->bad ? MHD_NO : MHD_YES;
}

/*
 * The request's framing and headers are unambiguous: libmicrohttpd 0.9.75
 * takes the first of two Content-Lengths, lets Transfer-Encoding override a
 * Content-Length, hides what follows a NUL in a header, and accepts two Host
 * headers; a proxy in front may read any of these otherwise, and the rest of
 * the bytes would then be taken for a second request.  RFC 9112 says to
 * refuse them (400) and close.
 */
static bool strict_headers(struct MHD_Connection *conn, const char *version)
{
	struct header_scan s = {0};

	if (MHD_get_connection_values_n(conn, MHD_HEADER_KIND, scan_header, &s) < 0 || s.bad)
		return false;
	if (s.hosts > 1 || (s.hosts == 0 && strcmp(version, MHD_HTTP_VERSION_1_1) == 0))
		return false;
	/* Only chunked is a transfer coding we read, never with a length,
	 * and never from HTTP/1.0, which has no transfer codings. */
	if (s.encodings && (s.encodings > 1 || !s.chunked || s.lengths || strcmp(version, MHD_HTTP_VERSION_1_1) != 0))
		return false;
	return true;
}

static bool json_content_type(struct MHD_Connection *conn)
{
	const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t n = strlen("application/json");

	if (!ct)
		return false;
	while (*ct == ' ')
		ct++;
	return strncasecmp(ct, "application/json", n) == 0 && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

static enum route route_of(const char *url, const char **ret_id)
{
	size_t n = strlen(CALLBACK_PATH_PREFIX);

	*ret_id = NULL;
	if (strncmp(url, CALLBACK_PATH_PREFIX, n) == 0) {
		*ret_id = url + n;
		return ROUTE_CALLBACK;
	}
	/* A webhook receiver's one URL for all jobs: the id is left empty. */
	if (strncmp(url, CALLBACK_PATH_PREFIX, n - 1) == 0 && url[n - 1] == 0) {
		*ret_id = url + n - 1;
		return ROUTE_CALLBACK;
	}
	if (strcmp(url, "/healthz") == 0)
		return ROUTE_HEALTHZ;
	if (strcmp(url, "/metrics") == 0)
		return ROUTE_METRICS;
	if (strcmp(url, PROBE_PATH) == 0)
		return ROUTE_PROBE;
	return ROUTE_NOT_FOUND;
}

static enum MHD_Result serve_get(struct httpd_request *r, const char *method)
{
	struct httpd *h = r->httpd;
	struct strbuf sb = STRBUF_INIT;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return queue(r, 405);
	if (r->route == ROUTE_HEALTHZ)
		return queue(r, h->ops->healthy(h->ud) ? 200 : 503);
	h->ops->metrics(h->ud, &sb);
	resp = MHD_create_response_from_buffer(sb.len, sb.buf ? sb.buf : (char *)"", MHD_RESPMEM_MUST_COPY);
	strbuf_release(&sb);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
	r->status = 200;
	ret = MHD_queue_response(r->conn, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			       const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct httpd *h = cls;
	struct httpd_request *r = *con_cls;

	(void)version;
	if (!r) {
		const char *cl;
		uint64_t len;

		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->httpd = h;
		r->conn = conn;
		r->route = route_of(url, &r->job_id);
		*con_cls = r;
		find_client(r);

		if (!strict_headers(conn, version)) {
			h->refused_malformed++;
			enum MHD_Result ret = queue_close(r, 400);
			if (r->route == ROUTE_PROBE)
				h->ops->probe_refused(h->ud, r, 400);
			return ret;
		}
		if (r->route == ROUTE_NOT_FOUND)
			return queue(r, 404);
		if (r->route == ROUTE_PROBE) {
			unsigned refuse = 0;

			if (strcmp(method, "POST") != 0)
				refuse = 405;
			else if (!json_content_type(conn))
				refuse = 415;
			else if ((cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
								   MHD_HTTP_HEADER_CONTENT_LENGTH)) &&
				 parse_uint64(cl, &len) >= 0 && len > PROBE_BODY_MAX)
				refuse = 413;
			if (!refuse)
				return MHD_YES; /* the body next */
			enum MHD_Result ret = refuse == 413 ? queue_close(r, 413) : queue(r, refuse);
			h->ops->probe_refused(h->ud, r, refuse);
			return ret;
		}
		if (r->route != ROUTE_CALLBACK)
			return serve_get(r, method);
		if (strcmp(method, "POST") != 0)
			return queue(r, 405);
		if (!json_content_type(conn))
			return queue(r, 415);
		/* Refuse an announced oversized body before reading a byte. */
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && parse_uint64(cl, &len) >= 0 && len > h->opts.max_body)
			return queue_close(r, 413);
		return MHD_YES;
	}
	if (r->status)
		return MHD_YES; /* answered already; MHD drains or closes */

	if (*upload_data_size > 0) {
		/* A chunked body is cut off at the cap: answered and closed at
		 * once, not read to its end. */
		if (r->body.len + *upload_data_size > (r->route == ROUTE_PROBE ? PROBE_BODY_MAX : h->opts.max_body)) {
			enum MHD_Result ret = refuse_rest(r);
			if (r->route == ROUTE_PROBE)
				h->ops->probe_refused(h->ud, r, 413);
			return ret;
		}
		if (strbuf_add(&r->body, upload_data, *upload_data_size) < 0)
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!r->started && r->route == ROUTE_PROBE) {
		r->started = true;
		h->ops->probe(h->ud, r);
		return r->status ? MHD_YES : queue(r, 500);
	}
	if (!r->started) {
		r->started = true;
		h->ops->callback(h->ud, r);
		if (r->status)
			return MHD_YES; /* queued by httpd_reply() */
		r->suspended = true;
		MHD_suspend_connection(conn);
		return MHD_YES;
	}
	if (r->answer)
		return queue(r, r->answer);
	return MHD_YES;
}

void httpd_reply(struct httpd_request *r, unsigned status)
{
	if (r->suspended) {
		/* MHD calls the handler again after resuming; answer there. */
		r->suspended = false;
		r->answer = status;
		MHD_resume_connection(r->conn);
		return;
	}
	(void)queue(r, status);
}

void httpd_reply_json(struct httpd_request *r, unsigned status, const char *json)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);

	if (!resp) {
		(void)queue(r, 500);
		return;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	r->status = status;
	(void)MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct httpd_request *r = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (!r)
		return;
	strbuf_release(&r->body);
	free(r);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) _printf_(2, 0);
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = 0;
	log_debug("libmicrohttpd: %s", buf);
}

int httpd_new(const struct httpd_opts *opts, const struct httpd_ops *ops, void *ud, struct httpd **ret)
{
	struct httpd *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->opts = *opts;
	h->ops = ops;
	h->ud = ud;
	if (opts->n_trusted_proxies > CONFIG_MAX_PROXIES) {
		free(h);
		return -EINVAL;
	}
	memcpy(h->proxies, opts->trusted_proxies, opts->n_trusted_proxies * sizeof(struct cidr));
	h->opts.trusted_proxies = h->proxies;
	if (opts->secret_header && !(h->secret_header = strdup(opts->secret_header))) {
		free(h);
		return -ENOMEM;
	}
	h->opts.secret_header = h->secret_header;

	for (size_t i = 0; i < ELEMENTSOF(canned); i++) {
		h->responses[i] = MHD_create_response_from_buffer(strlen(canned[i].body), (void *)canned[i].body,
								  MHD_RESPMEM_PERSISTENT);
		if (!h->responses[i])
			goto fail;
		MHD_add_response_header(h->responses[i], MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	}
	h->allow_post =
		MHD_create_response_from_buffer(strlen(canned[4].body), (void *)canned[4].body, MHD_RESPMEM_PERSISTENT);
	h->allow_get =
		MHD_create_response_from_buffer(strlen(canned[4].body), (void *)canned[4].body, MHD_RESPMEM_PERSISTENT);
	h->bad_close =
		MHD_create_response_from_buffer(strlen(canned[1].body), (void *)canned[1].body, MHD_RESPMEM_PERSISTENT);
	h->too_big_close =
		MHD_create_response_from_buffer(strlen(canned[5].body), (void *)canned[5].body, MHD_RESPMEM_PERSISTENT);
	if (!h->allow_post || !h->allow_get || !h->bad_close || !h->too_big_close)
		goto fail;
	MHD_add_response_header(h->bad_close, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(h->bad_close, MHD_HTTP_HEADER_CONNECTION, "close");
	MHD_add_response_header(h->too_big_close, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(h->too_big_close, MHD_HTTP_HEADER_CONNECTION, "close");
	MHD_add_response_header(h->allow_post, MHD_HTTP_HEADER_ALLOW, "POST");
	MHD_add_response_header(h->allow_get, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	MHD_add_response_header(h->allow_post, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(h->allow_get, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");

	h->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, accept_policy, h,
				  handler, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, MHD_OPTION_LISTEN_SOCKET,
				  (MHD_socket)opts->listen_fd, MHD_OPTION_CONNECTION_LIMIT,
				  (unsigned)opts->connection_limit, MHD_OPTION_NOTIFY_CONNECTION, notify_connection, h,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opts->timeout_sec,
				  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024), MHD_OPTION_NOTIFY_COMPLETED,
				  completed, h, MHD_OPTION_END);
	if (!h->mhd)
		goto fail;
	*ret = h;
	return 0;
fail:
	httpd_free(h);
	return -EIO;
}

void httpd_free(struct httpd *h)
{
	if (!h)
		return;
	if (h->mhd) {
		/* Quiesce first: MHD_stop_daemon would otherwise shut the listening
		 * socket down, and it is not ours to shut (systemd keeps it). */
		(void)MHD_quiesce_daemon(h->mhd);
		MHD_stop_daemon(h->mhd);
	}
	for (size_t i = 0; i < ELEMENTSOF(canned); i++)
		if (h->responses[i])
			MHD_destroy_response(h->responses[i]);
	if (h->allow_post)
		MHD_destroy_response(h->allow_post);
	if (h->allow_get)
		MHD_destroy_response(h->allow_get);
	if (h->bad_close)
		MHD_destroy_response(h->bad_close);
	if (h->too_big_close)
		MHD_destroy_response(h->too_big_close);
	for (size_t i = 0; i < PEER_BUCKETS; i++)
		while (h->peers[i]) {
			struct peer *p = h->peers[i];
			h->peers[i] = p->next;
			free(p);
		}
	free(h->secret_header);
	free(h);
}

int httpd_reconfigure(struct httpd *h, const struct httpd_opts *opts)
{
	char *header = NULL;

	if (opts->n_trusted_proxies > CONFIG_MAX_PROXIES)
		return -EINVAL;
	if (opts->secret_header && !(header = strdup(opts->secret_header)))
		return -ENOMEM;
	free(h->secret_header);
	h->secret_header = header;
	h->opts.secret_header = header;
	h->opts.max_body = opts->max_body;
	memcpy(h->proxies, opts->trusted_proxies, opts->n_trusted_proxies * sizeof(struct cidr));
	h->opts.n_trusted_proxies = opts->n_trusted_proxies;
	return 0;
}

int httpd_epoll_fd(const struct httpd *h)
{
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	return di ? di->epoll_fd : -EIO;
}

void httpd_run(struct httpd *h)
{
	(void)MHD_run(h->mhd);
}

uint64_t httpd_timeout(const struct httpd *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (MHD_get_timeout(h->mhd, &ms) != MHD_YES)
		return UINT64_MAX;
	return (uint64_t)ms * USEC_PER_MSEC;
}

const char *httpd_request_job_id(const struct httpd_request *r)
{
	return r->job_id;
}

const char *httpd_request_body(const struct httpd_request *r, size_t *ret_len)
{
	*ret_len = r->body.len;
	return r->body.buf ? r->body.buf : "";
}

const char *httpd_request_secret_header(const struct httpd_request *r)
{
	if (!r->httpd->secret_header)
		return NULL;
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, r->httpd->secret_header);
}

const char *httpd_request_client(const struct httpd_request *r)
{
	return r->client;
}

uint64_t httpd_refused_connections(const struct httpd *h)
{
	return h->refused_per_ip;
}

uint64_t httpd_refused_malformed(const struct httpd *h)
{
	return h->refused_malformed;
}

uint64_t httpd_refused(const struct httpd *h, unsigned status)
{
	switch (status) {
	case 405:
		return h->refused[0];
	case 413:
		return h->refused[1];
	case 415:
		return h->refused[2];
	default:
		return 0;
	}
}
