/* SPDX-License-Identifier: MIT */
/*
 * queue — the spool directory that producers write requests into.
 *
 *   DIR/           the daemon's (02751): the queue group may not change it
 *   DIR/tmp/       a producer writes its request here first (03770: the
 *                  queue group writes, the sticky bit keeps members from
 *                  removing each other's files)
 *   DIR/new/       ... and renames it here when it is complete (03770)
 *   DIR/rejected/  files the daemon could not accept, each with NAME.reason
 *                  (02750, the daemon's: the group reads, never writes)
 *
 * The daemon works only through descriptors of these directories, opened
 * without following symbolic links, and trusts a file in new/ only when it
 * is a regular file with one link, owned by the daemon's user or in the
 * spool's group.
 *
 * A request is a small JSON object: {"serial": "Q2XX-XXXX-XXXX",
 * "duration": 20} plus an optional "id" chosen by the producer, where
 * {"name": "edge-sw-1"} or {"mac": "aa:bb:cc:dd:ee:ff"} may stand instead of
 * the serial (exactly one of the three); or a cancel
 * request, {"cancel": "<job id>"}.  The daemon
 * takes a file only after the job it describes is durable in the job log, and
 * only then removes it; so a crash between the two leaves the file, which the
 * next start takes again (the job id makes that a no-op).
 */
#ifndef BLINKHOOK_QUEUE_H
#define BLINKHOOK_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blinkhook/job.h"

/* A request file is never larger than this. */
#define QUEUE_FILE_MAX 4096
/* Leftovers in tmp/ older than this are moved aside at start. */
#define QUEUE_TMP_STALE_USEC (60 * USEC_PER_SEC)

struct queue_request {
	char id[JOB_ID_MAX + 1]; /* empty when the producer chose none */
	/* Exactly one of these three is set in a blink request: the device
	 * by serial, by its Dashboard name, or by MAC (always in the lower-case
	 * colon form: queue_parse_request() normalizes what the file says). */
	char serial[SERIAL_MAX + 1];
	char name[JOB_NAME_MAX + 1];
	char mac[JOB_MAC_LEN + 1];
	unsigned duration;
	/* Set instead of the above: {"cancel": "<job id>"} asks the daemon to
	 * fail that job with error "canceled" if it is still queued. */
	char cancel[JOB_ID_MAX + 1];
	/* queue_read(): the file's mtime, realtime usec (when it was written). */
	uint64_t mtime;
};

/* Parses and validates a request file's bytes.  On failure returns -EINVAL
 * and a static, human-readable reason. */
int queue_parse_request(const char *buf, size_t len, struct queue_request *ret, const char **ret_reason);
/* The request as a file's bytes. */
int queue_format_request(const struct queue_request *req, struct strbuf *sb);

struct queue;

/* Opens dir, creating it and its subdirectories (the modes above) if
 * missing.  -ELOOP when it or one of them is a symbolic link. */
int queue_open(const char *dir, struct queue **ret);
/* NULL, or which of the daemon's own directories (the top one, rejected/)
 * others may write into or the daemon does not own: worth a warning. */
const char *queue_lax_dir(const struct queue *q);
void queue_free(struct queue *q);
/* The fd of new/, for watching it. */
int queue_new_fd(const struct queue *q);
const char *queue_new_path(const struct queue *q);

/* Lists up to max names in new/ (oldest name first: producers that name files
 * by time get them taken in order).  *ret_names is a NULL-terminated array
 * the caller frees with queue_names_free(). */
int queue_list(struct queue *q, size_t max, char ***ret_names, size_t *ret_n);
void queue_names_free(char **names);
/* Reads and parses new/name.  -EINVAL with *ret_reason for a file to reject:
 * a bad request, or one that cannot be trusted (a link, not a regular file,
 * a stranger's) or opened or read for any reason of its own; -ENOENT when it
 * vanished; a transient error of the daemon's (queue_error_is_transient():
 * out of descriptors or memory) to try again later.  *ret_reason lives until
 * the next call. */
int queue_read(struct queue *q, const char *name, struct queue_request *ret, const char **ret_reason);
bool queue_error_is_transient(int r);
/* new/name's inode number (with its name, it tells a file apart). */
int queue_file_ino(struct queue *q, const char *name, uint64_t *ret_ino);
/* Moves new/name to rejected/ (as NAME, or NAME.N when that is taken) and
 * writes rejected/NAME.reason.  1 when the file moved but its reason could
 * not be written.  Not durable until queue_reject_sync(): one sync a batch. */
int queue_reject(struct queue *q, const char *name, const char *reason);
/* The same, and the name it got in rejected/ goes to ret_as (NAME or
 * NAME.N).  A directory is never moved: an empty one is removed (-ENOENT),
 * any other left in place (-EISDIR). */
#define QUEUE_REJECTED_NAME_MAX 256
int queue_reject_named(struct queue *q, const char *name, const char *reason,
		       char ret_as[static QUEUE_REJECTED_NAME_MAX]);
int queue_reject_sync(struct queue *q);
/* Removes new/name; queue_sync() makes the removals durable. */
int queue_remove(struct queue *q, const char *name);
int queue_sync(struct queue *q);
/* Moves regular files in tmp/ older than QUEUE_TMP_STALE_USEC to rejected/
 * (removes stale empty directories, leaves anything else).  Returns how
 * many it moved. */
int queue_sweep_tmp(struct queue *q, uint64_t now_realtime);

/* For producers (blinkhookctl blink): writes req into tmp/ (mode 0640,
 * whatever the umask) and renames it into new/, both synced.  Picks a job id
 * when req has none, and returns it. */
int queue_enqueue(const char *dir, struct queue_request *req);

#endif
