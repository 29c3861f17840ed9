#!/usr/bin/env bash
# The callback endpoint's answers: a bad request changes nothing and gets its
# 4xx; the right secret records the status; repeats are idempotent.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.2
# Refused callbacks here must change nothing, not even by the poll they would
# prompt (23-unverified.sh tests that).
write_config "[callback] unverified = ignore"
start_daemon

# post ID BODY [CURL ARGS...]: prints the HTTP status.
post() {
	local id=$1 body=$2; shift 2
	curl -sS --max-time 5 -o "$T/reply" -w '%{http_code}' -X POST -H "Content-Type: ${CT:-application/json}" \
		"$@" --data-binary "$body" "$D_URL/callbacks/leds-blink/$id"
}
body() { # body SECRET-JSON STATUS [LEDSBLINKID]
	printf '{"callbackId":"9","organization":{"id":"1","name":"o"},"network":{"id":"N_1","name":"n"},"sentAt":"2026-01-01T00:00:00Z","sharedSecret":%s,"message":{"ledsBlinkId":"%s","url":"/x","status":"%s","request":{"serial":"Q2AA-BBBB-CCCC","duration":5},"error":null}}' "$1" "${3:-$LBI}" "$2"
}

# Two jobs whose callbacks never come, so that we can send our own.
sim_fault '{"kind":"lost_callback","count":2}'
A=$(ctl blink Q2AA-BBBB-CCCC --duration 5)
B=$(ctl blink Q2AA-BBBB-DDDD --duration 5)
wait_state 10 "$A" submitted && wait_state 10 "$B" submitted || notok "jobs were not submitted"
LBI=$(ctl status "$A" --json | json 'j["leds_blink_id"]')
SA=$(secret_of "$A")
SB=$(secret_of "$B")
before=$(ctl status "$A" --json)
loglines=$(wc -l <"$T/state/jobs.log")

expect() { # expect CODE DESCRIPTION ID BODY [CURL ARGS...]
	local code=$1 desc=$2; shift 2
	local got
	got=$(post "$@")
	if [ "$got" = "$code" ]; then ok "$desc: $code"; else notok "$desc: want $code, got $got"; fi
}
expect 401 "wrong secret" "$A" "$(body '"nope"' complete)"
expect 401 "missing secret" "$A" '{"message":{"status":"complete"}}'
expect 401 "empty secret" "$A" "$(body '""' complete)"
expect 401 "secret as a number" "$A" "$(body 12345 complete)"
expect 401 "secret as an object" "$A" "$(body '{"a":1}' complete)"
expect 401 "secret as null" "$A" "$(body null complete)"
expect 401 "another job's secret" "$A" "$(body "\"$SB\"" complete)"
expect 401 "the secret with one character changed" "$A" "$(body "\"${SA%?}x\"" complete)"
expect 401 "the secret in a header nobody configured" "$A" '{"message":{"status":"complete"}}' -H "Authorization: Bearer $SA"
expect 404 "unknown job with that job's own secret" "nosuchjob" "$(body "\"$(secret_of nosuchjob)\"" complete)"
expect 401 "unknown job without a secret" "nosuchjob" '{}'
expect 401 "an invalid job id" "bad%20id" "$(body "\"$SA\"" complete)"
expect 400 "not JSON" "$A" 'this is not json'
expect 400 "a JSON array" "$A" '[1,2,3]'
expect 400 "truncated JSON" "$A" '{"sharedSecret":"x","message":{'
expect 400 "message missing" "$A" "{\"sharedSecret\":\"$SA\"}"
expect 400 "message.status unknown" "$A" "$(body "\"$SA\"" done)"
expect 400 "ledsBlinkId of another Meraki job" "$A" "$(body "\"$SA\"" complete 999999)"
expect 400 "deep nesting" "$A" "$(python3 -c 'print("[" * 100 + "]" * 100)')"
expect 400 "a NUL byte" "$A" "$(printf '{"sharedSecret":"%s","x":"a' "$SA")"$'\x01'"\"}"
CT=text/plain expect 415 "text/plain" "$A" "$(body "\"$SA\"" complete)"
CT=application/x-www-form-urlencoded expect 415 "a form body" "$A" "sharedSecret=$SA"
CT="application/json; charset=utf-8" expect 400 "application/json with a charset is JSON" "$A" '[]'
expect 413 "a body over max_body" "$A" "$(head -c 70000 /dev/zero | tr '\0' 'a')"
expect 400 "invalid UTF-8" "$A" "$(printf '{"sharedSecret":"%s","message":{"status":"running","error":"\xff\xfe"}}' "$SA")"
expect 400 "an empty body" "$A" ''
expect 400 "status as a number" "$A" "{\"sharedSecret\":\"$SA\",\"message\":{\"status\":3}}"
expect 400 "message as a string" "$A" "{\"sharedSecret\":\"$SA\",\"message\":\"complete\"}"
expect 400 "trailing garbage after the JSON" "$A" "$(body "\"$SA\"" complete)xyz"
expect 401 "a 65-character job id" "$(printf 'a%.0s' $(seq 65))" "$(body '"x"' complete)"
expect 401 "the collection URL without a receiver configured" "" "$(body "\"$SA\"" complete)"
expect 413 "a chunked body over max_body" "$A" "$(head -c 70000 /dev/zero | tr '\0' 'a')" -H 'Transfer-Encoding: chunked'
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -X DELETE "$D_URL/callbacks/leds-blink/$A")
check "DELETE on a callback URL: 405 ($code)" test "$code" = 405
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' --path-as-is "$D_URL/callbacks/leds-blink/../../metrics")
check "a path climbing out of the callbacks gets no metrics ($code)" sh -c "[ '$code' != 200 ]"
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d '{}' "$D_URL/metrics")
check "POST /metrics: 405 ($code)" test "$code" = 405
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$D_URL/callbacks/leds-blink/$A")
check "GET on a callback URL: 405 ($code)" test "$code" = 405
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -X PUT -d x "$D_URL/callbacks/leds-blink/$A")
check "PUT on a callback URL: 405 ($code)" test "$code" = 405
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$D_URL/nope")
check "an unknown path: 404 ($code)" test "$code" = 404
check "no reply echoes a secret" sh -c "! grep -q '$SA' '$T/reply'"
check "bad requests changed nothing in the job" test "$(ctl status "$A" --json)" = "$before"
check "bad requests wrote nothing to the job log" test "$(wc -l <"$T/state/jobs.log")" = "$loglines"

expect 200 "a progress status with the right secret" "$A" "$(body "\"$SA\"" running)"
check "the progress status is recorded, the job not final" test "$(ctl status "$A" --json | json 'j["state"] + " " + j["meraki_status"]')" = "submitted running"
expect 200 "complete with the right secret" "$A" "$(body "\"$SA\"" complete)"
check "the job is complete" state_is "$A" complete
n=$(wc -l <"$T/state/jobs.log")
expect 200 "a repeat of complete" "$A" "$(body "\"$SA\"" complete)"
expect 200 "failed after complete" "$A" "$(body "\"$SA\"" failed)"
expect 200 "running after complete" "$A" "$(body "\"$SA\"" running)"
check "repeats and late reports change nothing" test "$(wc -l <"$T/state/jobs.log")" = "$n"
check "the final state stays complete" state_is "$A" complete

LBI=$(ctl status "$B" --json | json 'j["leds_blink_id"]')
expect 200 "failed with an error text" "$B" "$(body "\"$SB\"" failed | sed 's/"error":null/"error":"Device went offline"/')"
check "the job failed with Meraki's own error" test "$(ctl status "$B" --json | json 'j["state"] + "/" + j["error"]')" = "failed/Device went offline"

code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$D_URL/healthz")
check "GET /healthz: 200 ($code)" test "$code" = 200
check "GET /metrics counts refused and accepted callbacks" sh -c "curl -sS --max-time 5 '$D_URL/metrics' | grep -q 'blinkhook_callbacks_total{code=\"401\"} 13' && curl -sS --max-time 5 '$D_URL/metrics' | grep -q 'blinkhook_jobs{state=\"complete\"} 1'"
# refused_logged CODE: refusals with CODE logged one by one, plus those the
# daemon counted in its "N more refused callbacks" lines (past 20 in 10 s).
refused_logged() {
	local one summed
	one=$(grep -c "refused: $1" "$T/daemon.log")
	summed=$(sed -n "s/.*more refused callbacks.*[(, ]$1: \([0-9]*\).*/\1/p" "$T/daemon.log" | awk '{s += $1} END {print s + 0}')
	echo $((one + summed))
}
refused_logged_is() { [ "$(refused_logged "$1")" = "$2" ]; }
# The 21st refusal within 10 s is counted, not logged: the summary line comes
# at the end of the 10 s.
wait_until 12 refused_logged_is 401 13
check "each refused callback is logged with the client address (or counted in a summary), never the secret" sh -c "[ $(refused_logged 401) = 13 ] && grep -q 'from 127.0.0.1 refused' '$T/daemon.log' && ! grep -q '$SA' '$T/daemon.log'"

# A flood of refusals: at most 20 lines of them in 10 s, then one line with
# the count of the rest; /metrics counts every one.
m401() { curl -sS --max-time 5 "$D_URL/metrics" | sed -n 's/^blinkhook_callbacks_total{code="401"} //p'; }
m_before=$(m401)
l_before=$(refused_logged 401)
flood_start=$(grep -c 'refused:' "$T/daemon.log")
for i in $(seq 60); do post "$A" "$(body '"flood"' complete)" >/dev/null; done
check "a flood of 60 refusals: /metrics counts each" test "$(m401)" = $((m_before + 60))
check "a flood of 60 refusals: at most 20 a window logged one by one (it may straddle two)" \
	test $(($(grep -c 'refused:' "$T/daemon.log") - flood_start)) -le 40
wait_until 12 refused_logged_is 401 $((l_before + 60))
check "a flood of 60 refusals: the rest counted in a summary line within 10 s ($(grep -c 'more refused callbacks' "$T/daemon.log") lines)" \
	refused_logged_is 401 $((l_before + 60))

# A simulator that sends the wrong secret: every delivery is refused.
sim_fault '{"kind":"wrong_secret"}'
C=$(ctl blink Q2AA-BBBB-EEEE --duration 5)
wait_until 15 sh -c "curl -sS '$SIM_URL/_sim/callbacks' | python3 -c 'import json,sys; a=[c for c in json.load(sys.stdin) if c[\"http_status\"]==401]; sys.exit(0 if len(a) >= 3 else 1)'"
check "Meraki's callbacks with a wrong secret are refused 401 and the job stays submitted" state_is "$C" submitted

# The secret in a configured header, with and without "Bearer ".
stop_daemon
sed -i "s|^\[callback\]|[callback]\nsecret_header = X-Blink-Secret|" "$T/bh.conf"
start_daemon
LBI=$(ctl status "$C" --json | json 'j["leds_blink_id"]')
SC=$(secret_of "$C")
expect 401 "a wrong secret in the configured header" "$C" '{"message":{"status":"running"}}' -H "X-Blink-Secret: Bearer nope"
expect 200 "the secret in the configured header with Bearer" "$C" "{\"message\":{\"status\":\"running\",\"ledsBlinkId\":\"$LBI\"}}" -H "X-Blink-Secret: Bearer $SC"
expect 200 "the secret in the configured header without Bearer" "$C" "{\"message\":{\"status\":\"complete\",\"ledsBlinkId\":\"$LBI\"}}" -H "X-Blink-Secret: $SC"
check "the header's secret completed the job" state_is "$C" complete
