/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "blinkhook/json.h"

/* Our opaque type is json-c's object; the casts stay in this file. */
static struct json_object *J(const struct json *v)
{
	return (struct json_object *)v;
}

/* Whether buf is valid UTF-8 throughout: json-c's own check lets some
 * invalid bytes (0xfe, 0xff, overlong forms) through. */
static bool utf8_valid(const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf, *end = p + len;
	unsigned char tail[4];

	while (p < end) {
		size_t n;

		if (*p < 0x80) {
			p++;
			continue;
		}
		/* utf8_len reads up to 4 bytes: near the end, from a padded copy. */
		if (end - p < 4) {
			memset(tail, 0, sizeof(tail));
			memcpy(tail, p, (size_t)(end - p));
			n = utf8_len(tail);
			if (n == 0 || n > (size_t)(end - p))
				return false;
		} else if ((n = utf8_len(p)) == 0)
			return false;
		p += n;
	}
	return true;
}

/*
 * Integers that json-c cannot hold exactly.  json-c keeps an integer in 64
 * bits and saturates one that does not fit (98765432109876543210 reads as
 * 18446744073709551615, -98765432109876543210 as INT64_MIN), and its
 * json_object_get_int64() then gives INT64_MAX without a word.  An id that
 * the API sends as a number must stay its decimal text, so after json-c has
 * accepted a document that holds a run of 19 or more digits, this walks the
 * text beside the tree and gives each integer whose value json-c changed its
 * literal as its serialisation (json_integer_text() returns that, and
 * json_int64() refuses it).  Keys are looked up as json-c stored them, so a
 * repeated key ends with the literal of its last value, as the tree does.
 */
static bool has_long_digit_run(const char *buf, size_t len)
{
	size_t run = 0;

	for (size_t i = 0; i < len; i++) {
		run = buf[i] >= '0' && buf[i] <= '9' ? run + 1 : 0;
		if (run >= 19)
			return true;
	}
	return false;
}

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/* Past the string literal at p (which is at its opening quote), or NULL. */
static const char *skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* Gives o the literal [p, e) when json-c's value of it differs. */
static int keep_literal(struct json_object *o, const char *p, const char *e)
{
	char have[32], *lit;
	bool neg = *p == '-';
	const char *d = p + neg;

	if (!json_object_is_type(o, json_type_int))
		return 0;
	for (const char *q = d; q < e; q++)
		if (*q < '0' || *q > '9')
			return 0; /* a fraction or exponent: json-c keeps its text */
	/* json-c lets leading zeros through after a minus sign: the text is
	 * the number's, without them, as json-c's own text is. */
	while (e - d > 1 && *d == '0')
		d++;
	if (e - d == 1 && *d == '0')
		neg = false; /* -0 is 0 */
	if (neg)
		snprintf(have, sizeof(have), "%" PRId64, json_object_get_int64(o));
	else
		snprintf(have, sizeof(have), "%" PRIu64, json_object_get_uint64(o));
	if (strlen(have) == (size_t)(e - d) + neg && memcmp(have + neg, d, (size_t)(e - d)) == 0) {
		/* Exact; a literal an earlier duplicate left is dropped. */
		if (json_object_get_userdata(o))
			json_object_set_serializer(o, NULL, NULL, NULL);
		return 0;
	}
	if (asprintf(&lit, "%s%.*s", neg ? "-" : "", (int)(e - d), d) < 0)
		return -ENOMEM;
	json_object_set_serializer(o, json_object_userdata_to_json_string, lit, json_object_free_userdata);
	return 0;
}

/* The key of the string literal [p, e), decoded as json-c decodes it. */
static int member_key(const char *p, const char *e, char **ret)
{
	_cleanup_free_ char *quoted = NULL;
	struct json_object *k;

	if (!memchr(p, '\\', (size_t)(e - p))) {
		*ret = strndup(p + 1, (size_t)(e - p - 2));
		return *ret ? 0 : -ENOMEM;
	}
	quoted = strndup(p, (size_t)(e - p));
	if (!quoted)
		return -ENOMEM;
	k = json_tokener_parse(quoted);
	if (!k || !json_object_is_type(k, json_type_string)) {
		json_object_put(k);
		return -EBADMSG;
	}
	*ret = strdup(json_object_get_string(k));
	json_object_put(k);
	return *ret ? 0 : -ENOMEM;
}

/* Walks the value at *pp, which json-c read into o (NULL: a value the tree
 * does not hold, walked over only).  Recursive, but only as deep as json-c
 * let the document be (max_depth, at most 1000). */
/* NOLINTNEXTLINE(misc-no-recursion): bounded by the depth json-c accepted */
static int walk_literals(const char **pp, const char *end, struct json_object *o, unsigned depth)
{
	const char *p = skip_ws(*pp, end), *e;
	int r;

	if (p >= end || depth > 1000)
		return -EBADMSG;
	if (*p == '{' || *p == '[') {
		bool object = *p == '{';
		size_t i = 0;

		for (p = skip_ws(p + 1, end); p < end && *p != (object ? '}' : ']'); i++) {
			struct json_object *child = NULL;

			if (object) {
				if (*p != '"' || !(e = skip_string(p, end)))
					return -EBADMSG;
				if (json_object_is_type(o, json_type_object)) {
					char *key = NULL;
					r = member_key(p, e, &key);
					if (r < 0)
						return r;
					(void)json_object_object_get_ex(o, key, &child);
					free(key);
				}
				p = skip_ws(e, end);
				if (p >= end || *p != ':')
					return -EBADMSG;
				p++;
			} else if (json_object_is_type(o, json_type_array) && i < json_object_array_length(o))
				child = json_object_array_get_idx(o, i);
			r = walk_literals(&p, end, child, depth + 1);
			if (r < 0)
				return r;
			p = skip_ws(p, end);
			if (p < end && *p == ',')
				p = skip_ws(p + 1, end);
		}
		if (p >= end)
			return -EBADMSG;
		*pp = p + 1;
		return 0;
	}
	if (*p == '"') {
		e = skip_string(p, end);
		if (!e)
			return -EBADMSG;
		*pp = e;
		return 0;
	}
	for (e = p; e < end && !strchr(",]} \t\r\n", *e); e++)
		;
	if (e == p)
		return -EBADMSG;
	*pp = e;
	return o ? keep_literal(o, p, e) : 0;
}

int json_parse(const char *buf, size_t len, unsigned max_depth, struct json **ret)
{
	struct json_tokener *tok;
	struct json_object *o;
	size_t end;

	if (len > INT32_MAX || max_depth == 0 || max_depth > 1000)
		return -EINVAL;
	/* json-c stops at a NUL byte; a NUL inside a request is never valid. */
	if (memchr(buf, 0, len) || !utf8_valid(buf, len))
		return -EBADMSG;
	/* json-c counts the top level as one more than the document shows. */
	tok = json_tokener_new_ex((int)max_depth + 1);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok,
			       JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8 | JSON_TOKENER_ALLOW_TRAILING_CHARS);
	o = json_tokener_parse_ex(tok, buf, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (!o && json_tokener_get_error(tok) == json_tokener_continue) {
		/* A bare number or literal at the very end needs a terminator to
		 * finish: json-c reads one past the end when given the NUL. */
		o = json_tokener_parse_ex(tok, "", 1);
		end = len;
	}
	if (!o || json_tokener_get_error(tok) != json_tokener_success) {
		json_tokener_free(tok);
		json_object_put(o);
		return -EBADMSG;
	}
	json_tokener_free(tok);
	for (; end < len; end++)
		if (!strchr(" \t\r\n", buf[end])) {
			json_object_put(o);
			return -EBADMSG;
		}
	if (has_long_digit_run(buf, len)) {
		const char *p = buf;
		int r = walk_literals(&p, buf + len, o, 0);
		if (r < 0) {
			json_object_put(o);
			return r;
		}
	}
	*ret = (struct json *)o;
	return 0;
}

/* ---- the flat reader: no json-c, no tree ---- */

/* The bytes that stand for themselves: FLAT_STR in a string (printable ASCII
 * and DEL, but not the quote or the backslash), FLAT_KEY in a key (the same
 * without DEL).  The rest: control characters, which our writer escapes, and
 * bytes from 0x80, checked as UTF-8 apart. */
enum { FLAT_STR = 1, FLAT_KEY = 2 };
#define ROW(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
static const unsigned char flat_plain[256] = {
	ROW(0), ROW(0), 3, 3, 0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* 0x22 '"' */
	ROW(3), ROW(3), 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 3, 3, 3, /* 0x5c '\\' */
	ROW(3), 3,      3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1,    /* 0x7f DEL */
};
#undef ROW

/* Decodes the string whose opening quote is just before *pp into *tp, with
 * its NUL; on success *pp is past the closing quote and *tp past the NUL.
 * end is the object's closing brace, so that a valid string always ends
 * before it. */
static int flat_string(const char **pp, const char *end, char **tp)
{
	const char *p = *pp;
	char *t = *tp;

	for (;;) {
		const char *run = p;
		size_t n;

		/* Plain ASCII, the bulk of every record, is copied a run at a time. */
		while (p < end && flat_plain[(unsigned char)*p] & FLAT_STR)
			p++;
		memcpy(t, run, (size_t)(p - run));
		t += p - run;
		if (p >= end)
			return -EOPNOTSUPP;
		if (*p == '"')
			break;
		if (*p == '\\') {
			unsigned u = 0;

			if (end - p < 2)
				return -EOPNOTSUPP;
			switch (p[1]) {
			case '"':
				*t++ = '"';
				break;
			case '\\':
				*t++ = '\\';
				break;
			case '/':
				*t++ = '/';
				break;
			case 'b':
				*t++ = '\b';
				break;
			case 'f':
				*t++ = '\f';
				break;
			case 'n':
				*t++ = '\n';
				break;
			case 'r':
				*t++ = '\r';
				break;
			case 't':
				*t++ = '\t';
				break;
			case 'u':
				if (end - p < 6)
					return -EOPNOTSUPP;
				for (int i = 2; i < 6; i++) {
					int h = hex_value(p[i]);

					if (h < 0)
						return -EOPNOTSUPP;
					u = u << 4 | (unsigned)h;
				}
				/* json-c keeps an escaped NUL inside the string, which
				 * json_string() then refuses, replaces a lone surrogate
				 * and joins a pair: all that is left to it. */
				if (u == 0 || (u >= 0xd800 && u <= 0xdfff))
					return -EOPNOTSUPP;
				if (u < 0x80)
					*t++ = (char)u;
				else if (u < 0x800) {
					*t++ = (char)(0xc0 | u >> 6);
					*t++ = (char)(0x80 | (u & 0x3f));
				} else {
					*t++ = (char)(0xe0 | u >> 12);
					*t++ = (char)(0x80 | (u >> 6 & 0x3f));
					*t++ = (char)(0x80 | (u & 0x3f));
				}
				p += 6;
				continue;
			default:
				return -EOPNOTSUPP;
			}
			p += 2;
			continue;
		}
		/* json-c takes a raw control character; our writer never writes
		 * one, so it is no record of ours. */
		if ((unsigned char)*p < 0x20)
			return -EOPNOTSUPP;
		/* The same rule as json_parse()'s.  utf8_len() reads a byte only
		 * when those before it continue the sequence, and end, the closing
		 * brace, continues none: it reads nothing past end. */
		n = utf8_len((const unsigned char *)p);
		if (n == 0)
			return -EOPNOTSUPP;
		memcpy(t, p, n);
		t += n;
		p += n;
	}
	*t++ = 0;
	*pp = p + 1;
	*tp = t;
	return 0;
}

int json_parse_flat(const char *buf, size_t len, char *text, size_t text_size, struct json_member *members, size_t max,
		    size_t *ret_n)
{
	const char *p, *end;
	char *t = text;
	size_t n = 0;

	if (len < 2 || len > text_size || len > INT32_MAX || buf[0] != '{' || buf[len - 1] != '}')
		return -EOPNOTSUPP;
	/* Between the braces. */
	p = buf + 1;
	end = buf + len - 1;
	while (p < end) {
		struct json_member *m;
		const char *key;

		if (n == max || *p != '"')
			return -EOPNOTSUPP;
		m = &members[n];
		key = p + 1;
		/* Keys are our own plain names.  One with an escape could decode
		 * to one of them (json-c even cuts a key at an escaped NUL), so
		 * it is left to json-c. */
		for (p = key; p < end && flat_plain[(unsigned char)*p] & FLAT_KEY; p++)
			;
		/* The closing quote, the colon and at least one byte of value. */
		if (end - p < 3 || *p != '"' || p[1] != ':')
			return -EOPNOTSUPP;
		m->key = key;
		m->key_len = (size_t)(p - key);
		/* json-c keeps the last of repeated keys; no record repeats one.
		 * (An empty key's first byte is its closing quote.) */
		for (size_t i = 0; i < n; i++)
			if (members[i].key_len == m->key_len && members[i].key[0] == key[0] &&
			    memcmp(members[i].key, key, m->key_len) == 0)
				return -EOPNOTSUPP;
		p += 2;

		if (*p == '"') {
			p++;
			m->kind = JSON_STRING;
			m->str = t;
			if (flat_string(&p, end, &t) < 0)
				return -EOPNOTSUPP;
			m->str_len = (size_t)(t - m->str) - 1;
		} else if (*p >= '0' && *p <= '9') {
			const char *digits = p;
			uint64_t v = 0;

			/* 18 digits cannot overflow, nor reach json-c's saturation at
			 * INT64_MAX; json-c refuses a leading zero. */
			for (; p < end && *p >= '0' && *p <= '9'; p++) {
				if (p - digits == 18)
					return -EOPNOTSUPP;
				v = v * 10 + (uint64_t)(*p - '0');
			}
			if (*digits == '0' && p - digits > 1)
				return -EOPNOTSUPP;
			m->kind = JSON_INT;
			m->num = v;
		} else
			return -EOPNOTSUPP;
		n++;

		/* A comma and another member, or the closing brace.  A fraction,
		 * an exponent or anything else after a value stops here. */
		if (p < end && (*p != ',' || ++p == end))
			return -EOPNOTSUPP;
	}
	*ret_n = n;
	return 0;
}

void json_free(struct json *v)
{
	if (v)
		json_object_put(J(v));
}

enum json_kind json_kind_of(const struct json *v)
{
	switch (json_object_get_type(J(v))) {
	case json_type_boolean:
		return JSON_BOOL;
	case json_type_int:
		return JSON_INT;
	case json_type_double:
		return JSON_DOUBLE;
	case json_type_string:
		return JSON_STRING;
	case json_type_object:
		return JSON_OBJECT;
	case json_type_array:
		return JSON_ARRAY;
	case json_type_null:
	default:
		return JSON_NULL;
	}
}

const struct json *json_get(const struct json *v, const char *key)
{
	struct json_object *m;

	if (!v || !json_object_is_type(J(v), json_type_object))
		return NULL;
	if (!json_object_object_get_ex(J(v), key, &m))
		return NULL;
	/* A member that is null reads as absent unless the caller asks its kind. */
	return m ? (const struct json *)m : NULL;
}

const char *json_string(const struct json *v, size_t *ret_len)
{
	const char *s;
	size_t len;

	if (!v || !json_object_is_type(J(v), json_type_string))
		return NULL;
	s = json_object_get_string(J(v));
	len = (size_t)json_object_get_string_len(J(v));
	/* An escaped \u0000 would cut every C string made from it short. */
	if (!s || strlen(s) != len)
		return NULL;
	if (ret_len)
		*ret_len = len;
	return s;
}

int json_int64(const struct json *v, int64_t *ret)
{
	if (!v || !json_object_is_type(J(v), json_type_int))
		return -EINVAL;
	errno = 0;
	int64_t x = json_object_get_int64(J(v));
	/* json-c saturates out-of-range numbers at INT64_MIN/MAX, mostly without
	 * a word: a literal json_parse() kept says so, and so does a value
	 * above INT64_MAX that json-c holds as unsigned. */
	if (errno == ERANGE || json_object_get_userdata(J(v)) ||
	    (x == INT64_MAX && json_object_get_uint64(J(v)) != (uint64_t)INT64_MAX))
		return -ERANGE;
	*ret = x;
	return 0;
}

const char *json_integer_text(const struct json *v)
{
	if (!v || !json_object_is_type(J(v), json_type_int))
		return NULL;
	/* Ours: the literal json_parse() kept, else json-c's exact value. */
	return json_object_to_json_string_ext(J(v), JSON_C_TO_STRING_PLAIN);
}

size_t json_array_length(const struct json *v)
{
	if (!v || !json_object_is_type(J(v), json_type_array))
		return 0;
	return json_object_array_length(J(v));
}

const struct json *json_array_get(const struct json *v, size_t i)
{
	if (i >= json_array_length(v))
		return NULL;
	return (const struct json *)json_object_array_get_idx(J(v), i);
}

int json_object_each(const struct json *v, int (*cb)(const char *key, const struct json *val, void *ud), void *ud)
{
	struct json_object_iterator it, end;

	if (!v || !json_object_is_type(J(v), json_type_object))
		return -EINVAL;
	it = json_object_iter_begin(J(v));
	end = json_object_iter_end(J(v));
	while (!json_object_iter_equal(&it, &end)) {
		int r = cb(json_object_iter_peek_name(&it), (const struct json *)json_object_iter_peek_value(&it), ud);
		if (r)
			return r;
		json_object_iter_next(&it);
	}
	return 0;
}

int json_escape(struct strbuf *sb, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s, *run = p;
	int r;

	/* The output is always valid JSON and valid UTF-8: a byte that is not
	 * part of a valid sequence becomes U+FFFD, so that text cut short or
	 * taken from a peer can never make a job-log line unreadable. */
	r = strbuf_add(sb, "\"", 1);
	while (r >= 0 && *p) {
		char esc[7];
		size_t n = 2, u;

		if (*p >= 0x20 && *p != '"' && *p != '\\' && (u = utf8_len(p)) > 0) {
			p += u;
			continue;
		}
		r = strbuf_add(sb, run, (size_t)(p - run));
		if (r < 0)
			break;
		esc[0] = '\\';
		switch (*p) {
		case '"':
			esc[1] = '"';
			break;
		case '\\':
			esc[1] = '\\';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			if (*p >= 0x80) {
				/* NOLINTNEXTLINE(bugprone-not-null-terminated-result): not a string */
				memcpy(esc, "\\ufffd", 6);
			} else {
				esc[1] = 'u';
				esc[2] = '0';
				esc[3] = '0';
				esc[4] = hex[*p >> 4];
				esc[5] = hex[*p & 15];
			}
			n = 6;
		}
		r = strbuf_add(sb, esc, n);
		run = ++p;
	}
	if (r >= 0)
		r = strbuf_add(sb, run, (size_t)(p - run));
	if (r >= 0)
		r = strbuf_add(sb, "\"", 1);
	return r;
}

void json_writer_init(struct json_writer *w, struct strbuf *sb)
{
	memset(w, 0, sizeof(*w));
	w->sb = sb;
}

static void w_raw(struct json_writer *w, const char *s, size_t n)
{
	if (w->err >= 0) {
		int r = strbuf_add(w->sb, s, n);
		if (r < 0)
			w->err = r;
	}
}

/* Before a value or a key: the comma that separates it from the previous. */
static void w_sep(struct json_writer *w)
{
	if (w->need_comma[w->depth])
		w_raw(w, ",", 1);
	w->need_comma[w->depth] = true;
}

static void w_open(struct json_writer *w, char c)
{
	w_sep(w);
	w_raw(w, &c, 1);
	if (w->depth + 1 >= JSON_WRITER_DEPTH) {
		w->err = -E2BIG;
		return;
	}
	w->need_comma[++w->depth] = false;
}

static void w_close(struct json_writer *w, char c)
{
	w_raw(w, &c, 1);
	if (w->depth > 0)
		w->depth--;
}

void json_w_object_begin(struct json_writer *w)
{
	w_open(w, '{');
}
void json_w_object_end(struct json_writer *w)
{
	w_close(w, '}');
}
void json_w_array_begin(struct json_writer *w)
{
	w_open(w, '[');
}
void json_w_array_end(struct json_writer *w)
{
	w_close(w, ']');
}

void json_w_key(struct json_writer *w, const char *key)
{
	w_sep(w);
	if (w->err >= 0 && json_escape(w->sb, key) < 0)
		w->err = -ENOMEM;
	w_raw(w, ":", 1);
	/* The value that follows is no new element. */
	w->need_comma[w->depth] = false;
}

void json_w_string(struct json_writer *w, const char *s)
{
	if (!s) {
		json_w_null(w);
		return;
	}
	w_sep(w);
	if (w->err >= 0 && json_escape(w->sb, s) < 0)
		w->err = -ENOMEM;
}

void json_w_int(struct json_writer *w, int64_t v)
{
	char buf[24];
	int n = snprintf(buf, sizeof(buf), "%" PRId64, v);

	w_sep(w);
	w_raw(w, buf, (size_t)n);
}

void json_w_bool(struct json_writer *w, bool v)
{
	w_sep(w);
	w_raw(w, v ? "true" : "false", v ? 4 : 5);
}

void json_w_null(struct json_writer *w)
{
	w_sep(w);
	w_raw(w, "null", 4);
}

void json_w_kstr(struct json_writer *w, const char *key, const char *s)
{
	json_w_key(w, key);
	json_w_string(w, s);
}

void json_w_kint(struct json_writer *w, const char *key, int64_t v)
{
	json_w_key(w, key);
	json_w_int(w, v);
}

int json_writer_finish(struct json_writer *w)
{
	if (w->err < 0)
		return w->err;
	return w->depth == 0 ? 0 : -EINVAL;
}
