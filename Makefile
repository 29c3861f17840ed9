# blinkhook — build, test, install.
#
#   make            build build/blinkhookd and build/blinkhookctl
#   make deps       install missing build and test dependencies (Debian, apt-get)
#   make check      build and run every test (also under ASan+UBSan)
#   make demo       the whole pipeline against the Meraki simulator, on loopback
#   make bench      the benchmark table (not part of check; about 6 minutes)
#   make fuzz       every fuzz target for FUZZ_SECONDS (default 30) each
#   make install    PREFIX=/usr/local SYSCONFDIR=/etc DESTDIR= (man pages in MANDIR)
#   make deb        the Debian package, build/deb/blinkhook_VERSION_ARCH.deb
#   make format     clang-format the project's C files in place (make lint checks them)
#
# CPPFLAGS, CFLAGS and LDFLAGS are the user's (a packager's); the project's own
# flags live apart and come first, so that the user's can override them.
# SYSCONFDIR is compiled in: the default config is $(SYSCONFDIR)/blinkhook/blinkhookd.conf.

PREFIX ?= /usr/local
DESTDIR ?=
SBINDIR ?= $(PREFIX)/sbin
BINDIR ?= $(PREFIX)/bin
DOCDIR ?= $(PREFIX)/share/doc/blinkhook
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
MANDIR ?= $(PREFIX)/share/man

CC ?= cc
CFLAGS ?= -O2 -g
CPPFLAGS ?=
LDFLAGS ?=
PKG_CONFIG ?= pkg-config
B ?= build

WARNINGS := -Wall -Wextra -Wshadow -Wformat=2 -Wconversion -Wsign-conversion \
	-Wmissing-prototypes -Wstrict-prototypes -Wpointer-arith -Wundef -Wvla -Wcast-align \
	-Wnull-dereference -Wwrite-strings -Wmissing-declarations -Wno-unused-parameter
# Warnings are errors in the developers' and CI's builds; WERROR= turns that off.
WERROR ?= -Werror
# _FORTIFY_SOURCE=2 unless the user's flags choose a level (or -U it): a second
# -D_FORTIFY_SOURCE would be a redefinition, an error under -Werror.  The -U
# drops a level the compiler may define by itself.
BH_FORTIFY := $(if $(findstring _FORTIFY_SOURCE,$(CPPFLAGS) $(CFLAGS)),,-U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=2)
BH_CFLAGS := -std=gnu17 -D_GNU_SOURCE $(BH_FORTIFY) -fstack-protector-strong -fPIE \
	-DBLINKHOOK_SYSCONFDIR='"$(SYSCONFDIR)"' -Iinclude $(WARNINGS) $(WERROR) -MMD -MP
BH_LDFLAGS := -pie -Wl,-z,relro,-z,now

PKGS_D := libmicrohttpd json-c libcrypto libsystemd libcurl inih libpq
# The CLI reads the PostgreSQL store through src/pgstore.c, whose object
# also holds the daemon's side of it: it links what the daemon links.
PKGS_CTL := $(PKGS_D)
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS_D) cmocka 2>/dev/null)
LIBS_D = $(shell $(PKG_CONFIG) --libs $(PKGS_D) 2>/dev/null)
LIBS_CTL = $(shell $(PKG_CONFIG) --libs $(PKGS_CTL) 2>/dev/null)
LIBS_CMOCKA = $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

# Debian packages the build, the tests and the demo need.
DEB_PACKAGES := gcc make pkg-config libmicrohttpd-dev libjson-c-dev libssl-dev libsystemd-dev \
	libcurl4-openssl-dev libinih-dev libcmocka-dev python3 curl clang nginx openssl \
	systemd systemd-container libclang-rt-14-dev valgrind cppcheck clang-tidy clang-format \
	procps dpkg-dev haproxy apache2 mandoc build-essential debhelper lintian \
	postgresql libpq-dev
# postgresql, libpq-dev: the PostgreSQL store (src/pgstore.c) and the throwaway
# clusters its tests start (tests/lib.sh, pg_start);
# procps: /bin/kill, which the units' ExecReload= runs (a minimal Debian lacks it);
# dpkg-dev: dpkg-buildflags, whose flags 42-packaging.sh builds with;
# haproxy, apache2: the real proxies 71-haproxy.sh and 72-apache.sh run, each
# on its own config and ports (Debian starts their system services on install,
# which the tests neither need nor touch; a start that fails, e.g. apache2 on
# a port 80 nginx holds, does not fail the install);
# mandoc: make lint checks the man pages with it;
# build-essential, debhelper, lintian: make deb (dpkg-buildpackage checks
# build-essential) and 44-deb.sh's lintian run.

# The core: one object list, one library that the daemon, the CLI, the unit
# tests and the fuzz targets link (the linker takes from it what each needs).
include src/core.mk
UNIT_TESTS := test_util test_config test_credentials test_netaddr test_job test_joblog test_queue test_secret \
	test_callback test_meraki test_scheduler test_rooms test_pgstore

SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

.PHONY: all deps check lint lint-man format format-check unit integration demo install uninstall deb clean FORCE
.DELETE_ON_ERROR:

all: $(B)/blinkhookd $(B)/blinkhookctl

# ---- objects: a normal build in $(B)/obj and a sanitized one in $(B)/asan ----

$(B)/obj/%.o: src/%.c $(B)/obj/flags | $(B)/obj
	$(CC) $(BH_CFLAGS) $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS) -c $< -o $@
$(B)/obj/%.o: tests/unit/%.c $(B)/obj/flags | $(B)/obj
	$(CC) $(BH_CFLAGS) $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS) -c $< -o $@
$(B)/asan/%.o: src/%.c $(B)/asan/flags | $(B)/asan
	$(CC) $(BH_CFLAGS) $(PKG_CFLAGS) $(CPPFLAGS) -O1 -g $(SAN) -c $< -o $@
$(B)/asan/%.o: tests/unit/%.c $(B)/asan/flags | $(B)/asan
	$(CC) $(BH_CFLAGS) $(PKG_CFLAGS) $(CPPFLAGS) -O1 -g $(SAN) -c $< -o $@

# Each object directory's flags file holds the flags its objects were built
# with and is rewritten only when they change (make SYSCONFDIR=... or CFLAGS=...
# after a plain make): the objects depend on it, so exactly then they rebuild.
# $(call flags_file,FLAGS): the recipe that keeps $@ up to date.
flags_file = @flags='$(subst ','\'',$(1))'; \
	if [ "$$flags" != "$$(cat $@ 2>/dev/null)" ]; then printf '%s\n' "$$flags" >$@; fi
$(B)/obj/flags: FORCE | $(B)/obj
	$(call flags_file,$(CC) $(BH_CFLAGS) $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS))
$(B)/asan/flags: FORCE | $(B)/asan
	$(call flags_file,$(CC) $(BH_CFLAGS) $(PKG_CFLAGS) $(CPPFLAGS) $(SAN))
FORCE:

$(B)/obj $(B)/asan $(B)/tests $(B)/tests-asan:
	mkdir -p $@

$(B)/libblinkhook.a: $(CORE:%=$(B)/obj/%.o)
	rm -f $@ && $(AR) rcs $@ $^
$(B)/asan/libblinkhook.a: $(CORE:%=$(B)/asan/%.o)
	rm -f $@ && $(AR) rcs $@ $^

$(B)/blinkhookd: $(B)/obj/blinkhookd.o $(B)/libblinkhook.a
	$(CC) $(BH_LDFLAGS) $(CFLAGS) $(LDFLAGS) $^ $(LIBS_D) -o $@
$(B)/blinkhookctl: $(B)/obj/blinkhookctl.o $(B)/obj/ctl-wait.o $(B)/libblinkhook.a
	$(CC) $(BH_LDFLAGS) $(CFLAGS) $(LDFLAGS) $^ $(LIBS_CTL) -o $@
$(B)/asan/blinkhookd: $(B)/asan/blinkhookd.o $(B)/asan/libblinkhook.a
	$(CC) $(SAN) $^ $(LIBS_D) -o $@
$(B)/asan/blinkhookctl: $(B)/asan/blinkhookctl.o $(B)/asan/ctl-wait.o $(B)/asan/libblinkhook.a
	$(CC) $(SAN) $^ $(LIBS_CTL) -o $@

# Every unit test links the core library; the linker takes what it needs.
$(B)/tests/%: $(B)/obj/%.o $(B)/libblinkhook.a | $(B)/tests
	$(CC) $(BH_LDFLAGS) $(CFLAGS) $(LDFLAGS) $^ $(LIBS_D) $(LIBS_CMOCKA) -o $@
$(B)/tests-asan/%: $(B)/asan/%.o $(B)/asan/libblinkhook.a | $(B)/tests-asan
	$(CC) $(SAN) $^ $(LIBS_D) $(LIBS_CMOCKA) -o $@

-include $(wildcard $(B)/obj/*.d $(B)/asan/*.d)

# ---- dependencies ----

# $(call install_debs,NAME,PACKAGES): apt-get installs those of PACKAGES that
# are not installed yet (as root, or through sudo), and nothing otherwise.
install_debs = @missing=""; for p in $(2); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "$(1): all present"; exit 0; fi; \
	echo "$(1): installing$$missing"; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing

deps:
	$(call install_debs,deps,$(DEB_PACKAGES))

# ---- tests ----

unit: $(UNIT_TESTS:%=$(B)/tests/%) $(UNIT_TESTS:%=$(B)/tests-asan/%)
integration: $(B)/blinkhookd $(B)/blinkhookctl $(B)/asan/blinkhookd $(B)/asan/blinkhookctl

check: deps
	$(MAKE) --no-print-directory -j$(CHECK_JOBS) all unit integration
	@# The same sources must build clean with clang too (warnings are errors).
	$(MAKE) --no-print-directory -j$(CHECK_JOBS) CC=clang B=$(B)/clang all
	@# Every fuzz target over its corpus (seeds and every crash ever found).
	$(MAKE) --no-print-directory -j$(CHECK_JOBS) fuzz-build
	$(MAKE) --no-print-directory fuzz-regress
	@# The tests, a few at a time (tests/run-tests.sh says how); beside them,
	@# niced, the CPU-bound lint and a short run of every fuzz target from its
	@# seeds, two at a time (a crash fails the check). The tests that measure
	@# time run after both, alone.
	B=$(B) tests/run-tests.sh --beside '$(MAKE) --no-print-directory -j$(CHECK_JOBS) -k -O lint fuzz FUZZ_SECONDS=$(CHECK_FUZZ_SECONDS)'

# ---- static analysis: cppcheck, clang-tidy and clang-format, clean or the check fails ----
# The chosen checks and why some are off: docs/testing.md, "Static analysis".

CHECK_FUZZ_SECONDS ?= 15
# Compiles and fuzz runs at once in make check (the integration tests' own
# number is TEST_JOBS, tests/run-tests.sh).
CHECK_JOBS ?= 2
LINT_C := $(wildcard src/*.c) $(wildcard tests/fuzz/*.c) tests/bench/baseline.c
LINT_PKGS := libmicrohttpd json-c libcrypto libsystemd libcurl inih libpq
CPPCHECK_FLAGS := --enable=warning,style,performance,portability --suppress=variableScope \
	--std=c11 --inline-suppr --error-exitcode=1 -q -Iinclude -D_GNU_SOURCE

lint: deps
	cppcheck $(CPPCHECK_FLAGS) src tests/unit tests/fuzz tests/bench/baseline.c
	@echo "lint: cppcheck clean"
	@# Findings go to stdout; stderr holds little but "N warnings generated"
	@# (in system headers, not shown), kept for when the tool itself fails.
	@mkdir -p $(B)
	clang-tidy -quiet $(LINT_C) -- -std=gnu17 -D_GNU_SOURCE -Iinclude \
		$(shell $(PKG_CONFIG) --cflags $(LINT_PKGS) 2>/dev/null) 2>$(B)/clang-tidy.stderr || \
		{ grep -v 'warnings\{0,1\} generated\.$$' $(B)/clang-tidy.stderr; exit 1; }
	@echo "lint: clang-tidy clean"
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory lint-man

# The man pages: mandoc finds nothing to warn about (any message fails), and
# tests/man-coverage.sh finds every config key, command and option in them.
MAN_PAGES := docs/man/blinkhookctl.1 docs/man/blinkhook-spool.5 docs/man/blinkhookd.conf.5 docs/man/blinkhookd.8

lint-man:
	@command -v mandoc >/dev/null || { echo "lint: mandoc is missing (make deps)"; exit 1; }
	@out=$$(mandoc -Tlint -W warning $(MAN_PAGES) 2>&1); st=$$?; \
	if [ -n "$$out" ] || [ "$$st" != 0 ]; then printf '%s\n' "$$out"; echo "lint: mandoc -Tlint fails"; exit 1; fi
	@echo "lint: mandoc clean"
	@tests/man-coverage.sh

# The project's own C files, in the one style of .clang-format (clang-format 14,
# Debian 12's: another version may format some lines differently).
CLANG_FORMAT ?= clang-format
FORMAT_C = $(wildcard src/*.c src/*.h include/blinkhook/*.h tests/unit/*.c tests/fuzz/*.c) tests/bench/baseline.c

format:
	$(CLANG_FORMAT) -i $(FORMAT_C)

# Names every file clang-format would change; `clang-format --dry-run FILE`
# shows where.
format-check:
	@command -v $(CLANG_FORMAT) >/dev/null || { echo "lint: $(CLANG_FORMAT) is missing (make deps)"; exit 1; }
	@$(CLANG_FORMAT) --dump-config $(firstword $(FORMAT_C)) >/dev/null || exit 1
	@bad=""; for f in $(FORMAT_C); do \
		$(CLANG_FORMAT) --dry-run --Werror "$$f" >/dev/null 2>&1 || bad="$$bad $$f"; \
	done; \
	if [ -n "$$bad" ]; then \
		echo "lint: clang-format would change these files (make format changes them; clang-format --dry-run FILE shows where):"; \
		for f in $$bad; do echo "    $$f"; done; \
		exit 1; \
	fi
	@echo "lint: clang-format clean"

demo: deps
	$(MAKE) --no-print-directory all
	B=$(B) tests/demo.sh

include tests/fuzz/fuzz.mk
include tests/bench/bench.mk

# ---- install ----

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(SYSCONFDIR)/blinkhook $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(BASHCOMPDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(B)/blinkhookd $(DESTDIR)$(SBINDIR)/blinkhookd
	install -m 0755 $(B)/blinkhookctl $(DESTDIR)$(BINDIR)/blinkhookctl
	install -m 0644 conf/blinkhookctl.bash-completion $(DESTDIR)$(BASHCOMPDIR)/blinkhookctl
	install -m 0644 docs/man/blinkhookctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 docs/man/blinkhook-spool.5 docs/man/blinkhookd.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 docs/man/blinkhookd.8 $(DESTDIR)$(MANDIR)/man8/
	@# The man pages name the config's directory of this build, as the units do.
	sed -i -e 's|/etc/blinkhook|$(SYSCONFDIR)/blinkhook|g' $(DESTDIR)$(MANDIR)/man1/blinkhookctl.1 \
		$(DESTDIR)$(MANDIR)/man5/blinkhook-spool.5 $(DESTDIR)$(MANDIR)/man5/blinkhookd.conf.5 \
		$(DESTDIR)$(MANDIR)/man8/blinkhookd.8
	install -m 0644 systemd/blinkhookd.service systemd/blinkhookd.socket systemd/blinkhookd@.service \
		$(DESTDIR)$(UNITDIR)/
	install -m 0644 systemd/blinkhook.sysusers $(DESTDIR)$(SYSUSERSDIR)/blinkhook.conf
	install -m 0644 systemd/blinkhook.tmpfiles $(DESTDIR)$(TMPFILESDIR)/blinkhook.conf
	@# The units and the tmpfiles entry name the paths of this build.
	sed -i -e 's|/usr/sbin/blinkhookd|$(SBINDIR)/blinkhookd|' \
		-e 's|file:/usr/share/doc/blinkhook/|file:$(DOCDIR)/|' \
		-e 's|/etc/blinkhook/|$(SYSCONFDIR)/blinkhook/|g' \
		$(DESTDIR)$(UNITDIR)/blinkhookd.service $(DESTDIR)$(UNITDIR)/blinkhookd@.service \
		$(DESTDIR)$(UNITDIR)/blinkhookd.socket $(DESTDIR)$(TMPFILESDIR)/blinkhook.conf
	@# An existing config is the operator's: never overwritten.
	[ -e $(DESTDIR)$(SYSCONFDIR)/blinkhook/blinkhookd.conf ] || { \
		install -m 0640 conf/blinkhookd.conf $(DESTDIR)$(SYSCONFDIR)/blinkhook/blinkhookd.conf && \
		sed -i -e 's|/etc/blinkhook/|$(SYSCONFDIR)/blinkhook/|g' $(DESTDIR)$(SYSCONFDIR)/blinkhook/blinkhookd.conf; }
	install -m 0644 conf/blinkhookd.conf conf/nginx-upstream.conf conf/nginx-location.conf conf/nginx-site.conf conf/nginx-two-nodes.conf conf/Caddyfile \
		conf/haproxy.cfg conf/apache-blinkhook.conf README.md LICENSE $(DESTDIR)$(DOCDIR)/
	@# The README's links stay good in the installed copy: docs/ and the changelog beside it.
	install -d $(DESTDIR)$(DOCDIR)/docs
	install -m 0644 CHANGELOG.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/docs/

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/blinkhookd $(DESTDIR)$(BINDIR)/blinkhookctl \
		$(DESTDIR)$(UNITDIR)/blinkhookd.service $(DESTDIR)$(UNITDIR)/blinkhookd.socket \
		$(DESTDIR)$(UNITDIR)/blinkhookd@.service $(DESTDIR)$(SYSUSERSDIR)/blinkhook.conf \
		$(DESTDIR)$(TMPFILESDIR)/blinkhook.conf $(DESTDIR)$(BASHCOMPDIR)/blinkhookctl \
		$(DESTDIR)$(MANDIR)/man1/blinkhookctl.1 $(DESTDIR)$(MANDIR)/man5/blinkhook-spool.5 \
		$(DESTDIR)$(MANDIR)/man5/blinkhookd.conf.5 $(DESTDIR)$(MANDIR)/man8/blinkhookd.8
	rm -rf $(DESTDIR)$(DOCDIR)

# ---- the Debian package ----

# The tracked files (as they are in the work tree) and conf/debian as debian/,
# in a fresh $(B)/deb/src; the version is the program's, the date the last
# commit's, so that the same tree builds the same package.
VERSION = $(shell sed -n 's/^\#define BLINKHOOK_VERSION "\(.*\)"/\1/p' include/blinkhook/version.h)

deb: deps
	@git rev-parse --git-dir >/dev/null 2>&1 || { echo "deb: needs a git checkout (it packages the tracked files)"; exit 1; }
	rm -rf $(B)/deb
	mkdir -p $(B)/deb/src
	git ls-files -z | tar --null -T - -cf - | tar -C $(B)/deb/src -xf -
	cp -R conf/debian $(B)/deb/src/debian
	{ echo "blinkhook ($(VERSION)) unstable; urgency=medium"; echo; \
	  echo "  * blinkhook $(VERSION): see README.md, Changelog."; echo; \
	  echo " -- $$(sed -n 's/^Maintainer: //p' conf/debian/control)  $$(LC_ALL=C date -u -R -d @$$(git log -1 --format=%ct))"; \
	} > $(B)/deb/src/debian/changelog
	cd $(B)/deb/src && dpkg-buildpackage -us -uc -b
	@ls $(B)/deb/*.deb

clean:
	rm -rf $(B)
