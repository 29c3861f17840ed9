/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "testlib.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "blinkhook/secret.h"
#include "blinkhook/util.h"

static int group_setup(void **state)
{
	(void)state;
	return tmpdir_setup("test_secret");
}

static int group_teardown(void **state)
{
	(void)state;
	return tmpdir_teardown();
}

static char *key_path(const char *dir)
{
	char *p = path_join(dir, SECRET_KEY_FILE);

	assert_non_null(p);
	return p;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, data, len), 0);
	/* open's mode is subject to the umask; fchmod is not. */
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static void fixed_key_bytes(unsigned char k[static SECRET_KEY_SIZE], unsigned char first)
{
	for (unsigned i = 0; i < SECRET_KEY_SIZE; i++)
		k[i] = (unsigned char)(first + i);
}

static struct secret_key *fixed_key(unsigned char first)
{
	unsigned char b[SECRET_KEY_SIZE];
	struct secret_key *k = NULL;

	fixed_key_bytes(b, first);
	assert_int_equal(secret_key_from_bytes(b, sizeof(b), &k), 0);
	assert_non_null(k);
	return k;
}

/* The expected secret, computed here independently of src/secret.c:
 * OpenSSL's HMAC, OpenSSL's base64, then the url-safe alphabet, no padding. */
/* base64url(HMAC-SHA256(key, msg)) through OpenSSL's one-shot HMAC(). */
static void reference_mac(const unsigned char *key, size_t key_len, const void *msg, size_t msg_len,
			  char out[static 64])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	unsigned char b64[64];
	int n;

	assert_non_null(HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, mac, &mac_len));
	assert_int_equal(mac_len, 32);
	n = EVP_EncodeBlock(b64, mac, (int)mac_len);
	assert_int_equal(n, 44); /* 43 characters and one '=' */
	for (int i = 0; i < n; i++) {
		if (b64[i] == '+')
			b64[i] = '-';
		else if (b64[i] == '/')
			b64[i] = '_';
	}
	while (n > 0 && b64[n - 1] == '=')
		n--;
	memcpy(out, b64, (size_t)n);
	out[n] = 0;
}

static void reference_secret(const unsigned char *key, size_t key_len, const char *id, char out[static 64])
{
	reference_mac(key, key_len, id, strlen(id), out);
}

static bool is_base64url(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
		      *s == '_'))
			return false;
	return true;
}

/* ---- the key file ---- */

static void test_key_created_then_reloaded(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	_cleanup_free_ char *path = key_path(dir);
	struct secret_key *k1 = NULL, *k2 = NULL;
	char s1[SECRET_MAX], s2[SECRET_MAX], ref[64];
	_cleanup_free_ char *bytes = NULL;
	size_t len = 0;
	bool created = false;
	struct stat st;

	(void)state;
	assert_int_equal(secret_key_load(dir, &k1, &created), 0);
	assert_true(created);
	assert_non_null(k1);

	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, SECRET_KEY_SIZE);

	/* The file holds the key: the secret is the HMAC under its bytes. */
	assert_int_equal(read_file_capped(AT_FDCWD, path, 1024, &bytes, &len), 0);
	assert_int_equal(len, SECRET_KEY_SIZE);
	secret_for_job(k1, "job-1", NULL, s1);
	reference_secret((const unsigned char *)bytes, len, "job-1", ref);
	assert_string_equal(s1, ref);

	/* The second start loads it, and creates nothing. */
	created = true;
	assert_int_equal(secret_key_load(dir, &k2, &created), 0);
	assert_false(created);
	secret_for_job(k2, "job-1", NULL, s2);
	assert_string_equal(s1, s2);
	assert_true(secret_verify(k2, "job-1", NULL, s1, strlen(s1)));

	/* ret_created may be NULL. */
	secret_key_free(k2);
	k2 = NULL;
	assert_int_equal(secret_key_load(dir, &k2, NULL), 0);
	secret_for_job(k2, "job-1", NULL, s2);
	assert_string_equal(s1, s2);

	secret_key_free(k1);
	secret_key_free(k2);
	secret_key_free(NULL);
}

static void test_key_two_dirs_differ(void **state)
{
	_cleanup_free_ char *d1 = new_dir();
	_cleanup_free_ char *d2 = new_dir();
	struct secret_key *k1 = NULL, *k2 = NULL;
	char s1[SECRET_MAX], s2[SECRET_MAX];

	(void)state;
	/* Each new key is random. */
	assert_int_equal(secret_key_load(d1, &k1, NULL), 0);
	assert_int_equal(secret_key_load(d2, &k2, NULL), 0);
	secret_for_job(k1, "job-1", NULL, s1);
	secret_for_job(k2, "job-1", NULL, s2);
	assert_string_not_equal(s1, s2);
	secret_key_free(k1);
	secret_key_free(k2);
}

static void test_key_group_or_other_bits_refused(void **state)
{
	static const mode_t modes[] = {0640, 0604, 0660, 0644, 0601, 0610, 0700 | 0040};
	unsigned char b[SECRET_KEY_SIZE];

	(void)state;
	fixed_key_bytes(b, 1);
	for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
		_cleanup_free_ char *dir = new_dir();
		_cleanup_free_ char *path = key_path(dir);
		struct secret_key *k = NULL;
		bool created = true;
		struct stat st;

		write_file(path, b, sizeof(b), modes[i]);
		assert_int_equal(secret_key_load(dir, &k, &created), -EPERM);
		assert_null(k);
		/* Refused, not replaced: the file is as it was. */
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 07777, modes[i]);
		assert_int_equal(st.st_size, SECRET_KEY_SIZE);
	}
}

static void test_key_owner_only_modes_accepted(void **state)
{
	static const mode_t modes[] = {0600, 0400};
	unsigned char b[SECRET_KEY_SIZE];
	char s[SECRET_MAX], ref[64];

	(void)state;
	fixed_key_bytes(b, 1);
	reference_secret(b, sizeof(b), "job-1", ref);
	for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
		_cleanup_free_ char *dir = new_dir();
		_cleanup_free_ char *path = key_path(dir);
		struct secret_key *k = NULL;
		bool created = true;

		write_file(path, b, sizeof(b), modes[i]);
		assert_int_equal(secret_key_load(dir, &k, &created), 0);
		assert_false(created);
		secret_for_job(k, "job-1", NULL, s);
		assert_string_equal(s, ref);
		secret_key_free(k);
	}
}

static void test_key_wrong_size_refused(void **state)
{
	static const size_t sizes[] = {0, 1, 31, 33, 64, 4096};
	unsigned char b[4096];

	(void)state;
	memset(b, 0x5a, sizeof(b));
	for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
		_cleanup_free_ char *dir = new_dir();
		_cleanup_free_ char *path = key_path(dir);
		struct secret_key *k = NULL;
		struct stat st;

		write_file(path, b, sizes[i], 0600);
		assert_int_equal(secret_key_load(dir, &k, NULL), -EINVAL);
		assert_null(k);
		/* A short key is never "repaired" with a new one. */
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal((size_t)st.st_size, sizes[i]);
	}
}

static void test_key_directory_refused(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	_cleanup_free_ char *path = key_path(dir);
	struct secret_key *k = NULL;
	struct stat st;

	(void)state;
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(secret_key_load(dir, &k, NULL), -EINVAL);
	assert_null(k);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
}

static void test_key_fifo_refused(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	_cleanup_free_ char *path = key_path(dir);
	struct secret_key *k = NULL;

	(void)state;
	/* Not a regular file: refused at once, without waiting for a writer. */
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(secret_key_load(dir, &k, NULL), -EINVAL);
	assert_null(k);
}

static void test_key_symlink_refused(void **state)
{
	_cleanup_free_ char *dir = new_dir();
	_cleanup_free_ char *path = key_path(dir);
	_cleanup_free_ char *target = path_join(dir, "elsewhere.key");
	unsigned char b[SECRET_KEY_SIZE];
	struct secret_key *k = NULL;
	struct stat st;

	(void)state;
	assert_non_null(target);
	fixed_key_bytes(b, 1);
	write_file(target, b, sizeof(b), 0600);
	assert_int_equal(symlink(target, path), 0);
	assert_true(secret_key_load(dir, &k, NULL) < 0);
	assert_null(k);
	/* Neither the link nor its target was replaced. */
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
}

static void test_key_missing_dir(void **state)
{
	_cleanup_free_ char *dir = path_join(tmpdir, "does-not-exist");
	struct secret_key *k = NULL;
	struct stat st;

	(void)state;
	assert_non_null(dir);
	assert_true(secret_key_load(dir, &k, NULL) < 0);
	assert_null(k);
	assert_int_equal(stat(dir, &st), -1);
}

static void test_key_from_bytes(void **state)
{
	unsigned char b[SECRET_KEY_SIZE + 1] = {0};
	struct secret_key *k = NULL;

	(void)state;
	assert_int_equal(secret_key_from_bytes(b, SECRET_KEY_SIZE - 1, &k), -EINVAL);
	assert_int_equal(secret_key_from_bytes(b, SECRET_KEY_SIZE + 1, &k), -EINVAL);
	assert_int_equal(secret_key_from_bytes(b, 0, &k), -EINVAL);
	assert_null(k);
	assert_int_equal(secret_key_from_bytes(b, SECRET_KEY_SIZE, &k), 0);
	assert_non_null(k);
	secret_key_free(k);
}

/* ---- secrets ---- */

static void test_secret_shape_and_determinism(void **state)
{
	struct secret_key *k = fixed_key(1);
	char a[SECRET_MAX], b[SECRET_MAX];

	(void)state;
	memset(a, 'X', sizeof(a));
	secret_for_job(k, "job-1", NULL, a);
	assert_int_equal(strlen(a), 43);
	assert_int_equal(SECRET_MAX, 44);
	assert_true(is_base64url(a));

	secret_for_job(k, "job-1", NULL, b);
	assert_string_equal(a, b);

	/* A 64-character id, the longest there is. */
	secret_for_job(k, "0123456789012345678901234567890123456789012345678901234567890123", NULL, b);
	assert_int_equal(strlen(b), 43);
	assert_true(is_base64url(b));
	secret_key_free(k);
}

static void test_secret_differs_per_job_and_key(void **state)
{
	struct secret_key *k1 = fixed_key(1), *k2 = fixed_key(2);
	char a[SECRET_MAX], b[SECRET_MAX], c[SECRET_MAX], d[SECRET_MAX];

	(void)state;
	secret_for_job(k1, "job-1", NULL, a);
	secret_for_job(k1, "job-2", NULL, b);
	secret_for_job(k2, "job-1", NULL, c);
	secret_for_job(k1, "job-10", NULL, d);
	assert_string_not_equal(a, b);
	assert_string_not_equal(a, c);
	assert_string_not_equal(a, d);
	assert_string_not_equal(b, c);
	/* And each verifies only for its own job and key. */
	assert_true(secret_verify(k1, "job-1", NULL, a, strlen(a)));
	assert_false(secret_verify(k1, "job-2", NULL, a, strlen(a)));
	assert_false(secret_verify(k2, "job-1", NULL, a, strlen(a)));
	assert_true(secret_verify(k2, "job-1", NULL, c, strlen(c)));
	secret_key_free(k1);
	secret_key_free(k2);
}

static void test_secret_known_vector(void **state)
{
	static const char *const ids[] = {"job-1", "job-2", "a", "01JDQ3W7ZK9Y2B5C8D1E4F6G7H",
					  "x_y-z_0123456789012345678901234567890123456789012345678901234"};
	unsigned char kb[SECRET_KEY_SIZE];
	struct secret_key *k = fixed_key(1);
	char got[SECRET_MAX], want[64];

	(void)state;
	fixed_key_bytes(kb, 1); /* 0x01 .. 0x20 */
	assert_int_equal(kb[0], 0x01);
	assert_int_equal(kb[31], 0x20);
	for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
		reference_secret(kb, sizeof(kb), ids[i], want);
		secret_for_job(k, ids[i], NULL, got);
		assert_string_equal(got, want);
	}
	secret_key_free(k);
}

/* With a nonce the message is id NUL nonce; without one (NULL or "", a job
 * logged before nonces) the id alone, so that old jobs keep their secret. */
static void test_secret_with_nonce(void **state)
{
	static const char nonce[] = "00112233445566778899aabbccddeeff";
	unsigned char kb[SECRET_KEY_SIZE], msg[128];
	struct secret_key *k = fixed_key(1);
	char got[SECRET_MAX], want[64], legacy[64], other[SECRET_MAX];
	size_t n = 0;

	(void)state;
	fixed_key_bytes(kb, 1);
	memcpy(msg, "job-1", 5);
	n += 5;
	msg[n++] = 0;
	memcpy(msg + n, nonce, 32);
	n += 32;
	reference_mac(kb, sizeof(kb), msg, n, want);
	reference_secret(kb, sizeof(kb), "job-1", legacy);

	secret_for_job(k, "job-1", nonce, got);
	assert_string_equal(got, want);
	assert_string_not_equal(got, legacy);
	secret_for_job(k, "job-1", NULL, got);
	assert_string_equal(got, legacy);
	secret_for_job(k, "job-1", "", got);
	assert_string_equal(got, legacy);

	/* A job with a nonce refuses the secret of its id alone (an earlier
	 * job's, or one from before nonces), and another nonce's. */
	assert_true(secret_verify(k, "job-1", nonce, want, strlen(want)));
	assert_false(secret_verify(k, "job-1", nonce, legacy, strlen(legacy)));
	assert_true(secret_verify(k, "job-1", NULL, legacy, strlen(legacy)));
	assert_false(secret_verify(k, "job-1", NULL, want, strlen(want)));
	secret_for_job(k, "job-1", "ffeeddccbbaa99887766554433221100", other);
	assert_false(secret_verify(k, "job-1", nonce, other, strlen(other)));
	/* No shifting of bytes between the id and the nonce. */
	secret_for_job(k, "job-10", "0112233445566778899aabbccddeeff", other);
	assert_string_not_equal(other, want);
	secret_key_free(k);
}

static void test_secret_verify(void **state)
{
	struct secret_key *k = fixed_key(1);
	char s[SECRET_MAX], other[SECRET_MAX], buf[128];
	size_t n;

	(void)state;
	secret_for_job(k, "job-1", NULL, s);
	secret_for_job(k, "job-2", NULL, other);
	n = strlen(s);

	assert_true(secret_verify(k, "job-1", NULL, s, n));

	/* One character changed, at the start, the middle and the end. */
	for (size_t pos = 0; pos < n; pos += 21) {
		memcpy(buf, s, n + 1);
		buf[pos] = buf[pos] == 'A' ? 'B' : 'A';
		assert_false(secret_verify(k, "job-1", NULL, buf, n));
	}
	memcpy(buf, s, n + 1);
	buf[n - 1] = buf[n - 1] == 'A' ? 'B' : 'A';
	assert_false(secret_verify(k, "job-1", NULL, buf, n));

	/* A prefix, the empty string, a longer string. */
	assert_false(secret_verify(k, "job-1", NULL, s, n - 1));
	assert_false(secret_verify(k, "job-1", NULL, s, 1));
	assert_false(secret_verify(k, "job-1", NULL, "", 0));
	snprintf(buf, sizeof(buf), "%sA", s);
	assert_false(secret_verify(k, "job-1", NULL, buf, n + 1));
	snprintf(buf, sizeof(buf), "%s%s", s, s);
	assert_false(secret_verify(k, "job-1", NULL, buf, 2 * n));
	/* An embedded NUL after the right bytes makes it longer, not equal. */
	memcpy(buf, s, n);
	buf[n] = 0;
	buf[n + 1] = 'x';
	assert_false(secret_verify(k, "job-1", NULL, buf, n + 2));

	/* Another job's secret. */
	assert_false(secret_verify(k, "job-1", NULL, other, strlen(other)));

	/* presented need not be NUL-terminated: only len bytes count. */
	memcpy(buf, s, n);
	memcpy(buf + n, "trailing", 9);
	assert_true(secret_verify(k, "job-1", NULL, buf, n));
	secret_key_free(k);
}

static void test_secret_equal(void **state)
{
	(void)state;
	assert_true(secret_equal("abc", 3, "abc", 3));
	assert_true(secret_equal("abcdef", 3, "abcxyz", 3)); /* lengths decide what counts */
	assert_false(secret_equal("abc", 3, "abd", 3));
	assert_false(secret_equal("abc", 3, "xbc", 3));
	assert_false(secret_equal("abc", 3, "abcd", 4));
	assert_false(secret_equal("abcd", 4, "abc", 3));
	assert_false(secret_equal("abc", 3, "ABC", 3));
	assert_true(secret_equal("a\0b", 3, "a\0b", 3));
	assert_false(secret_equal("a\0b", 3, "a\0c", 3));
	/* An empty secret never matches, not even another empty one. */
	assert_false(secret_equal("", 0, "", 0));
	assert_false(secret_equal("abc", 3, "", 0));
	assert_false(secret_equal("", 0, "abc", 3));
}

/* The VmFlags of the mapping that holds p, from /proc/self/smaps. */
static void vmflags_of(const void *p, char *ret, size_t size)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool inside = false;

	assert_non_null(f);
	ret[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
			snprintf(ret, size, "%s", line + 8);
			break;
		}
	}
	fclose(f);
	assert_true(ret[0]);
}

static void test_secret_alloc(void **state)
{
	struct secret_key *k = fixed_key(1);
	char flags[512], *s, *big;

	(void)state;
	/* Left out of core dumps ("dd") and of a child's copy ("dc"). */
	s = secret_strdup("the-api-key");
	assert_non_null(s);
	assert_string_equal(s, "the-api-key");
	vmflags_of(s, flags, sizeof(flags));
	assert_non_null(strstr(flags, " dd"));
	assert_non_null(strstr(flags, " dc"));
	/* The key's HMAC states too. */
	vmflags_of(k, flags, sizeof(flags));
	assert_non_null(strstr(flags, " dd"));
	/* While ordinary heap memory is dumped: the check can tell. */
	big = malloc(16);
	assert_non_null(big);
	vmflags_of(big, flags, sizeof(flags));
	assert_null(strstr(flags, " dd"));
	free(big);

	/* More than a page, all of it usable. */
	big = secret_alloc(3 * 4096 + 1);
	assert_non_null(big);
	memset(big, 0x5a, 3 * 4096 + 1);
	vmflags_of(big + 3 * 4096, flags, sizeof(flags));
	assert_non_null(strstr(flags, " dd"));
	secret_free(big);
	secret_free(s);
	secret_free(NULL);
	secret_key_free(k);
	secret_key_free(NULL);
}

/* The probe key: made 0640 by the daemon (its group reads it), never made
 * by a reader, refused when the group may write it or others read it. */
static void test_probe_key(void **state)
{
	_cleanup_free_ char *dir = path_join(tmpdir, "probe"), *path = NULL;
	struct secret_key *k = NULL, *k2 = NULL, *callback = NULL;
	bool created = false;
	char a[SECRET_MAX], b[SECRET_MAX], c[SECRET_MAX];
	struct stat st;

	(void)state;
	assert_non_null(dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	path = path_join(dir, PROBE_KEY_FILE);
	assert_non_null(path);
	assert_int_equal(probe_key_load(dir, false, &k, &created), -ENOENT);
	assert_null(k);
	umask(077); /* the mode is the module's, not the umask's */
	assert_int_equal(probe_key_load(dir, true, &k, &created), 0);
	umask(022);
	assert_true(created);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal((int)st.st_size, SECRET_KEY_SIZE);
	assert_int_equal(probe_key_load(dir, false, &k2, &created), 0);
	assert_false(created);
	probe_mac(k, "nonce-nonce-nonce-nonce-1", "salt-salt-salt-salt-salt", a);
	probe_mac(k2, "nonce-nonce-nonce-nonce-1", "salt-salt-salt-salt-salt", b);
	assert_int_equal(strlen(a), SECRET_MAX - 1);
	assert_string_equal(a, b);
	/* The callback key of the same directory is another key. */
	assert_int_equal(secret_key_load(dir, &callback, NULL), 0);
	probe_mac(callback, "nonce-nonce-nonce-nonce-1", "salt-salt-salt-salt-salt", c);
	assert_string_not_equal(a, c);
	secret_key_free(callback);
	secret_key_free(k2);
	k2 = NULL;

	static const mode_t refused[] = {0660, 0644, 0604, 0642, 0670};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		assert_int_equal(chmod(path, refused[i]), 0);
		assert_int_equal(probe_key_load(dir, true, &k2, NULL), -EPERM);
		assert_null(k2);
	}
	static const mode_t accepted[] = {0640, 0600, 0440, 0400};
	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		assert_int_equal(chmod(path, accepted[i]), 0);
		assert_int_equal(probe_key_load(dir, false, &k2, NULL), 0);
		secret_key_free(k2);
		k2 = NULL;
	}
	secret_key_free(k);
}

/* OpenSSL's base64 of len bytes in the url-safe alphabet, unpadded. */
static void b64url(const unsigned char *in, unsigned int len, char out[static SECRET_MAX])
{
	unsigned char b64[64];
	int n = EVP_EncodeBlock(b64, in, (int)len);

	assert_int_equal(n, 44);
	for (int i = 0; i < n; i++)
		b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	while (n > 0 && b64[n - 1] == '=')
		n--;
	memcpy(out, b64, (size_t)n);
	out[n] = 0;
}

/* The MAC: HMAC-SHA256(key, label NUL nonce NUL salt), base64url; each part
 * changes it; verification is exact. */
static void test_probe_mac(void **state)
{
	unsigned char key[SECRET_KEY_SIZE], mac[32];
	unsigned int mac_len = 0;
	static const char msg[] = "blinkhook selftest probe v1\0NONCE-nonce-NONCE-nonce-1\0SALT-salt-SALT-salt-SALT";
	char want[SECRET_MAX], got[SECRET_MAX], other[SECRET_MAX], token[PROBE_TOKEN_MAX], token2[PROBE_TOKEN_MAX];
	struct secret_key *k;

	(void)state;
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)(i * 7 + 1);
	assert_non_null(
		HMAC(EVP_sha256(), key, (int)sizeof(key), (const unsigned char *)msg, sizeof(msg) - 1, mac, &mac_len));
	assert_int_equal(mac_len, 32);
	b64url(mac, mac_len, want);
	assert_int_equal(secret_key_from_bytes(key, sizeof(key), &k), 0);
	probe_mac(k, "NONCE-nonce-NONCE-nonce-1", "SALT-salt-SALT-salt-SALT", got);
	assert_string_equal(got, want);
	assert_true(probe_mac_verify(k, "NONCE-nonce-NONCE-nonce-1", "SALT-salt-SALT-salt-SALT", got, strlen(got)));
	assert_false(probe_mac_verify(k, "NONCE-nonce-NONCE-nonce-2", "SALT-salt-SALT-salt-SALT", got, strlen(got)));
	assert_false(probe_mac_verify(k, "NONCE-nonce-NONCE-nonce-1", "SALT-salt-SALT-salt-SALx", got, strlen(got)));
	assert_false(
		probe_mac_verify(k, "NONCE-nonce-NONCE-nonce-1", "SALT-salt-SALT-salt-SALT", got, strlen(got) - 1));
	assert_false(probe_mac_verify(k, "NONCE-nonce-NONCE-nonce-1", "SALT-salt-SALT-salt-SALT", "", 0));
	/* Moving bytes between nonce and salt changes the MAC. */
	probe_mac(k, "NONCE-nonce-NONCE-nonce-1S", "ALT-salt-SALT-salt-SALT", other);
	assert_string_not_equal(got, other);
	/* A job's secret for the same text is another value. */
	secret_for_job(k, "NONCE-nonce-NONCE-nonce-1", NULL, other);
	assert_string_not_equal(got, other);
	secret_key_free(k);

	assert_int_equal(probe_token_new(token), 0);
	assert_int_equal(probe_token_new(token2), 0);
	assert_int_equal(strlen(token), 32);
	assert_string_not_equal(token, token2);
	assert_true(probe_token_is_valid(token));
	assert_true(probe_token_is_valid("abcdefghijklmnopqrstuv"));   /* 22: 16 bytes */
	assert_false(probe_token_is_valid("abcdefghijklmnopqrstu"));   /* 21 */
	assert_false(probe_token_is_valid("abcdefghijklmnopqrstuv=")); /* padding */
	assert_false(probe_token_is_valid("abcdefghijklmnopqrstu+"));  /* not url-safe */
	assert_false(probe_token_is_valid("abcdefghijklmnopqrstuv\n"));
	assert_false(probe_token_is_valid(""));
	char longer[80];
	memset(longer, 'A', 65);
	longer[65] = 0;
	assert_false(probe_token_is_valid(longer)); /* 65 characters */
	longer[64] = 0;
	assert_true(probe_token_is_valid(longer)); /* 64 */
}

static void test_secret_wipe(void **state)
{
	unsigned char buf[40];

	(void)state;
	memset(buf, 0xa5, sizeof(buf));
	secret_wipe(buf + 4, 32);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], i >= 4 && i < 36 ? 0 : 0xa5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_created_then_reloaded),
		cmocka_unit_test(test_key_two_dirs_differ),
		cmocka_unit_test(test_key_group_or_other_bits_refused),
		cmocka_unit_test(test_key_owner_only_modes_accepted),
		cmocka_unit_test(test_key_wrong_size_refused),
		cmocka_unit_test(test_key_directory_refused),
		cmocka_unit_test(test_key_fifo_refused),
		cmocka_unit_test(test_key_symlink_refused),
		cmocka_unit_test(test_key_missing_dir),
		cmocka_unit_test(test_key_from_bytes),
		cmocka_unit_test(test_secret_shape_and_determinism),
		cmocka_unit_test(test_secret_differs_per_job_and_key),
		cmocka_unit_test(test_secret_known_vector),
		cmocka_unit_test(test_secret_with_nonce),
		cmocka_unit_test(test_secret_verify),
		cmocka_unit_test(test_secret_equal),
		cmocka_unit_test(test_secret_alloc),
		cmocka_unit_test(test_probe_key),
		cmocka_unit_test(test_probe_mac),
		cmocka_unit_test(test_secret_wipe),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
