/* SPDX-License-Identifier: MIT */
/*
 * The daemon's rooms: what each owns, and the few calls between them.
 *
 *   lifecycle.c  setup, teardown, signals, reload, sd_notify, daemon_run();
 *                owns the top of struct daemon (config, keys, loop, ready,
 *                stopping)
 *   ledger.c     the one way a job changes (record), group commits, the
 *                "when durable up to seq" barrier, replay, compaction;
 *                owns d->ledger (the job log and the job table)
 *   intake.c     the spool: scans, takes, rejects, cancels, its retry and
 *                log limiter; owns d->intake
 *   dispatch.c   the run queue and each job's control (struct jobctl, a
 *                state machine), submissions, polls, expiry, curl's wiring;
 *                owns d->dispatch and job->userdata
 *   endpoint.c   the listening socket, callbacks, the selftest probe,
 *                refusals, /metrics, /healthz, libmicrohttpd's wiring; owns
 *                d->endpoint
 *   pgstore.c    with [store] backend = postgresql: the connection on the
 *                loop, its back-off and deadlines, the schema, the shared
 *                callback key, the ledger's store (load, commits), claims
 *                and leases, reading other nodes' events, pacing slots,
 *                retention; owns d->pg
 *
 * A room writes only its own part; it reads the others' where that is
 * plain (the job table, the config, ready/stopping), and changes them only
 * through the calls below.  Only the rooms include <systemd/...>.
 * Everything runs on one thread: nothing needs a lock.
 */
#ifndef BLINKHOOK_DAEMON_INTERNAL_H
#define BLINKHOOK_DAEMON_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <systemd/sd-event.h>

#include "blinkhook/config.h"
#include "blinkhook/httpd.h"
#include "blinkhook/job.h"
#include "blinkhook/joblog.h"
#include "blinkhook/log.h"
#include "blinkhook/meraki.h"
#include "blinkhook/queue.h"
#include "blinkhook/scheduler.h"
#include "blinkhook/secret.h"
#include "blinkhook/util.h"

/* After a failed commit, the first retry and the longest wait between two. */
#define COMMIT_RETRY_MIN (1 * USEC_PER_SEC)
#define COMMIT_RETRY_MAX (30 * USEC_PER_SEC)
/* The window of the log-line limiters (refused callbacks, spool rejects). */
#define LOG_LIMIT_INTERVAL (10 * USEC_PER_SEC)
/* Polls prompted by callbacks that cannot be verified, over all jobs: at
 * most PROMPT_RATE in any PROMPT_WINDOW (dispatch.c says why). */
#define PROMPT_RATE 2
/* Spool files that can be neither taken nor rejected, remembered at once. */
#define SKIPPED_MAX 1024

/* ---- ledger.c's part ---- */

struct daemon;

/* Runs once the log is durable up to seq.  r: 0 when it is; -EIO when a
 * commit failed first (return true when done, false to wait for a later
 * commit); -ECANCELED when the daemon stops (release ud). */
typedef bool (*durable_fn)(struct daemon *d, void *ud, int r);

struct durable {
	uint64_t seq;
	durable_fn fn;
	void *ud;
	struct durable *next;
};

struct ledger {
	struct joblog *log;
	struct job_table jobs;
	struct durable *durable, **durable_tail; /* the barrier */
	sd_event_source *commit_defer, *commit_retry, *commit_io;
	uint64_t commit_t0; /* when the sync in flight began */
	uint64_t commit_backoff;
	bool log_failing;
	uint64_t syncs, sync_errors, sync_usec;
	sd_event_source *compact_io;         /* the compaction child's end */
	uint64_t compact_t0, compact_before; /* when it began, and the records then */
	size_t compact_dropped;              /* final jobs past retention it dropped */
	uint64_t drop_horizon;               /* realtime: no final job was updated before this */
	uint64_t compact_backoff;            /* after failures: the wait before the next try */
	uint64_t compact_not_before;         /* monotonic: no new try before this */
};

/* ---- intake.c's part ---- */

struct skipped {
	char *name;
	uint64_t ino;
};

struct intake {
	struct queue *queue;
	sd_event_source *scan_defer, *inotify;
	bool scan_more; /* scan again once the batch taken is durable */
	size_t n_taken; /* files taken whose records are not durable yet */
	bool removed;   /* files removed since the last directory sync */
	char **names;   /* this round's list */
	size_t n, next;
	bool relist;      /* something arrived since the list was made */
	uint64_t started; /* realtime: jobs created since were taken by this run */
	uint64_t backoff;
	sd_event_source *retry;
	struct skipped skipped[SKIPPED_MAX]; /* a ring: the oldest goes first */
	size_t skipped_next;
	struct log_budget rejects; /* and files removed as taken before */
	sd_event_source *limit_timer;
	uint64_t rejected;
};

/* ---- dispatch.c's part ---- */

struct jobctl;

/* The calls dispatch makes to the Meraki client: meraki.c's unless
 * d->dispatch.ops names others before daemon_setup() (a test's stub). */
struct meraki_ops {
	int (*new_client)(const struct meraki_opts *opts, const struct meraki_loop_ops *ops, void *loop_ud,
			  struct meraki_client **ret);
	void (*free_client)(struct meraki_client *c);
	int (*set_api_key)(struct meraki_client *c, const char *key);
	int (*reconfigure)(struct meraki_client *c, const struct meraki_opts *opts);
	int (*blink)(struct meraki_client *c, const struct meraki_blink_request *req, meraki_done_fn done, void *ud);
	int (*get_blink)(struct meraki_client *c, const char *serial, const char *leds_blink_id, meraki_done_fn done,
			 void *ud);
	int (*list_organizations)(struct meraki_client *c, meraki_done_fn done, void *ud);
	int (*find_devices)(struct meraki_client *c, const char *org_id, const char *name, const char *mac,
			    meraki_done_fn done, void *ud);
	void (*on_fd)(struct meraki_client *c, int fd, uint32_t revents);
	void (*on_timer)(struct meraki_client *c);
};
extern const struct meraki_ops meraki_client_ops;

/* Why a prompted poll did not go. */
enum prompt_drop { PROMPT_DROP_IN_FLIGHT, PROMPT_DROP_JOB, PROMPT_DROP_RATE };

/* The organization whose devices resolve names and MACs when the config
 * names none: the one the key sees, once asked ("" until then), or why there
 * is none to use.  Owned by resolve.c; forgotten at a reload (org_cache_reset). */
struct org_cache {
	char id[JOB_ID_MAX + 1];
	char *error;
	bool in_flight;      /* one GET /organizations at a time */
	unsigned generation; /* a reset makes an answer in flight stale */
	bool error_logged;
};

struct dispatch {
	const struct meraki_ops *ops;
	struct meraki_client *meraki;
	struct pacer pacer;
	TAILQ_HEAD(jobctl_list, jobctl) runq; /* jobs waiting to be submitted, or submitting */
	struct jobctl_list orphans;           /* ended jobs whose call is still in flight */
	size_t in_flight;
	unsigned consecutive_429;
	sd_event_source *submit_timer, *curl_timer;
	bool auth_error_logged;
	bool redirect_error_logged; /* until a reload */
	/* CLOCK_MONOTONIC starts of the last PROMPT_RATE prompted polls, the
	 * oldest at prompt_next. */
	uint64_t prompt_times[PROMPT_RATE];
	unsigned prompt_next;
	uint64_t submissions[4]; /* by enum meraki_outcome */
	uint64_t lookups[4];     /* device and organization look-ups, by enum meraki_outcome */
	struct org_cache org;
	uint64_t polls;
	uint64_t prompted_polls;
	uint64_t prompts_dropped[3]; /* by enum prompt_drop */
	/* With the PostgreSQL store: the submission slot reserved in the
	 * database for all nodes (monotonic; 0: none), the pacing scope it is
	 * for ("" global, else the serial), and whether a reservation is in
	 * flight. */
	uint64_t slot_at;
	char slot_key[SERIAL_MAX + 1];
	bool reserving;
	/* The job the slot was reserved for (its lease checked and renewed in
	 * the same statement), and until when (monotonic) that lease holds. */
	char slot_job[JOB_ID_MAX + 1];
	uint64_t slot_lease_until;
};

/* ---- endpoint.c's part ---- */

enum { CB_200, CB_400, CB_401, CB_404, CB_503, CB_MAX };

struct refusals {
	struct log_budget budget; /* refused callbacks and selftest probes */
	sd_event_source *timer;
};

struct endpoint {
	struct httpd *httpd;
	int listen_fd;
	bool listen_fd_ours;
	sd_event_source *mhd_io, *mhd_timer;
	unsigned connection_limit;
	struct refusals refusals;
	uint64_t callbacks[CB_MAX]; /* answers given here; 405/413/415 are httpd's */
	uint64_t probes_answered, probes_refused;
};

/* ---- the whole; the top is lifecycle.c's ---- */

struct daemon {
	struct config *cfg;
	char *api_key;
	bool api_key_from_env; /* read once: the environment block is wiped */
	char *static_secret;
	sd_event *event;
	struct secret_key *key;
	struct secret_key *probe_key;
	sd_event_source *sig_term, *sig_int, *sig_hup, *stop_timer;
	bool ready;
	bool stopping;
	uint64_t last_status_notify;

	struct ledger ledger;
	struct intake intake;
	struct dispatch dispatch;
	struct endpoint endpoint;
	struct pgstore *pg; /* with backend = postgresql; pgstore.c's own */
};

static inline void enable_oneshot(sd_event_source *s)
{
	(void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* A log budget's owner says what went unlogged in the interval ending at now
 * (and turns its timer off). */
typedef void (*budget_flush_fn)(struct daemon *d, uint64_t now);

/* The loop's CLOCK_MONOTONIC time (fallback before its first iteration):
 * where a budget's interval ends, or its timer found it ended. */
static inline uint64_t budget_now(struct daemon *d, uint64_t fallback)
{
	uint64_t now = fallback;

	(void)sd_event_now(d->event, CLOCK_MONOTONIC, &now);
	return now;
}

/* Whether a line of this kind may be logged under the budget b: an interval
 * that ended is flushed first; the first line only counted arms timer (the
 * owner's CLOCK_MONOTONIC source, off until then) for the interval's end,
 * when the owner calls flush. */
static inline bool budget_may_log(struct daemon *d, struct log_budget *b, sd_event_source *timer, unsigned kind,
				  budget_flush_fn flush)
{
	/* The loop's own clock: no system call a line. */
	uint64_t now = budget_now(d, 0);
	bool arm;

	if (budget_due(b, now))
		flush(d, now);
	if (budget_take(b, kind, &arm))
		return true;
	if (arm) {
		(void)sd_event_source_set_time(timer, b->start + b->interval);
		enable_oneshot(timer);
	}
	return false;
}

/* ---- lifecycle.c ---- */
/* d holds cfg and api_key (and api_key_from_env); setup brings up every
 * room on the default sd_event loop; teardown frees them, cfg included. */
int daemon_setup(struct daemon *d);
void daemon_teardown(struct daemon *d);
void daemon_notify_status(struct daemon *d, bool force);
/* Ends a stop once no request to Meraki is in flight. */
void daemon_stop_if_idle(struct daemon *d);

/* ---- ledger.c ---- */
int ledger_open(struct daemon *d);
int ledger_init(struct daemon *d);
int ledger_replay(struct daemon *d);
void ledger_close(struct daemon *d);
/* The one way a job changes; client: where a callback came from, or NULL.
 * 0 when it changed the job, 1 when it changes nothing, or -errno. */
int ledger_record_from(struct daemon *d, const struct job_event *ev, struct job **ret_job, const char *client);
int ledger_record(struct daemon *d, const struct job_event *ev, struct job **ret_job);
/* Commits what was appended; with wait, before it returns. */
int ledger_commit(struct daemon *d, bool wait);
int ledger_commit_in_place(struct daemon *d);
/* A commit on the loop's next turn. */
void ledger_kick(struct daemon *d);
bool ledger_pending(const struct daemon *d);
bool ledger_commit_held(const struct daemon *d);
/* Everything up to this seq is durable (in the log, or committed). */
uint64_t ledger_synced_seq(const struct daemon *d);
/* From the PostgreSQL store: its commit ended (r: 0 or -errno); it is
 * connected and its jobs are loaded (again). */
void ledger_store_committed(struct daemon *d, int r);
void ledger_store_ready(struct daemon *d);
/* The barrier: fn(d, ud, 0) once the log is durable up to seq. */
int ledger_when_durable(struct daemon *d, uint64_t seq, durable_fn fn, void *ud);
/* Offers what is not durable yet the failure (-EIO): at a stop. */
void ledger_fail_pending(struct daemon *d);
/* Runs everything still waiting: the durable with 0, the rest -ECANCELED. */
void ledger_cancel_pending(struct daemon *d);

/* ---- intake.c ---- */
int intake_init(struct daemon *d);
int intake_open(struct daemon *d);
void intake_start(struct daemon *d);
void intake_flush(struct daemon *d);
void intake_close(struct daemon *d);
/* A commit ended: scan on if a batch waited for it (with log_recovered,
 * the log had failed and takes requests again). */
void intake_after_commit(struct daemon *d, bool log_recovered);

/* ---- dispatch.c ---- */
int dispatch_init(struct daemon *d);
int dispatch_start(struct daemon *d);
void dispatch_close(struct daemon *d);
/* The job changed (or was replayed): its control follows. */
int dispatch_job_changed(struct daemon *d, struct job *j);
/* Whether a call to Meraki for j is in flight. */
bool dispatch_job_busy(const struct job *j);
void dispatch_schedule(struct daemon *d);
void dispatch_finish_job(struct daemon *d, struct job *j, enum job_state state, const char *status, const char *error,
			 const char *source, unsigned attempts);
void dispatch_prompt_poll(struct daemon *d, const struct job *j);
int dispatch_reconfigure(struct daemon *d, const struct config *nc);
void dispatch_rearm_all(struct daemon *d);
void dispatch_set_api_key(struct daemon *d, const char *key, const char *mask, const char *source);
/* The PostgreSQL store's answer to pgstore_reserve(): the slot begins
 * delay_usec from now and the job's lease holds lease_usec from now (r 0),
 * or none was reserved (r -errno; -ESTALE: the job is not this node's any
 * more, and was let go). */
void dispatch_reserved(struct daemon *d, int r, uint64_t delay_usec, uint64_t lease_usec);

/* Between dispatch.c and its sub-room resolve.c (device look-up by name or
 * MAC).  resolve.c owns the organization cache (d->dispatch.org). */
/*
 * Each unfinished job's control is a state machine; jobctl_enter() is the
 * one way it changes state, and asserts that the change is legal:
 *
 *   NEW --> WAITING <--> SUBMITTING          (queued)
 *   NEW --> WATCHING <--> POLLING             (submitted)
 *           WAITING ---> WATCHING            (the blink request's answer)
 *   SUBMITTING, POLLING --> ORPHANED         (the job ended meanwhile)
 *   ORPHANED --> DONE                        (its call returned: freed)
 *
 * A job that ends in any other state loses its control at once; an orphan
 * is freed when its call returns.  An orphan holds no job: the job may be
 * gone (compaction drops final jobs) before the call returns.
 */
enum jobctl_state {
	JC_NEW,        /* just made */
	JC_WAITING,    /* in the run queue, nothing in flight */
	JC_SUBMITTING, /* its blink request is in flight */
	JC_WATCHING,   /* submitted: waits for a callback, its poll or expiry */
	JC_POLLING,    /* a status request in flight (prompted: by a callback) */
	JC_ORPHANED,   /* its job ended while a call was in flight */
	JC_DONE,       /* an orphan whose call returned, about to be freed */
	JC_STATE_MAX,
};

/* The scheduling state of one unfinished job (job->userdata). */
struct jobctl {
	struct daemon *d;
	enum jobctl_state state;
	struct job *job;             /* NULL once orphaned */
	char serial[SERIAL_MAX + 1]; /* the job's, for the pacer, also when orphaned */
	uint64_t not_before;         /* monotonic: no submission before this */
	uint64_t poll_at;            /* realtime: when to ask Meraki, if still unfinished */
	unsigned polls;
	uint64_t prompted_at;    /* monotonic: the last poll a callback prompted */
	unsigned org_generation; /* of the GET /organizations it has in flight */
	bool prompt_pending;     /* the timer is due for a prompted poll */
	bool prompted;           /* the call in flight is a prompted poll */
	bool in_runq;
	TAILQ_ENTRY(jobctl) link; /* in the run queue, or (orphaned) among the orphans */
	sd_event_source *timer;   /* poll and expiry, on CLOCK_REALTIME */
};
void jobctl_enter(struct jobctl *c, enum jobctl_state state);
bool jobctl_returned(struct jobctl *c);
void api_failure(struct daemon *d, struct jobctl *c, const struct meraki_result *res, const char *what);
void resolve(struct daemon *d, struct jobctl *c, uint64_t now);
void org_cache_reset(struct org_cache *o);

/* ---- endpoint.c ---- */
int endpoint_init(struct daemon *d);
int endpoint_start(struct daemon *d);
void endpoint_flush(struct daemon *d);
void endpoint_close(struct daemon *d);
int endpoint_reconfigure(struct daemon *d, const struct config *nc);
/* Runs libmicrohttpd on the loop's next turn (resumed connections). */
void endpoint_kick(struct daemon *d);
void endpoint_rearm(struct daemon *d);
extern const struct httpd_ops endpoint_httpd_ops;

/* ---- pgstore.c ---- */
struct pgstore;
/* Reads the conninfo and starts connecting (on the loop: it returns at once;
 * a database that cannot be reached is tried again, with a back-off). */
int pgstore_open(struct daemon *d);
void pgstore_close(struct daemon *d);
/* Connected, with the schema in place. */
bool pgstore_up(const struct daemon *d);
/* The ledger's store, as the job log is: append a record (seq: its number);
 * commit what was appended in one transaction; at a stop, commit in place;
 * whether a query (of any kind: a commit, a claim tick, a read, a slot, a
 * retention batch) is in flight, which holds the next commit back; whether
 * records wait; the last seq committed.
 * pgstore_commit_start() returns 1: in flight, its end goes to
 * ledger_store_committed(); 0: nothing to commit; -EBUSY: a commit is in
 * flight already; -EAGAIN: a claim tick that fell due went first (the
 * commit follows at its end); -ENOMEM; -EIO: not connected (or not loaded
 * yet, or another query in flight), or the connection was lost sending it. */
int pgstore_append(struct daemon *d, const struct job_event *ev, uint64_t *ret_seq);
int pgstore_commit_start(struct daemon *d);
int pgstore_commit_wait(struct daemon *d);
bool pgstore_busy(const struct daemon *d);
bool pgstore_has_pending(const struct daemon *d);
uint64_t pgstore_synced_seq(const struct daemon *d);
/* Reserves the next submission slot of a pacing scope ("" global, or a
 * serial) for all nodes, for the job job_id, fenced by its lease (renewed
 * when this node still holds it, else no slot); the answer goes to
 * dispatch_reserved().  -EIO when not connected. */
int pgstore_reserve(struct daemon *d, const char *scope, const char *job_id);
/* Until when (monotonic) the last claim tick renewed this node's leases (0:
 * none yet): a job this node works is its own at least until then. */
uint64_t pgstore_lease_until(const struct daemon *d);
/* Whether the last commit found the id of a job queued here taken by
 * another node's job (the job was dropped; its request is to be rejected). */
bool pgstore_id_taken(const struct daemon *d, const char *id);
/* fn(d, ud, 0) once the jobs other nodes committed are read into the table
 * (a callback for a job this node does not work), -EIO when the store is
 * lost first, -ECANCELED at a stop (pgstore_cancel_waiters()). */
typedef void (*pg_synced_fn)(struct daemon *d, void *ud, int r);
int pgstore_when_synced(struct daemon *d, pg_synced_fn fn, void *ud);
void pgstore_cancel_waiters(struct daemon *d);

#endif
