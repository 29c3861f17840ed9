#!/usr/bin/env bash
# Callbacks that cannot be verified: refused 401 and believed in nothing, but
# they prompt a status poll (within its limits), so that a job finishes within
# seconds whatever Meraki does with the secret.  Also the alert-shaped body,
# the secret in a header, and [callback] unverified = ignore (by reload).
. "$(dirname "$0")/../lib.sh"

# Schema-exact callbacks: no secret anywhere.  Meraki retries a refused
# delivery; so does the simulator, five times (0.5 s, doubling).
start_sim --min-interval 0 --blink-time 0.3 --callback-secret none --callback-retries 5 --callback-retry-delay 0.5
write_config "[callback] wait = 5min" "[callback] unverified = poll" "[callback] secret_header = Authorization"
start_daemon

lbi_of() { ctl status "$1" --json | json 'j["leds_blink_id"]'; }
field() { ctl status "$1" --json | json "$2"; }
metric() { curl -sS --max-time 5 "$D_URL/metrics" | sed -n "s/^$1 //p"; }
# gets LBI: the status requests the simulator saw for one Meraki job.
gets() {
	sim_get requests | python3 -c '
import json, sys
print(sum(1 for r in json.load(sys.stdin) if r["method"] == "GET" and r["path"].endswith("/" + sys.argv[1])))' "$1"
}
# deliveries LBI: the simulator's callback attempts for one job, as
# "http_status/secret_in/shape" words.
deliveries() {
	sim_get callbacks | python3 -c '
import json, sys
print(" ".join("%s/%s/%s" % (c["http_status"], c["secret_in"], c["shape"]) for c in json.load(sys.stdin) if c["ledsBlinkId"] == sys.argv[1]))' "$1"
}

# 1. Three jobs, callbacks without a secret: complete within seconds, each by
# a prompted poll, although wait is 5 minutes.
ids=()
for s in Q2AA-UNVR-0001 Q2AA-UNVR-0002 Q2AA-UNVR-0003; do ids+=("$(ctl blink "$s" --duration 5)"); done
for id in "${ids[@]}"; do
	check "job $id is complete within seconds without a verified callback" wait_state 8 "$id" complete
	check "job $id: status_source is \"prompted poll\" ($(field "$id" 'j["status_source"]'))" \
		test "$(field "$id" 'j["status_source"], j["meraki_status"]')" = "prompted poll complete"
	lbi=$(lbi_of "$id")
	d=$(deliveries "$lbi")
	check "job $id: every delivery was answered 401 ($d)" sh -c "[ -n '$d' ] && ! echo '$d' | tr ' ' '\n' | grep -qv '^401/none/callback$'"
	check "job $id: Meraki was asked for its status ($(gets "$lbi") requests)" test "$(gets "$lbi")" -ge 1
done
check "the refusals say what arrived: the shape and no secret" \
	grep -q 'refused: 401, missing or wrong secret (shape: callback; secret in: none)' "$T/daemon.log"
check "/metrics counts the prompted polls ($(metric blinkhook_prompted_polls_total))" test "$(metric blinkhook_prompted_polls_total)" -ge 3
out=$(ctl status "${ids[0]}")
check "blinkhookctl status says how the status was learned" grep -q '^Learned by: *prompted poll$' <<<"$out"

# 2. A forged "failed" with a wrong secret for a job Meraki reports complete:
# refused, and the poll it prompts finishes the job as Meraki says.
sim_fault '{"kind":"lost_callback"}'
F=$(ctl blink Q2AA-UNVR-0004 --duration 5)
wait_state 10 "$F" submitted
FLBI=$(lbi_of "$F")
wait_until 5 sh -c "curl -sS '$SIM_URL/_sim/jobs' | grep -q '\"ledsBlinkId\": \"$FLBI\", [^}]*\"status\": \"complete\"'"
sleep 1 # out of the global window of part 1's prompts
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data \
	"{\"sharedSecret\":\"forged\",\"message\":{\"ledsBlinkId\":\"$FLBI\",\"status\":\"failed\",\"error\":\"forged\"}}" \
	"$D_URL/callbacks/leds-blink/$F")
check "a forged failed callback with a wrong secret: 401 ($code)" test "$code" = 401
check "the job it forged ends complete, as Meraki reports" wait_state 5 "$F" complete
check "...learned by the poll the forgery prompted, without its error" \
	test "$(field "$F" 'j["status_source"], j["error"]')" = "prompted poll None"
check "the refusal names the secret's source (the body field), never its value" sh -c \
	"grep -q 'job $F from 127.0.0.1 refused: 401.*secret in: body field' '$T/daemon.log' && ! grep -q forged '$T/daemon.log'"
code=$(curl -sS --max-time 5 -o "$T/r1" -w '%{http_code}' -H 'Content-Type: application/json' --data '{"message":{"status":"failed"}}' \
	"$D_URL/callbacks/leds-blink/nosuchjob")
check "the same for a job that does not exist: the same 401, the same body" sh -c \
	"[ '$code' = 401 ] && curl -sS --max-time 5 -o '$T/r2' -H 'Content-Type: application/json' --data '{\"message\":{\"status\":\"failed\"}}' '$D_URL/callbacks/leds-blink/$F' && cmp -s '$T/r1' '$T/r2'"

# 3. A flood of unauthenticated callbacks across a dozen submitted jobs that
# Meraki reports "running" (and whose own callbacks never come): no more polls
# than the limits allow (one per job per 10 s, two per second in all), and no
# job moves but by what those polls learn.
sim_fault '{"kind":"never_final","silent":true,"count":12}'
flood=()
for i in $(seq -w 1 12); do flood+=("$(ctl blink "Q2AA-FLOD-00$i" --duration 5)"); done
for id in "${flood[@]}"; do wait_state 10 "$id" submitted; done
sleep 1 # the simulator's jobs are running by now
curl -sS --max-time 5 -X POST "$SIM_URL/_sim/reset" >/dev/null
p_before=$(metric blinkhook_prompted_polls_total)
t0=$(date +%s.%N)
flood_out=$(python3 - "$D_URL" "${flood[@]}" <<-'EOF'
	import http.client, json, sys, time, urllib.parse
	url = urllib.parse.urlsplit(sys.argv[1])
	ids = sys.argv[2:]
	codes = {}
	c = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
	for n in range(360):
	    status = ("complete", "failed")[n % 2]
	    body = {"message": {"status": status}}
	    if n % 3 == 1:
	        body["sharedSecret"] = "wrong"
	    c.request("POST", "/callbacks/leds-blink/" + ids[n % len(ids)], json.dumps(body),
	              {"Content-Type": "application/json"})
	    r = c.getresponse()
	    r.read()
	    codes[r.status] = codes.get(r.status, 0) + 1
	    time.sleep(0.005)  # spread over a few seconds
	print(" ".join("%d:%d" % kv for kv in sorted(codes.items())))
	EOF
)
sleep 1 # polls the flood started come back
t1=$(date +%s.%N)
n_gets=$(sim_get requests | python3 -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin) if r["method"] == "GET"))')
p_after=$(metric blinkhook_prompted_polls_total)
limit=$(python3 -c "import math; d = $t1 - $t0; print(min(12 * (math.floor(d / 10) + 1), 2 * (math.floor(d) + 1)))")
check "a flood of 360 unauthenticated callbacks is answered 401 each ($flood_out)" test "$flood_out" = "401:360"
check "the flood prompted at most $limit polls in $(python3 -c "print(round($t1 - $t0, 1))")s ($n_gets GETs)" \
	test "$n_gets" -le "$limit"
per_job=$(sim_get requests | python3 -c '
import collections, json, sys
print(max(collections.Counter(r["path"] for r in json.load(sys.stdin) if r["method"] == "GET").values(), default=0))')
check "no job was asked about more than once in the flood's $(python3 -c "print(round($t1 - $t0, 1))")s (at most $per_job)" \
	python3 -c "import sys; sys.exit(0 if $per_job <= 1 or $t1 - $t0 >= 10 else 1)"
check "the flood prompted some polls, each counted ($n_gets GETs, $((p_after - p_before)) counted)" \
	sh -c "[ $n_gets -ge 2 ] && [ $((p_after - p_before)) = $n_gets ]"
check "the limits dropped the rest, counted" test "$(curl -sS --max-time 5 "$D_URL/metrics" |
	sed -n 's/^blinkhook_prompted_polls_dropped_total{reason="[a-z_]*"} //p' | awk '{s += $1} END {print s}')" -ge 300
# The flood's first dozen callbacks, one for each job, come within a second:
# two polls may go, the rest are dropped for the overall rate.
rate=$(metric 'blinkhook_prompted_polls_dropped_total{reason="rate"}')
check "/metrics counts the prompted polls the limits dropped, by limit: the rate dropped some ($rate)" \
	test "${rate:-0}" -ge 1
all_submitted() {
	local id
	for id in "${flood[@]}"; do state_is "$id" submitted || return 1; done
}
check "no job moved: all 12 still submitted" all_submitted
# What the polls learned, and nothing else: "running" by a prompted poll, or
# still the 201's "new".
learned=$(for id in "${flood[@]}"; do field "$id" 'j["meraki_status"], j["status_source"]'; done | sort | uniq -c | awk '{$1 = $1; print}')
check "each job holds what a prompted poll learned or the 201's status ($(echo $learned))" sh -c \
	"! echo '$learned' | grep -vqE '^[0-9]+ (running prompted poll|new api)$' && echo '$learned' | grep -q '^$n_gets running prompted poll$'"
check "no flooded job has a final record in the job log" sh -c \
	"! grep -E '\"id\":\"($(IFS='|'; echo "${flood[*]}"))\",\"event\":\"(complete|failed)\"' '$T/state/jobs.log'"

# 4. The alert shape with the right secret in the body, then Meraki's callback
# shape with the secret in the configured header: accepted at first delivery.
curl -sS --max-time 5 -X POST -d '{"callback_secret":"body","callback_shape":"alert"}' "$SIM_URL/_sim/mode" >/dev/null
A=$(ctl blink Q2AA-UNVR-ALRT --duration 5)
check "an alert-shaped callback with the right secret completes the job" wait_state 8 "$A" complete
d=$(deliveries "$(lbi_of "$A")")
check "...at the first delivery ($d), by the callback" sh -c "[ '$d' = 200/body/alert ] && [ '$(field "$A" 'j["status_source"]')' = callback ]"
curl -sS --max-time 5 -X POST -d '{"callback_secret":"header","callback_shape":"callback"}' "$SIM_URL/_sim/mode" >/dev/null
H=$(ctl blink Q2AA-UNVR-HEAD --duration 5)
check "a callback with the secret in the configured header completes the job" wait_state 8 "$H" complete
d=$(deliveries "$(lbi_of "$H")")
check "...at the first delivery ($d), by the callback" sh -c "[ '$d' = 200/header/callback ] && [ '$(field "$H" 'j["status_source"]')' = callback ]"

# 5. unverified = ignore, applied by a reload: no poll is prompted.
sed -i 's/^unverified = poll$/unverified = ignore/' "$T/bh.conf"
kill -HUP "$D_PID"
wait_until 5 grep -q 'reload: configuration from' "$T/daemon.log"
curl -sS --max-time 5 -X POST -d '{"callback_secret":"none"}' "$SIM_URL/_sim/mode" >/dev/null
p_before=$(metric blinkhook_prompted_polls_total)
I=$(ctl blink Q2AA-UNVR-IGNR --duration 5)
wait_state 10 "$I" submitted
ILBI=$(lbi_of "$I")
three_refused() { [ "$(deliveries "$ILBI" | tr ' ' '\n' | grep -c '^401/none/callback$')" -ge 3 ]; }
wait_until 10 three_refused
check "ignore: the deliveries are refused ($(deliveries "$ILBI"))" three_refused
check "ignore: no poll was prompted (no GET, the counter unchanged, the job still submitted)" sh -c \
	"[ $(gets "$ILBI") = 0 ] && [ $(metric blinkhook_prompted_polls_total) = $p_before ] && [ $(job_state "$I") = submitted ]"

[ "$FAILS" = 0 ]
