/* SPDX-License-Identifier: MIT */
/*
 * resolve — a sub-room of dispatch: the look-up of a job's device by name
 * or MAC (GET /organizations, GET /organizations/{id}/devices), the
 * resolution rules, and the organization cache (d->dispatch.org), which it
 * owns.  Dispatch calls resolve() for an unresolved job and
 * org_cache_reset() at a reload or a new key; the look-ups' answers call
 * back into dispatch (jobctl_enter, jobctl_returned, api_failure,
 * dispatch_finish_job, dispatch_schedule).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blinkhook/log.h"
#include "daemon-internal.h"

/*
 * Resolving a job that names its device by name or MAC: before its first
 * submission, GET /organizations/{id}/devices with the API's name or mac
 * filter (after GET /organizations, once, when the config names no
 * organization).  A look-up is a call like a submission, in flight in the
 * same state (SUBMITTING), and follows the same rules: a 429 holds every
 * call for its Retry-After (or the back-off), without counting an attempt;
 * a transport error or 5xx counts one of the job's max_attempts and backs
 * off; any other 4xx fails the job.  min_interval paces blinks only: a
 * look-up goes as soon as nothing holds the API.  The serial found is
 * recorded (event "resolved"), so a restart does not ask again.
 */
static void on_orgs_done(void *ud, const struct meraki_result *res);
static void on_devices_done(void *ud, const struct meraki_result *res);

static const char *job_target_kind(const struct job *j)
{
	return j->name ? "name" : "MAC";
}
static const char *job_target(const struct job *j)
{
	return j->name ? j->name : j->mac;
}

/* Whether a device of the answer is the one the job names exactly. */
static bool item_matches(const struct job *j, const struct meraki_item *it)
{
	char mac[JOB_MAC_LEN + 1];

	if (j->name)
		return meraki_item_named(it, j->name);
	return it->mac && mac_normalize(it->mac, mac) == 0 && strcmp(mac, j->mac) == 0;
}

/* The job's device among the answer's (resolution rules in docs/meraki-api.md), or
 * the job fails saying why not. */
static void resolve_from(struct daemon *d, struct jobctl *c, const struct meraki_result *res)
{
	struct job *j = c->job;
	const struct meraki_item *found = NULL;
	size_t exact = 0, shown = 0;
	struct strbuf sb = STRBUF_INIT;
	bool use_exact;
	int r;

	for (size_t i = 0; i < res->n_items; i++)
		if (item_matches(j, &res->items[i])) {
			exact++;
			found = &res->items[i];
		}
	if (exact != 1) /* else: exactly one device in the whole answer */
		found = exact == 0 && res->n_items == 1 ? &res->items[0] : NULL;
	if (res->truncated) /* pages not read may hold another */
		found = NULL;
	if (found) {
		struct job_event ev = {
			.ts = now_realtime_usec(),
			.id = j->id,
			.kind = JOB_EV_RESOLVED,
			.serial = found->id,
			.source = "api",
		};
		r = ledger_record(d, &ev, NULL);
		if (r < 0) {
			(void)log_errno(LOG_ERR, r, "job %s: cannot record the device found: %m", j->id);
			c->not_before = now_monotonic_usec() + d->cfg->retry_initial_usec;
			return;
		}
		snprintf(c->serial, sizeof(c->serial), "%s", j->serial);
		c->not_before = 0;
		return;
	}
	if (res->n_items == 0) {
		if (j->name)
			(void)strbuf_addf(&sb, "no device named '%.255s'", j->name);
		else
			(void)strbuf_addf(&sb, "no device with MAC %s", j->mac);
	} else {
		/* The candidates: the exact matches if several, else all. */
		use_exact = exact > 1;
		(void)strbuf_addf(&sb, "%s '%.255s' matches %s%zu devices:", job_target_kind(j), job_target(j),
				  res->truncated && !use_exact ? "more than " : "", use_exact ? exact : res->n_items);
		for (size_t i = 0; i < res->n_items && shown < 5; i++) {
			const struct meraki_item *it = &res->items[i];

			if (use_exact && !item_matches(j, it))
				continue;
			(void)strbuf_addf(
				&sb, "%s %.*s (%s)", shown ? "," : "",
				(int)utf8_prefix(it->name ? it->name : "", strlen(it->name ? it->name : ""), 64),
				it->name ? it->name : "", it->id);
			shown++;
		}
		if ((use_exact ? exact : res->n_items) > shown)
			(void)strbuf_addstr(&sb, ", ...");
	}
	if (sb.buf)
		sb.buf[utf8_prefix(sb.buf, sb.len, JOB_TEXT_MAX)] = 0;
	dispatch_finish_job(d, j, JOB_FAILED, NULL, sb.buf ? sb.buf : "device look-up failed", "api", 0);
	strbuf_release(&sb);
}

static void on_devices_done(void *ud, const struct meraki_result *res)
{
	struct jobctl *c = ud;
	struct daemon *d = c->d;

	d->dispatch.lookups[res->outcome]++;
	if (jobctl_returned(c))
		return;
	if (res->outcome == MERAKI_OK) {
		d->dispatch.consecutive_429 = 0;
		resolve_from(d, c, res);
	} else
		api_failure(d, c, res, "looking up the device");
	dispatch_schedule(d);
	daemon_stop_if_idle(d);
}

static void on_orgs_done(void *ud, const struct meraki_result *res)
{
	struct jobctl *c = ud;
	struct daemon *d = c->d;
	struct dispatch *dp = &d->dispatch;

	dp->org.in_flight = false;
	dp->lookups[res->outcome]++;
	if (c->org_generation != dp->org.generation) {
		/* Asked before a reload (another key, or an organization_id
		 * now): this job asks again. */
		if (jobctl_returned(c))
			return;
		dispatch_schedule(d);
		return;
	}
	if (res->outcome == MERAKI_OK && res->n_items == 1) {
		(void)STR_COPY(dp->org.id, res->items[0].id);
		log_info("device names and MACs are looked up in organization %s (%s), the one the API key sees",
			 dp->org.id, res->items[0].name ? res->items[0].name : "no name");
	} else if (res->outcome == MERAKI_OK) {
		struct strbuf sb = STRBUF_INIT;

		if (res->n_items == 0)
			(void)strbuf_addstr(&sb, "the API key sees no organization to look devices up in");
		else {
			(void)strbuf_addf(&sb, "the API key sees %s%zu organizations (",
					  res->truncated ? "more than " : "", res->n_items);
			for (size_t i = 0; i < res->n_items && i < 5; i++)
				(void)strbuf_addf(&sb, "%s%s %.64s", i ? ", " : "", res->items[i].id,
						  res->items[i].name ? res->items[i].name : "");
			(void)strbuf_addf(&sb, "%s): set [meraki] organization_id to the one whose devices to look up",
					  res->n_items > 5 ? ", ..." : "");
		}
		free(dp->org.error);
		dp->org.error = sb.buf ? strndup(sb.buf, utf8_prefix(sb.buf, sb.len, JOB_TEXT_MAX)) : NULL;
		strbuf_release(&sb);
		if (dp->org.error && !dp->org.error_logged) {
			log_err("cannot resolve device names and MACs: %s", dp->org.error);
			dp->org.error_logged = true;
		}
	}
	if (jobctl_returned(c))
		return;
	if (res->outcome == MERAKI_OK) {
		dp->consecutive_429 = 0;
		if (!dp->org.id[0])
			dispatch_finish_job(d, c->job, JOB_FAILED, NULL,
					    dp->org.error ? dp->org.error : "no organization to look devices up in",
					    "api", 0);
	} else
		api_failure(d, c, res, "listing the organizations");
	dispatch_schedule(d);
	daemon_stop_if_idle(d);
}

/* Starts the next look-up for an unresolved job, unless it must wait for
 * another job's (the organizations), whose answer schedules it again. */
void resolve(struct daemon *d, struct jobctl *c, uint64_t now)
{
	struct dispatch *dp = &d->dispatch;
	struct job *j = c->job;
	const char *org = d->cfg->organization_id ? d->cfg->organization_id : dp->org.id[0] ? dp->org.id : NULL;
	int r;

	if (!org && dp->org.error) {
		dispatch_finish_job(d, j, JOB_FAILED, NULL, dp->org.error, "api", 0);
		return;
	}
	if (!org && dp->org.in_flight)
		return; /* its answer schedules again */
	if (!dp->ops->list_organizations || !dp->ops->find_devices)
		r = -EOPNOTSUPP;
	else if (!org)
		r = dp->ops->list_organizations(dp->meraki, on_orgs_done, c);
	else
		r = dp->ops->find_devices(dp->meraki, org, j->name, j->mac[0] ? j->mac : NULL, on_devices_done, c);
	if (r < 0) {
		(void)log_errno(LOG_ERR, r, "job %s: cannot start the look-up of %s '%s': %m", j->id,
				job_target_kind(j), job_target(j));
		c->not_before = now + d->cfg->retry_initial_usec;
		return;
	}
	if (!org) {
		dp->org.in_flight = true;
		c->org_generation = dp->org.generation;
	}
	jobctl_enter(c, JC_SUBMITTING);
}

/* The organization found for look-ups, or why there was none: asked again
 * at the next look-up (a reload may name one, or change the key).  A GET
 * /organizations in flight stays so (one at a time); its answer is stale. */
void org_cache_reset(struct org_cache *o)
{
	o->id[0] = 0;
	o->generation++;
	free(o->error);
	o->error = NULL;
	o->error_logged = false;
}
