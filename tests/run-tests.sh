#!/usr/bin/env bash
# Runs every test and ends with "N passed, M failed" (exit 1 on any failure):
#  - the cmocka unit tests, normal and under ASan+UBSan;
#  - the integration tests (tests/integration/*.sh) against the real daemon;
#  - the same integration tests once more with the ASan+UBSan daemon and CLI,
#    so that a memory error or a leak at exit in the real program fails them.
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=86}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0
failed=0
failures=()

unit() {
	local bin=$1 out p f
	out=$("$bin" 2>&1)
	local rc=$?
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' <<<"$out" | tail -n1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s).*/\1/p' <<<"$out" | tail -n1)
	p=${p:-0}
	f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # crashed, or a sanitizer spoke
	passed=$((passed + p))
	failed=$((failed + f))
	echo "unit $bin: $p passed, $f failed"
	if [ "$f" -gt 0 ]; then
		failures+=("$bin")
		sed 's/^/    /' <<<"$out" | grep -v '^    \[       OK \]\|^    \[ RUN      \]'
	fi
}

integration() {
	local script=$1 label=$2 out p f rc
	out=$(timeout 600 bash "$script" 2>&1)
	rc=$?
	p=$(grep -c '^ok - ' <<<"$out")
	f=$(grep -c '^not ok - ' <<<"$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	passed=$((passed + p))
	failed=$((failed + f))
	echo "integration $label$(basename "$script"): $p passed, $f failed"
	grep '^# SKIP' <<<"$out" | sed 's/^/    /'
	if [ "$f" -gt 0 ]; then
		failures+=("$label$(basename "$script")")
		sed 's/^/    /' <<<"$out"
	fi
}

for t in "$B"/tests/test_*; do unit "$t"; done
for t in "$B"/tests-asan/test_*; do unit "$t"; done
for s in tests/integration/[0-9]*.sh; do
	B=$B integration "$s" ""
done
for s in tests/integration/[0-9]*.sh; do
	grep -q '^# asan: skip' "$s" && continue
	BLINKHOOKD=$PWD/$B/asan/blinkhookd BLINKHOOKCTL=$PWD/$B/asan/blinkhookctl integration "$s" "asan "
done

if [ ${#failures[@]} -gt 0 ]; then
	echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
