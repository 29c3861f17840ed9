/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "testlib.h"

#include "blinkhook/log.h"
#include "blinkhook/util.h"

#define SENTINEL UINT64_C(0xdeadbeefcafef00d)

static int group_setup(void **state)
{
	(void)state;
	return tmpdir_setup("test_util");
}

static int group_teardown(void **state)
{
	(void)state;
	return tmpdir_teardown();
}

static char *tmp_path(const char *name)
{
	char *p = path_join(tmpdir, name);

	assert_non_null(p);
	return p;
}

static void write_raw(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, data, len), 0);
	assert_int_equal(close(fd), 0);
}

/* ---- time spans ---- */

static void assert_timespan(const char *s, uint64_t want)
{
	uint64_t v = SENTINEL;
	int r = parse_timespan(s, &v);

	if (r != 0 || v != want)
		fail_msg("parse_timespan(\"%s\") = %d, %llu; want %llu", s, r, (unsigned long long)v,
			 (unsigned long long)want);
}

static void assert_timespan_err(const char *s, int want)
{
	uint64_t v = SENTINEL;
	int r = parse_timespan(s, &v);

	if (r != want)
		fail_msg("parse_timespan(\"%s\") = %d, want %d", s, r, want);
	/* Out-parameters are left alone on failure. */
	assert_true(v == SENTINEL);
}

static void test_hex_value(void **state)
{
	(void)state;
	assert_int_equal(hex_value('0'), 0);
	assert_int_equal(hex_value('9'), 9);
	assert_int_equal(hex_value('a'), 10);
	assert_int_equal(hex_value('F'), 15);
	assert_int_equal(hex_value('g'), -1);
	assert_int_equal(hex_value('/'), -1);
	assert_int_equal(hex_value('\0'), -1);
}

static void test_timespan_units(void **state)
{
	(void)state;
	assert_timespan("1us", 1);
	assert_timespan("7usec", 7);
	assert_timespan("1ms", USEC_PER_MSEC);
	assert_timespan("250msec", 250 * USEC_PER_MSEC);
	assert_timespan("1s", USEC_PER_SEC);
	assert_timespan("3sec", 3 * USEC_PER_SEC);
	assert_timespan("1second", USEC_PER_SEC);
	assert_timespan("2seconds", 2 * USEC_PER_SEC);
	assert_timespan("1m", USEC_PER_MIN);
	assert_timespan("5min", 5 * USEC_PER_MIN);
	assert_timespan("1minute", USEC_PER_MIN);
	assert_timespan("2minutes", 2 * USEC_PER_MIN);
	assert_timespan("1h", USEC_PER_HOUR);
	assert_timespan("2hr", 2 * USEC_PER_HOUR);
	assert_timespan("1hour", USEC_PER_HOUR);
	assert_timespan("3hours", 3 * USEC_PER_HOUR);
	assert_timespan("1d", USEC_PER_DAY);
	assert_timespan("1day", USEC_PER_DAY);
	assert_timespan("30days", 30 * USEC_PER_DAY);
	assert_timespan("1w", 7 * USEC_PER_DAY);
	assert_timespan("1week", 7 * USEC_PER_DAY);
	assert_timespan("2weeks", 14 * USEC_PER_DAY);
	/* A bare number is seconds. */
	assert_timespan("10", 10 * USEC_PER_SEC);
	assert_timespan("0", 0);
	assert_timespan("0s", 0);
}

static void test_timespan_fractions(void **state)
{
	(void)state;
	assert_timespan("1.5h", 90 * USEC_PER_MIN);
	assert_timespan("0.5s", 500 * USEC_PER_MSEC);
	assert_timespan(".5s", 500 * USEC_PER_MSEC);
	assert_timespan("1.5", 1500 * USEC_PER_MSEC);
	assert_timespan("1.001ms", 1001);
	assert_timespan("0.25d", 6 * USEC_PER_HOUR);
	assert_timespan("1.000001s", 1000001);
	/* Below a microsecond rounds down. */
	assert_timespan("0.0000009s", 0);
	assert_timespan("1.9us", 1);
	/* Digits far past microseconds do not disturb the result. */
	assert_timespan("0.333333333333333333333h", 1199999999);
}

static void test_timespan_sums(void **state)
{
	(void)state;
	assert_timespan("2min 30s", 150 * USEC_PER_SEC);
	assert_timespan("1h30min", 90 * USEC_PER_MIN);
	assert_timespan("1h 1min 1s 1ms 1us", USEC_PER_HOUR + USEC_PER_MIN + USEC_PER_SEC + USEC_PER_MSEC + 1);
	assert_timespan("1d12h", 36 * USEC_PER_HOUR);
	assert_timespan("1s 1s", 2 * USEC_PER_SEC);
	assert_timespan("0.5min 0.5min", USEC_PER_MIN);
}

static void test_timespan_whitespace(void **state)
{
	(void)state;
	assert_timespan("  10s", 10 * USEC_PER_SEC);
	assert_timespan("10s  ", 10 * USEC_PER_SEC);
	assert_timespan("\t5 min\t", 5 * USEC_PER_MIN);
	assert_timespan(" 2 min   30 s ", 150 * USEC_PER_SEC);
	assert_timespan(" 42 ", 42 * USEC_PER_SEC);
}

static void test_timespan_errors(void **state)
{
	(void)state;
	assert_timespan_err("", -EINVAL);
	assert_timespan_err("   ", -EINVAL);
	assert_timespan_err(NULL, -EINVAL);
	assert_timespan_err("-1s", -EINVAL);
	assert_timespan_err("+1s", -EINVAL);
	assert_timespan_err("10x", -EINVAL);
	assert_timespan_err("10S", -EINVAL);
	assert_timespan_err("s", -EINVAL);
	assert_timespan_err(".s", -EINVAL);
	assert_timespan_err("1..5s", -EINVAL);
	assert_timespan_err("1e3s", -EINVAL);
	assert_timespan_err("1s x", -EINVAL);
	assert_timespan_err("1s,2s", -EINVAL);
	assert_timespan_err("2min 30", -EINVAL);
	assert_timespan_err("1 2", -EINVAL);
	assert_timespan_err("ten seconds", -EINVAL);
	assert_timespan_err("1 s s", -EINVAL);
}

static void test_timespan_overflow(void **state)
{
	(void)state;
	assert_timespan("18446744073709551615us", UINT64_MAX);
	assert_timespan_err("18446744073709551616us", -ERANGE);
	assert_timespan_err("99999999999999999999", -ERANGE);
	assert_timespan_err("40000000w", -ERANGE);
	assert_timespan_err("18446744073709551615us 1us", -ERANGE);
	assert_timespan_err("18446744073709551615.5s", -ERANGE);
	/* Garbage wins over overflow. */
	assert_timespan_err("99999999999999999999x", -EINVAL);
	assert_timespan_err("99999999999999999999s x", -EINVAL);
}

/* ---- sizes ---- */

static void assert_size(const char *s, uint64_t want)
{
	uint64_t v = SENTINEL;
	int r = parse_size(s, &v);

	if (r != 0 || v != want)
		fail_msg("parse_size(\"%s\") = %d, %llu; want %llu", s, r, (unsigned long long)v,
			 (unsigned long long)want);
}

static void assert_size_err(const char *s, int want)
{
	uint64_t v = SENTINEL;
	int r = parse_size(s, &v);

	if (r != want)
		fail_msg("parse_size(\"%s\") = %d, want %d", s, r, want);
	assert_true(v == SENTINEL);
}

static void test_size(void **state)
{
	(void)state;
	assert_size("0", 0);
	assert_size("512", 512);
	assert_size("512B", 512);
	assert_size("1K", 1024);
	assert_size("1KiB", 1024);
	assert_size("64KiB", 65536);
	assert_size("1M", 1 << 20);
	assert_size("16MiB", 16 << 20);
	assert_size("1G", 1 << 30);
	assert_size("2GiB", UINT64_C(2) << 30);
	assert_size(" 64 KiB ", 65536);
	/* Fractions, rounded down to whole bytes, exactly. */
	assert_size("1.5KiB", 1536);
	assert_size("0.5M", 512 * 1024);
	assert_size("1.0001K", 1024);
	assert_size("0.1B", 0);
	assert_size("1.9999999999GiB", UINT64_C(2147483647));
	assert_size("0.000000000931322574615478515625GiB", 1);

	assert_size_err("", -EINVAL);
	assert_size_err(NULL, -EINVAL);
	assert_size_err("KiB", -EINVAL);
	assert_size_err("-1", -EINVAL);
	assert_size_err("1KB", -EINVAL);
	assert_size_err("1k", -EINVAL);
	assert_size_err("1 2", -EINVAL);
	assert_size_err("1KiB 1KiB", -EINVAL);
	assert_size_err("1TiB", -EINVAL);
	assert_size_err("18446744073709551616", -ERANGE);
	assert_size_err("17179869184GiB", -ERANGE);
	assert_size("18446744073709551615", UINT64_MAX);
}

/* ---- whole numbers ---- */

static void test_parse_uint64(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(parse_uint64("0", &v), 0);
	assert_true(v == 0);
	assert_int_equal(parse_uint64("007", &v), 0);
	assert_true(v == 7);
	assert_int_equal(parse_uint64("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);

	v = SENTINEL;
	assert_int_equal(parse_uint64("18446744073709551616", &v), -ERANGE);
	assert_int_equal(parse_uint64("99999999999999999999999", &v), -ERANGE);
	assert_int_equal(parse_uint64("99999999999999999999999x", &v), -EINVAL);
	assert_int_equal(parse_uint64("", &v), -EINVAL);
	assert_int_equal(parse_uint64(NULL, &v), -EINVAL);
	assert_int_equal(parse_uint64(" 1", &v), -EINVAL);
	assert_int_equal(parse_uint64("1 ", &v), -EINVAL);
	assert_int_equal(parse_uint64("+1", &v), -EINVAL);
	assert_int_equal(parse_uint64("-1", &v), -EINVAL);
	assert_int_equal(parse_uint64("0x10", &v), -EINVAL);
	assert_int_equal(parse_uint64("1.0", &v), -EINVAL);
	assert_true(v == SENTINEL);
}

/* ---- formatting spans ---- */

static void assert_format(uint64_t usec, const char *want)
{
	char buf[64];

	format_timespan(buf, sizeof(buf), usec);
	assert_string_equal(buf, want);
}

static void test_format_timespan(void **state)
{
	static const uint64_t values[] = {
		0,
		1,
		999,
		1001,
		USEC_PER_MSEC,
		1500 * USEC_PER_MSEC,
		10 * USEC_PER_SEC,
		90 * USEC_PER_SEC,
		5 * USEC_PER_MIN,
		90 * USEC_PER_MIN,
		USEC_PER_HOUR,
		25 * USEC_PER_HOUR,
		30 * USEC_PER_DAY,
		14 * USEC_PER_DAY,
		3650 * USEC_PER_DAY,
		UINT64_MAX,
		UINT64_MAX / USEC_PER_SEC * USEC_PER_SEC,
	};
	char buf[64];

	(void)state;
	assert_format(0, "0");
	assert_format(1, "1us");
	assert_format(1500, "1500us");
	assert_format(USEC_PER_MSEC, "1ms");
	assert_format(1500 * USEC_PER_MSEC, "1500ms");
	assert_format(10 * USEC_PER_SEC, "10s");
	assert_format(90 * USEC_PER_SEC, "90s");
	assert_format(5 * USEC_PER_MIN, "5min");
	assert_format(90 * USEC_PER_MIN, "90min");
	assert_format(USEC_PER_HOUR, "1h");
	assert_format(USEC_PER_DAY, "1d");
	assert_format(30 * USEC_PER_DAY, "30d");
	assert_format(14 * USEC_PER_DAY, "2w");

	for (size_t i = 0; i < ELEMENTSOF(values); i++) {
		uint64_t back = SENTINEL;

		format_timespan(buf, sizeof(buf), values[i]);
		assert_int_equal(parse_timespan(buf, &back), 0);
		assert_true(back == values[i]);
	}

	/* A short buffer is cut, still terminated. */
	memset(buf, 'x', sizeof(buf));
	format_timespan(buf, 4, 1500 * USEC_PER_MSEC);
	assert_string_equal(buf, "150");
}

/* ---- clocks ---- */

static void test_clocks(void **state)
{
	uint64_t a, b;

	(void)state;
	a = now_monotonic_usec();
	b = now_monotonic_usec();
	assert_true(b >= a);
	/* After 2020-01-01. */
	assert_true(now_realtime_usec() > UINT64_C(1577836800) * USEC_PER_SEC);
}

/* ---- RFC 3339 ---- */

static void assert_rfc3339(const char *s, uint64_t want)
{
	uint64_t v = SENTINEL;
	int r = parse_rfc3339(s, &v);

	if (r != 0 || v != want)
		fail_msg("parse_rfc3339(\"%s\") = %d, %llu; want %llu", s, r, (unsigned long long)v,
			 (unsigned long long)want);
}

static void assert_rfc3339_err(const char *s, int want)
{
	uint64_t v = SENTINEL;
	int r = parse_rfc3339(s, &v);

	if (r != want)
		fail_msg("parse_rfc3339(\"%s\") = %d, want %d", s, r, want);
	assert_true(v == SENTINEL);
}

static void test_rfc3339(void **state)
{
	const uint64_t t = UINT64_C(1795777648) * USEC_PER_SEC;
	char buf[RFC3339_MAX];
	uint64_t now, back;

	(void)state;
	format_rfc3339(buf, 0);
	assert_string_equal(buf, "1970-01-01T00:00:00Z");
	format_rfc3339(buf, t);
	assert_string_equal(buf, "2026-11-27T11:07:28Z");
	format_rfc3339(buf, t + 999999);
	assert_string_equal(buf, "2026-11-27T11:07:28Z");
	assert_int_equal(strlen(buf) + 1, 21);

	assert_rfc3339("2026-11-27T11:07:28Z", t);
	assert_rfc3339("2026-11-27t11:07:28z", t);
	assert_rfc3339("2026-11-27T11:07:28.5Z", t + 500000);
	assert_rfc3339("2026-11-27T11:07:28.123456Z", t + 123456);
	assert_rfc3339("2026-11-27T11:07:28.123456789Z", t + 123456);
	assert_rfc3339("2026-11-27T11:07:28+00:00", t);
	assert_rfc3339("2026-11-27T11:07:28-00:00", t);
	assert_rfc3339("2026-11-27T12:07:28+01:00", t);
	assert_rfc3339("2026-11-27T05:37:28-05:30", t);
	assert_rfc3339("2026-11-28T00:07:28.25+13:00", t + 250000);
	assert_rfc3339("2024-02-29T00:00:00Z", UINT64_C(1709164800) * USEC_PER_SEC);
	assert_rfc3339("2000-01-01T00:00:00Z", UINT64_C(946684800) * USEC_PER_SEC);
	assert_rfc3339("1970-01-01T00:00:00Z", 0);

	assert_rfc3339_err("", -EINVAL);
	assert_rfc3339_err(NULL, -EINVAL);
	assert_rfc3339_err("2026-11-27", -EINVAL);
	assert_rfc3339_err("2026-11-27T11:07:28", -EINVAL);
	assert_rfc3339_err("2026-11-27 11:07:28Z", -EINVAL);
	assert_rfc3339_err("2026-11-27T11:07:28Zx", -EINVAL);
	assert_rfc3339_err("2026-11-27T11:07:28.Z", -EINVAL);
	assert_rfc3339_err("2026-11-27T11:07:28+0100", -EINVAL);
	assert_rfc3339_err("2026-11-27T11:07:28+24:00", -EINVAL);
	assert_rfc3339_err("2026-13-01T00:00:00Z", -EINVAL);
	assert_rfc3339_err("2026-00-01T00:00:00Z", -EINVAL);
	assert_rfc3339_err("2026-11-31T00:00:00Z", -EINVAL);
	assert_rfc3339_err("2023-02-29T00:00:00Z", -EINVAL);
	assert_rfc3339_err("2026-11-27T24:00:00Z", -EINVAL);
	assert_rfc3339_err("2026-11-27T11:60:00Z", -EINVAL);
	assert_rfc3339_err("26-11-27T11:07:28Z", -EINVAL);
	assert_rfc3339_err("2026-1-27T11:07:28Z", -EINVAL);
	assert_rfc3339_err("1969-12-31T23:59:59Z", -ERANGE);
	assert_rfc3339_err("1970-01-01T00:30:00+01:00", -ERANGE);

	now = now_realtime_usec();
	format_rfc3339(buf, now);
	assert_int_equal(parse_rfc3339(buf, &back), 0);
	assert_true(back == now / USEC_PER_SEC * USEC_PER_SEC);
}

/* ---- serials and job ids ---- */

static void test_serial(void **state)
{
	(void)state;
	assert_true(serial_is_valid("Q2XX-ABCD-1234"));
	assert_true(serial_is_valid("q2xx-abcd-1234"));
	assert_true(serial_is_valid("0000-0000-0000"));
	assert_false(serial_is_valid(NULL));
	assert_false(serial_is_valid(""));
	assert_false(serial_is_valid("Q2XX-ABCD-123"));
	assert_false(serial_is_valid("Q2XX-ABCD-12345"));
	assert_false(serial_is_valid("Q2XXABCD1234"));
	assert_false(serial_is_valid("Q2XX_ABCD-1234"));
	assert_false(serial_is_valid("Q2XX-AB D-1234"));
	assert_false(serial_is_valid("Q2XX-ABCD-1234 "));
	assert_false(serial_is_valid("Q2XX--ABCD-123"));
	assert_false(serial_is_valid("Q2\xc3\x84X-ABCD-123"));
}

/* What utf8_len() must say, from the code point: decoded plainly, then
 * checked against RFC 3629's ranges. */
static size_t utf8_len_reference(const unsigned char *p)
{
	size_t n = p[0] < 0x80                   ? 1
		   : p[0] >= 0xc0 && p[0] < 0xe0 ? 2
		   : p[0] >= 0xe0 && p[0] < 0xf0 ? 3
		   : p[0] >= 0xf0 && p[0] < 0xf8 ? 4
						 : 0;
	static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
	uint32_t cp;

	if (n <= 1)
		return n;
	cp = p[0] & (0x7fu >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void test_utf8_len(void **state)
{
	(void)state;
	unsigned char b[5] = {0};

	/* Every one- and two-byte input, every three-byte one, and the four-
	 * byte ones with every lead byte and second byte (the rest varied). */
	for (unsigned x = 0; x < 256; x++) {
		b[0] = (unsigned char)x;
		for (unsigned y = 0; y < 256; y++) {
			b[1] = (unsigned char)y;
			for (unsigned z = 0; z < 256; z++) {
				b[2] = (unsigned char)z;
				b[3] = (unsigned char)(0x80 | ((x + y + z) & 0x3f));
				if (z == 0x41)
					b[3] = 0x41;
				assert_int_equal(utf8_len(b), utf8_len_reference(b));
			}
		}
	}
	assert_int_equal(utf8_len((const unsigned char *)""), 1); /* NUL is ASCII */
	assert_int_equal(utf8_len((const unsigned char *)"\xc3\xbc"), 2);
	assert_int_equal(utf8_len((const unsigned char *)"\xe2\x82\xac"), 3);
	assert_int_equal(utf8_len((const unsigned char *)"\xf0\x9f\x92\xa1"), 4);
	assert_int_equal(utf8_len((const unsigned char *)"\xc0\x80"), 0);         /* overlong NUL */
	assert_int_equal(utf8_len((const unsigned char *)"\xed\xa0\x80"), 0);     /* a surrogate */
	assert_int_equal(utf8_len((const unsigned char *)"\xf4\x90\x80\x80"), 0); /* past U+10FFFF */
	assert_int_equal(utf8_len((const unsigned char *)"\xe2\x82"), 0);         /* cut short by the NUL */
}

static void test_utf8_prefix(void **state)
{
	(void)state;
	static const char s[] = "ab\xc3\xbc\xe2\x82\xac"; /* a b u-umlaut euro: 7 bytes */

	assert_int_equal(utf8_prefix(s, 7, 100), 7);
	assert_int_equal(utf8_prefix(s, 7, 7), 7);
	assert_int_equal(utf8_prefix(s, 7, 6), 4); /* not in the euro sign */
	assert_int_equal(utf8_prefix(s, 7, 5), 4);
	assert_int_equal(utf8_prefix(s, 7, 4), 4);
	assert_int_equal(utf8_prefix(s, 7, 3), 2); /* not in the u-umlaut */
	assert_int_equal(utf8_prefix(s, 7, 2), 2);
	assert_int_equal(utf8_prefix(s, 7, 0), 0);
	assert_int_equal(utf8_prefix(s, 2, 1), 1);
}

static void test_text_escape(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"plain text, 42 (ok)", "plain text, 42 (ok)"},
		{NULL, ""},
		/* The C0 controls: ESC, BEL, newline, return, tab, 0x01, 0x1f. */
		{"\x1b]0;pwned\a\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J"},
		{"a\nb\rc\td\x01\x1f", "a\\x0ab\\x0dc\\x09d\\x01\\x1f"},
		{"del\x7f", "del\\x7f"},
		/* C1 as UTF-8 (U+0080, U+009B, U+009F) escaped; U+00A0 kept. */
		{"\xc2\x80|\xc2\x9b|\xc2\x9f|\xc2\xa0", "\\xc2\\x80|\\xc2\\x9b|\\xc2\\x9f|\xc2\xa0"},
		/* Valid multi-byte UTF-8 kept: 2, 3 and 4 bytes. */
		{"Z\xc3\xbcrich \xe2\x80\xa6 \xf0\x9f\x98\x80", "Z\xc3\xbcrich \xe2\x80\xa6 \xf0\x9f\x98\x80"},
		/* Not UTF-8: a raw 8-bit CSI, a stray continuation, a truncated
		 * sequence, an overlong '/', a surrogate, past U+10FFFF, 0xff. */
		{"\x9b"
		 "2J",
		 "\\x9b2J"},
		{"a\x80z", "a\\x80z"},
		{"\xe2\x80", "\\xe2\\x80"},
		{"\xc3", "\\xc3"},
		{"\xc0\xaf", "\\xc0\\xaf"},
		{"\xed\xa0\x80", "\\xed\\xa0\\x80"},
		{"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"},
		{"\xff\xfe", "\\xff\\xfe"},
		/* A backslash stays. */
		{"C:\\x", "C:\\x"},
	};
	char buf[256];

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(cases); i++)
		assert_string_equal(text_escape(buf, sizeof(buf), cases[i].in), cases[i].out);
}

static void test_text_escape_bounded(void **state)
{
	char big[5000], out[TEXT_ESCAPED_SIZE(16)], small[8];

	(void)state;
	/* Long input: never more than the room, always terminated. */
	memset(big, '\x1b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memset(out, 'X', sizeof(out));
	text_escape(out, sizeof(out), big);
	assert_int_equal(strlen(out), 64);
	memset(out, 'X', sizeof(out));
	memset(big, 'a', sizeof(big) - 1);
	text_escape(out, sizeof(out), big);
	assert_int_equal(strlen(out), sizeof(out) - 1);

	/* Cut before an escape or a character that does not fit whole. */
	assert_string_equal(text_escape(small, sizeof(small), "abcd\x1b"), "abcd");
	assert_string_equal(text_escape(small, sizeof(small), "abc\x1b"), "abc\\x1b");
	assert_string_equal(text_escape(small, sizeof(small), "abcde\xe2\x80\xa6"), "abcde");
	assert_string_equal(text_escape(small, sizeof(small), "abc\xe2\x80\xa6"), "abc\xe2\x80\xa6");
	assert_string_equal(text_escape(small, 1, "abc"), "");
	/* The worst case fits its macro exactly. */
	{
		char w[TEXT_ESCAPED_SIZE(4)];
		assert_string_equal(text_escape(w, sizeof(w), "\x01\x02\x03\x04"), "\\x01\\x02\\x03\\x04");
	}
}

static void test_job_id_valid(void **state)
{
	char id[JOB_ID_MAX + 2];

	(void)state;
	assert_true(job_id_is_valid("a"));
	assert_true(job_id_is_valid("A-b_9"));
	memset(id, 'x', JOB_ID_MAX);
	id[JOB_ID_MAX] = '\0';
	assert_true(job_id_is_valid(id));
	id[JOB_ID_MAX] = 'x';
	id[JOB_ID_MAX + 1] = '\0';
	assert_false(job_id_is_valid(id));
	assert_false(job_id_is_valid(""));
	assert_false(job_id_is_valid(NULL));
	assert_false(job_id_is_valid("a.b"));
	assert_false(job_id_is_valid("a/b"));
	assert_false(job_id_is_valid("a b"));
	assert_false(job_id_is_valid(".."));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_job_id_new(void **state)
{
	static char ids[1000][JOB_ID_MAX + 1];
	uint64_t before, after, ms;
	char prefix[13];

	(void)state;
	before = now_realtime_usec() / USEC_PER_MSEC;
	for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
		assert_int_equal(job_id_new(ids[i]), 0);
		assert_int_equal(strlen(ids[i]), 24);
		assert_true(job_id_is_valid(ids[i]));
		for (size_t j = 0; j < 24; j++)
			assert_non_null(strchr("0123456789abcdef", ids[i][j]));
		/* Created in order, so the time prefixes never go backwards. */
		if (i > 0)
			assert_true(memcmp(ids[i - 1], ids[i], 12) <= 0);
	}
	after = now_realtime_usec() / USEC_PER_MSEC;

	memcpy(prefix, ids[0], 12);
	prefix[12] = '\0';
	ms = strtoull(prefix, NULL, 16);
	assert_true(ms >= before && ms <= after);

	qsort(ids, ELEMENTSOF(ids), sizeof(ids[0]), cmp_str);
	for (size_t i = 1; i < ELEMENTSOF(ids); i++)
		assert_string_not_equal(ids[i - 1], ids[i]);
}

static void test_random_bytes(void **state)
{
	uint8_t a[64] = {0}, b[64] = {0}, zero[64] = {0};

	(void)state;
	assert_int_equal(random_bytes(a, 0), 0);
	assert_int_equal(random_bytes(a, sizeof(a)), 0);
	assert_int_equal(random_bytes(b, sizeof(b)), 0);
	assert_memory_not_equal(a, zero, sizeof(a));
	assert_memory_not_equal(a, b, sizeof(a));
}

/* ---- files ---- */

static void test_read_file_capped(void **state)
{
	_cleanup_free_ char *small = tmp_path("small"), *empty = tmp_path("empty"), *big = tmp_path("big"),
			    *fifo = tmp_path("fifo");
	char untouched[] = "untouched", *buf = untouched;
	size_t len = 12345;
	_cleanup_close_ int dfd = -1;
	char large[10000];

	(void)state;
	write_raw(small, "0123456789", 10, 0600);
	write_raw(empty, "", 0, 0600);
	memset(large, 'z', sizeof(large));
	write_raw(big, large, sizeof(large), 0600);

	assert_int_equal(read_file_capped(AT_FDCWD, small, 10, &buf, &len), 0);
	assert_int_equal(len, 10);
	assert_string_equal(buf, "0123456789");
	free(buf);

	/* ret_len is optional. */
	assert_int_equal(read_file_capped(AT_FDCWD, small, 100, &buf, NULL), 0);
	assert_string_equal(buf, "0123456789");
	free(buf);

	buf = untouched;
	len = 12345;
	assert_int_equal(read_file_capped(AT_FDCWD, small, 9, &buf, &len), -EFBIG);
	assert_string_equal(buf, "untouched");
	assert_int_equal(len, 12345);

	assert_int_equal(read_file_capped(AT_FDCWD, empty, 0, &buf, &len), 0);
	assert_int_equal(len, 0);
	assert_string_equal(buf, "");
	free(buf);

	/* Larger than the first allocation: the buffer grows. */
	assert_int_equal(read_file_capped(AT_FDCWD, big, sizeof(large), &buf, &len), 0);
	assert_int_equal(len, sizeof(large));
	assert_memory_equal(buf, large, sizeof(large));
	assert_int_equal(buf[len], '\0');
	free(buf);
	assert_int_equal(read_file_capped(AT_FDCWD, big, sizeof(large) - 1, &buf, &len), -EFBIG);

	/* /proc files say st_size 0: the size is found by reading. */
	assert_int_equal(read_file_capped(AT_FDCWD, "/proc/self/status", 1 << 20, &buf, &len), 0);
	assert_true(len > 0);
	assert_non_null(strstr(buf, "Name:"));
	free(buf);

	/* Relative to a directory fd. */
	dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(read_file_capped(dfd, "small", 10, &buf, &len), 0);
	assert_string_equal(buf, "0123456789");
	free(buf);

	/* Not regular files: refused, and a FIFO does not block the open. */
	buf = untouched;
	assert_int_equal(read_file_capped(AT_FDCWD, tmpdir, 100, &buf, &len), -EINVAL);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(read_file_capped(AT_FDCWD, fifo, 100, &buf, &len), -EINVAL);
	assert_int_equal(read_file_capped(dfd, "missing", 100, &buf, &len), -ENOENT);
	assert_string_equal(buf, "untouched");
}

static size_t count_entries(const char *dir, const char *prefix)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
		    strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

static void test_write_file_atomic(void **state)
{
	_cleanup_free_ char *dir = tmp_path("atomic"), *file = NULL, *missing = NULL;
	struct stat st;
	char *buf;
	size_t len;

	(void)state;
	assert_int_equal(mkdir(dir, 0700), 0);
	file = path_join(dir, "data.json");
	assert_non_null(file);

	assert_int_equal(write_file_atomic(dir, "data.json", "{\"a\":1}\n", 8, 0640), 0);
	assert_int_equal(read_file_capped(AT_FDCWD, file, 100, &buf, &len), 0);
	assert_string_equal(buf, "{\"a\":1}\n");
	free(buf);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);

	/* Replacing keeps no temporary files behind, and sets the new mode. */
	assert_int_equal(write_file_atomic(dir, "data.json", "x", 1, 0600), 0);
	assert_int_equal(read_file_capped(AT_FDCWD, file, 100, &buf, &len), 0);
	assert_string_equal(buf, "x");
	free(buf);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(count_entries(dir, "."), 0);
	assert_int_equal(count_entries(dir, "data.json"), 1);

	/* Empty content is fine. */
	assert_int_equal(write_file_atomic(dir, "empty", "", 0, 0600), 0);

	assert_int_equal(write_file_atomic(dir, "a/b", "x", 1, 0600), -EINVAL);
	assert_int_equal(write_file_atomic(dir, "", "x", 1, 0600), -EINVAL);
	assert_int_equal(write_file_atomic(dir, "..", "x", 1, 0600), -EINVAL);
	assert_int_equal(write_file_atomic("", "x", "x", 1, 0600), -EINVAL);
	missing = path_join(dir, "missing");
	assert_int_equal(write_file_atomic(missing, "x", "x", 1, 0600), -ENOENT);
	assert_int_equal(count_entries(dir, "."), 0);
}

static void test_fsync_dir(void **state)
{
	_cleanup_close_ int fd = -1;

	(void)state;
	assert_int_equal(fsync_dir(tmpdir), 0);
	assert_int_equal(fsync_dir("/nonexistent/blinkhook-test"), -ENOENT);
	fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fsync_dirfd(fd), 0);
	assert_int_equal(fsync_dirfd(-1), -EBADF);
}

static void test_mkdir_p(void **state)
{
	_cleanup_free_ char *deep = tmp_path("m/a/b/c"), *slashes = tmp_path("m//x///y/"), *file = tmp_path("m/file"),
			    *under = tmp_path("m/file/sub");
	struct stat st;

	(void)state;
	assert_int_equal(mkdir_p(deep, 0755), 0);
	assert_int_equal(stat(deep, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	/* Existing directories are fine. */
	assert_int_equal(mkdir_p(deep, 0755), 0);
	assert_int_equal(mkdir_p(tmpdir, 0755), 0);
	assert_int_equal(mkdir_p("/", 0755), 0);

	assert_int_equal(mkdir_p(slashes, 0700), 0);
	assert_int_equal(stat(slashes, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0077, 0);

	write_raw(file, "", 0, 0600);
	assert_int_equal(mkdir_p(file, 0755), -ENOTDIR);
	assert_int_equal(mkdir_p(under, 0755), -ENOTDIR);
	assert_int_equal(mkdir_p("", 0755), -EINVAL);
}

static void test_write_all(void **state)
{
	_cleanup_free_ char *path = tmp_path("write_all");
	char big[100000], *buf;
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	write_raw(path, big, sizeof(big), 0600);
	assert_int_equal(read_file_capped(AT_FDCWD, path, sizeof(big), &buf, &len), 0);
	assert_int_equal(len, sizeof(big));
	assert_memory_equal(buf, big, sizeof(big));
	free(buf);
	assert_int_equal(write_all(-1, "x", 1), -EBADF);
}

static void assert_join(const char *a, const char *b, const char *want)
{
	_cleanup_free_ char *p = path_join(a, b);

	assert_non_null(p);
	assert_string_equal(p, want);
}

static void test_path_join(void **state)
{
	(void)state;
	assert_join("a", "b", "a/b");
	assert_join("a/", "b", "a/b");
	assert_join("a", "/b", "a/b");
	assert_join("a//", "//b", "a/b");
	assert_join("/", "b", "/b");
	assert_join("/var/spool", "new/x.json", "/var/spool/new/x.json");
	assert_join("", "b", "b");
	assert_join("a", "", "a");
	assert_null(path_join(NULL, "b"));
}

/* ---- strbuf ---- */

static void test_strbuf(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	char big[1000];

	(void)state;
	assert_null(sb.buf);
	assert_int_equal(strbuf_grow(&sb, 0), 0);
	assert_non_null(sb.buf);
	assert_string_equal(sb.buf, "");
	assert_true(sb.alloc >= 1);
	strbuf_release(&sb);
	assert_null(sb.buf);
	assert_int_equal(sb.len, 0);
	assert_int_equal(sb.alloc, 0);

	/* Adding nothing to a fresh buffer still gives a string. */
	assert_int_equal(strbuf_add(&sb, "", 0), 0);
	assert_string_equal(sb.buf, "");

	assert_int_equal(strbuf_addstr(&sb, "hello"), 0);
	assert_int_equal(strbuf_add(&sb, ", world!!", 7), 0);
	assert_string_equal(sb.buf, "hello, world");
	assert_int_equal(sb.len, 12);

	assert_int_equal(strbuf_addf(&sb, " %d-%s", 42, "x"), 0);
	assert_string_equal(sb.buf, "hello, world 42-x");
	assert_int_equal(sb.len, 17);

	/* Output larger than the space left makes it grow. */
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(strbuf_addf(&sb, "[%s]", big), 0);
	assert_int_equal(sb.len, 17 + 2 + 999);
	assert_int_equal(sb.buf[sb.len], '\0');
	assert_int_equal(sb.buf[17], '[');
	assert_int_equal(sb.buf[sb.len - 1], ']');
	assert_true(sb.alloc > sb.len);

	strbuf_consume(&sb, 7);
	assert_int_equal(sb.len, 10 + 2 + 999);
	assert_memory_equal(sb.buf, "world 42-x[", 11);
	assert_int_equal(sb.buf[sb.len], '\0');

	strbuf_consume(&sb, sb.len - 1);
	assert_string_equal(sb.buf, "]");
	strbuf_consume(&sb, 5);
	assert_string_equal(sb.buf, "");
	assert_int_equal(sb.len, 0);

	assert_int_equal(strbuf_addstr(&sb, "again"), 0);
	strbuf_reset(&sb);
	assert_string_equal(sb.buf, "");
	assert_int_equal(sb.len, 0);
	strbuf_release(&sb);

	/* Binary data with NULs keeps its length. */
	assert_int_equal(strbuf_add(&sb, "a\0b", 3), 0);
	assert_int_equal(sb.len, 3);
	assert_memory_equal(sb.buf, "a\0b", 4);
	strbuf_release(&sb);
	strbuf_release(&sb);

	/* Reset and consume on a never-used buffer are harmless. */
	strbuf_reset(&sb);
	strbuf_consume(&sb, 3);
	assert_null(sb.buf);
}

static void test_strbuf_many(void **state)
{
	struct strbuf sb = STRBUF_INIT;

	(void)state;
	for (int i = 0; i < 10000; i++)
		assert_int_equal(strbuf_addf(&sb, "%d,", i % 10), 0);
	assert_int_equal(sb.len, 20000);
	assert_int_equal(strlen(sb.buf), 20000);
	assert_memory_equal(sb.buf, "0,1,2,3,4,5,6,7,8,9,0,", 22);
	strbuf_release(&sb);
}

/* What log_errno() writes to stderr: into a file, read back. */
static void capture_log_errno(int err, char *out, size_t size, int *ret)
{
	char path[300];
	int fd, saved_fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/log.txt", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	fflush(stderr);
	saved_fd = dup(STDERR_FILENO);
	assert_true(saved_fd >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	errno = EAGAIN;
	*ret = log_errno(LOG_ERR, err, "cannot open x: %m");
	/* errno is the caller's again. */
	assert_int_equal(errno, EAGAIN);
	fflush(stderr);
	assert_true(dup2(saved_fd, STDERR_FILENO) >= 0);
	close(saved_fd);
	n = pread(fd, out, size - 1, 0);
	assert_true(n > 0);
	out[n] = '\0';
	close(fd);
}

/* %m in a log_errno() call names the error passed, of either sign. */
static void test_log_errno_m(void **state)
{
	char out[512];
	int r;

	(void)state;
	log_setup("test");
	capture_log_errno(-ENOENT, out, sizeof(out), &r);
	assert_int_equal(r, -ENOENT);
	assert_non_null(strstr(out, "cannot open x: No such file or directory"));
	capture_log_errno(EACCES, out, sizeof(out), &r);
	assert_int_equal(r, -EACCES);
	assert_non_null(strstr(out, "cannot open x: Permission denied"));
}

/* The one log budget (refused callbacks, spool rejects): burst lines, then
 * counts by kind, the timer armed once, and a new interval after a flush. */
static void test_log_budget(void **state)
{
	struct log_budget b = {.interval = 10 * USEC_PER_SEC, .burst = 2};
	uint64_t n[LOG_BUDGET_KINDS], secs;
	bool arm = true;

	(void)state;
	assert_true(budget_due(&b, 10 * USEC_PER_SEC));
	assert_int_equal(budget_flush(&b, 10 * USEC_PER_SEC, n, &secs), 0);
	assert_false(budget_due(&b, 19 * USEC_PER_SEC));
	assert_true(budget_take(&b, 1, &arm));
	assert_false(arm);
	assert_true(budget_take(&b, 3, &arm));
	assert_false(budget_take(&b, 1, &arm));
	assert_true(arm); /* the first one counted: arm the timer */
	assert_false(budget_take(&b, 3, &arm));
	assert_false(arm);
	assert_false(budget_take(&b, 1, &arm));
	assert_true(budget_due(&b, 20 * USEC_PER_SEC));
	assert_int_equal(budget_flush(&b, 20 * USEC_PER_SEC, n, &secs), 3);
	assert_int_equal(n[0], 0);
	assert_int_equal(n[1], 2);
	assert_int_equal(n[2], 0);
	assert_int_equal(n[3], 1);
	assert_int_equal(secs, 10);
	/* A new interval: the burst again, nothing counted. */
	assert_false(budget_due(&b, 29 * USEC_PER_SEC));
	assert_true(budget_take(&b, 1, &arm));
	assert_int_equal(budget_flush(&b, 30 * USEC_PER_SEC, n, &secs), 0);
}

/* The one FNV-1a: the published test vectors. */
static void test_fnv1a64(void **state)
{
	(void)state;
	assert_true(fnv1a64("", 0) == UINT64_C(0xcbf29ce484222325));
	assert_true(fnv1a64_str("a") == UINT64_C(0xaf63dc4c8601ec8c));
	assert_true(fnv1a64_str("foobar") == UINT64_C(0x85944171f73967e8));
	/* Going on from a hash is hashing the concatenation. */
	assert_true(fnv1a64_add(fnv1a64_str("foo"), "bar", 3) == fnv1a64_str("foobar"));
	assert_true(fnv1a64("a\0b", 3) != fnv1a64_str("a"));
}

/* The one calendar routine, which both parse_rfc3339() and the job log's
 * fast stamp reader use. */
static void test_days_in_month(void **state)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	(void)state;
	for (int m = 1; m <= 12; m++)
		assert_int_equal(days_in_month(2025, m), days[m - 1]);
	assert_int_equal(days_in_month(2024, 2), 29);
	assert_int_equal(days_in_month(2000, 2), 29);
	assert_int_equal(days_in_month(1900, 2), 28);
	assert_int_equal(days_in_month(2100, 2), 28);
	assert_int_equal(days_in_month(2400, 2), 29);
	assert_int_equal(days_in_month(2024, 3), 31);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex_value),
		cmocka_unit_test(test_timespan_units),
		cmocka_unit_test(test_timespan_fractions),
		cmocka_unit_test(test_timespan_sums),
		cmocka_unit_test(test_timespan_whitespace),
		cmocka_unit_test(test_timespan_errors),
		cmocka_unit_test(test_timespan_overflow),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_parse_uint64),
		cmocka_unit_test(test_format_timespan),
		cmocka_unit_test(test_clocks),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_serial),
		cmocka_unit_test(test_utf8_len),
		cmocka_unit_test(test_utf8_prefix),
		cmocka_unit_test(test_text_escape),
		cmocka_unit_test(test_text_escape_bounded),
		cmocka_unit_test(test_job_id_valid),
		cmocka_unit_test(test_job_id_new),
		cmocka_unit_test(test_random_bytes),
		cmocka_unit_test(test_read_file_capped),
		cmocka_unit_test(test_write_file_atomic),
		cmocka_unit_test(test_fsync_dir),
		cmocka_unit_test(test_mkdir_p),
		cmocka_unit_test(test_write_all),
		cmocka_unit_test(test_path_join),
		cmocka_unit_test(test_strbuf),
		cmocka_unit_test(test_strbuf_many),
		cmocka_unit_test(test_fnv1a64),
		cmocka_unit_test(test_log_errno_m),
		cmocka_unit_test(test_log_budget),
		cmocka_unit_test(test_days_in_month),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
