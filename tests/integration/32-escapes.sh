#!/usr/bin/env bash
# Text from outside (a spool file name, the API's error text, a callback's
# error text) never reaches a terminal or a log line raw: ESC sequences, BEL,
# DEL and C1 controls come out as \xNN, valid UTF-8 stays; the job log and
# every --json output keep the exact text as valid JSON.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.2
write_config
start_daemon

# Retitles the terminal, rings, clears the screen.
EVIL_JSON='\u001b]0;pwned\u0007\u001b[2J'
EVIL=$'\e]0;pwned\a\e[2J'
SHOWN='\x1b]0;pwned\x07\x1b[2J'

# A spool file named with the sequence, holding no request.
printf 'garbage' >"$T/spool/tmp/x" && mv "$T/spool/tmp/x" "$T/spool/new/bad${EVIL}.json"
# And one with an 8-bit CSI (0x9b) and a byte that is in no UTF-8 text.
printf 'garbage' >"$T/spool/tmp/y" && mv "$T/spool/tmp/y" "$T/spool/new/bad"$'\x9b2J\xff'.json
# The API's error text, and the callback's (sent by the simulator with the job's secret).
sim_fault '{"kind":"status","status":400,"serial":"Q2AA-0000-0400","message":"API says '"$EVIL_JSON"'"}'
sim_fault '{"kind":"failed","serial":"Q2AA-0000-FAIL","error":"device '"$EVIL_JSON"' offline"}'
# One whose callback we send ourselves, with DEL, a C1 CSI (U+009B) and Zürich in it.
sim_fault '{"kind":"lost_callback","serial":"Q2AA-0000-OWNC"}'
A=$(ctl blink Q2AA-0000-0400 --duration 1)
F=$(ctl blink Q2AA-0000-FAIL --duration 1)
C=$(ctl blink Q2AA-0000-OWNC --duration 1)
wait_state 15 "$A" failed || notok "the API's error did not fail job $A"
wait_state 15 "$F" failed || notok "the callback did not fail job $F"
wait_state 15 "$C" submitted || notok "job $C was not submitted"
LBI=$(ctl status "$C" --json | json 'j["leds_blink_id"]')
CB_ERR='del\u007f csi\u009b2J Z\u00fcrich '"$EVIL_JSON"
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
	--data-binary '{"sharedSecret":"'"$(secret_of "$C")"'","message":{"ledsBlinkId":"'"$LBI"'","status":"failed","error":"'"$CB_ERR"'"}}' \
	"$D_URL/callbacks/leds-blink/$C")
check "our callback with control characters in its error text: 200 ($code)" test "$code" = 200
wait_state 10 "$C" failed || notok "job $C did not fail"
wait_until 10 sh -c "! ls '$T/spool/new' | grep -q bad" || notok "a badly named spool file is still in new/"
sleep 0.5 # the log lines of the last events

# clean FILE: FILE is valid UTF-8 without a control character but the
# newline: no ESC, BEL, DEL, C1 (U+0080..U+009F), nor a byte outside UTF-8.
clean() {
	python3 -c '
import re, sys
try:
    t = open(sys.argv[1], "rb").read().decode("utf-8")
except UnicodeDecodeError:
    sys.exit(1)
sys.exit(1 if re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", t) else 0)' "$1"
}
check "the daemon's log names the spool file, escaped" grep -qF "bad$SHOWN.json" "$T/daemon.log"
check "the daemon's log names the file with bytes outside UTF-8, escaped" grep -qF 'bad\x9b2J\xff.json' "$T/daemon.log"
check "the daemon's log has the API's error text, escaped" grep -qF "API says $SHOWN" "$T/daemon.log"
check "the daemon's log holds no ESC, BEL, DEL, C1 or byte outside UTF-8" clean "$T/daemon.log"

for id in "$A" "$F" "$C"; do ctl status "$id"; done >"$T/status.out"
ctl jobs >"$T/jobs.out"
ctl log >"$T/log.out"
for f in status jobs log; do
	check "blinkhookctl $f: no ESC, BEL, DEL, C1 or byte outside UTF-8" clean "$T/$f.out"
	check "blinkhookctl $f: the texts shown escaped" sh -c "grep -qF 'API says $SHOWN' '$T/$f.out' && grep -qF 'device $SHOWN offline' '$T/$f.out'"
	check "blinkhookctl $f: DEL and C1 escaped, Zürich kept" \
		grep -qF 'del\x7f csi\xc2\x9b2J Zürich \x1b]0;pwned' "$T/$f.out"
done

# The exact text stays in the job log and in every --json output, as valid JSON.
exact() { ctl status "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["error"] == sys.argv[1])' "$2"; }
check "status --json carries the API's exact text" test "$(exact "$A" "API says $EVIL")" = True
check "status --json carries the callback's exact text" test "$(exact "$F" "device $EVIL offline")" = True
check "status --json carries our callback's exact text" \
	test "$(exact "$C" "$(printf 'del\177 csi\302\2332J Z\303\274rich ')$EVIL")" = True
check "jobs --json is valid JSON with the exact texts" sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' jobs --json | python3 -c '
import json, sys
errs = [j[\"error\"] for j in json.load(sys.stdin)]
assert any(e and e.endswith(\"]0;pwned\x07\x1b[2J\") for e in errs), errs'"
check "log --json: every line is valid JSON, the exact texts in it" sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' log --json | python3 -c '
import json, sys
errs = [json.loads(l).get(\"error\") for l in sys.stdin]
assert sum(1 for e in errs if e and \"]0;pwned\x07\" in e) >= 3, errs'"
check "the job log is valid JSON, line by line" python3 -c '
import json, sys
for l in open(sys.argv[1], "rb"): json.loads(l)' "$T/state/jobs.log"

exit $((FAILS > 0))
