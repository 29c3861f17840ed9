/* SPDX-License-Identifier: MIT */
/*
 * fuzz_joblog — the job log's reader, on a line and on a whole file.
 *
 * Each line of the input goes to job_event_parse(); an accepted record must
 * format (job_event_format) into one line that parses back to the same
 * event.  Then the input becomes jobs.log in a scratch directory and goes
 * through joblog_read() (blinkhookctl's lenient reader) and joblog_open() +
 * joblog_replay() (the daemon's start), whose callback applies each record
 * to a job table as the daemon does.
 *
 * Checked: replay either succeeds, having cut off at most a torn tail, or
 * fails and leaves the file as it was; after a success both readers agree on
 * the number of records, and a second replay finds no torn tail and builds
 * the same table, whose index by leds_blink_id finds every job that has one;
 * joblog_free() releases the lock (the next open would get -EBUSY
 * otherwise).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "blinkhook/job.h"
#include "blinkhook/joblog.h"
#include "blinkhook/util.h"
#include "fuzz.h"

static void check_line(const char *line, size_t len)
{
	struct job_event ev;
	struct json *root = NULL;
	int r;

	r = job_event_parse(line, len, &ev, &root);
	if (r < 0) {
		FUZZ_CHECK(r == -EBADMSG || r == -EPROTONOSUPPORT, "job_event_parse returned %d", r);
		return;
	}
	FUZZ_CHECK(r == 0, "job_event_parse returned %d", r);
	FUZZ_CHECK(ev.id && job_id_is_valid(ev.id), "a record without a valid id");
	FUZZ_CHECK(ev.kind < _JOB_EV_MAX, "kind %d", (int)ev.kind);
	FUZZ_CHECK(ev.kind != JOB_EV_FINAL || job_state_is_final(ev.state), "a final event in state %d",
		   (int)ev.state);
	fuzz_check_log_line(&ev);
	json_free(root);
}

/* The daemon's replay callback: a record that changes nothing is a repeat. */
static int apply_cb(const struct job_event *ev, void *ud)
{
	int r = job_table_apply(ud, ev, NULL);

	return r < 0 ? r : 0;
}

static int count_cb(const struct job_event *ev, void *ud)
{
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
			shared = other != j && other->leds_blink_id && strcmp(other->leds_blink_id, j->leds_blink_id) == 0;
		FUZZ_CHECK(found == j || shared, "ledsBlinkId \"%s\" finds job %s, not %s", j->leds_blink_id, found->id,
			   j->id);
	}
}

static int replay(const char *dir, struct job_table *t, struct joblog_info *info)
{
	struct joblog *l = NULL;
	int r;

	r = joblog_open(dir, &l);
	FUZZ_CHECK(r == 0, "joblog_open: %d (a lock left held?)", r);
	FUZZ_CHECK(job_table_init(t) == 0, "out of memory");
	r = joblog_replay(l, apply_cb, t, info);
	joblog_free(l);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[512];
	const char *dir = fuzz_dir();
	const char *p = (const char *)data, *end = p + size;
	struct joblog_info read_info, info, info2;
	struct job_table t, t2;
	uint64_t read_records = 0, read_end = 0;
	int r, r2;

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

	r = replay(dir, &t, &info);
	if (r < 0) {
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
		FUZZ_CHECK(info.torn_offset == 0 || data[info.torn_offset - 1] == '\n',
			   "cut inside a line at %llu", (unsigned long long)info.torn_offset);
		FUZZ_CHECK(file_size(path) == info.torn_offset, "the file was not cut at the torn tail");
	} else
		FUZZ_CHECK(file_size(path) == size, "replay changed a log without a torn tail");
	check_blink_index(&t);
	FUZZ_CHECK(info.records == read_records, "replay read %llu records, joblog_read %llu",
		   (unsigned long long)info.records, (unsigned long long)read_records);

	r2 = replay(dir, &t2, &info2);
	FUZZ_CHECK(r2 == 0, "a second replay failed: %d", r2);
	FUZZ_CHECK(!info2.torn, "a second replay found a torn tail");
	FUZZ_CHECK(info2.records == info.records, "the second replay read %llu records, the first %llu",
		   (unsigned long long)info2.records, (unsigned long long)info.records);
	FUZZ_CHECK(t.n_jobs == t2.n_jobs, "%zu jobs, then %zu", t.n_jobs, t2.n_jobs);
	for (unsigned s = 0; s < _JOB_STATE_MAX; s++)
		FUZZ_CHECK(t.n_by_state[s] == t2.n_by_state[s], "state %u: %zu jobs, then %zu", s, t.n_by_state[s],
			   t2.n_by_state[s]);

	job_table_release(&t);
	job_table_release(&t2);
	return 0;
}
