#!/usr/bin/env bash
# free_port's claims directory (tests/lib.sh) is shared by name between test
# runs: one that is not the tester's own, or links planted in it, are refused
# rather than followed.
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
exit $((FAILS > 0))
