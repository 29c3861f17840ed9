# make bench — the benchmark (tests/bench/run-bench.sh); not part of `make check`.
#
# Included from the top-level Makefile.  It builds blinkhookd as usual (the
# `all` target, with the user's CFLAGS, -O2 -g by default) and the baseline
# server with the same compiler and flags, installs the benchmark's own Debian
# packages when missing (bench-deps), and runs the driver, which prints the
# table.  BENCH_DURATION (seconds per load point, default 5), BENCH_JOBS
# (prepared jobs, default 250000) and TMPDIR (default /tmp/bench) are passed
# through from the environment.

# wrk: the load; webhook: the alternative compared against; strace and
# linux-perf: counting the idle daemon's wakeups (perf if it works, else strace).
BENCH_DEB_PACKAGES := wrk webhook strace linux-perf nginx openssl python3
BENCH_PKGS := libmicrohttpd json-c libcrypto
BENCH_CFLAGS := $(filter-out -MMD -MP,$(BH_CFLAGS))

.PHONY: bench bench-deps

bench: deps bench-deps
	$(MAKE) --no-print-directory all $(B)/bench/baseline
	B=$(B) tests/bench/run-bench.sh

bench-deps:
	@missing=""; for p in $(BENCH_DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "bench-deps: all present"; exit 0; fi; \
	echo "bench-deps: installing$$missing"; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing

$(B)/bench:
	mkdir -p $@

$(B)/bench/baseline: tests/bench/baseline.c | $(B)/bench
	$(CC) $(BENCH_CFLAGS) $(shell $(PKG_CONFIG) --cflags $(BENCH_PKGS)) $(CFLAGS) $(BH_LDFLAGS) $(LDFLAGS) \
		$< $(shell $(PKG_CONFIG) --libs $(BENCH_PKGS)) -o $@
