#!/usr/bin/env bash
# A burst: 10,000 spool files at once, with the daemon running.  All become
# "queued" records within a bounded time, the callback endpoint stays
# responsive meanwhile, and blinkhookctl reads the 10,000-job log quickly.
# With min_interval = 1h at most one job is submitted, so the log holds the
# intake alone.
. "$(dirname "$0")/../lib.sh"

BURST=${BURST:-10000}
start_sim --min-interval 0 --blink-time 0.2
write_config
sed -i 's/^min_interval = .*/min_interval = 1h/' "$T/bh.conf"
start_daemon
now() { date +%s.%N; }
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
PIDS+=($PROBE_PID)
sleep 0.5

# The burst, the producer's way: each file written in tmp/, then renamed into new/.
t0=$(now)
python3 - "$T/spool" "$BURST" <<-'EOF'
	import os, sys
	spool, n = sys.argv[1], int(sys.argv[2])
	for i in range(n):
	    name = "burst%05d.json" % i
	    with open(os.path.join(spool, "tmp", name), "w") as f:
	        f.write('{"id":"burst%05d","serial":"Q2BU-%04d-0000","duration":5}' % (i, i % 10000))
	    os.rename(os.path.join(spool, "tmp", name), os.path.join(spool, "new", name))
	EOF
t_written=$(now)
logged() { test "$(grep -c '"event":"queued"' "$T/state/jobs.log")" -ge "$BURST"; }
check "all $BURST requests are logged as queued within 120 s" wait_until 120 logged
t_logged=$(now)
touch "$T/probe.stop"
wait "$PROBE_PID"
diag "writing $BURST spool files took $(secs "$t0" "$t_written")s"
diag "intake: $(secs "$t0" "$t_logged")s from the first file to the last queued record"

check "the spool's new/ empties" wait_until 20 test -z "$(ls -A "$T/spool/new")"
check "every request became exactly one job, with its own id" python3 - "$T/state/jobs.log" "$BURST" <<-'EOF'
	import json, sys
	want = {"burst%05d" % i for i in range(int(sys.argv[2]))}
	queued = [json.loads(l)["id"] for l in open(sys.argv[1], "rb") if b'"event":"queued"' in l]
	assert len(queued) == len(set(queued)) == len(want) and set(queued) == want, (len(queued), len(set(queued)))
	EOF
t=$(now)
nq=$(ctl jobs --state queued --json | json 'len(j)')
diag "jobs --state queued --json: $nq jobs in $(secs "$t" "$(now)")s"
check "jobs --state queued: at least $((BURST - 1)) ($nq): min_interval held the rest" test "$nq" -ge $((BURST - 1))
check "at most one was submitted" test "$(sim_get requests | json 'sum(r["method"] == "POST" for r in j)')" -le 1
check "nothing was rejected" test -z "$(ls -A "$T/spool/rejected")"

diag "probes during the intake: $(cat "$T/probe.json")"
check "the endpoint answered every probe as it should (200 / 401)" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
assert p["n"] >= 3 and not p["bad"], p' "$T/probe.json"
worst=$(json 'max(j["worst"].values())' <"$T/probe.json")
diag "worst /healthz latency: $(json '"%.3f" % j["worst"]["healthz"]' <"$T/probe.json")s, worst wrong-secret callback: $(json '"%.3f" % j["worst"]["callback"]' <"$T/probe.json")s"
check "no probe took more than 1 s during the intake (worst ${worst}s)" python3 -c "assert $worst < 1.0"

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
check "the restart replays $BURST jobs" grep -q "replayed [0-9]* records: $BURST jobs" "$T/daemon.log"
check "the daemon's log shows no sanitizer report" sh -c "! grep -q -e 'ERROR: AddressSanitizer' -e 'runtime error:' '$T/daemon.log'"
stop_daemon
check "SIGTERM: exit 0" test "$D_STATUS" = 0
