/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "blinkhook/pgstore.h"

static void assert_refused(const char *conninfo, bool from_config, const char *want)
{
	char err[CONFIG_ERROR_MAX];

	assert_int_equal(pgstore_check_conninfo(conninfo, from_config, err), -EINVAL);
	assert_string_equal(err, want);
}

/* What --check-config and the daemon's start accept as [store] conninfo:
 * libpq's syntax, keywords or a URI, several hosts; no password in the
 * config file (in either form), whereas the credential may hold one. */
static void test_check_conninfo(void **state)
{
	static const char password_msg[] = "conninfo: holds a password; put the whole string into the credential "
					   "postgresql-conninfo (or use a .pgpass file) instead";
	char err[CONFIG_ERROR_MAX];

	(void)state;
	assert_int_equal(pgstore_check_conninfo("host=db1,db2 port=5432,5433 dbname=blinkhook user=bh "
						"target_session_attrs=read-write",
						true, err),
			 0);
	assert_int_equal(
		pgstore_check_conninfo("postgresql://bh@db1,db2/blinkhook?target_session_attrs=read-write", true, err),
		0);
	assert_int_equal(pgstore_check_conninfo("", true, err), 0);
	assert_int_equal(pgstore_check_conninfo("host=db password=s3cret", false, err), 0);
	assert_int_equal(pgstore_check_conninfo("postgresql://bh:s3cret@db/blinkhook", false, err), 0);

	assert_refused("host=db password=s3cret", true, password_msg);
	assert_refused("postgresql://bh:s3cret@db/blinkhook", true, password_msg);
	assert_refused("postgresql://db/blinkhook?password=s3cret", true, password_msg);
	assert_refused("host=db colour=red", true, "conninfo: invalid connection option \"colour\"");
	assert_refused("host='db", true, "conninfo: unterminated quoted string in connection info string");
	/* The reason never quotes the secret. */
	assert_int_equal(pgstore_check_conninfo("host=db password=s3cret colour=x", true, err), -EINVAL);
	assert_null(strstr(err, "s3cret"));
}

/* libpq's parse errors quote pieces of the string, even a whole URI with
 * its password: none of it reaches the reason, only option names. */
static void test_check_conninfo_hides_password(void **state)
{
	static const char *const bad[] = {
		"password=hunter2x bogus=x",
		"password='hunter2x",
		"password=hunter2x hunter2y",
		"host=db password=hun ter2x user=u",
		"hunter2x",
		"postgresql://u:hunter2x@[::1",
		"postgresql://u:hunter%zz@h/db",
		"postgresql://u:hunter2x@h/db?hunter2y",
		"postgresql://u:hu\"nter2x@[::1",
		"password=hunter2x colour=red host='x",
	};
	char err[CONFIG_ERROR_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(pgstore_check_conninfo(bad[i], false, err), -EINVAL);
		assert_null(strstr(err, "hunter"));
		assert_null(strstr(err, "nter2"));
		assert_non_null(strstr(err, "conninfo: "));
	}
	/* What helps is kept: the option's name, libpq's own words. */
	assert_refused("password=hunter2x bogus=x", false, "conninfo: invalid connection option \"bogus\"");
	assert_refused("password=hun ter2x", false,
		       "conninfo: missing \"=\" after \"(hidden)\" in connection info string");
	assert_refused("postgresql://u:hunter2x@[::1", false,
		       "conninfo: end of string reached when looking for matching \"]\" in IPv6 host address in "
		       "URI: \"(hidden)\"");
	assert_refused("postgresql://u:hunter2x@h/db?bogus=1", false,
		       "conninfo: invalid URI query parameter: \"bogus\"");
}

static void test_scrub(void **state)
{
	char msg[64];

	(void)state;
	snprintf(msg, sizeof(msg), "FATAL: s3cret! no s3cret here");
	pgstore_scrub(msg, sizeof(msg), "s3cret");
	assert_string_equal(msg, "FATAL: (hidden)! no (hidden) here");
	/* Longer than the buffer allows: cut, never the secret. */
	snprintf(msg, 16, "abc pw1 pw1");
	pgstore_scrub(msg, 16, "pw1");
	assert_string_equal(msg, "abc (hidden) (h");
	/* A secret inside the mark itself ends. */
	snprintf(msg, sizeof(msg), "hid hid");
	pgstore_scrub(msg, sizeof(msg), "hid");
	assert_string_equal(msg, "(hidden) (hidden)");
	snprintf(msg, sizeof(msg), "nothing to hide");
	pgstore_scrub(msg, sizeof(msg), NULL);
	pgstore_scrub(msg, sizeof(msg), "ab");
	assert_string_equal(msg, "nothing to hide");
}

/* The errors after which the connection is made again. */
static void test_sqlstate_lost(void **state)
{
	(void)state;
	assert_true(pgstore_sqlstate_lost("25006"));  /* read_only_sql_transaction */
	assert_true(pgstore_sqlstate_lost("57P01"));  /* admin_shutdown */
	assert_true(pgstore_sqlstate_lost("57P03"));  /* cannot_connect_now */
	assert_true(pgstore_sqlstate_lost("08006"));  /* connection_failure */
	assert_true(pgstore_sqlstate_lost("53300"));  /* too_many_connections */
	assert_false(pgstore_sqlstate_lost("23505")); /* unique_violation */
	assert_false(pgstore_sqlstate_lost("42P01")); /* undefined_table */
	assert_false(pgstore_sqlstate_lost("40001")); /* serialization_failure */
	assert_false(pgstore_sqlstate_lost(NULL));
	assert_false(pgstore_sqlstate_lost("25"));
}

/* The server's version, as PQserverVersion gives it: 13 and later do. */
static void test_server_version(void **state)
{
	char err[CONFIG_ERROR_MAX] = "";

	(void)state;
	assert_int_equal(pgstore_check_server_version(130000, err), 0);
	assert_int_equal(pgstore_check_server_version(170004, err), 0);
	assert_int_equal(pgstore_check_server_version(0, err), 0);
	assert_string_equal(err, "");
	assert_int_equal(pgstore_check_server_version(120018, err), -ENOTSUP);
	assert_string_equal(err, "PostgreSQL 12 is too old: the store needs 13 or later");
	assert_int_equal(pgstore_check_server_version(90624, err), -ENOTSUP);
	assert_string_equal(err, "PostgreSQL 9.6 is too old: the store needs 13 or later");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_conninfo), cmocka_unit_test(test_check_conninfo_hides_password),
		cmocka_unit_test(test_scrub),          cmocka_unit_test(test_sqlstate_lost),
		cmocka_unit_test(test_server_version),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
