/* SPDX-License-Identifier: MIT */
/*
 * fuzz_spans — the number parsers of util: parse_timespan, parse_size,
 * parse_uint64 and parse_rfc3339, on the input as a C string.
 *
 * Checked: each returns 0, -EINVAL or -ERANGE; what parses comes back the
 * same through its formatter (format_timespan, "%llu", format_rfc3339 to the
 * second); and the parsers agree where their grammars meet (digits alone are
 * that many bytes, and that many seconds).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "blinkhook/util.h"
#include "fuzz.h"

#define CHECK_RC(name, r) FUZZ_CHECK((r) == 0 || (r) == -EINVAL || (r) == -ERANGE, "%s returned %d", name, r)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size);
	char buf[64];
	uint64_t span = 0, bytes = 0, n = 0, t = 0, back = 0;
	int r_span, r_size, r_uint, r_time, r;

	r_span = parse_timespan(s, &span);
	CHECK_RC("parse_timespan", r_span);
	if (r_span == 0) {
		format_timespan(buf, sizeof(buf), span);
		r = parse_timespan(buf, &back);
		FUZZ_CHECK(r == 0 && back == span, "timespan %" PRIu64 " -> \"%s\" -> %d, %" PRIu64, span, buf, r,
			   back);
	}

	r_size = parse_size(s, &bytes);
	CHECK_RC("parse_size", r_size);

	r_uint = parse_uint64(s, &n);
	CHECK_RC("parse_uint64", r_uint);
	if (r_uint == 0) {
		snprintf(buf, sizeof(buf), "%" PRIu64, n);
		r = parse_uint64(buf, &back);
		FUZZ_CHECK(r == 0 && back == n, "uint64 %" PRIu64 " -> \"%s\" -> %d, %" PRIu64, n, buf, r, back);
		/* A bare number is that many bytes, and that many seconds. */
		FUZZ_CHECK(r_size == 0 && bytes == n, "size of \"%s\": %d, %" PRIu64, s, r_size, bytes);
		if (n <= UINT64_MAX / USEC_PER_SEC)
			FUZZ_CHECK(r_span == 0 && span == n * USEC_PER_SEC, "timespan of \"%s\": %d, %" PRIu64, s,
				   r_span, span);
		else
			FUZZ_CHECK(r_span == -ERANGE, "timespan of \"%s\": %d past the range", s, r_span);
	}
	if (r_uint == -ERANGE)
		FUZZ_CHECK(r_size == -ERANGE, "size of \"%s\": %d, not -ERANGE", s, r_size);

	r_time = parse_rfc3339(s, &t);
	CHECK_RC("parse_rfc3339", r_time);
	if (r_time == 0) {
		char stamp[RFC3339_MAX];

		format_rfc3339(stamp, t);
		r = parse_rfc3339(stamp, &back);
		FUZZ_CHECK(r == 0 && back == t - t % USEC_PER_SEC, "time %" PRIu64 " -> \"%s\" -> %d, %" PRIu64, t,
			   stamp, r, back);
	}

	free(s);
	return 0;
}
