/* SPDX-License-Identifier: MIT */
/*
 * fuzz_joblog — the job log's reader, on a line and on a whole file.
 *
 * Each line of the input goes to both halves of job_event_parse(): the fast
 * reader must decline it or give the verdict of the json-c reader, and then
 * the same event, field for field; job_event_parse() must give that verdict
 * too.  An accepted record must format (job_event_format) into one line that
 * parses back to the same event, without json-c.  Then the input becomes jobs.log in a scratch directory and goes
 * through joblog_read() (blinkhookctl's lenient reader) and joblog_open() +
 * joblog_replay() (the daemon's start), whose callback applies each record
 * to a job table as the daemon does; after a successful replay the log is
 * compacted (joblog_compact) and replayed once more, as the next start
 * would.
 *
 * Checked: replay either succeeds, having cut off at most a torn tail, or
 * fails and leaves the file as it was; after a success both readers agree on
 * the number of records, the index by leds_blink_id finds every job that has
 * one, and the compacted log replays, with nothing torn, into the same jobs
 * (every field; times to the second); joblog_free() releases the lock (the
 * next open would get -EBUSY otherwise).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "blinkhook/job.h"
#include "blinkhook/joblog.h"
#include "blinkhook/util.h"
#include "fuzz.h"

static void check_identical_events(const struct job_event *a, const struct job_event *b)
{
	FUZZ_CHECK(a->ts == b->ts, "ts %llu != %llu", (unsigned long long)a->ts, (unsigned long long)b->ts);
	FUZZ_CHECK(a->kind == b->kind, "kind %d != %d", (int)a->kind, (int)b->kind);
	FUZZ_CHECK(a->state == b->state, "state %d != %d", (int)a->state, (int)b->state);
	FUZZ_CHECK(a->created == b->created, "created %llu != %llu", (unsigned long long)a->created,
		   (unsigned long long)b->created);
	FUZZ_CHECK(a->duration == b->duration, "duration %u != %u", a->duration, b->duration);
	FUZZ_CHECK(a->attempts == b->attempts, "attempts %u != %u", a->attempts, b->attempts);
	fuzz_check_same_event(a, b);
}

static void check_line(const char *line, size_t len)
{
	struct job_event_store store = JOB_EVENT_STORE_INIT, flat_store = JOB_EVENT_STORE_INIT,
			       json_store = JOB_EVENT_STORE_INIT;
	struct job_event ev, flat, json;
	int r, r_flat, r_json;

	r_json = job_event_parse_json(line, len, &json, &json_store);
	FUZZ_CHECK(r_json == 0 || r_json == -EBADMSG || r_json == -EPROTONOSUPPORT, "job_event_parse_json returned %d",
		   r_json);
	r_flat = job_event_parse_flat(line, len, &flat, &flat_store);
	if (r_flat != -EOPNOTSUPP) {
		FUZZ_CHECK(r_flat == r_json, "job_event_parse_flat returned %d, job_event_parse_json %d", r_flat,
			   r_json);
		FUZZ_CHECK(flat_store.root == NULL, "the fast reader made a json-c tree");
		if (r_flat == 0)
			check_identical_events(&flat, &json);
	}
	r = job_event_parse(line, len, &ev, &store);
	FUZZ_CHECK(r == r_json, "job_event_parse returned %d, job_event_parse_json %d", r, r_json);
	if (r == 0) {
		check_identical_events(&ev, &json);
		FUZZ_CHECK(ev.id && job_id_is_valid(ev.id), "a record without a valid id");
		FUZZ_CHECK(ev.kind < _JOB_EV_MAX, "kind %d", (int)ev.kind);
		FUZZ_CHECK(ev.kind != JOB_EV_FINAL || job_state_is_final(ev.state), "a final event in state %d",
			   (int)ev.state);
		fuzz_check_log_line(&ev);
	}
	job_event_store_release(&store);
	job_event_store_release(&flat_store);
	job_event_store_release(&json_store);
}

/* The daemon's replay callback: a record that changes nothing is a repeat. */
static int apply_cb(const struct job_event *ev, void *ud)
{
	int r = job_table_apply(ud, ev, NULL);

	return r < 0 ? r : 0;
}

static int count_cb(const struct job_event *ev, void *ud)
{
	(void)ev;
	(*(uint64_t *)ud)++;
	return 0;
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	FUZZ_CHECK(stat(path, &st) == 0, "stat(\"%s\"): %s", path, strerror(errno));
	return (uint64_t)st.st_size;
}

/* The index by leds_blink_id finds every job that has one: the job itself,
 * or, when two jobs share the id, one of them. */
static void check_blink_index(const struct job_table *t)
{
	for (const struct job *j = t->first; j; j = j->next) {
		const struct job *found, *other;
		bool shared = false;

		if (!j->leds_blink_id)
			continue;
		found = job_table_find_by_blink_id(t, j->leds_blink_id);
		FUZZ_CHECK(found && found->leds_blink_id && strcmp(found->leds_blink_id, j->leds_blink_id) == 0,
			   "ledsBlinkId \"%s\" of job %s is not in the index", j->leds_blink_id, j->id);
		for (other = t->first; other && !shared; other = other->next)
			shared = other != j && other->leds_blink_id &&
				 strcmp(other->leds_blink_id, j->leds_blink_id) == 0;
		FUZZ_CHECK(found == j || shared, "ledsBlinkId \"%s\" finds job %s, not %s", j->leds_blink_id, found->id,
			   j->id);
	}
}

/* Opens and replays the log into t; the caller frees *ret_log. */
static int replay(const char *dir, struct job_table *t, struct joblog_info *info, struct joblog **ret_log)
{
	int r;

	r = joblog_open(dir, ret_log);
	FUZZ_CHECK(r == 0, "joblog_open: %d (a lock left held?)", r);
	FUZZ_CHECK(job_table_init(t) == 0, "out of memory");
	return joblog_replay(*ret_log, apply_cb, t, info);
}

/* What a compacted log gives back must be the jobs it was made from. */
static void check_same_jobs(const struct job_table *a, const struct job_table *b)
{
	const struct job *x = a->first, *y = b->first;

	FUZZ_CHECK(a->n_jobs == b->n_jobs, "%zu jobs, then %zu", a->n_jobs, b->n_jobs);
	for (unsigned s = 0; s < _JOB_STATE_MAX; s++)
		FUZZ_CHECK(a->n_by_state[s] == b->n_by_state[s], "state %u: %zu jobs, then %zu", s, a->n_by_state[s],
			   b->n_by_state[s]);
	for (; x && y; x = x->next, y = y->next) {
		FUZZ_CHECK(strcmp(x->id, y->id) == 0, "job %s, then %s", x->id, y->id);
		FUZZ_CHECK(strcmp(x->serial, y->serial) == 0, "job %s: serial %s, then %s", x->id, x->serial,
			   y->serial);
		FUZZ_CHECK(x->duration == y->duration, "job %s: duration %u, then %u", x->id, x->duration, y->duration);
		FUZZ_CHECK(x->state == y->state, "job %s: state %d, then %d", x->id, (int)x->state, (int)y->state);
		FUZZ_CHECK(fuzz_str_equal(x->leds_blink_id, y->leds_blink_id),
			   "job %s: leds_blink_id \"%s\", then \"%s\"", x->id, fuzz_str(x->leds_blink_id),
			   fuzz_str(y->leds_blink_id));
		FUZZ_CHECK(fuzz_str_equal(x->meraki_status, y->meraki_status),
			   "job %s: meraki_status \"%s\", then \"%s\"", x->id, fuzz_str(x->meraki_status),
			   fuzz_str(y->meraki_status));
		FUZZ_CHECK(fuzz_str_equal(x->error, y->error), "job %s: error \"%s\", then \"%s\"", x->id,
			   fuzz_str(x->error), fuzz_str(y->error));
		FUZZ_CHECK(x->attempts == y->attempts, "job %s: attempts %u, then %u", x->id, x->attempts, y->attempts);
		FUZZ_CHECK(x->created_at / USEC_PER_SEC == y->created_at / USEC_PER_SEC,
			   "job %s: created_at %llu, then %llu", x->id, (unsigned long long)x->created_at,
			   (unsigned long long)y->created_at);
		FUZZ_CHECK(x->updated_at / USEC_PER_SEC == y->updated_at / USEC_PER_SEC,
			   "job %s: updated_at %llu, then %llu", x->id, (unsigned long long)x->updated_at,
			   (unsigned long long)y->updated_at);
	}
	FUZZ_CHECK(!x && !y, "the job lists differ in length");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[512];
	const char *dir = fuzz_dir();
	const char *p = (const char *)data, *end = p + size;
	struct joblog_info read_info, info, info2;
	struct job_table t, t2;
	struct joblog *l = NULL;
	uint64_t read_records = 0, read_end = 0;
	int r;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *lend = nl ? nl : end;

		check_line(p, (size_t)(lend - p));
		p = lend + 1;
	}

	if (!path[0])
		snprintf(path, sizeof(path), "%s/%s", dir, JOBLOG_FILE);
	fuzz_write_file(path, data, size);

	r = joblog_read(dir, 0, count_cb, &read_records, &read_info, &read_end);
	FUZZ_CHECK(r == 0, "joblog_read: %d", r);
	FUZZ_CHECK(read_records == read_info.records, "joblog_read counted %llu, the callback %llu",
		   (unsigned long long)read_info.records, (unsigned long long)read_records);
	FUZZ_CHECK(read_end <= size && (read_end == 0 || data[read_end - 1] == '\n'),
		   "joblog_read ended at %llu, not after a line", (unsigned long long)read_end);

	r = replay(dir, &t, &info, &l);
	if (r < 0) {
		joblog_free(l);
		FUZZ_CHECK(r == -EBADMSG || r == -EPROTONOSUPPORT || r == -EINVAL || r == -EEXIST || r == -ENOENT,
			   "joblog_replay returned %d", r);
		FUZZ_CHECK(info.bad_line > 0, "a failed replay names no line");
		FUZZ_CHECK(file_size(path) == size, "a failed replay changed the file");
		job_table_release(&t);
		return 0;
	}
	FUZZ_CHECK(r == 0, "joblog_replay returned %d", r);
	if (info.torn) {
		FUZZ_CHECK(info.torn_offset + info.torn_bytes == size, "the torn tail does not reach the end");
		FUZZ_CHECK(info.torn_offset == 0 || data[info.torn_offset - 1] == '\n', "cut inside a line at %llu",
			   (unsigned long long)info.torn_offset);
		FUZZ_CHECK(file_size(path) == info.torn_offset, "the file was not cut at the torn tail");
	} else
		FUZZ_CHECK(file_size(path) == size, "replay changed a log without a torn tail");
	check_blink_index(&t);
	FUZZ_CHECK(info.records == read_records, "replay read %llu records, joblog_read %llu",
		   (unsigned long long)info.records, (unsigned long long)read_records);

	FUZZ_CHECK(joblog_records(l) == info.records, "joblog_records %llu after replaying %llu",
		   (unsigned long long)joblog_records(l), (unsigned long long)info.records);

	r = joblog_compact(l, &t);
	FUZZ_CHECK(r == 0, "joblog_compact: %d", r);
	FUZZ_CHECK(joblog_records(l) == t.n_jobs, "joblog_records %llu after compacting %zu jobs",
		   (unsigned long long)joblog_records(l), t.n_jobs);
	joblog_free(l);
	l = NULL;

	r = replay(dir, &t2, &info2, &l);
	joblog_free(l);
	FUZZ_CHECK(r == 0, "the compacted log does not replay: %d at line %llu", r, (unsigned long long)info2.bad_line);
	FUZZ_CHECK(!info2.torn, "the compacted log has a torn tail");
	FUZZ_CHECK(info2.records == t.n_jobs, "the compacted log has %llu records for %zu jobs",
		   (unsigned long long)info2.records, t.n_jobs);
	check_same_jobs(&t, &t2);

	job_table_release(&t);
	job_table_release(&t2);
	return 0;
}
