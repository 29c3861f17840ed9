/* SPDX-License-Identifier: MIT */
/* SHA256_Init() and friends are deprecated in OpenSSL 3 in favour of EVP,
 * whose digest states live in OpenSSL's own heap; ours must live in pages
 * left out of core dumps, and SHA256_CTX is a plain struct we can place. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "blinkhook/secret.h"
#include "blinkhook/util.h"

#define SHA256_BLOCK 64
#define SHA256_SIZE 32

/*
 * HMAC-SHA256 (RFC 2104) with the key's two pads hashed once, when the key is
 * loaded: a secret then costs two SHA-256 compressions of a copied state
 * instead of HMAC()'s fetch, key setup and four compressions.  Every callback
 * computes one (a refused one too), so this is on the hot path.  The states
 * stand for the key: they live in secret_alloc()'s memory.
 */
struct secret_key {
	SHA256_CTX inner; /* SHA-256 after (key ^ ipad) */
	SHA256_CTX outer; /* SHA-256 after (key ^ opad) */
	SHA256_CTX work;  /* scratch for one secret at a time */
};

void secret_key_free(struct secret_key *k)
{
	secret_free(k);
}

static int pad_state(SHA256_CTX *ctx, const unsigned char *key, unsigned char pad)
{
	unsigned char block[SHA256_BLOCK];
	int ok;

	memset(block, pad, sizeof(block));
	for (size_t i = 0; i < SECRET_KEY_SIZE; i++)
		block[i] ^= key[i];
	ok = SHA256_Init(ctx) && SHA256_Update(ctx, block, sizeof(block));
	secret_wipe(block, sizeof(block));
	return ok ? 0 : -ENOMEM;
}

int secret_key_from_bytes(const void *bytes, size_t len, struct secret_key **ret)
{
	struct secret_key *k;
	int r;

	/* A key longer than SHA-256's block would be hashed first; ours is
	 * always shorter, and zero-padded to the block by pad_state. */
	if (len != SECRET_KEY_SIZE)
		return -EINVAL;
	k = secret_alloc(sizeof(*k));
	if (!k)
		return -ENOMEM;
	r = pad_state(&k->inner, bytes, 0x36);
	if (r >= 0)
		r = pad_state(&k->outer, bytes, 0x5c);
	if (r < 0) {
		secret_key_free(k);
		return r;
	}
	*ret = k;
	return 0;
}

/* forbidden: the mode bits the file must not have. */
static int read_key(int fd, mode_t forbidden, struct secret_key **ret)
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
	if (st.st_mode & forbidden)
		return -EPERM;
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			secret_wipe(buf, sizeof(buf));
			return r;
		}
		len += (size_t)n;
	}
	r = len == SECRET_KEY_SIZE ? secret_key_from_bytes(buf, len, ret) : -EINVAL;
	secret_wipe(buf, sizeof(buf));
	return r;
}

/* Loads dir/name, whose mode must have none of the forbidden bits; where it
 * does not exist and create is set, makes a new key there with create_mode,
 * written atomically so that a crash never leaves a short key behind. */
static int key_file_load(const char *dir, const char *name, mode_t forbidden, mode_t create_mode, bool create,
			 struct secret_key **ret, bool *ret_created)
{
	_cleanup_free_ char *path = path_join(dir, name);
	_cleanup_close_ int fd = -1;
	unsigned char buf[SECRET_KEY_SIZE];
	int r;

	if (!path)
		return -ENOMEM;
	/* O_NONBLOCK: a FIFO in its place must be refused, not waited on (it
	 * changes nothing for a regular file). */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd >= 0) {
		r = read_key(fd, forbidden, ret);
		if (r >= 0 && ret_created)
			*ret_created = false;
		return r;
	}
	if (errno != ENOENT || !create)
		return -errno;
	r = random_bytes(buf, sizeof(buf));
	if (r >= 0)
		r = write_file_atomic(dir, name, buf, sizeof(buf), create_mode);
	if (r >= 0)
		r = secret_key_from_bytes(buf, sizeof(buf), ret);
	secret_wipe(buf, sizeof(buf));
	if (r >= 0 && ret_created)
		*ret_created = true;
	return r;
}

int secret_key_load(const char *dir, struct secret_key **ret, bool *ret_created)
{
	/* First start: a new key. */
	return key_file_load(dir, SECRET_KEY_FILE, 077, 0600, true, ret, ret_created);
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

/*
 * HMAC-SHA256 under k of the n parts, one after the other, into mac.  The
 * scratch state is the key's own, in its pages, so that no copy of a pad
 * state lands on the stack; "const" is the key's, which this does not change
 * (one thread, one MAC at a time).  SHA-256 on memory we own cannot fail; if
 * it did, this returns false and the caller makes an empty text of it, which
 * fails every verification.
 */
static bool key_hmac(const struct secret_key *k, const struct iovec *parts, size_t n, unsigned char mac[SHA256_SIZE])
{
	SHA256_CTX *work = (SHA256_CTX *)&k->work;
	unsigned char ihash[SHA256_SIZE];
	bool ok = true;

	/* HMAC = H((key ^ opad) || H((key ^ ipad) || message)) */
	*work = k->inner;
	for (size_t i = 0; ok && i < n; i++)
		ok = SHA256_Update(work, parts[i].iov_base, parts[i].iov_len);
	ok = ok && SHA256_Final(ihash, work);
	if (ok) {
		*work = k->outer;
		ok = SHA256_Update(work, ihash, sizeof(ihash)) && SHA256_Final(mac, work);
	}
	secret_wipe(work, sizeof(*work));
	secret_wipe(ihash, sizeof(ihash));
	return ok;
}

/* The MAC of parts as base64url text in out, or "" should hashing fail. */
static void key_hmac_text(const struct secret_key *k, const struct iovec *parts, size_t n, char out[static SECRET_MAX])
{
	unsigned char mac[SHA256_SIZE];

	if (key_hmac(k, parts, n, mac))
		base64url(mac, sizeof(mac), out);
	else
		out[0] = 0;
	secret_wipe(mac, sizeof(mac));
}

void secret_for_job(const struct secret_key *k, const char *job_id, const char *nonce, char out[static SECRET_MAX])
{
	/* The message is id NUL nonce (no id holds a NUL), or the id alone
	 * for a job logged without a nonce. */
	const struct iovec parts[] = {
		{(void *)job_id, strlen(job_id)},
		{(void *)"", 1},
		{(void *)nonce, nonce ? strlen(nonce) : 0},
	};

	key_hmac_text(k, parts, nonce && *nonce ? 3 : 1, out);
}

bool secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	/* The lengths are no secret (ours is always 43); the bytes are. */
	if (alen != blen || alen == 0)
		return false;
	return CRYPTO_memcmp(a, b, alen) == 0;
}

/* Whether presented is the MAC text expected (never when hashing failed and
 * expected is ""), in constant time; expected is wiped either way. */
static bool mac_text_equal(char expected[static SECRET_MAX], const char *presented, size_t len)
{
	bool ok = expected[0] && secret_equal(expected, strlen(expected), presented, len);

	secret_wipe(expected, SECRET_MAX);
	return ok;
}

bool secret_verify(const struct secret_key *k, const char *job_id, const char *nonce, const char *presented, size_t len)
{
	char expected[SECRET_MAX];

	secret_for_job(k, job_id, nonce, expected);
	return mac_text_equal(expected, presented, len);
}

/* ---- the selftest probe ---- */

int probe_key_load(const char *dir, bool create, struct secret_key **ret, bool *ret_created)
{
	/* The group reads it (blinkhookctl selftest); nobody else may, and
	 * only the owner may change it. */
	return key_file_load(dir, PROBE_KEY_FILE, 037, 0640, create, ret, ret_created);
}

bool probe_token_is_valid(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");

	return s[n] == 0 && n >= PROBE_TOKEN_MIN && n < PROBE_TOKEN_MAX;
}

int probe_token_new(char out[static PROBE_TOKEN_MAX])
{
	unsigned char raw[PROBE_TOKEN_BYTES];
	int r = random_bytes(raw, sizeof(raw));

	if (r < 0)
		return r;
	base64url(raw, sizeof(raw), out);
	return 0;
}

void probe_mac(const struct secret_key *k, const char *nonce, const char *salt, char out[static SECRET_MAX])
{
	/* A label of its own, and NULs between the parts: these bytes can
	 * never be the input of another MAC under any key of ours. */
	static const char label[] = "blinkhook selftest probe v1";
	const struct iovec parts[] = {
		{(void *)label, sizeof(label)},
		{(void *)nonce, strlen(nonce) + 1},
		{(void *)salt, strlen(salt)},
	};

	key_hmac_text(k, parts, ELEMENTSOF(parts), out);
}

bool probe_mac_verify(const struct secret_key *k, const char *nonce, const char *salt, const char *presented,
		      size_t len)
{
	char expected[SECRET_MAX];

	probe_mac(k, nonce, salt, expected);
	return mac_text_equal(expected, presented, len);
}
