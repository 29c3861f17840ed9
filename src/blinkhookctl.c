/* SPDX-License-Identifier: MIT */
/*
 * blinkhookctl: enqueues requests into the spool and reads the job log.  It
 * never talks to the daemon, so it works whether or not the daemon runs.
 *
 * Exit codes: 0 done, 1 failure (I/O, unknown job), 2 bad usage or input.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "blinkhook/config.h"
#include "blinkhook/version.h"
#include "blinkhook/job.h"
#include "blinkhook/joblog.h"
#include "blinkhook/json.h"
#include "blinkhook/daemon.h"
#include "blinkhook/httpd.h"
#include "blinkhook/meraki.h"
#include "blinkhook/queue.h"
#include "blinkhook/secret.h"

#define EXIT_USAGE 2

static const char *config_path = CONFIG_DEFAULT_PATH;
static struct config cfg;

static void help(void)
{
	printf("Usage: blinkhookctl [-c FILE] COMMAND ...\n"
	       "\n"
	       "Commands:\n"
	       "  blink SERIAL [--duration SECONDS] [--id ID]\n"
	       "                        queue a blink (1-3600 s, default 20); prints the job id\n"
	       "  status JOB_ID [--json]\n"
	       "                        show one job\n"
	       "  jobs [--state STATE] [--serial SERIAL] [--limit N] [--json]\n"
	       "                        list jobs, newest first\n"
	       "  log [--follow] [--json]\n"
	       "                        the job log's events, oldest first\n"
	       "  cancel JOB_ID         fail a job that is still queued, with error \"canceled\"\n"
	       "  selftest              check that public_url reaches this daemon (proxy, DNS, TLS)\n"
	       "\n"
	       "Options:\n"
	       "  -c, --config FILE     the config file (default " CONFIG_DEFAULT_PATH ")\n"
	       "  -h, --help            print this help\n"
	       "      --version         print the version\n");
}

/* Text from the log, the spool or the network for the terminal (util.h's
 * text_escape): the buffer lives until the end of the enclosing block, so
 * one printf can take several. */
#define ESC(s) text_escape((char[TEXT_ESCAPED_SIZE(JOB_TEXT_MAX)]){0}, TEXT_ESCAPED_SIZE(JOB_TEXT_MAX), (s))

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...)
{
	char buf[1024], text[TEXT_ESCAPED_SIZE(1024)];
	va_list ap;

	/* It quotes the argument it refuses, whatever bytes that holds. */
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "blinkhookctl: %s\nTry 'blinkhookctl --help'.\n", text_escape(text, sizeof(text), buf));
	return EXIT_USAGE;
}

/* ---- reading the log into a table ---- */

static int apply_cb(const struct job_event *ev, void *ud)
{
	/* A reader takes what it can: an event that does not apply is skipped. */
	(void)job_table_apply(ud, ev, NULL);
	return 0;
}

/* Reads the job log into t.  On failure t is released, and the error is
 * printed with what follows from it (NULL: nothing more to say). */
static int load_jobs_or(struct job_table *t, const char *consequence)
{
	struct joblog_info info;
	uint64_t end;
	int r;

	r = job_table_init(t);
	if (r < 0)
		return r;
	r = joblog_read(cfg.state_dir, 0, apply_cb, t, &info, &end);
	if (r == -ENOENT)
		return 0; /* no job yet */
	if (r < 0) {
		job_table_release(t);
		errno = -r;
		fprintf(stderr, "blinkhookctl: cannot read %s/%s: %m%s%s\n", cfg.state_dir, JOBLOG_FILE,
			consequence ? "; " : "", consequence ? consequence : "");
		return r;
	}
	if (info.damaged)
		fprintf(stderr, "blinkhookctl: warning: %s/%s: skipped %llu damaged line(s), the first at line %llu\n",
			cfg.state_dir, JOBLOG_FILE, (unsigned long long)info.damaged,
			(unsigned long long)info.bad_line);
	return 0;
}

static int load_jobs(struct job_table *t)
{
	return load_jobs_or(t, NULL);
}

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

static void print_job_human(const struct job *j)
{
	char created[RFC3339_MAX], updated[RFC3339_MAX];

	format_rfc3339(created, j->created_at);
	format_rfc3339(updated, j->updated_at);
	printf("Job:            %s\n"
	       "Serial:         %s\n"
	       "Duration:       %us\n"
	       "State:          %s\n"
	       "ledsBlinkId:    %s\n"
	       "Meraki status:  %s\n"
	       "Learned by:     %s\n"
	       "Attempts:       %u\n"
	       "Error:          %s\n"
	       "Created:        %s\n"
	       "Updated:        %s\n",
	       ESC(j->id), ESC(j->serial), j->duration, job_state_to_string(j->state), ESC(or_dash(j->leds_blink_id)),
	       ESC(or_dash(j->meraki_status)), ESC(or_dash(j->status_source)), j->attempts, ESC(or_dash(j->error)),
	       created, updated);
}

static void print_json(struct strbuf *sb)
{
	fwrite(sb->buf, 1, sb->len, stdout);
	putchar('\n');
}

/* A job still in the spool, not yet taken by the daemon. */
static int spool_job(const char *id, struct job *ret)
{
	_cleanup_free_ char *path = NULL, *buf = NULL;
	struct queue_request req;
	const char *reason;
	struct stat st;
	size_t len;

	memset(ret, 0, sizeof(*ret));
	if (asprintf(&path, "%s/new/%s.json", cfg.queue_dir, id) < 0)
		return -ENOMEM;
	if (stat(path, &st) < 0)
		return negative_errno();
	if (read_file_capped(AT_FDCWD, path, QUEUE_FILE_MAX, &buf, &len) < 0 ||
	    queue_parse_request(buf, len, &req, &reason) < 0 || req.cancel[0])
		return -EINVAL;
	snprintf(ret->id, sizeof(ret->id), "%s", id);
	snprintf(ret->serial, sizeof(ret->serial), "%s", req.serial);
	ret->duration = req.duration;
	ret->state = JOB_QUEUED;
	ret->created_at = ret->updated_at =
		(uint64_t)st.st_mtim.tv_sec * USEC_PER_SEC + (uint64_t)st.st_mtim.tv_nsec / 1000;
	return 0;
}

static int cmd_status(int argc, char **argv)
{
	static const struct option options[] = {{"json", no_argument, NULL, 'j'}, {}};
	struct job_table t;
	struct job spooled, *j;
	bool json = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
		if (c != 'j')
			return EXIT_USAGE;
		json = true;
	}
	if (optind + 1 != argc)
		return usage_error("%s", "status takes one JOB_ID");
	if (!job_id_is_valid(argv[optind]))
		return usage_error("\"%s\" is not a job id", argv[optind]);
	if (load_jobs(&t) < 0)
		return 1;
	j = job_table_find(&t, argv[optind]);
	if (!j && spool_job(argv[optind], &spooled) >= 0)
		j = &spooled;
	if (!j) {
		fprintf(stderr, "blinkhookctl: no job \"%s\"\n", argv[optind]);
		job_table_release(&t);
		return 1;
	}
	if (json) {
		struct strbuf sb = STRBUF_INIT;
		struct json_writer w;
		json_writer_init(&w, &sb);
		job_format_json(j, &w);
		r = json_writer_finish(&w);
		if (r >= 0)
			print_json(&sb);
		strbuf_release(&sb);
	} else
		print_job_human(j);
	job_table_release(&t);
	return 0;
}

static int cmd_jobs(int argc, char **argv)
{
	static const struct option options[] = {
		{"json", no_argument, NULL, 'j'},
		{"state", required_argument, NULL, 's'},
		{"serial", required_argument, NULL, 'S'},
		{"limit", required_argument, NULL, 'l'},
		{},
	};
	const char *serial = NULL;
	enum job_state state = _JOB_STATE_MAX;
	uint64_t limit = UINT64_MAX, n = 0;
	struct strbuf sb = STRBUF_INIT;
	struct json_writer w;
	struct job_table t;
	bool json = false;
	int c;

	while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 's':
			if (job_state_from_string(optarg, &state) < 0)
				return usage_error(
					"unknown state \"%s\" (queued, submitted, complete, failed, expired)", optarg);
			break;
		case 'S':
			if (!serial_is_valid(optarg))
				return usage_error("\"%s\" is not a Meraki serial (Q2XX-XXXX-XXXX)", optarg);
			serial = optarg;
			break;
		case 'l':
			if (parse_uint64(optarg, &limit) < 0 || limit == 0)
				return usage_error("--limit takes a positive whole number, not \"%s\"", optarg);
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	if (load_jobs(&t) < 0)
		return 1;

	if (json) {
		json_writer_init(&w, &sb);
		json_w_array_begin(&w);
	} else
		printf("%-24s  %-14s  %5s  %-9s  %-9s  %3s  %-20s  %s\n", "ID", "SERIAL", "DUR", "STATE", "MERAKI",
		       "TRY", "UPDATED", "ERROR");
	for (struct job *j = t.last; j && n < limit; j = j->prev) {
		char updated[RFC3339_MAX];

		if ((state != _JOB_STATE_MAX && j->state != state) || (serial && strcmp(j->serial, serial) != 0))
			continue;
		n++;
		if (json) {
			job_format_json(j, &w);
			continue;
		}
		format_rfc3339(updated, j->updated_at);
		printf("%-24s  %-14s  %4us  %-9s  %-9s  %3u  %-20s  %s\n", ESC(j->id), ESC(j->serial), j->duration,
		       job_state_to_string(j->state), ESC(or_dash(j->meraki_status)), j->attempts, updated,
		       ESC(or_dash(j->error)));
	}
	if (json) {
		json_w_array_end(&w);
		if (json_writer_finish(&w) >= 0)
			print_json(&sb);
		strbuf_release(&sb);
	}
	job_table_release(&t);
	return 0;
}

struct log_view {
	bool json;
};

static int print_event(const struct job_event *ev, void *ud)
{
	const struct log_view *v = ud;
	bool json = v->json;
	struct strbuf sb = STRBUF_INIT;
	char ts[RFC3339_MAX];

	if (json) {
		/* The nonce stays in the log: not secret by itself (the key
		 * is), but no interface needs it. */
		struct job_event shown = *ev;
		shown.nonce = NULL;
		shown.compact_mark = false; /* the log's bookkeeping */
		if (job_event_format(&shown, &sb) >= 0)
			fwrite(sb.buf, 1, sb.len, stdout);
		strbuf_release(&sb);
		return 0;
	}
	format_rfc3339(ts, ev->ts);
	printf("%s  %-24s  %-9s", ts, ESC(ev->id), job_event_name(ev));
	if (ev->kind == JOB_EV_SNAPSHOT)
		printf("  state=%s", job_state_to_string(ev->state));
	if (ev->serial)
		printf("  serial=%s duration=%us", ESC(ev->serial), ev->duration);
	if (ev->leds_blink_id)
		printf("  ledsBlinkId=%s", ESC(ev->leds_blink_id));
	if (ev->meraki_status)
		printf("  meraki=%s", ESC(ev->meraki_status));
	if (ev->attempts)
		printf("  attempt=%u", ev->attempts);
	if (ev->source)
		printf("  from=%s", ESC(ev->source));
	if (ev->error)
		printf("  error=\"%s\"", ESC(ev->error));
	putchar('\n');
	return 0;
}

static int cmd_log(int argc, char **argv)
{
	static const struct option options[] = {
		{"json", no_argument, NULL, 'j'},
		{"follow", no_argument, NULL, 'f'},
		{},
	};
	struct log_view view = {0};
	struct joblog_info info;
	struct joblog_follow f = JOBLOG_FOLLOW_INIT;
	bool follow = false;
	uint64_t off = 0;
	int c, r;

	while ((c = getopt_long(argc, argv, "f", options, NULL)) >= 0) {
		if (c == 'j')
			view.json = true;
		else if (c == 'f')
			follow = true;
		else
			return EXIT_USAGE;
	}
	if (optind != argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	setvbuf(stdout, NULL, follow ? _IOLBF : _IOFBF, 0);
	for (;;) {
		/* Following, compactions are read across (joblog.h). */
		r = follow ? joblog_follow_read(&f, cfg.state_dir, print_event, &view, &info)
			   : joblog_read(cfg.state_dir, off, print_event, &view, &info, &off);
		if (r < 0 && !(r == -ENOENT && follow)) {
			errno = -r;
			fprintf(stderr, "blinkhookctl: cannot read %s/%s: %m\n", cfg.state_dir, JOBLOG_FILE);
			joblog_follow_release(&f);
			return 1;
		}
		if (info.damaged)
			fprintf(stderr, "blinkhookctl: warning: skipped %llu damaged line(s)\n",
				(unsigned long long)info.damaged);
		if (info.compacted_unread)
			fprintf(stderr,
				"blinkhookctl: warning: the log was compacted twice between two reads; what was "
				"logged in between is shown as the jobs' snapshots\n");
		if (!follow)
			return 0;
		fflush(stdout);
		(void)poll(NULL, 0, 250);
	}
}

static int cmd_blink(int argc, char **argv)
{
	static const struct option options[] = {
		{"duration", required_argument, NULL, 'd'},
		{"id", required_argument, NULL, 'i'},
		{},
	};
	struct queue_request req = {.duration = JOB_DURATION_DEFAULT};
	uint64_t dur;
	int c, r;

	while ((c = getopt_long(argc, argv, "d:", options, NULL)) >= 0) {
		switch (c) {
		case 'd':
			if (parse_uint64(optarg, &dur) < 0 || dur < JOB_DURATION_MIN || dur > JOB_DURATION_MAX)
				return usage_error("--duration takes whole seconds from 1 to 3600, not \"%s\"", optarg);
			req.duration = (unsigned)dur;
			break;
		case 'i':
			if (!job_id_is_valid(optarg))
				return usage_error("\"%s\" is not a job id (1-64 of A-Z a-z 0-9 _ -)", optarg);
			snprintf(req.id, sizeof(req.id), "%s", optarg);
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc)
		return usage_error("%s", "blink takes one SERIAL");
	if (!serial_is_valid(argv[optind]))
		return usage_error("\"%s\" is not a Meraki serial (three groups of four letters or digits, "
				   "like Q2XX-XXXX-XXXX)",
				   argv[optind]);
	snprintf(req.serial, sizeof(req.serial), "%s", argv[optind]);
	if (req.id[0]) {
		/* The daemon would reject it: say so now, not in its log. */
		struct job_table t;
		char consequence[sizeof(req.id) + 64];
		bool used;

		snprintf(consequence, sizeof(consequence), "not checking whether id \"%s\" is already used", req.id);
		if (load_jobs_or(&t, consequence) < 0) {
			used = false;
		} else {
			used = job_table_find(&t, req.id) != NULL;
			job_table_release(&t);
		}
		if (used) {
			fprintf(stderr, "blinkhookctl: id \"%s\" is already used by a job in the log; choose another\n",
				req.id);
			return 1;
		}
	}
	r = queue_enqueue(cfg.queue_dir, &req);
	if (r == -EEXIST) {
		fprintf(stderr, "blinkhookctl: a request with id \"%s\" is already waiting\n", req.id);
		return 1;
	}
	if (r < 0) {
		errno = -r;
		fprintf(stderr, "blinkhookctl: cannot write into the spool \"%s\": %m\n", cfg.queue_dir);
		return 1;
	}
	printf("%s\n", req.id);
	return 0;
}

static int cmd_cancel(int argc, char **argv)
{
	struct queue_request req = {0};
	struct job_table t;
	struct job *j;
	int r;

	if (argc != 2)
		return usage_error("%s", "cancel takes one JOB_ID");
	if (!job_id_is_valid(argv[1]))
		return usage_error("\"%s\" is not a job id", argv[1]);
	if (load_jobs(&t) < 0)
		return 1;
	j = job_table_find(&t, argv[1]);
	if (j && j->state != JOB_QUEUED) {
		fprintf(stderr, "blinkhookctl: job \"%s\" is %s; only a queued job can be canceled\n", argv[1],
			job_state_to_string(j->state));
		job_table_release(&t);
		return 1;
	}
	job_table_release(&t);
	if (!j) {
		struct job spooled;
		if (spool_job(argv[1], &spooled) < 0) {
			fprintf(stderr, "blinkhookctl: no job \"%s\"\n", argv[1]);
			return 1;
		}
	}
	snprintf(req.cancel, sizeof(req.cancel), "%s", argv[1]);
	r = queue_enqueue(cfg.queue_dir, &req);
	if (r < 0) {
		errno = -r;
		fprintf(stderr, "blinkhookctl: cannot write into the spool \"%s\": %m\n", cfg.queue_dir);
		return 1;
	}
	printf("cancel of %s requested; the daemon fails it unless it is submitted first\n", argv[1]);
	return 0;
}

/* The salt and MAC of a probe's answer, {"salt":"...","mac":"..."}, when
 * they verify under key for nonce. */
static bool probe_answer_ok(const struct secret_key *key, const char *nonce, const char *answer)
{
	_cleanup_json_ struct json *v = NULL;
	const char *salt, *mac;
	size_t mac_len = 0;

	if (!answer || json_parse(answer, strlen(answer), 2, &v) < 0)
		return false;
	salt = json_string(json_get(v, "salt"), NULL);
	mac = json_string(json_get(v, "mac"), &mac_len);
	return salt && mac && probe_token_is_valid(salt) && probe_mac_verify(key, nonce, salt, mac, mac_len);
}

/* Sends a probe through public_url, as Meraki would reach the daemon: a
 * fresh nonce, which only a daemon holding this state directory's probe key
 * answers right.  Proves the DNS name, the proxy, its certificate and its
 * forwarding before Meraki tries. */
static int cmd_selftest(int argc, char **argv)
{
	_cleanup_free_ char *url = NULL, *answer = NULL, *error = NULL, *body = NULL;
	struct secret_key *key = NULL;
	char nonce[PROBE_TOKEN_MAX];
	bool ok;
	long status;
	uint64_t t0;
	int r;

	(void)argv;
	if (argc != 1)
		return usage_error("%s", "selftest takes no arguments");
	if (!cfg.public_url) {
		fprintf(stderr, "blinkhookctl: [callback] public_url is not set\n");
		return 1;
	}
	if (asprintf(&url, "%s%s", cfg.public_url, PROBE_PATH) < 0) {
		url = NULL;
		return 1;
	}
	r = probe_key_load(cfg.state_dir, false, &key, NULL);
	if (r < 0) {
		errno = -r;
		fprintf(stderr, "blinkhookctl: cannot read \"%s/%s\": %m (%s)\n", cfg.state_dir, PROBE_KEY_FILE,
			r == -EACCES  ? "run it as a member of the daemon's group, or as root"
			: r == -EPERM ? "the group may write it or others read it: chmod 640 it"
				      : "has blinkhookd 0.3.0 or later run with this config?");
		return 1;
	}
	if (probe_token_new(nonce) < 0 || asprintf(&body, "{\"nonce\":\"%s\"}", nonce) < 0) {
		body = NULL;
		secret_key_free(key);
		fprintf(stderr, "blinkhookctl: cannot make a nonce\n");
		return 1;
	}
	if (strncmp(url, "https://", 8) != 0)
		printf("note: public_url is not https://; Meraki will not call it\n");
	t0 = now_monotonic_usec();
	if (meraki_probe(url, cfg.ca_file, 10 * USEC_PER_SEC, body, &status, &answer, &error) < 0) {
		secret_key_free(key);
		fprintf(stderr, "blinkhookctl: out of memory\n");
		return 1;
	}
	ok = status == 200 && !error && probe_answer_ok(key, nonce, answer);
	secret_key_free(key);
	if (error) {
		printf("FAILED: %s did not answer: %s\n", url, error);
		return 1;
	}
	if (!ok && status == 200 && answer && strstr(answer, "\"mac\"")) {
		printf("FAILED: %s reached a blinkhookd, but another one (its answer does not verify under "
		       "\"%s/%s\")\n",
		       url, cfg.state_dir, PROBE_KEY_FILE);
		return 1;
	}
	if (!ok) {
		printf("FAILED: %s answered HTTP %ld without a blinkhookd's answer: the proxy does not pass "
		       "%s/callbacks/ to the daemon\n",
		       url, status, cfg.public_url);
		return 1;
	}
	printf("OK: %s reached this blinkhookd in %.0f ms\n", url, (double)(now_monotonic_usec() - t0) / 1000.0);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{},
	};
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} commands[] = {
		{"blink", cmd_blink}, {"status", cmd_status}, {"jobs", cmd_jobs},
		{"log", cmd_log},     {"cancel", cmd_cancel}, {"selftest", cmd_selftest},
	};
	char err[CONFIG_ERROR_MAX];
	int c, r;

	/* "+": stop at the command; its own options come after it. */
	while ((c = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'h':
			help();
			return 0;
		case 'V':
			printf("blinkhookctl %s\n", BLINKHOOK_VERSION);
			return 0;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return usage_error("%s", "a command is missing");

	for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
		if (strcmp(argv[optind], commands[i].name) != 0)
			continue;
		if (config_init(&cfg) < 0)
			return 1;
		r = config_load(&cfg, config_path, err);
		if (r < 0) {
			fprintf(stderr, "blinkhookctl: %s\n", err);
			config_release(&cfg);
			return 1;
		}
		argc -= optind;
		argv += optind;
		optind = 0; /* 0: glibc starts over, forgetting the "+" mode */
		r = commands[i].fn(argc, argv);
		config_release(&cfg);
		return r;
	}
	return usage_error("unknown command \"%s\"", argv[optind]);
}
