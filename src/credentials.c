/* SPDX-License-Identifier: MIT */
/*
 * credentials — see include/blinkhook/credentials.h for the contract.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blinkhook/credentials.h"
#include "blinkhook/util.h"

/* API keys are 40 characters; secrets are short too. */
#define SECRET_FILE_MAX 4096

/* Secret values: what may be in them, checked without echoing them. */
enum secret_kind {
	SECRET_API_KEY, /* printable ASCII, no blanks: it goes into a header */
	SECRET_SHARED,  /* any text without control characters */
};

/* Trims blanks and newlines around the value (editors add a final newline)
 * and checks it; on failure *ret_reason says why without quoting it. */
static int secret_check(char *s, enum secret_kind kind, const char **ret_reason)
{
	size_t len = strlen(s), start = 0, n = len;

	while (n > 0 && strchr(" \t\r\n", s[n - 1]))
		n--;
	while (start < n && strchr(" \t\r\n", s[start]))
		start++;
	n -= start;
	memmove(s, s + start, n);
	/* Wipes what the move left behind, which also ends the string. */
	secret_wipe(s + n, len - n);

	if (n == 0) {
		*ret_reason = "is empty";
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (kind == SECRET_API_KEY ? ch <= 0x20 || ch >= 0x7f : ch < 0x20 || ch == 0x7f) {
			*ret_reason = kind == SECRET_API_KEY ? "contains blanks or characters outside printable ASCII"
							     : "contains control characters";
			return -EINVAL;
		}
	}
	return 0;
}

/* "path: the error's text" into err; returns r (-errno). */
static int fail_errno(char err[static CONFIG_ERROR_MAX], const char *path, int r)
{
	errno = -r;
	snprintf(err, CONFIG_ERROR_MAX, "%s: %m", path);
	return r;
}

/* The read buffer leaves no copy of a secret on the stack, whichever way
 * the function returns. */
static void buf_wipe(char (*buf)[SECRET_FILE_MAX + 2])
{
	secret_wipe(*buf, sizeof(*buf));
}

/* Reads a secret from a file.  private: the file must not be accessible to
 * group or others (credentials under $CREDENTIALS_DIRECTORY are systemd's to
 * protect).  -ENOENT when the file does not exist, with err untouched. */
static int secret_read_file(const char *path, bool private, enum secret_kind kind, char **ret,
			    char err[static CONFIG_ERROR_MAX])
{
	_cleanup_close_ int fd = -1;
	_cleanup_(buf_wipe) char buf[SECRET_FILE_MAX + 2];
	const char *reason = NULL;
	size_t len = 0;
	struct stat st;
	char *s;
	int r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : fail_errno(err, path, -errno);
	if (fstat(fd, &st) < 0)
		return fail_errno(err, path, -errno);
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, CONFIG_ERROR_MAX, "%s: not a regular file", path);
		return -EINVAL;
	}
	if (private && (st.st_mode & 077)) {
		snprintf(err, CONFIG_ERROR_MAX, "%s: is readable by group or others; chmod 600 it", path);
		return -EACCES;
	}

	while (len < SECRET_FILE_MAX + 1) {
		ssize_t n = read(fd, buf + len, SECRET_FILE_MAX + 1 - len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fail_errno(err, path, -errno);
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > SECRET_FILE_MAX) {
		snprintf(err, CONFIG_ERROR_MAX, "%s: larger than %d bytes", path, SECRET_FILE_MAX);
		return -EFBIG;
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		snprintf(err, CONFIG_ERROR_MAX, "%s: contains a NUL byte", path);
		return -EINVAL;
	}

	r = secret_check(buf, kind, &reason);
	if (r < 0) {
		snprintf(err, CONFIG_ERROR_MAX, "%s: %s", path, reason);
		return r;
	}
	s = secret_strdup(buf);
	if (!s) {
		snprintf(err, CONFIG_ERROR_MAX, "%s: out of memory", path);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

/* The credential name in $CREDENTIALS_DIRECTORY: -ENOENT when there is no
 * such directory or no such credential in it. */
static int secret_read_credential(const char *name, enum secret_kind kind, char **ret,
				  char err[static CONFIG_ERROR_MAX])
{
	_cleanup_free_ char *path = NULL;
	const char *dir = getenv("CREDENTIALS_DIRECTORY");

	if (!dir || !*dir)
		return -ENOENT;
	path = path_join(dir, name);
	if (!path) {
		snprintf(err, CONFIG_ERROR_MAX, "out of memory");
		return -ENOMEM;
	}
	return secret_read_file(path, false, kind, ret, err);
}

int credentials_load_api_key(const struct config *c, char **ret_key, const char **ret_source,
			     char err[static CONFIG_ERROR_MAX])
{
	static const char env_name[] = "MERAKI_DASHBOARD_API_KEY";
	const char *reason = NULL;
	char *env, *env_key = NULL, *key = NULL;
	int r;

	assert(ret_key && err);
	err[0] = '\0';

	/* The environment's key leaves the environment block as soon as it
	 * is read, whichever source wins: /proc/PID/environ shows the block
	 * the process started with, so its bytes are overwritten where they
	 * are, and the variable is unset for any child. */
	env = getenv(env_name);
	if (env) {
		env_key = secret_strdup(env);
		secret_wipe(env, strlen(env));
		(void)unsetenv(env_name);
		if (!env_key) {
			snprintf(err, CONFIG_ERROR_MAX, "out of memory");
			return -ENOMEM;
		}
	}

	r = secret_read_credential("meraki-api-key", SECRET_API_KEY, &key, err);
	if (r >= 0) {
		secret_free(env_key);
		*ret_key = key;
		if (ret_source)
			*ret_source = "credential";
		return 0;
	}
	if (r != -ENOENT) {
		secret_free(env_key);
		return r;
	}

	if (env_key) {
		key = env_key;
		r = secret_check(key, SECRET_API_KEY, &reason);
		if (r < 0) {
			secret_free(key);
			snprintf(err, CONFIG_ERROR_MAX, "%s: %s", env_name, reason);
			return r;
		}
		*ret_key = key;
		if (ret_source)
			*ret_source = "environment";
		return 0;
	}

	if (c && c->api_key_file) {
		r = secret_read_file(c->api_key_file, true, SECRET_API_KEY, &key, err);
		if (r == -ENOENT)
			fail_errno(err, c->api_key_file, -ENOENT);
		if (r < 0)
			return r;
		*ret_key = key;
		if (ret_source)
			*ret_source = "file";
		return 0;
	}

	snprintf(err, CONFIG_ERROR_MAX, "no API key: set the credential meraki-api-key, %s, or [meraki] api_key_file",
		 env_name);
	return -ENOENT;
}

int credentials_load_callback_secret(const struct config *c, char **ret_secret, char err[static CONFIG_ERROR_MAX])
{
	char *secret = NULL;
	int r;

	assert(ret_secret && err);
	err[0] = '\0';

	r = secret_read_credential("callback-secret", SECRET_SHARED, &secret, err);
	if (r >= 0) {
		*ret_secret = secret;
		return 0;
	}
	if (r != -ENOENT)
		return r;

	if (c && c->shared_secret_file) {
		r = secret_read_file(c->shared_secret_file, true, SECRET_SHARED, &secret, err);
		/* Named in the config but missing: an error, not "not set". */
		if (r == -ENOENT) {
			fail_errno(err, c->shared_secret_file, -ENOENT);
			return -EINVAL;
		}
		if (r < 0)
			return r;
		*ret_secret = secret;
		return 0;
	}

	snprintf(err, CONFIG_ERROR_MAX,
		 "no callback secret: set the credential callback-secret or [callback] "
		 "shared_secret_file");
	return -ENOENT;
}

int credentials_load_pg_conninfo(const struct config *c, char **ret_conninfo, const char **ret_source,
				 char err[static CONFIG_ERROR_MAX])
{
	char *conninfo = NULL;
	int r;

	assert(ret_conninfo && ret_source && err);
	err[0] = '\0';

	r = secret_read_credential("postgresql-conninfo", SECRET_SHARED, &conninfo, err);
	if (r >= 0) {
		*ret_conninfo = conninfo;
		*ret_source = "credential";
		return 0;
	}
	if (r != -ENOENT)
		return r;
	if (c && c->store_conninfo) {
		conninfo = secret_strdup(c->store_conninfo);
		if (!conninfo) {
			snprintf(err, CONFIG_ERROR_MAX, "out of memory");
			return -ENOMEM;
		}
		*ret_conninfo = conninfo;
		*ret_source = "config";
		return 0;
	}
	snprintf(err, CONFIG_ERROR_MAX,
		 "no PostgreSQL connection string: set the credential postgresql-conninfo or [store] conninfo");
	return -ENOENT;
}

void api_key_mask(const char *key, char buf[static 16])
{
	size_t n = key ? strlen(key) : 0;

	/* A short key would be mostly shown by its last four characters. */
	if (n < 8) {
		snprintf(buf, 16, "****");
		return;
	}
	snprintf(buf, 16, "\xe2\x80\xa6%s", key + n - 4);
}
