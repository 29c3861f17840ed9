/* SPDX-License-Identifier: MIT */
/* The pure part of the Meraki API client: its answers read into structs
 * (classification, error bodies, list items, the Link header, Retry-After).
 * No libcurl here: that stays in meraki.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "blinkhook/job.h"
#include "blinkhook/json.h"
#include "blinkhook/meraki.h"
#include "blinkhook/util.h"
#include "meraki-internal.h"

void meraki_items_free(struct meraki_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(items[i].id);
		free(items[i].name);
		free(items[i].mac);
	}
	free(items);
}

void meraki_result_release(struct meraki_result *r)
{
	meraki_items_free(r->items, r->n_items);
	free(r->leds_blink_id);
	free(r->status);
	free(r->error);
	memset(r, 0, sizeof(*r));
}

/* ---- the pure part ---- */

int meraki_parse_retry_after(const char *v, uint64_t now, uint64_t *ret)
{
	uint64_t secs = 0;
	struct tm tm = {0};
	const char *end;
	int r;

	while (*v == ' ' || *v == '\t')
		v++;
	r = parse_uint64(v, &secs);
	if (r >= 0 || r == -ERANGE) {
		/* -ERANGE: digits only, more seconds than 64 bits hold. */
		if (r == -ERANGE || secs > MERAKI_RETRY_AFTER_MAX / USEC_PER_SEC)
			*ret = MERAKI_RETRY_AFTER_MAX;
		else
			*ret = secs * USEC_PER_SEC;
		return 0;
	}
	/* An HTTP-date (RFC 9110, IMF-fixdate): "Sun, 06 Nov 1994 08:49:37 GMT". */
	end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end || *end) {
		end = strptime(v, "%a, %d %b %Y %H:%M:%S", &tm);
		if (!end || (*end && strcmp(end, " GMT") != 0 && strcmp(end, " UTC") != 0))
			return -EINVAL;
	}
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	/* Before 1970 is in the past; far enough ahead is capped anyway. */
	uint64_t at = 0;
	if (t > 0)
		at = (uint64_t)t > UINT64_MAX / USEC_PER_SEC ? UINT64_MAX : (uint64_t)t * USEC_PER_SEC;
	*ret = at <= now ? 0 : MIN(at - now, MERAKI_RETRY_AFTER_MAX);
	return 0;
}

/* The API's {"errors": ["...", ...]} joined by "; ", or NULL. */
static char *api_errors(const struct json *root)
{
	const struct json *errs = json_get(root, "errors");
	struct strbuf sb = STRBUF_INIT;
	size_t n = json_array_length(errs);

	for (size_t i = 0; i < n && i < 8; i++) {
		const char *s = json_string(json_array_get(errs, i), NULL);
		if (!s || !*s)
			continue;
		if ((sb.len && strbuf_addstr(&sb, "; ") < 0) || strbuf_addstr(&sb, s) < 0) {
			strbuf_release(&sb);
			return NULL;
		}
	}
	if (sb.len > 1024) {
		sb.len = utf8_prefix(sb.buf, sb.len, 1024);
		sb.buf[sb.len] = 0;
	}
	return sb.buf;
}

int set_error(struct meraki_result *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	free(r->error);
	va_start(ap, fmt);
	n = vasprintf(&r->error, fmt, ap);
	va_end(ap);
	if (n < 0) {
		r->error = NULL;
		return -ENOMEM;
	}
	return 0;
}

bool valid_id(const char *s)
{
	/* Ids go into URL paths: keep them to safe characters. */
	return s && job_id_is_valid(s);
}

bool is_list(enum meraki_call_kind kind)
{
	return kind == MERAKI_CALL_ORGS || kind == MERAKI_CALL_DEVICES;
}

/* A text member of an item, cut to a name's length (*cut then set), or NULL. */
static int item_text(const struct json *v, char **ret, bool *cut)
{
	size_t len = 0;
	const char *s = json_string(v, &len);

	*ret = NULL;
	if (!s)
		return 0;
	if (cut)
		*cut = len > JOB_NAME_MAX;
	*ret = strndup(s, utf8_prefix(s, len, JOB_NAME_MAX));
	return *ret ? 0 : -ENOMEM;
}

int meraki_parse_items(enum meraki_call_kind kind, const char *body, size_t len, struct meraki_item **items, size_t *n)
{
	_cleanup_json_ struct json *root = NULL;
	size_t count;

	if (json_parse(body ? body : "", body ? len : 0, 16, &root) < 0 || json_kind_of(root) != JSON_ARRAY)
		return -EBADMSG;
	count = json_array_length(root);
	for (size_t i = 0; i < count; i++) {
		const struct json *e = json_array_get(root, i), *idv;
		struct meraki_item it = {0}, *grown;
		const char *id;

		if (json_kind_of(e) != JSON_OBJECT)
			continue;
		idv = json_get(e, kind == MERAKI_CALL_ORGS ? "id" : "serial");
		id = json_string(idv, NULL);
		if (!id && kind == MERAKI_CALL_ORGS)
			id = json_integer_text(idv); /* an id sent as a number */
		if (kind == MERAKI_CALL_ORGS ? !valid_id(id) : !id || !serial_is_valid(id))
			continue; /* nothing a look-up could use */
		grown = realloc(*items, (*n + 1) * sizeof(**items));
		if (!grown)
			return -ENOMEM;
		*items = grown;
		if (!(it.id = strdup(id)) || item_text(json_get(e, "name"), &it.name, &it.name_cut) < 0 ||
		    (kind == MERAKI_CALL_DEVICES && item_text(json_get(e, "mac"), &it.mac, NULL) < 0)) {
			free(it.id);
			free(it.name);
			return -ENOMEM;
		}
		(*items)[(*n)++] = it;
	}
	return 0;
}

/* Whether a rel parameter's value, n bytes at v (quoted or not), lists next
 * among its space-separated relation types. */
static bool rel_value_next(const char *v, size_t n)
{
	size_t i = 0;

	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		v++;
		n -= 2;
	}
	while (i < n) {
		size_t w = i;

		while (w < n && v[w] != ' ')
			w++;
		if (w - i == 4 && strncasecmp(v + i, "next", 4) == 0)
			return true;
		i = w;
		while (i < n && v[i] == ' ')
			i++;
	}
	return false;
}

/* Whether the parameters of one link value, [p, end), include rel=next
 * (rel="next", or next among a quoted list of relation types). */
static bool link_params_next(const char *p, const char *end)
{
	while (p < end) {
		const char *semi, *v;

		while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
			p++;
		semi = memchr(p, ';', (size_t)(end - p));
		if (!semi)
			semi = end;
		if (semi - p > 3 && strncasecmp(p, "rel", 3) == 0) {
			v = p + 3;
			while (v < semi && (*v == ' ' || *v == '\t'))
				v++;
			if (v < semi && *v == '=') {
				v++;
				while (v < semi && (*v == ' ' || *v == '\t'))
					v++;
				if (rel_value_next(v, (size_t)(semi - v)))
					return true;
			}
		}
		p = semi;
	}
	return false;
}

int meraki_link_next(const char *link, char *buf, size_t size)
{
	const char *p = link;

	for (;;) {
		const char *lt, *gt, *end;
		bool quoted = false;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			return -ENOENT;
		if (*p != '<')
			return -EINVAL;
		lt = p + 1;
		gt = strchr(lt, '>');
		if (!gt)
			return -EINVAL;
		/* The parameters run to the next comma outside quotes. */
		for (end = gt + 1; *end && (quoted || *end != ','); end++)
			if (*end == '"')
				quoted = !quoted;
		if (link_params_next(gt + 1, end)) {
			/* A URI has neither '<' nor white space in it. */
			if (gt == lt || memchr(lt, '<', (size_t)(gt - lt)) || memchr(lt, ' ', (size_t)(gt - lt)) ||
			    memchr(lt, '\t', (size_t)(gt - lt)))
				return -EINVAL;
			if ((size_t)(gt - lt) >= size)
				return -ENAMETOOLONG;
			memcpy(buf, lt, (size_t)(gt - lt));
			buf[gt - lt] = 0;
			return 0;
		}
		p = end;
	}
}

int meraki_classify(enum meraki_call_kind kind, long status, const char *transport_error, const char *retry_after,
		    const char *body, size_t len, uint64_t now, struct meraki_result *ret)
{
	_cleanup_json_ struct json *root = NULL;
	struct meraki_result r = {.http_status = status, .retry_after_usec = UINT64_MAX};
	int q;

	if (transport_error) {
		r.outcome = MERAKI_RETRY;
		r.http_status = 0;
		q = set_error(&r, "%s", transport_error);
		goto out;
	}
	(void)json_parse(body ? body : "", body ? len : 0, 16, &root);

	if (status >= 200 && status < 300) {
		const char *st = json_string(json_get(root, "status"), NULL);
		const struct json *idv = json_get(root, "ledsBlinkId");
		const char *id = json_string(idv, NULL);

		/* The published example has a string; tolerate a number, kept as
		 * its decimal text whatever its size. */
		if (!id)
			id = json_integer_text(idv);
		if (is_list(kind)) {
			q = meraki_parse_items(kind, body, len, &r.items, &r.n_items);
			if (q == -EBADMSG) {
				r.outcome = MERAKI_RETRY;
				q = set_error(&r, "HTTP %ld with an unexpected body", status);
			} else
				r.outcome = MERAKI_OK;
			goto out;
		}
		if (!root || json_kind_of(root) != JSON_OBJECT || (kind == MERAKI_CALL_BLINK && !valid_id(id)) ||
		    (kind == MERAKI_CALL_GET && !st)) {
			/* A 2xx we cannot read: the job may or may not exist, so the
			 * same job id and callback go again. */
			r.outcome = MERAKI_RETRY;
			q = set_error(&r, "HTTP %ld with an unexpected body", status);
			goto out;
		}
		r.outcome = MERAKI_OK;
		q = 0;
		if ((id && !(r.leds_blink_id = strdup(id))) || (st && !(r.status = strdup(st))))
			q = -ENOMEM;
		else {
			size_t elen = 0;
			const char *e = json_string(json_get(root, "error"), &elen);
			if (e && *e)
				q = set_error(&r, "%.*s", (int)utf8_prefix(e, elen, 1024), e);
		}
		goto out;
	}

	r.error = root ? api_errors(root) : NULL;
	if (status == 429) {
		uint64_t wait;
		r.outcome = MERAKI_RATE_LIMITED;
		if (retry_after && meraki_parse_retry_after(retry_after, now, &wait) >= 0)
			r.retry_after_usec = wait;
	} else if (status >= 500 || status == 408 || (status >= 300 && status < 400)) {
		/* A redirect reaching here had no usable Location or too many hops. */
		r.outcome = MERAKI_RETRY;
	} else {
		r.outcome = MERAKI_FAIL;
		r.auth_error = status == 401 || status == 403;
	}
	q = 0;
	if (!r.error)
		q = set_error(&r, "HTTP %ld", status);
out:
	if (q < 0) {
		meraki_result_release(&r);
		return q;
	}
	*ret = r;
	return 0;
}
