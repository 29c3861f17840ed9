#!/usr/bin/env bash
# Compaction and retention: at start the daemon drops final jobs past
# [state] retention and rewrites the log as one record a job; readers see the
# old log or the new one, never half; a follower carries on across it.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.2
write_config "[state] retention = 30d"
mkdir -p "$T/state"
# 1500 finished jobs, three records each; the first 750 finished 60 days ago.
python3 - "$T/state/jobs.log" <<'PY'
import sys, time, json
now = time.time()
def ts(t): return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
with open(sys.argv[1], "w") as f:
    for i in range(1500):
        t = now - (60 * 86400 if i < 750 else 3600)
        jid = "old%05d" % i if i < 750 else "new%05d" % i
        serial = "Q2AA-%04d-CCCC" % i
        for ev in ({"event": "queued", "serial": serial, "duration": 5, "source": "queue"},
                   {"event": "submitted", "leds_blink_id": str(1000 + i), "meraki_status": "new", "attempts": 1, "source": "api"},
                   {"event": "complete", "leds_blink_id": str(1000 + i), "meraki_status": "complete", "source": "callback"}):
            rec = {"v": 1, "ts": ts(t), "id": jid}
            rec.update(ev)
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
PY
check "blinkhookctl reads the prepared log: 1500 jobs" test "$(ctl jobs --json | json 'len(j)')" = 1500

# A reader hammering the log while the daemon compacts it at start.
( end=$((SECONDS + 20)); while [ $SECONDS -lt $end ]; do
	"$BLINKHOOKCTL" -c "$T/bh.conf" jobs --json 2>>"$T/reader.err" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' >>"$T/reader.out" 2>>"$T/reader.err"
	[ -e "$T/reader.stop" ] && break
done ) &
READER=$!
PIDS+=($READER)
"$BLINKHOOKCTL" -c "$T/bh.conf" log --follow --json >"$T/follow.out" 2>"$T/follow.err" &
FOLLOW=$!
PIDS+=($FOLLOW)
wait_until 10 test -s "$T/follow.out"
sleep 0.5
start_daemon
check "the daemon compacted at start and dropped the 750 jobs past retention" \
	grep -q 'compacted the job log: 4500 records to 750, 750 final job(s) past retention dropped' "$T/daemon.log"
check "the log now holds one record a job" test "$(wc -l <"$T/state/jobs.log")" = 750
check "no compaction leftover" test ! -e "$T/state/jobs.log.new"
check "jobs past retention are gone, the others kept" sh -c "
	[ \"\$('$BLINKHOOKCTL' -c '$T/bh.conf' jobs --json | python3 -c 'import json,sys; a=json.load(sys.stdin); print(len(a), sum(j[\"id\"].startswith(\"old\") for j in a))')\" = '750 0' ]"
check "a kept job is whole after compaction" python3 -c '
import json, sys
j = json.loads(sys.argv[1])
assert j["state"] == "complete" and j["leds_blink_id"] == "1750" and j["attempts"] == 1 and j["meraki_status"] == "complete", j
assert j["serial"] == "Q2AA-0750-CCCC" and j["duration"] == 5
' "$(ctl status new00750 --json)"
a=$(ctl blink Q2AA-BBBB-9999)
check "a new job after compaction completes" wait_state 10 "$a" complete
touch "$T/reader.stop"
wait "$READER" 2>/dev/null
check "the concurrent reader only ever saw the whole old log or the whole new one ($(sort -u "$T/reader.out" | tr '\n' ' '))" \
	sh -c "[ -s '$T/reader.out' ] && ! grep -qvxE '1500|750|751' '$T/reader.out' && [ ! -s '$T/reader.err' ]"
wait_until 5 grep -q "\"id\":\"$a\",\"event\":\"complete\"" "$T/follow.out"
check "log --follow carried on across the compaction: the new job's events, each once" \
	sh -c "[ \$(grep -c '\"id\":\"$a\"' '$T/follow.out') = 3 ]"
check "log --follow printed no snapshot twice" test "$(grep -c '"event":"job"' "$T/follow.out")" = 0
check "log --follow printed the old events once" test "$(grep -c '"id":"new00750"' "$T/follow.out")" = 3
stop_daemon
start_daemon
check "a restart after compaction replays the compacted log" grep -q 'replayed 753 records: 751 jobs, 0 unfinished' "$T/daemon.log"

# A compaction while the daemon runs and callbacks keep arriving: a child
# writes the snapshot, the loop goes on, what is committed meanwhile is
# carried over, and a follower prints each event once.  200,000 finished
# jobs, the log 40 records short of the size that makes the daemon compact.
stop_daemon
python3 - "$T/state/jobs.log" <<'PY'
import sys, time, json
now = time.time()
def ts(t): return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
n, extra = 200000, 960  # records: 2 a job, 3 for the first 960: 2n + 1000 - 40
with open(sys.argv[1], "w") as f:
    for i in range(n):
        t = ts(now - 3600)
        jid = "big%06d" % i
        recs = [{"event": "queued", "serial": "Q2AA-%04d-DDDD" % (i % 10000), "duration": 5, "source": "queue"}]
        if i < extra:
            recs.append({"event": "submitted", "leds_blink_id": str(5000 + i), "meraki_status": "new", "attempts": 1, "source": "api"})
        recs.append({"event": "complete", "meraki_status": "complete", "source": "callback"})
        f.write("".join(json.dumps(dict({"v": 1, "ts": t, "id": jid}, **r), separators=(",", ":")) + "\n" for r in recs))
PY
: >"$T/daemon.log"
"$BLINKHOOKCTL" -c "$T/bh.conf" log --follow --json >"$T/follow2.out" 2>"$T/follow2.err" &
FOLLOW2=$!
PIDS+=($FOLLOW2)
start_daemon
# Blinks one after another, each answered by the simulator's callbacks, for
# as long as it takes the log to grow to the mark, compact, and go on.
for i in $(seq 1 150); do ctl blink "Q2AA-EEEE-$(printf %04d "$i")" --duration 5 >>"$T/ids2" || break; sleep 0.03; done
wait_until 30 sh -c "[ \$(ctl jobs --json | python3 -c 'import json,sys; print(sum(j[\"state\"] == \"complete\" and j[\"serial\"].startswith(\"Q2AA-EEEE\") for j in json.load(sys.stdin)))') = 150 ]"
check "150 jobs queued during the compaction completed" test "$(wc -l <"$T/ids2")" = 150
check "the daemon compacted the log in the background while callbacks arrived ($(grep -o 'compacted the job log.*' "$T/daemon.log" | head -1))" \
	grep -qE 'compacted the job log: 40[01][0-9]{3} records to 200[0-9]{3}, [0-9]+ final job\(s\) past retention dropped, [1-9][0-9]* committed meanwhile, [0-9.]+s in the background' "$T/daemon.log"
check "no compaction leftover after the background compaction" test ! -e "$T/state/jobs.log.new"
wait_until 10 sh -c "[ \$(grep -c '\"event\":\"complete\"' '$T/follow2.out') -ge 200150 ]"
check "log --follow across it: no snapshot printed" test "$(grep -c '"event":"job"' "$T/follow2.out")" = 0
check "log --follow across it: no line printed twice" test "$(sort "$T/follow2.out" | uniq -d | wc -l)" = 0
check "log --follow across it: each new job's queued and complete once" python3 - "$T/follow2.out" "$T/ids2" <<'PY'
import json, sys, collections
ids = set(open(sys.argv[2]).read().split())
seen = collections.Counter()
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["id"] in ids:
        seen[(r["id"], r["event"])] += 1
bad = [(i, e, seen[(i, e)]) for i in ids for e in ("queued", "complete") if seen[(i, e)] != 1]
assert len(ids) == 150 and not bad, bad[:5]
assert all(n == 1 for n in seen.values()), [k for k, n in seen.items() if n != 1][:5]
PY
check "log --follow across it: the old events once" test "$(grep -c '"event":"complete"' "$T/follow2.out")" = 200150
stop_daemon
start_daemon
check "a restart replays the log compacted in the background" grep -q 'replayed [0-9]* records: 200150 jobs, 0 unfinished' "$T/daemon.log"

# Two compactions between two reads of a follower (it is stopped, and two
# starts each drop final jobs past retention, the second from a log the
# follower never saw): it goes on right after the last record it printed,
# each record once, no snapshot, nothing missed.
stop_daemon
python3 - "$T/state/jobs.log" <<'PY'
import sys, time, json
now = time.time()
def ts(t): return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
with open(sys.argv[1], "w") as f:
    # 20 jobs each: finished 60 days, 3 hours and 10 minutes ago.
    for g, age in (("two", 60 * 86400), ("three", 3 * 3600), ("ten", 600)):
        for i in range(20):
            for ev in ({"event": "queued", "serial": "Q2AA-%04d-FFFF" % i, "duration": 5, "source": "queue"},
                       {"event": "complete", "meraki_status": "complete", "source": "callback"}):
                f.write(json.dumps(dict({"v": 1, "ts": ts(now - age), "id": "%s%03d" % (g, i)}, **ev),
                                   separators=(",", ":")) + "\n")
PY
write_config "[state] retention = 30d"
: >"$T/daemon.log"
"$BLINKHOOKCTL" -c "$T/bh.conf" log --follow --json >"$T/follow3.out" 2>"$T/follow3.err" &
FOLLOW3=$!
PIDS+=($FOLLOW3)
wait_until 10 sh -c "[ \$(wc -l <'$T/follow3.out') -ge 120 ]"
kill -STOP "$FOLLOW3"
start_daemon
stop_daemon
write_config "[state] retention = 2h"
start_daemon
check "two starts compacted the log while the follower was stopped ($(grep -o 'compacted the job log: [0-9]* records to [0-9]*' "$T/daemon.log" | tr '\n' ' '))" \
	test "$(grep -c 'compacted the job log: .* past retention dropped' "$T/daemon.log")" = 2
kill -CONT "$FOLLOW3"
c=$(ctl blink Q2AA-FFFF-9999)
check "a job after both compactions completes" wait_state 10 "$c" complete
wait_until 5 grep -q "\"id\":\"$c\",\"event\":\"complete\"" "$T/follow3.out"
check "log --follow across two compactions between two reads: the new job's events, each once" \
	test "$(grep -c "\"id\":\"$c\"" "$T/follow3.out")" = 3
check "log --follow across two compactions between two reads: the old events once, no snapshot, no warning" \
	sh -c "[ \$(wc -l <'$T/follow3.out') = 123 ] && ! grep -q '\"event\":\"job\"' '$T/follow3.out' && [ ! -s '$T/follow3.err' ]"
