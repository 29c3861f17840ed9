/* SPDX-License-Identifier: MIT */
/*
 * The daemon's rooms driven on a real sd_event loop, without main(): a spool
 * file is taken, submitted to a stub Meraki client (behind dispatch's
 * meraki_ops), its answer delivered, a callback sent over the daemon's own
 * unix socket, and the job log read back.  And the orphan case: a job that
 * ends while its blink request is in flight, dropped by compaction before
 * the request returns.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../src/daemon-internal.h"
#include "blinkhook/json.h"
#include "blinkhook/log.h"
#include "testlib.h"

#define SERIAL_A "Q2XX-AAAA-0001"
#define SERIAL_B "Q2XX-BBBB-0002"

/* ---- the stub Meraki client: calls are kept, answered by the test ---- */

struct meraki_client {
	size_t calls; /* requests started through this client */
};

struct stub_call {
	bool blink;
	bool orgs, devices; /* look-ups: GET /organizations, .../devices */
	char name[JOB_NAME_MAX + 1], mac[JOB_MAC_LEN + 1], org[JOB_ID_MAX + 1];
	char serial[SERIAL_MAX + 1];
	char secret[SECRET_MAX];
	meraki_done_fn done;
	void *ud;
	bool answered;
};

static struct stub {
	struct stub_call calls[32];
	size_t n;
} stub;

static int stub_new(const struct meraki_opts *opts, const struct meraki_loop_ops *ops, void *loop_ud,
		    struct meraki_client **ret)
{
	(void)opts;
	(void)ops;
	(void)loop_ud;
	*ret = calloc(1, sizeof(**ret));
	return *ret ? 0 : -ENOMEM;
}

static void stub_free(struct meraki_client *c)
{
	free(c);
}

static int stub_set_api_key(struct meraki_client *c, const char *key)
{
	(void)c;
	(void)key;
	return 0;
}

static int stub_reconfigure(struct meraki_client *c, const struct meraki_opts *opts)
{
	(void)c;
	(void)opts;
	return 0;
}

static int stub_blink(struct meraki_client *c, const struct meraki_blink_request *req, meraki_done_fn done, void *ud)
{
	struct stub_call *k = &stub.calls[stub.n++];

	c->calls++;
	assert_true(stub.n <= ELEMENTSOF(stub.calls));
	*k = (struct stub_call){.blink = true, .done = done, .ud = ud};
	(void)STR_COPY(k->serial, req->serial);
	assert_non_null(req->shared_secret);
	(void)STR_COPY(k->secret, req->shared_secret);
	return 0;
}

static int stub_get_blink(struct meraki_client *c, const char *serial, const char *leds_blink_id, meraki_done_fn done,
			  void *ud)
{
	struct stub_call *k = &stub.calls[stub.n++];

	c->calls++;
	(void)leds_blink_id;
	assert_true(stub.n <= ELEMENTSOF(stub.calls));
	*k = (struct stub_call){.done = done, .ud = ud};
	(void)STR_COPY(k->serial, serial);
	return 0;
}

static int stub_list_organizations(struct meraki_client *c, meraki_done_fn done, void *ud)
{
	struct stub_call *k = &stub.calls[stub.n++];

	c->calls++;
	assert_true(stub.n <= ELEMENTSOF(stub.calls));
	*k = (struct stub_call){.orgs = true, .done = done, .ud = ud};
	return 0;
}

static int stub_find_devices(struct meraki_client *c, const char *org_id, const char *name, const char *mac,
			     meraki_done_fn done, void *ud)
{
	struct stub_call *k = &stub.calls[stub.n++];

	c->calls++;
	assert_true(stub.n <= ELEMENTSOF(stub.calls));
	assert_true(!name != !mac);
	*k = (struct stub_call){.devices = true, .done = done, .ud = ud};
	(void)STR_COPY(k->org, org_id);
	(void)STR_COPY(k->name, name ? name : "");
	(void)STR_COPY(k->mac, mac ? mac : "");
	return 0;
}

static void stub_on_fd(struct meraki_client *c, int fd, uint32_t revents)
{
	(void)c;
	(void)fd;
	(void)revents;
}

static void stub_on_timer(struct meraki_client *c)
{
	(void)c;
}

static const struct meraki_ops stub_ops = {
	.new_client = stub_new,
	.free_client = stub_free,
	.set_api_key = stub_set_api_key,
	.reconfigure = stub_reconfigure,
	.blink = stub_blink,
	.get_blink = stub_get_blink,
	.list_organizations = stub_list_organizations,
	.find_devices = stub_find_devices,
	.on_fd = stub_on_fd,
	.on_timer = stub_on_timer,
};

/* The stub's answer to call i: 201 with a ledsBlinkId. */
static void stub_answer_ok(size_t i)
{
	struct meraki_result res = {
		.outcome = MERAKI_OK,
		.http_status = 201,
		.retry_after_usec = UINT64_MAX,
		.leds_blink_id = (char *)"42",
		.status = (char *)"pending",
	};

	assert_true(i < stub.n);
	assert_false(stub.calls[i].answered);
	stub.calls[i].answered = true;
	stub.calls[i].done(stub.calls[i].ud, &res);
}

/* The stub's answer to look-up i: 200 with these items (id, name, mac:
 * n triples), or another outcome. */
static bool stub_truncated; /* the next answer's: more pages than were read */

static void stub_answer_items(size_t i, enum meraki_outcome outcome, const char *const *triples, size_t n)
{
	struct meraki_item items[8];
	struct meraki_result res = {
		.outcome = outcome,
		.http_status = outcome == MERAKI_OK      ? 200
			       : outcome == MERAKI_RETRY ? 502
							 : 404,
		.retry_after_usec = UINT64_MAX,
		.error = outcome == MERAKI_OK ? NULL : (char *)"Bad gateway",
		.n_items = n,
		.truncated = stub_truncated,
	};

	assert_true(n <= ELEMENTSOF(items));
	for (size_t k = 0; k < n; k++)
		items[k] = (struct meraki_item){(char *)triples[3 * k], (char *)triples[3 * k + 1],
						(char *)triples[3 * k + 2], false};
	res.items = items;
	assert_true(i < stub.n);
	assert_false(stub.calls[i].answered);
	stub.calls[i].answered = true;
	stub.calls[i].done(stub.calls[i].ud, &res);
}

static size_t stub_find(const char *serial)
{
	for (size_t i = 0; i < stub.n; i++)
		if (stub.calls[i].blink && strcmp(stub.calls[i].serial, serial) == 0)
			return i;
	fail_msg("no blink request for %s", serial);
	return SIZE_MAX;
}

/* ---- the rooms ---- */

struct fixture {
	char *dir, *conf, *spool, *state, *sock;
	struct daemon *d;
};

static struct daemon *rooms_up(struct fixture *f)
{
	char err[CONFIG_ERROR_MAX];
	struct config *cfg = calloc(1, sizeof(*cfg));
	struct daemon *d = calloc(1, sizeof(*d));
	FILE *fp;

	assert_non_null(cfg);
	assert_non_null(d);
	fp = fopen(f->conf, "w");
	assert_non_null(fp);
	fprintf(fp,
		"[meraki]\nbase_url = http://127.0.0.1:9/api/v1\nmin_interval = 0\n"
		"[callback]\npublic_url = http://127.0.0.1:9\nlisten = unix:%s\n"
		"[queue]\ndir = %s\n[state]\ndir = %s\n",
		f->sock, f->spool, f->state);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(config_init(cfg), 0);
	assert_int_equal(config_load(cfg, f->conf, err), 0);
	d->cfg = cfg;
	d->api_key = secret_strdup("0123456789abcdef0123456789abcdef01234567");
	assert_non_null(d->api_key);
	d->dispatch.ops = &stub_ops;
	assert_int_equal(daemon_setup(d), 0);
	return d;
}

static void rooms_down(struct daemon *d)
{
	daemon_teardown(d);
	free(d->cfg);
	free(d);
}

/* Steps the loop until cond(d) holds; fails after about five seconds. */
static void run_until(struct daemon *d, bool (*cond)(struct daemon *d, const void *arg), const void *arg)
{
	for (int i = 0; i < 500 && !cond(d, arg); i++)
		assert_true(sd_event_run(d->event, 10 * USEC_PER_MSEC) >= 0);
	assert_true(cond(d, arg));
}

static bool calls_made(struct daemon *d, const void *arg)
{
	(void)d;
	return stub.n >= *(const size_t *)arg;
}

static bool all_durable(struct daemon *d, const void *arg)
{
	(void)arg;
	return !joblog_has_pending(d->ledger.log) && !joblog_syncing(d->ledger.log) && !d->ledger.durable;
}

/* A compaction has run to its end: started (the log grew past the
 * threshold), its child's snapshot taken over, nothing left to write. */
static bool compacted(struct daemon *d, const void *arg)
{
	return all_durable(d, arg) && !joblog_compacting(d->ledger.log) && joblog_records(d->ledger.log) < 10;
}

static size_t spool_files(const struct fixture *f)
{
	_cleanup_free_ char *p = path_join(f->spool, "new");
	DIR *dir = opendir(p);
	struct dirent *de;
	size_t n = 0;

	assert_non_null(dir);
	while ((de = readdir(dir)))
		n += de->d_name[0] != '.';
	closedir(dir);
	return n;
}

static void enqueue(const struct fixture *f, const char *serial, char id[static JOB_ID_MAX + 1])
{
	struct queue_request req = {.duration = 10};

	(void)STR_COPY(req.serial, serial);
	assert_int_equal(queue_enqueue(f->spool, &req), 0);
	memcpy(id, req.id, JOB_ID_MAX + 1);
}

/* POSTs a callback for job id with Meraki's shape to the daemon's socket,
 * steps the loop until the answer, and returns its status code. */
static unsigned post_callback(struct fixture *f, const char *id, const char *secret, const char *status)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct strbuf body = STRBUF_INIT, req = STRBUF_INIT;
	char buf[2048] = "";
	size_t got = 0;
	unsigned code = 0;
	int fd;

	assert_int_equal(
		strbuf_addf(&body,
			    "{\"callbackId\":\"1\",\"sharedSecret\":\"%s\",\"message\":{\"url\":"
			    "\"/devices/%s/liveTools/leds/blink/42\",\"ledsBlinkId\":\"42\",\"status\":\"%s\"}}",
			    secret, SERIAL_A, status),
		0);
	assert_int_equal(
		strbuf_addf(&req,
			    "POST " CALLBACK_PATH_PREFIX "%s HTTP/1.1\r\nHost: localhost\r\n"
			    "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
			    id, body.len, body.buf),
		0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(send(fd, req.buf, req.len, MSG_NOSIGNAL), (ssize_t)req.len);
	for (int i = 0; i < 500 && !strstr(buf, "\r\n\r\n"); i++) {
		ssize_t n;

		assert_true(sd_event_run(f->d->event, 10 * USEC_PER_MSEC) >= 0);
		n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (n > 0)
			got += (size_t)n;
		buf[got] = '\0';
	}
	close(fd);
	assert_int_equal(sscanf(buf, "HTTP/1.1 %u", &code), 1);
	strbuf_release(&body);
	strbuf_release(&req);
	return code;
}

static struct job_table replayed;

static int replay_one(const struct job_event *ev, void *ud)
{
	(void)ud;
	return job_table_apply(&replayed, ev, NULL) < 0 ? -EIO : 0;
}

/* The job's state as the log on disk says. */
static enum job_state logged_state(const struct fixture *f, const char *id)
{
	struct joblog *log = NULL;
	struct joblog_info info;
	const struct job *j;
	enum job_state s;

	assert_int_equal(job_table_init(&replayed), 0);
	assert_int_equal(joblog_open(f->state, &log), 0);
	assert_int_equal(joblog_replay(log, replay_one, NULL, &info), 0);
	j = job_table_find(&replayed, id);
	assert_non_null(j);
	s = j->state;
	joblog_free(log);
	job_table_release(&replayed);
	return s;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = new_dir();
	f->conf = path_join(f->dir, "bh.conf");
	f->spool = path_join(f->dir, "spool");
	f->state = path_join(f->dir, "state");
	f->sock = path_join(f->dir, "sock");
	memset(&stub, 0, sizeof(stub));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->dir);
	free(f->conf);
	free(f->spool);
	free(f->state);
	free(f->sock);
	free(f);
	return 0;
}

/* Takes a spool file for serial into a daemon brought up for it, and steps
 * the loop until its blink request is made: the job, with its id in id. */
static struct job *up_until_submitted(struct fixture *f, const char *serial, char id[static JOB_ID_MAX + 1])
{
	const size_t one = 1;
	struct job *j;

	enqueue(f, serial, id);
	f->d = rooms_up(f);
	run_until(f->d, calls_made, &one);
	j = job_table_find(&f->d->ledger.jobs, id);
	assert_non_null(j);
	return j;
}

/* A spool file becomes a job, goes to Meraki, is answered, and finishes by
 * a callback; the spool file goes once its record is durable. */
static void test_pipeline(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX + 1];
	struct job *j;

	j = up_until_submitted(f, SERIAL_A, id);
	assert_true(stub.calls[0].blink);
	assert_string_equal(stub.calls[0].serial, SERIAL_A);
	assert_int_equal(j->state, JOB_QUEUED);
	assert_true(dispatch_job_busy(j));
	run_until(f->d, all_durable, NULL);
	assert_int_equal(spool_files(f), 0);

	stub_answer_ok(0);
	assert_int_equal(j->state, JOB_SUBMITTED);
	assert_false(dispatch_job_busy(j));
	assert_int_equal(f->d->dispatch.in_flight, 0);
	assert_int_equal(post_callback(f, id, "wrong", "complete"), 401);
	assert_int_equal(post_callback(f, id, stub.calls[0].secret, "complete"), 200);
	assert_int_equal(j->state, JOB_COMPLETE);
	assert_null(j->userdata);
	rooms_down(f->d);
	assert_int_equal(logged_state(f, id), JOB_COMPLETE);
}

static void enqueue_named(const struct fixture *f, const char *id, const char *name, const char *mac)
{
	struct queue_request req = {.duration = 10};

	(void)STR_COPY(req.id, id);
	if (name)
		(void)STR_COPY(req.name, name);
	if (mac)
		(void)STR_COPY(req.mac, mac);
	assert_int_equal(queue_enqueue(f->spool, &req), 0);
}

static void run_a_while(struct daemon *d)
{
	for (int i = 0; i < 20; i++)
		assert_true(sd_event_run(d->event, 5 * USEC_PER_MSEC) >= 0);
}

/*
 * Jobs named by name or MAC: one GET /organizations for all of them (the
 * others wait for its answer), then a look-up each; an exact name among
 * partial matches resolves, several without one fail naming them, and a
 * look-up that fails transiently is charged an attempt and asked again.
 * Only resolved jobs are blinked, with the serial found.
 */
static void test_resolve(void **state)
{
	struct fixture *f = *state;
	const size_t one = 1, five = 5, six = 6, seven = 7;
	static const char *const org[] = {"549236", "Org", NULL};
	static const char *const sw[] = {"Q2AA-0001-0001", "edge-sw-1",  "00:18:0a:00:00:01",
					 "Q2AA-0001-0002", "edge-sw-1a", "00:18:0a:00:00:02"};
	static const char *const racks[] = {"Q2AA-0003-0001", "rack-1", NULL, "Q2AA-0003-0002", "rack-2", NULL};
	static const char *const by_mac[] = {"Q2AA-0004-0001", "ap", "00:18:0A:00:00:04"};
	size_t i_sw = SIZE_MAX, i_rack = SIZE_MAX, i_mac = SIZE_MAX, i_trunc = SIZE_MAX;
	struct job *j;

	enqueue_named(f, "n-sw", "edge-sw-1", NULL);
	enqueue_named(f, "n-rack", "rack", NULL);
	enqueue_named(f, "m-ap", NULL, "00:18:0a:00:00:04");
	enqueue_named(f, "n-trunc", "edge-sw-1a", NULL);
	f->d = rooms_up(f);
	run_until(f->d, calls_made, &one);
	run_a_while(f->d);
	/* One GET /organizations; the other jobs wait for it. */
	assert_int_equal(stub.n, 1);
	assert_true(stub.calls[0].orgs);
	assert_string_equal(job_table_find(&f->d->ledger.jobs, "n-sw")->serial, "");
	stub_answer_items(0, MERAKI_OK, org, 1);
	run_until(f->d, calls_made, &five);
	for (size_t i = 1; i < 5; i++) {
		assert_true(stub.calls[i].devices);
		assert_string_equal(stub.calls[i].org, "549236");
		if (strcmp(stub.calls[i].name, "edge-sw-1") == 0)
			i_sw = i;
		else if (strcmp(stub.calls[i].name, "rack") == 0)
			i_rack = i;
		else if (strcmp(stub.calls[i].mac, "00:18:0a:00:00:04") == 0)
			i_mac = i;
		else if (strcmp(stub.calls[i].name, "edge-sw-1a") == 0)
			i_trunc = i;
	}
	assert_true(i_sw != SIZE_MAX && i_rack != SIZE_MAX && i_mac != SIZE_MAX && i_trunc != SIZE_MAX);

	/* An exact match, but pages were left unread: not resolved. */
	stub_truncated = true;
	stub_answer_items(i_trunc, MERAKI_OK, sw, 2);
	stub_truncated = false;
	j = job_table_find(&f->d->ledger.jobs, "n-trunc");
	assert_int_equal(j->state, JOB_FAILED);
	assert_string_equal(j->error, "name 'edge-sw-1a' matches more than 2 devices: edge-sw-1 (Q2AA-0001-0001), "
				      "edge-sw-1a (Q2AA-0001-0002)");

	/* The exact name among the API's partial matches. */
	stub_answer_items(i_sw, MERAKI_OK, sw, 2);
	j = job_table_find(&f->d->ledger.jobs, "n-sw");
	assert_string_equal(j->serial, "Q2AA-0001-0001");
	run_until(f->d, calls_made, &six);
	assert_true(stub.calls[5].blink);
	assert_string_equal(stub.calls[5].serial, "Q2AA-0001-0001");

	/* Several, none exact: failed, naming them; never blinked. */
	stub_answer_items(i_rack, MERAKI_OK, racks, 2);
	j = job_table_find(&f->d->ledger.jobs, "n-rack");
	assert_int_equal(j->state, JOB_FAILED);
	assert_string_equal(j->error,
			    "name 'rack' matches 2 devices: rack-1 (Q2AA-0003-0001), rack-2 (Q2AA-0003-0002)");
	assert_string_equal(j->serial, "");

	/* A 502: an attempt, and the look-up again after the back-off; then
	 * the one device, its MAC in another case, resolves. */
	stub_answer_items(i_mac, MERAKI_RETRY, NULL, 0);
	j = job_table_find(&f->d->ledger.jobs, "m-ap");
	assert_int_equal(j->state, JOB_QUEUED);
	assert_int_equal(j->attempts, 1);
	assert_string_equal(j->error, "looking up the device: Bad gateway");
	run_until(f->d, calls_made, &seven);
	assert_true(stub.calls[6].devices);
	assert_string_equal(stub.calls[6].mac, "00:18:0a:00:00:04");
	stub_answer_items(6, MERAKI_OK, by_mac, 1);
	assert_string_equal(j->serial, "Q2AA-0004-0001");
	for (size_t i = 0; i < stub.n; i++)
		assert_true(!stub.calls[i].blink || (strcmp(stub.calls[i].serial, "Q2AA-0003-0001") != 0 &&
						     strcmp(stub.calls[i].serial, "Q2AA-0001-0002") != 0));
	run_until(f->d, all_durable, NULL);
	rooms_down(f->d);

	/* The log says what was resolved: a restart asks nothing again. */
	stub.n = 0;
	f->d = rooms_up(f);
	run_a_while(f->d);
	for (size_t i = 0; i < stub.n; i++)
		assert_false(stub.calls[i].orgs || stub.calls[i].devices);
	assert_string_equal(job_table_find(&f->d->ledger.jobs, "m-ap")->serial, "Q2AA-0004-0001");
	rooms_down(f->d);
	assert_int_equal(logged_state(f, "n-rack"), JOB_FAILED);
}

/* A reload (here a new API key) while GET /organizations is in flight: its
 * answer, from before, decides nothing; the job asks again. */
static void test_resolve_reload(void **state)
{
	struct fixture *f = *state;
	const size_t one = 1, two = 2, three = 3;
	static const char *const orgs[] = {"1", "A", NULL, "2", "B", NULL};
	static const char *const org[] = {"2", "B", NULL};
	struct job *j;

	enqueue_named(f, "n-1", "edge-sw-1", NULL);
	f->d = rooms_up(f);
	run_until(f->d, calls_made, &one);
	assert_true(stub.calls[0].orgs);
	dispatch_set_api_key(f->d, "another-key-0123456789", "…6789", "test");
	stub_answer_items(0, MERAKI_OK, orgs, 2);
	j = job_table_find(&f->d->ledger.jobs, "n-1");
	assert_int_equal(j->state, JOB_QUEUED);
	assert_null(f->d->dispatch.org.error);
	run_until(f->d, calls_made, &two);
	assert_true(stub.calls[1].orgs);
	stub_answer_items(1, MERAKI_OK, org, 1);
	run_until(f->d, calls_made, &three);
	assert_true(stub.calls[2].devices);
	assert_string_equal(stub.calls[2].org, "2");
	rooms_down(f->d);
}

/*
 * A final callback overtakes the blink request's answer: the job ends while
 * its request is in flight (its control an orphan), compaction drops the
 * job (past retention), and only then the answer comes.  The done function
 * must not touch the job (it once read it before it learned it was gone).
 */
static void test_orphan_compaction(void **state)
{
	struct fixture *f = *state;
	char a[JOB_ID_MAX + 1], b[JOB_ID_MAX + 1];
	const size_t two = 2;
	struct job *jb;
	size_t ia;

	enqueue(f, SERIAL_A, a);
	enqueue(f, SERIAL_B, b);
	f->d = rooms_up(f);
	f->d->cfg->retention_usec = 0; /* every final job is past it */
	run_until(f->d, calls_made, &two);
	ia = stub_find(SERIAL_A);
	assert_int_equal(f->d->dispatch.in_flight, 2);

	assert_int_equal(post_callback(f, a, stub.calls[ia].secret, "complete"), 200);
	assert_int_equal(job_table_find(&f->d->ledger.jobs, a)->state, JOB_COMPLETE);
	assert_false(TAILQ_EMPTY(&f->d->dispatch.orphans));
	assert_int_equal(f->d->dispatch.in_flight, 2);

	/* Grow the log past the compaction threshold with B's attempts. */
	jb = job_table_find(&f->d->ledger.jobs, b);
	assert_non_null(jb);
	for (unsigned i = 1; i <= 1100; i++) {
		struct job_event ev = {.ts = now_realtime_usec(), .id = b, .kind = JOB_EV_ATTEMPT, .attempts = i};
		assert_int_equal(ledger_record(f->d, &ev, NULL), 0);
	}
	/* The snapshot is written by a child while the loop runs on. */
	run_until(f->d, compacted, NULL);
	assert_null(job_table_find(&f->d->ledger.jobs, a)); /* dropped */

	/* The answer to A's request arrives now: the orphan goes, nothing else. */
	stub_answer_ok(ia);
	assert_true(TAILQ_EMPTY(&f->d->dispatch.orphans));
	assert_int_equal(f->d->dispatch.in_flight, 1);
	assert_null(job_table_find(&f->d->ledger.jobs, a));
	assert_int_equal(jb->state, JOB_QUEUED);
	run_until(f->d, all_durable, NULL);
	rooms_down(f->d);
	assert_int_equal(logged_state(f, b), JOB_QUEUED);
}

/* Appends n attempts of job id and runs until they are durable. */
static void record_attempts(struct fixture *f, const char *id, unsigned n)
{
	for (unsigned i = 1; i <= n; i++) {
		struct job_event ev = {.ts = now_realtime_usec(), .id = id, .kind = JOB_EV_ATTEMPT, .attempts = i};
		assert_int_equal(ledger_record(f->d, &ev, NULL), 0);
	}
	run_until(f->d, all_durable, NULL);
}

/* A compaction that fails is not tried again at the next commit (each try
 * forks and writes a whole snapshot) but after a back-off, which a success
 * resets.  It fails here because its new file cannot be opened. */
static void test_compaction_backoff(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *blocker = NULL;
	char a[JOB_ID_MAX + 1];

	assert_true(asprintf(&blocker, "%s/%s", f->state, JOBLOG_COMPACT_FILE) > 0);
	(void)up_until_submitted(f, SERIAL_A, a);
	assert_int_equal(mkdir(blocker, 0700), 0);
	record_attempts(f, a, 1100); /* past the threshold: a try, which fails */
	assert_false(joblog_compacting(f->d->ledger.log));
	assert_true(joblog_records(f->d->ledger.log) > 1100);
	assert_int_equal(f->d->ledger.compact_backoff, 60 * USEC_PER_SEC);

	/* It could succeed now, but the back-off holds across commits. */
	assert_int_equal(rmdir(blocker), 0);
	for (int i = 0; i < 3; i++) {
		record_attempts(f, a, 5);
		assert_false(joblog_compacting(f->d->ledger.log));
		assert_true(joblog_records(f->d->ledger.log) > 1100);
	}
	/* Once it is over, the next commit tries, and a success resets it. */
	f->d->ledger.compact_not_before = 0;
	record_attempts(f, a, 1);
	run_until(f->d, compacted, NULL);
	assert_int_equal(f->d->ledger.compact_backoff, 0);
	rooms_down(f->d);
}

static bool compacting(struct daemon *d, const void *arg)
{
	(void)arg;
	return joblog_compacting(d->ledger.log);
}

/* A compaction's child that ends while a sync is in flight is finished
 * when the sync ends, failed or not: a failure (a full disk) must not leave
 * the child a zombie and its new file taking space while commits fail. */
static void test_compaction_ends_at_failed_sync(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *log = NULL;
	char a[JOB_ID_MAX + 1];
	struct rlimit saved, rl;
	siginfo_t si = {0};
	struct stat st;
	pid_t pid;

	assert_true(asprintf(&log, "%s/%s", f->state, JOBLOG_FILE) > 0);
	(void)up_until_submitted(f, SERIAL_A, a);
	for (unsigned i = 1; i <= 1100; i++) {
		struct job_event ev = {.ts = now_realtime_usec(), .id = a, .kind = JOB_EV_ATTEMPT, .attempts = i};
		assert_int_equal(ledger_record(f->d, &ev, NULL), 0);
	}
	run_until(f->d, compacting, NULL);
	pid = joblog_compact_pid(f->d->ledger.log);
	assert_true(pid > 0);
	/* What on_compact_io does when the child's end comes during a sync:
	 * it stops watching and leaves the finish to the sync's end. */
	assert_true(sd_event_source_set_enabled(f->d->ledger.compact_io, SD_EVENT_OFF) >= 0);
	assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);

	/* The disk is full: the next commit fails. */
	assert_int_equal(stat(log, &st), 0);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
	rl = saved;
	rl.rlim_cur = (rlim_t)st.st_size;
	assert_true(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
	{
		struct job_event ev = {.ts = now_realtime_usec(), .id = a, .kind = JOB_EV_ATTEMPT, .attempts = 2000};
		assert_int_equal(ledger_record(f->d, &ev, NULL), 0);
	}
	assert_true(ledger_commit(f->d, true) < 0);
	assert_true(f->d->ledger.log_failing);
	/* The compaction is over and its child reaped. */
	assert_false(joblog_compacting(f->d->ledger.log));
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
	(void)signal(SIGXFSZ, SIG_DFL);
	run_until(f->d, all_durable, NULL);
	rooms_down(f->d);
}

/* Steps the loop for about ms milliseconds. */
static void run_for(struct daemon *d, unsigned ms)
{
	uint64_t end = now_monotonic_usec() + ms * USEC_PER_MSEC;

	while (now_monotonic_usec() < end)
		assert_true(sd_event_run(d->event, 10 * USEC_PER_MSEC) >= 0);
}

/* The stub's answer to call i: a transient failure (the job is retried). */
static void stub_answer_retry(size_t i)
{
	struct meraki_result res = {
		.outcome = MERAKI_RETRY,
		.http_status = 503,
		.retry_after_usec = UINT64_MAX,
		.error = (char *)"unavailable",
	};

	assert_true(i < stub.n);
	assert_false(stub.calls[i].answered);
	stub.calls[i].answered = true;
	stub.calls[i].done(stub.calls[i].ud, &res);
}

/*
 * A progress callback overtakes the blink request's answer: the job is
 * submitted when the 201 comes, whose record then changes nothing.  The job
 * must be watched (out of the run queue), not submitted again and again.
 */
static void test_callback_before_answer(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX + 1];
	struct job *j;

	j = up_until_submitted(f, SERIAL_A, id);
	assert_int_equal(post_callback(f, id, stub.calls[0].secret, "running"), 200);
	assert_int_equal(j->state, JOB_SUBMITTED);
	assert_true(dispatch_job_busy(j));
	run_until(f->d, all_durable, NULL);

	stub_answer_ok(0);
	assert_int_equal(stub.n, 1);
	assert_int_equal(j->state, JOB_SUBMITTED);
	assert_string_equal(j->leds_blink_id, "42");
	assert_false(dispatch_job_busy(j));
	assert_true(TAILQ_EMPTY(&f->d->dispatch.runq)); /* watching, not waiting */
	assert_int_equal(f->d->dispatch.in_flight, 0);
	run_for(f->d, 300);
	assert_int_equal(stub.n, 1);
	assert_true(TAILQ_EMPTY(&f->d->dispatch.runq));
	rooms_down(f->d);
	assert_int_equal(logged_state(f, id), JOB_SUBMITTED);
}

/* The same for a job waiting for its retry: a callback says Meraki has it
 * (the first request got there after all), so it is not submitted again. */
static void test_callback_while_waiting(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX + 1];
	struct job *j;

	j = up_until_submitted(f, SERIAL_A, id);
	/* Read when the answer says retry, which comes next. */
	f->d->cfg->retry_initial_usec = 100 * USEC_PER_MSEC;
	f->d->cfg->retry_max_usec = 100 * USEC_PER_MSEC;
	stub_answer_retry(0);
	assert_int_equal(j->state, JOB_QUEUED);
	assert_false(TAILQ_EMPTY(&f->d->dispatch.runq));
	assert_int_equal(post_callback(f, id, stub.calls[0].secret, "running"), 200);
	assert_int_equal(j->state, JOB_SUBMITTED);
	assert_true(TAILQ_EMPTY(&f->d->dispatch.runq));
	run_for(f->d, 500); /* past the retry's backoff */
	assert_int_equal(stub.n, 1);
	assert_false(dispatch_job_busy(j));
	rooms_down(f->d);
	assert_int_equal(logged_state(f, id), JOB_SUBMITTED);
}

static int replay_nothing(const struct job_event *ev, void *ud)
{
	(void)ev;
	(void)ud;
	return 0;
}

/*
 * The log a compaction leaves when its child is killed after the live table
 * dropped a final job and intake took a new job with the same id: queued,
 * final, queued.  The daemon starts, with the new job.
 */
static void test_start_after_reused_id(void **state)
{
	struct fixture *f = *state;
	struct joblog *log = NULL;
	struct joblog_info info;
	char nonce[JOB_NONCE_LEN + 1];
	const size_t one = 1;
	uint64_t now = now_realtime_usec(), seq;
	struct job *j;

	assert_int_equal(mkdir(f->state, 0700), 0);
	assert_int_equal(joblog_open(f->state, &log), 0);
	assert_int_equal(joblog_replay(log, replay_nothing, NULL, &info), 0);
	assert_int_equal(job_nonce_new(nonce), 0);
	const struct job_event evs[] = {
		{.ts = now - 3 * USEC_PER_SEC,
		 .id = "reused",
		 .kind = JOB_EV_QUEUED,
		 .serial = SERIAL_A,
		 .duration = 10,
		 .nonce = nonce,
		 .source = "queue"},
		{.ts = now - 2 * USEC_PER_SEC,
		 .id = "reused",
		 .kind = JOB_EV_FINAL,
		 .state = JOB_FAILED,
		 .error = "canceled",
		 .source = "cancel"},
		{.ts = now - USEC_PER_SEC,
		 .id = "reused",
		 .kind = JOB_EV_QUEUED,
		 .serial = SERIAL_B,
		 .duration = 10,
		 .nonce = nonce,
		 .source = "queue"},
	};
	for (size_t i = 0; i < ELEMENTSOF(evs); i++)
		assert_int_equal(joblog_append(log, &evs[i], &seq), 0);
	assert_int_equal(joblog_commit(log), 0);
	joblog_free(log);

	f->d = rooms_up(f);
	j = job_table_find(&f->d->ledger.jobs, "reused");
	assert_non_null(j);
	assert_int_equal(j->state, JOB_QUEUED);
	assert_string_equal(j->serial, SERIAL_B);
	assert_int_equal(f->d->ledger.jobs.n_jobs, 1);
	run_until(f->d, calls_made, &one);
	assert_string_equal(stub.calls[0].serial, SERIAL_B);
	rooms_down(f->d);
}

static void note_changed(const char *section, const char *name, void *ud)
{
	struct strbuf *sb = ud;

	assert_int_equal(strbuf_addf(sb, "[%s] %s;", section, name), 0);
}

static void load(struct config *c, const char *path, const char *text)
{
	char err[CONFIG_ERROR_MAX];
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(config_init(c), 0);
	assert_int_equal(config_load(c, path, err), 0);
}

/* A reload keeps the running value of each key the table marks as needing
 * a restart, says which changed, and takes the rest. */
static void test_reload_restart_keys(void **state)
{
	struct fixture *f = *state;
	struct config running, loaded;
	struct strbuf changed = STRBUF_INIT;

	load(&running, f->conf,
	     "[meraki]\nbase_url = http://127.0.0.1:9/api/v1\n[callback]\npublic_url = http://127.0.0.1:9\n"
	     "listen = 127.0.0.1:8080\n[queue]\ndir = /q1\n[state]\ndir = /s1\n");
	load(&loaded, f->conf,
	     "[meraki]\nbase_url = http://127.0.0.1:9/api/v1\nmin_interval = 3s\n[callback]\n"
	     "public_url = http://127.0.0.1:9\nlisten = unix:/run/x.sock\n[queue]\ndir = /q2\n[state]\ndir = /s1\n");
	config_keep_restart_keys(&running, &loaded, note_changed, &changed);
	assert_string_equal(changed.buf, "[callback] listen;[queue] dir;");
	assert_false(loaded.listen.is_unix);
	assert_string_equal(loaded.listen.host, "127.0.0.1");
	assert_int_equal(loaded.listen.port, 8080);
	assert_string_equal(loaded.queue_dir, "/q1");
	assert_string_equal(loaded.state_dir, "/s1");
	assert_int_equal(loaded.min_interval_usec, 3 * USEC_PER_SEC); /* the rest is new */
	assert_true(running.listen.is_unix);                          /* released with running */
	assert_string_equal(running.queue_dir, "/q2");
	strbuf_release(&changed);
	config_release(&running);
	config_release(&loaded);
}

static int group_setup(void **state)
{
	(void)state;
	log_set_max_level(getenv("TEST_DEBUG") ? LOG_DEBUG : LOG_ERR);
	return tmpdir_setup("test_rooms");
}

static int group_teardown(void **state)
{
	(void)state;
	return tmpdir_teardown();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pipeline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolve_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_orphan_compaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction_backoff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction_ends_at_failed_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_while_waiting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_before_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_after_reused_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_restart_keys, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
