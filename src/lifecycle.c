/* SPDX-License-Identifier: MIT */
/*
 * lifecycle — the daemon's life: setup and teardown of every room in their
 * order, signals (stop, reload), the reload itself, sd_notify, and
 * daemon_run().  Read this file first, from daemon_run() up.
 *
 * Owns the top of struct daemon (the config, the API key, the callback and
 * probe keys, the loop, ready and stopping).  Calls each room's init,
 * open or start, flush, close and reconfigure (those that have them);
 * dispatch to reschedule after a reload; the ledger to replay at start and
 * to commit at a stop.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "blinkhook/credentials.h"
#include "blinkhook/daemon.h"
#include "blinkhook/log.h"
#include "daemon-internal.h"

/* On SIGTERM, how long requests to Meraki in flight may take to finish, so
 * that their answer is logged and the next start does not submit them again. */
#define STOP_GRACE (5 * USEC_PER_SEC)

void daemon_notify_status(struct daemon *d, bool force)
{
	uint64_t now = now_monotonic_usec();

	if (!force && now < d->last_status_notify + USEC_PER_SEC)
		return;
	d->last_status_notify = now;
	(void)sd_notifyf(false, "STATUS=%zu queued, %zu submitted, %zu complete, %zu failed, %zu expired",
			 d->ledger.jobs.n_by_state[JOB_QUEUED], d->ledger.jobs.n_by_state[JOB_SUBMITTED],
			 d->ledger.jobs.n_by_state[JOB_COMPLETE], d->ledger.jobs.n_by_state[JOB_FAILED],
			 d->ledger.jobs.n_by_state[JOB_EXPIRED]);
}

/* ---- start and stop ---- */

/* The end of a stop: what is recorded is committed and answered; everything
 * else is in the log or still in the spool, and the next start picks it up. */
static void finish_stop(struct daemon *d)
{
	(void)ledger_commit(d, true);
	ledger_fail_pending(d);
	sd_event_exit(d->event, 0);
}

void daemon_stop_if_idle(struct daemon *d)
{
	if (d->stopping && d->dispatch.in_flight == 0)
		finish_stop(d);
}

static int on_stop_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	(void)usec;
	log_warn("%zu request(s) to Meraki still in flight after %llus; stopping without their answer (the "
		 "next start submits those jobs again)",
		 d->dispatch.in_flight, (unsigned long long)(STOP_GRACE / USEC_PER_SEC));
	finish_stop(d);
	return 0;
}

static int on_stop(sd_event_source *s, const struct signalfd_siginfo *si, void *ud)
{
	struct daemon *d = ud;
	int r;

	(void)s;
	if (d->stopping) {
		log_info("received %s again; stopping now", strsignal((int)si->ssi_signo));
		finish_stop(d);
		return 0;
	}
	log_info("received %s; stopping", strsignal((int)si->ssi_signo));
	(void)sd_notify(false, "STOPPING=1");
	/* No new work from here: no intake, no submissions. Callbacks are still
	 * answered while the requests in flight finish. */
	d->stopping = true;
	if (d->dispatch.in_flight == 0) {
		finish_stop(d);
		return 0;
	}
	log_info("waiting up to %llus for %zu request(s) to Meraki in flight",
		 (unsigned long long)(STOP_GRACE / USEC_PER_SEC), d->dispatch.in_flight);
	r = sd_event_add_time_relative(d->event, &d->stop_timer, CLOCK_MONOTONIC, STOP_GRACE, 0, on_stop_timer, d);
	if (r < 0) {
		finish_stop(d);
		return 0;
	}
	(void)sd_event_source_set_description(d->stop_timer, "stop-grace");
	return 0;
}

static void restart_key_changed(const char *section, const char *name, void *ud)
{
	(void)ud;
	log_warn("reload: [%s] %s changed; it takes effect at the next restart", section, name);
}

/*
 * SIGHUP: the config file and the API key again.  What can change while
 * running changes for what comes next; the keys that need a restart (the
 * key table in config.c marks them) keep their running values, with a
 * warning.  A config with an error changes nothing.
 */
static void reload_config(struct daemon *d)
{
	struct config nc;
	char err[CONFIG_ERROR_MAX];
	char *secret = NULL;
	int r;

	if (config_init(&nc) < 0) {
		log_err("reload: out of memory; keeping the running configuration");
		return;
	}
	r = config_load(&nc, d->cfg->path, err);
	if (r >= 0 && nc.http_server_id && (r = credentials_load_callback_secret(&nc, &secret, err)) == -ENOENT)
		snprintf(err, sizeof(err), "http_server_id needs the receiver's secret");
	if (r < 0) {
		log_err("reload: %s; keeping the running configuration", err);
		config_release(&nc);
		return;
	}
	config_keep_restart_keys(d->cfg, &nc, restart_key_changed, NULL);

	if (dispatch_reconfigure(d, &nc) < 0 || endpoint_reconfigure(d, &nc) < 0) {
		log_err("reload: out of memory; the configuration is partly applied");
		secret_free(secret);
		config_release(&nc);
		return;
	}
	secret_free(d->static_secret);
	d->static_secret = secret;
	config_release(d->cfg);
	*d->cfg = nc;
	dispatch_rearm_all(d);
	log_info("reload: configuration from %s applied", d->cfg->path);
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *ud)
{
	struct daemon *d = ud;
	char err[CONFIG_ERROR_MAX], mask[16];
	const char *source;
	char *key = NULL;

	(void)s;
	(void)si;
	(void)sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)now_monotonic_usec());
	reload_config(d);
	/* The environment cannot change under a running process, and took
	 * precedence over a key file: a key from it stays (and was wiped
	 * from the environment block when it was read). */
	if (d->api_key_from_env) {
		api_key_mask(d->api_key, mask);
		log_info("reload: API key %s kept (the environment is read once, at start)", mask);
	} else if (credentials_load_api_key(d->cfg, &key, &source, err) < 0)
		log_err("reload: %s; keeping the current API key", err);
	else {
		api_key_mask(key, mask);
		dispatch_set_api_key(d, key, mask, source);
		secret_free(key);
	}
	daemon_notify_status(d, true);
	(void)sd_notify(false, "READY=1");
	return 0;
}

/* Meraki calls only https URLs on a public host: say so early. */
static void check_public_url(const struct config *c)
{
	static const char *const local[] = {"http://127.", "http://localhost", "http://[::1]"};

	if (!c->public_url || strncmp(c->public_url, "https://", 8) == 0)
		return;
	for (size_t i = 0; i < ELEMENTSOF(local); i++)
		if (strncmp(c->public_url, local[i], strlen(local[i])) == 0)
			return;
	log_warn("public_url \"%s\" is not https://: Meraki only calls https URLs with a valid certificate; put a "
		 "TLS reverse proxy in front (docs/reverse-proxies.md)",
		 c->public_url);
}

/* Brings every room up, in the order each needs the others: the event
 * sources before replay (which schedules jobs on them), the log replayed
 * (and compacted) before the spool is taken, the server last. */
int daemon_setup(struct daemon *d)
{
	bool created = false;
	int r;

	r = sd_event_default(&d->event);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot create the event loop: %m");
	(void)sd_event_set_watchdog(d->event, true);

	r = ledger_open(d);
	if (r < 0)
		return r;
	r = secret_key_load(d->cfg->state_dir, &d->key, &created);
	if (r == -EPERM)
		return log_errno(LOG_ERR, r, "\"%s/%s\" is readable by group or others; chmod 600 it",
				 d->cfg->state_dir, SECRET_KEY_FILE);
	if (r == -EINVAL)
		return log_errno(LOG_ERR, r,
				 "cannot load \"%s/%s\": %m (a damaged key: delete it; callbacks of "
				 "jobs in flight will then be refused and the jobs finish by polling)",
				 d->cfg->state_dir, SECRET_KEY_FILE);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot load \"%s/%s\": %m", d->cfg->state_dir, SECRET_KEY_FILE);
	if (created)
		log_info("created a new callback key \"%s/%s\"", d->cfg->state_dir, SECRET_KEY_FILE);
	r = probe_key_load(d->cfg->state_dir, true, &d->probe_key, &created);
	if (r == -EPERM)
		return log_errno(LOG_ERR, r, "\"%s/%s\" is writable by group or readable by others; chmod 640 it",
				 d->cfg->state_dir, PROBE_KEY_FILE);
	if (r == -EINVAL)
		return log_errno(LOG_ERR, r, "cannot load \"%s/%s\": %m (a damaged key: delete it, a new one is made)",
				 d->cfg->state_dir, PROBE_KEY_FILE);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot load \"%s/%s\": %m", d->cfg->state_dir, PROBE_KEY_FILE);
	if (created)
		log_info("created a new selftest probe key \"%s/%s\"", d->cfg->state_dir, PROBE_KEY_FILE);
	check_public_url(d->cfg);
	if (d->cfg->http_server_id) {
		char err[CONFIG_ERROR_MAX];
		r = credentials_load_callback_secret(d->cfg, &d->static_secret, err);
		if (r < 0)
			return log_errno(LOG_ERR, r, "%s",
					 r == -ENOENT ? "http_server_id needs the receiver's secret "
							"(credential callback-secret or "
							"shared_secret_file)"
						      : err);
	}

	if (d->cfg->store_backend == STORE_POSTGRESQL && (r = pgstore_open(d)) < 0)
		return r;

	/* Event sources first: replay already schedules jobs on them. */
	if ((r = ledger_init(d)) < 0 || (r = dispatch_init(d)) < 0 || (r = intake_init(d)) < 0 ||
	    (r = endpoint_init(d)) < 0)
		return r;
	r = ledger_replay(d);
	if (r < 0)
		return r;
	if ((r = intake_open(d)) < 0 || (r = dispatch_start(d)) < 0 || (r = endpoint_start(d)) < 0)
		return r;

	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);
	if ((r = sd_event_add_signal(d->event, &d->sig_term, SIGTERM, on_stop, d)) < 0 ||
	    (r = sd_event_add_signal(d->event, &d->sig_int, SIGINT, on_stop, d)) < 0 ||
	    (r = sd_event_add_signal(d->event, &d->sig_hup, SIGHUP, on_reload, d)) < 0)
		return log_errno(LOG_ERR, r, "cannot watch signals: %m");
	(void)sd_event_source_set_description(d->sig_term, "sigterm");
	(void)sd_event_source_set_description(d->sig_int, "sigint");
	(void)sd_event_source_set_description(d->sig_hup, "sighup");

	intake_start(d);
	d->ready = true;
	endpoint_rearm(d);
	if (ledger_pending(d) || d->intake.n_taken)
		ledger_kick(d);
	else
		dispatch_schedule(d);
	return 0;
}

/* Takes every room down; waiters hold connections: they are answered
 * before the server goes, and calls in flight end without their done
 * functions. */
void daemon_teardown(struct daemon *d)
{
	endpoint_flush(d);
	intake_flush(d);
	ledger_cancel_pending(d);
	dispatch_close(d);
	endpoint_close(d);
	sd_event_source_disable_unref(d->sig_term);
	sd_event_source_disable_unref(d->sig_int);
	sd_event_source_disable_unref(d->sig_hup);
	sd_event_source_disable_unref(d->stop_timer);
	intake_close(d);
	secret_key_free(d->key);
	secret_key_free(d->probe_key);
	ledger_close(d);
	pgstore_close(d);
	sd_event_unref(d->event);
	secret_free(d->static_secret);
	secret_free(d->api_key);
	config_release(d->cfg);
}

/* NOLINTNEXTLINE(readability-non-const-parameter): ours to wipe and free */
int daemon_run(struct config *cfg, char *api_key, const char *api_key_source)
{
	struct daemon d = {
		.cfg = cfg,
		.api_key = api_key,
		.api_key_from_env = api_key_source && strcmp(api_key_source, "environment") == 0,
	};
	int r;

	r = daemon_setup(&d);
	if (r >= 0) {
		daemon_notify_status(&d, true);
		(void)sd_notify(false, "READY=1");
		log_info("ready");
		r = sd_event_loop(d.event);
		if (r < 0)
			(void)log_errno(LOG_ERR, r, "event loop failed: %m");
		else if (r == 0 && ledger_pending(&d) && ledger_commit_in_place(&d) < 0)
			log_warn("stopping with unsynced records; callbacks for them were answered 503");
	}
	daemon_teardown(&d);
	return r < 0 ? r : (r > 0 ? -EIO : 0);
}
