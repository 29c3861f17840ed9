/* SPDX-License-Identifier: MIT */
/*
 * httpd — the HTTP server: libmicrohttpd driven from the daemon's event loop
 * (external epoll mode: the owner watches httpd_epoll_fd(), calls httpd_run()
 * when it is readable or when httpd_timeout() passes).  The only module that
 * includes libmicrohttpd.
 *
 * It owns the HTTP layer of the callback endpoint: routes, methods, content
 * types, the body cap, connection limits, and the client address (believing
 * X-Forwarded-For and Forwarded only from trusted proxies).  What a callback
 * body means is the owner's business (ops->callback), and the owner may
 * answer later: the connection is suspended until httpd_reply().
 */
#ifndef BLINKHOOK_HTTPD_H
#define BLINKHOOK_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blinkhook/config.h"
#include "blinkhook/util.h"

#define CALLBACK_PATH_PREFIX "/callbacks/leds-blink/"
/* blinkhookctl selftest's probe: a POST of {"nonce":"..."}, answered by the
 * owner (ops->probe) with {"salt":"...","mac":"..."}; it touches no job. */
#define PROBE_PATH "/callbacks/probe"
/* A probe's body is a nonce: anything longer is refused with 413. */
#define PROBE_BODY_MAX 256
#define HTTPD_CLIENT_MAX 64 /* an address as text, for logs */

struct httpd_request;

struct httpd_ops {
	/* A POST to CALLBACK_PATH_PREFIX<id> with a JSON body within the cap.
	 * Answer with httpd_reply(), now or later. */
	void (*callback)(void *ud, struct httpd_request *req);
	/* GET /metrics: the Prometheus text. */
	void (*metrics)(void *ud, struct strbuf *out);
	/* GET /healthz: whether the daemon is ready. */
	bool (*healthy)(void *ud);
	/* A POST to PROBE_PATH with a JSON body within PROBE_BODY_MAX.  Answer
	 * with httpd_reply_json() or httpd_reply() before returning. */
	void (*probe)(void *ud, struct httpd_request *req);
	/* A request to PROBE_PATH this layer refused itself (405, 413, 415, or
	 * 400 for a malformed request), already answered: to count and log. */
	void (*probe_refused)(void *ud, const struct httpd_request *req, unsigned status);
};

struct httpd_opts {
	int listen_fd; /* a listening socket, owned by the caller */
	uint64_t max_body;
	const char *secret_header; /* NULL: none */
	const struct cidr *trusted_proxies;
	size_t n_trusted_proxies;
	unsigned connection_limit;
	unsigned per_ip_limit; /* 0: none; for peers that are not trusted proxies */
	/* Connections from one trusted proxy, and from all peers of a unix
	 * socket together; 0: none.  Less than connection_limit, so that one
	 * peer never holds every connection. */
	unsigned proxy_limit;
	unsigned timeout_sec;
};

struct httpd;

int httpd_new(const struct httpd_opts *opts, const struct httpd_ops *ops, void *ud, struct httpd **ret);
/* Stops serving without shutting the listening socket down (it belongs to
 * the caller, maybe to systemd).  Requests still waiting for an answer must
 * have been answered before. */
void httpd_free(struct httpd *h);
/* Takes opts' max_body, secret_header and trusted proxies for the requests
 * that come from now on (reload); the rest of opts is ignored.  On failure
 * nothing changed. */
int httpd_reconfigure(struct httpd *h, const struct httpd_opts *opts);
int httpd_epoll_fd(const struct httpd *h);
void httpd_run(struct httpd *h);
/* Microseconds until httpd_run() is due anyway, UINT64_MAX for never. */
uint64_t httpd_timeout(const struct httpd *h);

const char *httpd_request_job_id(const struct httpd_request *r);
const char *httpd_request_body(const struct httpd_request *r, size_t *ret_len);
/* The configured secret header's value, or NULL. */
const char *httpd_request_secret_header(const struct httpd_request *r);
const char *httpd_request_client(const struct httpd_request *r);
/* How many callback requests this layer refused itself with status (405,
 * 413 or 415), for the metrics. */
uint64_t httpd_refused(const struct httpd *h, unsigned status);
/* Connections refused at accept for the per-IP cap. */
uint64_t httpd_refused_connections(const struct httpd *h);
/* Requests refused with 400 and closed for their framing or headers (the
 * request smuggling shapes: two Content-Lengths, Content-Length with
 * Transfer-Encoding, control bytes in a header, two Host headers...). */
uint64_t httpd_refused_malformed(const struct httpd *h);
/* Answers the request with one of INTERFACE.md's status codes.  A request
 * that waited (answered after its handler returned) is sent only by the next
 * httpd_run(): libmicrohttpd does not wake the loop for it in external mode,
 * so the owner runs it soon after. */
void httpd_reply(struct httpd_request *r, unsigned status);
/* Answers with status and a JSON body of the caller's (copied), from within
 * ops->probe only. */
void httpd_reply_json(struct httpd_request *r, unsigned status, const char *json);

#endif
