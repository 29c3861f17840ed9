#!/usr/bin/env bash
# asan: skip (valgrind runs the normal build; the two do not mix)
# parallel: no (valgrind is slow and CPU-bound; its timeouts assume the CPU to itself)
# One scenario under valgrind memcheck: blinks, good and bad callbacks, a
# reload, a stop. Zero errors and no definite leaks, or the daemon's exit
# status says so.
. "$(dirname "$0")/../lib.sh"

if ! command -v valgrind >/dev/null; then
	echo "# SKIP: valgrind is not installed"
	exit 0
fi
start_sim --min-interval 0 --blink-time 0.3
write_config
DAEMON_WRAPPER="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --log-file=$T/valgrind.log"
start_daemon
ids=()
for s in Q2AA-BBBB-VG01 Q2AA-BBBB-VG02 Q2AA-BBBB-VG03; do ids+=("$(ctl blink "$s" --duration 2)"); done
for id in "${ids[@]}"; do check "job $id completes under valgrind" wait_state 60 "$id" complete; done
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
	--data '{"sharedSecret":"wrong","message":{"status":"complete"}}' "$D_URL/callbacks/leds-blink/${ids[0]}")
check "a wrong secret: 401 ($code)" test "$code" = 401
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data '[' "$D_URL/callbacks/leds-blink/${ids[0]}")
check "malformed JSON: 400 ($code)" test "$code" = 400
kill -HUP "$D_PID"
check "the reload completes" wait_until 30 grep -q 'reload: API key' "$T/daemon.log"
id=$(ctl blink Q2AA-BBBB-VG04)
check "a job after the reload completes" wait_state 60 "$id" complete
stop_daemon
check "valgrind: no errors, no definite leaks (exit $D_STATUS)" test "$D_STATUS" = 0
check "valgrind ran the daemon" test -e "$T/valgrind.log"
check "valgrind said nothing" test ! -s "$T/valgrind.log"
if [ -s "$T/valgrind.log" ]; then sed "s/^/# /" "$T/valgrind.log" | head -40; fi
