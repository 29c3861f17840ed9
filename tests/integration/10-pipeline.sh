#!/usr/bin/env bash
# The whole path: blinkhookctl → spool → daemon → simulator → callback → job log.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0.2 --blink-time 0.3
write_config
start_daemon

ids=()
for s in Q2AA-BBBB-CCC1 Q2AA-BBBB-CCC2 Q2AA-BBBB-CCC3; do
	ids+=("$(ctl blink "$s" --duration 7)")
done
check "blink prints three distinct job ids" test "$(printf '%s\n' "${ids[@]}" | sort -u | grep -cE '^[A-Za-z0-9_-]{1,64}$')" = 3

for id in "${ids[@]}"; do
	check "job $id reaches complete" wait_state 20 "$id" complete
done

st=$(ctl status "${ids[0]}" --json)
check "status --json has every INTERFACE field" python3 -c '
import json, sys, re
j = json.loads(sys.argv[1])
need = ["id","serial","duration","state","leds_blink_id","meraki_status","status_source","attempts","error","created_at","updated_at"]
assert all(k in j for k in need), [k for k in need if k not in j]
assert j["serial"] == "Q2AA-BBBB-CCC1" and j["duration"] == 7 and j["state"] == "complete"
assert isinstance(j["leds_blink_id"], str) and j["meraki_status"] == "complete"
assert j["status_source"] == "callback", j["status_source"]
assert j["attempts"] == 1 and j["error"] is None
rfc = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
assert rfc.match(j["created_at"]) and rfc.match(j["updated_at"])
' "$st"

reqs=$(sim_get requests)
check "the simulator saw three well-formed blink requests" python3 -c '
import json, sys
reqs = [r for r in json.loads(sys.argv[1]) if r["method"] == "POST"]
assert len(reqs) == 3, len(reqs)
for r in reqs:
    b = r["body"]
    assert r["status"] == 201, r
    assert r["auth_header"] == "bearer" and r["api_key"] == sys.argv[2]
    assert r["content_type"].startswith("application/json")
    assert "blinkhook/" in r["user_agent"]
    assert type(b["duration"]) is int and b["duration"] == 7
    assert len(b["callback"]["sharedSecret"]) == 43
assert not any(r["too_fast"] for r in json.loads(sys.argv[1]))
' "$reqs" "$API_KEY" "${ids[@]}"

check "each callback.url is public_url/callbacks/leds-blink/<job id>" python3 -c '
import json, sys
reqs = [r for r in json.loads(sys.argv[1]) if r["method"] == "POST"]
urls = sorted(r["body"]["callback"]["url"] for r in reqs)
want = sorted(sys.argv[2] + "/callbacks/leds-blink/" + i for i in sys.argv[3:])
assert urls == want, (urls, want)
secrets = {r["body"]["callback"]["sharedSecret"] for r in reqs}
assert len(secrets) == 3
' "$reqs" "$D_URL" "${ids[@]}"

check "jobs --json is one array, newest first" python3 -c '
import json, sys
a = json.loads(sys.argv[1])
assert [j["id"] for j in a] == list(reversed(sys.argv[2:])), a
' "$(ctl jobs --json)" "${ids[@]}"

check "jobs (human) lists the three jobs as complete" test "$(ctl jobs | grep -c ' complete ')" = 3

log=$(ctl log --json)
check "the job log holds queued, submitted and complete for every job" python3 -c '
import json, sys
ev = [json.loads(l) for l in sys.argv[1].splitlines()]
for i in sys.argv[2:]:
    kinds = [e["event"] for e in ev if e["id"] == i]
    assert kinds == ["queued", "submitted", "complete"], (i, kinds)
assert all(e["v"] == 1 for e in ev)
sub = [e for e in ev if e["event"] == "submitted"]
assert all(e.get("leds_blink_id") for e in sub)
' "$log" "${ids[@]}"

check "the job log never holds a secret or the API key" sh -c "! grep -q -e '$API_KEY' -e sharedSecret '$T/state/jobs.log'"
check "the spool is empty once jobs are taken" test -z "$(ls "$T/spool/new")"
check "secret.key is mode 0600" test "$(stat -c %a "$T/state/secret.key")" = 600

gap=$(sim_get requests | python3 -c '
import json, sys
t = [r["t"] for r in json.load(sys.stdin) if r["method"] == "POST" and r["status"] == 201]
print(min(b - a for a, b in zip(t, t[1:])))')
check "submissions are paced at min_interval (smallest gap ${gap}s >= 0.2s)" python3 -c "assert $gap >= 0.195"

stop_daemon
check "SIGTERM stops the daemon with exit 0" test "$D_STATUS" = 0
check "blinkhookctl reads the job log while the daemon is down" test "$(job_state "${ids[1]}")" = complete
