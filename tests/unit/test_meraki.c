/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "blinkhook/json.h"
#include "blinkhook/meraki.h"
#include "blinkhook/util.h"

/* A chosen "now": 2026-11-18T14:05:02Z, whole seconds. */
#define NOW_SEC INT64_C(1795010702)
#define NOW ((uint64_t)NOW_SEC * USEC_PER_SEC)
/* RFC 9110's example date, "Sun, 06 Nov 1994 08:49:37 GMT". */
#define RFC_DATE_SEC INT64_C(784111777)

static void classify(enum meraki_call_kind kind, long status, const char *transport, const char *retry_after,
		     const char *body, struct meraki_result *r)
{
	assert_int_equal(meraki_classify(kind, status, transport, retry_after, body, body ? strlen(body) : 0, NOW, r),
			 0);
}

static const char BLINK_201[] =
	"{\"ledsBlinkId\":\"1284392014819\",\"url\":\"/devices/Q2XX-AAAA-0001/liveTools/leds/blink/1284392014819\","
	"\"status\":\"new\",\"request\":{\"serial\":\"Q2XX-AAAA-0001\",\"duration\":20},\"error\":null,"
	"\"callback\":{\"id\":\"1284392014819\",\"url\":\"https://webhook.example.net/cb\",\"status\":\"new\"}}";

/* ---- meraki_classify: 2xx ---- */

static void test_blink_201(void **state)
{
	struct meraki_result r;

	(void)state;
	classify(MERAKI_CALL_BLINK, 201, NULL, NULL, BLINK_201, &r);
	assert_int_equal(r.outcome, MERAKI_OK);
	assert_int_equal(r.http_status, 201);
	assert_string_equal(r.leds_blink_id, "1284392014819");
	assert_string_equal(r.status, "new");
	assert_null(r.error);
	assert_false(r.auth_error);
	assert_int_equal(r.retry_after_usec, UINT64_MAX);
	meraki_result_release(&r);
	assert_null(r.leds_blink_id);
	assert_null(r.status);
}

static void test_blink_201_numeric_id(void **state)
{
	struct meraki_result r;

	(void)state;
	classify(MERAKI_CALL_BLINK, 201, NULL, NULL, "{\"ledsBlinkId\":1284392014819,\"status\":\"scheduled\"}", &r);
	assert_int_equal(r.outcome, MERAKI_OK);
	assert_string_equal(r.leds_blink_id, "1284392014819");
	assert_string_equal(r.status, "scheduled");
	meraki_result_release(&r);

	/* Without a status the id is enough for a blink. */
	classify(MERAKI_CALL_BLINK, 201, NULL, NULL, "{\"ledsBlinkId\":\"abc_DEF-1\"}", &r);
	assert_int_equal(r.outcome, MERAKI_OK);
	assert_string_equal(r.leds_blink_id, "abc_DEF-1");
	assert_null(r.status);
	meraki_result_release(&r);
}

/* Ids beyond 64 bits stay their decimal text, in a 201 and in a poll. */
static void test_blink_201_big_numeric_id(void **state)
{
	static const char *const ids[] = {
		"98765432109876543210",           /* above UINT64_MAX: json-c saturates it */
		"18446744073709551616",           /* UINT64_MAX + 1 */
		"18446744073709551615",           /* UINT64_MAX itself */
		"9223372036854775808",            /* INT64_MAX + 1 */
		"9223372036854775807",            /* INT64_MAX */
		"123456789012345678901234567890", /* 30 digits */
		"1000000000000000000",
	};
	char body[256];
	struct meraki_result r;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
		snprintf(body, sizeof(body), "{\"ledsBlinkId\":%s,\"status\":\"new\"}", ids[i]);
		classify(MERAKI_CALL_BLINK, 201, NULL, NULL, body, &r);
		assert_int_equal(r.outcome, MERAKI_OK);
		assert_string_equal(r.leds_blink_id, ids[i]);
		meraki_result_release(&r);

		snprintf(body, sizeof(body),
			 "{\"ledsBlinkId\": %s ,\"url\":\"/devices/Q2XX-AAAA-0001/liveTools/leds/blink/%s\","
			 "\"status\":\"complete\",\"request\":{\"serial\":\"Q2XX-AAAA-0001\",\"duration\":5}}",
			 ids[i], ids[i]);
		classify(MERAKI_CALL_GET, 200, NULL, NULL, body, &r);
		assert_int_equal(r.outcome, MERAKI_OK);
		assert_string_equal(r.leds_blink_id, ids[i]);
		assert_string_equal(r.status, "complete");
		meraki_result_release(&r);
	}

	/* A repeated key reads as its last value, literal and all. */
	classify(MERAKI_CALL_BLINK, 201, NULL, NULL, "{\"ledsBlinkId\":98765432109876543210,\"ledsBlinkId\":5}", &r);
	assert_string_equal(r.leds_blink_id, "5");
	meraki_result_release(&r);
	classify(MERAKI_CALL_BLINK, 201, NULL, NULL,
		 "{\"ledsBlinkId\":5,\"x\":[1,{\"a\":\"\\\"]\"}],\"ledsBlink\\u0049d\":98765432109876543210}", &r);
	assert_string_equal(r.leds_blink_id, "98765432109876543210");
	meraki_result_release(&r);

	/* Not an id: negative beyond 64 bits is no valid id either way, and
	 * a fraction is not an integer. */
	classify(MERAKI_CALL_BLINK, 201, NULL, NULL, "{\"ledsBlinkId\":98765432109876543210.5}", &r);
	assert_int_equal(r.outcome, MERAKI_RETRY);
	meraki_result_release(&r);
}

static void test_json_big_integers(void **state)
{
	static const char doc[] = "{\"a\":98765432109876543210,\"b\":-98765432109876543210,\"c\":[1,"
				  "18446744073709551616,{\"d\":9223372036854775807}],\"e\":9223372036854775808,"
				  "\"f\":\"98765432109876543210\",\"g\":-0,\"h\":1e30}";
	_cleanup_json_ struct json *root = NULL;
	const struct json *c;
	int64_t n = 42;

	(void)state;
	assert_int_equal(json_parse(doc, strlen(doc), 8, &root), 0);
	assert_string_equal(json_integer_text(json_get(root, "a")), "98765432109876543210");
	assert_int_equal(json_int64(json_get(root, "a"), &n), -ERANGE);
	assert_string_equal(json_integer_text(json_get(root, "b")), "-98765432109876543210");
	assert_int_equal(json_int64(json_get(root, "b"), &n), -ERANGE);
	c = json_get(root, "c");
	assert_string_equal(json_integer_text(json_array_get(c, 0)), "1");
	assert_string_equal(json_integer_text(json_array_get(c, 1)), "18446744073709551616");
	assert_string_equal(json_integer_text(json_get(json_array_get(c, 2), "d")), "9223372036854775807");
	assert_int_equal(json_int64(json_get(json_array_get(c, 2), "d"), &n), 0);
	assert_true(n == INT64_MAX);
	/* Above INT64_MAX json-c holds it exactly, but not as an int64. */
	assert_string_equal(json_integer_text(json_get(root, "e")), "9223372036854775808");
	assert_int_equal(json_int64(json_get(root, "e"), &n), -ERANGE);
	assert_null(json_integer_text(json_get(root, "f")));
	assert_string_equal(json_integer_text(json_get(root, "g")), "0");
	assert_null(json_integer_text(json_get(root, "h")));
	assert_true(n == INT64_MAX); /* untouched by the refusals */
	json_free(TAKE_PTR(root));

	/* json-c lets leading zeros through after a minus sign: the text is
	 * the number's all the same, long or short. */
	static const char zeros[] = "[-0000000000000000000042,-000000000000000000000098765432109876543210,-007,-0000]";
	assert_int_equal(json_parse(zeros, strlen(zeros), 8, &root), 0);
	assert_string_equal(json_integer_text(json_array_get(root, 0)), "-42");
	assert_string_equal(json_integer_text(json_array_get(root, 1)), "-98765432109876543210");
	assert_string_equal(json_integer_text(json_array_get(root, 2)), "-7");
	assert_string_equal(json_integer_text(json_array_get(root, 3)), "0");
}

static void test_blink_201_with_error_text(void **state)
{
	struct meraki_result r;

	(void)state;
	classify(MERAKI_CALL_BLINK, 201, NULL, NULL,
		 "{\"ledsBlinkId\":\"7\",\"status\":\"failed\",\"error\":\"Device offline\"}", &r);
	assert_int_equal(r.outcome, MERAKI_OK);
	assert_string_equal(r.status, "failed");
	assert_string_equal(r.error, "Device offline");
	meraki_result_release(&r);

	classify(MERAKI_CALL_BLINK, 201, NULL, NULL, "{\"ledsBlinkId\":\"7\",\"status\":\"new\",\"error\":\"\"}", &r);
	assert_int_equal(r.outcome, MERAKI_OK);
	assert_null(r.error);
	meraki_result_release(&r);
}

static void test_blink_201_unreadable(void **state)
{
	static const char *const bodies[] = {
		"<html><body><h1>201 Created</h1></body></html>",
		"",
		"[]",
		"[{\"ledsBlinkId\":\"1\"}]",
		"\"1284392014819\"",
		"{}",
		"{\"status\":\"new\"}",
		"{\"ledsBlinkId\":null,\"status\":\"new\"}",
		"{\"ledsBlinkId\":\"\",\"status\":\"new\"}",
		"{\"ledsBlinkId\":true}",
		"{\"ledsBlinkId\":1.5}",
		"{\"ledsBlinkId\":{\"id\":\"1\"}}",
		"{\"ledsBlinkId\":\"../../organizations\"}", /* goes into a URL path later */
		"{\"ledsBlinkId\":\"a b\"}",
		"{\"ledsBlinkId\":\"1\"", /* cut short */
	};
	struct meraki_result r;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
		classify(MERAKI_CALL_BLINK, 201, NULL, NULL, bodies[i], &r);
		assert_int_equal(r.outcome, MERAKI_RETRY);
		assert_int_equal(r.http_status, 201);
		assert_null(r.leds_blink_id);
		assert_non_null(r.error);
		assert_non_null(strstr(r.error, "201"));
		meraki_result_release(&r);
	}
	/* No body at all. */
	assert_int_equal(meraki_classify(MERAKI_CALL_BLINK, 201, NULL, NULL, NULL, 0, NOW, &r), 0);
	assert_int_equal(r.outcome, MERAKI_RETRY);
	meraki_result_release(&r);
}

static void test_get_200(void **state)
{
	struct meraki_result r;

	(void)state;
	classify(
		MERAKI_CALL_GET, 200, NULL, NULL,
		"{\"ledsBlinkId\":\"1284392014819\",\"url\":\"/devices/Q2XX-AAAA-0001/liveTools/leds/blink/1284392014819\","
		"\"status\":\"complete\",\"request\":{\"serial\":\"Q2XX-AAAA-0001\",\"duration\":20},\"error\":null}",
		&r);
	assert_int_equal(r.outcome, MERAKI_OK);
	assert_int_equal(r.http_status, 200);
	assert_string_equal(r.status, "complete");
	assert_string_equal(r.leds_blink_id, "1284392014819");
	assert_null(r.error);
	meraki_result_release(&r);

	/* A status alone will do for a GET. */
	classify(MERAKI_CALL_GET, 200, NULL, NULL, "{\"status\":\"running\"}", &r);
	assert_int_equal(r.outcome, MERAKI_OK);
	assert_string_equal(r.status, "running");
	assert_null(r.leds_blink_id);
	meraki_result_release(&r);
}

static void test_get_200_without_status(void **state)
{
	static const char *const bodies[] = {
		"{\"ledsBlinkId\":\"1284392014819\"}",
		"{\"ledsBlinkId\":\"1\",\"status\":null}",
		"{\"ledsBlinkId\":\"1\",\"status\":4}",
		"[]",
		"",
		"<html></html>",
	};
	struct meraki_result r;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
		classify(MERAKI_CALL_GET, 200, NULL, NULL, bodies[i], &r);
		assert_int_equal(r.outcome, MERAKI_RETRY);
		assert_null(r.status);
		assert_non_null(r.error);
		meraki_result_release(&r);
	}
}

static void test_long_2xx_error_truncated(void **state)
{
	struct strbuf body = STRBUF_INIT;
	struct meraki_result r;

	(void)state;
	assert_int_equal(strbuf_addstr(&body, "{\"ledsBlinkId\":\"7\",\"status\":\"failed\",\"error\":\"x"), 0);
	/* Two-byte characters after one ASCII byte: a byte cut at 1024
	 * would split one. */
	for (int i = 0; i < 1500; i++)
		assert_int_equal(strbuf_addstr(&body, "\xc3\xa9"), 0);
	assert_int_equal(strbuf_addstr(&body, "\"}"), 0);
	assert_int_equal(meraki_classify(MERAKI_CALL_BLINK, 201, NULL, NULL, body.buf, body.len, NOW, &r), 0);
	assert_int_equal(r.outcome, MERAKI_OK);
	assert_non_null(r.error);
	assert_true(strlen(r.error) <= 1024);
	assert_true(strlen(r.error) >= 1020);
	assert_int_equal(r.error[0], 'x');
	/* Whole characters only: the text must read back as JSON. */
	{
		struct strbuf sb = STRBUF_INIT;
		_cleanup_json_ struct json *v = NULL;

		assert_int_equal(json_escape(&sb, r.error), 0);
		assert_int_equal(json_parse(sb.buf, sb.len, 4, &v), 0);
		assert_string_equal(json_string(v, NULL), r.error);
		strbuf_release(&sb);
	}
	meraki_result_release(&r);
	strbuf_release(&body);
}

/* ---- meraki_classify: errors ---- */

static void test_4xx_fail_with_api_error(void **state)
{
	static const long statuses[] = {400, 404, 409, 422};
	struct meraki_result r;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
		classify(MERAKI_CALL_BLINK, statuses[i], NULL, NULL, "{\"errors\":[\"Device not found\"]}", &r);
		assert_int_equal(r.outcome, MERAKI_FAIL);
		assert_int_equal(r.http_status, statuses[i]);
		assert_string_equal(r.error, "Device not found");
		assert_false(r.auth_error);
		assert_null(r.leds_blink_id);
		meraki_result_release(&r);
	}
	classify(MERAKI_CALL_GET, 404, NULL, NULL, "{\"errors\":[\"Device not found\"]}", &r);
	assert_int_equal(r.outcome, MERAKI_FAIL);
	assert_string_equal(r.error, "Device not found");
	meraki_result_release(&r);
}

static void test_4xx_errors_joined(void **state)
{
	struct meraki_result r;

	(void)state;
	classify(MERAKI_CALL_BLINK, 400, NULL, NULL,
		 "{\"errors\":[\"'duration' must be an integer\",\"'callback' is invalid\",\"third\"]}", &r);
	assert_int_equal(r.outcome, MERAKI_FAIL);
	assert_string_equal(r.error, "'duration' must be an integer; 'callback' is invalid; third");
	meraki_result_release(&r);

	/* Members that are not strings, or empty, are skipped. */
	classify(MERAKI_CALL_BLINK, 400, NULL, NULL, "{\"errors\":[1,\"first\",null,\"\",{\"x\":1},\"second\"]}", &r);
	assert_string_equal(r.error, "first; second");
	meraki_result_release(&r);
}

static void test_4xx_without_api_error(void **state)
{
	static const char *const bodies[] = {
		"",
		"<html>Bad Request</html>",
		"{}",
		"{\"errors\":[]}",
		"{\"errors\":\"Device not found\"}",
		"{\"errors\":[1,2]}",
		"{\"errors\":[\"\"]}",
		"[\"Device not found\"]",
	};
	struct meraki_result r;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
		classify(MERAKI_CALL_BLINK, 400, NULL, NULL, bodies[i], &r);
		assert_int_equal(r.outcome, MERAKI_FAIL);
		/* Something to show people, however little the body said. */
		assert_string_equal(r.error, "HTTP 400");
		meraki_result_release(&r);
	}
}

static void test_long_api_errors_truncated(void **state)
{
	struct strbuf body = STRBUF_INIT;
	struct meraki_result r;

	(void)state;
	assert_int_equal(strbuf_addstr(&body, "{\"errors\":["), 0);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(strbuf_addstr(&body, i ? ",\"xy" : "\"xy"), 0);
		for (int k = 0; k < 100; k++)
			assert_int_equal(strbuf_addstr(&body, "\xe2\x82\xac"), 0);
		assert_int_equal(strbuf_addstr(&body, "\""), 0);
	}
	assert_int_equal(strbuf_addstr(&body, "]}"), 0);
	assert_int_equal(meraki_classify(MERAKI_CALL_BLINK, 400, NULL, NULL, body.buf, body.len, NOW, &r), 0);
	assert_int_equal(r.outcome, MERAKI_FAIL);
	assert_true(strlen(r.error) <= 1024);
	assert_true(strlen(r.error) > 1000);
	{
		struct strbuf sb = STRBUF_INIT;
		_cleanup_json_ struct json *v = NULL;

		assert_int_equal(json_escape(&sb, r.error), 0);
		assert_int_equal(json_parse(sb.buf, sb.len, 4, &v), 0);
		strbuf_release(&sb);
	}
	meraki_result_release(&r);
	strbuf_release(&body);
}

static void test_auth_errors(void **state)
{
	static const long statuses[] = {401, 403};
	struct meraki_result r;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
		classify(MERAKI_CALL_BLINK, statuses[i], NULL, NULL, "{\"errors\":[\"Invalid API key\"]}", &r);
		assert_int_equal(r.outcome, MERAKI_FAIL);
		assert_true(r.auth_error);
		assert_string_equal(r.error, "Invalid API key");
		meraki_result_release(&r);

		classify(MERAKI_CALL_GET, statuses[i], NULL, NULL, "", &r);
		assert_int_equal(r.outcome, MERAKI_FAIL);
		assert_true(r.auth_error);
		assert_non_null(r.error);
		meraki_result_release(&r);
	}
}

static void test_rate_limited(void **state)
{
	struct meraki_result r;
	char date[64];
	struct tm tm;
	time_t t;

	(void)state;
	classify(MERAKI_CALL_BLINK, 429, NULL, "7", "{\"errors\":[\"API rate limit exceeded for organization\"]}", &r);
	assert_int_equal(r.outcome, MERAKI_RATE_LIMITED);
	assert_int_equal(r.http_status, 429);
	assert_int_equal(r.retry_after_usec, 7 * USEC_PER_SEC);
	assert_string_equal(r.error, "API rate limit exceeded for organization");
	assert_false(r.auth_error);
	meraki_result_release(&r);

	/* An HTTP-date 30 s after now. */
	t = (time_t)(NOW_SEC + 30);
	assert_non_null(gmtime_r(&t, &tm));
	assert_true(strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0);
	classify(MERAKI_CALL_BLINK, 429, NULL, date, "", &r);
	assert_int_equal(r.outcome, MERAKI_RATE_LIMITED);
	assert_int_equal(r.retry_after_usec, 30 * USEC_PER_SEC);
	meraki_result_release(&r);

	/* A date in the past: go now. */
	classify(MERAKI_CALL_BLINK, 429, NULL, "Sun, 06 Nov 1994 08:49:37 GMT", "", &r);
	assert_int_equal(r.outcome, MERAKI_RATE_LIMITED);
	assert_int_equal(r.retry_after_usec, 0);
	meraki_result_release(&r);

	/* None at all (the front proxy's 429): the caller backs off. */
	classify(MERAKI_CALL_BLINK, 429, NULL, NULL, "", &r);
	assert_int_equal(r.outcome, MERAKI_RATE_LIMITED);
	assert_int_equal(r.retry_after_usec, UINT64_MAX);
	assert_string_equal(r.error, "HTTP 429");
	meraki_result_release(&r);

	/* Garbage is as good as none. */
	static const char *const garbage[] = {
		"", "soon", "-5", "7s", "0x10", "1.5", "Sun, 06 Nov 1994", "99999999999999999999x"};
	for (size_t i = 0; i < ELEMENTSOF(garbage); i++) {
		classify(MERAKI_CALL_GET, 429, NULL, garbage[i], "", &r);
		assert_int_equal(r.outcome, MERAKI_RATE_LIMITED);
		assert_int_equal(r.retry_after_usec, UINT64_MAX);
		meraki_result_release(&r);
	}

	/* A huge wait is capped. */
	classify(MERAKI_CALL_BLINK, 429, NULL, "86400000", "", &r);
	assert_int_equal(r.retry_after_usec, MERAKI_RETRY_AFTER_MAX);
	meraki_result_release(&r);
}

static void test_transient(void **state)
{
	static const long statuses[] = {500, 502, 503, 504, 408, 599};
	struct meraki_result r;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
		classify(MERAKI_CALL_BLINK, statuses[i], NULL, NULL, "<html>Bad Gateway</html>", &r);
		assert_int_equal(r.outcome, MERAKI_RETRY);
		assert_int_equal(r.http_status, statuses[i]);
		assert_false(r.auth_error);
		assert_non_null(r.error);
		meraki_result_release(&r);

		classify(MERAKI_CALL_GET, statuses[i], NULL, NULL, "{\"errors\":[\"Internal error\"]}", &r);
		assert_int_equal(r.outcome, MERAKI_RETRY);
		assert_string_equal(r.error, "Internal error");
		meraki_result_release(&r);
	}
	/* A redirect that reached the classifier could not be followed. */
	classify(MERAKI_CALL_BLINK, 302, NULL, NULL, "", &r);
	assert_int_equal(r.outcome, MERAKI_RETRY);
	meraki_result_release(&r);
}

static void test_transport_error(void **state)
{
	struct meraki_result r;

	(void)state;
	classify(MERAKI_CALL_BLINK, 0, "Could not resolve hostname", NULL, NULL, &r);
	assert_int_equal(r.outcome, MERAKI_RETRY);
	assert_int_equal(r.http_status, 0);
	assert_string_equal(r.error, "Could not resolve hostname");
	assert_int_equal(r.retry_after_usec, UINT64_MAX);
	assert_null(r.leds_blink_id);
	meraki_result_release(&r);

	/* Whatever the status and body, a transport error decides. */
	classify(MERAKI_CALL_GET, 200, "Operation timed out after 60000 milliseconds", "7", "{\"status\":\"complete\"}",
		 &r);
	assert_int_equal(r.outcome, MERAKI_RETRY);
	assert_int_equal(r.http_status, 0);
	assert_string_equal(r.error, "Operation timed out after 60000 milliseconds");
	assert_null(r.status);
	meraki_result_release(&r);

	/* A '%' in it is text, not a format. */
	classify(MERAKI_CALL_GET, 0, "100%s done %n", NULL, NULL, &r);
	assert_string_equal(r.error, "100%s done %n");
	meraki_result_release(&r);
}

/* ---- meraki_parse_retry_after ---- */

static void test_parse_retry_after_seconds(void **state)
{
	uint64_t u = 42;

	(void)state;
	assert_int_equal(meraki_parse_retry_after("7", NOW, &u), 0);
	assert_int_equal(u, 7 * USEC_PER_SEC);
	assert_int_equal(meraki_parse_retry_after("0", NOW, &u), 0);
	assert_int_equal(u, 0);
	assert_int_equal(meraki_parse_retry_after("  120", NOW, &u), 0);
	assert_int_equal(u, 120 * USEC_PER_SEC);
	assert_int_equal(meraki_parse_retry_after("\t3", NOW, &u), 0);
	assert_int_equal(u, 3 * USEC_PER_SEC);
	assert_int_equal(meraki_parse_retry_after("3600", NOW, &u), 0);
	assert_int_equal(u, MERAKI_RETRY_AFTER_MAX);
	assert_int_equal(meraki_parse_retry_after("3601", NOW, &u), 0);
	assert_int_equal(u, MERAKI_RETRY_AFTER_MAX);
	assert_int_equal(meraki_parse_retry_after("18446744073709551615", NOW, &u), 0);
	assert_int_equal(u, MERAKI_RETRY_AFTER_MAX);
	/* Past what 64 bits hold, still a number of seconds: capped too. */
	assert_int_equal(meraki_parse_retry_after("99999999999999999999999", NOW, &u), 0);
	assert_int_equal(u, MERAKI_RETRY_AFTER_MAX);
}

static void test_parse_retry_after_date(void **state)
{
	uint64_t u = 42;
	const uint64_t rfc = (uint64_t)RFC_DATE_SEC * USEC_PER_SEC;

	(void)state;
	assert_int_equal(meraki_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", rfc - 120 * USEC_PER_SEC, &u), 0);
	assert_int_equal(u, 120 * USEC_PER_SEC);
	assert_int_equal(meraki_parse_retry_after("  Sun, 06 Nov 1994 08:49:37 GMT", rfc - 1, &u), 0);
	assert_int_equal(u, 1);
	/* Now with a fraction of a second. */
	assert_int_equal(meraki_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", rfc - 2500000, &u), 0);
	assert_int_equal(u, 2500000);
	/* At or after the date: no wait. */
	assert_int_equal(meraki_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", rfc, &u), 0);
	assert_int_equal(u, 0);
	u = 42;
	assert_int_equal(meraki_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", NOW, &u), 0);
	assert_int_equal(u, 0);
	/* Far ahead: capped. */
	assert_int_equal(meraki_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", rfc - 86400 * USEC_PER_SEC, &u), 0);
	assert_int_equal(u, MERAKI_RETRY_AFTER_MAX);
	/* Before 1970 is in the past too. */
	u = 42;
	assert_int_equal(meraki_parse_retry_after("Thu, 01 Jan 1960 00:00:00 GMT", NOW, &u), 0);
	assert_int_equal(u, 0);
	/* The day name is not checked against the date; the date counts. */
	assert_int_equal(meraki_parse_retry_after("Mon, 06 Nov 1994 08:49:37 GMT", rfc - USEC_PER_SEC, &u), 0);
	assert_int_equal(u, USEC_PER_SEC);
}

static void test_parse_retry_after_garbage(void **state)
{
	static const char *const bad[] = {
		"",
		"   ",
		"soon",
		"-1",
		"+7",
		"7s",
		"7 seconds",
		"1e3",
		"0x10",
		"1.5",
		"Sun, 06 Nov 1994",
		"Sun, 06 Nov 1994 08:49:37 GMT trailing",
		"06 Nov 1994 08:49:37 GMT",
		"Sun, 32 Nov 1994 08:49:37 GMT",
		"Sun, 06 Foo 1994 08:49:37 GMT",
	};
	uint64_t u = 42;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		assert_int_equal(meraki_parse_retry_after(bad[i], NOW, &u), -EINVAL);
		assert_int_equal(u, 42); /* untouched */
	}
}

/* ---- meraki_origin, meraki_same_origin ---- */

static void assert_origin(const char *url, const char *want)
{
	char buf[MERAKI_ORIGIN_MAX];
	int r = meraki_origin(url, buf, sizeof(buf));

	if (r < 0 || strcmp(buf, want) != 0)
		fail_msg("origin of \"%s\": %d \"%s\", want \"%s\"", url, r, r < 0 ? "" : buf, want);
}

static void test_origin(void **state)
{
	char buf[MERAKI_ORIGIN_MAX];

	(void)state;
	assert_origin("https://api.meraki.com/api/v1", "https://api.meraki.com:443");
	assert_origin("HTTPS://API.Meraki.COM:443/api/v1?x=1#f", "https://api.meraki.com:443");
	assert_origin("http://127.0.0.1:8080/api/v1", "http://127.0.0.1:8080");
	assert_origin("http://127.0.0.1/", "http://127.0.0.1:80");
	assert_origin("https://user:pw@api.meraki.com/", "https://api.meraki.com:443");
	assert_origin("http://[::1]:8080/x", "http://[::1]:8080");
	assert_origin("http://[0:0:0:0:0:0:0:1]/x", "http://[::1]:80");
	assert_origin("http://[FE80::1%25eth0]:8/x", "http://[fe80::1%eth0]:8");

	/* Not http(s), or no origin at all. */
	assert_int_equal(meraki_origin("ftp://api.meraki.com/x", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(meraki_origin("file:///etc/passwd", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(meraki_origin("/api/v1/relative", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(meraki_origin("not a url", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(meraki_origin("", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(meraki_origin("https://", buf, sizeof(buf)), -EINVAL);
	/* A host that is %-escaped into something no name is (found by fuzz_meraki). */
	assert_int_equal(meraki_origin("https://n1%258293.meraki.com/api/v1", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(meraki_origin("https://1%2e1/", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(meraki_origin("https://api%2Emeraki.com/", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "https://api.meraki.com:443");
	assert_int_equal(meraki_origin("https://api.meraki.com/", buf, 10), -ENAMETOOLONG);
}

static void test_same_origin(void **state)
{
	static const char BASE[] = "https://api.meraki.com/api/v1";

	(void)state;
	/* Same scheme, host and port: any path, query, case of the host,
	 * default port written or not. */
	assert_true(meraki_same_origin(BASE, "https://api.meraki.com/api/v1/devices/x"));
	assert_true(meraki_same_origin(BASE, "https://api.meraki.com/other/path?q=1"));
	assert_true(meraki_same_origin(BASE, "https://API.MERAKI.COM/api/v1/x"));
	assert_true(meraki_same_origin("https://API.Meraki.COM/api/v1", "https://api.meraki.com/x"));
	assert_true(meraki_same_origin(BASE, "https://api.meraki.com:443/api/v1/x"));
	assert_true(meraki_same_origin("https://api.meraki.com:443/api/v1", "https://api.meraki.com/x"));
	assert_true(meraki_same_origin("http://127.0.0.1/api/v1", "http://127.0.0.1:80/x"));
	assert_true(meraki_same_origin("http://127.0.0.1:8080/api/v1", "http://127.0.0.1:8080/moved/api/v1/x"));
	assert_true(meraki_same_origin("http://[::1]:8080/api/v1", "http://[0:0:0:0:0:0:0:1]:8080/x"));
	assert_true(meraki_same_origin("http://[::1]/api/v1", "http://[::1]:80/x"));
	assert_true(meraki_same_origin("https://[2001:DB8::1]/api/v1", "https://[2001:db8::1]:443/x"));

	/* Another port of the same host. */
	assert_false(meraki_same_origin(BASE, "https://api.meraki.com:8443/api/v1/x"));
	assert_false(meraki_same_origin("http://127.0.0.1:8080/api/v1", "http://127.0.0.1:8081/api/v1/x"));
	assert_false(meraki_same_origin("http://127.0.0.1/api/v1", "http://127.0.0.1:8080/x"));
	assert_false(meraki_same_origin("http://[::1]:8080/api/v1", "http://[::1]:8081/x"));
	/* https -> http, also to the same host and port; and the other way. */
	assert_false(meraki_same_origin(BASE, "http://api.meraki.com/api/v1/x"));
	assert_false(meraki_same_origin(BASE, "http://api.meraki.com:443/api/v1/x"));
	assert_false(meraki_same_origin("http://127.0.0.1:8080/api/v1", "https://127.0.0.1:8080/x"));
	/* Another host, sibling hosts of one domain included. */
	assert_false(meraki_same_origin(BASE, "https://n123.meraki.com/api/v1/devices/x"));
	assert_false(meraki_same_origin(BASE, "https://meraki.com/api/v1"));
	assert_false(meraki_same_origin(BASE, "https://api.meraki.com.evil.net/api/v1"));
	assert_false(meraki_same_origin(BASE, "https://api.meraki.com@evil.net/api/v1"));
	assert_false(meraki_same_origin(BASE, "https://evil.net/api.meraki.com/api/v1"));
	assert_false(meraki_same_origin(BASE, "https://api.meraki.com./api/v1"));
	assert_false(meraki_same_origin("http://127.0.0.1:8080/api/v1", "http://127.0.0.2:8080/api/v1/x"));
	assert_false(meraki_same_origin("http://[::1]:8080/api/v1", "http://[::2]:8080/x"));
	assert_false(meraki_same_origin("http://[::1]:8080/api/v1", "http://127.0.0.1:8080/x"));
	/* Other schemes and garbage are no origin, not even their own. */
	assert_false(meraki_same_origin(BASE, "ftp://api.meraki.com/x"));
	assert_false(meraki_same_origin("ftp://api.meraki.com/x", "ftp://api.meraki.com/x"));
	assert_false(meraki_same_origin(BASE, "file:///etc/passwd"));
	assert_false(meraki_same_origin(BASE, "not a url"));
	assert_false(meraki_same_origin(BASE, ""));
	assert_false(meraki_same_origin(BASE, "/api/v1/relative"));
	assert_false(meraki_same_origin(BASE, "https://"));
	assert_false(meraki_same_origin("not a url", "not a url"));
	assert_false(meraki_same_origin("", ""));
}

/* ---- meraki_blink_body ---- */

static int count_member(const char *key, const struct json *val, void *ud)
{
	(void)key;
	(void)val;
	(*(unsigned *)ud)++;
	return 0;
}

static unsigned n_members(const struct json *v)
{
	unsigned n = 0;

	assert_int_equal(json_kind_of(v), JSON_OBJECT);
	assert_int_equal(json_object_each(v, count_member, &n), 0);
	return n;
}

static struct json *parse_body(const struct meraki_blink_request *req)
{
	_cleanup_free_ char *body = NULL;
	struct json *root = NULL;

	assert_int_equal(meraki_blink_body(req, &body), 0);
	assert_non_null(body);
	/* One line of compact JSON. */
	assert_null(strchr(body, '\n'));
	assert_int_equal(json_parse(body, strlen(body), 8, &root), 0);
	return root;
}

static void test_blink_body_url_and_secret(void **state)
{
	const struct meraki_blink_request req = {
		.serial = "Q2XX-AAAA-0001",
		.duration = 20,
		.callback_url = "https://blinkhook.example.net/callbacks/leds-blink/job-1",
		.shared_secret = "AbC-_0123456789abcdefghijklmnopqrstuvwxyzAB",
	};
	_cleanup_json_ struct json *root = parse_body(&req);
	const struct json *cb;
	int64_t d = 0;

	(void)state;
	assert_int_equal(n_members(root), 2);
	assert_int_equal(json_kind_of(json_get(root, "duration")), JSON_INT);
	assert_int_equal(json_int64(json_get(root, "duration"), &d), 0);
	assert_int_equal(d, 20);
	cb = json_get(root, "callback");
	assert_non_null(cb);
	assert_int_equal(n_members(cb), 2);
	assert_string_equal(json_string(json_get(cb, "url"), NULL), req.callback_url);
	assert_string_equal(json_string(json_get(cb, "sharedSecret"), NULL), req.shared_secret);
	assert_null(json_get(cb, "httpServer"));
	assert_null(json_get(cb, "payloadTemplate"));
	/* The serial goes in the URL, not in the body. */
	assert_null(json_get(root, "serial"));
}

static void test_blink_body_durations(void **state)
{
	static const unsigned durations[] = {1, 3600};

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(durations); i++) {
		const struct meraki_blink_request req = {
			.serial = "Q2XX-AAAA-0001",
			.duration = durations[i],
			.callback_url = "https://h.example.net/cb",
			.shared_secret = "s",
		};
		_cleanup_json_ struct json *root = parse_body(&req);
		int64_t d = 0;

		assert_int_equal(json_int64(json_get(root, "duration"), &d), 0);
		assert_int_equal(d, durations[i]);
	}
}

static void test_blink_body_http_server(void **state)
{
	const struct meraki_blink_request req = {
		.serial = "Q2XX-AAAA-0001",
		.duration = 30,
		.http_server_id = "aHR0cHM6Ly93d3cuZXhhbXBsZS5jb20vd2ViaG9va3M=",
	};
	_cleanup_json_ struct json *root = parse_body(&req);
	const struct json *cb, *hs;
	int64_t d = 0;

	(void)state;
	assert_int_equal(json_int64(json_get(root, "duration"), &d), 0);
	assert_int_equal(d, 30);
	cb = json_get(root, "callback");
	assert_int_equal(n_members(cb), 1);
	assert_null(json_get(cb, "url"));
	assert_null(json_get(cb, "sharedSecret"));
	hs = json_get(cb, "httpServer");
	assert_int_equal(n_members(hs), 1);
	assert_string_equal(json_string(json_get(hs, "id"), NULL), req.http_server_id);
}

static void test_blink_body_http_server_wins(void **state)
{
	/* Given both, the httpServer form is sent, and no secret with it. */
	const struct meraki_blink_request req = {
		.serial = "Q2XX-AAAA-0001",
		.duration = 20,
		.callback_url = "https://h.example.net/cb",
		.shared_secret = "per-job-secret",
		.http_server_id = "srv-1",
	};
	_cleanup_free_ char *body = NULL;
	_cleanup_json_ struct json *root = parse_body(&req);
	const struct json *cb = json_get(root, "callback");

	(void)state;
	assert_null(json_get(cb, "url"));
	assert_null(json_get(cb, "sharedSecret"));
	assert_string_equal(json_string(json_get(json_get(cb, "httpServer"), "id"), NULL), "srv-1");
	assert_int_equal(meraki_blink_body(&req, &body), 0);
	assert_null(strstr(body, "per-job-secret"));
}

static void test_blink_body_payload_template(void **state)
{
	const struct meraki_blink_request with_url = {
		.serial = "Q2XX-AAAA-0001",
		.duration = 20,
		.callback_url = "https://h.example.net/cb",
		.shared_secret = "s3cret",
		.payload_template_id = "wpt_00005",
	};
	const struct meraki_blink_request with_server = {
		.serial = "Q2XX-AAAA-0001",
		.duration = 20,
		.http_server_id = "srv-1",
		.payload_template_id = "wpt_12345",
	};
	_cleanup_json_ struct json *a = parse_body(&with_url);
	_cleanup_json_ struct json *b = parse_body(&with_server);
	const struct json *cb;

	(void)state;
	cb = json_get(a, "callback");
	assert_int_equal(n_members(cb), 3);
	assert_string_equal(json_string(json_get(cb, "url"), NULL), "https://h.example.net/cb");
	assert_string_equal(json_string(json_get(json_get(cb, "payloadTemplate"), "id"), NULL), "wpt_00005");
	assert_int_equal(n_members(json_get(cb, "payloadTemplate")), 1);

	cb = json_get(b, "callback");
	assert_int_equal(n_members(cb), 2);
	assert_string_equal(json_string(json_get(json_get(cb, "httpServer"), "id"), NULL), "srv-1");
	assert_string_equal(json_string(json_get(json_get(cb, "payloadTemplate"), "id"), NULL), "wpt_12345");
}

static void test_blink_body_escaping(void **state)
{
	static const char *const secrets[] = {
		"with \"quotes\"",
		"back\\slash\\",
		"\"\\\"",
		"tab\there\nnewline\r",
		"ctl\x01\x1f end",
		"</script>",
		"\xc3\xa9\xe2\x82\xac\xf0\x9f\x92\xa1",
		"{\"sharedSecret\":\"x\"}",
	};

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(secrets); i++) {
		const struct meraki_blink_request req = {
			.serial = "Q2XX-AAAA-0001",
			.duration = 20,
			.callback_url = "https://h.example.net/cb?a=\"1\"&b=\\",
			.shared_secret = secrets[i],
			.payload_template_id = secrets[i],
		};
		_cleanup_json_ struct json *root = parse_body(&req);
		const struct json *cb = json_get(root, "callback");

		assert_int_equal(n_members(root), 2);
		assert_string_equal(json_string(json_get(cb, "sharedSecret"), NULL), secrets[i]);
		assert_string_equal(json_string(json_get(cb, "url"), NULL), req.callback_url);
		assert_string_equal(json_string(json_get(json_get(cb, "payloadTemplate"), "id"), NULL), secrets[i]);
	}
}

/* ---- device look-ups: list answers and the Link header ---- */

static void test_devices_answer(void **state)
{
	(void)state;
	struct meraki_result r;

	/* Devices as the API lists them; an element without a usable serial
	 * (none, malformed, not an object) is skipped. */
	classify(MERAKI_CALL_DEVICES, 200, NULL, NULL,
		 "[{\"name\":\"edge-sw-1\",\"lat\":37.4,\"lng\":-122.0,\"serial\":\"Q2AA-0001-0001\",\"mac\":"
		 "\"00:18:0a:00:00:01\",\"networkId\":\"N_1\",\"model\":\"MS120-8\",\"tags\":[],\"details\":[]},"
		 "{\"name\":null,\"serial\":\"Q2AA-0001-0002\"},{\"name\":\"x\",\"serial\":\"bad\"},{\"name\":\"y\"},7,"
		 "{\"name\":\"z\",\"serial\":5}]",
		 &r);
	assert_int_equal(r.outcome, MERAKI_OK);
	assert_int_equal(r.n_items, 2);
	assert_string_equal(r.items[0].id, "Q2AA-0001-0001");
	assert_string_equal(r.items[0].name, "edge-sw-1");
	assert_string_equal(r.items[0].mac, "00:18:0a:00:00:01");
	assert_string_equal(r.items[1].id, "Q2AA-0001-0002");
	assert_null(r.items[1].name);
	assert_null(r.items[1].mac);
	assert_false(r.truncated);
	meraki_result_release(&r);

	/* An empty page is an answer: no device. */
	classify(MERAKI_CALL_DEVICES, 200, NULL, NULL, "[]", &r);
	assert_int_equal(r.outcome, MERAKI_OK);
	assert_int_equal(r.n_items, 0);
	meraki_result_release(&r);

	/* A 200 that is no list cannot be read: asked again. */
	static const char *const broken[] = {"{\"serial\":\"Q2AA-0001-0001\"}", "", "<html>", "[{}"};
	for (size_t i = 0; i < ELEMENTSOF(broken); i++) {
		classify(MERAKI_CALL_DEVICES, 200, NULL, NULL, broken[i], &r);
		assert_int_equal(r.outcome, MERAKI_RETRY);
		assert_int_equal(r.n_items, 0);
		assert_non_null(strstr(r.error, "unexpected body"));
		meraki_result_release(&r);
	}

	/* The errors of a look-up are those of any call. */
	classify(MERAKI_CALL_DEVICES, 429, NULL, "3", "{\"errors\":[\"Too many\"]}", &r);
	assert_int_equal(r.outcome, MERAKI_RATE_LIMITED);
	assert_int_equal(r.retry_after_usec, 3 * USEC_PER_SEC);
	meraki_result_release(&r);
	classify(MERAKI_CALL_DEVICES, 404, NULL, NULL, "{\"errors\":[\"Organization not found\"]}", &r);
	assert_int_equal(r.outcome, MERAKI_FAIL);
	assert_string_equal(r.error, "Organization not found");
	meraki_result_release(&r);

	/* A long name is cut to a device name's length, on a UTF-8 boundary. */
	char body[1200], name[600];
	for (size_t i = 0; i < 150; i++)
		memcpy(name + 3 * i, "\xe2\x82\xac", 3);
	name[450] = 0;
	snprintf(body, sizeof(body), "[{\"name\":\"%s\",\"serial\":\"Q2AA-0001-0001\"}]", name);
	classify(MERAKI_CALL_DEVICES, 200, NULL, NULL, body, &r);
	assert_int_equal(r.n_items, 1);
	assert_int_equal(strlen(r.items[0].name), 255);
	meraki_result_release(&r);

	/* A name of 255 bytes and more is not the 255-byte name asked for;
	 * one of exactly 255 bytes is. */
	memset(name, 'a', 255);
	memcpy(name + 255, "-suffix", 8);
	snprintf(body, sizeof(body), "[{\"name\":\"%s\",\"serial\":\"Q2AA-0001-0001\"}]", name);
	classify(MERAKI_CALL_DEVICES, 200, NULL, NULL, body, &r);
	assert_int_equal(r.n_items, 1);
	name[255] = 0;
	assert_false(meraki_item_named(&r.items[0], name));
	meraki_result_release(&r);
	snprintf(body, sizeof(body), "[{\"name\":\"%s\",\"serial\":\"Q2AA-0001-0001\"}]", name);
	classify(MERAKI_CALL_DEVICES, 200, NULL, NULL, body, &r);
	assert_true(meraki_item_named(&r.items[0], name));
	assert_false(meraki_item_named(&r.items[0], "aaa"));
	meraki_result_release(&r);
}

static void test_organizations_answer(void **state)
{
	(void)state;
	struct meraki_result r;

	/* An id as a string or a number; one unfit for a URL path is skipped. */
	classify(
		MERAKI_CALL_ORGS, 200, NULL, NULL,
		"[{\"id\":\"549236\",\"name\":\"Org A\",\"url\":\"https://n1.meraki.com/o/x\",\"api\":{\"enabled\":true}},"
		"{\"id\":1234567890123456789012,\"name\":\"Org B\"},{\"id\":\"../x\",\"name\":\"C\"},{\"name\":\"D\"}]",
		&r);
	assert_int_equal(r.outcome, MERAKI_OK);
	assert_int_equal(r.n_items, 2);
	assert_string_equal(r.items[0].id, "549236");
	assert_string_equal(r.items[0].name, "Org A");
	assert_null(r.items[0].mac);
	assert_string_equal(r.items[1].id, "1234567890123456789012");
	meraki_result_release(&r);
}

static void link_next(const char *link, int want, const char *want_url)
{
	char buf[256] = "untouched";

	if (meraki_link_next(link, buf, sizeof(buf)) != want)
		fail_msg("Link %s: not %d", link, want);
	if (want == 0)
		assert_string_equal(buf, want_url);
}

static void test_link_header(void **state)
{
	(void)state;
	char small[16];

	/* As the API sends it: first, prev, next, last in one header. */
	link_next(
		"<https://api.meraki.com/api/v1/organizations/1/devices?perPage=3>; rel=first, "
		"<https://api.meraki.com/api/v1/organizations/1/devices?perPage=3&startingAfter=Q2AA-0001-0003>; "
		"rel=next, <https://api.meraki.com/api/v1/organizations/1/devices?perPage=3&endingBefore=zzz>; rel=last",
		0, "https://api.meraki.com/api/v1/organizations/1/devices?perPage=3&startingAfter=Q2AA-0001-0003");
	/* Quoted, in a list of relations, any case, other parameters too,
	 * white space about. */
	link_next("<https://a/1>; rel=\"prev\", <https://a/2>; title=\"x, y\"; rel=\"last next\"", 0, "https://a/2");
	link_next("  <https://a/3> ;REL = NEXT  ", 0, "https://a/3");
	link_next("<https://a/4>; rel=next", 0, "https://a/4");
	/* No next: the last page. */
	link_next("<https://a/1>; rel=first, <https://a/9>; rel=last", -ENOENT, NULL);
	link_next("", -ENOENT, NULL);
	link_next("<https://a/1>; rel=nextpage, <https://a/2>; rel=\"previous\"", -ENOENT, NULL);
	link_next("<https://a/1>; title=\"rel=next\"", -ENOENT, NULL);
	/* What cannot be read. */
	link_next("https://a/1; rel=next", -EINVAL, NULL);
	link_next("<https://a/1; rel=next", -EINVAL, NULL);
	link_next("<>; rel=next", -EINVAL, NULL);
	link_next("<https://a/1 x>; rel=next", -EINVAL, NULL);
	link_next("<https://at, <https://b/2>; rel=next", -EINVAL, NULL);
	/* Too long for the buffer. */
	assert_int_equal(meraki_link_next("<https://api.meraki.com/x>; rel=next", small, sizeof(small)), -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blink_201),
		cmocka_unit_test(test_blink_201_numeric_id),
		cmocka_unit_test(test_blink_201_big_numeric_id),
		cmocka_unit_test(test_json_big_integers),
		cmocka_unit_test(test_blink_201_with_error_text),
		cmocka_unit_test(test_blink_201_unreadable),
		cmocka_unit_test(test_get_200),
		cmocka_unit_test(test_get_200_without_status),
		cmocka_unit_test(test_long_2xx_error_truncated),
		cmocka_unit_test(test_4xx_fail_with_api_error),
		cmocka_unit_test(test_4xx_errors_joined),
		cmocka_unit_test(test_4xx_without_api_error),
		cmocka_unit_test(test_long_api_errors_truncated),
		cmocka_unit_test(test_auth_errors),
		cmocka_unit_test(test_rate_limited),
		cmocka_unit_test(test_transient),
		cmocka_unit_test(test_transport_error),
		cmocka_unit_test(test_parse_retry_after_seconds),
		cmocka_unit_test(test_parse_retry_after_date),
		cmocka_unit_test(test_parse_retry_after_garbage),
		cmocka_unit_test(test_origin),
		cmocka_unit_test(test_same_origin),
		cmocka_unit_test(test_devices_answer),
		cmocka_unit_test(test_organizations_answer),
		cmocka_unit_test(test_link_header),
		cmocka_unit_test(test_blink_body_url_and_secret),
		cmocka_unit_test(test_blink_body_durations),
		cmocka_unit_test(test_blink_body_http_server),
		cmocka_unit_test(test_blink_body_http_server_wins),
		cmocka_unit_test(test_blink_body_payload_template),
		cmocka_unit_test(test_blink_body_escaping),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
