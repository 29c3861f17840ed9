#!/usr/bin/env bash
# A ledsBlinkId the API sends as a JSON number, beyond 64 bits: recorded as
# its exact decimal text, matched by the callback that carries it as a
# number, and asked for by that text when the daemon polls.
. "$(dirname "$0")/../lib.sh"

BIG=98765432109876543210 # above UINT64_MAX: 64 bits would make it 9223372036854775807
start_sim --min-interval 0 --blink-time 0.3 --numeric-ids --first-blink-id "$BIG"
write_config "[callback] wait = 1s"
start_daemon

sim_fault '{"kind":"lost_callback","serial":"Q2ID-0000-LOST"}'
a=$(ctl blink Q2ID-0000-CALL --duration 1)
b=$(ctl blink Q2ID-0000-LOST --duration 1)
wait_state 20 "$a" complete
wait_state 20 "$b" complete

check "the 201 had the id as a JSON number" sh -c "curl -sS --max-time 5 '$SIM_URL/api/v1/devices/Q2ID-0000-CALL/liveTools/leds/blink/$BIG' -H 'Authorization: Bearer $API_KEY' | grep -q '\"ledsBlinkId\": $BIG,'"
check "the id is recorded exactly ($(ctl status "$a" --json | json 'j["leds_blink_id"]'))" \
	test "$(ctl status "$a" --json | json 'j["leds_blink_id"]')" = "$BIG"
check "the callback with the numeric id completed the job" \
	sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' log --json | grep '\"$a\"' | grep -q '\"event\":\"complete\".*\"source\":\"callback\"'"
check "the next id too ($(ctl status "$b" --json | json 'j["leds_blink_id"]'))" \
	test "$(ctl status "$b" --json | json 'j["leds_blink_id"]')" = "98765432109876543211"
check "a lost callback: the poll asked for the exact id and completed the job" python3 -c '
import json, sys
r = [x for x in json.loads(sys.argv[1]) if x["method"] == "GET"]
assert [x for x in r if x["path"].endswith("/Q2ID-0000-LOST/liveTools/leds/blink/98765432109876543211") and x["status"] == 200], r
assert not [x for x in r if x["status"] != 200], r
' "$(sim_get requests)"
check "... recorded as found by the poll" \
	sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' log --json | grep '\"$b\"' | grep -q '\"event\":\"complete\".*\"source\":\"poll\"'"
check "no callback was refused" sh -c "! grep -q 'refused\|ledsBlinkId is not\|belongs to another' '$T/daemon.log'"
