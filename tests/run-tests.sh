#!/usr/bin/env bash
# Runs every test and ends with "N passed, M failed" (exit 1 on any failure):
#  - the cmocka unit tests, normal and under ASan+UBSan;
#  - the integration tests (tests/integration/*.sh) against the real daemon;
#  - the same integration tests once more with the ASan+UBSan daemon and CLI,
#    so that a memory error or a leak at exit in the real program fails them
#    (a script with the line "# asan: skip" runs only once).
#
# Most tests wait on I/O and timers, so up to TEST_JOBS (default 3) of them
# run at once; each one's report is kept apart and printed whole, in the order
# they were started, which is always the same.  TEST_JOBS=1 runs one at a time.
#
# The rule for an integration script: it runs beside other tests (itself
# under ASan among them), so it shares nothing with them.  Every file goes
# under $T, every port comes from free_port (tests/lib.sh), anything named
# machine-wide (a unit, a container) has $$ in its name, what is made once a
# machine (users, groups) is made under a lock (flock), and nothing is killed
# by name.  A script that measures time or load (a reply within N ms, a burst,
# descriptors up to a limit, valgrind) has the line
#     # parallel: no
# in its header: it runs after all the others, alone, with nothing else of
# this run on the CPU.
#
# --beside CMD: CMD (CPU-bound checks, such as make lint) runs niced while the
# parallel tests run and is waited for before the "parallel: no" ones start;
# its output comes after theirs, and its failure counts as one failed test.
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
JOBS=${TEST_JOBS:-3}
BESIDE=
if [ "${1:-}" = --beside ]; then
	BESIDE=$2
	shift 2
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=86}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
RUN=$(mktemp -d "${TMPDIR:-/tmp}/blinkhook-run.XXXXXX")
trap 'rm -rf "$RUN"' EXIT

# Each test prints its report and writes "PASSED FAILED NAME" to $COUNTS.

unit() {
	local bin=$1 out p f rc
	# Bounded like the scripts: a hung test cannot hang the run.
	out=$(timeout 300 "$bin" 2>&1)
	rc=$?
	if [ "$rc" -eq 124 ]; then out+=$'\n'"timed out after 300 s"; fi
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' <<<"$out" | tail -n1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s).*/\1/p' <<<"$out" | tail -n1)
	p=${p:-0}
	f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # crashed, or a sanitizer spoke
	echo "unit $bin: $p passed, $f failed"
	if [ "$f" -gt 0 ]; then
		sed 's/^/    /' <<<"$out" | grep -v '^    \[       OK \]\|^    \[ RUN      \]'
	fi
	echo "$p $f $bin" >"$COUNTS"
}

integration() {
	local script=$1 label=$2 out p f rc start=$SECONDS
	if [ "$label" = "asan " ]; then
		export BLINKHOOKD=$PWD/$B/asan/blinkhookd BLINKHOOKCTL=$PWD/$B/asan/blinkhookctl
	fi
	out=$(B=$B timeout 600 bash "$script" 2>&1)
	rc=$?
	p=$(grep -c '^ok - ' <<<"$out")
	f=$(grep -c '^not ok - ' <<<"$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	echo "integration $label$(basename "$script"): $p passed, $f failed ($((SECONDS - start)) s)"
	grep '^# SKIP' <<<"$out" | sed 's/^/    /'
	if [ "$f" -gt 0 ]; then
		sed 's/^/    /' <<<"$out"
	fi
	echo "$p $f $label$(basename "$script")" >"$COUNTS"
}

# ---- the list: test I is the command KIND[I] ARG[I] LABEL[I] ----

KIND=()
ARG=()
LABEL=()
ALONE=()
add() { KIND+=("$1"); ARG+=("$2"); LABEL+=("$3"); ALONE+=("$4"); }
for pass in "" "asan "; do
	for s in tests/integration/[0-9]*.sh; do
		[ -n "$pass" ] && grep -q '^# asan: skip' "$s" && continue
		alone=no
		grep -q '^# parallel: no' "$s" && alone=yes
		add integration "$s" "$pass" "$alone"
	done
done
# The unit tests last: they are short, and fill the gaps the long scripts leave.
for t in "$B"/tests/test_* "$B"/tests-asan/test_*; do add unit "$t" "" no; done

# ---- running them ----

passed=0
failed=0
failures=()
started=0 # tests started so far, in ORDER
printed=0 # reports printed so far, in ORDER
ORDER=()

# start I: test I in the background; its report goes to $RUN/I.out, and its
# counts to $RUN/I.n once it is over.
start() {
	local i=$1
	ORDER+=("$i")
	started=$((started + 1))
	(
		COUNTS=$RUN/$i.part
		"${KIND[$i]}" "${ARG[$i]}" "${LABEL[$i]}" >"$RUN/$i.out" 2>&1
		# A test that could not even count still ends, as a failure.
		[ -e "$COUNTS" ] || echo "0 1 ${LABEL[$i]}${ARG[$i]}" >"$COUNTS"
		mv "$COUNTS" "$RUN/$i.n"
	) &
}

# done_count: how many of the tests started are over.
done_count() {
	local n=0 i
	for i in "${ORDER[@]}"; do [ -e "$RUN/$i.n" ] && n=$((n + 1)); done
	echo "$n"
}

# print_ready: the reports of the tests over, in the order they started, up
# to the first one still running.
print_ready() {
	local i p f name
	while [ "$printed" -lt "${#ORDER[@]}" ]; do
		i=${ORDER[$printed]}
		[ -e "$RUN/$i.n" ] || return 0
		cat "$RUN/$i.out"
		read -r p f name <"$RUN/$i.n"
		passed=$((passed + p))
		failed=$((failed + f))
		[ "$f" -gt 0 ] && failures+=("$name")
		printed=$((printed + 1))
	done
}

# run_all MAX I...: the tests I, at most MAX at a time, reports printed as
# they come in.
run_all() {
	local max=$1 i
	shift
	for i in "$@"; do
		while [ $((started - $(done_count))) -ge "$max" ]; do
			print_ready
			sleep 0.2
		done
		start "$i"
	done
	while [ "$(done_count)" -lt "$started" ]; do
		print_ready
		sleep 0.2
	done
	print_ready
}

together=()
alone=()
for i in "${!KIND[@]}"; do
	if [ "${ALONE[$i]}" = yes ]; then alone+=("$i"); else together+=("$i"); fi
done

if [ -n "$BESIDE" ]; then
	(
		nice -n 10 bash -c "$BESIDE" >"$RUN/beside.out" 2>&1
		echo $? >"$RUN/beside.rc"
	) &
	BESIDE_PID=$!
fi
run_all "$JOBS" "${together[@]}"
if [ -n "$BESIDE" ]; then
	wait "$BESIDE_PID"
	echo "beside the tests: $BESIDE"
	sed 's/^/    /' "$RUN/beside.out"
	if [ "$(cat "$RUN/beside.rc")" != 0 ]; then
		echo "    FAILED (exit $(cat "$RUN/beside.rc"))"
		failed=$((failed + 1))
		failures+=("$BESIDE")
	fi
fi
run_all 1 "${alone[@]}"

if [ ${#failures[@]} -gt 0 ]; then
	echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
