/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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
	bool too_big;
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

/* Open connections per peer address, for the per-IP cap. */
struct peer {
	int family;
	uint8_t addr[16];
	unsigned n;
	struct peer *next;
};
#define PEER_BUCKETS 256

struct httpd {
	struct MHD_Daemon *mhd;
	struct peer *peers[PEER_BUCKETS];
	uint64_t refused_per_ip;
	struct httpd_opts opts;
	char *secret_header;
	struct cidr proxies[CONFIG_MAX_PROXIES];
	const struct httpd_ops *ops;
	void *ud;
	struct MHD_Response *responses[ELEMENTSOF(canned)];
	struct MHD_Response *allow_post, *allow_get, *probe;
	uint64_t probes;
	uint64_t refused[3]; /* 405, 413, 415 on the callback route */
};

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
		resp = r->route == ROUTE_CALLBACK ? h->allow_post : h->allow_get;
	if (r->route == ROUTE_CALLBACK && (status == 405 || status == 413 || status == 415))
		h->refused[status == 405 ? 0 : status == 413 ? 1 : 2]++;
	r->status = status;
	return MHD_queue_response(r->conn, status, resp);
}

static void addr_to_string(const struct sockaddr *sa, char *buf, size_t len)
{
	if (!sa) {
		snprintf(buf, len, "unknown");
		return;
	}
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf, (socklen_t)len);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf,
			  (socklen_t)len);
	else
		snprintf(buf, len, "local");
}

static bool trusted(const struct httpd *h, int family, const void *addr)
{
	for (size_t i = 0; i < h->opts.n_trusted_proxies; i++)
		if (cidr_match(&h->proxies[i], family, addr))
			return true;
	return false;
}

static bool sockaddr_trusted(const struct httpd *h, const struct sockaddr *sa)
{
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET)
		return trusted(h, AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr);
	if (sa->sa_family == AF_INET6)
		return trusted(h, AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
	return sa->sa_family == AF_UNIX; /* a local proxy on a unix socket */
}

/* Appends each X-Forwarded-For line's value, in order, to a list: a proxy
 * may add a line of its own instead of extending the client's. */
struct xff {
	struct strbuf sb;
	bool failed;
};

static enum MHD_Result collect_xff(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct xff *x = cls;

	(void)kind;
	if (!key || !value || strcasecmp(key, "X-Forwarded-For") != 0)
		return MHD_YES;
	if ((x->sb.len && strbuf_add(&x->sb, ",", 1) < 0) || strbuf_addstr(&x->sb, value) < 0)
		x->failed = true;
	return MHD_YES;
}

/*
 * The client: the peer, or, when the peer is a trusted proxy, the rightmost
 * X-Forwarded-For entry that is not itself a trusted proxy.  Entries further
 * left were written by whoever sent the request and prove nothing, so only
 * the right end is read, however long the list.
 */
static void find_client(struct httpd_request *r)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *peer = ci ? ci->client_addr : NULL;
	struct xff x = {STRBUF_INIT, false};
	char *list, *end;

	addr_to_string(peer, r->client, sizeof(r->client));
	if (!sockaddr_trusted(r->httpd, peer))
		return;
	(void)MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_xff, &x);
	if (x.failed || !x.sb.buf) {
		strbuf_release(&x.sb);
		return;
	}
	list = x.sb.buf;
	end = list + x.sb.len;
	/* At most a few hops are ever trusted; the walk stops at the first
	 * entry that is not a trusted proxy. */
	for (unsigned hops = 0; hops < CONFIG_MAX_PROXIES + 1 && end > list; hops++) {
		char *comma = memrchr(list, ',', (size_t)(end - list));
		char *item = comma ? comma + 1 : list;
		unsigned char a[16];
		int fam;

		*end = 0;
		while (*item == ' ' || *item == '\t')
			item++;
		for (char *e = end; e > item && (e[-1] == ' ' || e[-1] == '\t');)
			*--e = 0;
		if (inet_pton(AF_INET, item, a) == 1)
			fam = AF_INET;
		else if (inet_pton(AF_INET6, item, a) == 1)
			fam = AF_INET6;
		else
			break; /* garbage: keep the last good answer */
		memcpy(r->client, item, strlen(item) + 1); /* an address fits */
		if (!trusted(r->httpd, fam, a) || !comma)
			break;
		end = comma;
	}
	strbuf_release(&x.sb);
}

/* A peer's address bytes; false for anything but IPv4 and IPv6. */
static bool peer_key(const struct sockaddr *sa, int *ret_family, uint8_t addr[static 16])
{
	memset(addr, 0, 16);
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

static struct peer **peer_slot(struct httpd *h, int family, const uint8_t addr[static 16])
{
	uint32_t x = 2166136261u;
	struct peer **p;

	for (size_t i = 0; i < 16; i++)
		x = (x ^ addr[i]) * 16777619u;
	for (p = &h->peers[x % PEER_BUCKETS]; *p; p = &(*p)->next)
		if ((*p)->family == family && memcmp((*p)->addr, addr, 16) == 0)
			break;
	return p;
}

/* At accept: refuse a peer that holds its share of connections already.
 * Trusted proxies carry everybody's callbacks and are not capped. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *sa, socklen_t len)
{
	struct httpd *h = cls;
	uint8_t addr[16];
	struct peer *p;
	int family;

	(void)len;
	if (!h->opts.per_ip_limit || sockaddr_trusted(h, sa) || !peer_key(sa, &family, addr))
		return MHD_YES;
	p = *peer_slot(h, family, addr);
	if (p && p->n >= h->opts.per_ip_limit) {
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
	int family;

	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (p && --p->n == 0) {
			slot = peer_slot(h, p->family, p->addr);
			*slot = p->next;
			free(p);
		}
		*socket_context = NULL;
		return;
	}
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (!h->opts.per_ip_limit || !ci || sockaddr_trusted(h, ci->client_addr) ||
	    !peer_key(ci->client_addr, &family, addr))
		return;
	slot = peer_slot(h, family, addr);
	if (!*slot) {
		/* Out of memory: the connection goes uncounted, not refused. */
		if (!(*slot = calloc(1, sizeof(**slot))))
			return;
		(*slot)->family = family;
		memcpy((*slot)->addr, addr, 16);
	}
	(*slot)->n++;
	*socket_context = *slot;
}


static bool json_content_type(struct MHD_Connection *conn)
{
	const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t n = strlen("application/json");

	if (!ct)
		return false;
	while (*ct == ' ')
		ct++;
	return strncasecmp(ct, "application/json", n) == 0 &&
	       (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
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
			       const char *version, const char *upload_data, size_t *upload_data_size,
			       void **con_cls)
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

		if (r->route == ROUTE_NOT_FOUND)
			return queue(r, 404);
		if (r->route == ROUTE_PROBE) {
			/* Answered at once, body unread; nothing else happens. */
			h->probes++;
			log_info("selftest probe from %s answered", r->client);
			r->status = 200;
			return MHD_queue_response(conn, 200, h->probe);
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
			return queue(r, 413);
		return MHD_YES;
	}
	if (r->status)
		return MHD_YES; /* answered already; MHD drains or closes */

	if (*upload_data_size > 0) {
		/* A chunked body is cut off at the cap. */
		if (!r->too_big && r->body.len + *upload_data_size > h->opts.max_body)
			r->too_big = true;
		if (!r->too_big && strbuf_add(&r->body, upload_data, *upload_data_size) < 0)
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->too_big)
		return queue(r, 413);
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
	h->allow_post = MHD_create_response_from_buffer(strlen(canned[4].body), (void *)canned[4].body,
							MHD_RESPMEM_PERSISTENT);
	h->allow_get = MHD_create_response_from_buffer(strlen(canned[4].body), (void *)canned[4].body,
						       MHD_RESPMEM_PERSISTENT);
	h->probe = MHD_create_response_from_buffer(strlen(canned[0].body), (void *)canned[0].body,
						   MHD_RESPMEM_PERSISTENT);
	if (!h->allow_post || !h->allow_get || !h->probe)
		goto fail;
	MHD_add_response_header(h->probe, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(h->probe, INSTANCE_HEADER, opts->instance_id ? opts->instance_id : "unknown");
	MHD_add_response_header(h->allow_post, MHD_HTTP_HEADER_ALLOW, "POST");
	MHD_add_response_header(h->allow_get, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	MHD_add_response_header(h->allow_post, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(h->allow_get, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");

	h->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, accept_policy, h,
				  handler, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
				  MHD_OPTION_LISTEN_SOCKET, (MHD_socket)opts->listen_fd,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)opts->connection_limit,
				  MHD_OPTION_NOTIFY_CONNECTION, notify_connection, h,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opts->timeout_sec,
				  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
				  MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_END);
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
	if (h->probe)
		MHD_destroy_response(h->probe);
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

void httpd_run(struct httpd *h) { (void)MHD_run(h->mhd); }

uint64_t httpd_timeout(const struct httpd *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (MHD_get_timeout(h->mhd, &ms) != MHD_YES)
		return UINT64_MAX;
	return (uint64_t)ms * USEC_PER_MSEC;
}

const char *httpd_request_job_id(const struct httpd_request *r) { return r->job_id; }

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

const char *httpd_request_client(const struct httpd_request *r) { return r->client; }

uint64_t httpd_refused_connections(const struct httpd *h) { return h->refused_per_ip; }

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
