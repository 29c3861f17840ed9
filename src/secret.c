/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "blinkhook/secret.h"
#include "blinkhook/util.h"

struct secret_key {
	unsigned char bytes[SECRET_KEY_SIZE];
};

void secret_wipe(void *p, size_t len) { OPENSSL_cleanse(p, len); }

void secret_key_free(struct secret_key *k)
{
	if (!k)
		return;
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

int secret_key_from_bytes(const void *bytes, size_t len, struct secret_key **ret)
{
	struct secret_key *k;

	if (len != SECRET_KEY_SIZE)
		return -EINVAL;
	k = malloc(sizeof(*k));
	if (!k)
		return -ENOMEM;
	memcpy(k->bytes, bytes, len);
	*ret = k;
	return 0;
}

static int read_key(int fd, struct secret_key **ret)
{
	unsigned char buf[SECRET_KEY_SIZE + 1];
	struct stat st;
	size_t len = 0;
	ssize_t n;
	int r;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (st.st_mode & 077)
		return -EPERM;
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			OPENSSL_cleanse(buf, sizeof(buf));
			return r;
		}
		len += (size_t)n;
	}
	r = len == SECRET_KEY_SIZE ? secret_key_from_bytes(buf, len, ret) : -EINVAL;
	OPENSSL_cleanse(buf, sizeof(buf));
	return r;
}

int secret_key_load(const char *dir, struct secret_key **ret, bool *ret_created)
{
	_cleanup_free_ char *path = path_join(dir, SECRET_KEY_FILE);
	_cleanup_close_ int fd = -1;
	unsigned char buf[SECRET_KEY_SIZE];
	int r;

	if (!path)
		return -ENOMEM;
	/* O_NONBLOCK: a FIFO in its place must be refused, not waited on (it
	 * changes nothing for a regular file). */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd >= 0) {
		r = read_key(fd, ret);
		if (r >= 0 && ret_created)
			*ret_created = false;
		return r;
	}
	if (errno != ENOENT)
		return -errno;

	/* First start: a new key, written atomically so that a crash never
	 * leaves a short key behind. */
	r = random_bytes(buf, sizeof(buf));
	if (r >= 0)
		r = write_file_atomic(dir, SECRET_KEY_FILE, buf, sizeof(buf), 0600);
	if (r >= 0)
		r = secret_key_from_bytes(buf, sizeof(buf), ret);
	OPENSSL_cleanse(buf, sizeof(buf));
	if (r >= 0 && ret_created)
		*ret_created = true;
	return r;
}

static void base64url(const unsigned char *in, size_t len, char *out)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;

	for (i = 0; i + 2 < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
		out[o++] = tbl[v >> 6 & 63];
		out[o++] = tbl[v & 63];
	}
	if (len - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
		out[o++] = tbl[v >> 6 & 63];
	} else if (len - i == 1) {
		unsigned v = (unsigned)in[i] << 16;
		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
	}
	out[o] = 0;
}

void secret_for_job(const struct secret_key *k, const char *job_id, char out[static SECRET_MAX])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;

	/* HMAC() over a 32-byte key cannot fail short of memory exhaustion
	 * inside OpenSSL; an empty secret then fails every verification. */
	if (!HMAC(EVP_sha256(), k->bytes, SECRET_KEY_SIZE, (const unsigned char *)job_id, strlen(job_id),
		  mac, &mac_len) ||
	    mac_len != 32) {
		out[0] = 0;
		return;
	}
	base64url(mac, mac_len, out);
	OPENSSL_cleanse(mac, sizeof(mac));
}

bool secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	/* The lengths are no secret (ours is always 43); the bytes are. */
	if (alen != blen || alen == 0)
		return false;
	return CRYPTO_memcmp(a, b, alen) == 0;
}

bool secret_verify(const struct secret_key *k, const char *job_id, const char *presented, size_t len)
{
	char expected[SECRET_MAX];
	bool ok;

	secret_for_job(k, job_id, expected);
	ok = expected[0] && secret_equal(expected, strlen(expected), presented, len);
	OPENSSL_cleanse(expected, sizeof(expected));
	return ok;
}
