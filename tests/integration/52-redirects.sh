#!/usr/bin/env bash
# Redirects from the API: within base_url's origin they are followed (POST
# with its body, the key along); to any other origin (another host, another
# port of the same host, https -> http) they are not: the job fails with the
# target named, and the other listener never sees the API key nor the
# callback secret.  Blink POSTs and status polls alike.
. "$(dirname "$0")/../lib.sh"

# A self-signed certificate for the simulator's https listener on 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$T/tls.key" -out "$T/tls.crt" 2>/dev/null ||
	{ notok "cannot make a test certificate"; exit 1; }
start_sim --min-interval 0 --blink-time 0.3 --other-port-file "$T/sim.other" \
	--tls-port-file "$T/sim.tls" --tls-cert "$T/tls.crt" --tls-key "$T/tls.key"
F_PORT=$(cat "$T/sim.foreign") O_PORT=$(cat "$T/sim.other") S_PORT=$(cat "$T/sim.tls")
write_config "[meraki] max_attempts = 3" "[callback] wait = 1s" "[callback] expire = 60s"
start_daemon

declare -A J
blink() { J[$1]=$(ctl blink "Q2RD-0000-$1" --duration 1); }
field() { ctl status "${J[$1]}" --json | json "$2"; }
final_of() { field "$1" 'j["state"]'; }
is_final() { case "$(final_of "$1")" in complete | failed | expired) return 0 ;; esac; return 1; }
all_final() { local s; for s in "$@"; do is_final "$s" || return 1; done; }
# state_error KEY TEXT: the job's state, attempts, whether its error names
# TEXT and whether it tells what to set.
state_error() {
	ctl status "${J[$1]}" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
e = j.get("error") or ""
print(j["state"], j["attempts"], sys.argv[1] in e, "set [meraki] base_url" in e)' "$2"
}

# Every redirect status, to the same origin under another path, to another
# host and to another port of the same host.
SAME=() FOREIGN=()
for st in 301 302 307 308; do
	sim_fault "{\"kind\":\"redirect\",\"status\":$st,\"to\":\"main\",\"moved\":true,\"serial\":\"Q2RD-0000-S$st\"}"
	sim_fault "{\"kind\":\"redirect\",\"status\":$st,\"to\":\"foreign\",\"serial\":\"Q2RD-0000-F$st\"}"
	sim_fault "{\"kind\":\"redirect\",\"status\":$st,\"to\":\"otherport\",\"serial\":\"Q2RD-0000-P$st\"}"
	SAME+=("S$st") FOREIGN+=("F$st" "P$st")
done
for s in "${SAME[@]}" "${FOREIGN[@]}"; do blink "$s"; done
wait_until 30 all_final "${SAME[@]}" "${FOREIGN[@]}" || diag "not all final: $(ctl jobs)"

for s in "${SAME[@]}"; do
	check "a ${s#S} to the same origin under another path: followed, complete" test "$(final_of "$s")" = complete
done
reqs=$(sim_get requests)
check "each same-origin redirect was followed as a POST with its body and the key" python3 -c '
import json, sys
r = json.loads(sys.argv[1])
for st in (301, 302, 307, 308):
    p = "/moved/api/v1/devices/Q2RD-0000-S%d/liveTools/leds/blink" % st
    x = [x for x in r if x["path"] == p]
    assert len(x) == 1 and x[0]["server"] == "main" and x[0]["method"] == "POST", (st, x)
    assert x[0]["api_key"] == sys.argv[2] and x[0]["body"]["callback"]["sharedSecret"], x
' "$reqs" "$API_KEY"
for s in "${FOREIGN[@]}"; do
	if [ "${s:0:1}" = F ]; then o="http://127.0.0.2:$F_PORT"; w="another host"; else o="http://127.0.0.1:$O_PORT"; w="another port"; fi
	check "a ${s:1} to $w: not followed, the job failed at once naming $o and base_url" \
		test "$(state_error "$s" "$o")" = "failed 1 True True"
done
check "the other host and the other port received nothing at all: no key, no secret" python3 -c '
import json, sys
r = [x for x in json.loads(sys.argv[1]) if x["server"] != "main"]
assert not r, r
' "$reqs"
check "the refused redirect is logged once at error level, with what to do" \
	test "$(grep -c 'error: job .*: HTTP [0-9]* redirect to another origin.*set \[meraki\] base_url' "$T/daemon.log")" = 1

# Status polls: a lost callback makes the daemon ask; the poll is redirected.
sim_fault '{"kind":"lost_callback","serial":"Q2RD-0000-PSAM"}'
sim_fault '{"kind":"lost_callback","serial":"Q2RD-0000-PFRG"}'
sim_fault '{"kind":"lost_callback","serial":"Q2RD-0000-PPRT"}'
sim_fault '{"kind":"poll_redirect","status":308,"to":"main","moved":true,"serial":"Q2RD-0000-PSAM"}'
sim_fault '{"kind":"poll_redirect","status":302,"to":"foreign","serial":"Q2RD-0000-PFRG"}'
sim_fault '{"kind":"poll_redirect","status":307,"to":"otherport","serial":"Q2RD-0000-PPRT"}'
for s in PSAM PFRG PPRT; do blink "$s"; done
polled() { sim_get requests | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert all([x for x in r if x["method"] == "GET" and "Q2RD-0000-%s/" % s in x["path"] and x["status"]] for s in sys.argv[1:])
' PSAM PFRG PPRT; }
wait_until 20 polled || diag "not all polled: $(ctl jobs)"
wait_until 10 all_final PSAM
check "a poll redirected within the origin: followed with the key, complete by the poll" \
	test "$(final_of PSAM)" = complete
reqs=$(sim_get requests)
check "the followed poll was a GET with the key under the new path" python3 -c '
import json, sys
r = [x for x in json.loads(sys.argv[1]) if x["path"].startswith("/moved/api/v1/devices/Q2RD-0000-PSAM/")]
assert len(r) == 1 and r[0]["method"] == "GET" and r[0]["api_key"] == sys.argv[2] and r[0]["status"] == 200, r
' "$reqs" "$API_KEY"
check "polls redirected to another host or port: not followed, logged with the target" \
	sh -c "grep -q 'job ${J[PFRG]}: polling its status failed: HTTP 302 redirect to another origin, http://127.0.0.2:$F_PORT' '$T/daemon.log' &&
		grep -q 'job ${J[PPRT]}: polling its status failed: HTTP 307 redirect to another origin, http://127.0.0.1:$O_PORT' '$T/daemon.log'"
check "the other host and the other port still received nothing" python3 -c '
import json, sys
r = [x for x in json.loads(sys.argv[1]) if x["server"] != "main"]
assert not r, r
' "$reqs"

# https: base_url on the simulator's TLS listener, trusted through ca_file.
stop_daemon
sed -i "s|^base_url = .*|base_url = https://127.0.0.1:$S_PORT/api/v1\nca_file = $T/tls.crt|" "$T/bh.conf"
curl -sS --max-time 5 -X POST "$SIM_URL/_sim/reset" >/dev/null
start_daemon
sim_fault '{"kind":"redirect","status":307,"to":"tls","moved":true,"serial":"Q2RD-0000-TSAM"}'
sim_fault '{"kind":"redirect","status":308,"to":"main","serial":"Q2RD-0000-TDWN"}'
sim_fault '{"kind":"redirect","status":301,"to":"main","serial":"Q2RD-0000-TDW1"}'
for s in TSAM TDWN TDW1; do blink "$s"; done
wait_until 20 all_final TSAM TDWN TDW1 || diag "not all final: $(ctl jobs)"
reqs=$(sim_get requests)
check "https: a redirect within the origin is followed over TLS with the key, complete" python3 -c '
import json, sys
r = [x for x in json.loads(sys.argv[1]) if x["path"] == "/moved/api/v1/devices/Q2RD-0000-TSAM/liveTools/leds/blink"]
assert len(r) == 1 and r[0]["server"] == "tls" and r[0]["api_key"] == sys.argv[2], r
' "$reqs" "$API_KEY"
check "https: ... and the job is complete" test "$(final_of TSAM)" = complete
for s in TDWN TDW1; do
	check "https -> http ($s): not followed, failed naming http://127.0.0.1:$SIM_PORT" \
		test "$(state_error "$s" "http://127.0.0.1:$SIM_PORT")" = "failed 1 True True"
done
check "https -> http: the plain-http listener received no API request at all" python3 -c '
import json, sys
r = [x for x in json.loads(sys.argv[1]) if x["server"] != "tls"]
assert not r, r
' "$reqs"

check "no redirect ever became \"Meraki refused the API key\"" sh -c "! grep -q 'refused the API key' '$T/daemon.log'"
check "no job's error says the key was refused" sh -c "! '$BLINKHOOKCTL' -c '$T/bh.conf' jobs --json 2>/dev/null | grep -qi 'refused'"
