/* SPDX-License-Identifier: MIT */
/*
 * blinkhookctl: enqueues requests into the spool and reads the job log.  It
 * never talks to the daemon, so it works whether or not the daemon runs.
 *
 * Exit codes: 0 done, 1 failure (I/O, unknown job, output that cannot be
 * written), 2 bad usage or input; waiting, 3 a job failed or expired, 4 the
 * wait timed out.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blinkhook/config.h"
#include "blinkhook/credentials.h"
#include "blinkhook/version.h"
#include "blinkhook/job.h"
#include "blinkhook/joblog.h"
#include "blinkhook/json.h"
#include "blinkhook/daemon.h"
#include "blinkhook/httpd.h"
#include "blinkhook/meraki.h"
#include "blinkhook/pgstore.h"
#include "blinkhook/queue.h"
#include "blinkhook/secret.h"
#include "ctl.h"

#define EXIT_USAGE 2

const char *config_path = CONFIG_DEFAULT_PATH;
struct config cfg;

static void help(void)
{
	printf("Usage: blinkhookctl [-c FILE] COMMAND ...\n"
	       "\n"
	       "Commands:\n"
	       "  blink SERIAL... [--name NAME]... [--mac MAC]... [--duration SECONDS] [--id ID]\n"
	       "        [--wait[=SPAN]] [--json]\n"
	       "                        queue a blink of each device (1-3600 s, default 20), named by\n"
	       "                        serial, Dashboard name or MAC; prints the job ids, one a line;\n"
	       "                        --wait: until they are final (default: [callback] expire)\n"
	       "  wait JOB_ID... [--timeout SPAN] [--json]\n"
	       "                        wait until the jobs are final (default: [callback] expire)\n"
	       "  status JOB_ID [--json]\n"
	       "                        show one job\n"
	       "  jobs [--state STATE] [--serial SERIAL] [--limit N] [--json]\n"
	       "                        list jobs, newest first\n"
	       "  log [--follow] [--json]\n"
	       "                        the job log's events, oldest first\n"
	       "  cancel JOB_ID         fail a job that is still queued, with error \"canceled\"\n"
	       "  selftest              check that public_url reaches this daemon (proxy, DNS, TLS)\n"
	       "\n"
	       "Exit codes: 0 done; 1 failure (I/O, unknown job); 2 bad usage or input;\n"
	       "waiting: 3 a job failed or expired (also when the wait timed out), 4 the wait\n"
	       "timed out with no job failed (the jobs go on, once the daemon takes them).\n"
	       "\n"
	       "Options:\n"
	       "  -c, --config FILE     the config file (default " CONFIG_DEFAULT_PATH ")\n"
	       "  -h, --help            print this help\n"
	       "      --version         print the version\n");
}

/* Each verb's usage, as help() has it: what "VERB --help" prints. */
static const struct verb_usage {
	const char *name, *text;
} verb_usages[] = {
	{"blink", "Usage: blinkhookctl [-c FILE] blink [SERIAL...] [--name NAME]... [--mac MAC]...\n"
		  "        [--duration SECONDS] [--id ID] [--wait[=SPAN]] [--json]\n"
		  "Queue a blink of each device (1-3600 s, default 20), named by serial, Dashboard\n"
		  "name or MAC; print the job ids, one a line.  --wait: until they are final\n"
		  "(default: [callback] expire).\n"},
	{"wait", "Usage: blinkhookctl [-c FILE] wait JOB_ID... [--timeout SPAN] [--json]\n"
		 "Wait until the jobs are final (default: [callback] expire).\n"},
	{"status", "Usage: blinkhookctl [-c FILE] status JOB_ID [--json]\n"
		   "Show one job.\n"},
	{"jobs", "Usage: blinkhookctl [-c FILE] jobs [--state STATE] [--serial SERIAL] [--limit N] [--json]\n"
		 "List jobs, newest first.\n"},
	{"log", "Usage: blinkhookctl [-c FILE] log [--follow] [--json]\n"
		"The job log's events, oldest first.\n"},
	{"cancel", "Usage: blinkhookctl [-c FILE] cancel JOB_ID\n"
		   "Fail a job that is still queued, with error \"canceled\".\n"},
	{"selftest", "Usage: blinkhookctl [-c FILE] selftest\n"
		     "Check that public_url reaches this daemon (proxy, DNS, TLS).\n"},
};

/* Whether a verb's arguments ask for its help: -h or --help before "--".
 * Looked at before the config is loaded, so that help works without one. */
static bool verb_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return false;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return true;
	}
	return false;
}

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

/* A word that should be a serial and is not, with what else may be meant
 * (hint: "" or " (...)"): one wording for every place that takes one. */
static int serial_error(const char *s, const char *hint)
{
	return usage_error("\"%s\" is not a Meraki serial (three groups of four letters or digits, like "
			   "Q2XX-XXXX-XXXX)%s",
			   s, hint);
}

/* A verb's option getopt refused: getopt_long() said which, under the name
 * main() gave argv[0] ("blinkhookctl VERB"); this adds the way out. */
static int bad_option(void)
{
	fprintf(stderr, "Try 'blinkhookctl --help'.\n");
	return EXIT_USAGE;
}

/* What to do about EACCES on path (the config file, the job log, the
 * spool): join the group that owns it, which takes a new login.  The group
 * is the file's own, where it can be seen (an instance's may be another
 * than the packaged blinkhook-queue).  "" for any other error. */
#define ACCESS_HINT_MAX 256
static const char *access_hint(int r, const char *path, char buf[static ACCESS_HINT_MAX])
{
	const char *group = "blinkhook-queue";
	const struct group *gr;
	struct stat st;

	if (r != -EACCES)
		return "";
	if (stat(path, &st) >= 0 && st.st_gid != 0 && (gr = getgrgid(st.st_gid)))
		group = gr->gr_name;
	snprintf(buf, ACCESS_HINT_MAX,
		 " (blinkhookctl needs the group %s; after `usermod -aG %s USER`, log in again or run "
		 "`newgrp %s`)",
		 group, group, group);
	return buf;
}

/* The job log's error: which file, why, and what to do about EACCES. */
void joblog_error(int r, const char *consequence)
{
	_cleanup_free_ char *path = NULL;
	char hint[ACCESS_HINT_MAX];

	if (asprintf(&path, "%s/%s", cfg.state_dir, JOBLOG_FILE) < 0)
		path = NULL;
	fprintf(stderr, "blinkhookctl: cannot read %s/%s: %s%s%s%s\n", cfg.state_dir, JOBLOG_FILE, strerror(-r),
		path ? access_hint(r, path, hint) : "", consequence ? "; " : "", consequence ? consequence : "");
}

/* The spool's error, when a request cannot be written into it. */
static void spool_error(int r)
{
	char hint[ACCESS_HINT_MAX];

	fprintf(stderr, "blinkhookctl: cannot write into the spool \"%s\": %s%s\n", cfg.queue_dir, strerror(-r),
		access_hint(r, cfg.queue_dir, hint));
}

/* ---- reading the log into a table ---- */

int apply_cb(const struct job_event *ev, void *ud)
{
	/* A reader takes what it can: an event that does not apply is skipped. */
	(void)job_table_apply(ud, ev, NULL);
	return 0;
}

/* With [store] backend = postgresql: every event in the database, into cb.
 * The connection string as the daemon has it, or, with neither the
 * credential nor conninfo (an operator's shell), libpq's environment
 * (PGHOST, PGDATABASE, PGSERVICE, ~/.pgpass). */
static int read_pg_events(bool follow, joblog_event_cb cb, void *ud, const char *consequence)
{
	char err[CONFIG_ERROR_MAX];
	const char *source = NULL;
	char *conninfo = NULL;
	int r;

	r = credentials_load_pg_conninfo(&cfg, &conninfo, &source, err);
	if (r == -ENOENT)
		r = 0;
	if (r >= 0) {
		r = pgstore_read_events(conninfo ? conninfo : "", follow, cb, ud, err);
		secret_free(conninfo);
	}
	if (r == -ENOENT)
		return 0; /* no job yet */
	if (r < 0)
		fprintf(stderr, "blinkhookctl: %s%s%s\n", err, consequence ? "; " : "", consequence ? consequence : "");
	return r;
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
	if (cfg.store_backend == STORE_POSTGRESQL) {
		r = read_pg_events(false, apply_cb, t, consequence);
		if (r < 0)
			job_table_release(t);
		return r;
	}
	r = joblog_read(cfg.state_dir, 0, apply_cb, t, &info, &end);
	if (r == -ENOENT)
		return 0; /* no job yet */
	if (r < 0) {
		job_table_release(t);
		joblog_error(r, consequence);
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

const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

/* The device in a table or the wait's display: the serial once known,
 * else what was asked for, marked as such ("name:edge-sw-1",
 * "mac:aa:bb:cc:dd:ee:ff"), so that a name never passes for a serial. */
const char *device_label(const struct job *j, char buf[static DEVICE_LABEL_MAX])
{
	if (j->serial[0])
		return j->serial;
	if (j->name)
		snprintf(buf, DEVICE_LABEL_MAX, "name:%s", j->name);
	else if (j->mac[0])
		snprintf(buf, DEVICE_LABEL_MAX, "mac:%s", j->mac);
	else
		return "-";
	return buf;
}

static void print_job_human(const struct job *j)
{
	char created[RFC3339_MAX], updated[RFC3339_MAX];

	format_rfc3339(created, j->created_at);
	format_rfc3339(updated, j->updated_at);
	/* What was asked for stays in view once the serial is resolved. */
	printf("Job:            %s\n", ESC(j->id));
	if (j->name)
		printf("Name:           %s\n", ESC(j->name));
	if (j->mac[0])
		printf("MAC:            %s\n", ESC(j->mac));
	printf("Serial:         %s\n"
	       "Duration:       %us\n"
	       "State:          %s\n"
	       "ledsBlinkId:    %s\n"
	       "Meraki status:  %s\n"
	       "Learned by:     %s\n"
	       "Attempts:       %u\n"
	       "Error:          %s\n"
	       "Created:        %s\n"
	       "Updated:        %s\n",
	       ESC(or_dash(j->serial)), j->duration, job_state_to_string(j->state), ESC(or_dash(j->leds_blink_id)),
	       ESC(or_dash(j->meraki_status)), ESC(or_dash(j->status_source)), j->attempts, ESC(or_dash(j->error)),
	       created, updated);
}

void print_json(struct strbuf *sb)
{
	fwrite(sb->buf, 1, sb->len, stdout);
	putchar('\n');
}

/* A job still in the spool, not yet taken by the daemon.  A name it asks
 * for goes into name_buf (JOB_NAME_MAX + 1 bytes), to which ret->name
 * points. */
int spool_job(const char *id, struct job *ret, char *name_buf)
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
	snprintf(ret->mac, sizeof(ret->mac), "%s", req.mac);
	if (req.name[0]) {
		snprintf(name_buf, JOB_NAME_MAX + 1, "%s", req.name);
		ret->name = name_buf;
	}
	return 0;
}

/* A request in the spool, as a job (spool_job()'s). */
struct spooled {
	struct job job;
	char name[JOB_NAME_MAX + 1];
};

static int spooled_newest_first(const void *a, const void *b)
{
	const struct spooled *x = a, *y = b;

	if (x->job.created_at != y->job.created_at)
		return x->job.created_at < y->job.created_at ? 1 : -1;
	return strcmp(y->job.id, x->job.id);
}

/* The requests waiting in the spool's new/ that the log does not have yet,
 * newest first, as status shows them: jobs lists them as queued.  The
 * spool is small (the daemon takes each request within a second), and a
 * spool that cannot be listed only leaves them out. */
static int spool_jobs(const struct job_table *t, struct spooled **ret, size_t *ret_n)
{
	_cleanup_free_ char *dir = NULL;
	struct spooled *v = NULL;
	size_t n = 0, alloc = 0;
	struct dirent *de;
	DIR *d;

	*ret = NULL;
	*ret_n = 0;
	if (asprintf(&dir, "%s/new", cfg.queue_dir) < 0) {
		dir = NULL;
		return -ENOMEM;
	}
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : negative_errno();
	while ((de = readdir(d))) {
		char id[JOB_ID_MAX + 1];
		size_t len = strlen(de->d_name);

		if (len <= 5 || len - 5 > JOB_ID_MAX || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		snprintf(id, sizeof(id), "%.*s", (int)(len - 5), de->d_name);
		if (!job_id_is_valid(id) || job_table_find(t, id))
			continue;
		if (n == alloc) {
			struct spooled *nv = reallocarray(v, alloc ? alloc * 2 : 16, sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
			alloc = alloc ? alloc * 2 : 16;
		}
		/* Gone meanwhile (taken by the daemon), a cancel, or bad. */
		if (spool_job(id, &v[n].job, v[n].name) < 0)
			continue;
		n++;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), spooled_newest_first);
	/* A job's name points into its own entry: set after the moves. */
	for (size_t i = 0; i < n; i++)
		if (v[i].job.name)
			v[i].job.name = v[i].name;
	*ret = v;
	*ret_n = n;
	return 0;
}

/* The i-th job jobs lists, after cur: the spool's requests, then the
 * log's jobs from the newest. */
static struct job *jobs_next(struct spooled *sp, size_t n_sp, const struct job_table *t, struct job *cur, size_t i)
{
	if (i < n_sp)
		return &sp[i].job;
	return i == n_sp ? t->last : cur->prev;
}

static int cmd_status(int argc, char **argv)
{
	static const struct option options[] = {{"json", no_argument, NULL, 'j'}, {}};
	struct job_table t;
	struct job spooled, *j;
	char spooled_name[JOB_NAME_MAX + 1];
	bool json = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
		if (c != 'j')
			return bad_option();
		json = true;
	}
	if (optind + 1 != argc)
		return usage_error("%s", "status takes one JOB_ID");
	if (!job_id_is_valid(argv[optind]))
		return usage_error("\"%s\" is not a job id", argv[optind]);
	if (load_jobs(&t) < 0)
		return 1;
	j = job_table_find(&t, argv[optind]);
	if (!j && spool_job(argv[optind], &spooled, spooled_name) >= 0)
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
	struct spooled *spooled = NULL;
	size_t n_spooled = 0;
	bool json = false;
	int c, r;

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
				return serial_error(optarg, "");
			serial = optarg;
			break;
		case 'l':
			if (parse_uint64(optarg, &limit) < 0 || limit == 0)
				return usage_error("--limit takes a positive whole number, not \"%s\"", optarg);
			break;
		default:
			return bad_option();
		}
	}
	if (optind != argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	if (load_jobs(&t) < 0)
		return 1;
	/* After the log: a request taken meanwhile is in one or the other. */
	r = spool_jobs(&t, &spooled, &n_spooled);
	if (r < 0) {
		errno = -r;
		fprintf(stderr, "blinkhookctl: warning: cannot list %s/new: %m; requests waiting there are left out\n",
			cfg.queue_dir);
	}

	if (json) {
		json_writer_init(&w, &sb);
		json_w_array_begin(&w);
	} else
		printf("%-24s  %-14s  %5s  %-9s  %-9s  %3s  %-20s  %s\n", "ID", "DEVICE", "DUR", "STATE", "MERAKI",
		       "TRY", "UPDATED", "ERROR");
	/* The spool's requests first: they are newer than any job the daemon
	 * took.  Then the log's, newest first. */
	size_t i = 0;
	for (struct job *j = jobs_next(spooled, n_spooled, &t, NULL, 0); j && n < limit;
	     j = jobs_next(spooled, n_spooled, &t, j, ++i)) {
		char updated[RFC3339_MAX], label[DEVICE_LABEL_MAX];

		if ((state != _JOB_STATE_MAX && j->state != state) || (serial && strcmp(j->serial, serial) != 0))
			continue;
		n++;
		if (json) {
			job_format_json(j, &w);
			continue;
		}
		format_rfc3339(updated, j->updated_at);
		printf("%-24s  %-14s  %4us  %-9s  %-9s  %3u  %-20s  %s\n", ESC(j->id), ESC(device_label(j, label)),
		       j->duration, job_state_to_string(j->state), ESC(or_dash(j->meraki_status)), j->attempts, updated,
		       ESC(or_dash(j->error)));
	}
	if (json) {
		json_w_array_end(&w);
		if (json_writer_finish(&w) >= 0)
			print_json(&sb);
		strbuf_release(&sb);
	}
	free(spooled);
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
	if (ev->name)
		printf("  name=\"%s\"", ESC(ev->name));
	if (ev->mac)
		printf("  mac=%s", ESC(ev->mac));
	if (ev->serial)
		printf("  serial=%s", ESC(ev->serial));
	/* A resolution names the device found, nothing about the blink. */
	if (ev->kind == JOB_EV_QUEUED || ev->kind == JOB_EV_SNAPSHOT)
		printf("  duration=%us", ev->duration);
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
			return bad_option();
	}
	if (optind != argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	setvbuf(stdout, NULL, follow ? _IOLBF : _IOFBF, 0);
	if (cfg.store_backend == STORE_POSTGRESQL)
		return read_pg_events(follow, print_event, &view, NULL) < 0 ? 1 : 0;
	for (;;) {
		/* Following, compactions are read across (joblog.h). */
		r = follow ? joblog_follow_read(&f, cfg.state_dir, print_event, &view, &info)
			   : joblog_read(cfg.state_dir, off, print_event, &view, &info, &off);
		if (r < 0 && !(r == -ENOENT && follow)) {
			joblog_error(r, NULL);
			joblog_follow_release(&f);
			return 1;
		}
		if (info.damaged)
			fprintf(stderr, "blinkhookctl: warning: skipped %llu damaged line(s)\n",
				(unsigned long long)info.damaged);
		if (info.compacted_unread)
			fprintf(stderr,
				"blinkhookctl: warning: records were dropped by a compaction before they could be "
				"read; showing the jobs' snapshots instead\n");
		if (!follow)
			return 0;
		if (fflush(stdout) != 0 || ferror(stdout)) {
			fprintf(stderr, "blinkhookctl: cannot write to standard output: %m\n");
			joblog_follow_release(&f);
			return 1;
		}
		(void)poll(NULL, 0, 250);
	}
}

static int parse_wait_span(const char *opt, const char *s, uint64_t *ret)
{
	if (parse_timespan(s, ret) < 0)
		return usage_error("%s takes a time span (\"30s\", \"5min\"), not \"%s\"", opt, s);
	return 0;
}

static int cmd_wait(int argc, char **argv)
{
	static const struct option options[] = {
		{"timeout", required_argument, NULL, 't'},
		{"json", no_argument, NULL, 'j'},
		{},
	};
	uint64_t timeout = cfg.expire_usec;
	bool json = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
		switch (c) {
		case 't':
			if ((r = parse_wait_span("--timeout", optarg, &timeout)) != 0)
				return r;
			break;
		case 'j':
			json = true;
			break;
		default:
			return bad_option();
		}
	}
	if (optind >= argc)
		return usage_error("%s", "wait takes one or more JOB_IDs");
	for (int i = optind; i < argc; i++)
		if (!job_id_is_valid(argv[i]))
			return usage_error("\"%s\" is not a job id", argv[i]);
	return wait_jobs(argv + optind, NULL, (size_t)(argc - optind), timeout, json);
}

/* The job a request becomes, as the daemon will record it: what blink
 * --json prints, and what a wait shows until the daemon takes it.  It
 * borrows req's name. */
static void job_from_request(struct queue_request *req, uint64_t now, struct job *ret)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->id, sizeof(ret->id), "%s", req->id);
	snprintf(ret->serial, sizeof(ret->serial), "%s", req->serial);
	snprintf(ret->mac, sizeof(ret->mac), "%s", req->mac);
	ret->name = req->name[0] ? req->name : NULL;
	ret->duration = req->duration;
	ret->state = JOB_QUEUED;
	ret->created_at = ret->updated_at = now;
}

/* Output that could not be written after jobs were queued: the jobs are
 * there and will blink, so their ids go to stderr instead. */
static int ids_lost(char **ids, size_t n)
{
	fprintf(stderr, "blinkhookctl: cannot write to standard output: %m; queued nonetheless:");
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, " %s", ids[i]);
	fputc('\n', stderr);
	return 1;
}

static int cmd_blink(int argc, char **argv)
{
	static const struct option options[] = {
		{"duration", required_argument, NULL, 'd'},
		{"id", required_argument, NULL, 'i'},
		{"name", required_argument, NULL, 'n'},
		{"mac", required_argument, NULL, 'm'},
		{"wait", optional_argument, NULL, 'w'},
		{"json", no_argument, NULL, 'j'},
		{},
	};
	_cleanup_free_ struct queue_request *reqs = NULL;
	_cleanup_free_ struct job *queued = NULL;
	_cleanup_free_ char **ids = NULL;
	unsigned duration = JOB_DURATION_DEFAULT;
	uint64_t dur, timeout = cfg.expire_usec, now;
	bool wait = false, json = false, bare_wait = false;
	char id[JOB_ID_MAX + 1] = "";
	size_t n = 0, done = 0;
	int c, r;

	reqs = calloc((size_t)argc, sizeof(*reqs));
	if (!reqs) {
		fprintf(stderr, "blinkhookctl: out of memory\n");
		return 1;
	}
	/* "-": devices come back in the order given, mixed with options. */
	while ((c = getopt_long(argc, argv, "-d:", options, NULL)) >= 0) {
		bool was_bare_wait = bare_wait;

		bare_wait = false;
		switch (c) {
		case 1:
			/* "--wait 5min": the span was meant for --wait, which
			 * takes it only after "=" (its value is optional). */
			if (!serial_is_valid(optarg)) {
				char hint[sizeof(" (for a time limit, write --wait=)") + 64];
				uint64_t span;

				hint[0] = '\0';
				if (was_bare_wait && parse_timespan(optarg, &span) >= 0)
					snprintf(hint, sizeof(hint), " (for a time limit, write --wait=%.64s)", optarg);
				return serial_error(optarg, hint);
			}
			snprintf(reqs[n++].serial, sizeof(reqs->serial), "%s", optarg);
			break;
		case 'n':
			if (!job_name_valid(optarg))
				return usage_error("--name takes a device's name as Dashboard has it (1-%d bytes of "
						   "UTF-8, no control characters), not \"%s\"",
						   JOB_NAME_MAX, optarg);
			snprintf(reqs[n++].name, sizeof(reqs->name), "%s", optarg);
			break;
		case 'm':
			/* The daemon matches the colon form; any usual spelling is taken. */
			if (mac_normalize(optarg, reqs[n].mac) < 0)
				return usage_error("--mac takes a MAC address (aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, "
						   "aabb.ccdd.eeff, aabbccddeeff), not \"%s\"",
						   optarg);
			n++;
			break;
		case 'd':
			if (parse_uint64(optarg, &dur) < 0 || dur < JOB_DURATION_MIN || dur > JOB_DURATION_MAX)
				return usage_error("--duration takes whole seconds from 1 to 3600, not \"%s\"", optarg);
			duration = (unsigned)dur;
			break;
		case 'i':
			if (!job_id_is_valid(optarg))
				return usage_error("\"%s\" is not a job id (1-64 of A-Z a-z 0-9 _ -)", optarg);
			snprintf(id, sizeof(id), "%s", optarg);
			break;
		case 'w':
			wait = true;
			bare_wait = !optarg;
			if (optarg && (r = parse_wait_span("--wait", optarg, &timeout)) != 0)
				return r;
			break;
		case 'j':
			json = true;
			break;
		default:
			return bad_option();
		}
	}
	/* After "--", serials only. */
	for (; optind < argc; optind++) {
		if (!serial_is_valid(argv[optind]))
			return serial_error(argv[optind], "");
		snprintf(reqs[n++].serial, sizeof(reqs->serial), "%s", argv[optind]);
	}
	if (n == 0)
		return usage_error("%s", "blink takes at least one SERIAL, --name or --mac");
	if (id[0] && n > 1)
		return usage_error("%s", "--id takes one device, not several");
	if (id[0]) {
		/* The daemon would reject it: say so now, not in its log. */
		struct job_table t;
		char consequence[sizeof(id) + 64];
		bool used;

		snprintf(consequence, sizeof(consequence), "not checking whether id \"%s\" is already used", id);
		if (load_jobs_or(&t, consequence) < 0) {
			used = false;
		} else {
			used = job_table_find(&t, id) != NULL;
			job_table_release(&t);
		}
		if (used) {
			fprintf(stderr, "blinkhookctl: id \"%s\" is already used by a job in the log; choose another\n",
				id);
			return 1;
		}
		snprintf(reqs[0].id, sizeof(reqs[0].id), "%s", id);
	}

	queued = calloc(n, sizeof(*queued));
	ids = calloc(n, sizeof(*ids));
	if (!queued || !ids) {
		fprintf(stderr, "blinkhookctl: out of memory\n");
		return 1;
	}
	for (; done < n; done++) {
		reqs[done].duration = duration;
		r = queue_enqueue(cfg.queue_dir, &reqs[done]);
		if (r < 0)
			break;
		now = now_realtime_usec();
		job_from_request(&reqs[done], now, &queued[done]);
		ids[done] = reqs[done].id;
	}
	if (done < n) {
		/* The ones queued before stay queued: say which. */
		if (r == -EEXIST)
			fprintf(stderr, "blinkhookctl: a request with id \"%s\" is already waiting\n", reqs[done].id);
		else
			spool_error(r);
		for (size_t i = 0; i < done; i++)
			printf("%s\n", ids[i]);
		if (done)
			fprintf(stderr, "blinkhookctl: %zu of %zu job(s) queued before that (their ids on stdout)\n",
				done, n);
		return 1;
	}
	if (!json || wait) {
		if (!json)
			for (size_t i = 0; i < n; i++)
				printf("%s\n", ids[i]);
		/* A script reads the ids while the wait goes on. */
		if (fflush(stdout) != 0 || ferror(stdout))
			return ids_lost(ids, n);
		if (wait)
			return wait_jobs(ids, queued, n, timeout, json);
		return 0;
	}
	struct strbuf sb = STRBUF_INIT;
	struct json_writer w;

	json_writer_init(&w, &sb);
	json_w_array_begin(&w);
	for (size_t i = 0; i < n; i++)
		job_format_json(&queued[i], &w);
	json_w_array_end(&w);
	r = json_writer_finish(&w);
	if (r >= 0)
		print_json(&sb);
	strbuf_release(&sb);
	if (r < 0)
		return 1;
	if (fflush(stdout) != 0 || ferror(stdout))
		return ids_lost(ids, n);
	return 0;
}

static int cmd_cancel(int argc, char **argv)
{
	static const struct option options[] = {{}};
	struct queue_request req = {0};
	struct job_table t;
	struct job *j;
	int r;

	if (getopt_long(argc, argv, "", options, NULL) >= 0)
		return bad_option();
	if (argc - optind != 1)
		return usage_error("%s", "cancel takes one JOB_ID");
	argv += optind - 1; /* the JOB_ID as argv[1] */
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
		char spooled_name[JOB_NAME_MAX + 1];

		if (spool_job(argv[1], &spooled, spooled_name) < 0) {
			fprintf(stderr, "blinkhookctl: no job \"%s\"\n", argv[1]);
			return 1;
		}
	}
	snprintf(req.cancel, sizeof(req.cancel), "%s", argv[1]);
	r = queue_enqueue(cfg.queue_dir, &req);
	if (r < 0) {
		spool_error(r);
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

	static const struct option options[] = {{}};

	if (getopt_long(argc, argv, "", options, NULL) >= 0)
		return bad_option();
	if (argc != optind)
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
		{"blink", cmd_blink}, {"wait", cmd_wait},     {"status", cmd_status},     {"jobs", cmd_jobs},
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
			return close_stdout("blinkhookctl", 0, false);
		case 'V':
			printf("blinkhookctl %s\n", BLINKHOOK_VERSION);
			return close_stdout("blinkhookctl", 0, false);
		default:
			return bad_option();
		}
	}
	if (optind >= argc)
		return usage_error("%s", "a command is missing");

	for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
		char verb[64];

		if (strcmp(argv[optind], commands[i].name) != 0)
			continue;
		if (verb_wants_help(argc - optind, argv + optind)) {
			for (size_t k = 0; k < ELEMENTSOF(verb_usages); k++)
				if (strcmp(verb_usages[k].name, commands[i].name) == 0)
					fputs(verb_usages[k].text, stdout);
			return close_stdout("blinkhookctl", 0, false);
		}
		if (config_init(&cfg) < 0)
			return 1;
		r = config_load(&cfg, config_path, err);
		if (r < 0) {
			char hint[ACCESS_HINT_MAX];

			fprintf(stderr, "blinkhookctl: %s%s\n", err, access_hint(r, config_path, hint));
			config_release(&cfg);
			return 1;
		}
		argc -= optind;
		argv += optind;
		/* getopt_long() names the program by argv[0] in its messages. */
		snprintf(verb, sizeof(verb), "blinkhookctl %s", commands[i].name);
		argv[0] = verb;
		optind = 0; /* 0: glibc starts over, forgetting the "+" mode */
		r = commands[i].fn(argc, argv);
		config_release(&cfg);
		/* A command that failed (1) or was misused (2) said why; a
		 * wait's 3 and 4 come with output that must arrive. */
		return close_stdout("blinkhookctl", r, r == 1 || r == EXIT_USAGE);
	}
	return usage_error("unknown command \"%s\"", argv[optind]);
}
