/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "testlib.h"

#include "blinkhook/queue.h"

#define SERIAL "Q2AB-CD12-EF34"

static unsigned dir_counter;

/* Where setting set-user-id or set-group-id is not allowed (systemd's
 * RestrictSUIDSGID=), fchmod() with either fails; this one does so while
 * no_suid_sgid is set. */
static bool no_suid_sgid;
int fchmod(int fd, mode_t mode)
{
	if (no_suid_sgid && (mode & (S_ISUID | S_ISGID))) {
		errno = EPERM;
		return -1;
	}
	return (int)syscall(SYS_fchmod, fd, mode);
}

static int group_setup(void **state)
{
	(void)state;
	return tmpdir_setup("test_queue");
}

static int group_teardown(void **state)
{
	(void)state;
	return tmpdir_teardown();
}

/* A spool path that does not exist yet. */
static char *new_spool(void)
{
	char name[32];
	char *p;

	snprintf(name, sizeof(name), "spool%u", dir_counter++);
	p = path_join(tmpdir, name);
	assert_non_null(p);
	return p;
}

static char *join3(const char *a, const char *b, const char *c)
{
	_cleanup_free_ char *ab = path_join(a, b);
	char *p;

	assert_non_null(ab);
	p = path_join(ab, c);
	assert_non_null(p);
	return p;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, data, len), 0);
	assert_int_equal(close(fd), 0);
}

static void write_in(const char *spool, const char *sub, const char *name, const char *content)
{
	_cleanup_free_ char *p = join3(spool, sub, name);

	write_file(p, content, strlen(content));
}

static bool exists_in(const char *spool, const char *sub, const char *name)
{
	_cleanup_free_ char *p = join3(spool, sub, name);
	struct stat st;

	return lstat(p, &st) == 0;
}

static char *read_in(const char *spool, const char *sub, const char *name)
{
	_cleanup_free_ char *p = join3(spool, sub, name);
	char *buf = NULL;

	assert_int_equal(read_file_capped(AT_FDCWD, p, 65536, &buf, NULL), 0);
	return buf;
}

static void set_mtime(const char *spool, const char *sub, const char *name, uint64_t usec)
{
	_cleanup_free_ char *p = join3(spool, sub, name);
	struct timespec ts[2] = {
		{.tv_sec = (time_t)(usec / USEC_PER_SEC), .tv_nsec = (long)(usec % USEC_PER_SEC) * 1000},
		{.tv_sec = (time_t)(usec / USEC_PER_SEC), .tv_nsec = (long)(usec % USEC_PER_SEC) * 1000},
	};

	assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static size_t count_entries(const char *spool, const char *sub)
{
	_cleanup_free_ char *p = path_join(spool, sub);
	size_t n = 0;
	int fd;

	assert_non_null(p);
	fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	DIR *d = fdopendir(fd);
	assert_non_null(d);
	for (struct dirent *de; (de = readdir(d));)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* ---- parsing requests ---- */

static void parse_ok(const char *buf, const char *id, const char *serial, unsigned duration, const char *cancel)
{
	struct queue_request req;
	const char *reason = NULL;

	memset(&req, 0x5a, sizeof(req));
	assert_int_equal(queue_parse_request(buf, strlen(buf), &req, &reason), 0);
	assert_null(reason);
	assert_string_equal(req.id, id);
	assert_string_equal(req.serial, serial);
	assert_int_equal(req.duration, duration);
	assert_string_equal(req.cancel, cancel);
}

static void parse_bad_len(const char *buf, size_t len, const char *reason_has)
{
	struct queue_request req, before;
	const char *reason = NULL;

	memset(&req, 0x5a, sizeof(req));
	before = req;
	assert_int_equal(queue_parse_request(buf, len, &req, &reason), -EINVAL);
	assert_non_null(reason);
	if (!strstr(reason, reason_has))
		fail_msg("request %.60s: reason \"%s\" does not mention \"%s\"", buf, reason, reason_has);
	/* Nothing written on failure. */
	assert_memory_equal(&req, &before, sizeof(req));
}

static void parse_bad(const char *buf, const char *reason_has)
{
	parse_bad_len(buf, strlen(buf), reason_has);
}

static void test_parse_good(void **state)
{
	(void)state;
	parse_ok("{\"serial\":\"" SERIAL "\"}", "", SERIAL, JOB_DURATION_DEFAULT, "");
	parse_ok("{\"serial\":\"" SERIAL "\",\"duration\":5}", "", SERIAL, 5, "");
	parse_ok(" {\"duration\": 1, \"serial\": \"" SERIAL "\", \"id\": \"my-job_1\"}\n", "my-job_1", SERIAL, 1, "");
	parse_ok("{\"id\":\"x\",\"serial\":\"" SERIAL "\",\"duration\":3600}", "x", SERIAL, 3600, "");
	parse_ok("{\"cancel\":\"my-job_1\"}", "", "", 0, "my-job_1");
	assert_int_equal(JOB_DURATION_DEFAULT, 20);
}

static void test_parse_bad(void **state)
{
	(void)state;
	char id65[80];

	parse_bad("not json", "JSON");
	parse_bad("", "JSON");
	parse_bad("{\"serial\":\"" SERIAL "\"", "JSON");
	parse_bad("{\"serial\":\"" SERIAL "\"} {}", "JSON");
	static const char with_nul[] = "{\"serial\":\"" SERIAL "\"}\0";
	parse_bad_len(with_nul, sizeof(with_nul), "JSON");
	parse_bad("[\"" SERIAL "\"]", "object");
	parse_bad("\"" SERIAL "\"", "object");
	parse_bad("20\n", "object");
	parse_bad("true\n", "object");
	parse_bad("{\"serial\":\"" SERIAL "\",\"colour\":\"red\"}", "unknown field");
	parse_bad("{\"Serial\":\"" SERIAL "\"}", "unknown field");
	parse_bad("{}", "serial");
	parse_bad("{\"duration\":20}", "serial");
	parse_bad("{\"serial\":\"Q2AB-CD12\"}", "serial");
	parse_bad("{\"serial\":\"Q2AB-CD12-EF34-\"}", "serial");
	parse_bad("{\"serial\":\"Q2AB CD12 EF34\"}", "serial");
	parse_bad("{\"serial\":5}", "serial");
	parse_bad("{\"serial\":null}", "serial");
	parse_bad("{\"serial\":\"" SERIAL "\",\"duration\":0}", "duration");
	parse_bad("{\"serial\":\"" SERIAL "\",\"duration\":3601}", "duration");
	parse_bad("{\"serial\":\"" SERIAL "\",\"duration\":-1}", "duration");
	parse_bad("{\"serial\":\"" SERIAL "\",\"duration\":\"20\"}", "duration");
	parse_bad("{\"serial\":\"" SERIAL "\",\"duration\":1.5}", "duration");
	parse_bad("{\"serial\":\"" SERIAL "\",\"duration\":true}", "duration");
	parse_bad("{\"serial\":\"" SERIAL "\",\"duration\":null}", "duration");
	parse_bad("{\"serial\":\"" SERIAL "\",\"duration\":99999999999999999999}", "duration");
	parse_bad("{\"serial\":\"" SERIAL "\",\"id\":\"\"}", "id");
	parse_bad("{\"serial\":\"" SERIAL "\",\"id\":\"a b\"}", "id");
	parse_bad("{\"serial\":\"" SERIAL "\",\"id\":\"a/b\"}", "id");
	parse_bad("{\"serial\":\"" SERIAL "\",\"id\":7}", "id");
	memset(id65, 'i', 65);
	id65[65] = 0;
	char buf[200];
	snprintf(buf, sizeof(buf), "{\"serial\":\"" SERIAL "\",\"id\":\"%s\"}", id65);
	parse_bad(buf, "id");
	id65[64] = 0; /* 64 is the most */
	snprintf(buf, sizeof(buf), "{\"serial\":\"" SERIAL "\",\"id\":\"%s\"}", id65);
	parse_ok(buf, id65, SERIAL, 20, "");

	/* Cancel requests stand alone. */
	parse_bad("{\"cancel\":\"job1\",\"serial\":\"" SERIAL "\"}", "cancel");
	parse_bad("{\"cancel\":\"job1\",\"duration\":20}", "cancel");
	parse_bad("{\"cancel\":\"job1\",\"id\":\"job2\"}", "cancel");
	parse_bad("{\"id\":\"job2\",\"cancel\":\"job1\"}", "cancel");
	parse_bad("{\"cancel\":\"\"}", "cancel");
	parse_bad("{\"cancel\":\"a b\"}", "cancel");
	parse_bad("{\"cancel\":1}", "cancel");
}

/* A device named by its Dashboard name or its MAC instead of a serial. */
static void parse_device_ok(const char *buf, const char *name, const char *mac)
{
	struct queue_request req;
	const char *reason = NULL;

	memset(&req, 0x5a, sizeof(req));
	assert_int_equal(queue_parse_request(buf, strlen(buf), &req, &reason), 0);
	assert_string_equal(req.serial, "");
	assert_string_equal(req.name, name);
	assert_string_equal(req.mac, mac);
	assert_string_equal(req.cancel, "");
}

static void test_parse_name_mac(void **state)
{
	(void)state;
	char buf[600], name[300];

	parse_device_ok("{\"name\":\"edge-sw-1\",\"duration\":5}", "edge-sw-1", "");
	parse_device_ok("{\"name\":\"Lobby AP (2nd floor) \u00e9\"}", "Lobby AP (2nd floor) \xc3\xa9", "");
	parse_device_ok("{\"mac\":\"00:18:0A:12:34:AB\"}", "", "00:18:0a:12:34:ab");
	parse_device_ok("{\"mac\":\"00-18-0a-12-34-ab\"}", "", "00:18:0a:12:34:ab");
	parse_device_ok("{\"mac\":\"0018.0A12.34ab\"}", "", "00:18:0a:12:34:ab");
	parse_device_ok("{\"mac\":\"00180a1234AB\"}", "", "00:18:0a:12:34:ab");
	memset(name, 'n', 255);
	name[255] = 0;
	snprintf(buf, sizeof(buf), "{\"name\":\"%s\"}", name);
	parse_device_ok(buf, name, "");
	name[255] = 'n';
	name[256] = 0;
	snprintf(buf, sizeof(buf), "{\"name\":\"%s\"}", name);
	parse_bad(buf, "name");

	parse_bad("{\"name\":\"\"}", "name");
	parse_bad("{\"name\":\"a\\nb\"}", "name");
	parse_bad("{\"name\":\"a\\u001bb\"}", "name");
	parse_bad("{\"name\":\"a\\u007fb\"}", "name");
	parse_bad("{\"name\":\"a\\u009bb\"}", "name");
	parse_bad("{\"name\":7}", "name");
	parse_bad("{\"name\":null}", "name");
	parse_bad("{\"mac\":\"00:18:0a:12:34\"}", "mac");
	parse_bad("{\"mac\":\"00:18:0a:12:34:ag\"}", "mac");
	parse_bad("{\"mac\":\"00:18-0a:12:34:ab\"}", "mac");
	parse_bad("{\"mac\":\"001:8:0a:12:34:ab\"}", "mac");
	parse_bad("{\"mac\":\"0018.0a12:34ab\"}", "mac");
	parse_bad("{\"mac\":\"00180a1234ab0\"}", "mac");
	parse_bad("{\"mac\":\" 00180a1234ab\"}", "mac");
	parse_bad("{\"mac\":\"00.18.0a.12.34.ab\"}", "mac");
	parse_bad("{\"mac\":\"\"}", "mac");

	/* Exactly one device. */
	parse_bad("{\"name\":\"a\",\"serial\":\"" SERIAL "\"}", "exactly one");
	parse_bad("{\"serial\":\"" SERIAL "\",\"mac\":\"00180a1234ab\"}", "exactly one");
	parse_bad("{\"name\":\"a\",\"mac\":\"00180a1234ab\"}", "exactly one");
	parse_bad("{\"duration\":5,\"id\":\"x\"}", "missing");
	parse_bad("{\"cancel\":\"job1\",\"name\":\"a\"}", "cancel");
	parse_bad("{\"cancel\":\"job1\",\"mac\":\"00180a1234ab\"}", "cancel");
}

static void test_name_mac_validators(void **state)
{
	(void)state;
	char mac[JOB_MAC_LEN + 1];

	assert_true(job_name_valid("x"));
	assert_true(job_name_valid("sw \xe2\x82\xac 1"));
	assert_false(job_name_valid(""));
	assert_false(job_name_valid(NULL));
	assert_false(job_name_valid("a\tb"));
	assert_false(job_name_valid("bad \xff utf8"));
	assert_false(job_name_valid("\xc0\xaf")); /* overlong */
	assert_int_equal(mac_normalize("AA:BB:CC:DD:EE:FF", mac), 0);
	assert_string_equal(mac, "aa:bb:cc:dd:ee:ff");
	assert_int_equal(mac_normalize("aabb.ccdd.eeff", mac), 0);
	assert_string_equal(mac, "aa:bb:cc:dd:ee:ff");
	assert_int_equal(mac_normalize("aa:bb:cc:dd:ee:f", mac), -EINVAL);
	assert_int_equal(mac_normalize("aa:bb:cc:dd:ee:ff:", mac), -EINVAL);
	assert_int_equal(mac_normalize("aabbccddeef", mac), -EINVAL);
	assert_int_equal(mac_normalize("aa bb cc dd ee ff", mac), -EINVAL);
	assert_int_equal(mac_normalize("aabb-ccdd-eeff", mac), -EINVAL);
	assert_int_equal(mac_normalize(NULL, mac), -EINVAL);
	assert_true(mac_is_normal("aa:bb:cc:dd:ee:ff"));
	assert_false(mac_is_normal("AA:bb:cc:dd:ee:ff"));
	assert_false(mac_is_normal("aabbccddeeff"));
}

static void test_parse_size(void **state)
{
	(void)state;
	char buf[QUEUE_FILE_MAX + 2];
	static const char req[] = "{\"serial\":\"" SERIAL "\"}";

	/* A valid request padded with white space to exactly the most... */
	memset(buf, ' ', sizeof(buf));
	memcpy(buf, req, strlen(req));
	buf[QUEUE_FILE_MAX - 1] = '\n';
	struct queue_request r;
	const char *reason = NULL;
	assert_int_equal(queue_parse_request(buf, QUEUE_FILE_MAX, &r, &reason), 0);
	assert_string_equal(r.serial, SERIAL);
	/* ... and one byte more. */
	parse_bad_len(buf, QUEUE_FILE_MAX + 1, "4096");
	parse_bad_len(buf, sizeof(buf), "larger");
}

static void test_format_roundtrip(void **state)
{
	(void)state;
	const struct queue_request reqs[] = {
		{.id = "prod-1", .serial = SERIAL, .duration = 45},
		{.serial = "Q2ZZ-0000-9999", .duration = 1},
		{.id = "x", .serial = SERIAL, .duration = 3600},
		{.cancel = "prod-1"},
		{.id = "by-name", .name = "edge-sw-1 \xc3\xa9", .duration = 7},
		{.mac = "00:18:0a:12:34:ab", .duration = 20},
	};

	for (size_t i = 0; i < ELEMENTSOF(reqs); i++) {
		struct strbuf sb = STRBUF_INIT;
		struct queue_request got;
		const char *reason = NULL;

		assert_int_equal(queue_format_request(&reqs[i], &sb), 0);
		assert_int_equal(sb.buf[sb.len - 1], '\n');
		assert_int_equal(queue_parse_request(sb.buf, sb.len, &got, &reason), 0);
		assert_string_equal(got.id, reqs[i].id);
		assert_string_equal(got.serial, reqs[i].serial);
		assert_string_equal(got.name, reqs[i].name);
		assert_string_equal(got.mac, reqs[i].mac);
		assert_int_equal(got.duration, reqs[i].duration);
		assert_string_equal(got.cancel, reqs[i].cancel);
		strbuf_release(&sb);
	}
}

/* ---- the spool ---- */

static void test_open(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	_cleanup_free_ char *nested = join3(spool, "deeper", "spool");
	_cleanup_free_ char *newp = path_join(nested, "new");
	const char *subs[] = {"tmp", "new", "rejected"};
	struct queue *q = NULL;
	struct stat st;

	assert_int_equal(queue_open(nested, &q), 0);
	for (size_t i = 0; i < ELEMENTSOF(subs); i++) {
		_cleanup_free_ char *p = path_join(nested, subs[i]);

		assert_int_equal(stat(p, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(st.st_mode & 0007, 0); /* at most 0770 */
	}
	assert_string_equal(queue_new_path(q), newp);
	assert_int_equal(fstat(queue_new_fd(q), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	queue_free(q);
	queue_free(NULL);

	/* Opening an existing spool keeps what is in it. */
	write_in(nested, "new", "keep.json", "{}");
	q = NULL;
	assert_int_equal(queue_open(nested, &q), 0);
	assert_true(exists_in(nested, "new", "keep.json"));
	queue_free(q);

	/* A file where the spool should be. */
	_cleanup_free_ char *file = path_join(spool, "afile");
	write_file(file, "x", 1);
	q = (struct queue *)(uintptr_t)0x1;
	assert_true(queue_open(file, &q) < 0);
	assert_ptr_equal(q, (struct queue *)(uintptr_t)0x1);
}

static void test_open_no_sgid(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	struct queue *q = NULL;
	struct stat st;

	no_suid_sgid = true;
	assert_int_equal(queue_open(spool, &q), 0);
	no_suid_sgid = false;
	/* Without set-group-id, tmp/ and new/ still sticky: a member cannot
	 * remove or rename another's file. */
	for (const char *const *sub = (const char *const[]){"tmp", "new", NULL}; *sub; sub++) {
		_cleanup_free_ char *p = path_join(spool, *sub);

		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 07777, 01770);
	}
	queue_free(q);
}

static void test_enqueue(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	struct queue *q = NULL;
	struct queue_request req = {.id = "prod-1", .serial = SERIAL, .duration = 45}, got;
	const char *reason = NULL;
	char name[JOB_ID_MAX + 16];

	/* Producers may enqueue before the daemon ever opened the spool. */
	assert_int_equal(queue_enqueue(spool, &req), 0);
	assert_string_equal(req.id, "prod-1");
	assert_int_equal(queue_open(spool, &q), 0);
	assert_true(exists_in(spool, "new", "prod-1.json"));
	assert_int_equal(count_entries(spool, "tmp"), 0);
	assert_int_equal(queue_read(q, "prod-1.json", &got, &reason), 0);
	assert_string_equal(got.id, "prod-1");
	assert_string_equal(got.serial, SERIAL);
	assert_int_equal(got.duration, 45);
	assert_string_equal(got.cancel, "");

	/* The same id while the first waits: refused, nothing left behind,
	 * the waiting file unchanged. */
	struct queue_request dup = {.id = "prod-1", .serial = "Q2ZZ-0000-9999", .duration = 1};
	assert_int_equal(queue_enqueue(spool, &dup), -EEXIST);
	assert_int_equal(count_entries(spool, "tmp"), 0);
	assert_int_equal(queue_read(q, "prod-1.json", &got, &reason), 0);
	assert_string_equal(got.serial, SERIAL);

	/* No id: one is picked, returned, and written into the file. */
	struct queue_request anon = {.serial = "Q2ZZ-0000-9999", .duration = 7};
	assert_int_equal(queue_enqueue(spool, &anon), 0);
	assert_true(job_id_is_valid(anon.id));
	snprintf(name, sizeof(name), "%s.json", anon.id);
	assert_true(exists_in(spool, "new", name));
	assert_int_equal(queue_read(q, name, &got, &reason), 0);
	assert_string_equal(got.id, anon.id);
	assert_string_equal(got.serial, "Q2ZZ-0000-9999");
	assert_int_equal(got.duration, 7);

	/* A cancel request. */
	struct queue_request cancel = {.cancel = "prod-1"};
	assert_int_equal(queue_enqueue(spool, &cancel), 0);
	char **names = NULL;
	size_t n = 0;
	assert_int_equal(queue_list(q, 100, &names, &n), 0);
	assert_int_equal(n, 3);
	const char *cname = NULL;
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], "prod-1.json") != 0 && strcmp(names[i], name) != 0)
			cname = names[i];
	assert_non_null(cname);
	memset(&got, 0x5a, sizeof(got));
	assert_int_equal(queue_read(q, cname, &got, &reason), 0);
	assert_string_equal(got.cancel, "prod-1");
	assert_string_equal(got.id, "");
	assert_string_equal(got.serial, "");
	/* Two cancels of the same job are two files. */
	assert_int_equal(queue_enqueue(spool, &cancel), 0);
	assert_int_equal(count_entries(spool, "new"), 4);
	assert_int_equal(count_entries(spool, "tmp"), 0);
	queue_names_free(names);
	queue_free(q);
}

static void test_list(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	struct queue *q = NULL;
	char **names = NULL;
	size_t n = 99;

	assert_int_equal(queue_open(spool, &q), 0);

	/* Empty. */
	assert_int_equal(queue_list(q, 10, &names, &n), 0);
	assert_int_equal(n, 0);
	assert_non_null(names);
	assert_null(names[0]);
	queue_names_free(names);

	write_in(spool, "new", "b.json", "{}");
	write_in(spool, "new", "c.json", "{}");
	write_in(spool, "new", "a.json", "{}");
	write_in(spool, "new", ".hidden", "{}");
	write_in(spool, "new", ".a.json.part", "{}");

	assert_int_equal(queue_list(q, 10, &names, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "a.json");
	assert_string_equal(names[1], "b.json");
	assert_string_equal(names[2], "c.json");
	assert_null(names[3]);
	queue_names_free(names);

	/* Only the oldest max. */
	assert_int_equal(queue_list(q, 2, &names, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "a.json");
	assert_string_equal(names[1], "b.json");
	assert_null(names[2]);
	queue_names_free(names);
	assert_int_equal(queue_list(q, 0, &names, &n), 0);
	assert_int_equal(n, 0);
	assert_null(names[0]);
	queue_names_free(names);

	/* Many, past any initial allocation, written in reverse order. */
	char name[32];
	for (int i = 299; i >= 0; i--) {
		snprintf(name, sizeof(name), "m%03d.json", i);
		write_in(spool, "new", name, "{}");
	}
	assert_int_equal(queue_list(q, 1000, &names, &n), 0);
	assert_int_equal(n, 303);
	assert_string_equal(names[3], "m000.json");
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(names[i - 1], names[i]) < 0);
	assert_null(names[n]);
	queue_names_free(names);
	assert_int_equal(queue_list(q, 150, &names, &n), 0);
	assert_int_equal(n, 150);
	assert_string_equal(names[149], "m146.json");
	queue_names_free(names);

	/* The list reads the directory afresh each time. */
	assert_int_equal(queue_remove(q, "a.json"), 0);
	assert_int_equal(queue_list(q, 1, &names, &n), 0);
	assert_string_equal(names[0], "b.json");
	queue_names_free(names);
	queue_names_free(NULL);
	queue_free(q);
}

static void read_bad(struct queue *q, const char *name, int want, const char *reason_has)
{
	struct queue_request req, before;
	const char *reason = NULL;

	memset(&req, 0x5a, sizeof(req));
	before = req;
	assert_int_equal(queue_read(q, name, &req, &reason), want);
	assert_memory_equal(&req, &before, sizeof(req));
	if (reason_has) {
		assert_non_null(reason);
		if (!strstr(reason, reason_has))
			fail_msg("%s: reason \"%s\" does not mention \"%s\"", name, reason, reason_has);
	}
}

static void test_read_odd_files(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	_cleanup_free_ char *target = NULL, *link = NULL, *dir = NULL, *fifo = NULL;
	struct queue *q = NULL;
	char big[QUEUE_FILE_MAX + 100];

	assert_int_equal(queue_open(spool, &q), 0);

	/* A symbolic link to a good request elsewhere. */
	target = path_join(spool, "outside.json");
	write_file(target, "{\"serial\":\"" SERIAL "\"}", strlen("{\"serial\":\"" SERIAL "\"}"));
	link = join3(spool, "new", "link.json");
	assert_int_equal(symlink(target, link), 0);
	read_bad(q, "link.json", -EINVAL, "symbolic link");

	dir = join3(spool, "new", "dir.json");
	assert_int_equal(mkdir(dir, 0700), 0);
	read_bad(q, "dir.json", -EINVAL, "regular file");

	/* A FIFO must not hang the reader. */
	fifo = join3(spool, "new", "fifo.json");
	assert_int_equal(mkfifo(fifo, 0600), 0);
	read_bad(q, "fifo.json", -EINVAL, "regular file");

	/* Too large, even if it is valid JSON with padding. */
	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"serial\":\"" SERIAL "\"}", strlen("{\"serial\":\"" SERIAL "\"}"));
	big[sizeof(big) - 1] = 0;
	write_in(spool, "new", "big.json", big);
	read_bad(q, "big.json", -EINVAL, "4096");

	write_in(spool, "new", "bad.json", "{\"serial\":\"nope\"}");
	read_bad(q, "bad.json", -EINVAL, "serial");
	write_in(spool, "new", "empty.json", "");
	read_bad(q, "empty.json", -EINVAL, "JSON");

	/* Gone between the listing and the read. */
	read_bad(q, "vanished.json", -ENOENT, NULL);

	queue_free(q);
}

static void read_id(struct queue *q, const char *name, char id[static JOB_ID_MAX + 1])
{
	struct queue_request req;
	const char *reason = NULL;

	assert_int_equal(queue_read(q, name, &req, &reason), 0);
	assert_true(job_id_is_valid(req.id));
	assert_string_equal(req.serial, SERIAL);
	strcpy(id, req.id);
}

static void test_derived_id(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	_cleanup_free_ char *path = NULL, *aside = NULL;
	struct queue *q = NULL;
	char id1[JOB_ID_MAX + 1], id2[JOB_ID_MAX + 1], id3[JOB_ID_MAX + 1], id4[JOB_ID_MAX + 1];
	const uint64_t mtime = UINT64_C(1764241648) * USEC_PER_SEC + 123456;
	static const char content[] = "{\"serial\":\"" SERIAL "\"}\n";

	assert_int_equal(queue_open(spool, &q), 0);
	write_in(spool, "new", "x.json", content);
	set_mtime(spool, "new", "x.json", mtime);

	/* Stable: the same file gives the same id, across queue handles too. */
	read_id(q, "x.json", id1);
	read_id(q, "x.json", id2);
	assert_string_equal(id1, id2);
	queue_free(q);
	q = NULL;
	assert_int_equal(queue_open(spool, &q), 0);
	read_id(q, "x.json", id2);
	assert_string_equal(id1, id2);

	/* Another file of the same name, same bytes, same mtime, while the
	 * first still exists (so not the same inode): another job. */
	path = join3(spool, "new", "x.json");
	aside = join3(spool, "new", ".x.json.old");
	assert_int_equal(rename(path, aside), 0);
	write_in(spool, "new", "x.json", content);
	set_mtime(spool, "new", "x.json", mtime);
	read_id(q, "x.json", id3);
	assert_string_not_equal(id1, id3);

	/* A later file of the same name after the first is gone (its inode
	 * may be reused): another job too. */
	assert_int_equal(unlink(aside), 0);
	assert_int_equal(unlink(path), 0);
	write_in(spool, "new", "x.json", content);
	set_mtime(spool, "new", "x.json", mtime + USEC_PER_SEC);
	read_id(q, "x.json", id4);
	assert_string_not_equal(id1, id4);
	assert_string_not_equal(id3, id4);

	/* A producer's own id is used as it is. */
	write_in(spool, "new", "y.json", "{\"id\":\"mine\",\"serial\":\"" SERIAL "\"}");
	read_id(q, "y.json", id1);
	assert_string_equal(id1, "mine");
	queue_free(q);
}

static void test_reject(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	_cleanup_free_ char *content = NULL, *why = NULL;
	struct queue *q = NULL;
	struct queue_request req;
	const char *reason = NULL;
	static const char bad[] = "{\"serial\":\"" SERIAL "\",\"duration\":0}";

	assert_int_equal(queue_open(spool, &q), 0);
	write_in(spool, "new", "bad.json", bad);
	assert_int_equal(queue_read(q, "bad.json", &req, &reason), -EINVAL);
	assert_non_null(reason);

	assert_int_equal(queue_reject(q, "bad.json", reason), 0);
	assert_false(exists_in(spool, "new", "bad.json"));
	content = read_in(spool, "rejected", "bad.json");
	assert_string_equal(content, bad);
	why = read_in(spool, "rejected", "bad.json.reason");
	char want[256];
	snprintf(want, sizeof(want), "%s\n", reason);
	assert_string_equal(why, want);

	/* A file that is gone cannot be rejected, and leaves no reason. */
	assert_int_equal(queue_reject(q, "gone.json", "whatever"), -ENOENT);
	assert_false(exists_in(spool, "rejected", "gone.json.reason"));
	assert_int_equal(count_entries(spool, "rejected"), 2);
	queue_free(q);
}

static void test_remove(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	struct queue *q = NULL;

	assert_int_equal(queue_open(spool, &q), 0);
	write_in(spool, "new", "a.json", "{}");
	write_in(spool, "new", "b.json", "{}");
	assert_int_equal(queue_remove(q, "a.json"), 0);
	assert_false(exists_in(spool, "new", "a.json"));
	assert_true(exists_in(spool, "new", "b.json"));
	/* Removing what is already gone is fine (a retry after a crash). */
	assert_int_equal(queue_remove(q, "a.json"), 0);
	assert_int_equal(queue_sync(q), 0);
	queue_free(q);
}

static void test_sweep_tmp(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	struct queue *q = NULL;
	const uint64_t now = UINT64_C(1764241648) * USEC_PER_SEC;

	assert_int_equal(queue_open(spool, &q), 0);
	assert_int_equal(queue_sweep_tmp(q, now), 0);

	write_in(spool, "tmp", "stale", "{\"ser");
	set_mtime(spool, "tmp", "stale", now - QUEUE_TMP_STALE_USEC);
	write_in(spool, "tmp", "ancient", "{");
	set_mtime(spool, "tmp", "ancient", now - USEC_PER_DAY);
	write_in(spool, "tmp", "writing", "{\"serial\"");
	set_mtime(spool, "tmp", "writing", now - QUEUE_TMP_STALE_USEC + 1);
	write_in(spool, "tmp", "future", "{");
	set_mtime(spool, "tmp", "future", now + USEC_PER_SEC);

	assert_int_equal(queue_sweep_tmp(q, now), 2);
	assert_false(exists_in(spool, "tmp", "stale"));
	assert_false(exists_in(spool, "tmp", "ancient"));
	assert_true(exists_in(spool, "rejected", "stale"));
	assert_true(exists_in(spool, "rejected", "ancient"));
	assert_true(exists_in(spool, "tmp", "writing"));
	assert_true(exists_in(spool, "tmp", "future"));
	_cleanup_free_ char *moved = read_in(spool, "rejected", "stale");
	assert_string_equal(moved, "{\"ser");

	/* Nothing more until time passes. */
	assert_int_equal(queue_sweep_tmp(q, now), 0);
	assert_int_equal(queue_sweep_tmp(q, now + 1), 1);
	assert_false(exists_in(spool, "tmp", "writing"));
	assert_true(exists_in(spool, "tmp", "future"));
	queue_free(q);
}

static void test_sweep_tmp_types(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	_cleanup_free_ char *fifo = NULL, *link_ = NULL, *inside = NULL;
	struct queue *q = NULL;
	const uint64_t now = UINT64_C(1764241648) * USEC_PER_SEC;
	const uint64_t old = now - USEC_PER_DAY;

	assert_int_equal(queue_open(spool, &q), 0);
	write_in(spool, "tmp", "stale", "{");
	set_mtime(spool, "tmp", "stale", old);
	/* A stale directory with something in it, an empty one, a FIFO and a
	 * symbolic link: none of them is a request, none goes to rejected/. */
	inside = join3(spool, "tmp", "full");
	assert_int_equal(mkdir(inside, 0777), 0);
	write_in(spool, "tmp/full", "x", "x");
	set_mtime(spool, "tmp", "full", old);
	_cleanup_free_ char *empty = join3(spool, "tmp", "empty");
	assert_int_equal(mkdir(empty, 0777), 0);
	set_mtime(spool, "tmp", "empty", old);
	fifo = join3(spool, "tmp", "fifo");
	assert_int_equal(mkfifo(fifo, 0660), 0);
	set_mtime(spool, "tmp", "fifo", old);
	link_ = join3(spool, "tmp", "link");
	assert_int_equal(symlink("/etc/passwd", link_), 0);
	set_mtime(spool, "tmp", "link", old);

	assert_int_equal(queue_sweep_tmp(q, now), 1);
	assert_true(exists_in(spool, "rejected", "stale"));
	assert_true(exists_in(spool, "tmp", "full"));
	assert_false(exists_in(spool, "tmp", "empty"));
	assert_true(exists_in(spool, "tmp", "fifo"));
	assert_true(exists_in(spool, "tmp", "link"));
	assert_int_equal(count_entries(spool, "rejected"), 2); /* stale, stale.reason */
	queue_free(q);
}

static void test_reject_directory(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	_cleanup_free_ char *evil = NULL, *empty = NULL;
	char as[QUEUE_REJECTED_NAME_MAX];
	struct queue_request req;
	const char *reason = NULL;
	struct queue *q = NULL;

	assert_int_equal(queue_open(spool, &q), 0);
	/* A member's writable directory in new/: read as bad, but never moved
	 * into rejected/, where it would be a directory anybody may write. */
	evil = join3(spool, "new", "evil");
	assert_int_equal(mkdir(evil, 0777), 0);
	assert_int_equal(chmod(evil, 0777), 0);
	write_in(spool, "new/evil", "payload", "x");
	assert_int_equal(queue_read(q, "evil", &req, &reason), -EINVAL);
	assert_int_equal(queue_reject(q, "evil", reason), -EISDIR);
	assert_true(exists_in(spool, "new", "evil"));
	assert_int_equal(count_entries(spool, "rejected"), 0);
	/* Again: the same answer, still nothing moved. */
	assert_int_equal(queue_reject_named(q, "evil", reason, as), -EISDIR);
	assert_int_equal(count_entries(spool, "rejected"), 0);

	/* An empty one is removed: nothing left to reject. */
	empty = join3(spool, "new", "empty");
	assert_int_equal(mkdir(empty, 0777), 0);
	assert_int_equal(queue_reject(q, "empty", "a directory, not a regular file"), -ENOENT);
	assert_false(exists_in(spool, "new", "empty"));
	assert_int_equal(count_entries(spool, "rejected"), 0);
	queue_free(q);
}

/* ---- trust: links, modes, owners ---- */

static void test_open_refuses_symlinks(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	_cleanup_free_ char *rej = path_join(spool, "rejected");
	_cleanup_free_ char *aside = path_join(spool, "rejected.real");
	_cleanup_free_ char *elsewhere = path_join(tmpdir, "elsewhere");
	_cleanup_free_ char *top_link = path_join(tmpdir, "spool-link");
	struct queue *q = NULL;

	assert_int_equal(queue_open(spool, &q), 0);
	assert_null(queue_lax_dir(q));
	queue_free(q);

	/* rejected/ replaced by a link into another directory. */
	assert_int_equal(mkdir(elsewhere, 0700), 0);
	assert_int_equal(rename(rej, aside), 0);
	assert_int_equal(symlink(elsewhere, rej), 0);
	q = NULL;
	assert_int_equal(queue_open(spool, &q), -ELOOP);
	assert_null(q);
	assert_int_equal(count_entries(tmpdir, "elsewhere"), 0);
	assert_int_equal(unlink(rej), 0);
	assert_int_equal(rename(aside, rej), 0);

	/* The spool itself a link. */
	assert_int_equal(symlink(spool, top_link), 0);
	assert_int_equal(queue_open(top_link, &q), -ELOOP);

	/* A group-writable rejected/ is worth a warning. */
	assert_int_equal(chmod(rej, 0770), 0);
	assert_int_equal(queue_open(spool, &q), 0);
	assert_string_equal(queue_lax_dir(q), "rejected/");
	queue_free(q);
}

static void test_hard_link(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	_cleanup_free_ char *outside = NULL, *linked = NULL, *content = NULL;
	static const char good[] = "{\"serial\":\"" SERIAL "\"}";
	struct queue *q = NULL;

	assert_int_equal(queue_open(spool, &q), 0);
	/* A good request, but linked in from outside the spool. */
	outside = path_join(spool, "outside.json");
	write_file(outside, good, strlen(good));
	linked = join3(spool, "new", "linked.json");
	assert_int_equal(link(outside, linked), 0);
	read_bad(q, "linked.json", -EINVAL, "hard links");
	assert_int_equal(queue_reject(q, "linked.json", "has 2 hard links"), 0);
	assert_int_equal(queue_reject_sync(q), 0);
	assert_false(exists_in(spool, "new", "linked.json"));
	assert_int_equal(read_file_capped(AT_FDCWD, outside, 65536, &content, NULL), 0);
	assert_string_equal(content, good);
	queue_free(q);
}

static void test_reason_excl(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	_cleanup_free_ char *victim = NULL, *planted = NULL, *content = NULL, *why = NULL, *first = NULL;
	struct queue *q = NULL;

	assert_int_equal(queue_open(spool, &q), 0);
	victim = path_join(spool, "precious");
	write_file(victim, "precious\n", 9);
	/* A reason file planted as a hard link to a file elsewhere. */
	planted = join3(spool, "rejected", "bad.json.reason");
	assert_int_equal(link(victim, planted), 0);
	write_in(spool, "new", "bad.json", "{");
	assert_int_equal(queue_reject(q, "bad.json", "not valid JSON"), 0);
	assert_int_equal(read_file_capped(AT_FDCWD, victim, 65536, &content, NULL), 0);
	assert_string_equal(content, "precious\n");
	why = read_in(spool, "rejected", "bad.json.reason");
	assert_string_equal(why, "not valid JSON\n");

	/* A second reject of the same name keeps the first, and says which
	 * name it took. */
	write_in(spool, "new", "bad.json", "{{");
	char as[QUEUE_REJECTED_NAME_MAX];
	assert_int_equal(queue_reject_named(q, "bad.json", "again", as), 0);
	assert_string_equal(as, "bad.json.1");
	first = read_in(spool, "rejected", "bad.json");
	assert_string_equal(first, "{");
	free(why);
	why = read_in(spool, "rejected", "bad.json.1.reason");
	assert_string_equal(why, "again\n");
	assert_int_equal(queue_reject_sync(q), 0);
	queue_free(q);
}

static void test_unreadable(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	_cleanup_free_ char *sock_path = NULL, *locked = NULL, *stranger = NULL;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct queue *q = NULL;
	int fd;

	assert_int_equal(queue_open(spool, &q), 0);
	/* A unix socket: opening it says ENXIO; it must be rejected, not
	 * retried forever. */
	sock_path = join3(spool, "new", "sock.json");
	assert_true(strlen(sock_path) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	read_bad(q, "sock.json", -EINVAL, "socket");
	assert_int_equal(queue_reject(q, "sock.json", "a socket"), 0);
	assert_true(exists_in(spool, "rejected", "sock.json"));
	close(fd);

	if (geteuid() != 0) {
		/* A file its producer left unreadable (umask 077 in another
		 * user's hands; here: mode 000). */
		write_in(spool, "new", "locked.json", "{\"serial\":\"" SERIAL "\"}");
		locked = join3(spool, "new", "locked.json");
		assert_int_equal(chmod(locked, 0), 0);
		read_bad(q, "locked.json", -EINVAL, "may not read");
	} else {
		/* Root reads anything; but a file of a stranger's user and group
		 * is not trusted. */
		write_in(spool, "new", "stranger.json", "{\"serial\":\"" SERIAL "\"}");
		stranger = join3(spool, "new", "stranger.json");
		assert_int_equal(chown(stranger, 54321, 54321), 0);
		read_bad(q, "stranger.json", -EINVAL, "neither the daemon's user nor the spool's group");
	}
	queue_free(q);
}

static void test_enqueue_mode(void **state)
{
	(void)state;
	_cleanup_free_ char *spool = new_spool();
	_cleanup_free_ char *path = NULL;
	struct queue_request req = {.id = "umask-077", .serial = SERIAL, .duration = 5};
	struct stat st;
	mode_t old = umask(077);

	assert_int_equal(queue_enqueue(spool, &req), 0);
	umask(old);
	path = join3(spool, "new", "umask-077.json");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_parse_name_mac),
		cmocka_unit_test(test_name_mac_validators),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_format_roundtrip),
		cmocka_unit_test(test_open),
		cmocka_unit_test(test_open_no_sgid),
		cmocka_unit_test(test_enqueue),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_read_odd_files),
		cmocka_unit_test(test_derived_id),
		cmocka_unit_test(test_reject),
		cmocka_unit_test(test_remove),
		cmocka_unit_test(test_sweep_tmp),
		cmocka_unit_test(test_sweep_tmp_types),
		cmocka_unit_test(test_reject_directory),
		cmocka_unit_test(test_open_refuses_symlinks),
		cmocka_unit_test(test_hard_link),
		cmocka_unit_test(test_reason_excl),
		cmocka_unit_test(test_unreadable),
		cmocka_unit_test(test_enqueue_mode),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
