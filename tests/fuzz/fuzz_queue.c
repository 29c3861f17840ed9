/* SPDX-License-Identifier: MIT */
/*
 * fuzz_queue — queue_parse_request() on a spool file's bytes.
 *
 * Checked: a refusal comes with a reason; an accepted request is either a
 * cancel with a valid job id and nothing else, or exactly one of a valid
 * serial, a valid name and a MAC in the colon form, a duration in range and
 * an empty or valid id; and it survives queue_format_request()
 * and a second parse unchanged (what blinkhookctl writes, the daemon reads).
 */
#include <stdint.h>
#include <string.h>

#include "blinkhook/job.h"
#include "blinkhook/queue.h"
#include "blinkhook/util.h"
#include "fuzz.h"

static void check_valid(const struct queue_request *req)
{
	if (req->cancel[0]) {
		FUZZ_CHECK(job_id_is_valid(req->cancel), "cancel \"%s\"", req->cancel);
		FUZZ_CHECK(!req->id[0] && !req->serial[0] && !req->name[0] && !req->mac[0] && req->duration == 0,
			   "a cancel with other fields");
		return;
	}
	FUZZ_CHECK((req->serial[0] != 0) + (req->name[0] != 0) + (req->mac[0] != 0) == 1,
		   "serial \"%s\", name \"%s\", mac \"%s\": not exactly one", req->serial, req->name, req->mac);
	FUZZ_CHECK(!req->serial[0] || serial_is_valid(req->serial), "serial \"%s\"", req->serial);
	FUZZ_CHECK(!req->name[0] || job_name_valid(req->name), "name \"%s\"", req->name);
	FUZZ_CHECK(!req->mac[0] || mac_is_normal(req->mac), "mac \"%s\"", req->mac);
	FUZZ_CHECK(req->duration >= JOB_DURATION_MIN && req->duration <= JOB_DURATION_MAX, "duration %u",
		   req->duration);
	FUZZ_CHECK(!req->id[0] || job_id_is_valid(req->id), "id \"%s\"", req->id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_request req, back;
	struct strbuf sb = STRBUF_INIT;
	const char *reason = NULL;
	int r;

	r = queue_parse_request((const char *)data, size, &req, &reason);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL, "queue_parse_request returned %d", r);
		FUZZ_CHECK(reason && *reason, "a refusal without a reason");
		return 0;
	}
	FUZZ_CHECK(r == 0, "queue_parse_request returned %d", r);
	check_valid(&req);

	FUZZ_CHECK(queue_format_request(&req, &sb) >= 0, "queue_format_request failed");
	FUZZ_CHECK(sb.len <= QUEUE_FILE_MAX, "a formatted request of %zu bytes", sb.len);
	reason = NULL;
	r = queue_parse_request(sb.buf, sb.len, &back, &reason);
	FUZZ_CHECK(r == 0, "its own request refused (%s): %s", fuzz_str(reason), sb.buf);
	FUZZ_CHECK(strcmp(req.id, back.id) == 0, "id \"%s\" != \"%s\"", req.id, back.id);
	FUZZ_CHECK(strcmp(req.serial, back.serial) == 0, "serial \"%s\" != \"%s\"", req.serial, back.serial);
	FUZZ_CHECK(strcmp(req.name, back.name) == 0, "name \"%s\" != \"%s\"", req.name, back.name);
	FUZZ_CHECK(strcmp(req.mac, back.mac) == 0, "mac \"%s\" != \"%s\"", req.mac, back.mac);
	FUZZ_CHECK(req.duration == back.duration, "duration %u != %u", req.duration, back.duration);
	FUZZ_CHECK(strcmp(req.cancel, back.cancel) == 0, "cancel \"%s\" != \"%s\"", req.cancel, back.cancel);
	strbuf_release(&sb);
	return 0;
}
