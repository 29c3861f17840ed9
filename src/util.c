/* SPDX-License-Identifier: MIT */
/*
 * util — see include/blinkhook/util.h for the contract.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "blinkhook/util.h"

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(char c)
{
	return is_alpha(c) || is_digit(c);
}

static const char *skip_space(const char *s)
{
	while (is_space(*s))
		s++;
	return s;
}

/* "12", "1.5", ".5" or "3." at *p; at least one digit.  A whole part too
 * large for 64 bits is flagged, not an error yet, so that garbage later in the
 * string still reads as -EINVAL rather than -ERANGE. */
struct decimal {
	uint64_t whole;
	bool overflow;
	const char *frac;
	size_t n_frac;
};

static int parse_decimal(const char **p, struct decimal *ret)
{
	const char *s = *p;
	struct decimal d = {0};
	size_t n_whole = 0;

	for (; is_digit(*s); s++, n_whole++) {
		unsigned digit = (unsigned)(*s - '0');

		if (d.whole > (UINT64_MAX - digit) / 10)
			d.overflow = true;
		else
			d.whole = d.whole * 10 + digit;
	}
	if (*s == '.') {
		s++;
		d.frac = s;
		while (is_digit(*s))
			s++;
		d.n_frac = (size_t)(s - d.frac);
	}
	if (n_whole == 0 && d.n_frac == 0)
		return -EINVAL;

	*p = s;
	*ret = d;
	return 0;
}

/* d * unit, the fraction rounded down.  Horner's rule from the last fraction
 * digit keeps every step an exact floor, because floor((a + floor(b)) / 10)
 * equals floor((a + b) / 10) for a whole a; so "1.5KiB" is exactly 1536. */
static int decimal_scale(const struct decimal *d, uint64_t unit, uint64_t *ret)
{
	uint64_t frac = 0, whole;

	if (d->overflow)
		return -ERANGE;
	if (unit != 0 && d->whole > UINT64_MAX / unit)
		return -ERANGE;
	whole = d->whole * unit;

	for (size_t i = d->n_frac; i > 0; i--)
		frac = ((uint64_t)(d->frac[i - 1] - '0') * unit + frac) / 10;

	if (whole > UINT64_MAX - frac)
		return -ERANGE;
	*ret = whole + frac;
	return 0;
}

struct unit {
	const char *name;
	uint64_t factor;
};

static const struct unit time_units[] = {
	{"us", 1},
	{"usec", 1},
	{"ms", USEC_PER_MSEC},
	{"msec", USEC_PER_MSEC},
	{"s", USEC_PER_SEC},
	{"sec", USEC_PER_SEC},
	{"second", USEC_PER_SEC},
	{"seconds", USEC_PER_SEC},
	{"m", USEC_PER_MIN},
	{"min", USEC_PER_MIN},
	{"minute", USEC_PER_MIN},
	{"minutes", USEC_PER_MIN},
	{"h", USEC_PER_HOUR},
	{"hr", USEC_PER_HOUR},
	{"hour", USEC_PER_HOUR},
	{"hours", USEC_PER_HOUR},
	{"d", USEC_PER_DAY},
	{"day", USEC_PER_DAY},
	{"days", USEC_PER_DAY},
	{"w", 7 * USEC_PER_DAY},
	{"week", 7 * USEC_PER_DAY},
	{"weeks", 7 * USEC_PER_DAY},
};

static const struct unit size_units[] = {
	{"B", 1},
	{"K", UINT64_C(1) << 10},
	{"KiB", UINT64_C(1) << 10},
	{"M", UINT64_C(1) << 20},
	{"MiB", UINT64_C(1) << 20},
	{"G", UINT64_C(1) << 30},
	{"GiB", UINT64_C(1) << 30},
};

static const struct unit *unit_find(const struct unit *units, size_t n, const char *s, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(units[i].name) == len && memcmp(units[i].name, s, len) == 0)
			return &units[i];
	return NULL;
}

/* One amount of a span or size: a decimal, blanks, and the letters of its
 * unit (none: *ret_len is 0), leaving *p after them and the blanks that
 * follow. */
static int parse_amount(const char **p, struct decimal *d, const char **ret_name, size_t *ret_len)
{
	const char *name;
	int r;

	r = parse_decimal(p, d);
	if (r < 0)
		return r;
	name = skip_space(*p);
	*p = name;
	while (is_alpha(**p))
		(*p)++;
	*ret_name = name;
	*ret_len = (size_t)(*p - name);
	*p = skip_space(*p);
	return 0;
}

int parse_timespan(const char *s, uint64_t *ret_usec)
{
	uint64_t sum = 0;
	bool overflow = false;
	unsigned n = 0;
	const char *p;

	if (!s)
		return -EINVAL;
	p = skip_space(s);
	if (!*p)
		return -EINVAL;

	for (; *p; n++) {
		const struct unit *u;
		struct decimal d;
		const char *name;
		size_t len;
		uint64_t v;
		int r;

		r = parse_amount(&p, &d, &name, &len);
		if (r < 0)
			return r;
		/* A bare number is seconds, but only on its own: "2min 30" is
		 * more likely a slip than two and a half minutes. */
		if (len == 0 && (n > 0 || *p))
			return -EINVAL;
		u = len ? unit_find(time_units, ELEMENTSOF(time_units), name, len)
			: unit_find(time_units, ELEMENTSOF(time_units), "s", 1);
		if (!u)
			return -EINVAL;

		r = decimal_scale(&d, u->factor, &v);
		if (r < 0 || v > UINT64_MAX - sum)
			overflow = true;
		else
			sum += v;
	}

	if (overflow)
		return -ERANGE;
	*ret_usec = sum;
	return 0;
}

int parse_size(const char *s, uint64_t *ret_bytes)
{
	const struct unit *u;
	struct decimal d;
	const char *p, *name;
	size_t len;
	uint64_t v;
	int r;

	if (!s)
		return -EINVAL;
	p = skip_space(s);
	r = parse_amount(&p, &d, &name, &len);
	if (r < 0)
		return r;
	if (len == 0)
		u = &size_units[0];
	else {
		u = unit_find(size_units, ELEMENTSOF(size_units), name, len);
		if (!u)
			return -EINVAL;
	}
	if (*p)
		return -EINVAL;

	r = decimal_scale(&d, u->factor, &v);
	if (r < 0)
		return r;
	*ret_bytes = v;
	return 0;
}

int parse_uint64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		unsigned digit;

		if (!is_digit(*p))
			return -EINVAL;
		digit = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - digit) / 10) {
			/* Still check the rest, so that "99999999999999999999x"
			 * is -EINVAL like any other garbage. */
			while (is_digit(*++p))
				;
			return *p ? -EINVAL : -ERANGE;
		}
		v = v * 10 + digit;
	}
	*ret = v;
	return 0;
}

void format_timespan(char *buf, size_t len, uint64_t usec)
{
	/* Largest first: the first unit that divides exactly gives the
	 * shortest form that reads back to the same value. */
	static const struct unit units[] = {
		{"w", 7 * USEC_PER_DAY},
		{"d", USEC_PER_DAY},
		{"h", USEC_PER_HOUR},
		{"min", USEC_PER_MIN},
		{"s", USEC_PER_SEC},
		{"ms", USEC_PER_MSEC},
		{"us", 1},
	};

	if (!buf || len == 0)
		return;
	if (usec == 0) {
		snprintf(buf, len, "0");
		return;
	}
	for (size_t i = 0; i < ELEMENTSOF(units); i++)
		if (usec % units[i].factor == 0) {
			snprintf(buf, len, "%" PRIu64 "%s", usec / units[i].factor, units[i].name);
			return;
		}
}

static uint64_t clock_usec(clockid_t id)
{
	struct timespec ts;

	/* Cannot fail for these clocks on Linux. */
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t now_realtime_usec(void)
{
	return clock_usec(CLOCK_REALTIME);
}

uint64_t now_monotonic_usec(void)
{
	return clock_usec(CLOCK_MONOTONIC);
}

void format_rfc3339(char buf[static RFC3339_MAX], uint64_t realtime_usec)
{
	time_t t = (time_t)(realtime_usec / USEC_PER_SEC);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || strftime(buf, RFC3339_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, RFC3339_MAX, "1970-01-01T00:00:00Z");
}

/* Exactly n digits at *p. */
static int parse_fixed(const char **p, unsigned n, int *ret)
{
	int v = 0;

	for (unsigned i = 0; i < n; i++) {
		if (!is_digit((*p)[i]))
			return -EINVAL;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*ret = v;
	return 0;
}

static bool is_leap(int year)
{
	return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int days_in_month(int year, int month)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	assert(month >= 1 && month <= 12);
	return month == 2 && is_leap(year) ? 29 : days[month - 1];
}

int parse_rfc3339(const char *s, uint64_t *ret_usec)
{
	int year, mon, mday, hour, min, sec, off = 0;
	uint64_t frac = 0, scale = USEC_PER_SEC;
	struct tm tm = {0};
	const char *p = s;
	time_t t;

	if (!p)
		return -EINVAL;
	if (parse_fixed(&p, 4, &year) < 0 || *p++ != '-' || parse_fixed(&p, 2, &mon) < 0 || *p++ != '-' ||
	    parse_fixed(&p, 2, &mday) < 0)
		return -EINVAL;
	if (*p != 'T' && *p != 't')
		return -EINVAL;
	p++;
	if (parse_fixed(&p, 2, &hour) < 0 || *p++ != ':' || parse_fixed(&p, 2, &min) < 0 || *p++ != ':' ||
	    parse_fixed(&p, 2, &sec) < 0)
		return -EINVAL;
	if (mon < 1 || mon > 12 || mday < 1 || mday > days_in_month(year, mon) || hour > 23 || min > 59 || sec > 60)
		return -EINVAL;

	if (*p == '.') {
		const char *digits = ++p;

		/* Digits past microseconds are checked but dropped. */
		for (; is_digit(*p); p++)
			if (scale > 1) {
				scale /= 10;
				frac += (uint64_t)(*p - '0') * scale;
			}
		if (p == digits)
			return -EINVAL;
	}

	if (*p == 'Z' || *p == 'z')
		p++;
	else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om;

		if (parse_fixed(&p, 2, &oh) < 0 || *p++ != ':' || parse_fixed(&p, 2, &om) < 0 || oh > 23 || om > 59)
			return -EINVAL;
		off = sign * (oh * 3600 + om * 60);
	} else
		return -EINVAL;
	if (*p)
		return -EINVAL;

	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = mday;
	tm.tm_hour = hour;
	tm.tm_min = min;
	/* A leap second (:60) comes out as the next minute's :00. */
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -ERANGE;
	t -= off;
	/* Beyond 9999-12-31T23:59:59Z a stamp cannot be written back in
	 * four-digit years: refuse it rather than read what we cannot write. */
	if (t < 0 || t > INT64_C(253402300799))
		return -ERANGE;

	*ret_usec = (uint64_t)t * USEC_PER_SEC + frac;
	return 0;
}

bool serial_is_valid(const char *s)
{
	if (!s || strlen(s) != 14)
		return false;
	for (size_t i = 0; i < 14; i++)
		if (i % 5 == 4 ? s[i] != '-' : !is_alnum(s[i]))
			return false;
	return true;
}

bool job_id_is_valid(const char *s)
{
	size_t n;

	if (!s)
		return false;
	n = strlen(s);
	if (n < 1 || n > JOB_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

size_t utf8_prefix(const char *s, size_t len, size_t max)
{
	size_t n = len;

	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	return n;
}

const char *text_escape(char *dst, size_t size, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)(src ? src : "");
	size_t o = 0;

	while (*p) {
		/* Printable ASCII as it is; controls and DEL (0) escaped. */
		size_t n = *p >= 0x20 && *p < 0x7f ? 1 : *p < 0x80 ? 0 : utf8_len(p);
		/* U+0080..U+009F, the C1 controls, are C2 80..C2 9F. */
		bool escape = n == 0 || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0);
		size_t take = escape ? (n ? n : 1) : n, need = escape ? 4 * take : n;

		if (o + need >= size)
			break;
		for (size_t i = 0; i < take; i++) {
			if (escape) {
				dst[o++] = '\\';
				dst[o++] = 'x';
				dst[o++] = hex[p[i] >> 4];
				dst[o++] = hex[p[i] & 15];
			} else
				dst[o++] = (char)p[i];
		}
		p += take;
	}
	dst[o] = '\0';
	return dst;
}

int job_id_new(char buf[static JOB_ID_MAX + 1])
{
	uint8_t rnd[6];
	uint64_t ms;
	int r;

	r = random_bytes(rnd, sizeof(rnd));
	if (r < 0)
		return r;
	/* 48 bits of milliseconds last until the year 10889; fixed width so
	 * that ids sort by creation time as plain strings. */
	ms = (now_realtime_usec() / USEC_PER_MSEC) & UINT64_C(0xffffffffffff);
	snprintf(buf, JOB_ID_MAX + 1, "%012" PRIx64 "%02x%02x%02x%02x%02x%02x", ms, rnd[0], rnd[1], rnd[2], rnd[3],
		 rnd[4], rnd[5]);
	return 0;
}

/* Before the memory handed out: the size of the whole mapping, aligned so
 * that what follows is aligned for any type. */
#define SECRET_HEADER 16

void *secret_alloc(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), size;
	unsigned char *p;

	if (len > SIZE_MAX / 2)
		return NULL;
	size = (len + SECRET_HEADER + page - 1) / page * page;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* Pages of their own: out of core dumps, and not inherited by a
	 * child.  A kernel that cannot do either still gets the key wiped
	 * when it is freed. */
	(void)madvise(p, size, MADV_DONTDUMP);
	(void)madvise(p, size, MADV_DONTFORK);
	memcpy(p, &size, sizeof(size));
	return p + SECRET_HEADER;
}

void secret_free(void *ptr)
{
	unsigned char *p = ptr;
	size_t size;

	if (!p)
		return;
	p -= SECRET_HEADER;
	memcpy(&size, p, sizeof(size));
	secret_wipe(p, size);
	munmap(p, size);
}

void secret_wipe(void *p, size_t len)
{
	explicit_bzero(p, len);
}

char *secret_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = secret_alloc(n);

	if (d)
		memcpy(d, s, n);
	return d;
}

int random_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int read_file_capped(int dirfd, const char *path, size_t max, char **ret_buf, size_t *ret_len)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, alloc;
	struct stat st;

	/* One byte past max tells a file that is too large; one more for the
	 * NUL. */
	if (max > SIZE_MAX - 2)
		return -EINVAL;

	/* O_NONBLOCK so that a FIFO in the path cannot hang us before fstat
	 * rejects it; it changes nothing for regular files. */
	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((uint64_t)st.st_size > max)
		return -EFBIG;

	/* st_size is a hint only: files in /proc say 0, and a file may grow
	 * while we read it. */
	alloc = MAX((size_t)st.st_size, (size_t)4096);
	alloc = MIN(alloc, max + 1) + 1;
	buf = malloc(alloc);
	if (!buf)
		return -ENOMEM;

	for (;;) {
		ssize_t n;

		if (len == alloc - 1) {
			size_t grown;
			char *p;

			if (len > max)
				break;
			grown = alloc > (max + 2) / 2 ? max + 2 : alloc * 2;
			p = realloc(buf, grown);
			if (!p)
				return -ENOMEM;
			buf = p;
			alloc = grown;
		}
		n = read(fd, buf + len, alloc - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max)
		return -EFBIG;

	buf[len] = '\0';
	*ret_buf = TAKE_PTR(buf);
	if (ret_len)
		*ret_len = len;
	return 0;
}

int close_stdout(const char *program, int r, bool already_failed)
{
	int e = 0;

	if (fflush(stdout) != 0)
		e = errno ? errno : EIO;
	else if (ferror(stdout))
		e = EIO;
	/* EBADF: stdout was closed, and nothing was written to it. */
	if (fclose(stdout) != 0 && !e && errno != EBADF)
		e = errno;
	if (!e || already_failed)
		return r;
	fprintf(stderr, "%s: cannot write to standard output: %s\n", program, strerror(e));
	return 1;
}

int fsync_dirfd(int dirfd)
{
	return fsync(dirfd) < 0 ? -errno : 0;
}

int fsync_dir(const char *path)
{
	_cleanup_close_ int fd = -1;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return fsync_dirfd(fd);
}

/* mkdir that is content with a directory already there (or a symlink to
 * one), so that concurrent creators both succeed. */
static int mkdir_one(const char *path, unsigned mode)
{
	struct stat st;

	if (mkdir(path, (mode_t)mode) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int mkdir_p(const char *path, unsigned mode)
{
	_cleanup_free_ char *p = NULL;
	int r;

	if (!path || !*path)
		return -EINVAL;
	p = strdup(path);
	if (!p)
		return -ENOMEM;

	/* Each prefix ending before a '/', skipping the root and runs of
	 * slashes; the umask applies to the mode, as for mkdir(2). */
	for (char *s = p + 1; *s; s++) {
		if (*s != '/' || s[-1] == '/')
			continue;
		*s = '\0';
		r = mkdir_one(p, mode);
		*s = '/';
		if (r < 0)
			return r;
	}
	return mkdir_one(p, mode);
}

int write_file_atomic(const char *dir, const char *name, const void *data, size_t len, unsigned mode)
{
	_cleanup_free_ char *tmp = NULL, *dst = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	if (!dir || !*dir || !name || !*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	if (asprintf(&tmp, "%s/.%s.XXXXXX", dir, name) < 0) {
		tmp = NULL;
		return -ENOMEM;
	}
	dst = path_join(dir, name);
	if (!dst)
		return -ENOMEM;

	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;

	/* mkostemp creates 0600; set the mode asked for regardless of the
	 * umask, since it is the final file's mode. */
	if (fchmod(fd, (mode_t)mode) < 0) {
		r = -errno;
		goto fail_unlink;
	}
	r = write_all(fd, data, len);
	if (r < 0)
		goto fail_unlink;
	if (fsync(fd) < 0) {
		r = -errno;
		goto fail_unlink;
	}
	/* close can report a deferred write error on some filesystems. */
	if (close(TAKE_FD(fd)) < 0) {
		r = -errno;
		goto fail_unlink;
	}
	if (rename(tmp, dst) < 0) {
		r = -errno;
		goto fail_unlink;
	}
	return fsync_dir(dir);

fail_unlink:
	unlink(tmp);
	return r;
}

int str_copy(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (size == 0)
		return -E2BIG;
	if (n >= size) {
		memcpy(dst, src, size - 1);
		dst[size - 1] = '\0';
		return -E2BIG;
	}
	memcpy(dst, src, n + 1);
	return 0;
}

bool str_has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

uint64_t fnv1a64_add(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * FNV1A64_PRIME;
	return h;
}

uint64_t fnv1a64_str(const char *s)
{
	return fnv1a64(s, strlen(s));
}

char *path_join(const char *a, const char *b)
{
	size_t la, lb;
	char *p;

	if (!a || !b)
		return NULL;
	la = strlen(a);
	while (la > 1 && a[la - 1] == '/')
		la--;
	while (*b == '/')
		b++;
	lb = strlen(b);

	p = malloc(la + 1 + lb + 1);
	if (!p)
		return NULL;
	memcpy(p, a, la);
	if (la > 0 && a[la - 1] != '/' && lb > 0)
		p[la++] = '/';
	memcpy(p + la, b, lb);
	p[la + lb] = '\0';
	return p;
}

int strbuf_grow(struct strbuf *sb, size_t extra)
{
	size_t need, alloc;
	char *p;

	if (extra > SIZE_MAX - 1 - sb->len)
		return -ENOMEM;
	need = sb->len + extra + 1;
	if (sb->buf && need <= sb->alloc)
		return 0;

	alloc = MAX(sb->alloc, (size_t)32);
	while (alloc < need)
		alloc = alloc > SIZE_MAX / 2 ? need : alloc * 2;
	p = realloc(sb->buf, alloc);
	if (!p)
		return -ENOMEM;
	if (!sb->buf)
		p[0] = '\0';
	sb->buf = p;
	sb->alloc = alloc;
	return 0;
}

int strbuf_add(struct strbuf *sb, const void *data, size_t len)
{
	int r;

	r = strbuf_grow(sb, len);
	if (r < 0)
		return r;
	if (len > 0)
		memcpy(sb->buf + sb->len, data, len);
	sb->len += len;
	sb->buf[sb->len] = '\0';
	return 0;
}

int strbuf_addstr(struct strbuf *sb, const char *s)
{
	return strbuf_add(sb, s, strlen(s));
}

int strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	r = strbuf_grow(sb, 64);
	if (r < 0)
		return r;

	va_start(ap, fmt);
	n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		goto fail;
	if ((size_t)n >= sb->alloc - sb->len) {
		r = strbuf_grow(sb, (size_t)n);
		if (r < 0) {
			sb->buf[sb->len] = '\0';
			return r;
		}
		va_start(ap, fmt);
		n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			goto fail;
	}
	sb->len += (size_t)n;
	return 0;

fail:
	/* vsnprintf may have written part of the output: cut it off again. */
	sb->buf[sb->len] = '\0';
	return -EINVAL;
}

void strbuf_reset(struct strbuf *sb)
{
	sb->len = 0;
	if (sb->buf)
		sb->buf[0] = '\0';
}

void strbuf_release(struct strbuf *sb)
{
	free(sb->buf);
	sb->buf = NULL;
	sb->len = 0;
	sb->alloc = 0;
}

void strbuf_consume(struct strbuf *sb, size_t n)
{
	if (n >= sb->len) {
		strbuf_reset(sb);
		return;
	}
	memmove(sb->buf, sb->buf + n, sb->len - n + 1);
	sb->len -= n;
}
