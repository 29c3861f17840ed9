#!/usr/bin/env bash
# parallel: no (a bounded time for 10,000 files, replies within bounds meanwhile)
# A burst: 10,000 spool files at once, with the daemon running.  All become
# "queued" records within a bounded time, the callback endpoint stays
# responsive meanwhile, and blinkhookctl reads the 10,000-job log quickly.
# With min_interval = 1h only one job (submitted before the burst) is ever
# submitted, so the log holds the intake alone.
. "$(dirname "$0")/../lib.sh"

BURST=${BURST:-10000}
start_sim --min-interval 0 --blink-time 0.2
write_config
sed -i 's/^min_interval = .*/min_interval = 1h/' "$T/bh.conf"
start_daemon
now() { date +%s.%N; }

# The one submission min_interval allows: job P, whose callback Meraki loses,
# so that a real callback can be sent for it in the middle of the burst.
sim_fault '{"kind":"lost_callback","count":1}'
P=$(ctl blink Q2BU-PPPP-0001 --duration 5)
check "job P is submitted before the burst" wait_state 10 "$P" submitted
LBI=$(ctl status "$P" --json | json 'j["leds_blink_id"]')
secs() { python3 -c "print('%.2f' % ($2 - $1))"; }

# The prober: every 0.2 s a GET /healthz (want 200) and a callback with a
# wrong secret (want 401), each timed; it stops when $T/probe.stop appears.
python3 - "$D_URL" "$T/probe.stop" "$T/probe.json" <<-'EOF' &
	import http.client, json, os, sys, time
	from urllib.parse import urlsplit
	url, stop, out = sys.argv[1:]
	u = urlsplit(url)
	worst = {"healthz": 0.0, "callback": 0.0}
	n, bad = 0, []
	def ask(method, path, body=None, headers={}):
	    t = time.monotonic()
	    try:
	        c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
	        c.request(method, path, body=body, headers=headers)
	        code = c.getresponse().status
	        c.close()
	    except Exception as e:
	        code = repr(e)
	    return code, time.monotonic() - t
	while not os.path.exists(stop):
	    code, dt = ask("GET", "/healthz")
	    worst["healthz"] = max(worst["healthz"], dt)
	    if code != 200:
	        bad.append(("healthz", code))
	    code, dt = ask("POST", "/callbacks/leds-blink/burst00000",
	                   body=b'{"sharedSecret":"wrong","message":{"status":"complete"}}',
	                   headers={"Content-Type": "application/json"})
	    worst["callback"] = max(worst["callback"], dt)
	    if code != 401:
	        bad.append(("callback", code))
	    n += 1
	    time.sleep(0.2)
	json.dump({"n": n, "worst": worst, "bad": bad[:10]}, open(out, "w"))
	EOF
PROBE_PID=$!
PIDS+=("$PROBE_PID")
sleep 0.5

# The burst, the producer's way: each file written in tmp/, then renamed into new/.
t0=$(now)
python3 - "$T/spool" "$BURST" >"$T/writer.out" 2>&1 <<-'EOF' &
	import os, sys
	spool, n = sys.argv[1], int(sys.argv[2])
	for i in range(n):
	    name = "burst%05d.json" % i
	    with open(os.path.join(spool, "tmp", name), "w") as f:
	        f.write('{"id":"burst%05d","serial":"Q2BU-%04d-0000","duration":5}' % (i, i % 10000))
	    os.rename(os.path.join(spool, "tmp", name), os.path.join(spool, "new", name))
	    if i == n // 3:
	        open(os.path.join(spool, "..", "burst.third"), "w").close()
	EOF
WRITER_PID=$!
PIDS+=("$WRITER_PID")
# A third into it, Meraki's callback for P: it is answered 200 only once the
# status is durable, so it waits for a group commit amid the intake.
wait_until 60 test -e "$T/burst.third"
cb_waiting=$(find "$T/spool/new" -type f | wc -l)
body=$(printf '{"sharedSecret":"%s","message":{"ledsBlinkId":"%s","status":"complete"}}' "$(secret_of "$P")" "$LBI")
cb=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code} %{time_total}' -X POST -H 'Content-Type: application/json' \
	--data-binary "$body" "$D_URL/callbacks/leds-blink/$P")
wait "$WRITER_PID"
check "the burst was written" test $? = 0
t_written=$(now)
logged() { test "$(grep -c '"event":"queued"' "$T/state/jobs.log")" -ge $((BURST + 1)); }
check "all $BURST requests are logged as queued within 120 s" wait_until 120 logged
t_logged=$(now)
touch "$T/probe.stop"
wait "$PROBE_PID"
diag "writing $BURST spool files took $(secs "$t0" "$t_written")s"
diag "intake: $(secs "$t0" "$t_logged")s from the first file to the last queued record"

spool_empty() { test -z "$(ls -A "$T/spool/new")"; }
check "the spool's new/ empties" wait_until 20 spool_empty
check "every request became exactly one job, with its own id" python3 - "$T/state/jobs.log" "$BURST" <<-'EOF'
	import json, sys
	want = {"burst%05d" % i for i in range(int(sys.argv[2]))}
	queued = [json.loads(l)["id"] for l in open(sys.argv[1], "rb") if b'"event":"queued"' in l]
	queued = [i for i in queued if i.startswith("burst")]
	assert len(queued) == len(set(queued)) == len(want) and set(queued) == want, (len(queued), len(set(queued)))
	EOF
t=$(now)
nq=$(ctl jobs --state queued --json | json 'len(j)')
diag "jobs --state queued --json: $nq jobs in $(secs "$t" "$(now)")s"
check "jobs --state queued: all $BURST ($nq): min_interval held them" test "$nq" = "$BURST"
check "only P was submitted" test "$(sim_get requests | json 'sum(r["method"] == "POST" for r in j)')" = 1
check "nothing was rejected" test -z "$(ls -A "$T/spool/rejected")"

diag "probes during the intake: $(cat "$T/probe.json")"
check "the endpoint answered every probe as it should (200 / 401)" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
assert p["n"] >= 3 and not p["bad"], p' "$T/probe.json"
worst=$(json 'max(j["worst"].values())' <"$T/probe.json")
diag "worst /healthz latency: $(json '"%.3f" % j["worst"]["healthz"]' <"$T/probe.json")s, worst wrong-secret callback: $(json '"%.3f" % j["worst"]["callback"]' <"$T/probe.json")s"
check "no probe took more than 1 s during the intake (worst ${worst}s)" python3 -c "assert $worst < 1.0"

diag "a valid callback sent a third into the burst (${cb_waiting} files waiting in new/): HTTP ${cb% *} in ${cb#* }s"
check "... was answered 200 within 1 s (${cb})" python3 -c "c, t = '$cb'.split(); assert c == '200' and float(t) < 1.0"
check "job P is complete" state_is "$P" complete

t=$(now)
out=$(ctl jobs --limit 5)
t_jobs=$(secs "$t" "$(now)")
diag "jobs --limit 5 on the $BURST-job log: ${t_jobs}s"
check "jobs --limit 5 prints 5 jobs" test "$(echo "$out" | tail -n +2 | wc -l)" = 5
check "jobs --limit 5 takes under 2 s (${t_jobs}s)" python3 -c "assert $t_jobs < 2.0"

stop_daemon
check "SIGTERM: exit 0" test "$D_STATUS" = 0
t=$(now)
start_daemon
diag "a restart replaying $BURST jobs was ready in $(secs "$t" "$(now)")s"
check "the restart replays $((BURST + 1)) jobs, $BURST unfinished" grep -q "replayed [0-9]* records: $((BURST + 1)) jobs, $BURST unfinished" "$T/daemon.log"
check "the daemon's log shows no sanitizer report" sh -c "! grep -q -e 'ERROR: AddressSanitizer' -e 'runtime error:' '$T/daemon.log'"
stop_daemon
check "SIGTERM: exit 0" test "$D_STATUS" = 0
