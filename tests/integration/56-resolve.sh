#!/usr/bin/env bash
# Devices named by name or MAC: the daemon resolves them through the
# simulator's inventory (GET /organizations, GET /organizations/{id}/devices
# with the API's filters and Link-header pages) before it blinks anything.
. "$(dirname "$0")/../lib.sh"

# 60 devices whose names contain "floor" (two pages of the daemon's 50),
# the one named exactly "floor" last.
inventory() {
	python3 - "$@" <<'PY'
import json, sys
devs = [
    {"name": "edge-sw-1", "serial": "Q2AA-0001-0001", "mac": "00:18:0a:00:00:01"},
    {"name": "edge-sw-1a", "serial": "Q2AA-0001-0002", "mac": "00:18:0a:00:00:02"},
    {"name": "core-sw", "serial": "Q2AA-0001-0003", "mac": "00:18:0a:00:00:03"},
    {"name": "lobby-ap", "serial": "Q2AA-0002-0001", "mac": "00:18:0a:00:01:01"},
    {"name": "lobby-ap", "serial": "Q2AA-0002-0002", "mac": "00:18:0a:00:01:02"},
    {"name": "rack-1-sw", "serial": "Q2AA-0003-0001", "mac": "00:18:0a:00:02:01"},
    {"name": "rack-2-sw", "serial": "Q2AA-0003-0002", "mac": "00:18:0a:00:02:02"},
]
devs += [{"name": "floor-%02d" % i, "serial": "Q2FL-%04d-0000" % i, "mac": "00:18:0b:00:00:%02x" % i}
         for i in range(59)]
devs.append({"name": "floor", "serial": "Q2FL-9999-0000", "mac": "00:18:0b:00:00:ff"})
orgs = [{"id": "549236", "name": "Simulated Organization", "devices": devs}]
if sys.argv[1:] == ["several"]:
    orgs.append({"id": "1234567", "name": "Second Org", "devices": []})
if sys.argv[1:] == ["many"]:  # as a managed service provider's key sees them
    orgs += [{"id": "%d" % (7000000 + i), "name": "Customer %03d" % i, "devices": []} for i in range(299)]
print(json.dumps({"organizations": orgs}))
PY
}
inventory >"$T/inventory.json"
start_sim --min-interval 0 --blink-time 0.2 --inventory "$T/inventory.json"
write_config "[meraki] max_attempts = 4" "[callback] wait = 1s" "[callback] expire = 60s"
start_daemon

# A request as a producer writes it: into tmp/, then renamed into new/.
enqueue() {
	printf '%s' "$2" >"$T/spool/tmp/$1.json" && mv "$T/spool/tmp/$1.json" "$T/spool/new/$1.json"
}
field() { ctl status "$1" --json 2>/dev/null | json "$2"; }
is_final() { case "$(field "$1" 'j["state"]')" in complete | failed | expired) return 0 ;; esac; return 1; }
all_final() { local i; for i in "$@"; do is_final "$i" || return 1; done; }
blinked() { sim_get jobs | json '" ".join(sorted(x["serial"] for x in j))'; }

enqueue by-mac '{"id":"by-mac","mac":"0018.0A00.0003","duration":1}'
wait_until 30 all_final by-mac || diag "by-mac: $(ctl status by-mac --json)"
# The organization is known now: the next look-up is a name's.
sim_fault '{"kind":"lookup_429","retry_after":1}'
enqueue by-name '{"id":"by-name","name":"edge-sw-1","duration":1}'
wait_until 30 all_final by-name || diag "by-name: $(ctl status by-name --json)"
enqueue ambiguous '{"id":"ambiguous","name":"lobby-ap","duration":1}'
enqueue partial '{"id":"partial","name":"rack","duration":1}'
enqueue unknown '{"id":"unknown","name":"no-such-switch","duration":1}'
enqueue unknown-mac '{"id":"unknown-mac","mac":"aa:bb:cc:dd:ee:ff","duration":1}'
enqueue paged '{"id":"paged","name":"floor","duration":1}'
wait_until 60 all_final by-mac ambiguous partial unknown unknown-mac paged || diag "not all final: $(ctl jobs)"

check "--name: the exact name among the API's partial matches resolves, and the blink completes" \
	test "$(field by-name 'j["state"], j["serial"], j["name"], j["mac"]')" = "complete Q2AA-0001-0001 edge-sw-1 None"
reqs=$(sim_get requests)
check "a name look-up answered 429 is retried after its Retry-After, and completes" python3 -c '
import json, sys
r = [x for x in json.loads(sys.argv[1]) if "/devices?" in x["path"] and "name=edge-sw-1" in x["path"]]
assert r[0]["status"] == 429 and r[1]["status"] == 200, [(x["path"], x["status"]) for x in r[:2]]
assert r[1]["t"] - r[0]["t"] >= 0.95, r[1]["t"] - r[0]["t"]
assert "name=edge-sw-1" in r[1]["path"] and r[1]["api_key"], r[1]
' "$reqs"
check "the 429 did not count as an attempt (one attempt: the blink)" test "$(field by-name 'j["attempts"]')" = 1
check "--mac in another notation: normalized, resolved, complete" \
	test "$(field by-mac 'j["state"], j["serial"], j["mac"], j["name"]')" = "complete Q2AA-0001-0003 00:18:0a:00:00:03 None"
check "an ambiguous name fails naming the candidates ($(field ambiguous 'j["error"]'))" \
	test "$(field ambiguous 'j["state"], j["serial"], j["error"]')" = \
	"failed None name 'lobby-ap' matches 2 devices: lobby-ap (Q2AA-0002-0001), lobby-ap (Q2AA-0002-0002)"
check "a name that only partly matches several fails naming them" \
	test "$(field partial 'j["error"]')" = "name 'rack' matches 2 devices: rack-1-sw (Q2AA-0003-0001), rack-2-sw (Q2AA-0003-0002)"
check "an unknown name fails: no device named it" \
	test "$(field unknown 'j["state"], j["error"]')" = "failed no device named 'no-such-switch'"
check "an unknown MAC fails: no device with it" \
	test "$(field unknown-mac 'j["state"], j["error"]')" = "failed no device with MAC aa:bb:cc:dd:ee:ff"
check "pagination: the exact name on the second page resolves, and completes" \
	test "$(field paged 'j["state"], j["serial"]')" = "complete Q2FL-9999-0000"
check "pagination: two pages asked, the second by the Link header's startingAfter" python3 -c '
import json, sys
r = [x["path"] for x in json.loads(sys.argv[1]) if "/devices?" in x["path"] and "name=floor" in x["path"]]
assert len(r) == 2 and "startingAfter=" not in r[0] and "startingAfter=Q2FL-0049-0000" in r[1], r
' "$reqs"
check "nothing was blinked for the jobs that failed (the simulator saw only the resolved serials)" \
	test "$(blinked)" = "Q2AA-0001-0001 Q2AA-0001-0003 Q2FL-9999-0000"
check "the organization was asked for once, and cached" \
	test "$(python3 -c 'import json,sys; print(sum(1 for x in json.loads(sys.argv[1]) if x["path"].startswith("/api/v1/organizations?") or x["path"] == "/api/v1/organizations"))' "$reqs")" = 1
check "the resolved serial is in the job log" \
	sh -c "grep '\"id\":\"by-name\"' '$T/state/jobs.log' | grep -q '\"event\":\"resolved\",\"serial\":\"Q2AA-0001-0001\"'"
check "log: the queued event names the device by name, the resolved one by the serial found, with no duration" \
	sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' log >'$T/log.txt' &&
		grep ' by-name .* queued .*name=\"edge-sw-1\"' '$T/log.txt' | grep -q 'duration=' &&
		grep ' by-name .* resolved .*serial=Q2AA-0001-0001' '$T/log.txt' | grep -vq 'duration='"
check "status --json: serial null until resolved, name and mac as given" \
	test "$(field unknown 'j["serial"], j["name"], j["mac"]')" = "None no-such-switch None"
check "the jobs table's DEVICE column marks what a job never resolved was asked for" \
	sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' jobs >'$T/jobs.txt' && head -1 '$T/jobs.txt' | grep -q '^ID  *DEVICE  *DUR ' &&
		grep -Eq '^unknown +name:no-such-switch +1s +failed ' '$T/jobs.txt' &&
		grep -Eq '^unknown-mac +mac:aa:bb:cc:dd:ee:ff +1s +failed ' '$T/jobs.txt' &&
		grep -Eq '^by-name +Q2AA-0001-0001 +1s +complete ' '$T/jobs.txt'"
ctl status by-name >"$T/status.txt"
check "status of a job by name: what was asked for (Name:) and the serial it resolved to" \
	sh -c "grep -qx 'Name:           edge-sw-1' '$T/status.txt' && grep -qx 'Serial:         Q2AA-0001-0001' '$T/status.txt' && ! grep -q '^MAC:' '$T/status.txt'"
ctl status by-mac >"$T/status.txt"
check "status of a job by MAC: the MAC: line and the serial" \
	sh -c "grep -qx 'MAC:            00:18:0a:00:00:03' '$T/status.txt' && grep -qx 'Serial:         Q2AA-0001-0003' '$T/status.txt' && ! grep -q '^Name:' '$T/status.txt'"
ctl status unknown >"$T/status.txt"
check "status of a job never resolved: Name: and Serial: -" \
	sh -c "grep -qx 'Name:           no-such-switch' '$T/status.txt' && grep -qx 'Serial:         -' '$T/status.txt'"

# A next page on another origin is not followed: the key stays home.
sim_fault '{"kind":"lookup_foreign_link"}'
enqueue foreign '{"id":"foreign","name":"core-sw","duration":1}'
wait_until 20 all_final foreign
check "a Link to another origin is not followed: the job fails naming it ($(field foreign 'j["error"]'))" \
	test "$(field foreign 'j["state"], "another origin" in j["error"], "127.0.0.2" in j["error"]')" = "failed True True"
check "... and nothing went to that origin" test "$(sim_get requests | json 'sum(1 for x in j if x["server"] == "foreign")')" = 0

# Several organizations and no organization_id: such jobs fail clearly.
inventory several >"$T/inventory2.json"
curl -sS --max-time 5 -X POST -H 'Content-Type: application/json' --data-binary @"$T/inventory2.json" \
	"$SIM_URL/_sim/inventory" >/dev/null
kill -HUP "$D_PID" # a reload forgets the organization found
sleep 0.5
enqueue several '{"id":"several","name":"core-sw","duration":1}'
wait_until 20 all_final several
check "several organizations without organization_id: failed, saying how to choose ($(field several 'j["error"]'))" \
	sh -c "test \"\$(ctl() { '$BLINKHOOKCTL' -c '$T/bh.conf' \"\$@\"; }; ctl status several --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j[\"state\"], \"2 organizations\" in j[\"error\"], \"organization_id\" in j[\"error\"])')\" = 'failed True True'"
# 300 organizations (a list larger than a blink answer's cap): one page of
# them tells several from one, and the job fails saying how to choose.
inventory many >"$T/inventory3.json"
curl -sS --max-time 5 -X POST -H 'Content-Type: application/json' --data-binary @"$T/inventory3.json" \
	"$SIM_URL/_sim/inventory" >/dev/null
kill -HUP "$D_PID"
sleep 0.5
enqueue many '{"id":"many","name":"core-sw","duration":1}'
wait_until 20 all_final many
check "300 organizations without organization_id: failed at once, naming five and how to choose ($(field many 'j["error"]'))" \
	test "$(field many 'j["state"], "more than 6 organizations" in j["error"], "7000003" in j["error"] and "7000004" not in j["error"], "organization_id" in j["error"], j["attempts"] <= 1')" = "failed True True True True"
check "... asking for one small page of organizations" \
	test "$(sim_get requests | json '[x["path"] for x in j if x["path"].startswith("/api/v1/organizations?")][-1]')" = "/api/v1/organizations?perPage=6"
# ... and with organization_id set, the same name resolves.
sed -i 's/^\[meraki\]$/[meraki]\norganization_id = 549236/' "$T/bh.conf"
kill -HUP "$D_PID"
sleep 0.5
enqueue chosen '{"id":"chosen","name":"core-sw","duration":1}'
wait_until 30 all_final chosen
check "with [meraki] organization_id set: resolved in that organization, complete" \
	test "$(field chosen 'j["state"], j["serial"]')" = "complete Q2AA-0001-0003"
check "the daemon is still serving" curl -fsS --max-time 2 -o /dev/null "$D_URL/healthz"
metrics=$(curl -fsS --max-time 2 "$D_URL/metrics")
check "/metrics counts the look-ups by outcome (the 429 too)" python3 -c '
import re, sys
m = dict(re.findall(r"^blinkhook_lookups_total\{outcome=\"(\w+)\"\} (\d+)$", sys.argv[1], re.M))
assert int(m["ok"]) >= 9 and int(m["rate_limited"]) == 1, m
' "$metrics"

# A restart does not look a resolved job up again.
n_before=$(sim_get requests | json 'sum(1 for x in j if "/devices?" in x["path"])')
stop_daemon
start_daemon
sleep 1
check "after a restart nothing is looked up again" \
	test "$(sim_get requests | json 'sum(1 for x in j if "/devices?" in x["path"])')" = "$n_before"
check "and the jobs keep their names and serials" test "$(field paged 'j["serial"], j["name"]')" = "Q2FL-9999-0000 floor"
exit $((FAILS > 0))
