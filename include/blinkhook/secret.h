/* SPDX-License-Identifier: MIT */
/*
 * secret — the daemon's key and the per-job shared secrets derived from it.
 *
 * The key is 32 random bytes in `secret.key` in the state directory (mode
 * 0600), created at first start.  A job's sharedSecret is
 * base64url(HMAC-SHA256(key, id NUL nonce)) without padding, the nonce being
 * the job's random one (job.h), or HMAC-SHA256(key, id) for a job logged
 * without one: the daemon never stores a secret, it recomputes it to verify
 * a callback, and a leaked secret opens one job only, never a later job that
 * reuses its id.  The only module that includes OpenSSL.
 */
#ifndef BLINKHOOK_SECRET_H
#define BLINKHOOK_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "blinkhook/util.h" /* secret_alloc(), secret_free(), secret_wipe() */

#define SECRET_KEY_FILE "secret.key"
#define SECRET_KEY_SIZE 32
/* 43 base64url characters and the NUL. */
#define SECRET_MAX 44

struct secret_key;

/* Loads dir/secret.key, creating it when missing.  -EINVAL when it exists
 * but is not a 32-byte regular file, -EPERM when group or others can read it.
 * *ret_created (may be NULL) says whether it was made now. */
int secret_key_load(const char *dir, struct secret_key **ret, bool *ret_created);
/* Wipes the key from memory. */
void secret_key_free(struct secret_key *k);
/* A key from bytes (tests, benchmarks). */
int secret_key_from_bytes(const void *bytes, size_t len, struct secret_key **ret);

/* A key computes one secret at a time (it has one scratch state): the daemon
 * has one thread. */
void secret_for_job(const struct secret_key *k, const char *job_id, const char *nonce, char out[static SECRET_MAX]);
/* Whether presented (len bytes, not necessarily NUL-terminated) is the secret
 * of job_id with nonce (NULL or "": none); the comparison takes the same time
 * wherever they differ. */
bool secret_verify(const struct secret_key *k, const char *job_id, const char *nonce, const char *presented,
		   size_t len);
/* Constant-time comparison of two byte strings (for a configured secret). */
bool secret_equal(const char *a, size_t alen, const char *b, size_t blen);

/*
 * The selftest probe (blinkhookctl selftest, the daemon's /callbacks/probe).
 * A key of its own, 32 random bytes in `probe.key` in the state directory,
 * mode 0640: the daemon's group (blinkhookctl's users) reads it, the world
 * does not.  The prober sends a random nonce; the daemon answers a random
 * salt of its own and base64url(HMAC-SHA256(probe key, label, nonce, salt)).
 * Only a holder of the key can answer a fresh nonce, so the answer proves
 * that the probe reached this daemon; and, salted, it lets no stranger tell
 * one daemon from another.  The callback key stays 0600 and is never used
 * for this.
 */
#define PROBE_KEY_FILE "probe.key"
/* A nonce or salt: base64url without padding of 16 to 48 random bytes. */
#define PROBE_TOKEN_BYTES 24
#define PROBE_TOKEN_MIN 22
#define PROBE_TOKEN_MAX 65 /* 64 characters and the NUL */

/* Loads dir/probe.key; creates it when missing and create is set (the
 * daemon), else -ENOENT (blinkhookctl).  -EPERM when the group may write it
 * or others may read it; -EINVAL when it is not a 32-byte regular file. */
int probe_key_load(const char *dir, bool create, struct secret_key **ret, bool *ret_created);
/* Whether s is a nonce or salt: base64url, PROBE_TOKEN_MIN to
 * PROBE_TOKEN_MAX - 1 characters. */
bool probe_token_is_valid(const char *s);
/* A new random nonce or salt (PROBE_TOKEN_BYTES bytes). */
int probe_token_new(char out[static PROBE_TOKEN_MAX]);
/* The answer to nonce with salt under the probe key k. */
void probe_mac(const struct secret_key *k, const char *nonce, const char *salt, char out[static SECRET_MAX]);
/* Whether presented (len bytes) is that answer; constant time. */
bool probe_mac_verify(const struct secret_key *k, const char *nonce, const char *salt, const char *presented,
		      size_t len);

#endif
