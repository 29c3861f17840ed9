/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "blinkhook/job.h"
#include "blinkhook/scheduler.h"
#include "blinkhook/util.h"

#define T0 (UINT64_C(1000) * USEC_PER_SEC) /* a monotonic time well past zero */
#define INTERVAL (10 * USEC_PER_SEC)

/* min(initial * 2^(attempt-1), max), without overflowing. */
static uint64_t undithered(unsigned attempt, uint64_t initial, uint64_t max)
{
	uint64_t d = initial;

	for (unsigned i = 1; i < attempt && d < max; i++)
		d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
	return MIN(d, max);
}

/* A small xorshift generator: many different rand values, the same in
 * every run. */
static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void assert_backoff_bounds(unsigned attempt, uint64_t initial, uint64_t max, uint64_t rand)
{
	uint64_t d = undithered(attempt, initial, max);
	uint64_t b = backoff_usec(attempt, initial, max, rand);

	if (b < d / 2 || b > d || b > max)
		fail_msg("backoff_usec(%u, %llu, %llu, %llu) = %llu, not in [%llu, %llu]", attempt,
			 (unsigned long long)initial, (unsigned long long)max, (unsigned long long)rand,
			 (unsigned long long)b, (unsigned long long)(d / 2), (unsigned long long)d);
}

static void test_backoff_bounds(void **state)
{
	(void)state;
	const uint64_t initial = USEC_PER_SEC, max = 5 * USEC_PER_MIN;
	uint64_t seed = UINT64_C(0x9e3779b97f4a7c15);

	for (unsigned n = 1; n <= 20; n++) {
		uint64_t d = undithered(n, initial, max), lo = UINT64_MAX, hi = 0;

		assert_backoff_bounds(n, initial, max, 0);
		assert_backoff_bounds(n, initial, max, UINT64_MAX);
		for (unsigned k = 0; k < 2000; k++) {
			uint64_t r = next_rand(&seed);
			uint64_t b = backoff_usec(n, initial, max, r);

			assert_backoff_bounds(n, initial, max, r);
			lo = MIN(lo, b);
			hi = MAX(hi, b);
		}
		/* It is jittered: the waits spread over most of [d/2, d]. */
		assert_true(hi - lo > d / 4);
		/* The same rand gives the same wait. */
		assert_int_equal(backoff_usec(n, initial, max, 12345), backoff_usec(n, initial, max, 12345));
	}
	/* The first retry waits about initial, the tenth hits the cap. */
	assert_in_range(backoff_usec(1, initial, max, 0), initial / 2, initial);
	assert_in_range(backoff_usec(10, initial, max, 0), max / 2, max);
}

static void test_backoff_cap(void **state)
{
	(void)state;
	uint64_t seed = 42;

	/* A cap that is no power-of-two multiple of initial. */
	for (unsigned n = 1; n <= 100; n++)
		for (unsigned k = 0; k < 200; k++) {
			uint64_t r = k == 0 ? 0 : k == 1 ? UINT64_MAX : next_rand(&seed);
			uint64_t b = backoff_usec(n, 3 * USEC_PER_SEC, 100 * USEC_PER_SEC, r);

			assert_true(b <= 100 * USEC_PER_SEC);
			if (n >= 7) /* 3 s * 2^6 > 100 s: capped */
				assert_true(b >= 50 * USEC_PER_SEC);
		}
	/* initial above the cap. */
	for (unsigned n = 1; n <= 5; n++) {
		assert_backoff_bounds(n, USEC_PER_HOUR, USEC_PER_MIN, 0);
		assert_backoff_bounds(n, USEC_PER_HOUR, USEC_PER_MIN, UINT64_MAX);
		assert_true(backoff_usec(n, USEC_PER_HOUR, USEC_PER_MIN, UINT64_MAX) <= USEC_PER_MIN);
	}
	/* Nothing to wait. */
	assert_int_equal(backoff_usec(3, 0, USEC_PER_MIN, UINT64_MAX), 0);
	assert_int_equal(backoff_usec(3, USEC_PER_SEC, 0, UINT64_MAX), 0);
	/* The smallest wait that can be split. */
	assert_backoff_bounds(1, 1, 1, UINT64_MAX);
	assert_backoff_bounds(2, 1, 2, UINT64_MAX);
}

static void test_backoff_no_overflow(void **state)
{
	(void)state;
	const uint64_t rands[] = {0, 1, UINT64_C(0x8000000000000000), UINT64_MAX - 1, UINT64_MAX};

	for (size_t i = 0; i < ELEMENTSOF(rands); i++) {
		/* Doubling 199 times would overflow many times over. */
		assert_backoff_bounds(200, USEC_PER_SEC, USEC_PER_HOUR, rands[i]);
		assert_in_range(backoff_usec(200, USEC_PER_SEC, USEC_PER_HOUR, rands[i]), USEC_PER_HOUR / 2,
				USEC_PER_HOUR);
		assert_backoff_bounds(200, 1, UINT64_MAX, rands[i]);
		assert_true(backoff_usec(200, 1, UINT64_MAX, rands[i]) >= UINT64_MAX / 2);
		assert_backoff_bounds(200, UINT64_MAX, UINT64_MAX, rands[i]);
		assert_backoff_bounds(64, 1, UINT64_MAX, rands[i]);
		assert_backoff_bounds(65, 1, UINT64_MAX, rands[i]);
		assert_backoff_bounds(UINT32_MAX, USEC_PER_SEC, USEC_PER_DAY, rands[i]);
		assert_true(backoff_usec(UINT32_MAX, USEC_PER_SEC, USEC_PER_DAY, rands[i]) >= USEC_PER_DAY / 2);
	}
}

/* ---- pacing ---- */

static void test_pacer_global(void **state)
{
	(void)state;
	struct pacer p;

	assert_int_equal(pacer_init(&p, INTERVAL, INTERVAL_SCOPE_GLOBAL), 0);
	/* Nothing sent yet: anything may go now. */
	assert_true(pacer_ready_at(&p, "Q2AB-CD12-EF34") <= T0);

	assert_int_equal(pacer_note(&p, "Q2AB-CD12-EF34", T0), 0);
	assert_int_equal(pacer_ready_at(&p, "Q2AB-CD12-EF34"), T0 + INTERVAL);
	/* Global: another device waits just as long. */
	assert_int_equal(pacer_ready_at(&p, "Q2ZZ-0000-9999"), T0 + INTERVAL);
	assert_int_equal(pacer_ready_at(&p, "Q2NE-VERS-EEN0"), T0 + INTERVAL);

	assert_int_equal(pacer_note(&p, "Q2ZZ-0000-9999", T0 + INTERVAL), 0);
	assert_int_equal(pacer_ready_at(&p, "Q2AB-CD12-EF34"), T0 + 2 * INTERVAL);
	assert_int_equal(pacer_ready_at(&p, "Q2ZZ-0000-9999"), T0 + 2 * INTERVAL);
	/* A late submission counts from when it went. */
	assert_int_equal(pacer_note(&p, "Q2AB-CD12-EF34", T0 + 5 * INTERVAL + 7), 0);
	assert_int_equal(pacer_ready_at(&p, "Q2ZZ-0000-9999"), T0 + 6 * INTERVAL + 7);
	pacer_release(&p);
}

static void test_pacer_device(void **state)
{
	(void)state;
	struct pacer p;

	assert_int_equal(pacer_init(&p, INTERVAL, INTERVAL_SCOPE_DEVICE), 0);
	assert_true(pacer_ready_at(&p, "Q2AB-CD12-EF34") <= T0);

	assert_int_equal(pacer_note(&p, "Q2AB-CD12-EF34", T0), 0);
	assert_int_equal(pacer_ready_at(&p, "Q2AB-CD12-EF34"), T0 + INTERVAL);
	/* Other devices are ready at once. */
	assert_true(pacer_ready_at(&p, "Q2ZZ-0000-9999") <= T0);

	assert_int_equal(pacer_note(&p, "Q2ZZ-0000-9999", T0 + 1), 0);
	assert_int_equal(pacer_ready_at(&p, "Q2ZZ-0000-9999"), T0 + 1 + INTERVAL);
	assert_int_equal(pacer_ready_at(&p, "Q2AB-CD12-EF34"), T0 + INTERVAL);
	assert_true(pacer_ready_at(&p, "Q2NE-VERS-EEN0") <= T0 + 1);

	/* Noting a device again moves its time, and adds no second entry. */
	size_t n = p.n_devices;
	assert_int_equal(pacer_note(&p, "Q2AB-CD12-EF34", T0 + INTERVAL), 0);
	assert_int_equal(pacer_ready_at(&p, "Q2AB-CD12-EF34"), T0 + 2 * INTERVAL);
	assert_int_equal(p.n_devices, n);
	pacer_release(&p);
}

static void test_pacer_pause(void **state)
{
	(void)state;
	const enum interval_scope scopes[] = {INTERVAL_SCOPE_GLOBAL, INTERVAL_SCOPE_DEVICE};

	for (size_t i = 0; i < ELEMENTSOF(scopes); i++) {
		struct pacer p;
		const uint64_t until = T0 + 60 * USEC_PER_SEC;

		assert_int_equal(pacer_init(&p, INTERVAL, scopes[i]), 0);
		assert_int_equal(pacer_note(&p, "Q2AB-CD12-EF34", T0), 0);
		/* A 429 with Retry-After: 60 holds every device. */
		pacer_pause(&p, until);
		assert_int_equal(pacer_ready_at(&p, "Q2AB-CD12-EF34"), until);
		assert_int_equal(pacer_ready_at(&p, "Q2ZZ-0000-9999"), until);
		/* A shorter pause does not cut the longer one short. */
		pacer_pause(&p, T0 + 20 * USEC_PER_SEC);
		assert_int_equal(pacer_ready_at(&p, "Q2ZZ-0000-9999"), until);
		/* A longer one extends it. */
		pacer_pause(&p, until + 5);
		assert_int_equal(pacer_ready_at(&p, "Q2ZZ-0000-9999"), until + 5);
		/* The pacing still applies after the pause. */
		assert_int_equal(pacer_note(&p, "Q2AB-CD12-EF34", until + 5), 0);
		assert_int_equal(pacer_ready_at(&p, "Q2AB-CD12-EF34"), until + 5 + INTERVAL);
		if (scopes[i] == INTERVAL_SCOPE_DEVICE)
			assert_int_equal(pacer_ready_at(&p, "Q2ZZ-0000-9999"), until + 5);
		else
			assert_int_equal(pacer_ready_at(&p, "Q2ZZ-0000-9999"), until + 5 + INTERVAL);
		pacer_release(&p);
	}
}

static void serial_of(unsigned i, char buf[static SERIAL_MAX + 1])
{
	snprintf(buf, SERIAL_MAX + 1, "Q2%02X-%04X-%04X", (i >> 24) & 0xff, (i >> 12) & 0xfff, i & 0xfff);
}

static void test_pacer_many_devices(void **state)
{
	(void)state;
	const unsigned n = 10000;
	const uint64_t step = 10 * USEC_PER_MSEC; /* 1000 devices within one interval */
	static const unsigned lags[] = {1, 250, 500, 998, 999, 1000, 1001, 1500};
	char serial[SERIAL_MAX + 1];
	struct pacer p;
	uint64_t now = T0;

	assert_int_equal(pacer_init(&p, INTERVAL, INTERVAL_SCOPE_DEVICE), 0);
	for (unsigned i = 0; i < n; i++) {
		now = T0 + i * step;
		serial_of(i, serial);
		assert_int_equal(pacer_note(&p, serial, now), 0);
		assert_int_equal(pacer_ready_at(&p, serial), now + INTERVAL);
		/* Right after each note (and so right after each pruning): the
		 * devices still inside their interval keep their time, the
		 * others are ready. */
		for (size_t k = 0; k < ELEMENTSOF(lags) && lags[k] <= i; k++) {
			uint64_t noted = now - lags[k] * step, r;

			serial_of(i - lags[k], serial);
			r = pacer_ready_at(&p, serial);
			if (noted + INTERVAL > now)
				assert_int_equal(r, noted + INTERVAL);
			else
				assert_true(r <= now);
		}
	}
	/* Devices whose interval has passed carry no information and were
	 * dropped; the rest all remain. */
	assert_true(p.n_devices < n);
	assert_true(p.n_devices >= INTERVAL / step - 1);
	for (unsigned i = 0; i < n; i++) {
		uint64_t noted = T0 + i * step, r;

		serial_of(i, serial);
		r = pacer_ready_at(&p, serial);
		if (noted + INTERVAL > now)
			assert_int_equal(r, noted + INTERVAL);
		else
			assert_true(r <= noted + INTERVAL && r <= now);
	}
	/* A device never seen, and one long gone, may go at once. */
	serial_of(n + 5, serial);
	assert_true(pacer_ready_at(&p, serial) <= now);
	serial_of(0, serial);
	assert_true(pacer_ready_at(&p, serial) <= now);
	/* ... and is paced again once it goes. */
	assert_int_equal(pacer_note(&p, serial, now + 1), 0);
	assert_int_equal(pacer_ready_at(&p, serial), now + 1 + INTERVAL);

	/* Much later, every old entry is stale; new notes still work. */
	now += 10 * INTERVAL;
	for (unsigned i = n; i < n + 2000; i++) {
		serial_of(i, serial);
		assert_int_equal(pacer_note(&p, serial, now + i), 0);
	}
	for (unsigned i = n; i < n + 2000; i++) {
		serial_of(i, serial);
		assert_int_equal(pacer_ready_at(&p, serial), now + i + INTERVAL);
	}
	/* The stale thousand from before were dropped along the way. */
	assert_true(p.n_devices < 2500);
	pacer_release(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_bounds),      cmocka_unit_test(test_backoff_cap),
		cmocka_unit_test(test_backoff_no_overflow), cmocka_unit_test(test_pacer_global),
		cmocka_unit_test(test_pacer_device),        cmocka_unit_test(test_pacer_pause),
		cmocka_unit_test(test_pacer_many_devices),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
