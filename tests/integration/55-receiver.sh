#!/usr/bin/env bash
# A Dashboard-managed webhook receiver (http_server_id): the blink names the
# receiver, Meraki calls its one URL with its one secret, and the daemon finds
# the job by ledsBlinkId.
. "$(dirname "$0")/../lib.sh"

D_PORT=$(free_port)
RSECRET="receiver secret with spaces 42"
start_sim --min-interval 0 --blink-time 0.3 \
	--http-server "aHR0cHM6Ly9leGFtcGxl=http://127.0.0.1:$D_PORT/callbacks/leds-blink=$RSECRET"
printf '%s\n' "$RSECRET" >"$T/receiver-secret"
chmod 600 "$T/receiver-secret"
write_config "[callback] http_server_id = aHR0cHM6Ly9leGFtcGxl" "[callback] payload_template_id = wpt_00005" \
	"[callback] shared_secret_file = $T/receiver-secret"
start_daemon

a=$(ctl blink Q2AA-BBBB-RCV1 --duration 5)
b=$(ctl blink Q2AA-BBBB-RCV2 --duration 6)
check "a job completes through the receiver's callback" wait_state 15 "$a" complete
check "a second one too (found by its own ledsBlinkId)" wait_state 15 "$b" complete
check "the blink named the receiver and the template, with no url or secret" python3 -c '
import json, sys, urllib.request
reqs = [r for r in json.load(urllib.request.urlopen(sys.argv[1] + "/_sim/requests")) if r["method"] == "POST"]
assert len(reqs) == 2
for r in reqs:
    cb = r["body"]["callback"]
    assert cb == {"httpServer": {"id": "aHR0cHM6Ly9leGFtcGxl"}, "payloadTemplate": {"id": "wpt_00005"}}, cb
' "$SIM_URL"
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
	--data "{\"sharedSecret\":\"wrong\",\"message\":{\"ledsBlinkId\":\"1\",\"status\":\"complete\"}}" "$D_URL/callbacks/leds-blink")
check "the receiver URL with a wrong secret: 401 ($code)" test "$code" = 401
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
	--data "{\"sharedSecret\":\"$RSECRET\",\"message\":{\"ledsBlinkId\":\"999999\",\"status\":\"complete\"}}" "$D_URL/callbacks/leds-blink")
check "the receiver URL with an unknown ledsBlinkId: 404 ($code)" test "$code" = 404
out=$(MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh.conf" --check-config 2>&1)
check "--check-config accepts the receiver mode ($out)" test $? = 0
