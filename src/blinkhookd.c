/* SPDX-License-Identifier: MIT */
/* blinkhookd: parses the command line and the config, then hands over to
 * daemon_run().  See src/daemon-internal.h for its rooms and who owns what. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "blinkhook/config.h"
#include "blinkhook/credentials.h"
#include "blinkhook/daemon.h"
#include "blinkhook/log.h"
#include "blinkhook/pgstore.h"
#include "blinkhook/util.h"

static void help(void)
{
	printf("Usage: blinkhookd [-c FILE] [--check-config] [--version] [--help]\n"
	       "\n"
	       "Submits LED-blink requests from the spool to the Meraki Dashboard API and\n"
	       "records each job's final status from Meraki's callback.\n"
	       "\n"
	       "  -c, --config FILE   the config file (default " CONFIG_DEFAULT_PATH ")\n"
	       "      --check-config  check the config and the API key, then exit\n"
	       "      --version       print the version and exit\n"
	       "  -h, --help          print this help and exit\n");
}

/* With the PostgreSQL store: its connection string is there and makes sense
 * (checked again when the daemon connects; nothing connects here).  Writes
 * "; PostgreSQL ..." for --check-config's line into note. */
static int check_store(const struct config *cfg, char err[static CONFIG_ERROR_MAX], char *note, size_t len)
{
	const char *source = NULL;
	char *conninfo = NULL;
	char why[CONFIG_ERROR_MAX];
	int r;

	note[0] = '\0';
	if (cfg->store_backend != STORE_POSTGRESQL)
		return 0;
	r = credentials_load_pg_conninfo(cfg, &conninfo, &source, why);
	if (r >= 0) {
		r = pgstore_check_conninfo(conninfo, strcmp(source, "config") == 0, why);
		secret_free(conninfo);
	}
	if (r < 0) {
		snprintf(err, CONFIG_ERROR_MAX, "%.200s: [store] %.280s", cfg->path, why);
		return r;
	}
	snprintf(note, len, "; PostgreSQL store, connection string from %s, node %s", source, cfg->store_node);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'C'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *path = CONFIG_DEFAULT_PATH, *source = NULL;
	char err[CONFIG_ERROR_MAX], mask[16], note[160];
	struct config cfg;
	bool check = false;
	char *key = NULL;
	int c, r;

	log_setup("blinkhookd");
	while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'V':
			printf("blinkhookd %s\n", BLINKHOOK_VERSION);
			return close_stdout("blinkhookd", 0, false);
		case 'h':
			help();
			return close_stdout("blinkhookd", 0, false);
		default:
			fprintf(stderr, "Try 'blinkhookd --help'.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "blinkhookd: unexpected argument \"%s\"\nTry 'blinkhookd --help'.\n", argv[optind]);
		return 2;
	}

	if (config_init(&cfg) < 0) {
		fprintf(stderr, "blinkhookd: out of memory\n");
		return 1;
	}
	r = config_load(&cfg, path, err);
	if (r >= 0)
		r = check_store(&cfg, err, note, sizeof(note));
	if (r >= 0)
		r = credentials_load_api_key(&cfg, &key, &source, err);
	if (r < 0) {
		if (check)
			fprintf(stderr, "%s\n", err);
		else
			log_err("%s", err);
		config_release(&cfg);
		return 1;
	}
	if (check) {
		api_key_mask(key, mask);
		printf("%s: OK; API key %s from %s%s\n", path, mask, source, note);
		secret_free(key);
		config_release(&cfg);
		return close_stdout("blinkhookd", 0, false);
	}
	log_info("blinkhookd %s starting with %s; API key from %s", BLINKHOOK_VERSION, path, source);
	/* daemon_run owns the config and the key from here. */
	r = daemon_run(&cfg, key, source);
	return r < 0 ? 1 : 0;
}
