/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
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
#include <cmocka.h>

#define TESTLIB_KEY_FILES
#include "testlib.h"

#include "blinkhook/config.h"
#include "blinkhook/credentials.h"
#include "blinkhook/util.h"

static int group_setup(void **state)
{
	(void)state;
	return key_env_group_setup("test_credentials");
}

/* ---- secrets ---- */

struct keys {
	char *cred_dir;
	char *cred_file;
	char *key_file;
};

/* The three sources of an API key, and c naming the file one. */
static void keys_setup(struct keys *k, struct config *c)
{
	k->cred_dir = tmp_path("credentials");
	mkdir(k->cred_dir, 0700);
	k->cred_file = path_join(k->cred_dir, "meraki-api-key");
	assert_non_null(k->cred_file);
	k->key_file = tmp_path("api-key");
	write_file(k->cred_file, "credkey-0123456789abcdef\n", 25, 0400);
	write_file(k->key_file, "  filekey-0123456789abcdef \r\n\n", 30, 0600);
	assert_int_equal(config_init(c), 0);
	c->api_key_file = strdup(k->key_file);
	assert_non_null(c->api_key_file);
}

static void keys_free(struct keys *k, struct config *c)
{
	config_release(c);
	free(k->cred_dir);
	free(k->cred_file);
	free(k->key_file);
}

static void assert_key(const struct config *c, const char *want, const char *want_source)
{
	char err[CONFIG_ERROR_MAX];
	const char *source = NULL;
	char *key = NULL;

	assert_int_equal(credentials_load_api_key(c, &key, &source, err), 0);
	assert_string_equal(key, want);
	assert_string_equal(source, want_source);
	secret_free(key);
}

static void assert_key_error(const struct config *c, int want, const char *want_err)
{
	char err[CONFIG_ERROR_MAX];
	const char *source = "untouched";
	char *key = NULL;

	assert_int_equal(credentials_load_api_key(c, &key, &source, err), want);
	assert_null(key);
	assert_string_equal(source, "untouched");
	assert_string_equal(err, want_err);
	/* Whatever failed, the message never shows a key. */
	assert_null(strstr(err, "0123456789"));
}

static void test_api_key_precedence(void **state)
{
	char *env;
	struct config c;
	struct keys k;

	(void)state;
	keys_setup(&k, &c);

	setenv("CREDENTIALS_DIRECTORY", k.cred_dir, 1);
	setenv("MERAKI_DASHBOARD_API_KEY", "envkey-0123456789abcdef", 1);
	env = getenv("MERAKI_DASHBOARD_API_KEY");
	assert_key(&c, "credkey-0123456789abcdef", "credential");
	/* The environment's key is wiped where it was, even when another
	 * source wins. */
	assert_null(getenv("MERAKI_DASHBOARD_API_KEY"));
	assert_int_equal(env[0], 0);
	assert_int_equal(memcmp(env, (char[23]){0}, 23), 0);

	/* A credentials directory without this credential is passed over. */
	assert_int_equal(unlink(k.cred_file), 0);
	setenv("MERAKI_DASHBOARD_API_KEY", "envkey-0123456789abcdef", 1);
	env = getenv("MERAKI_DASHBOARD_API_KEY");
	assert_key(&c, "envkey-0123456789abcdef", "environment");
	assert_null(getenv("MERAKI_DASHBOARD_API_KEY"));
	assert_int_equal(memcmp(env, (char[23]){0}, 23), 0);

	unsetenv("CREDENTIALS_DIRECTORY");
	setenv("MERAKI_DASHBOARD_API_KEY", " envkey-0123456789abcdef\n", 1);
	assert_key(&c, "envkey-0123456789abcdef", "environment");

	unsetenv("MERAKI_DASHBOARD_API_KEY");
	assert_key(&c, "filekey-0123456789abcdef", "file");

	free(c.api_key_file);
	c.api_key_file = NULL;
	assert_key_error(&c, -ENOENT,
			 "no API key: set the credential meraki-api-key, MERAKI_DASHBOARD_API_KEY, "
			 "or [meraki] api_key_file");

	keys_free(&k, &c);
}

static void test_api_key_refusals(void **state)
{
	char want[CONFIG_ERROR_MAX];
	_cleanup_free_ char *big = NULL;
	struct config c;
	struct keys k;

	(void)state;
	keys_setup(&k, &c);

	/* Group or world access to the key file is refused. */
	assert_int_equal(chmod(k.key_file, 0640), 0);
	snprintf(want, sizeof(want), "%s: is readable by group or others; chmod 600 it", k.key_file);
	assert_key_error(&c, -EACCES, want);
	assert_int_equal(chmod(k.key_file, 0604), 0);
	assert_key_error(&c, -EACCES, want);
	assert_int_equal(chmod(k.key_file, 0400), 0);
	assert_key(&c, "filekey-0123456789abcdef", "file");

	write_file(k.key_file, " \n\n", 3, 0600);
	snprintf(want, sizeof(want), "%s: is empty", k.key_file);
	assert_key_error(&c, -EINVAL, want);

	write_file(k.key_file, "key-0123456789\nsecond line\n", 27, 0600);
	snprintf(want, sizeof(want), "%s: contains blanks or characters outside printable ASCII", k.key_file);
	assert_key_error(&c, -EINVAL, want);

	write_file(k.key_file, "key-0123456789\xc3\xa9", 16, 0600);
	assert_key_error(&c, -EINVAL, want);

	big = malloc(5000);
	assert_non_null(big);
	memset(big, 'k', 5000);
	write_file(k.key_file, big, 5000, 0600);
	snprintf(want, sizeof(want), "%s: larger than 4096 bytes", k.key_file);
	assert_key_error(&c, -EFBIG, want);

	assert_int_equal(unlink(k.key_file), 0);
	snprintf(want, sizeof(want), "%s: No such file or directory", k.key_file);
	assert_key_error(&c, -ENOENT, want);

	/* A found but bad source is an error, not a reason to look further. */
	setenv("MERAKI_DASHBOARD_API_KEY", "", 1);
	assert_key_error(&c, -EINVAL, "MERAKI_DASHBOARD_API_KEY: is empty");
	setenv("MERAKI_DASHBOARD_API_KEY", "key 0123456789", 1);
	assert_key_error(&c, -EINVAL,
			 "MERAKI_DASHBOARD_API_KEY: contains blanks or characters outside "
			 "printable ASCII");

	write_file(k.cred_file, "\n", 1, 0400);
	setenv("CREDENTIALS_DIRECTORY", k.cred_dir, 1);
	snprintf(want, sizeof(want), "%s: is empty", k.cred_file);
	assert_key_error(&c, -EINVAL, want);

	keys_free(&k, &c);
}

static void test_callback_secret(void **state)
{
	_cleanup_free_ char *dir = tmp_path("cb-credentials"), *cred = NULL, *file = tmp_path("cb-secret");
	char err[CONFIG_ERROR_MAX], want[CONFIG_ERROR_MAX];
	char *secret = NULL;
	struct config c;

	(void)state;
	assert_int_equal(mkdir(dir, 0700), 0);
	cred = path_join(dir, "callback-secret");
	assert_non_null(cred);
	assert_int_equal(config_init(&c), 0);

	assert_int_equal(credentials_load_callback_secret(&c, &secret, err), -ENOENT);
	assert_null(secret);
	assert_string_equal(err, "no callback secret: set the credential callback-secret or "
				 "[callback] shared_secret_file");

	write_file(file, "file secret with spaces\n", 24, 0600);
	c.shared_secret_file = strdup(file);
	assert_int_equal(credentials_load_callback_secret(&c, &secret, err), 0);
	assert_string_equal(secret, "file secret with spaces");
	secret_free(secret);
	secret = NULL;

	write_file(cred, "cred-secret\n", 12, 0400);
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	assert_int_equal(credentials_load_callback_secret(&c, &secret, err), 0);
	assert_string_equal(secret, "cred-secret");
	secret_free(secret);
	secret = NULL;
	unsetenv("CREDENTIALS_DIRECTORY");

	assert_int_equal(chmod(file, 0644), 0);
	assert_int_equal(credentials_load_callback_secret(&c, &secret, err), -EACCES);
	snprintf(want, sizeof(want), "%s: is readable by group or others; chmod 600 it", file);
	assert_string_equal(err, want);
	assert_null(secret);

	/* Named but missing is an error, not "not configured". */
	assert_int_equal(unlink(file), 0);
	assert_int_equal(credentials_load_callback_secret(&c, &secret, err), -EINVAL);
	snprintf(want, sizeof(want), "%s: No such file or directory", file);
	assert_string_equal(err, want);

	config_release(&c);
}

/* The conninfo: the credential first (a password stays out of the config),
 * then [store] conninfo; neither is an error that names both. */
static void test_pg_conninfo(void **state)
{
	_cleanup_free_ char *dir = tmp_path("pg-credentials"), *cred = NULL;
	char err[CONFIG_ERROR_MAX];
	const char *source = NULL;
	char *conninfo = NULL;
	struct config c;

	(void)state;
	assert_int_equal(mkdir(dir, 0700), 0);
	cred = path_join(dir, "postgresql-conninfo");
	assert_non_null(cred);
	assert_int_equal(config_init(&c), 0);

	assert_int_equal(credentials_load_pg_conninfo(&c, &conninfo, &source, err), -ENOENT);
	assert_null(conninfo);
	assert_string_equal(err, "no PostgreSQL connection string: set the credential postgresql-conninfo or "
				 "[store] conninfo");

	c.store_conninfo = strdup("host=db dbname=blinkhook");
	assert_int_equal(credentials_load_pg_conninfo(&c, &conninfo, &source, err), 0);
	assert_string_equal(conninfo, "host=db dbname=blinkhook");
	assert_string_equal(source, "config");
	secret_free(conninfo);
	conninfo = NULL;

	write_file(cred, "host=db2 password=s3cret\n", 25, 0400);
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	assert_int_equal(credentials_load_pg_conninfo(&c, &conninfo, &source, err), 0);
	assert_string_equal(conninfo, "host=db2 password=s3cret");
	assert_string_equal(source, "credential");
	secret_free(conninfo);
	conninfo = NULL;

	/* A credential that cannot be used is an error, not a fall-back. */
	write_file(cred, "\n", 1, 0400);
	assert_int_equal(credentials_load_pg_conninfo(&c, &conninfo, &source, err), -EINVAL);
	assert_null(conninfo);
	config_release(&c);
}

static void test_api_key_mask(void **state)
{
	char buf[16];

	(void)state;
	api_key_mask("0123456789abcdef0123456789abcdef01234567", buf);
	assert_string_equal(buf, "\xe2\x80\xa6"
				 "4567");
	api_key_mask("abcdefgh", buf);
	assert_string_equal(buf, "\xe2\x80\xa6"
				 "efgh");
	api_key_mask("abcdefg", buf);
	assert_string_equal(buf, "****");
	api_key_mask("", buf);
	assert_string_equal(buf, "****");
	api_key_mask(NULL, buf);
	assert_string_equal(buf, "****");
}

/* Only a regular file is read: a directory or a FIFO in the key's place is
 * refused at once (a FIFO is not waited on), from the config's file and from
 * $CREDENTIALS_DIRECTORY alike. */
static void test_not_a_regular_file(void **state)
{
	_cleanup_free_ char *fifo = tmp_path("key-fifo"), *dir = tmp_path("key-dir"), *creds = tmp_path("creds-odd"),
			    *cred = NULL;
	char want[CONFIG_ERROR_MAX];
	struct config c;

	(void)state;
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(config_init(&c), 0);

	c.api_key_file = strdup(fifo);
	assert_non_null(c.api_key_file);
	snprintf(want, sizeof(want), "%s: not a regular file", fifo);
	assert_key_error(&c, -EINVAL, want);

	free(c.api_key_file);
	c.api_key_file = strdup(dir);
	assert_non_null(c.api_key_file);
	snprintf(want, sizeof(want), "%s: not a regular file", dir);
	assert_key_error(&c, -EINVAL, want);

	/* A credential of that name which is a directory: an error, not a
	 * fall-through to the next source. */
	assert_int_equal(mkdir(creds, 0700), 0);
	cred = path_join(creds, "meraki-api-key");
	assert_non_null(cred);
	assert_int_equal(mkdir(cred, 0700), 0);
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", creds, 1), 0);
	snprintf(want, sizeof(want), "%s: not a regular file", cred);
	assert_key_error(&c, -EINVAL, want);
	config_release(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_api_key_precedence, key_env_teardown),
		cmocka_unit_test_teardown(test_api_key_refusals, key_env_teardown),
		cmocka_unit_test_teardown(test_callback_secret, key_env_teardown),
		cmocka_unit_test_teardown(test_pg_conninfo, key_env_teardown),
		cmocka_unit_test_teardown(test_api_key_mask, key_env_teardown),
		cmocka_unit_test_teardown(test_not_a_regular_file, key_env_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, key_env_group_teardown);
}
