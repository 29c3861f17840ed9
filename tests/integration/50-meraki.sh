#!/usr/bin/env bash
# The Meraki client under the API's rules: each fault the simulator can inject,
# through the real daemon, ends the way the table in docs/meraki-api.md says.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0.5 --blink-time 0.3
write_config "[meraki] max_attempts = 3" "[callback] wait = 1s" "[callback] expire = 25s"
sed -i 's/^min_interval = .*/min_interval = 0.5s/; s/^request_timeout = .*/request_timeout = 2s/' "$T/bh.conf"
start_daemon

# Each scenario has its own serial, so that its fault hits only its job.
fault() { sim_fault "$1"; }
fault '{"kind":"status","status":500,"count":2,"serial":"Q2AA-0000-0500"}'
fault '{"kind":"status","status":503,"count":5,"serial":"Q2AA-0000-0503","message":"Service unavailable"}'
fault '{"kind":"notfound","serial":"Q2AA-0000-0404"}'
fault '{"kind":"status","status":400,"serial":"Q2AA-0000-0400","message":"Duration must be an integer"}'
fault '{"kind":"429","retry_after":2,"serial":"Q2AA-0000-0429"}'
fault '{"kind":"429","serial":"Q2AA-0000-1429"}'
fault '{"kind":"hang","seconds":4,"serial":"Q2AA-0000-HANG"}'
fault '{"kind":"badbody","serial":"Q2AA-0000-BODY"}'
fault '{"kind":"redirect","status":307,"to":"main","serial":"Q2AA-0000-0307"}'
fault '{"kind":"redirect","status":308,"to":"foreign","serial":"Q2AA-0000-FRGN"}'
fault '{"kind":"failed","error":"Device is offline","serial":"Q2AA-0000-FAIL"}'
fault '{"kind":"lost_callback","serial":"Q2AA-0000-LOST"}'
fault '{"kind":"repeat_callback","times":3,"serial":"Q2AA-0000-REPT"}'
fault '{"kind":"progress","serial":"Q2AA-0000-PROG"}'
fault '{"kind":"never_final","serial":"Q2AA-0000-NEVR"}'

declare -A J
for s in 0500 0503 0404 0400 0429 1429 HANG BODY 0307 FRGN FAIL LOST REPT PROG NEVR; do
	J[$s]=$(ctl blink "Q2AA-0000-$s" --duration 1)
done

final_of() { ctl status "${J[$1]}" --json | json 'j["state"]'; }
is_final() { case "$(final_of "$1")" in complete | failed | expired) return 0 ;; esac; return 1; }
all_final() { local s; for s in "${!J[@]}"; do is_final "$s" || return 1; done; }
wait_until 90 all_final || diag "not all jobs final: $(ctl jobs)"
field() { ctl status "${J[$1]}" --json | json "$2"; }

check "two 500s, then the blink goes through: complete after 3 attempts" \
	test "$(field 0500 'j["state"], j["attempts"]')" = "complete 3"
check "503 on every attempt: failed after max_attempts with the API's text ($(field 0503 'j["error"]'))" \
	test "$(field 0503 'j["state"], j["attempts"], "Service unavailable" in j["error"], "3 attempts" in j["error"]')" = "failed 3 True True"
check "404: failed at once with Meraki's own message" \
	test "$(field 0404 'j["state"], j["attempts"], j["error"]')" = "failed 1 Device not found"
check "400: failed at once with the API's errors text" \
	test "$(field 0400 'j["state"], j["error"]')" = "failed Duration must be an integer"
check "429 with Retry-After: complete" test "$(final_of 0429)" = complete
check "429 without Retry-After: complete after back-off" test "$(final_of 1429)" = complete
check "a hanging API: timed out, retried, complete on attempt 2" test "$(field HANG 'j["state"], j["attempts"]')" = "complete 2"
check "a 201 with a broken body: retried with the same job, complete" test "$(field BODY 'j["state"], j["attempts"]')" = "complete 2"
check "a 307 redirect on the same host: followed with the key, complete" test "$(final_of 0307)" = complete
check "a failed blink: failed with the callback's error text" \
	test "$(field FAIL 'j["state"], j["error"]')" = "failed Device is offline"
check "a lost callback: complete by polling" test "$(final_of LOST)" = complete
check "the polled final status is recorded with its source" \
	sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' log --json | grep '\"${J[LOST]}\"' | grep -q '\"event\":\"complete\".*\"source\":\"poll\"'"
check "a repeated callback: complete, recorded once" \
	test "$(ctl log --json | grep -c "\"id\":\"${J[REPT]}\",\"event\":\"complete\"")" = 1
check "progress callbacks, then complete" test "$(final_of PROG)" = complete
check "progress statuses are in the job log" \
	sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' log --json | grep '\"${J[PROG]}\"' | grep -q '\"meraki_status\":\"running\"'"
check "a job that never becomes final: expired" test "$(field NEVR 'j["state"], j["error"]')" = "expired no final status within 25s"

reqs=$(sim_get requests)
check "no blink request went faster than min_interval (the simulator saw none too fast)" python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert not [x for x in r if x["too_fast"]], [x for x in r if x["too_fast"]]
' "$reqs"
check "after the 429 with Retry-After: 2, nothing was sent for 2 s" python3 -c '
import json, sys
r = [x for x in json.loads(sys.argv[1]) if x["method"] == "POST" and x["server"] == "main"]
i = next(i for i, x in enumerate(r) if x["status"] == 429 and x["path"].endswith("Q2AA-0000-0429/liveTools/leds/blink"))
nxt = r[i + 1]
assert nxt["t"] - r[i]["t"] >= 1.95, (nxt["t"] - r[i]["t"])
' "$reqs"
check "the redirect to a foreign host was not followed: neither the key nor the secret went there" python3 -c '
import json, sys
r = [x for x in json.loads(sys.argv[1]) if x["server"] == "foreign"]
assert not r, r
' "$reqs"
check "the redirect to a foreign host fails the job, naming it ($(field FRGN 'j["error"]'))" \
	test "$(field FRGN 'j["state"], "redirect to another origin, http://127.0.0.2:" in j["error"]')" = "failed True"
check "the key went with the same-host redirect" python3 -c '
import json, sys
r = [x for x in json.loads(sys.argv[1]) if x["server"] == "main" and x["path"].endswith("Q2AA-0000-0307/liveTools/leds/blink")]
assert len(r) == 2 and r[1]["api_key"] == sys.argv[2] and r[1]["method"] == "POST" and r[1]["body"]["duration"] == 1, r
' "$reqs" "$API_KEY"
check "polls use GET on the job's URL" python3 -c '
import json, sys
r = [x for x in json.loads(sys.argv[1]) if x["method"] == "GET" and "/liveTools/leds/blink/" in x["path"]]
assert r and all(x["api_key"] == sys.argv[2] for x in r)
' "$reqs" "$API_KEY"

# 401: every job will fail alike; the log says so loudly, once.
sim_fault '{"kind":"status","status":401,"count":2,"message":"Invalid API key"}'
a=$(ctl blink Q2AA-0000-0401)
b=$(ctl blink Q2AA-0001-0401)
wait_state 15 "$a" failed && wait_state 15 "$b" failed
check "401: both jobs failed with the API's message" test "$(ctl status "$b" --json | json 'j["error"]')" = "Invalid API key"
check "401: logged loudly once" test "$(grep -c 'refused the API key' "$T/daemon.log")" = 1
