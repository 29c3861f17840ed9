/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "blinkhook/job.h"
#include "blinkhook/scheduler.h"

uint64_t backoff_usec(unsigned attempt, uint64_t initial, uint64_t max, uint64_t rand)
{
	uint64_t d = initial;

	if (attempt == 0)
		attempt = 1;
	for (unsigned i = 1; i < attempt && d < max; i++)
		d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
	d = MIN(d, max);
	/* "Equal jitter": at least half the wait, so back-off still backs off. */
	return d / 2 + (d - d / 2 > 0 ? rand % (d - d / 2 + 1) : 0);
}

struct pacer_device {
	char serial[SERIAL_MAX + 1];
	uint64_t next;
	struct pacer_device *hash_next;
};

static size_t bucket(const struct pacer *p, const char *serial)
{
	return fnv1a64_str(serial) & (p->n_buckets - 1);
}

int pacer_init(struct pacer *p, uint64_t interval, enum interval_scope scope)
{
	memset(p, 0, sizeof(*p));
	p->interval = interval;
	p->scope = scope;
	p->n_buckets = 256;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	p->buckets = calloc(p->n_buckets, sizeof(*p->buckets));
	return p->buckets ? 0 : -ENOMEM;
}

void pacer_release(struct pacer *p)
{
	for (size_t i = 0; i < p->n_buckets; i++)
		for (struct pacer_device *d = p->buckets[i], *n; d; d = n) {
			n = d->hash_next;
			free(d);
		}
	free(p->buckets);
	memset(p, 0, sizeof(*p));
}

static struct pacer_device *find(const struct pacer *p, const char *serial)
{
	for (struct pacer_device *d = p->buckets[bucket(p, serial)]; d; d = d->hash_next)
		if (strcmp(d->serial, serial) == 0)
			return d;
	return NULL;
}

uint64_t pacer_ready_at(const struct pacer *p, const char *serial)
{
	uint64_t t = p->paused_until;

	if (p->scope == INTERVAL_SCOPE_GLOBAL)
		return MAX(t, p->global_next);
	const struct pacer_device *d = find(p, serial);
	return d ? MAX(t, d->next) : t;
}

/* Devices whose interval has passed carry no information: drop them so that
 * a fleet-wide campaign does not leave a table behind. */
static void prune(struct pacer *p, uint64_t now)
{
	for (size_t i = 0; i < p->n_buckets; i++) {
		struct pacer_device **pp = &p->buckets[i];
		while (*pp) {
			if ((*pp)->next <= now) {
				struct pacer_device *d = *pp;
				*pp = d->hash_next;
				free(d);
				p->n_devices--;
			} else
				pp = &(*pp)->hash_next;
		}
	}
}

int pacer_note(struct pacer *p, const char *serial, uint64_t now)
{
	struct pacer_device *d;

	p->global_next = now + p->interval;
	if (p->scope == INTERVAL_SCOPE_GLOBAL)
		return 0;
	d = find(p, serial);
	if (!d) {
		if (p->n_devices >= 4 * p->n_buckets)
			prune(p, now);
		d = calloc(1, sizeof(*d));
		if (!d)
			return -ENOMEM;
		snprintf(d->serial, sizeof(d->serial), "%s", serial);
		size_t b = bucket(p, serial);
		d->hash_next = p->buckets[b];
		p->buckets[b] = d;
		p->n_devices++;
	}
	d->next = now + p->interval;
	return 0;
}

void pacer_pause(struct pacer *p, uint64_t until)
{
	p->paused_until = MAX(p->paused_until, until);
}
