/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "testlib.h"

#include "blinkhook/job.h"
#include "blinkhook/joblog.h"

#define TS0 (UINT64_C(1764241648) * USEC_PER_SEC)
#define SENTINEL ((struct joblog *)(uintptr_t)0x1)

static int group_setup(void **state)
{
	(void)state;
	return tmpdir_setup("test_joblog");
}

static int group_teardown(void **state)
{
	(void)state;
	return tmpdir_teardown();
}

static char *log_path(const char *dir)
{
	char *p = path_join(dir, JOBLOG_FILE);

	assert_non_null(p);
	return p;
}

static struct strbuf file_contents(const char *dir)
{
	_cleanup_free_ char *p = log_path(dir);
	struct strbuf sb = STRBUF_INIT;
	char *buf = NULL;
	size_t len = 0;

	assert_int_equal(read_file_capped(AT_FDCWD, p, 1 << 24, &buf, &len), 0);
	assert_int_equal(strbuf_add(&sb, buf, len), 0);
	free(buf);
	return sb;
}

static uint64_t file_size(const char *dir)
{
	_cleanup_free_ char *p = log_path(dir);
	struct stat st;

	assert_int_equal(stat(p, &st), 0);
	return (uint64_t)st.st_size;
}

static void append_raw(const char *dir, const void *data, size_t len)
{
	_cleanup_free_ char *p = log_path(dir);
	int fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, data, len), 0);
	assert_int_equal(close(fd), 0);
}

static int noop_cb(const struct job_event *ev, void *ud)
{
	(void)ev;
	(void)ud;
	return 0;
}

/* Event number i: the kinds in turn, each with the fields it carries. */
struct sample {
	char id[32];
	char error[48];
	struct job_event ev;
};

static void make_sample(struct sample *s, unsigned i)
{
	snprintf(s->id, sizeof(s->id), "job-%04u", i / 4);
	snprintf(s->error, sizeof(s->error), "HTTP 503 \"busy\" #%u", i);
	s->ev = (struct job_event){.ts = TS0 + i * USEC_PER_SEC, .id = s->id};
	switch (i % 4) {
	case 0:
		s->ev.kind = JOB_EV_QUEUED;
		s->ev.serial = "Q2AB-CD12-EF34";
		s->ev.duration = 1 + i;
		s->ev.source = "queue";
		break;
	case 1:
		s->ev.kind = JOB_EV_ATTEMPT;
		s->ev.attempts = 1;
		s->ev.error = s->error;
		break;
	case 2:
		s->ev.kind = JOB_EV_SUBMITTED;
		s->ev.leds_blink_id = "573083052582915028";
		s->ev.meraki_status = "new";
		s->ev.attempts = 2;
		break;
	default:
		s->ev.kind = JOB_EV_FINAL;
		s->ev.state = JOB_COMPLETE;
		s->ev.meraki_status = "complete";
		s->ev.source = "callback";
		break;
	}
}

/* The log's bytes for events first..first+n-1. */
static void expected_lines(unsigned first, unsigned n, struct strbuf *sb)
{
	for (unsigned i = first; i < first + n; i++) {
		struct sample s = {0};

		make_sample(&s, i);
		assert_int_equal(job_event_format(&s.ev, sb), 0);
	}
}

static void append_samples(struct joblog *l, unsigned first, unsigned n)
{
	for (unsigned i = first; i < first + n; i++) {
		struct sample s = {0};
		uint64_t seq = 0;

		make_sample(&s, i);
		assert_int_equal(joblog_append(l, &s.ev, &seq), 0);
		assert_int_equal(seq, joblog_appended_seq(l));
	}
}

/* Writes events 0..n-1 through the API and closes the log. */
static void write_samples(const char *dir, unsigned n)
{
	struct joblog *l = NULL;
	struct joblog_info info;

	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	append_samples(l, 0, n);
	assert_int_equal(joblog_commit(l), 0);
	joblog_free(l);
}

/* What a callback saw: each record formatted again, so that a comparison
 * covers every field. */
struct collected {
	struct strbuf lines;
	unsigned n;
	const char *fail_id; /* return fail_with for this id's records */
	int fail_with;
};

static int collect_cb(const struct job_event *ev, void *ud)
{
	struct collected *c = ud;

	if (c->fail_id && strcmp(ev->id, c->fail_id) == 0)
		return c->fail_with;
	c->n++;
	return job_event_format(ev, &c->lines);
}

static void assert_collected(const struct collected *c, unsigned first, unsigned n)
{
	struct strbuf want = STRBUF_INIT;

	expected_lines(first, n, &want);
	assert_int_equal(c->n, n);
	assert_int_equal(c->lines.len, want.len);
	if (n)
		assert_memory_equal(c->lines.buf, want.buf, want.len);
	strbuf_release(&want);
}

/* Opens dir's log and replays it: it must hold events 0..n-1, nothing torn. */
static void assert_log_holds(const char *dir, unsigned n)
{
	struct collected c = {STRBUF_INIT, 0, NULL, 0};
	struct joblog *l = NULL;
	struct joblog_info info;

	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, collect_cb, &c, &info), 0);
	assert_false(info.torn);
	assert_int_equal(info.records, n);
	assert_collected(&c, 0, n);
	joblog_free(l);
	strbuf_release(&c.lines);
}

/* ---- opening and locking ---- */

static void test_open_creates(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = new_dir();
	_cleanup_free_ char *path = log_path(dir);
	_cleanup_free_ char *lock = path_join(dir, JOBLOG_LOCK_FILE);
	struct joblog *l = NULL;
	struct joblog_info info;
	struct stat st;

	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_non_null(l);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_mode & 0137, 0); /* at most 0640 */
	assert_int_equal(stat(lock, &st), 0);

	assert_int_equal(joblog_appended_seq(l), 0);
	assert_int_equal(joblog_synced_seq(l), 0);
	assert_false(joblog_has_pending(l));
	assert_int_equal(joblog_last_error(l), 0);

	struct collected c = {STRBUF_INIT, 0, NULL, 0};
	memset(&info, 0xff, sizeof(info));
	assert_int_equal(joblog_replay(l, collect_cb, &c, &info), 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(info.records, 0);
	assert_int_equal(info.size, 0);
	assert_false(info.torn);
	assert_int_equal(info.bad_line, 0);
	/* Committing nothing is fine and writes nothing. */
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(file_size(dir), 0);
	joblog_free(l);
	joblog_free(NULL);

	/* A directory that is not there. */
	_cleanup_free_ char *missing = path_join(dir, "missing");
	l = SENTINEL;
	assert_int_equal(joblog_open(missing, &l), -ENOENT);
	assert_ptr_equal(l, SENTINEL);
}

static void test_lock(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = new_dir();
	_cleanup_free_ char *other = new_dir();
	struct joblog *a = NULL, *b = SENTINEL, *c = NULL;

	assert_int_equal(joblog_open(dir, &a), 0);
	/* flock() locks belong to the open file description, so a second open
	 * in the same process conflicts as another process would. */
	assert_int_equal(joblog_open(dir, &b), -EBUSY);
	assert_ptr_equal(b, SENTINEL);
	assert_int_equal(joblog_open(dir, &b), -EBUSY);
	/* Another directory is another lock. */
	assert_int_equal(joblog_open(other, &c), 0);
	joblog_free(c);

	joblog_free(a);
	b = NULL;
	assert_int_equal(joblog_open(dir, &b), 0);
	joblog_free(b);
}

/* ---- writing and replaying ---- */

static void test_append_commit_replay(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = new_dir();
	struct joblog *l = NULL;
	struct joblog_info info;
	struct collected c = {STRBUF_INIT, 0, NULL, 0};
	struct strbuf want = STRBUF_INIT, got;
	uint64_t seq = 0;

	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, collect_cb, &c, &info), 0);

	append_samples(l, 0, 10);
	assert_int_equal(joblog_appended_seq(l), 10);
	assert_int_equal(joblog_synced_seq(l), 0);
	assert_true(joblog_has_pending(l));
	/* Nothing on disk before the commit. */
	assert_int_equal(file_size(dir), 0);

	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_synced_seq(l), 10);
	assert_int_equal(joblog_appended_seq(l), 10);
	assert_false(joblog_has_pending(l));
	assert_int_equal(joblog_last_error(l), 0);
	expected_lines(0, 10, &want);
	got = file_contents(dir);
	assert_int_equal(got.len, want.len);
	assert_memory_equal(got.buf, want.buf, want.len);
	strbuf_release(&got);

	/* A second batch continues the numbering and lands after the first. */
	struct sample s = {0};
	make_sample(&s, 10);
	assert_int_equal(joblog_append(l, &s.ev, &seq), 0);
	assert_int_equal(seq, 11);
	make_sample(&s, 11);
	assert_int_equal(joblog_append(l, &s.ev, NULL), 0);
	assert_int_equal(joblog_appended_seq(l), 12);
	assert_int_equal(joblog_synced_seq(l), 10);
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_synced_seq(l), 12);
	joblog_free(l);

	/* A fresh joblog replays the same events, in order. */
	l = NULL;
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, collect_cb, &c, &info), 0);
	assert_collected(&c, 0, 12);
	assert_int_equal(info.records, 12);
	assert_int_equal(info.size, file_size(dir));
	assert_false(info.torn);
	assert_int_equal(info.bad_line, 0);
	joblog_free(l);

	strbuf_release(&c.lines);
	strbuf_release(&want);
}

static void test_append_without_commit(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = new_dir();
	struct joblog *l = NULL;
	struct joblog_info info;
	uint64_t size;

	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	append_samples(l, 0, 3);
	assert_int_equal(joblog_commit(l), 0);
	size = file_size(dir);
	append_samples(l, 3, 2);
	assert_int_equal(joblog_appended_seq(l), 5);
	assert_int_equal(joblog_synced_seq(l), 3);
	assert_true(joblog_has_pending(l));
	assert_int_equal(file_size(dir), size);
	joblog_free(l); /* the pending two are gone */
	assert_int_equal(file_size(dir), size);
	assert_log_holds(dir, 3);
}

static void test_append_too_long(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = new_dir();
	struct joblog *l = NULL;
	struct joblog_info info;
	char *big = malloc(JOBLOG_LINE_MAX + 1);
	struct sample s = {0};
	uint64_t seq = 42;

	assert_non_null(big);
	memset(big, 'e', JOBLOG_LINE_MAX);
	big[JOBLOG_LINE_MAX] = 0;
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	append_samples(l, 0, 1);
	make_sample(&s, 1);
	s.ev.error = big;
	/* A record longer than a line may be is refused, and the pending
	 * buffer keeps only what came before it. */
	assert_int_equal(joblog_append(l, &s.ev, &seq), -E2BIG);
	assert_int_equal(seq, 42);
	assert_int_equal(joblog_appended_seq(l), 1);
	append_samples(l, 1, 1);
	assert_int_equal(joblog_commit(l), 0);
	joblog_free(l);
	assert_log_holds(dir, 2);
	free(big);
}

/* ---- torn tails and damage ---- */

static void check_torn_tail(const char *tail, size_t tail_len)
{
	_cleanup_free_ char *dir = new_dir();
	struct joblog *l = NULL;
	struct joblog_info info;
	struct collected c = {STRBUF_INIT, 0, NULL, 0};
	struct strbuf want = STRBUF_INIT, got;
	uint64_t good;

	write_samples(dir, 5);
	good = file_size(dir);
	append_raw(dir, tail, tail_len);
	assert_int_equal(file_size(dir), good + tail_len);

	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, collect_cb, &c, &info), 0);
	assert_collected(&c, 0, 5);
	assert_true(info.torn);
	assert_int_equal(info.torn_offset, good);
	assert_int_equal(info.torn_bytes, tail_len);
	assert_int_equal(info.records, 5);
	assert_int_equal(info.size, good);
	assert_int_equal(info.bad_line, 0);
	assert_int_equal(info.bad_error, 0);
	/* Cut off on disk too. */
	assert_int_equal(file_size(dir), good);

	/* The next record lands right after the good data. */
	append_samples(l, 5, 1);
	assert_int_equal(joblog_commit(l), 0);
	joblog_free(l);
	expected_lines(0, 6, &want);
	got = file_contents(dir);
	assert_int_equal(got.len, want.len);
	assert_memory_equal(got.buf, want.buf, want.len);
	strbuf_release(&got);

	/* And the log replays cleanly now. */
	strbuf_reset(&c.lines);
	c.n = 0;
	l = NULL;
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, collect_cb, &c, &info), 0);
	assert_collected(&c, 0, 6);
	assert_false(info.torn);
	joblog_free(l);

	strbuf_release(&c.lines);
	strbuf_release(&want);
}

static void test_torn_tail(void **state)
{
	(void)state;
	static const char half[] = "{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"job-9";
	static const char nuls[16] = {0};
	/* Where the file grew before its data reached the disk: lines of NULs. */
	static const char nul_lines_then_half[] = "\0\0\0\0\n\0\0\n{\"v\":1,\"ts\":";
	static const char nul_line_then_nuls[] = "\0\0\0\n\0\0\0\0\0\0";
	struct strbuf whole = STRBUF_INIT;
	struct sample s = {0};

	check_torn_tail(half, strlen(half));
	check_torn_tail(nuls, sizeof(nuls));
	check_torn_tail(nul_lines_then_half, sizeof(nul_lines_then_half) - 1);
	check_torn_tail(nul_line_then_nuls, sizeof(nul_line_then_nuls) - 1);
	/* A whole record but for its newline was never acknowledged: the
	 * newline is the last byte a commit writes. */
	make_sample(&s, 99);
	assert_int_equal(job_event_format(&s.ev, &whole), 0);
	check_torn_tail(whole.buf, whole.len - 1);
	strbuf_release(&whole);
}

/* The log holds good lines 0..n_before-1, then bad, then good lines
 * n_before..n_before+n_after-1; replay refuses it and changes nothing. */
static void check_damage(const char *bad, size_t bad_len, unsigned n_before, unsigned n_after, int want)
{
	_cleanup_free_ char *dir = new_dir();
	struct joblog *l = NULL;
	struct joblog_info info;
	struct collected c = {STRBUF_INIT, 0, NULL, 0};
	struct strbuf before = STRBUF_INIT, after = STRBUF_INIT, got;
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *path = log_path(dir);

	expected_lines(0, n_before, &before);
	expected_lines(n_before, n_after, &after);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, before.buf, before.len), 0);
	assert_int_equal(write_all(fd, bad, bad_len), 0);
	assert_int_equal(write_all(fd, after.buf, after.len), 0);
	struct strbuf orig = file_contents(dir);

	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, collect_cb, &c, &info), want);
	assert_int_equal(info.bad_line, n_before + 1);
	assert_int_equal(info.bad_offset, before.len);
	assert_int_equal(info.bad_error, want);
	assert_int_equal(info.records, n_before);
	assert_false(info.torn);
	assert_collected(&c, 0, n_before);
	joblog_free(l);

	got = file_contents(dir);
	assert_int_equal(got.len, orig.len);
	assert_memory_equal(got.buf, orig.buf, orig.len);

	strbuf_release(&got);
	strbuf_release(&orig);
	strbuf_release(&before);
	strbuf_release(&after);
	strbuf_release(&c.lines);
}

/* Complete lines at the end that are not records are damage: a torn append
 * never leaves them (records are written whole), and cutting them off would
 * lose whatever they held. */
static void test_bad_complete_tail_is_damage(void **state)
{
	(void)state;
	check_damage("this is not a record\n", strlen("this is not a record\n"), 3, 0, -EBADMSG);
	check_damage("{\"v\":1}\n", strlen("{\"v\":1}\n"), 3, 0, -EBADMSG);
}

static void test_damage_in_middle(void **state)
{
	(void)state;
	static const char garbage[] = "this is not a record\n";
	static const char half[] = "{\"v\":1,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"job\n";
	static const char nuls[] = "\0\0\0\0\0\0\0\0\n";
	char *longline = malloc(JOBLOG_LINE_MAX + 2);
	struct strbuf big = STRBUF_INIT;

	check_damage(garbage, strlen(garbage), 3, 2, -EBADMSG);
	check_damage(garbage, strlen(garbage), 0, 1, -EBADMSG);
	check_damage(half, strlen(half), 4, 1, -EBADMSG);
	check_damage(nuls, sizeof(nuls) - 1, 2, 3, -EBADMSG);
	/* A good record after the damage, then a torn tail: still damage. */
	{
		_cleanup_free_ char *dir = new_dir();
		struct joblog *l = NULL;
		struct joblog_info info;
		uint64_t size;

		write_samples(dir, 2);
		append_raw(dir, garbage, strlen(garbage));
		struct strbuf more = STRBUF_INIT;
		expected_lines(2, 1, &more);
		append_raw(dir, more.buf, more.len);
		append_raw(dir, "{\"v\":1,", 7);
		size = file_size(dir);
		assert_int_equal(joblog_open(dir, &l), 0);
		assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), -EBADMSG);
		assert_int_equal(info.bad_line, 3);
		assert_int_equal(file_size(dir), size);
		joblog_free(l);
		strbuf_release(&more);
	}
	/* A line longer than any record is damage even when it parses. */
	assert_non_null(longline);
	{
		struct sample s = {0};
		char *err = malloc(JOBLOG_LINE_MAX + 1);

		assert_non_null(err);
		memset(err, 'e', JOBLOG_LINE_MAX);
		err[JOBLOG_LINE_MAX] = 0;
		make_sample(&s, 1);
		s.ev.error = err;
		assert_int_equal(job_event_format(&s.ev, &big), 0);
		assert_true(big.len > JOBLOG_LINE_MAX + 1);
		check_damage(big.buf, big.len, 1, 1, -EBADMSG);
		free(err);
	}
	memset(longline, 'x', JOBLOG_LINE_MAX + 1);
	longline[JOBLOG_LINE_MAX + 1] = '\n';
	check_damage(longline, JOBLOG_LINE_MAX + 2, 2, 1, -EBADMSG);
	strbuf_release(&big);
	free(longline);
}

static void test_future_version(void **state)
{
	(void)state;
	static const char v2[] =
		"{\"v\":2,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"job-0000\",\"event\":\"frobbed\"}\n";

	/* At the end, where garbage would be a torn tail, a record of a newer
	 * version is not cut off: that would lose a newer daemon's data. */
	check_damage(v2, strlen(v2), 3, 0, -EPROTONOSUPPORT);
	check_damage(v2, strlen(v2), 2, 2, -EPROTONOSUPPORT);
	check_damage(v2, strlen(v2), 0, 0, -EPROTONOSUPPORT);
}

static void test_replay_callback_error(void **state)
{
	(void)state;
	/* A good record that the callback refuses is reported at its line and
	 * the file is left alone, also when it is the last one. */
	for (unsigned last = 0; last < 2; last++) {
		_cleanup_free_ char *dir = new_dir();
		struct joblog *l = NULL;
		struct joblog_info info;
		struct collected c = {STRBUF_INIT, 0, "job-0001", -EINVAL};
		struct strbuf before = STRBUF_INIT;
		unsigned n = last ? 5 : 8; /* records 4..7 are job-0001 */

		write_samples(dir, n);
		struct strbuf orig = file_contents(dir);
		expected_lines(0, 4, &before);

		assert_int_equal(joblog_open(dir, &l), 0);
		assert_int_equal(joblog_replay(l, collect_cb, &c, &info), -EINVAL);
		assert_int_equal(info.bad_line, 5);
		assert_int_equal(info.bad_offset, before.len);
		assert_int_equal(info.bad_error, -EINVAL);
		assert_false(info.torn);
		assert_int_equal(info.records, 4);
		assert_collected(&c, 0, 4);
		joblog_free(l);

		struct strbuf got = file_contents(dir);
		assert_int_equal(got.len, orig.len);
		assert_memory_equal(got.buf, orig.buf, orig.len);
		strbuf_release(&got);
		strbuf_release(&orig);
		strbuf_release(&before);
		strbuf_release(&c.lines);
	}
}

/* ---- reading without the lock ---- */

static void test_read(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = new_dir();
	static const char garbage[] = "garbage\n";
	static const char v2[] = "{\"v\":2,\"ts\":\"2025-11-27T11:07:28Z\",\"id\":\"x\",\"event\":\"frobbed\"}\n";
	struct strbuf lines[6];
	struct collected c = {STRBUF_INIT, 0, NULL, 0};
	struct joblog_info info;
	struct joblog *l = NULL;
	uint64_t end = 12345, off3, off4, size;

	for (unsigned i = 0; i < 6; i++) {
		lines[i] = (struct strbuf)STRBUF_INIT;
		expected_lines(i, 1, &lines[i]);
	}

	/* No log yet. */
	memset(&info, 0xff, sizeof(info));
	assert_int_equal(joblog_read(dir, 0, collect_cb, &c, &info, &end), -ENOENT);
	assert_int_equal(end, 12345);

	/* good0 good1 garbage good2 v2 good3 half-of-good4 */
	write_samples(dir, 2);
	append_raw(dir, garbage, strlen(garbage));
	off3 = file_size(dir);
	append_raw(dir, lines[2].buf, lines[2].len);
	append_raw(dir, v2, strlen(v2));
	off4 = file_size(dir);
	append_raw(dir, lines[3].buf, lines[3].len);
	size = file_size(dir);
	append_raw(dir, lines[4].buf, 20);
	struct strbuf orig = file_contents(dir);

	/* The reader works while the writer holds the lock. */
	assert_int_equal(joblog_open(dir, &l), 0);

	assert_int_equal(joblog_read(dir, 0, collect_cb, &c, &info, &end), 0);
	assert_int_equal(c.n, 4);
	assert_int_equal(info.records, 4);
	assert_int_equal(info.damaged, 2);
	assert_int_equal(info.bad_line, 3);
	assert_int_equal(info.bad_offset, off3 - strlen(garbage));
	assert_int_equal(info.bad_error, -EBADMSG);
	assert_int_equal(end, size);
	struct strbuf want = STRBUF_INIT;
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(strbuf_add(&want, lines[i].buf, lines[i].len), 0);
	assert_int_equal(c.lines.len, want.len);
	assert_memory_equal(c.lines.buf, want.buf, want.len);
	strbuf_release(&want);

	/* Reading never writes. */
	struct strbuf got = file_contents(dir);
	assert_int_equal(got.len, orig.len);
	assert_memory_equal(got.buf, orig.buf, orig.len);
	strbuf_release(&got);

	/* From the end: the unterminated line is still left for later. */
	strbuf_reset(&c.lines);
	c.n = 0;
	assert_int_equal(joblog_read(dir, end, collect_cb, &c, &info, &end), 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(info.damaged, 0);
	assert_int_equal(end, size);

	/* The writer finishes the line, and adds another. */
	append_raw(dir, lines[4].buf + 20, lines[4].len - 20);
	append_raw(dir, lines[5].buf, lines[5].len);
	assert_int_equal(joblog_read(dir, end, collect_cb, &c, &info, &end), 0);
	assert_int_equal(c.n, 2);
	assert_int_equal(info.records, 2);
	assert_int_equal(end, file_size(dir));
	assert_int_equal(c.lines.len, lines[4].len + lines[5].len);
	assert_memory_equal(c.lines.buf, lines[4].buf, lines[4].len);
	assert_memory_equal(c.lines.buf + lines[4].len, lines[5].buf, lines[5].len);

	/* From an offset in the middle: only what follows it. */
	strbuf_reset(&c.lines);
	c.n = 0;
	assert_int_equal(joblog_read(dir, off4, collect_cb, &c, &info, &end), 0);
	assert_int_equal(c.n, 3);
	assert_int_equal(info.damaged, 0);
	assert_memory_equal(c.lines.buf, lines[3].buf, lines[3].len);
	assert_int_equal(end, file_size(dir));

	/* At or past the end: nothing. */
	c.n = 0;
	assert_int_equal(joblog_read(dir, file_size(dir), collect_cb, &c, &info, &end), 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(end, file_size(dir));

	joblog_free(l);
	strbuf_release(&orig);
	strbuf_release(&c.lines);
	for (unsigned i = 0; i < 6; i++)
		strbuf_release(&lines[i]);
}

/* The daemon may cut the log short (a torn tail) or replace it while a
 * reader walks it: the reader gets what it read, never a SIGBUS. */
struct truncating {
	const char *path;
	size_t n;
};

static int truncate_cb(const struct job_event *ev, void *ud)
{
	struct truncating *t = ud;

	(void)ev;
	if (t->n++ == 0)
		assert_int_equal(truncate(t->path, 0), 0);
	return 0;
}

static void test_read_truncated(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = new_dir();
	_cleanup_free_ char *path = path_join(dir, JOBLOG_FILE);
	struct truncating t = {.path = path};
	struct joblog_info info;
	uint64_t end = 0, size;

	/* Many pages of records, cut to nothing after the first. */
	write_samples(dir, 3000);
	size = file_size(dir);
	assert_true(size > 16 * 4096);
	assert_int_equal(joblog_read(dir, 0, truncate_cb, &t, &info, &end), 0);
	assert_int_equal(t.n, 3000);
	assert_int_equal(end, size);
	assert_int_equal(file_size(dir), 0);
}

static void test_read_callback_error(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = new_dir();
	struct collected c = {STRBUF_INIT, 0, "job-0001", -ENOMEM};
	struct joblog_info info;
	uint64_t end = 777;

	/* The callback's error is not damage: it stops the read. */
	write_samples(dir, 8);
	assert_int_equal(joblog_read(dir, 0, collect_cb, &c, &info, &end), -ENOMEM);
	assert_collected(&c, 0, 4);
	assert_int_equal(info.damaged, 0);
	assert_int_equal(end, 777);
	strbuf_release(&c.lines);
}

/* ---- a commit that fails ---- */

/* Compaction: one snapshot a job; replaying it gives the same table. */
static int apply_to_table(const struct job_event *ev, void *ud)
{
	return job_table_apply(ud, ev, NULL) < 0 ? -EINVAL : 0;
}

static void test_compact(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	struct job_table t, back;
	struct joblog *l = NULL;
	struct joblog_info info;
	char id[16];

	(void)state;
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	for (unsigned i = 0; i < 50; i++) {
		struct job_event evs[3] = {
			{.ts = 1700000000000000ULL + i,
			 .id = id,
			 .kind = JOB_EV_QUEUED,
			 .serial = "Q2AA-BBBB-CCCC",
			 .duration = 5 + i},
			{.ts = 1700000001000000ULL + i,
			 .id = id,
			 .kind = JOB_EV_SUBMITTED,
			 .leds_blink_id = "77",
			 .attempts = 2,
			 .meraki_status = "new"},
			{.ts = 1700000002000000ULL + i,
			 .id = id,
			 .kind = JOB_EV_FINAL,
			 .state = JOB_FAILED,
			 .error = "Device \"x\" offline",
			 .meraki_status = "failed"},
		};
		snprintf(id, sizeof(id), "job%u", i);
		/* Every third job stops early: queued, or submitted. */
		unsigned n = i % 3 == 0 ? 1 : i % 3 == 1 ? 2 : 3;
		for (unsigned k = 0; k < n; k++) {
			assert_int_equal(job_table_apply(&t, &evs[k], NULL), 0);
			assert_int_equal(joblog_append(l, &evs[k], NULL), 0);
		}
	}
	assert_int_equal(joblog_compact(l, &t), -EBUSY); /* uncommitted records first */
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_records(l), 99); /* 17 + 17 * 2 + 16 * 3 */
	assert_int_equal(joblog_compact(l, &t), 0);
	assert_int_equal(joblog_records(l), 50);
	{
		struct strbuf sb = file_contents(dir);
		size_t lines = 0;
		for (size_t k = 0; k < sb.len; k++)
			lines += sb.buf[k] == '\n';
		assert_int_equal(lines, 50);
		strbuf_release(&sb);
	}
	/* Appending goes on in the new file. */
	struct job_event more = {
		.ts = 1700000009000000ULL, .id = "job0", .kind = JOB_EV_ATTEMPT, .attempts = 1, .error = "HTTP 500"};
	assert_int_equal(job_table_apply(&t, &more, NULL), 0);
	assert_int_equal(joblog_append(l, &more, NULL), 0);
	assert_int_equal(joblog_commit(l), 0);
	joblog_free(l);

	assert_int_equal(job_table_init(&back), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, apply_to_table, &back, &info), 0);
	assert_int_equal(info.records, 51);
	assert_int_equal(back.n_jobs, t.n_jobs);
	for (struct job *a = t.first, *b = back.first; a; a = a->next, b = b->next) {
		assert_non_null(b);
		assert_string_equal(a->id, b->id);
		assert_string_equal(a->serial, b->serial);
		assert_int_equal(a->duration, b->duration);
		assert_int_equal(a->state, b->state);
		assert_int_equal(a->attempts, b->attempts);
		assert_true(a->created_at / 1000000 == b->created_at / 1000000);
		assert_true(a->updated_at / 1000000 == b->updated_at / 1000000);
		assert_true((!a->leds_blink_id && !b->leds_blink_id) ||
			    strcmp(a->leds_blink_id, b->leds_blink_id) == 0);
		assert_true((!a->meraki_status && !b->meraki_status) ||
			    strcmp(a->meraki_status, b->meraki_status) == 0);
		assert_true((!a->error && !b->error) || strcmp(a->error, b->error) == 0);
	}
	for (unsigned s = 0; s < _JOB_STATE_MAX; s++)
		assert_int_equal(back.n_by_state[s], t.n_by_state[s]);
	joblog_free(l);
	job_table_release(&t);
	job_table_release(&back);
}

static struct rlimit saved_fsize;

static int fsize_setup(void **state)
{
	(void)state;
	if (getrlimit(RLIMIT_FSIZE, &saved_fsize) < 0)
		return -1;
	/* Over the limit, write(2) fails with EFBIG instead of killing us. */
	return signal(SIGXFSZ, SIG_IGN) == SIG_ERR ? -1 : 0;
}

static int fsize_teardown(void **state)
{
	(void)state;
	(void)signal(SIGXFSZ, SIG_DFL);
	return setrlimit(RLIMIT_FSIZE, &saved_fsize);
}

static void set_fsize(rlim_t cur)
{
	struct rlimit rl = saved_fsize;

	rl.rlim_cur = cur;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void test_commit_failure(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = new_dir();
	char err[1000];
	struct sample s[4] = {0};
	struct joblog *l = NULL;
	struct joblog_info info;
	struct strbuf want = STRBUF_INIT, got;
	uint64_t good;

	memset(err, 'x', sizeof(err) - 1);
	err[sizeof(err) - 1] = 0;
	for (unsigned i = 0; i < 4; i++) {
		make_sample(&s[i], i);
		if (i > 0)
			s[i].ev.error = err; /* about 1 KiB each */
		assert_int_equal(job_event_format(&s[i].ev, &want), 0);
	}

	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	assert_int_equal(joblog_append(l, &s[0].ev, NULL), 0);
	assert_int_equal(joblog_commit(l), 0);
	good = file_size(dir);
	assert_int_equal(joblog_synced_seq(l), 1);

	/* Room for one big record and a part of the next. */
	set_fsize((rlim_t)good + 1500);
	for (unsigned i = 1; i < 4; i++)
		assert_int_equal(joblog_append(l, &s[i].ev, NULL), 0);
	assert_int_equal(joblog_commit(l), -EFBIG);
	assert_int_equal(joblog_last_error(l), -EFBIG);
	assert_true(joblog_has_pending(l));
	assert_int_equal(joblog_synced_seq(l), 1);
	assert_int_equal(joblog_appended_seq(l), 4);
	/* What reached the file was cut back: no half batch on disk. */
	assert_int_equal(file_size(dir), good);

	/* Still full: fails the same way, still nothing half-written. */
	assert_int_equal(joblog_commit(l), -EFBIG);
	assert_int_equal(file_size(dir), good);
	assert_int_equal(joblog_synced_seq(l), 1);

	/* Space returns: the same records go out once. */
	set_fsize(saved_fsize.rlim_cur);
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_last_error(l), 0);
	assert_false(joblog_has_pending(l));
	assert_int_equal(joblog_synced_seq(l), 4);
	joblog_free(l);

	got = file_contents(dir);
	assert_int_equal(got.len, want.len);
	assert_memory_equal(got.buf, want.buf, want.len);
	strbuf_release(&got);

	struct collected c = {STRBUF_INIT, 0, NULL, 0};
	l = NULL;
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, collect_cb, &c, &info), 0);
	assert_int_equal(c.n, 4);
	assert_int_equal(info.records, 4);
	assert_false(info.torn);
	assert_int_equal(c.lines.len, want.len);
	assert_memory_equal(c.lines.buf, want.buf, want.len);
	joblog_free(l);

	strbuf_release(&c.lines);
	strbuf_release(&want);
}

/* ---- the asynchronous commit ---- */

/* Waits (up to 10 s) for the sync in flight to end, as the daemon's loop
 * does: its result. */
static int sync_end(struct joblog *l)
{
	assert_true(joblog_syncing(l));
	assert_true(joblog_commit_fd(l) >= 0);
	for (int i = 0; i < 100; i++) {
		struct pollfd p = {.fd = joblog_commit_fd(l), .events = POLLIN};
		int r;

		assert_true(poll(&p, 1, 100) >= 0);
		r = joblog_commit_finish(l);
		if (r != -EAGAIN)
			return r;
	}
	fail_msg("the sync did not end in 10 s");
	return -ETIMEDOUT;
}

/* Starts a commit and, when its sync is in flight, waits for it: the result. */
static int commit_async(struct joblog *l)
{
	int r = joblog_commit_start(l);

	return r == 1 ? sync_end(l) : r;
}

static void test_commit_async(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = new_dir();
	struct joblog *l = NULL;
	struct joblog_info info;
	struct job_table t;

	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	/* Nothing pending: nothing to do. */
	assert_int_equal(joblog_commit_start(l), 0);
	assert_false(joblog_syncing(l));

	append_samples(l, 0, 10);
	assert_int_equal(joblog_commit_start(l), 1); /* Linux AIO: the machines we test on have it */
	assert_true(joblog_syncing(l));
	assert_false(joblog_has_pending(l));
	/* A second batch waits for the first; so does compaction. */
	assert_int_equal(joblog_commit_start(l), -EBUSY);
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_compact(l, &t), -EBUSY);
	/* Records appended meanwhile are not part of the batch in flight. */
	append_samples(l, 10, 5);
	assert_true(joblog_has_pending(l));
	assert_int_equal(sync_end(l), 0);
	assert_false(joblog_syncing(l));
	assert_int_equal(joblog_synced_seq(l), 10);
	assert_int_equal(joblog_appended_seq(l), 15);
	assert_true(joblog_has_pending(l));
	assert_int_equal(joblog_records(l), 10);
	assert_int_equal(joblog_commit_finish(l), -EAGAIN); /* none in flight */

	/* The next batch; then one left in flight for joblog_commit, which
	 * waits for it and commits the rest. */
	assert_int_equal(joblog_commit_start(l), 1);
	assert_int_equal(sync_end(l), 0);
	assert_int_equal(joblog_synced_seq(l), 15);
	append_samples(l, 15, 3);
	assert_int_equal(joblog_commit_start(l), 1);
	append_samples(l, 18, 2);
	assert_int_equal(joblog_commit(l), 0);
	assert_false(joblog_syncing(l));
	assert_false(joblog_has_pending(l));
	assert_int_equal(joblog_synced_seq(l), 20);
	assert_int_equal(joblog_records(l), 20);

	/* Closing with a sync in flight waits for it. */
	append_samples(l, 20, 4);
	assert_int_equal(joblog_commit_start(l), 1);
	joblog_free(l);
	job_table_release(&t);
	assert_log_holds(dir, 24);
}

/* A batch that cannot be written stays, ahead of what is appended later. */
static void test_commit_async_failure(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = new_dir();
	struct joblog *l = NULL;
	struct joblog_info info;
	uint64_t good;

	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	append_samples(l, 0, 2);
	assert_int_equal(commit_async(l), 0);
	good = file_size(dir);

	set_fsize((rlim_t)good + 100);
	append_samples(l, 2, 10);
	assert_int_equal(joblog_commit_start(l), -EFBIG);
	assert_false(joblog_syncing(l));
	assert_true(joblog_has_pending(l));
	assert_int_equal(joblog_last_error(l), -EFBIG);
	assert_int_equal(file_size(dir), good);
	assert_int_equal(joblog_synced_seq(l), 2);
	/* More records come while the disk is full. */
	append_samples(l, 12, 3);
	assert_int_equal(joblog_commit_start(l), -EFBIG);
	assert_int_equal(file_size(dir), good);

	set_fsize(saved_fsize.rlim_cur);
	assert_int_equal(commit_async(l), 0);
	assert_false(joblog_has_pending(l));
	assert_int_equal(joblog_synced_seq(l), 15);
	assert_int_equal(joblog_records(l), 15);
	joblog_free(l);
	assert_log_holds(dir, 15);
}

/* ---- compaction off the loop ---- */

/* Samples first..first+n-1, applied to t and appended to l. */
static void apply_samples(struct joblog *l, struct job_table *t, unsigned first, unsigned n)
{
	for (unsigned i = first; i < first + n; i++) {
		struct sample s = {0};

		make_sample(&s, i);
		assert_int_equal(job_table_apply(t, &s.ev, NULL), 0);
		assert_int_equal(joblog_append(l, &s.ev, NULL), 0);
	}
}

/* Waits (up to 10 s) for the compaction child to end, as the loop does;
 * the result of joblog_compact_finish(). */
static int compact_end(struct joblog *l)
{
	for (int i = 0; i < 100; i++) {
		struct pollfd p = {.fd = joblog_compact_fd(l), .events = POLLIN};
		int r;

		assert_true(joblog_compact_fd(l) >= 0);
		assert_true(poll(&p, 1, 100) >= 0);
		r = joblog_compact_finish(l);
		if (r != -EAGAIN)
			return r;
	}
	fail_msg("the compaction did not end in 10 s");
	return -ETIMEDOUT;
}

static bool exists(const char *dir, const char *name)
{
	_cleanup_free_ char *p = path_join(dir, name);

	assert_non_null(p);
	return access(p, F_OK) == 0;
}

/* What a follower printed: the records that are not snapshots, as the
 * samples' bytes, and how many snapshots slipped through. */
struct followed {
	struct collected c;
	unsigned snapshots;
};

static int follow_cb(const struct job_event *ev, void *ud)
{
	struct followed *f = ud;

	if (ev->kind == JOB_EV_SNAPSHOT) {
		f->snapshots++;
		return 0;
	}
	return collect_cb(ev, &f->c);
}

static void follow(struct joblog_follow *jf, const char *dir, struct followed *f)
{
	struct joblog_info info;

	assert_int_equal(joblog_follow_read(jf, dir, follow_cb, f, &info), 0);
	assert_int_equal(info.damaged, 0);
}

/* Replays dir's log into a table that must equal t; the records the log
 * holds after its snapshots are returned in after (as collected). */
static void assert_log_restates(const char *dir, const struct job_table *t, struct followed *after)
{
	struct job_table back;
	struct joblog *l = NULL;
	struct joblog_info info;
	struct joblog_follow jf = JOBLOG_FOLLOW_INIT;

	assert_int_equal(job_table_init(&back), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, apply_to_table, &back, &info), 0);
	assert_int_equal(back.n_jobs, t->n_jobs);
	for (struct job *a = t->first, *b = back.first; a; a = a->next, b = b->next) {
		assert_non_null(b);
		assert_string_equal(a->id, b->id);
		assert_int_equal(a->state, b->state);
		assert_int_equal(a->attempts, b->attempts);
		assert_int_equal(a->duration, b->duration);
	}
	joblog_free(l);
	job_table_release(&back);
	/* A reader from the start: every snapshot, then the rest once. */
	follow(&jf, dir, after);
	joblog_follow_release(&jf);
}

static void test_compact_background(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	struct followed seen = {{STRBUF_INIT, 0, NULL, 0}, 0}, rest = {{STRBUF_INIT, 0, NULL, 0}, 0};
	struct joblog_follow jf = JOBLOG_FOLLOW_INIT;
	struct job_table t;
	struct joblog *l = NULL;
	struct joblog_info info;
	int pid;

	(void)state;
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	apply_samples(l, &t, 0, 400); /* 100 jobs, 4 records each */
	assert_int_equal(joblog_commit(l), 0);
	follow(&jf, dir, &seen);
	assert_collected(&seen.c, 0, 400);

	assert_int_equal(joblog_compact_begin(l, &t), 1);
	assert_true(joblog_compacting(l));
	pid = joblog_compact_pid(l);
	assert_true(pid > 0);
	assert_int_equal(joblog_compact_begin(l, &t), -EBUSY); /* one at a time */
	/* Asking whether it is done does not wait for it (the loop asks after
	 * every commit): a stopped child, and a hang ends the test. */
	assert_int_equal(kill(pid, SIGSTOP), 0);
	alarm(10);
	assert_int_equal(joblog_compact_finish(l), -EAGAIN);
	alarm(0);
	assert_true(joblog_compacting(l));
	assert_int_equal(kill(pid, SIGCONT), 0);
	/* The loop goes on while the child writes: records are appended and
	 * committed (with the asynchronous sync) to the old log, and the
	 * table changes under nobody. */
	apply_samples(l, &t, 400, 6);
	assert_int_equal(commit_async(l), 0);
	follow(&jf, dir, &seen); /* the follower has read some of them */
	apply_samples(l, &t, 406, 10);
	assert_int_equal(commit_async(l), 0);
	assert_int_equal(compact_end(l), 0);
	assert_false(joblog_compacting(l));
	assert_int_equal(joblog_compact_fd(l), -1);
	assert_false(exists(dir, JOBLOG_COMPACT_FILE));
	assert_int_equal(kill(pid, 0), -1); /* reaped */
	/* The snapshot (100 jobs, at the point it was taken) and the 16
	 * records committed since. */
	assert_int_equal(joblog_records(l), 100 + 16);
	assert_int_equal(joblog_compact_carried(l), 16);
	/* Appending goes on in the new log. */
	apply_samples(l, &t, 416, 4);
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_records(l), 120);
	follow(&jf, dir, &seen);
	/* Each record once, in order, no snapshot. */
	assert_int_equal(seen.snapshots, 0);
	assert_collected(&seen.c, 0, 420);
	joblog_free(l);

	/* The new log: the table as it is, and after the snapshots, the
	 * records carried and the new ones, each once. */
	assert_log_restates(dir, &t, &rest);
	assert_int_equal(rest.snapshots, 100);
	assert_collected(&rest.c, 400, 20);
	joblog_follow_release(&jf);
	job_table_release(&t);
	strbuf_release(&seen.c.lines);
	strbuf_release(&rest.c.lines);
}

/* Waits up to ms for the file fd reads to be emptied; its size then. */
static off_t size_after(int fd, int ms)
{
	struct stat st;

	for (int i = 0;; i += 10) {
		assert_int_equal(fstat(fd, &st), 0);
		if (st.st_size == 0 || i >= ms)
			return st.st_size;
		(void)poll(NULL, 0, 10);
	}
}

/* The old log's blocks are freed after a take-over only when nothing uses
 * it: a follower that has not read it to the end (log --follow | less,
 * paused past the delay) still gets every record, and a hard link to the
 * log keeps its content; with neither, the file is emptied. */
static void test_compact_keeps_old_log_in_use(void **state)
{
	_cleanup_free_ char *dir = new_dir(), *path = NULL, *link_path = NULL;
	struct followed seen = {{STRBUF_INIT, 0, NULL, 0}, 0};
	struct joblog_follow jf = JOBLOG_FOLLOW_INIT;
	struct job_table t;
	struct joblog *l = NULL;
	struct joblog_info info;
	struct stat st;
	int fd;

	(void)state;
	path = path_join(dir, JOBLOG_FILE);
	link_path = path_join(dir, "jobs.log.saved");
	assert_non_null(path);
	assert_non_null(link_path);
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	joblog_set_free_delay(l, 20);
	apply_samples(l, &t, 0, 40);
	assert_int_equal(joblog_commit(l), 0);
	follow(&jf, dir, &seen);
	assert_collected(&seen.c, 0, 40);
	/* Records the follower has not read when the log is replaced: only
	 * the old file holds them (they are before the snapshot point). */
	apply_samples(l, &t, 40, 40);
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_compact_begin(l, &t), 1);
	assert_int_equal(compact_end(l), 0);
	/* Well past the delay, the follower reads the old file's rest. */
	assert_int_not_equal(size_after(jf.fd, 1000), 0);
	assert_int_equal(joblog_follow_read(&jf, dir, follow_cb, &seen, &info), 0);
	assert_false(info.compacted_unread);
	assert_int_equal(seen.snapshots, 0);
	assert_collected(&seen.c, 0, 80);
	joblog_follow_release(&jf); /* it holds the log that is replaced next */

	/* A hard link to the log: the replaced file keeps its records. */
	assert_int_equal(link(path, link_path), 0);
	assert_int_equal(stat(link_path, &st), 0);
	assert_true(st.st_size > 0);
	apply_samples(l, &t, 80, 4);
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_compact_begin(l, &t), 1);
	assert_int_equal(compact_end(l), 0);
	fd = open(link_path, O_RDONLY | O_CLOEXEC); /* no lock: only a look */
	assert_true(fd >= 0);
	assert_int_not_equal(size_after(fd, 1000), 0);
	close(fd);

	/* Neither: the replaced log is emptied (the delay is short here). */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	apply_samples(l, &t, 84, 4);
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_compact_begin(l, &t), 1);
	assert_int_equal(compact_end(l), 0);
	assert_int_equal(size_after(fd, 5000), 0);
	close(fd);

	joblog_free(l);
	job_table_release(&t);
	strbuf_release(&seen.c.lines);
}

/* The child keeps none of the parent's descriptors but the three it uses:
 * one the parent closes (a client's connection, say) is closed.  The new
 * file is a FIFO here that nobody reads, so the child stays blocked in its
 * snapshot while the test looks. */
static void test_compact_child_closes_fds(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	_cleanup_free_ char *fifo = path_join(dir, JOBLOG_COMPACT_FILE);
	char procdir[64];
	struct job_table t;
	struct joblog *l = NULL;
	struct joblog_info info;
	struct pollfd p;
	int extra[2], n = 0, pid;
	DIR *d;

	(void)state;
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	apply_samples(l, &t, 0, 2000); /* 500 jobs: more than a pipe holds */
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(pipe(extra), 0); /* no O_CLOEXEC: fork keeps it */

	assert_int_equal(joblog_compact_begin(l, &t), 1);
	pid = joblog_compact_pid(l);
	assert_true(pid > 0);
	close(extra[1]);
	/* The end of file comes while the child lives. */
	p = (struct pollfd){.fd = extra[0], .events = POLLIN};
	assert_int_equal(poll(&p, 1, 10000), 1);
	assert_true(p.revents & POLLHUP);
	assert_int_equal(kill(pid, 0), 0);
	{
		siginfo_t si = {0};

		assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT), 0);
		assert_int_equal(si.si_pid, 0); /* not ended */
	}
	/* And it holds 0, 1, 2 and its three (once it is through closing:
	 * the end of file may come before the last range is closed). */
	snprintf(procdir, sizeof(procdir), "/proc/%d/fd", pid);
	for (int tries = 0; tries < 1000; tries++) {
		n = 0;
		d = opendir(procdir);
		assert_non_null(d);
		for (struct dirent *e; (e = readdir(d));)
			if (e->d_name[0] != '.')
				n++;
		closedir(d);
		if (n == 6)
			break;
		(void)poll(NULL, 0, 10);
	}
	assert_int_equal(n, 6);

	close(extra[0]);
	joblog_compact_abort(l);
	assert_false(joblog_compacting(l));
	joblog_free(l);
	job_table_release(&t);
}

/* A child that cannot write the new file (the file size limit, which it
 * inherits, as a full disk) leaves the old log whole and in use. */
static void test_compact_child_fails(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	struct job_table t;
	struct joblog *l = NULL;
	struct joblog_info info;
	struct strbuf before;

	(void)state;
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	apply_samples(l, &t, 0, 200);
	assert_int_equal(joblog_commit(l), 0);
	before = file_contents(dir);

	set_fsize(100);
	assert_int_equal(joblog_compact_begin(l, &t), 1);
	set_fsize(saved_fsize.rlim_cur);
	assert_int_equal(compact_end(l), -EFBIG);
	assert_false(joblog_compacting(l));
	assert_false(exists(dir, JOBLOG_COMPACT_FILE));
	{
		struct strbuf now = file_contents(dir);
		assert_int_equal(now.len, before.len);
		assert_memory_equal(now.buf, before.buf, before.len);
		strbuf_release(&now);
	}
	assert_int_equal(joblog_records(l), 200);
	/* The old log stays in use, and a later try succeeds. */
	apply_samples(l, &t, 200, 4);
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_compact(l, &t), 0);
	assert_int_equal(joblog_records(l), 51);
	joblog_free(l);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	assert_int_equal(info.records, 51);
	joblog_free(l);
	job_table_release(&t);
	strbuf_release(&before);
}

/* The child killed halfway, and the daemon dying during a compaction:
 * the old log stays whole, and the leftover new file is harmless. */
static void test_compact_killed(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	struct job_table t;
	struct joblog *l = NULL;
	struct joblog_info info;
	pid_t daemon_pid;
	int status;

	(void)state;
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	apply_samples(l, &t, 0, 200);
	assert_int_equal(joblog_commit(l), 0);

	/* The child killed: the compaction fails, records committed
	 * meanwhile stay in the old log. */
	assert_int_equal(joblog_compact_begin(l, &t), 1);
	assert_int_equal(kill(joblog_compact_pid(l), SIGKILL), 0);
	apply_samples(l, &t, 200, 4);
	assert_int_equal(commit_async(l), 0);
	assert_int_equal(compact_end(l), -ECHILD);
	assert_false(exists(dir, JOBLOG_COMPACT_FILE));
	assert_int_equal(joblog_records(l), 204);

	/* Stopped during a compaction: joblog_free() ends the child. */
	assert_int_equal(joblog_compact_begin(l, &t), 1);
	joblog_free(l);
	assert_false(exists(dir, JOBLOG_COMPACT_FILE));
	assert_log_holds(dir, 204);

	/* The daemon dies (no clean-up at all) while its child writes. */
	daemon_pid = fork();
	assert_true(daemon_pid >= 0);
	if (daemon_pid == 0) {
		struct joblog *dl = NULL;
		if (joblog_open(dir, &dl) < 0 || joblog_replay(dl, noop_cb, NULL, &info) < 0 ||
		    joblog_compact_begin(dl, &t) != 1)
			_exit(1);
		_exit(0);
	}
	assert_int_equal(waitpid(daemon_pid, &status, 0), daemon_pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(exists(dir, JOBLOG_COMPACT_FILE)); /* left behind */
	/* Its child holds the directory's lock (inherited) until it has died
	 * with its parent: no second writer beside it. */
	for (int i = 0; i < 100; i++) {
		int r = joblog_open(dir, &l);
		if (r != -EBUSY) {
			assert_int_equal(r, 0);
			joblog_free(l);
			break;
		}
		(void)poll(NULL, 0, 10);
	}
	/* The next start reads the old log, and compacts over the leftover. */
	assert_log_holds(dir, 204);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	assert_int_equal(joblog_compact(l, &t), 0);
	assert_int_equal(joblog_records(l), 51);
	assert_false(exists(dir, JOBLOG_COMPACT_FILE));
	joblog_free(l);
	job_table_release(&t);
}

/* Compaction and the asynchronous sync do not interfere: none begins
 * while a sync is in flight, and the new log takes over only between
 * syncs, with every record synced in the old one carried. */
static void test_compact_while_syncing(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	struct followed rest = {{STRBUF_INIT, 0, NULL, 0}, 0};
	struct job_table t;
	struct joblog *l = NULL;
	struct joblog_info info;

	(void)state;
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	apply_samples(l, &t, 0, 200);
	assert_int_equal(joblog_commit_start(l), 1);
	assert_int_equal(joblog_compact_begin(l, &t), -EBUSY);
	assert_int_equal(sync_end(l), 0);
	assert_int_equal(joblog_compact_begin(l, &t), 1);

	/* A sync in flight when the child ends: the finish waits for it. */
	apply_samples(l, &t, 200, 8);
	assert_int_equal(joblog_commit_start(l), 1);
	assert_int_equal(poll(&(struct pollfd){.fd = joblog_compact_fd(l), .events = POLLIN}, 1, 10000), 1);
	assert_int_equal(joblog_compact_finish(l), -EBUSY);
	assert_true(joblog_compacting(l));
	/* More records while it waits: pending, neither synced nor carried. */
	apply_samples(l, &t, 208, 4);
	assert_int_equal(sync_end(l), 0);
	assert_int_equal(compact_end(l), 0);
	assert_int_equal(joblog_records(l), 50 + 8);
	assert_true(joblog_has_pending(l));
	/* They go to the new log. */
	assert_int_equal(commit_async(l), 0);
	assert_int_equal(joblog_records(l), 50 + 12);
	joblog_free(l);
	assert_log_restates(dir, &t, &rest);
	assert_int_equal(rest.snapshots, 50);
	assert_collected(&rest.c, 200, 12);
	job_table_release(&t);
	strbuf_release(&rest.c.lines);
}

/* A log whose first snapshot claims a stream position no log reaches (a
 * hand edit) still compacts into a log that replays: the next position
 * must fit the record's integer. */
static void test_compact_huge_mark(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	struct strbuf sb = STRBUF_INIT;
	struct job_table t;
	struct joblog *l = NULL;
	struct joblog_info info;
	struct job_event ev = {.ts = TS0,
			       .id = "job-huge",
			       .kind = JOB_EV_SNAPSHOT,
			       .state = JOB_QUEUED,
			       .created = TS0,
			       .serial = "Q2AB-CD12-EF34",
			       .duration = 5,
			       .compact_mark = true,
			       .compacted_from = (uint64_t)INT64_MAX};

	(void)state;
	assert_int_equal(job_event_format(&ev, &sb), 0);
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	append_raw(dir, sb.buf, sb.len);
	assert_int_equal(joblog_replay(l, apply_to_table, &t, &info), 0);
	assert_int_equal(t.n_jobs, 1);
	apply_samples(l, &t, 0, 4);
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_compact(l, &t), 0);
	joblog_free(l);
	job_table_release(&t);
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, apply_to_table, &t, &info), 0);
	assert_int_equal(t.n_jobs, 2);
	joblog_free(l);
	job_table_release(&t);
	strbuf_release(&sb);
}

/* A follower that does not read while the log is compacted twice (here
 * with a restart of the writer in between, which replays where the log's
 * records sit in the stream) goes on right after the last record it
 * handed on: each record once, no snapshot.  And so after a compaction in
 * place (at start). */
static void test_follow_two_compactions(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	struct followed seen = {{STRBUF_INIT, 0, NULL, 0}, 0};
	struct joblog_follow jf = JOBLOG_FOLLOW_INIT;
	struct job_table t;
	struct joblog *l = NULL;
	struct joblog_info info;

	(void)state;
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	apply_samples(l, &t, 0, 400);
	assert_int_equal(joblog_commit(l), 0);
	follow(&jf, dir, &seen);
	assert_collected(&seen.c, 0, 400);

	/* The first, with records committed while the child writes. */
	assert_int_equal(joblog_compact_begin(l, &t), 1);
	apply_samples(l, &t, 400, 6);
	assert_int_equal(commit_async(l), 0);
	assert_int_equal(compact_end(l), 0);
	/* A restart, and the second, from the log the follower never saw. */
	joblog_free(l);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	assert_int_equal(joblog_compact_begin(l, &t), 1);
	apply_samples(l, &t, 406, 4);
	assert_int_equal(commit_async(l), 0);
	assert_int_equal(compact_end(l), 0);
	apply_samples(l, &t, 410, 4);
	assert_int_equal(joblog_commit(l), 0);

	assert_int_equal(joblog_follow_read(&jf, dir, follow_cb, &seen, &info), 0);
	assert_false(info.compacted_unread);
	assert_int_equal(seen.snapshots, 0);
	assert_collected(&seen.c, 0, 414);

	/* In place, as at start, and once more in the background. */
	assert_int_equal(joblog_compact(l, &t), 0);
	assert_int_equal(joblog_compact_begin(l, &t), 1);
	apply_samples(l, &t, 414, 4);
	assert_int_equal(commit_async(l), 0);
	assert_int_equal(compact_end(l), 0);
	apply_samples(l, &t, 418, 2);
	assert_int_equal(joblog_commit(l), 0);
	follow(&jf, dir, &seen);
	assert_int_equal(seen.snapshots, 0);
	assert_collected(&seen.c, 0, 420);

	joblog_follow_release(&jf);
	joblog_free(l);
	job_table_release(&t);
	strbuf_release(&seen.c.lines);
}

/* Records committed to a log that lived only between two reads, and
 * compacted away in it, cannot be read any more: the follower hands on the
 * snapshots that restate them instead, says so, and then the records after
 * them, each once. */
static void test_follow_compacted_unread(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	struct followed seen = {{STRBUF_INIT, 0, NULL, 0}, 0}, later = {{STRBUF_INIT, 0, NULL, 0}, 0};
	struct joblog_follow jf = JOBLOG_FOLLOW_INIT;
	struct job_table t;
	struct joblog *l = NULL;
	struct joblog_info info;

	(void)state;
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	apply_samples(l, &t, 0, 400);
	assert_int_equal(joblog_commit(l), 0);
	follow(&jf, dir, &seen);
	assert_collected(&seen.c, 0, 400);

	assert_int_equal(joblog_compact_begin(l, &t), 1);
	assert_int_equal(compact_end(l), 0);
	apply_samples(l, &t, 400, 8); /* never read, then compacted */
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_compact_begin(l, &t), 1);
	apply_samples(l, &t, 408, 4);
	assert_int_equal(commit_async(l), 0);
	assert_int_equal(compact_end(l), 0);

	assert_int_equal(joblog_follow_read(&jf, dir, follow_cb, &later, &info), 0);
	assert_true(info.compacted_unread);
	assert_int_equal(later.snapshots, 102);
	assert_collected(&later.c, 408, 4);
	/* Then on as usual. */
	apply_samples(l, &t, 412, 3);
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_follow_read(&jf, dir, follow_cb, &later, &info), 0);
	assert_false(info.compacted_unread);
	assert_int_equal(later.snapshots, 102);
	assert_collected(&later.c, 408, 7);

	joblog_follow_release(&jf);
	joblog_free(l);
	job_table_release(&t);
	strbuf_release(&seen.c.lines);
	strbuf_release(&later.c.lines);
}

/* A compaction that left no job starts the log's positions anew: a follower
 * that did not read the log in between (whose mark lies far past the new
 * positions) still hands on what came after, as the next compaction's
 * snapshots and the records that follow them. */
static void test_follow_after_empty_compaction(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	struct followed seen = {{STRBUF_INIT, 0, NULL, 0}, 0}, later = {{STRBUF_INIT, 0, NULL, 0}, 0};
	struct followed other = {{STRBUF_INIT, 0, NULL, 0}, 0};
	struct joblog_follow jf = JOBLOG_FOLLOW_INIT, jf2 = JOBLOG_FOLLOW_INIT;
	struct job_table t, empty, t2;
	struct joblog *l = NULL;
	struct joblog_info info;

	(void)state;
	assert_int_equal(job_table_init(&t), 0);
	assert_int_equal(job_table_init(&empty), 0);
	assert_int_equal(job_table_init(&t2), 0);
	assert_int_equal(joblog_open(dir, &l), 0);
	assert_int_equal(joblog_replay(l, noop_cb, NULL, &info), 0);
	apply_samples(l, &t, 0, 200); /* 50 jobs */
	assert_int_equal(joblog_commit(l), 0);
	follow(&jf, dir, &seen);
	assert_collected(&seen.c, 0, 200);
	follow(&jf2, dir, &other);

	/* Every job gone (purged): an empty compaction, never read by this
	 * follower; a second one reads it. */
	assert_int_equal(joblog_compact_begin(l, &empty), 0);
	apply_samples(l, &t2, 200, 20); /* 5 new jobs */
	assert_int_equal(joblog_commit(l), 0);
	follow(&jf2, dir, &other);
	assert_collected(&other.c, 0, 220);
	assert_int_equal(joblog_compact_begin(l, &t2), 1);
	assert_int_equal(compact_end(l), 0);
	apply_samples(l, &t2, 220, 12); /* 3 more */
	assert_int_equal(joblog_commit(l), 0);

	assert_int_equal(joblog_follow_read(&jf, dir, follow_cb, &later, &info), 0);
	assert_true(info.compacted_unread);
	assert_int_equal(later.snapshots, 5);
	assert_collected(&later.c, 220, 12);
	/* The one that read the log in between: no snapshot, each record once. */
	assert_int_equal(joblog_follow_read(&jf2, dir, follow_cb, &other, &info), 0);
	assert_false(info.compacted_unread);
	assert_int_equal(other.snapshots, 0);
	assert_collected(&other.c, 0, 232);
	/* Then on as usual. */
	apply_samples(l, &t2, 232, 4);
	assert_int_equal(joblog_commit(l), 0);
	assert_int_equal(joblog_follow_read(&jf, dir, follow_cb, &later, &info), 0);
	assert_false(info.compacted_unread);
	assert_int_equal(later.snapshots, 5);
	assert_collected(&later.c, 220, 16);

	joblog_follow_release(&jf);
	joblog_follow_release(&jf2);
	joblog_free(l);
	job_table_release(&t);
	job_table_release(&empty);
	job_table_release(&t2);
	strbuf_release(&seen.c.lines);
	strbuf_release(&later.c.lines);
	strbuf_release(&other.c.lines);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_creates),
		cmocka_unit_test(test_lock),
		cmocka_unit_test(test_compact),
		cmocka_unit_test(test_bad_complete_tail_is_damage),
		cmocka_unit_test(test_append_commit_replay),
		cmocka_unit_test(test_append_without_commit),
		cmocka_unit_test(test_append_too_long),
		cmocka_unit_test(test_torn_tail),
		cmocka_unit_test(test_damage_in_middle),
		cmocka_unit_test(test_future_version),
		cmocka_unit_test(test_replay_callback_error),
		cmocka_unit_test(test_read),
		cmocka_unit_test(test_read_callback_error),
		cmocka_unit_test(test_read_truncated),
		cmocka_unit_test_setup_teardown(test_commit_failure, fsize_setup, fsize_teardown),
		cmocka_unit_test(test_commit_async),
		cmocka_unit_test_setup_teardown(test_commit_async_failure, fsize_setup, fsize_teardown),
		cmocka_unit_test(test_compact_background),
		cmocka_unit_test(test_compact_keeps_old_log_in_use),
		cmocka_unit_test(test_compact_child_closes_fds),
		cmocka_unit_test_setup_teardown(test_compact_child_fails, fsize_setup, fsize_teardown),
		cmocka_unit_test(test_compact_killed),
		cmocka_unit_test(test_compact_while_syncing),
		cmocka_unit_test(test_compact_huge_mark),
		cmocka_unit_test(test_follow_two_compactions),
		cmocka_unit_test(test_follow_compacted_unread),
		cmocka_unit_test(test_follow_after_empty_compaction),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
