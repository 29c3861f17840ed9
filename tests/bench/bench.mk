# make bench — the benchmark (tests/bench/run-bench.sh); not part of `make check`.
#
# Included from the top-level Makefile.  It builds blinkhookd as usual (the
# `all` target, with the user's CFLAGS, -O2 -g by default) and the baseline
# server with the same compiler and flags, installs the benchmark's own Debian
# packages when missing (bench-deps), and runs the driver, which prints the
# table (and leaves it in $(B)/bench/results.txt).  The driver's knobs
# (BENCH_SLICE, BENCH_DURATION, BENCH_JOBS, BENCH_IDLE, TMPDIR, ...; see
# tests/bench/run-bench.sh) pass through from the environment.
#
#   make bench            everything (about 6 minutes on 2 cores)
#   make bench-deps       only the packages
#   tests/bench/profile.sh   callgrind: instructions per request, by function
#                            (not run by make bench; needs valgrind)

B ?= build
PKG_CONFIG ?= pkg-config

# Wherever it is included, these rules must not become the default goal.
BENCH_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

# wrk: the load; webhook: the alternative compared against; nginx, openssl:
# the reverse-proxy figures; strace, linux-perf: looking at an idle daemon's
# wakeups (the figure itself comes from /proc; perf adds its epoll_wait count).
BENCH_DEB_PACKAGES := wrk webhook nginx openssl strace linux-perf python3 curl
BENCH_PKGS := libmicrohttpd json-c libcrypto
# The daemon's own compile flags (recursive: the top-level Makefile may set
# them after including this file).
BENCH_CFLAGS = $(filter-out -MMD -MP,$(BH_CFLAGS))

.PHONY: bench bench-deps

bench: deps bench-deps
	$(MAKE) --no-print-directory all $(B)/bench/baseline
	B=$(B) tests/bench/run-bench.sh

bench-deps:
	$(call install_debs,bench-deps,$(BENCH_DEB_PACKAGES))

$(B)/bench:
	mkdir -p $@

$(B)/bench/baseline: tests/bench/baseline.c | $(B)/bench
	$(CC) $(BENCH_CFLAGS) $(shell $(PKG_CONFIG) --cflags $(BENCH_PKGS)) $(CPPFLAGS) $(CFLAGS) $(BH_LDFLAGS) $(LDFLAGS) \
		$< $(shell $(PKG_CONFIG) --libs $(BENCH_PKGS)) -o $@

.DEFAULT_GOAL := $(BENCH_SAVED_DEFAULT_GOAL)
