/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_conninfo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
