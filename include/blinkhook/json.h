/* SPDX-License-Identifier: MIT */
/*
 * json — reading and writing JSON.  The only module that includes json-c, so
 * that the rest of the daemon sees a small, strict interface:
 *
 *  - json_parse() accepts exactly one value with nothing after it but white
 *    space, refuses raw NUL bytes and invalid UTF-8, and caps nesting depth.
 *  - Accessors return borrowed pointers that live as long as the root value.
 *  - The writer appends compact JSON to a strbuf; strings are escaped so that
 *    the output is always one line.
 */
#ifndef BLINKHOOK_JSON_H
#define BLINKHOOK_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blinkhook/util.h"

struct json; /* opaque: a parsed value */

enum json_kind {
	JSON_NULL,
	JSON_BOOL,
	JSON_INT,
	JSON_DOUBLE,
	JSON_STRING,
	JSON_OBJECT,
	JSON_ARRAY,
};

/* -EBADMSG for malformed input (including too deep, NUL bytes, bad UTF-8),
 * -ENOMEM. */
int json_parse(const char *buf, size_t len, unsigned max_depth, struct json **ret);
void json_free(struct json *v);
static inline void json_freep(struct json **v)
{
	json_free(*v);
}
#define _cleanup_json_ _cleanup_(json_freep)

enum json_kind json_kind_of(const struct json *v);
/* The member key of an object, or NULL when v is not an object or lacks it. */
const struct json *json_get(const struct json *v, const char *key);
/* A string's bytes (NUL-terminated; *ret_len may be NULL), or NULL when v is
 * not a string or holds an escaped NUL (\u0000). */
const char *json_string(const struct json *v, size_t *ret_len);
/* An integer (not a bool, not a fraction); -EINVAL otherwise, -ERANGE when
 * it does not fit in 64 signed bits. */
int json_int64(const struct json *v, int64_t *ret);
/* An integer's decimal text exactly as the document has it, whatever its
 * size (an id sent as a number never goes through 64 bits); NULL when v is
 * not an integer.  Valid until the next call for v or v's release. */
const char *json_integer_text(const struct json *v);
size_t json_array_length(const struct json *v);
const struct json *json_array_get(const struct json *v, size_t i);
/* Calls cb for each member of an object, in document order, until cb
 * returns non-zero, which is then returned. */
int json_object_each(const struct json *v, int (*cb)(const char *key, const struct json *val, void *ud), void *ud);

/*
 * A fast reader for the one shape our own writer gives the job log's
 * records: a flat object, {"key":value,...}, whose values are strings and
 * integers.  It builds no tree and allocates nothing, and it reads only a
 * strict subset of what json_parse() accepts: strings of valid UTF-8 with
 * the escapes \" \\ \/ \b \f \n \r \t and \uXXXX (neither \u0000 nor a
 * surrogate), without raw control characters; integers of 1 to 18 digits
 * without a leading zero; keys of printable ASCII without escapes, none
 * repeated; at most max members; no white space, nothing after the object.
 * Anything else (null, true, false, fractions, negative numbers, nested
 * values...) it declines, with -EOPNOTSUPP, and says nothing about whether
 * the input is valid: the caller asks json_parse() then.  What it accepts,
 * json_parse() accepts too, and json_get() finds the same members with the
 * same values; so a caller that falls back on -EOPNOTSUPP gives every input
 * the verdict json_parse() would.
 *
 * Keys point into buf (not NUL-terminated); string values are decoded into
 * text, NUL-terminated, which needs text_size >= len (decoding never grows a
 * string, and each string's quotes leave room for its NUL): with less it
 * declines.  On -EOPNOTSUPP *ret_n is unchanged and text and members hold
 * garbage.
 */
struct json_member {
	const char *key;
	size_t key_len;
	enum json_kind kind; /* JSON_STRING or JSON_INT */
	const char *str;     /* JSON_STRING: in text */
	size_t str_len;
	uint64_t num; /* JSON_INT: below 10^18 */
};
int json_parse_flat(const char *buf, size_t len, char *text, size_t text_size, struct json_member *members, size_t max,
		    size_t *ret_n);

/* The writer: a stack of open containers, commas placed for the caller. */
#define JSON_WRITER_DEPTH 8
struct json_writer {
	struct strbuf *sb;
	unsigned depth;
	bool need_comma[JSON_WRITER_DEPTH];
	int err;
};
void json_writer_init(struct json_writer *w, struct strbuf *sb);
void json_w_object_begin(struct json_writer *w);
void json_w_object_end(struct json_writer *w);
void json_w_array_begin(struct json_writer *w);
void json_w_array_end(struct json_writer *w);
/* Inside an object: the member name; then exactly one value call. */
void json_w_key(struct json_writer *w, const char *key);
void json_w_string(struct json_writer *w, const char *s); /* NULL writes null */
void json_w_int(struct json_writer *w, int64_t v);
void json_w_bool(struct json_writer *w, bool v);
void json_w_null(struct json_writer *w);
/* Shorthands for a member with its value. */
void json_w_kstr(struct json_writer *w, const char *key, const char *s);
void json_w_kint(struct json_writer *w, const char *key, int64_t v);
/* -ENOMEM if any write failed, else 0. */
int json_writer_finish(struct json_writer *w);

/* Appends s as a JSON string literal, quotes included. */
int json_escape(struct strbuf *sb, const char *s);

#endif
