/* SPDX-License-Identifier: MIT */
/*
 * fuzz_meraki — the pure part of the API client: meraki_classify() for every
 * kind of call (the list answers of device look-ups too),
 * meraki_parse_retry_after(), meraki_origin(), meraki_same_origin() and
 * meraki_link_next().
 *
 * The input: two bytes of HTTP status (mapped into 100..599); then, when a
 * NUL follows somewhere, the Retry-After value before it; the rest is the
 * body.  The Retry-After value also stands in for a transport error once.
 * Finally the whole input, as a string, is a redirect target and a
 * Retry-After value on its own.
 *
 * Checked: each status class gets the outcome the header promises; an OK
 * blink has a usable ledsBlinkId and an OK poll a status; every failure has
 * an error text that fits a job record (at most JOB_TEXT_MAX bytes of valid
 * UTF-8); a wait is never longer than MERAKI_RETRY_AFTER_MAX; the API key
 * never goes to a URL that is not https, and only to what has base_url's
 * origin by its own normalised text; an origin is always
 * "scheme://host:port" in lower case and the same as itself.  The body is
 * also parsed on its own: every integer's json_integer_text() is the digits
 * of an integer literal in the body without leading zeros, the same as its
 * 64-bit value where json_int64() gives one (ids never pass through 64 bits).
 * A list's items have ids fit for a URL path (a device's a valid serial) and
 * names and MACs of valid UTF-8 within JOB_NAME_MAX; a Link header's next
 * target is a non-empty part of the input without '<' or '>'.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "blinkhook/job.h"
#include "blinkhook/json.h"
#include "blinkhook/meraki.h"
#include "blinkhook/util.h"
#include "fuzz.h"

#define BASE_URL "https://api.meraki.com/api/v1"

static void check_result(enum meraki_call_kind kind, long status, const struct meraki_result *res)
{
	const char *k = kind == MERAKI_CALL_BLINK     ? "blink"
			: kind == MERAKI_CALL_GET     ? "get"
			: kind == MERAKI_CALL_DEVICES ? "devices"
						      : "organizations";

	FUZZ_CHECK(res->http_status == status, "%s: http_status %ld for %ld", k, res->http_status, status);
	if (status >= 200 && status < 300)
		FUZZ_CHECK(res->outcome == MERAKI_OK || res->outcome == MERAKI_RETRY, "%s: %ld gives outcome %d", k,
			   status, (int)res->outcome);
	else if (status == 429)
		FUZZ_CHECK(res->outcome == MERAKI_RATE_LIMITED, "%s: 429 gives outcome %d", k, (int)res->outcome);
	else if (status >= 500 || status == 408 || (status >= 300 && status < 400))
		FUZZ_CHECK(res->outcome == MERAKI_RETRY, "%s: %ld gives outcome %d", k, status, (int)res->outcome);
	else
		FUZZ_CHECK(res->outcome == MERAKI_FAIL, "%s: %ld gives outcome %d", k, status, (int)res->outcome);

	FUZZ_CHECK(res->auth_error == (status == 401 || status == 403), "%s: auth_error %d for %ld", k, res->auth_error,
		   status);
	FUZZ_CHECK(res->outcome == MERAKI_RATE_LIMITED || res->retry_after_usec == UINT64_MAX,
		   "%s: a wait without a 429", k);
	FUZZ_CHECK(res->retry_after_usec == UINT64_MAX || res->retry_after_usec <= MERAKI_RETRY_AFTER_MAX,
		   "%s: a wait of %llu usec", k, (unsigned long long)res->retry_after_usec);

	FUZZ_CHECK(res->outcome == MERAKI_OK || res->n_items == 0, "%s: items without OK", k);
	for (size_t i = 0; i < res->n_items; i++) {
		const struct meraki_item *it = &res->items[i];

		FUZZ_CHECK(kind == MERAKI_CALL_DEVICES || kind == MERAKI_CALL_ORGS, "%s: items", k);
		FUZZ_CHECK(it->id && (kind == MERAKI_CALL_DEVICES ? serial_is_valid(it->id) : job_id_is_valid(it->id)),
			   "%s: an item with id \"%s\"", k, fuzz_str(it->id));
		FUZZ_CHECK(!it->name || (strlen(it->name) <= JOB_NAME_MAX && fuzz_utf8_valid(it->name)),
			   "%s: an item's name \"%s\"", k, fuzz_str(it->name));
		FUZZ_CHECK(!it->mac || (strlen(it->mac) <= JOB_NAME_MAX && fuzz_utf8_valid(it->mac)),
			   "%s: an item's mac \"%s\"", k, fuzz_str(it->mac));
		FUZZ_CHECK(kind == MERAKI_CALL_DEVICES || !it->mac, "%s: an organization with a mac", k);
	}
	if (res->outcome == MERAKI_OK) {
		if (kind == MERAKI_CALL_DEVICES || kind == MERAKI_CALL_ORGS)
			;
		else if (kind == MERAKI_CALL_BLINK)
			FUZZ_CHECK(res->leds_blink_id && job_id_is_valid(res->leds_blink_id),
				   "blink: OK with ledsBlinkId \"%s\"", fuzz_str(res->leds_blink_id));
		else
			FUZZ_CHECK(res->status, "get: OK without a status");
	} else
		FUZZ_CHECK(res->error && *res->error, "%s: outcome %d without an error", k, (int)res->outcome);
	if (res->error) {
		FUZZ_CHECK(strlen(res->error) <= JOB_TEXT_MAX, "%s: an error of %zu bytes", k, strlen(res->error));
		FUZZ_CHECK(fuzz_utf8_valid(res->error), "%s: the error is not UTF-8", k);
	}
}

/* Checks every integer in v (at most a few levels down). */
/* NOLINTNEXTLINE(misc-no-recursion): at most 4 levels */
static void check_integers(const struct json *v, const char *body, size_t len, unsigned depth)
{
	const char *t = json_integer_text(v);

	if (t) {
		int64_t n;
		size_t tl = strlen(t);
		bool digits = tl > 0;

		for (size_t i = *t == '-'; i < tl; i++)
			digits = digits && t[i] >= '0' && t[i] <= '9';
		FUZZ_CHECK(digits && tl > (size_t)(*t == '-'), "integer text \"%s\"", fuzz_str(t));
		/* Its digits as the body has them (json-c lets leading zeros
		 * after a minus sign through; the text has none). */
		FUZZ_CHECK(memmem(body, len, t + (*t == '-'), tl - (*t == '-')), "integer text \"%s\" not in the body",
			   fuzz_str(t));
		FUZZ_CHECK(tl - (*t == '-') == 1 || t[*t == '-'] != '0', "integer text \"%s\" with a leading zero",
			   fuzz_str(t));
		FUZZ_CHECK(strcmp(t, "-0") != 0, "integer text -0");
		if (json_int64(v, &n) == 0) {
			char buf[32];
			snprintf(buf, sizeof(buf), "%lld", (long long)n);
			FUZZ_CHECK(strcmp(buf, t) == 0, "integer %s read as text \"%s\"", buf, fuzz_str(t));
		}
	}
	if (depth >= 4)
		return;
	for (size_t i = 0; i < json_array_length(v) && i < 16; i++)
		check_integers(json_array_get(v, i), body, len, depth + 1);
	check_integers(json_get(v, "ledsBlinkId"), body, len, depth + 1);
	check_integers(json_get(v, "message"), body, len, depth + 1);
	check_integers(json_get(v, "a"), body, len, depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum meraki_call_kind kinds[] = {MERAKI_CALL_BLINK, MERAKI_CALL_GET, MERAKI_CALL_DEVICES,
						      MERAKI_CALL_ORGS};
	struct meraki_result res;
	const uint8_t *rest, *nul;
	char *retry_after = NULL, *whole;
	const char *body;
	size_t body_len;
	uint64_t wait;
	long status;
	int r;

	if (size < 2)
		return 0;
	status = 100 + (long)(((unsigned)data[0] << 8 | data[1]) % 500);
	rest = data + 2;
	nul = memchr(rest, 0, size - 2);
	if (nul) {
		retry_after = fuzz_strndup(rest, (size_t)(nul - rest));
		body = (const char *)nul + 1;
	} else
		body = (const char *)rest;
	body_len = (size_t)((const char *)data + size - body);

	{
		struct json *root = NULL;
		if (json_parse(body, body_len, 16, &root) == 0) {
			check_integers(root, body, body_len, 0);
			json_free(root);
		}
	}
	for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
		r = meraki_classify(kinds[i], status, NULL, retry_after, body, body_len, FUZZ_NOW, &res);
		FUZZ_CHECK(r == 0, "meraki_classify returned %d", r);
		check_result(kinds[i], status, &res);
		meraki_result_release(&res);
	}

	if (retry_after) {
		r = meraki_classify(MERAKI_CALL_BLINK, status, retry_after, NULL, body, body_len, FUZZ_NOW, &res);
		FUZZ_CHECK(r == 0, "meraki_classify returned %d", r);
		FUZZ_CHECK(res.outcome == MERAKI_RETRY && res.http_status == 0 && res.error &&
				   strcmp(res.error, retry_after) == 0,
			   "a transport error is not a retry with its text");
		meraki_result_release(&res);

		if (meraki_parse_retry_after(retry_after, FUZZ_NOW, &wait) >= 0)
			FUZZ_CHECK(wait <= MERAKI_RETRY_AFTER_MAX, "a wait of %llu usec", (unsigned long long)wait);
		free(retry_after);
	}

	whole = fuzz_strndup(data, size);
	{
		char next[256];

		r = meraki_link_next(whole, next, sizeof(next));
		FUZZ_CHECK(r == 0 || r == -ENOENT || r == -EINVAL || r == -ENAMETOOLONG, "meraki_link_next: %d", r);
		if (r == 0)
			FUZZ_CHECK(*next && strstr(whole, next) && !strpbrk(next, "<>"), "Link next \"%s\"",
				   fuzz_str(next));
	}
	if (meraki_parse_retry_after(whole, FUZZ_NOW, &wait) >= 0)
		FUZZ_CHECK(wait <= MERAKI_RETRY_AFTER_MAX, "a wait of %llu usec", (unsigned long long)wait);
	if (meraki_same_origin(BASE_URL, whole)) {
		char o[MERAKI_ORIGIN_MAX];
		FUZZ_CHECK(strncasecmp(whole, "https:", 6) == 0, "the key may go to \"%s\"", whole);
		FUZZ_CHECK(meraki_origin(whole, o, sizeof(o)) == 0 && strcmp(o, "https://api.meraki.com:443") == 0,
			   "\"%s\" has base_url's origin but not its text", whole);
	}
	{
		char o[MERAKI_ORIGIN_MAX], o2[MERAKI_ORIGIN_MAX];
		if (meraki_origin(whole, o, sizeof(o)) == 0) {
			const char *c = strstr(o, "://");
			FUZZ_CHECK(strncmp(o, "https://", 8) == 0 || strncmp(o, "http://", 7) == 0, "origin \"%s\"",
				   fuzz_str(o));
			FUZZ_CHECK(c && strrchr(o, ':') > c + 2, "origin \"%s\" without a port", fuzz_str(o));
			for (const char *q = o; *q; q++)
				FUZZ_CHECK(!(*q >= 'A' && *q <= 'Z'), "origin \"%s\" not in lower case", fuzz_str(o));
			FUZZ_CHECK(meraki_same_origin(whole, whole), "\"%s\" is not its own origin", whole);
			/* The origin, as a URL, names itself. */
			FUZZ_CHECK(meraki_origin(o, o2, sizeof(o2)) != 0 || strcmp(o, o2) == 0,
				   "origin \"%s\" of its own origin is \"%s\"", o, o2);
		}
	}
	free(whole);
	return 0;
}
