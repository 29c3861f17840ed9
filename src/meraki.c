/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>

#include <curl/curl.h>

#include "blinkhook/job.h"
#include "blinkhook/json.h"
#include "blinkhook/meraki.h"
#include "blinkhook/util.h"
#include "meraki-internal.h"

struct meraki_call {
	struct meraki_client *client;
	CURL *easy;
	struct curl_slist *headers;
	enum meraki_call_kind kind;
	char *url;
	char origin[MERAKI_ORIGIN_MAX]; /* of the first url: base_url's */
	char *body;                     /* POST body, kept for redirects */
	unsigned redirects;
	struct strbuf response;
	bool response_too_big;
	char retry_after[64];
	struct strbuf link; /* the Link header(s), joined by ", " */
	bool link_too_long;
	unsigned pages;            /* list calls: pages read before this one */
	struct meraki_item *items; /* ... and their items */
	size_t n_items;
	meraki_done_fn done;
	void *ud;
	struct meraki_call *prev, *next;
};

struct meraki_client {
	CURLM *multi;
	char *base_url;
	char *api_key;
	char *ca_file;
	char *user_agent;
	uint64_t timeout_usec;
	const struct meraki_loop_ops *ops;
	void *loop_ud;
	struct meraki_call *calls;
	size_t n_calls;
};

/* A host name or address as it may stand in an origin: letters, digits, dots,
 * hyphens (and underscores, which some names carry), or an IPv6 literal that
 * curl has checked.  curl decodes %-escapes in a host, so "n1%2582.x" would
 * come out as "n1%82.x": a name no resolver serves, and whose origin would
 * not name itself as a URL again. */
static bool host_is_plain(const char *h)
{
	if (h[0] == '[')
		return true;
	return h[strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")] == 0;
}

static int origin_once(const char *url, char *buf, size_t size)
{
	CURLU *u = curl_url();
	char *s = NULL, *h = NULL, *p = NULL, *z = NULL;
	int r = -EINVAL, n;

	if (!u)
		return -ENOMEM;
	/* curl normalises what it parses: IPv4 in any notation to dotted
	 * quads, IPv6 to its shortest form, %-escapes in the host decoded, an
	 * absent port to the scheme's.  Only the case of names is left. */
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &s, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK &&
	    (strcmp(s, "https") == 0 || strcmp(s, "http") == 0) && *h && host_is_plain(h)) {
		CURLUcode zc = curl_url_get(u, CURLUPART_ZONEID, &z, 0);
		if (zc == CURLUE_OK && z && h[0] == '[')
			/* An IPv6 link-local address names its interface too. */
			n = snprintf(buf, size, "%s://%.*s%%%s]:%s", s, (int)strlen(h) - 1, h, z, p);
		else
			n = snprintf(buf, size, "%s://%s:%s", s, h, p);
		if (n < 0 || (size_t)n >= size)
			r = -ENAMETOOLONG;
		else {
			for (char *q = buf; *q; q++)
				if (*q >= 'A' && *q <= 'Z')
					*q = (char)(*q - 'A' + 'a');
			r = 0;
		}
	}
	curl_free(s);
	curl_free(h);
	curl_free(p);
	curl_free(z);
	curl_url_cleanup(u);
	return r;
}

/* The origin must name itself when read as a URL again: curl decodes
 * %-escapes in a host but reads the decoded text no further, so
 * "https://1%2e1" would be "https://1.1:443" once and "https://1.0.0.1:443"
 * the next time (found by fuzz_meraki).  Such a URL has no origin. */
int meraki_origin(const char *url, char *buf, size_t size)
{
	char again[MERAKI_ORIGIN_MAX];
	int r = origin_once(url, buf, size);

	if (r < 0)
		return r;
	if (origin_once(buf, again, sizeof(again)) < 0 || strcmp(buf, again) != 0)
		return -EINVAL;
	return 0;
}

bool meraki_same_origin(const char *a, const char *b)
{
	char oa[MERAKI_ORIGIN_MAX], ob[MERAKI_ORIGIN_MAX];

	return meraki_origin(a, oa, sizeof(oa)) >= 0 && meraki_origin(b, ob, sizeof(ob)) >= 0 && strcmp(oa, ob) == 0;
}

int meraki_blink_body(const struct meraki_blink_request *req, char **ret)
{
	struct strbuf sb = STRBUF_INIT;
	struct json_writer w;
	int r;

	json_writer_init(&w, &sb);
	json_w_object_begin(&w);
	json_w_kint(&w, "duration", req->duration);
	json_w_key(&w, "callback");
	json_w_object_begin(&w);
	if (req->http_server_id) {
		json_w_key(&w, "httpServer");
		json_w_object_begin(&w);
		json_w_kstr(&w, "id", req->http_server_id);
		json_w_object_end(&w);
	} else {
		json_w_kstr(&w, "url", req->callback_url);
		json_w_kstr(&w, "sharedSecret", req->shared_secret);
	}
	if (req->payload_template_id) {
		json_w_key(&w, "payloadTemplate");
		json_w_object_begin(&w);
		json_w_kstr(&w, "id", req->payload_template_id);
		json_w_object_end(&w);
	}
	json_w_object_end(&w);
	json_w_object_end(&w);
	r = json_writer_finish(&w);
	if (r < 0) {
		strbuf_release(&sb);
		return r;
	}
	*ret = sb.buf;
	return 0;
}

/* ---- the client ---- */

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct meraki_client *c = userp;
	void *ctx = socketp;
	uint32_t events = 0;

	(void)easy;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= EPOLLIN;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= EPOLLOUT;
	if (c->ops->watch(c->loop_ud, fd, events, &ctx) < 0)
		return -1;
	curl_multi_assign(c->multi, fd, events ? ctx : NULL);
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct meraki_client *c = userp;

	(void)multi;
	return c->ops->set_timer(c->loop_ud, timeout_ms < 0 ? UINT64_MAX : (uint64_t)timeout_ms * USEC_PER_MSEC) < 0
		       ? -1
		       : 0;
}

int meraki_new(const struct meraki_opts *opts, const struct meraki_loop_ops *ops, void *loop_ud,
	       struct meraki_client **ret)
{
	struct meraki_client *c;
	static bool global_done;

	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return -EIO;
		global_done = true;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ops = ops;
	c->loop_ud = loop_ud;
	c->timeout_usec = opts->timeout_usec;
	c->base_url = strdup(opts->base_url);
	c->api_key = secret_strdup(opts->api_key ? opts->api_key : "");
	c->ca_file = opts->ca_file ? strdup(opts->ca_file) : NULL;
	c->user_agent = strdup(opts->user_agent);
	c->multi = curl_multi_init();
	if (!c->base_url || !c->api_key || !c->user_agent || (opts->ca_file && !c->ca_file) || !c->multi) {
		meraki_free(c);
		return -ENOMEM;
	}
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	*ret = c;
	return 0;
}

/* curl_slist_free_all() that leaves no copy of the API key (the
 * Authorization header) in freed memory. */
static void headers_free(struct curl_slist *h)
{
	for (struct curl_slist *p = h; p; p = p->next)
		secret_wipe(p->data, strlen(p->data));
	curl_slist_free_all(h);
}

static void call_free(struct meraki_call *call)
{
	struct meraki_client *c = call->client;

	if (call->easy) {
		curl_multi_remove_handle(c->multi, call->easy);
		curl_easy_cleanup(call->easy);
	}
	headers_free(call->headers);
	if (call->prev)
		call->prev->next = call->next;
	else
		c->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	c->n_calls--;
	strbuf_release(&call->link);
	meraki_items_free(call->items, call->n_items);
	free(call->url);
	free(call->body);
	strbuf_release(&call->response);
	free(call);
}

void meraki_free(struct meraki_client *c)
{
	if (!c)
		return;
	while (c->calls)
		call_free(c->calls);
	if (c->multi)
		curl_multi_cleanup(c->multi);
	secret_free(c->api_key);
	free(c->base_url);
	free(c->ca_file);
	free(c->user_agent);
	free(c);
}

int meraki_set_api_key(struct meraki_client *c, const char *key)
{
	char *k = secret_strdup(key);

	if (!k)
		return -ENOMEM;
	secret_free(c->api_key);
	c->api_key = k;
	return 0;
}

int meraki_reconfigure(struct meraki_client *c, const struct meraki_opts *opts)
{
	char *base = strdup(opts->base_url);
	char *ca = opts->ca_file ? strdup(opts->ca_file) : NULL;

	if (!base || (opts->ca_file && !ca)) {
		free(base);
		free(ca);
		return -ENOMEM;
	}
	free(c->base_url);
	c->base_url = base;
	free(c->ca_file);
	c->ca_file = ca;
	c->timeout_usec = opts->timeout_usec;
	return 0;
}

size_t meraki_in_flight(const struct meraki_client *c)
{
	return c->n_calls;
}

static size_t write_cb(char *data, size_t size, size_t n, void *ud)
{
	struct meraki_call *call = ud;
	size_t len = size * n;

	if (call->response.len + len > (is_list(call->kind) ? MERAKI_LIST_BODY_MAX : MERAKI_BODY_MAX)) {
		call->response_too_big = true;
		return 0; /* makes the transfer fail */
	}
	return strbuf_add(&call->response, data, len) < 0 ? 0 : len;
}

static size_t header_cb(char *data, size_t size, size_t n, void *ud)
{
	struct meraki_call *call = ud;
	size_t len = size * n;

	/* A new status line starts a new response (after a 100 Continue). */
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		call->retry_after[0] = 0;
		strbuf_reset(&call->link);
		call->link_too_long = false;
	} else if (len > 5 && strncasecmp(data, "Link:", 5) == 0) {
		size_t v = 5, e = len;
		while (v < e && (data[v] == ' ' || data[v] == '\t'))
			v++;
		while (e > v && (data[e - 1] == '\r' || data[e - 1] == '\n' || data[e - 1] == ' '))
			e--;
		/* Too long is an answer we cannot read, never one without a next page. */
		if (call->link.len + e - v + 2 > MERAKI_LINK_MAX ||
		    (call->link.len && strbuf_addstr(&call->link, ", ") < 0) ||
		    strbuf_add(&call->link, data + v, e - v) < 0)
			call->link_too_long = true;
	} else if (len > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
		size_t v = 12, e = len;
		while (v < e && (data[v] == ' ' || data[v] == '\t'))
			v++;
		while (e > v && (data[e - 1] == '\r' || data[e - 1] == '\n' || data[e - 1] == ' '))
			e--;
		if (e - v < sizeof(call->retry_after)) {
			memcpy(call->retry_after, data + v, e - v);
			call->retry_after[e - v] = 0;
		}
	}
	return len;
}

/* Sets the easy handle up for call->url; the key only where it may go. */
static int call_start(struct meraki_call *call)
{
	struct meraki_client *c = call->client;
	_cleanup_(secret_freep) char *auth = NULL;
	CURL *e;
	long ms = (long)(c->timeout_usec / USEC_PER_MSEC);

	if (call->easy) {
		curl_multi_remove_handle(c->multi, call->easy);
		curl_easy_cleanup(call->easy);
		call->easy = NULL;
	}
	headers_free(call->headers);
	call->headers = NULL;
	strbuf_reset(&call->response);
	call->retry_after[0] = 0;
	strbuf_reset(&call->link);
	call->link_too_long = false;

	e = curl_easy_init();
	if (!e)
		return -ENOMEM;
	call->easy = e;
	/* Only same-origin redirects are followed; checked again here all the
	 * same, since this is where the key is put on the wire. */
	if (meraki_same_origin(call->origin, call->url)) {
		static const char prefix[] = "Authorization: Bearer ";
		size_t n = sizeof(prefix) + strlen(c->api_key);

		/* Built in secret memory: wiped and freed by secret_free(). */
		auth = secret_alloc(n);
		if (!auth)
			return -ENOMEM;
		snprintf(auth, n, "%s%s", prefix, c->api_key);
		call->headers = curl_slist_append(call->headers, auth);
	}
	call->headers = curl_slist_append(call->headers, "Accept: application/json");
	if (call->body) {
		call->headers = curl_slist_append(call->headers, "Content-Type: application/json");
		call->headers = curl_slist_append(call->headers, "Expect:");
	}
	if (!call->headers)
		return -ENOMEM;

	curl_easy_setopt(e, CURLOPT_URL, call->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(e, CURLOPT_PRIVATE, call);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, MIN(ms, 10000L));
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->ca_file) {
		/* CAINFO alone would replace the system's bundle; with CAPATH
		 * kept at the system's directory the file adds to it. */
		curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
		curl_easy_setopt(e, CURLOPT_CAPATH, "/etc/ssl/certs");
	}
	if (call->body) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(call->body));
	}
	if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
		return -EIO;
	return 0;
}

static int call_new(struct meraki_client *c, enum meraki_call_kind kind, char *url, char *body, meraki_done_fn done,
		    void *ud)
{
	struct meraki_call *call = calloc(1, sizeof(*call));
	int r;

	if (!call) {
		free(url);
		free(body);
		return -ENOMEM;
	}
	call->client = c;
	call->kind = kind;
	call->url = url;
	call->body = body;
	r = meraki_origin(url, call->origin, sizeof(call->origin));
	if (r < 0) {
		free(url);
		free(body);
		free(call);
		return r;
	}
	call->done = done;
	call->ud = ud;
	call->next = c->calls;
	if (c->calls)
		c->calls->prev = call;
	c->calls = call;
	c->n_calls++;
	r = call_start(call);
	if (r < 0)
		call_free(call);
	return r;
}

int meraki_blink(struct meraki_client *c, const struct meraki_blink_request *req, meraki_done_fn done, void *ud)
{
	char *url = NULL, *body = NULL;
	int r;

	if (!serial_is_valid(req->serial))
		return -EINVAL;
	r = meraki_blink_body(req, &body);
	if (r < 0)
		return r;
	if (asprintf(&url, "%s/devices/%s/liveTools/leds/blink", c->base_url, req->serial) < 0) {
		free(body);
		return -ENOMEM;
	}
	return call_new(c, MERAKI_CALL_BLINK, url, body, done, ud);
}

int meraki_get_blink(struct meraki_client *c, const char *serial, const char *leds_blink_id, meraki_done_fn done,
		     void *ud)
{
	char *url = NULL;

	if (!serial_is_valid(serial) || !valid_id(leds_blink_id))
		return -EINVAL;
	if (asprintf(&url, "%s/devices/%s/liveTools/leds/blink/%s", c->base_url, serial, leds_blink_id) < 0)
		return -ENOMEM;
	return call_new(c, MERAKI_CALL_GET, url, NULL, done, ud);
}

int meraki_list_organizations(struct meraki_client *c, meraki_done_fn done, void *ud)
{
	char *url = NULL;

	if (asprintf(&url, "%s/organizations?perPage=%d", c->base_url, MERAKI_ORGS_PER_PAGE) < 0)
		return -ENOMEM;
	return call_new(c, MERAKI_CALL_ORGS, url, NULL, done, ud);
}

int meraki_find_devices(struct meraki_client *c, const char *org_id, const char *name, const char *mac,
			meraki_done_fn done, void *ud)
{
	char *url = NULL, *esc;
	int n;

	if (!valid_id(org_id) || !!name == !!mac)
		return -EINVAL;
	esc = curl_easy_escape(NULL, name ? name : mac, 0);
	if (!esc)
		return -ENOMEM;
	n = asprintf(&url, "%s/organizations/%s/devices?perPage=%d&%s=%s", c->base_url, org_id, MERAKI_LIST_PER_PAGE,
		     name ? "name" : "mac", esc);
	curl_free(esc);
	if (n < 0)
		return -ENOMEM;
	return call_new(c, MERAKI_CALL_DEVICES, url, NULL, done, ud);
}

static void list_take_items(struct meraki_call *call, struct meraki_result *res)
{
	res->items = TAKE_PTR(call->items);
	res->n_items = call->n_items;
	call->n_items = 0;
}

/* A list call's page came: its items join the call's, and the next page is
 * asked for if there is one.  1 when the call goes on; 0 when res is the
 * whole answer now (items, truncated), or the failure that ends it. */
static int next_page(struct meraki_call *call, struct meraki_result *res)
{
	char next[2048], origin[MERAKI_ORIGIN_MAX];
	struct meraki_item *all;
	char *url;
	int r;

	if (!is_list(call->kind) || res->outcome != MERAKI_OK)
		return 0;
	if (res->n_items) {
		all = realloc(call->items, (call->n_items + res->n_items) * sizeof(*all));
		if (!all)
			goto fail_out_of_memory;
		memcpy(all + call->n_items, res->items, res->n_items * sizeof(*all));
		call->items = all;
		call->n_items += res->n_items;
		free(res->items);
		res->items = NULL;
		res->n_items = 0;
	}
	r = call->link_too_long ? -EINVAL
	    : call->link.len    ? meraki_link_next(call->link.buf, next, sizeof(next))
				: -ENOENT;
	if (r == -ENOENT || (r >= 0 && call->kind == MERAKI_CALL_ORGS)) {
		/* Organizations: the first page says all that is needed. */
		list_take_items(call, res);
		res->truncated = r >= 0;
		return 0;
	}
	if (r < 0) {
		meraki_result_release(res);
		*res = (struct meraki_result){.outcome = MERAKI_RETRY, .retry_after_usec = UINT64_MAX};
		(void)set_error(res, "HTTP 200 with a Link header that cannot be read (page %u of a list)",
				call->pages + 1);
		return 0;
	}
	if (!meraki_same_origin(call->origin, next)) {
		/* Where the API key may not go: a failure until base_url changes. */
		if (meraki_origin(next, origin, sizeof(origin)) < 0)
			(void)str_copy(origin, sizeof(origin), "a URL that is not http(s)");
		meraki_result_release(res);
		*res = (struct meraki_result){
			.outcome = MERAKI_FAIL, .retry_after_usec = UINT64_MAX, .foreign_redirect = true};
		(void)set_error(res,
				"the next page of a list lies at another origin, %s (base_url's is %s): not followed",
				origin, call->origin);
		return 0;
	}
	if (call->pages + 1 >= MERAKI_LIST_PAGES_MAX) {
		list_take_items(call, res);
		res->truncated = true;
		return 0;
	}
	url = strdup(next);
	if (!url)
		goto fail_out_of_memory;
	free(call->url);
	call->url = url;
	call->pages++;
	call->redirects = 0;
	if (call_start(call) >= 0) {
		meraki_result_release(res);
		return 1;
	}
/* Out of memory: the call fails, to be tried again later. */
fail_out_of_memory:
	meraki_result_release(res);
	*res = (struct meraki_result){.outcome = MERAKI_RETRY, .retry_after_usec = UINT64_MAX};
	(void)set_error(res, "out of memory reading a list");
	return 0;
}

/* A 3xx with a Location: the same request again at the new place, if that
 * is within the call's origin.  Returns 1 when the call goes on, 0 when the
 * answer is to be classified as it is, and -EXDEV with the target's origin in
 * foreign when it lies elsewhere (not followed: the key and the callback
 * secret stay with base_url's origin). */
static int follow_redirect(struct meraki_call *call, long status, char *foreign, size_t size)
{
	char *loc = NULL, *next;

	if (status != 301 && status != 302 && status != 307 && status != 308)
		return 0;
	if (curl_easy_getinfo(call->easy, CURLINFO_REDIRECT_URL, &loc) != CURLE_OK || !loc)
		return 0;
	if (!meraki_same_origin(call->origin, loc)) {
		if (meraki_origin(loc, foreign, size) < 0)
			(void)str_copy(foreign, size, "a URL that is not http(s)");
		return -EXDEV;
	}
	if (call->redirects >= MERAKI_MAX_REDIRECTS)
		return 0;
	next = strdup(loc);
	if (!next)
		return 0;
	free(call->url);
	call->url = next;
	call->redirects++;
	return call_start(call) >= 0;
}

static void finish(struct meraki_call *call, CURLcode code)
{
	struct meraki_result res;
	char transport[CURL_ERROR_SIZE + 64] = "";
	char foreign[MERAKI_ORIGIN_MAX];
	long status = 0;
	int r;

	if (code == CURLE_OK) {
		curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
		r = follow_redirect(call, status, foreign, sizeof(foreign));
		if (r > 0)
			return;
		if (r == -EXDEV) {
			/* A failure, not a retry: the same request gets the same
			 * answer until the operator decides where it may go. */
			res = (struct meraki_result){
				.outcome = MERAKI_FAIL,
				.http_status = status,
				.retry_after_usec = UINT64_MAX,
				.foreign_redirect = true,
			};
			if (asprintf(&res.error,
				     "HTTP %ld redirect to another origin, %s (base_url's is %s): not followed, "
				     "since the API key and the callback secret go only to base_url; if that is "
				     "Meraki's API, set [meraki] base_url to that origin followed by the API path "
				     "(e.g. https://HOST/api/v1)",
				     status, foreign, call->origin) < 0)
				res.error = NULL;
			else /* within a job record's text */
				res.error[utf8_prefix(res.error, strlen(res.error), 1024)] = 0;
			goto done;
		}
	} else if (call->response_too_big && call->kind == MERAKI_CALL_ORGS) {
		/* The same answer again on every retry: only the config helps. */
		res = (struct meraki_result){.outcome = MERAKI_FAIL, .retry_after_usec = UINT64_MAX};
		if (asprintf(&res.error,
			     "the list of organizations the API key sees is larger than %zu bytes: set [meraki] "
			     "organization_id to the one whose devices to look up",
			     MERAKI_LIST_BODY_MAX) < 0)
			res.error = NULL;
		goto done;
	} else if (call->response_too_big)
		snprintf(transport, sizeof(transport), "response larger than %zu bytes",
			 is_list(call->kind) ? MERAKI_LIST_BODY_MAX : MERAKI_BODY_MAX);
	else
		snprintf(transport, sizeof(transport), "%s", curl_easy_strerror(code));

	if (meraki_classify(call->kind, status, code == CURLE_OK ? NULL : transport,
			    call->retry_after[0] ? call->retry_after : NULL, call->response.buf, call->response.len,
			    now_realtime_usec(), &res) < 0)
		res = (struct meraki_result){.outcome = MERAKI_RETRY, .retry_after_usec = UINT64_MAX};
	else if (code == CURLE_OK && next_page(call, &res) > 0)
		return;
done:;
	/* Unlink first: the done function may start the next call. */
	meraki_done_fn done = call->done;
	void *ud = call->ud;
	call_free(call);
	done(ud, &res);
	meraki_result_release(&res);
}

static void check_done(struct meraki_client *c)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(c->multi, &left))) {
		struct meraki_call *call = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&call);
		if (call)
			finish(call, m->data.result);
	}
}

void meraki_on_fd(struct meraki_client *c, int fd, uint32_t revents)
{
	int action = 0, running;

	if (revents & (EPOLLIN | EPOLLHUP))
		action |= CURL_CSELECT_IN;
	if (revents & EPOLLOUT)
		action |= CURL_CSELECT_OUT;
	if (revents & EPOLLERR)
		action |= CURL_CSELECT_ERR;
	curl_multi_socket_action(c->multi, fd, action, &running);
	check_done(c);
}

void meraki_on_timer(struct meraki_client *c)
{
	int running;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(c);
}

/* NOLINTNEXTLINE(readability-non-const-parameter): curl's type */
static size_t probe_body_cb(char *data, size_t size, size_t n, void *ud)
{
	struct strbuf *sb = ud;
	size_t len = size * n;

	/* The rest of a long answer is not a blinkhookd's: dropped. */
	if (sb->len < MERAKI_PROBE_ANSWER_MAX)
		(void)strbuf_add(sb, data, MIN(len, MERAKI_PROBE_ANSWER_MAX - sb->len));
	return len;
}

int meraki_probe(const char *url, const char *ca_file, uint64_t timeout_usec, const char *body, long *ret_status,
		 char **ret_body, char **ret_error)
{
	struct strbuf answer = STRBUF_INIT;
	struct curl_slist *headers = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode code;
	CURL *e;
	long status = 0;

	*ret_status = 0;
	*ret_body = *ret_error = NULL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(e = curl_easy_init()))
		return -ENOMEM;
	headers = curl_slist_append(headers, "Content-Type: application/json");
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "blinkhookctl-selftest");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout_usec / USEC_PER_MSEC));
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, probe_body_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &answer);
	if (ca_file) {
		curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
		curl_easy_setopt(e, CURLOPT_CAPATH, "/etc/ssl/certs");
	}
	code = curl_easy_perform(e);
	if (code == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	else
		*ret_error = strdup(errbuf[0] ? errbuf : curl_easy_strerror(code));
	curl_easy_cleanup(e);
	curl_slist_free_all(headers);
	*ret_status = status;
	*ret_body = answer.buf; /* NULL for an empty answer */
	return 0;
}
