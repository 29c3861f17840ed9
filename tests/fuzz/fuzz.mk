# libFuzzer targets for every parser of untrusted bytes (make fragment).
#
# The top-level Makefile includes it; it also works alone, as
# `make -f tests/fuzz/fuzz.mk fuzz-regress`.
#
#   make fuzz           build every target, then fuzz each for FUZZ_SECONDS (30)
#                       from a scratch copy of its corpus; fails if any crashes
#                       (make -j2 fuzz: two targets at a time)
#   make fuzz-regress   build every target, then run each once over every input
#                       of its tracked corpus; fails on any crash (make check)
#   make fuzz-build     only build them, into $(B)/fuzz/
#
# FUZZ_TARGETS=fuzz_queue limits a run to some targets.  Fuzzing never writes
# into tests/fuzz/corpus/: new inputs go to $(B)/fuzz/corpus/TARGET/, which
# persists between runs (delete it to start from the seeds), and a crashing
# input to tests/fuzz/crashes/TARGET-crash-... (untracked).  To reproduce
# one: $(B)/fuzz/TARGET tests/fuzz/crashes/FILE.  An input that once crashed
# goes into the tracked corpus only together with its fix.
#
# Needs clang and its libFuzzer runtime (Debian: clang, libclang-rt-14-dev).

B ?= build
PKG_CONFIG ?= pkg-config
# The user's preprocessor flags (-I, -D) reach these compiles too; their
# CFLAGS do not: a fuzz target has its own optimization and sanitizers.
CPPFLAGS ?=

# Included before the top-level Makefile's first rule, these rules must not
# become its default goal.
FUZZ_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 30
FUZZ_ALL := fuzz_callback fuzz_queue fuzz_joblog fuzz_config fuzz_meraki fuzz_spans fuzz_xff fuzz_forwarded
FUZZ_TARGETS ?= $(FUZZ_ALL)
# Extra libFuzzer flags for `make fuzz`, e.g. FUZZ_FLAGS=-jobs=2.
FUZZ_FLAGS ?=

FUZZ_SRC := tests/fuzz
FUZZ_OUT := $(B)/fuzz
FUZZ_CRASHES := $(FUZZ_SRC)/crashes

# Every target links the core library (src/core.mk), built here with the
# fuzzer's flags; the linker takes the modules each calls.  The libraries
# those modules use:
include src/core.mk
FUZZ_PKGS_fuzz_callback := json-c libcrypto
FUZZ_PKGS_fuzz_queue := json-c
FUZZ_PKGS_fuzz_joblog := json-c
FUZZ_PKGS_fuzz_config := inih
FUZZ_PKGS_fuzz_meraki := json-c libcurl
FUZZ_PKGS_fuzz_spans :=
FUZZ_PKGS_fuzz_xff :=
FUZZ_PKGS_fuzz_forwarded :=

# Undefined behaviour stops the run as a crash does, rather than being
# printed and passed over.
FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_WARNINGS := -Wall -Wextra -Wshadow -Wformat=2 -Wconversion -Wsign-conversion -Wmissing-prototypes -Wstrict-prototypes \
	-Wpointer-arith -Wundef -Wvla -Wnull-dereference -Wwrite-strings -Wno-unused-parameter
FUZZ_WERROR ?= -Werror
FUZZ_CFLAGS = $(FUZZ_SAN) -g -O1 -std=gnu17 -D_GNU_SOURCE -Iinclude \
	$(shell $(PKG_CONFIG) --cflags json-c libcrypto libcurl inih libmicrohttpd libsystemd libpq 2>/dev/null) \
	$(FUZZ_WARNINGS) $(FUZZ_WERROR) -MMD -MP
# fuzz_joblog and fuzz_config write a file for every input, and the job log
# syncs: on a tmpfs that costs nothing.
FUZZ_TMPDIR ?= $(shell [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo /tmp)
# The sanitizers' reports with a stack, and leaks count as crashes.
FUZZ_ENV = TMPDIR=$(FUZZ_TMPDIR) ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1

.PHONY: fuzz fuzz-build fuzz-regress

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_OUT)/%)

$(FUZZ_OUT)/obj/%.o: src/%.c | $(FUZZ_OUT)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CPPFLAGS) -c $< -o $@
$(FUZZ_OUT)/obj/%.o: $(FUZZ_SRC)/%.c | $(FUZZ_OUT)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CPPFLAGS) -c $< -o $@
$(FUZZ_OUT)/obj:
	mkdir -p $@

$(FUZZ_OUT)/libblinkhook.a: $(CORE:%=$(FUZZ_OUT)/obj/%.o)
	rm -f $@ && $(AR) rcs $@ $^

define FUZZ_LINK_RULE
$(FUZZ_OUT)/$(1): $(FUZZ_OUT)/obj/$(1).o $(FUZZ_OUT)/libblinkhook.a
	$$(FUZZ_CC) $$(FUZZ_SAN) $$^ $$(if $(FUZZ_PKGS_$(1)),$$(shell $$(PKG_CONFIG) --libs $(FUZZ_PKGS_$(1)))) -o $$@
endef
$(foreach t,$(FUZZ_ALL),$(eval $(call FUZZ_LINK_RULE,$(t))))

-include $(wildcard $(FUZZ_OUT)/obj/*.d)

# One rule a target (fuzz-run-TARGET), so that `make -j2 fuzz` fuzzes two at
# a time; a crash is noted and the others run on, so that one crash does not
# hide another, and `fuzz` fails at the end naming each.  libFuzzer's output
# goes to $(B)/fuzz/TARGET.log; each target's lines reach the terminal
# together once it is done.
FUZZ_RUNS := $(FUZZ_TARGETS:%=fuzz-run-%)
.PHONY: $(FUZZ_RUNS)

fuzz: $(FUZZ_RUNS)
	@failed=""; \
	for t in $(FUZZ_TARGETS); do [ ! -e $(FUZZ_OUT)/$$t.crashed ] || failed="$$failed $$t"; done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashed:$$failed (inputs in $(FUZZ_CRASHES)/)"; exit 1; fi; \
	echo "fuzz: no crash"

$(FUZZ_RUNS): fuzz-run-%: $(FUZZ_OUT)/%
	@t=$*; corpus=$(FUZZ_OUT)/corpus/$$t; report=$(FUZZ_OUT)/$$t.report; \
	mkdir -p $(FUZZ_CRASHES) $$corpus && cp $(FUZZ_SRC)/corpus/$$t/* $$corpus/ && rm -f $(FUZZ_OUT)/$$t.crashed; \
	echo "fuzz: $$t for $(FUZZ_SECONDS)s (log: $(FUZZ_OUT)/$$t.log)" >$$report; \
	dict=""; \
	if [ -f $(FUZZ_SRC)/$$t.dict ]; then dict=-dict=$(FUZZ_SRC)/$$t.dict; fi; \
	if $(FUZZ_ENV) $(FUZZ_OUT)/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_CRASHES)/$$t- $$dict $(FUZZ_FLAGS) $$corpus >$(FUZZ_OUT)/$$t.log 2>&1; then \
		grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
			$(FUZZ_OUT)/$$t.log | sed 's/^/    /' >>$$report; \
	else \
		touch $(FUZZ_OUT)/$$t.crashed; \
		echo "fuzz: $$t FAILED:" >>$$report; \
		grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED)' $(FUZZ_OUT)/$$t.log | tail -n 60 | \
			sed 's/^/    /' >>$$report; \
	fi; \
	cat $$report

# Inputs that crash here are already in the tree: artifacts stay in $(B).
fuzz-regress: fuzz-build
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
		inputs=$$(find $(FUZZ_SRC)/corpus/$$t -type f | LC_ALL=C sort); \
		n=$$(echo "$$inputs" | grep -c .); \
		if [ "$$n" -eq 0 ]; then echo "fuzz-regress: $$t: no inputs"; failed="$$failed $$t"; continue; fi; \
		if $(FUZZ_ENV) $(FUZZ_OUT)/$$t -runs=0 -timeout=10 -artifact_prefix=$(FUZZ_OUT)/regress-$$t- \
			$$inputs >$(FUZZ_OUT)/$$t-regress.log 2>&1; then \
			echo "fuzz-regress: $$t: $$n inputs, no crash"; \
		else \
			failed="$$failed $$t"; \
			echo "fuzz-regress: $$t FAILED:"; \
			tail -n 60 $(FUZZ_OUT)/$$t-regress.log | sed 's/^/    /'; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz-regress: crashed:$$failed"; exit 1; fi

.DEFAULT_GOAL := $(FUZZ_SAVED_DEFAULT_GOAL)
