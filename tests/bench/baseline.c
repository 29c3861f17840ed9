/* SPDX-License-Identifier: MIT */
/*
 * baseline — the benchmark's yardstick: the least a server on blinkhookd's
 * stack can do for a callback, in blinkhookd's threading mode.
 *
 * libmicrohttpd in external epoll mode (MHD_USE_EPOLL, no internal thread),
 * driven by an epoll loop of our own on one thread, exactly as blinkhookd
 * drives it from sd-event; the same connection limits.  For a POST to
 * /callbacks/leds-blink/<id> with Content-Type application/json it collects
 * the body, parses it with json-c, compares its "sharedSecret" with the
 * secret given on the command line using CRYPTO_memcmp, and answers 200
 * {"ok":true} (401 when it differs).  Nothing else: no HMAC, no job table,
 * no job log, no fdatasync, no logging.
 *
 * usage: baseline PORT SECRET     (PORT 0: any; the port is printed on
 *                                  stdout once it listens)
 * SIGTERM or SIGINT stops it; it then prints the counts of its answers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#define PREFIX "/callbacks/leds-blink/"
#define MAX_BODY ((size_t)64 * 1024) /* blinkhookd's default max_body */
#define JSON_DEPTH 32

struct request {
	char *body;
	size_t len, alloc;
	bool too_big;
	bool answered;
};

static const char *secret;
static size_t secret_len;
static struct MHD_Response *resp_ok, *resp_unauthorized, *resp_bad, *resp_other;
static unsigned long long n_ok, n_unauthorized, n_other;

static struct MHD_Response *canned(const char *body)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);

	if (!r) {
		fprintf(stderr, "baseline: cannot create a response\n");
		exit(1);
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	return r;
}

static enum MHD_Result answer(struct MHD_Connection *conn, struct request *r, unsigned status,
			      struct MHD_Response *resp)
{
	r->answered = true;
	if (status == 200)
		n_ok++;
	else if (status == 401)
		n_unauthorized++;
	else
		n_other++;
	return MHD_queue_response(conn, status, resp);
}

static bool json_content_type(struct MHD_Connection *conn)
{
	const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t n = strlen("application/json");

	return ct && strncasecmp(ct, "application/json", n) == 0 && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* Parses the body and checks its sharedSecret in constant time. */
static unsigned evaluate(const struct request *r)
{
	struct json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
	struct json_object *root, *s;
	unsigned status = 400;

	if (!tok)
		return 500;
	root = json_tokener_parse_ex(tok, r->body ? r->body : "", (int)r->len);
	if (root && json_tokener_get_error(tok) == json_tokener_success &&
	    json_object_is_type(root, json_type_object)) {
		status = 401;
		if (json_object_object_get_ex(root, "sharedSecret", &s) && json_object_is_type(s, json_type_string) &&
		    (size_t)json_object_get_string_len(s) == secret_len &&
		    CRYPTO_memcmp(json_object_get_string(s), secret, secret_len) == 0)
			status = 200;
	}
	json_object_put(root);
	json_tokener_free(tok);
	return status;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			       const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct request *r = *con_cls;
	unsigned status;

	(void)cls;
	(void)version;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		*con_cls = r;
		if (strncmp(url, PREFIX, strlen(PREFIX)) != 0)
			return answer(conn, r, 404, resp_other);
		if (strcmp(method, "POST") != 0 || !json_content_type(conn))
			return answer(conn, r, 405, resp_other);
		return MHD_YES;
	}
	if (r->answered)
		return MHD_YES;
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		if (r->len + n > MAX_BODY)
			r->too_big = true;
		if (!r->too_big) {
			if (r->len + n > r->alloc) {
				size_t na = r->alloc ? r->alloc : 1024;
				char *nb;

				while (na < r->len + n)
					na *= 2;
				nb = realloc(r->body, na);
				if (!nb)
					return MHD_NO;
				r->body = nb;
				r->alloc = na;
			}
			memcpy(r->body + r->len, upload_data, n);
			r->len += n;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->too_big)
		return answer(conn, r, 413, resp_other);
	status = evaluate(r);
	return answer(conn, r, status,
		      status == 200   ? resp_ok
		      : status == 401 ? resp_unauthorized
		      : status == 400 ? resp_bad
				      : resp_other);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct request *r = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (r) {
		free(r->body);
		free(r);
		*con_cls = NULL;
	}
}

static int listen_on(unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	socklen_t sl = sizeof(sa);
	int fd, one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, SOMAXCONN) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		close(fd);
		return -1;
	}
	printf("%u\n", ntohs(sa.sin_port));
	fflush(stdout);
	return fd;
}

int main(int argc, char **argv)
{
	const union MHD_DaemonInfo *di;
	struct MHD_Daemon *mhd;
	struct epoll_event ev = {.events = EPOLLIN};
	sigset_t ss;
	int lfd, efd, sfd, mfd;

	if (argc != 3) {
		fprintf(stderr, "usage: baseline PORT SECRET\n");
		return 2;
	}
	secret = argv[2];
	secret_len = strlen(secret);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);

	resp_ok = canned("{\"ok\":true}\n");
	resp_unauthorized = canned("{\"error\":\"unauthorized\"}\n");
	resp_bad = canned("{\"error\":\"bad request\"}\n");
	resp_other = canned("{\"error\":\"not found\"}\n");

	lfd = listen_on((unsigned)strtoul(argv[1], NULL, 10));
	if (lfd < 0) {
		perror("baseline: cannot listen");
		return 1;
	}
	/* blinkhookd's own limits (lifecycle.c, httpd.c). */
	mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, handler, NULL,
			       MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd, MHD_OPTION_CONNECTION_LIMIT, 1024u,
			       MHD_OPTION_CONNECTION_TIMEOUT, 15u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
			       (size_t)(32 * 1024), MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
	if (!mhd) {
		fprintf(stderr, "baseline: MHD_start_daemon failed\n");
		return 1;
	}
	di = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_EPOLL_FD);
	mfd = di ? di->epoll_fd : -1;
	efd = epoll_create1(EPOLL_CLOEXEC);
	ev.data.fd = mfd;
	if (mfd < 0 || efd < 0 || sfd < 0 || epoll_ctl(efd, EPOLL_CTL_ADD, mfd, &ev) < 0) {
		perror("baseline: epoll");
		return 1;
	}
	ev.data.fd = sfd;
	if (epoll_ctl(efd, EPOLL_CTL_ADD, sfd, &ev) < 0) {
		perror("baseline: epoll");
		return 1;
	}
	for (;;) {
		MHD_UNSIGNED_LONG_LONG ms;
		struct epoll_event got[4];
		int timeout = -1, n;
		bool stop = false;

		if (MHD_get_timeout(mhd, &ms) == MHD_YES)
			timeout = ms > INT32_MAX ? INT32_MAX : (int)ms;
		n = epoll_wait(efd, got, 4, timeout);
		if (n < 0 && errno != EINTR) {
			perror("baseline: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++)
			if (got[i].data.fd == sfd)
				stop = true;
		if (stop)
			break;
		MHD_run(mhd);
	}
	MHD_stop_daemon(mhd);
	close(lfd);
	fprintf(stderr, "baseline: answered %llu 200, %llu 401, %llu other\n", n_ok, n_unauthorized, n_other);
	return 0;
}
