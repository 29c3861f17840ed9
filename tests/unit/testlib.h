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
