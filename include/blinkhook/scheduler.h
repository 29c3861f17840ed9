/* SPDX-License-Identifier: MIT */
/*
 * scheduler — when the next submission may go: pacing at min_interval
 * (globally or per device), pauses after a 429, and retry back-off.  Pure
 * bookkeeping on monotonic microseconds; it starts nothing itself.
 */
#ifndef BLINKHOOK_SCHEDULER_H
#define BLINKHOOK_SCHEDULER_H

#include <stdint.h>

#include "blinkhook/config.h"

/* The wait before retry number `attempt` (1 for the first retry): initial
 * doubled per attempt, capped at max, then jittered into [d/2, d] by
 * rand (any 64 random bits) so that many jobs do not retry in step. */
uint64_t backoff_usec(unsigned attempt, uint64_t initial, uint64_t max, uint64_t rand);

struct pacer_device;

struct pacer {
	uint64_t interval;
	enum interval_scope scope;
	uint64_t global_next;  /* no submission before this */
	uint64_t paused_until; /* after a 429: nothing before this */
	struct pacer_device **buckets;
	size_t n_buckets, n_devices;
};

int pacer_init(struct pacer *p, uint64_t interval, enum interval_scope scope);
void pacer_release(struct pacer *p);
/* The earliest time a submission for serial may go. */
uint64_t pacer_ready_at(const struct pacer *p, const char *serial);
/* Records a submission for serial at now. */
int pacer_note(struct pacer *p, const char *serial, uint64_t now);
/* Holds every submission until `until`. */
void pacer_pause(struct pacer *p, uint64_t until);

#endif
