/* SPDX-License-Identifier: MIT */
/*
 * endpoint — what the daemon serves: the listening socket, callbacks from
 * Meraki (verified, recorded, answered once durable), the selftest probe,
 * the log limiter for refusals, /metrics and /healthz, and the wiring of
 * libmicrohttpd into the loop.
 *
 * Owns d->endpoint.  Calls the ledger (record; the barrier for answers) and
 * dispatch (a callback that cannot be verified prompts a poll); /metrics
 * reads every room's counters.
 */
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "blinkhook/callback.h"
#include "blinkhook/json.h"
#include "blinkhook/log.h"
#include "daemon-internal.h"

/* Connections: all together, and from one address that is not a trusted
 * proxy; an idle one is closed after the timeout.  Meraki sends one callback
 * at a time per job, so a peer holding more than a few is not Meraki.  All
 * together: as many as RLIMIT_NOFILE leaves after CONNECTION_FD_RESERVE
 * descriptors for everything else (the job log, its lock and AIO eventfd,
 * the spool's directories and the file being read, inotify, epoll, signalfd
 * and timers, curl's sockets for the calls in flight and its resolver), and
 * at most CONNECTION_LIMIT_MAX: each may hold libmicrohttpd's 32 KiB pool
 * and a body up to max_body, so 1024 held connections may take some 87 MB,
 * and more would let anybody who can connect take the host's memory.  A
 * trusted proxy (and a unix socket's peers, together) may hold half. */
#define CONNECTION_FD_RESERVE 128
#define CONNECTION_LIMIT_MIN 16
#define CONNECTION_LIMIT_MAX 1024
#define CONNECTION_PER_IP_LIMIT 64
#define CONNECTION_TIMEOUT_SEC 15

/*
 * Refused callbacks are logged, but not without limit: whoever can reach the
 * endpoint could otherwise fill the journal, and spend our time writing it.
 * Up to REFUSALS_BURST lines in LOG_LIMIT_INTERVAL; past that they are only
 * counted, and one line at the end of the interval says how many went
 * unlogged.  /metrics counts every one.
 */
#define REFUSALS_BURST 20

/* What a line of the refusals' budget is about. */
enum { REFUSED_400, REFUSED_401, REFUSED_404, PROBE_LINE };

/* Says how many refusals went unlogged, and starts a new interval at now. */
static void refusals_flush(struct daemon *d, uint64_t now)
{
	struct refusals *rf = &d->endpoint.refusals;
	uint64_t n[LOG_BUDGET_KINDS], secs;

	(void)budget_flush(&rf->budget, now, n, &secs);
	if (n[REFUSED_400] + n[REFUSED_401] + n[REFUSED_404] > 0)
		log_notice("%llu more refused callbacks in the last %llus not logged one by one "
			   "(400: %llu, 401: %llu, 404: %llu); /metrics counts them all",
			   (unsigned long long)(n[REFUSED_400] + n[REFUSED_401] + n[REFUSED_404]),
			   (unsigned long long)secs, (unsigned long long)n[REFUSED_400],
			   (unsigned long long)n[REFUSED_401], (unsigned long long)n[REFUSED_404]);
	if (n[PROBE_LINE] > 0)
		log_notice("%llu more selftest probes in the last %llus not logged one by one; /metrics counts "
			   "them all",
			   (unsigned long long)n[PROBE_LINE], (unsigned long long)secs);
	(void)sd_event_source_set_enabled(rf->timer, SD_EVENT_OFF);
}

static int on_refusals_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	(void)s;
	refusals_flush(ud, budget_now(ud, usec));
	return 0;
}

/* Whether a line of this kind (a refused callback's, a selftest probe's:
 * they share the budget) may be logged. */
static bool refusal_may_log(struct daemon *d, unsigned kind)
{
	struct refusals *rf = &d->endpoint.refusals;

	return budget_may_log(d, &rf->budget, rf->timer, kind, refusals_flush);
}

/* A callback's answer, once its record is durable (200) or cannot be (503). */
static bool answer_when_durable(struct daemon *d, void *ud, int r)
{
	unsigned status = r == 0 ? 200 : 503;

	d->endpoint.callbacks[status == 200 ? CB_200 : CB_503]++;
	httpd_reply(ud, status);
	endpoint_kick(d);
	return true;
}

static void callback_handle(struct daemon *d, struct httpd_request *req);

/* With the PostgreSQL store, a callback for a job this node does not work
 * (or does not know yet) is judged once the table has what the other nodes
 * committed: the job's secret and state are theirs. */
static void callback_after_sync(struct daemon *d, void *ud, int r)
{
	if (r < 0) {
		d->endpoint.callbacks[CB_503]++;
		httpd_reply(ud, 503);
	} else
		callback_handle(d, ud);
	endpoint_kick(d);
}

static void on_callback(void *ud, struct httpd_request *req)
{
	struct daemon *d = ud;
	const char *id = httpd_request_job_id(req);
	const struct job *j;

	if (d->pg && id && job_id_is_valid(id)) {
		j = job_table_find(&d->ledger.jobs, id);
		if (!j || j->foreign) {
			if (pgstore_when_synced(d, callback_after_sync, req) < 0) {
				d->endpoint.callbacks[CB_503]++;
				httpd_reply(req, 503);
			}
			return;
		}
	}
	callback_handle(d, req);
}

static void callback_handle(struct daemon *d, struct httpd_request *req)
{
	struct callback_verdict v;
	struct callback_env env = {
		.jobs = &d->ledger.jobs,
		.key = d->key,
		.static_secret = d->static_secret,
		.now = now_realtime_usec(),
	};
	const char *id = httpd_request_job_id(req), *body;
	struct job *j = NULL;
	size_t len;
	int r;

	body = httpd_request_body(req, &len);
	r = callback_evaluate(&env, id, body, len, httpd_request_secret_header(req), &v);
	if (r < 0) {
		d->endpoint.callbacks[CB_503]++;
		httpd_reply(req, 503);
		return;
	}
	if (v.http_status == 200)
		id = v.event.id; /* the receiver's URL names no job: the verdict does */
	if (v.http_status != 200) {
		/* callback_evaluate refuses with 400, 401 or 404 only. */
		assert(v.http_status == 400 || v.http_status == 401 || v.http_status == 404);
		d->endpoint.callbacks[v.http_status == 400 ? CB_400 : v.http_status == 401 ? CB_401 : CB_404]++;
		/* The id is the caller's text: print it only when it is a valid
		 * one.  What arrived is named, never a value: the body's shape
		 * and where a secret was presented. */
		if (refusal_may_log(d, v.http_status == 400   ? REFUSED_400
				       : v.http_status == 401 ? REFUSED_401
							      : REFUSED_404)) {
			if (job_id_is_valid(id))
				log_job(LOG_NOTICE, id, NULL, NULL,
					"callback for job %s from %s refused: %u, %s (shape: %s; secret in: %s)", id,
					httpd_request_client(req), v.http_status, v.reason,
					callback_shape_to_string(v.shape),
					callback_secret_sources_to_string(v.secret_sources));
			else
				log_notice(
					"callback for job (invalid id) from %s refused: %u, %s (shape: %s; secret in: %s)",
					httpd_request_client(req), v.http_status, v.reason,
					callback_shape_to_string(v.shape),
					callback_secret_sources_to_string(v.secret_sources));
		}
		httpd_reply(req, v.http_status);
		/* After the answer, which is the same whether or not the job
		 * exists: an unverified callback for a submitted job only makes
		 * us ask Meraki. */
		if (v.unverified)
			dispatch_prompt_poll(d, v.unverified);
		callback_verdict_release(&v);
		return;
	}
	if (v.record) {
		r = ledger_record_from(d, &v.event, &j, httpd_request_client(req));
		if (r < 0) {
			(void)log_errno(LOG_ERR, r, "callback for job %s from %s: cannot record: %m", id,
					httpd_request_client(req));
			d->endpoint.callbacks[CB_503]++;
			httpd_reply(req, 503);
			callback_verdict_release(&v);
			return;
		}
	}
	/* A callback that changed the job has its line from record_from; one
	 * that changed nothing (a repeat) is for debugging only. */
	if (!v.record || r != 0)
		log_job(LOG_DEBUG, id, NULL, NULL, "callback for job %s from %s: %s, %s", id, httpd_request_client(req),
			v.event.meraki_status, v.reason);
	callback_verdict_release(&v);
	if (!j)
		j = job_table_find(&d->ledger.jobs, id);
	if (!j || j->log_seq <= ledger_synced_seq(d)) {
		d->endpoint.callbacks[CB_200]++;
		httpd_reply(req, 200);
		return;
	}
	/* Answer once the status is durable: after the next group commit. */
	if (ledger_when_durable(d, j->log_seq, answer_when_durable, req) < 0) {
		d->endpoint.callbacks[CB_503]++;
		httpd_reply(req, 503);
		return;
	}
	ledger_kick(d);
}

/* ---- the selftest probe ---- */

/* A probe's nonce from its body, {"nonce":"..."}; NULL when malformed. */
static const char *probe_nonce(const struct json *v)
{
	const char *nonce = json_string(json_get(v, "nonce"), NULL);

	return nonce && probe_token_is_valid(nonce) ? nonce : NULL;
}

/* Answers a nonce with a MAC under the probe key that blinkhookctl reads,
 * and a salt of its own; nothing else, so that the answer proves to
 * blinkhookctl that the probe reached this daemon, and tells nobody else
 * which daemon it is.  Anyone may send one: it is logged and counted like a
 * refused callback. */
static void on_probe(void *ud, struct httpd_request *req)
{
	struct daemon *d = ud;
	_cleanup_json_ struct json *v = NULL;
	struct strbuf sb = STRBUF_INIT;
	char salt[PROBE_TOKEN_MAX], mac[SECRET_MAX];
	const char *nonce = NULL, *body;
	size_t len;

	body = httpd_request_body(req, &len);
	if (json_parse(body, len, 2, &v) >= 0)
		nonce = probe_nonce(v);
	if (!nonce) {
		d->endpoint.probes_refused++;
		if (refusal_may_log(d, PROBE_LINE))
			log_notice("selftest probe from %s refused: 400, no valid nonce", httpd_request_client(req));
		httpd_reply(req, 400);
		return;
	}
	if (probe_token_new(salt) < 0) {
		httpd_reply(req, 503);
		return;
	}
	probe_mac(d->probe_key, nonce, salt, mac);
	struct json_writer w;
	json_writer_init(&w, &sb);
	json_w_object_begin(&w);
	json_w_kstr(&w, "salt", salt);
	json_w_kstr(&w, "mac", mac);
	json_w_object_end(&w);
	if (json_writer_finish(&w) < 0 || strbuf_add(&sb, "\n", 1) < 0) {
		strbuf_release(&sb);
		httpd_reply(req, 503);
		return;
	}
	d->endpoint.probes_answered++;
	if (refusal_may_log(d, PROBE_LINE))
		log_info("selftest probe from %s answered", httpd_request_client(req));
	httpd_reply_json(req, 200, sb.buf);
	strbuf_release(&sb);
}

static void on_probe_refused(void *ud, const struct httpd_request *req, unsigned status)
{
	struct daemon *d = ud;

	d->endpoint.probes_refused++;
	if (refusal_may_log(d, PROBE_LINE))
		log_notice("selftest probe from %s refused: %u", httpd_request_client(req), status);
}

static bool on_healthy(void *ud)
{
	struct daemon *d = ud;
	return d->ready && !d->stopping && !d->ledger.log_failing &&
	       (d->cfg->store_backend != STORE_POSTGRESQL || pgstore_up(d));
}

/* A metric's HELP and TYPE lines. */
static void metric_head(struct strbuf *sb, const char *name, const char *type, const char *help)
{
	strbuf_addf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One value of a metric, under a label (label NULL: none). */
static void metric_value(struct strbuf *sb, const char *name, const char *label, const char *label_value, uint64_t v)
{
	if (label)
		strbuf_addf(sb, "%s{%s=\"%s\"} %llu\n", name, label, label_value, (unsigned long long)v);
	else
		strbuf_addf(sb, "%s %llu\n", name, (unsigned long long)v);
}

static void counter(struct strbuf *sb, const char *name, const char *help, uint64_t v)
{
	metric_head(sb, name, "counter", help);
	metric_value(sb, name, NULL, NULL, v);
}

static void gauge(struct strbuf *sb, const char *name, const char *help, uint64_t v)
{
	metric_head(sb, name, "gauge", help);
	metric_value(sb, name, NULL, NULL, v);
}

static void on_metrics(void *ud, struct strbuf *sb)
{
	struct daemon *d = ud;
	static const char *const codes[CB_MAX] = {"200", "400", "401", "404", "503"};
	static const unsigned http_codes[] = {405, 413, 415};
	static const char *const outcomes[] = {"ok", "retry", "rate_limited", "fail"};
	char code[16];

	metric_head(sb, "blinkhook_callbacks_total", "counter", "Callback requests by answer.");
	for (size_t i = 0; i < ELEMENTSOF(codes); i++)
		metric_value(sb, "blinkhook_callbacks_total", "code", codes[i], d->endpoint.callbacks[i]);
	for (size_t i = 0; i < ELEMENTSOF(http_codes); i++) {
		snprintf(code, sizeof(code), "%u", http_codes[i]);
		metric_value(sb, "blinkhook_callbacks_total", "code", code,
			     httpd_refused(d->endpoint.httpd, http_codes[i]));
	}
	metric_head(sb, "blinkhook_jobs", "gauge", "Jobs in the job table by state.");
	for (unsigned s = 0; s < _JOB_STATE_MAX; s++)
		metric_value(sb, "blinkhook_jobs", "state", job_state_to_string(s), d->ledger.jobs.n_by_state[s]);
	metric_head(sb, "blinkhook_submissions_total", "counter", "Blink submissions by outcome.");
	for (size_t i = 0; i < ELEMENTSOF(outcomes); i++)
		metric_value(sb, "blinkhook_submissions_total", "outcome", outcomes[i], d->dispatch.submissions[i]);
	metric_head(sb, "blinkhook_lookups_total", "counter",
		    "Device and organization look-ups (for jobs that name a device by name or MAC) by outcome.");
	for (size_t i = 0; i < ELEMENTSOF(outcomes); i++)
		metric_value(sb, "blinkhook_lookups_total", "outcome", outcomes[i], d->dispatch.lookups[i]);
	counter(sb, "blinkhook_prompted_polls_total", "Status polls prompted by callbacks that could not be verified.",
		d->dispatch.prompted_polls);
	metric_head(sb, "blinkhook_prompted_polls_dropped_total", "counter",
		    "Prompted polls not sent, by the limit that stopped them.");
	metric_value(sb, "blinkhook_prompted_polls_dropped_total", "reason", "in_flight",
		     d->dispatch.prompts_dropped[PROMPT_DROP_IN_FLIGHT]);
	metric_value(sb, "blinkhook_prompted_polls_dropped_total", "reason", "job_interval",
		     d->dispatch.prompts_dropped[PROMPT_DROP_JOB]);
	metric_value(sb, "blinkhook_prompted_polls_dropped_total", "reason", "rate",
		     d->dispatch.prompts_dropped[PROMPT_DROP_RATE]);
	counter(sb, "blinkhook_polls_total", "Status polls sent.", d->dispatch.polls);
	gauge(sb, "blinkhook_queue_depth", "Jobs waiting to be submitted.", d->ledger.jobs.n_by_state[JOB_QUEUED]);
	counter(sb, "blinkhook_spool_rejected_total", "Spool files moved to rejected/.", d->intake.rejected);
	counter(sb, "blinkhook_connections_refused_total",
		"Connections refused for the per-address cap or the cap of their class.",
		httpd_refused_connections(d->endpoint.httpd));
	gauge(sb, "blinkhook_connection_limit", "Connections served at once (from RLIMIT_NOFILE).",
	      d->endpoint.connection_limit);
	counter(sb, "blinkhook_requests_malformed_total",
		"Requests refused 400 and closed for their framing or headers.",
		httpd_refused_malformed(d->endpoint.httpd));
	metric_head(sb, "blinkhook_probes_total", "counter", "Selftest probes by result.");
	metric_value(sb, "blinkhook_probes_total", "result", "answered", d->endpoint.probes_answered);
	metric_value(sb, "blinkhook_probes_total", "result", "refused", d->endpoint.probes_refused);
	counter(sb, "blinkhook_log_syncs_total", "Job log group commits.", d->ledger.syncs);
	counter(sb, "blinkhook_log_sync_errors_total", "Failed job log commits.", d->ledger.sync_errors);
	metric_head(sb, "blinkhook_log_sync_seconds_total", "counter",
		    "Time from each job-log write to the end of its sync.");
	strbuf_addf(sb, "blinkhook_log_sync_seconds_total %.6f\n", (double)d->ledger.sync_usec / USEC_PER_SEC);
}

const struct httpd_ops endpoint_httpd_ops = {
	.callback = on_callback,
	.metrics = on_metrics,
	.healthy = on_healthy,
	.probe = on_probe,
	.probe_refused = on_probe_refused,
};

/* ---- the loop's plumbing for libmicrohttpd ---- */

void endpoint_rearm(struct daemon *d)
{
	uint64_t t = httpd_timeout(d->endpoint.httpd);

	if (t == UINT64_MAX) {
		(void)sd_event_source_set_enabled(d->endpoint.mhd_timer, SD_EVENT_OFF);
		return;
	}
	(void)sd_event_source_set_time_relative(d->endpoint.mhd_timer, t);
	enable_oneshot(d->endpoint.mhd_timer);
}

/* In external mode libmicrohttpd resumes connections only inside MHD_run(),
 * and nothing wakes the loop for it: run it on the next iteration. */
void endpoint_kick(struct daemon *d)
{
	if (!d->endpoint.mhd_timer)
		return;
	(void)sd_event_source_set_time(d->endpoint.mhd_timer, 0);
	enable_oneshot(d->endpoint.mhd_timer);
}

static int on_mhd_io(sd_event_source *s, int fd, uint32_t revents, void *ud)
{
	struct daemon *d = ud;

	(void)s;
	(void)fd;
	(void)revents;
	httpd_run(d->endpoint.httpd);
	endpoint_rearm(d);
	return 0;
}

static int on_mhd_timer(sd_event_source *s, uint64_t usec, void *ud)
{
	(void)usec;
	return on_mhd_io(s, -1, 0, ud);
}

/*
 * Raises the soft RLIMIT_NOFILE to the hard one (the daemon uses epoll, never
 * select, so more descriptors cost nothing), and returns the connections to
 * serve at once: what the limit leaves after the daemon's own descriptors,
 * so that a flood of connections never leaves it without one to take a spool
 * file, write its log or call the API.
 */
static unsigned connection_limit(void)
{
	struct rlimit rl;
	rlim_t n;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return CONNECTION_LIMIT_MIN;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit raised = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl.rlim_cur = rl.rlim_max;
	}
	n = rl.rlim_cur == RLIM_INFINITY ? CONNECTION_LIMIT_MAX + CONNECTION_FD_RESERVE : rl.rlim_cur;
	if (n < CONNECTION_LIMIT_MIN + CONNECTION_FD_RESERVE) {
		log_warn("only %llu file descriptors (ulimit -n); serving %u connections at once, which may leave "
			 "too few for the rest (set LimitNOFILE= or ulimit -n to 1024 or more)",
			 (unsigned long long)n, CONNECTION_LIMIT_MIN);
		return CONNECTION_LIMIT_MIN;
	}
	n = MIN(n - CONNECTION_FD_RESERVE, (rlim_t)CONNECTION_LIMIT_MAX);
	log_info("serving up to %llu connections at once (%llu file descriptors)", (unsigned long long)n,
		 (unsigned long long)rl.rlim_cur);
	return (unsigned)n;
}

static int open_listen_socket(struct daemon *d)
{
	const struct listen_addr *la = &d->cfg->listen;
	int n = sd_listen_fds(true), fd, r;

	if (n > 1)
		return log_errno(LOG_ERR, EINVAL, "systemd passed %d sockets; blinkhookd takes one", n);
	if (n == 1) {
		fd = SD_LISTEN_FDS_START;
		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
			return log_errno(LOG_ERR, EINVAL, "the socket systemd passed is not a listening stream socket");
		d->endpoint.listen_fd = fd;
		d->endpoint.listen_fd_ours = false;
		log_info("listening on the socket passed by systemd");
		return 0;
	}

	if (la->is_unix) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		struct stat st;

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", la->path);
		/* A socket left by an earlier run; anything else is not ours. */
		if (lstat(la->path, &st) == 0 && S_ISSOCK(st.st_mode))
			(void)unlink(la->path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return log_errno(LOG_ERR, errno, "cannot create a socket: %m");
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, SOMAXCONN) < 0) {
			r = -errno;
			close(fd);
			return log_errno(LOG_ERR, r, "cannot listen on \"%s\": %m", la->path);
		}
		(void)chmod(la->path, 0660);
	} else {
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
		struct addrinfo *ai = NULL;
		char port[8];
		int one = 1;

		snprintf(port, sizeof(port), "%u", la->port);
		r = getaddrinfo(la->host, port, &hints, &ai);
		if (r != 0)
			return log_errno(LOG_ERR, EINVAL, "cannot resolve listen address \"%s\": %s", la->host,
					 gai_strerror(r));
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			r = -errno;
			freeaddrinfo(ai);
			return log_errno(LOG_ERR, r, "cannot create a socket: %m");
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
			r = -errno;
			close(fd);
			freeaddrinfo(ai);
			return log_errno(LOG_ERR, r, "cannot listen on %s:%u: %m", la->host, la->port);
		}
		freeaddrinfo(ai);
		log_info("listening on %s:%u", la->host, la->port);
	}
	d->endpoint.listen_fd = fd;
	d->endpoint.listen_fd_ours = true;
	return 0;
}

int endpoint_init(struct daemon *d)
{
	struct endpoint *ep = &d->endpoint;
	int r;

	ep->listen_fd = -1;
	ep->refusals.budget = (struct log_budget){.interval = LOG_LIMIT_INTERVAL, .burst = REFUSALS_BURST};
	/* Accuracy 1 us: it drives I/O that is due now. */
	if ((r = sd_event_add_time(d->event, &ep->mhd_timer, CLOCK_MONOTONIC, 0, 1, on_mhd_timer, d)) < 0 ||
	    (r = sd_event_add_time(d->event, &ep->refusals.timer, CLOCK_MONOTONIC, 0, USEC_PER_SEC, on_refusals_timer,
				   d)) < 0)
		return log_errno(LOG_ERR, r, "cannot set up the event loop: %m");
	(void)sd_event_source_set_description(ep->mhd_timer, "httpd-timer");
	(void)sd_event_source_set_description(ep->refusals.timer, "refusals-limit");
	(void)sd_event_source_set_enabled(ep->mhd_timer, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(ep->refusals.timer, SD_EVENT_OFF);
	return 0;
}

int endpoint_start(struct daemon *d)
{
	struct endpoint *ep = &d->endpoint;
	int r, fd;

	r = open_listen_socket(d);
	if (r < 0)
		return r;
	ep->connection_limit = connection_limit();
	struct httpd_opts ho = {
		.listen_fd = ep->listen_fd,
		.max_body = d->cfg->max_body,
		.secret_header = d->cfg->secret_header,
		.trusted_proxies = d->cfg->trusted_proxies,
		.n_trusted_proxies = d->cfg->n_trusted_proxies,
		.connection_limit = ep->connection_limit,
		.per_ip_limit = CONNECTION_PER_IP_LIMIT,
		.proxy_limit = ep->connection_limit / 2,
		.timeout_sec = CONNECTION_TIMEOUT_SEC,
	};
	r = httpd_new(&ho, &endpoint_httpd_ops, d, &ep->httpd);
	if (r < 0)
		return log_errno(LOG_ERR, r, "cannot start the HTTP server");
	fd = httpd_epoll_fd(ep->httpd);
	if (fd < 0 || (r = sd_event_add_io(d->event, &ep->mhd_io, fd, EPOLLIN, on_mhd_io, d)) < 0)
		return log_errno(LOG_ERR, fd < 0 ? fd : r, "cannot watch the HTTP server");
	(void)sd_event_source_set_description(ep->mhd_io, "httpd-io");
	return 0;
}

int endpoint_reconfigure(struct daemon *d, const struct config *nc)
{
	struct httpd_opts ho = {
		.max_body = nc->max_body,
		.secret_header = nc->secret_header,
		.trusted_proxies = nc->trusted_proxies,
		.n_trusted_proxies = nc->n_trusted_proxies,
	};

	return httpd_reconfigure(d->endpoint.httpd, &ho);
}

/* A count of unlogged refusals is not lost at a stop either. */
void endpoint_flush(struct daemon *d)
{
	if (d->endpoint.refusals.timer)
		refusals_flush(d, now_monotonic_usec());
}

void endpoint_close(struct daemon *d)
{
	struct endpoint *ep = &d->endpoint;

	sd_event_source_disable_unref(ep->mhd_io);
	sd_event_source_disable_unref(ep->mhd_timer);
	ep->mhd_io = ep->mhd_timer = NULL;
	httpd_free(ep->httpd);
	ep->httpd = NULL;
	if (ep->listen_fd_ours && ep->listen_fd >= 0)
		close(ep->listen_fd);
	ep->listen_fd = -1;
	sd_event_source_disable_unref(ep->refusals.timer);
	ep->refusals.timer = NULL;
}
