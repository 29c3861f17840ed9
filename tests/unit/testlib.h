/* SPDX-License-Identifier: MIT */
/*
 * Shared by the unit tests: one scratch directory per test program, made by
 * the group setup under $TMPDIR (or /tmp) and removed with all it holds by
 * the group teardown.  Include after <cmocka.h>.
 */
#ifndef BLINKHOOK_TESTLIB_H
#define BLINKHOOK_TESTLIB_H

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blinkhook/util.h"

static char tmpdir[256];

static int testlib_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline int tmpdir_setup(const char *program)
{
	const char *base = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/%s.XXXXXX", base && *base ? base : "/tmp", program);
	return mkdtemp(tmpdir) ? 0 : -1;
}

static inline int tmpdir_teardown(void) { return nftw(tmpdir, testlib_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

#ifdef TESTLIB_KEY_FILES
/* For the tests that read configuration, keys and secrets from files (define
 * TESTLIB_KEY_FILES before including; other tests keep helpers of their own
 * under these names). */

/* The scratch directory's file NAME; the caller frees the path. */
static inline char *tmp_path(const char *name)
{
	char *p = path_join(tmpdir, name);

	assert_non_null(p);
	return p;
}

/* PATH holding exactly LEN bytes of DATA, with exactly MODE. */
static inline void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, data, len), 0);
	/* open's mode is only used on creation, and the umask applies. */
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

/* The fixture of the tests that read keys and secrets: they set
 * CREDENTIALS_DIRECTORY and MERAKI_DASHBOARD_API_KEY themselves, so the
 * caller's must not leak in, nor one test's into the next. */
static inline void key_env_clear(void)
{
	unsetenv("CREDENTIALS_DIRECTORY");
	unsetenv("MERAKI_DASHBOARD_API_KEY");
}

static inline int key_env_group_setup(const char *program)
{
	key_env_clear();
	return tmpdir_setup(program);
}

static inline int key_env_group_teardown(void **state)
{
	(void)state;
	return tmpdir_teardown();
}

static inline int key_env_teardown(void **state)
{
	(void)state;
	key_env_clear();
	return 0;
}
#endif /* TESTLIB_KEY_FILES */

/* A fresh, empty directory in the scratch directory for one test (mode
 * 0700, like a state directory); the caller frees the path. */
static inline char *new_dir(void)
{
	static unsigned counter;
	char name[32];
	char *p;

	snprintf(name, sizeof(name), "d%u", counter++);
	p = path_join(tmpdir, name);
	assert_non_null(p);
	assert_int_equal(mkdir(p, 0700), 0);
	return p;
}

#endif
