/* SPDX-License-Identifier: MIT */
/*
 * meraki — the Dashboard API client: builds the blink and status requests,
 * runs them on a libcurl multi handle without ever blocking, and sorts each
 * answer into what the scheduler should do with it.  The only module that
 * includes libcurl.
 *
 * The client knows no event loop: it asks its owner to watch sockets and to
 * arm one timer (struct meraki_loop_ops) and is told when they fire.
 *
 * Redirects are followed here, not by libcurl, so that the rule is ours: a
 * request goes only to base_url's origin (scheme, host and port), since it
 * carries the API key and a blink's body carries the job's callback secret.
 * A redirect within that origin is followed (POST stays POST with its body on
 * 301, 302, 307 and 308); one to any other origin is not, and fails the call
 * with foreign_redirect set and the target's origin in the error.
 *
 * Device look-ups (GET /organizations, GET /organizations/{id}/devices) are
 * lists the API pages: the client follows the Link header's rel=next itself,
 * by the same rule (only within base_url's origin), up to
 * MERAKI_LIST_PAGES_MAX pages, and answers once with every page's items.  A
 * page answered 429, 5xx or not at all ends the call with that outcome: the
 * caller asks again from the first page, as it would any other call.
 *
 * GET /organizations asks for one page of MERAKI_ORGS_PER_PAGE only: that
 * tells one organization from several and names a few, whatever the number a
 * key sees (truncated when there are more).  An organizations page larger
 * than MERAKI_LIST_BODY_MAX fails the call (MERAKI_FAIL), saying to set
 * organization_id, since asking again would get the same answer.
 */
#ifndef BLINKHOOK_MERAKI_H
#define BLINKHOOK_MERAKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MERAKI_BODY_MAX ((size_t)64 * 1024)
/* A list answer's page (devices, organizations) may be larger. */
#define MERAKI_LIST_BODY_MAX ((size_t)1024 * 1024)
#define MERAKI_LINK_MAX ((size_t)8 * 1024) /* the Link headers of one answer */
#define MERAKI_MAX_REDIRECTS 5
/* A Retry-After longer than this is taken as this. */
#define MERAKI_RETRY_AFTER_MAX (3600 * UINT64_C(1000000))

enum meraki_outcome {
	MERAKI_OK,           /* the answer we wanted */
	MERAKI_RETRY,        /* transient: 5xx, timeouts, network, TLS, a broken 2xx body */
	MERAKI_RATE_LIMITED, /* 429: wait retry_after_usec, or back off when absent */
	MERAKI_FAIL,         /* will never succeed as asked: other 4xx */
};

/* One element of a list answer: a device (id: its serial) or an
 * organization (id: its id).  name and mac are NULL when it has none. */
struct meraki_item {
	char *id;
	char *name;
	char *mac;
	bool name_cut; /* name was longer than a job's and is cut to JOB_NAME_MAX */
};
/* Whether the item's name is name exactly: never when its name was cut
 * (a cut name equals its first bytes, not the device's name). */
static inline bool meraki_item_named(const struct meraki_item *it, const char *name)
{
	return it->name && !it->name_cut && strcmp(it->name, name) == 0;
}

struct meraki_result {
	enum meraki_outcome outcome;
	long http_status;          /* 0 when no answer came */
	uint64_t retry_after_usec; /* UINT64_MAX when the 429 carried none */
	char *leds_blink_id;
	char *status;    /* Meraki's job status from the body */
	char *error;     /* the API's own errors text, or what went wrong */
	bool auth_error; /* 401 or 403: every request will fail alike */
	/* A redirect to another origin, not followed: every request will
	 * fail alike until base_url names that origin. */
	bool foreign_redirect;
	/* A list call's items, every page's; truncated when there were more
	 * pages than MERAKI_LIST_PAGES_MAX. */
	struct meraki_item *items;
	size_t n_items;
	bool truncated;
};
void meraki_result_release(struct meraki_result *r);

enum meraki_call_kind {
	MERAKI_CALL_BLINK,   /* POST .../liveTools/leds/blink, wants a ledsBlinkId */
	MERAKI_CALL_GET,     /* GET .../liveTools/leds/blink/{id}, wants a status */
	MERAKI_CALL_ORGS,    /* GET /organizations, wants a list */
	MERAKI_CALL_DEVICES, /* GET /organizations/{id}/devices, wants a list */
};

/* Devices asked for per page, and the most pages one look-up reads. */
#define MERAKI_LIST_PER_PAGE 50
#define MERAKI_LIST_PAGES_MAX 20
/* Organizations asked for: one page, enough to name five and say "more". */
#define MERAKI_ORGS_PER_PAGE 6
/* A list answer's usable elements appended to *items (*n of them so far):
 * for MERAKI_CALL_DEVICES objects with a valid "serial", for
 * MERAKI_CALL_ORGS objects with an "id" fit for a URL path; any other element
 * is skipped.  -EBADMSG when body is not a JSON array, -ENOMEM. */
int meraki_parse_items(enum meraki_call_kind kind, const char *body, size_t len, struct meraki_item **items, size_t *n);
void meraki_items_free(struct meraki_item *items, size_t n);
/* The rel=next target of a Link header's value (RFC 8288: "<URL>; rel=next,
 * <URL>; rel=first"), copied into buf.  -ENOENT when there is none, -EINVAL
 * when the value cannot be read, -ENAMETOOLONG when buf is too small. */
int meraki_link_next(const char *link, char *buf, size_t size);

/* Pure: what an answer means.  transport_error is NULL when an HTTP answer
 * came; retry_after is the header's value or NULL. */
int meraki_classify(enum meraki_call_kind kind, long http_status, const char *transport_error, const char *retry_after,
		    const char *body, size_t len, uint64_t now_realtime, struct meraki_result *ret);
/* "120" or an HTTP-date; the wait from now, capped at MERAKI_RETRY_AFTER_MAX. */
int meraki_parse_retry_after(const char *v, uint64_t now_realtime, uint64_t *ret_usec);
/* "scheme://host:port" of an http or https URL: scheme and host in lower
 * case, the port always given (80 and 443 by default), IPv6 in brackets.
 * -EINVAL for anything else, -ENAMETOOLONG when size is too small. */
#define MERAKI_ORIGIN_MAX 320
int meraki_origin(const char *url, char *buf, size_t size);
/* Whether a and b have the same origin (false when either has none): the
 * only place the API key and a callback secret may go, given base_url. */
bool meraki_same_origin(const char *a, const char *b);

struct meraki_loop_ops {
	/* Watch fd for EPOLLIN/EPOLLOUT (events 0: stop watching and forget
	 * *ctx).  *ctx is the owner's per-socket state, NULL at first. */
	int (*watch)(void *ud, int fd, uint32_t events, void **ctx);
	/* Arm the timer usec from now; UINT64_MAX disarms it. */
	int (*set_timer)(void *ud, uint64_t usec);
};

struct meraki_opts {
	const char *base_url;
	const char *api_key;
	const char *ca_file;
	uint64_t timeout_usec;
	const char *user_agent;
};

struct meraki_blink_request {
	const char *serial;
	unsigned duration;
	const char *callback_url; /* with shared_secret */
	const char *shared_secret;
	const char *http_server_id; /* instead of url + secret */
	const char *payload_template_id;
};

struct meraki_client;
typedef void (*meraki_done_fn)(void *ud, const struct meraki_result *res);

int meraki_new(const struct meraki_opts *opts, const struct meraki_loop_ops *ops, void *loop_ud,
	       struct meraki_client **ret);
/* Aborts every call in flight without calling its done function. */
void meraki_free(struct meraki_client *c);
/* Later calls use the new key (reload). */
int meraki_set_api_key(struct meraki_client *c, const char *key);
/* Later calls use opts' base_url, ca_file and timeout (reload); calls in
 * flight finish as they started.  opts->api_key is ignored.  On failure
 * nothing changed. */
int meraki_reconfigure(struct meraki_client *c, const struct meraki_opts *opts);

/* Starts a call; done is called exactly once, from meraki_on_fd() or
 * meraki_on_timer(), unless the client is freed first. */
int meraki_blink(struct meraki_client *c, const struct meraki_blink_request *req, meraki_done_fn done, void *ud);
int meraki_get_blink(struct meraki_client *c, const char *serial, const char *leds_blink_id, meraki_done_fn done,
		     void *ud);
/* The organizations the key sees (MERAKI_CALL_ORGS), and the devices of
 * org_id whose name contains name, or whose MAC is mac (one of them NULL):
 * the API's own filters, which match parts too. */
int meraki_list_organizations(struct meraki_client *c, meraki_done_fn done, void *ud);
int meraki_find_devices(struct meraki_client *c, const char *org_id, const char *name, const char *mac,
			meraki_done_fn done, void *ud);
size_t meraki_in_flight(const struct meraki_client *c);

void meraki_on_fd(struct meraki_client *c, int fd, uint32_t revents);
void meraki_on_timer(struct meraki_client *c);

/* For blinkhookctl selftest: POSTs body (JSON) to url and waits for the
 * answer (blocking; never used by the daemon).  TLS is verified as for the
 * API, ca_file added.  *ret_status is the HTTP status (0 when none came),
 * *ret_body the answer's first MERAKI_PROBE_ANSWER_MAX bytes or NULL,
 * *ret_error what went wrong in transport or NULL.  Returns -ENOMEM only. */
#define MERAKI_PROBE_ANSWER_MAX 4096
int meraki_probe(const char *url, const char *ca_file, uint64_t timeout_usec, const char *body, long *ret_status,
		 char **ret_body, char **ret_error);

/* The request body for a blink (exposed for tests). */
int meraki_blink_body(const struct meraki_blink_request *req, char **ret);

#endif
