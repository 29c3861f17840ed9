#!/usr/bin/env bash
# The test library itself (tests/lib.sh).  free_port's claims directory is
# shared by name between test runs: one that is not the tester's own, or
# links planted in it, are refused rather than followed.  And a sanitizer's
# report in the daemon's log fails the script that started it.
. "$(dirname "$0")/../lib.sh"


mkdir "$T/open" && chmod 0755 "$T/open"
check "a claims directory others may write to is refused, saying why" \
	sh -c "! (PORT_CLAIMS='$T/open'; $(declare -f free_port); free_port) 2>'$T/err' && grep -q 'mode 0700' '$T/err'"

mkdir -m 0700 "$T/real" && ln -s "$T/real" "$T/link"
check "a link in place of the claims directory is refused" \
	sh -c "! (PORT_CLAIMS='$T/link'; $(declare -f free_port); free_port) 2>/dev/null"

mkdir -m 0700 "$T/planted" && echo precious >"$T/victim" && ln -s "$T/victim" "$T/planted/lock"
(PORT_CLAIMS=$T/planted free_port) >/dev/null 2>&1
check "a lock file planted as a link is not followed: its target is untouched" \
	test "$(cat "$T/victim")" = precious

mkdir -m 0700 "$T/good"
port=$(PORT_CLAIMS=$T/good free_port)
check "in the tester's own directory a port is claimed ($port), the claim readable by the tester alone" \
	sh -c "test -n '$port' && test \"\$(stat -c %a '$T/good/$port')\" = 600 && test \"\$(cat '$T/good/$port')\" = $$"

# A script whose daemon's log holds a sanitizer report fails, showing it.
cat >"$T/reported.sh" <<SH
. '$TOP/tests/lib.sh'
printf '==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n' >"\$T/daemon.log"
ok "everything else"
SH
out=$(bash "$T/reported.sh" 2>&1)
rc=$?
check "a sanitizer report in the daemon's log: a 'not ok' line, the report, exit status 1 ($rc)" \
	sh -c "test $rc = 1 && printf '%s\n' \"\$1\" | grep -qx 'not ok - no sanitizer report in daemon.log' &&
		printf '%s\n' \"\$1\" | grep -q '^# ==1==ERROR: AddressSanitizer: heap-use-after-free'" sh "$out"
# ... and in a node's own log, where a test runs several daemons.
cat >"$T/node.sh" <<SH
. '$TOP/tests/lib.sh'
printf 'a clean log\n' >"\$T/daemon.log"
printf '==2==ERROR: LeakSanitizer: detected memory leaks\n' >"\$T/b.log"
ok "everything else"
SH
out=$(bash "$T/node.sh" 2>&1)
rc=$?
check "a sanitizer report in a node's log (b.log): a 'not ok' line naming it, exit status 1 ($rc)" \
	sh -c "test $rc = 1 && printf '%s\n' \"\$1\" | grep -qx 'not ok - no sanitizer report in b.log'" sh "$out"
printf 'a clean log\n' >"$T/clean.log"
cat >"$T/clean.sh" <<SH
. '$TOP/tests/lib.sh'
cp '$T/clean.log' "\$T/daemon.log"
ok "everything"
SH
out=$(bash "$T/clean.sh" 2>&1)
check "... and none in a clean one" test "$?:$out" = "0:ok - everything"

# Without PostgreSQL a script that needs it fails, loudly: not a skip that
# would pass make check with none of the PostgreSQL store's tests run.
mkdir "$T/nopg"
cat >"$T/nopg.sh" <<SH
. '$TOP/tests/lib.sh'
PG_BIN='$T/nopg'
pg_start
ok "ran on without PostgreSQL"
SH
out=$(TMPDIR=$T bash "$T/nopg.sh" 2>/dev/null)
rc=$?
check "without PostgreSQL (PG_BIN an empty directory) pg_start fails: a 'not ok' line, exit status 1 ($rc)" \
	test "$rc:$out" = "1:not ok - PostgreSQL is installed (make deps)"
exit $((FAILS > 0))
