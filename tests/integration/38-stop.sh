#!/usr/bin/env bash
# parallel: no (SIGTERM during a compaction must end the daemon within 1.5 s)
# SIGTERM with a request to Meraki in flight: the daemon waits (up to 5 s)
# for its answer, so that the next start does not submit the job again.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.2
write_config
sed -i 's/^request_timeout = .*/request_timeout = 20s/' "$T/bh.conf"
start_daemon

# A request that takes 1.5 s and then fails in transport (the simulator drops it).
sim_fault '{"kind":"hang","seconds":1.5}'
a=$(ctl blink Q2AA-BBBB-ST01)
wait_until 10 sh -c "curl -sS '$SIM_URL/_sim/requests' | grep -q Q2AA-BBBB-ST01"
t0=$(date +%s.%N)
stop_daemon
t1=$(date +%s.%N)
check "SIGTERM with a request in flight: exit 0" test "$D_STATUS" = 0
check "the daemon said it waits for it" grep -q 'waiting up to 5s for 1 request(s) to Meraki in flight' "$T/daemon.log"
check "it stopped once the answer came, within the grace ($(python3 -c "print(round($t1 - $t0, 2))") s)" \
	python3 -c "assert 1.0 <= $t1 - $t0 < 4.5"
check "the attempt's outcome is in the log" sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' log --json | grep '\"$a\"' | grep -q '\"event\":\"attempt\"'"

# A request that outlasts the grace: the daemon stops after 5 s anyway.
start_daemon
check "after the restart the job goes through" wait_state 15 "$a" complete
sim_fault '{"kind":"hang","seconds":30}'
b=$(ctl blink Q2AA-BBBB-ST02)
wait_until 10 sh -c "curl -sS '$SIM_URL/_sim/requests' | grep -q Q2AA-BBBB-ST02"
t0=$(date +%s.%N)
stop_daemon
t1=$(date +%s.%N)
check "a request that outlasts the grace: stopped after about 5 s ($(python3 -c "print(round($t1 - $t0, 2))") s), exit 0" \
	sh -c "[ $D_STATUS = 0 ] && python3 -c 'assert 4.5 <= $t1 - $t0 < 8'"
check "and said so" grep -q 'still in flight after 5s; stopping without their answer' "$T/daemon.log"
start_daemon
check "the next start submits that job again and it completes" wait_state 15 "$b" complete

# SIGTERM while a child process writes a compaction's snapshot: the daemon
# stops without waiting for it (the child is killed, its file removed), and
# the old log, with everything committed meanwhile, is whole.  200,000
# finished jobs, the log 20 records short of the size that compacts it.
stop_daemon
python3 - "$T/state/jobs.log" <<'PY'
import sys, time, json
t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
with open(sys.argv[1], "w") as f:
    for i in range(200000):
        recs = [{"event": "queued", "serial": "Q2AA-%04d-DDDD" % (i % 10000), "duration": 5, "source": "queue"}]
        if i < 980:
            recs.append({"event": "submitted", "leds_blink_id": str(5000 + i), "meraki_status": "new", "attempts": 1, "source": "api"})
        recs.append({"event": "complete", "meraki_status": "complete", "source": "callback"})
        f.write("".join(json.dumps(dict({"v": 1, "ts": t, "id": "big%06d" % i}, **r), separators=(",", ":")) + "\n" for r in recs))
PY
start_daemon
: >"$T/ids3"
( for i in $(seq 1 60); do ctl blink "Q2AA-FFFF-$(printf %04d "$i")" --duration 5 >>"$T/ids3" || break; sleep 0.05; done ) &
BLINKS=$!
PIDS+=($BLINKS)
if wait_until 30 test -e "$T/state/jobs.log.new"; then
	child=$(cat /proc/"$D_PID"/task/*/children 2>/dev/null | tr " " "\n" | grep -m1 .)
	t0=$(date +%s.%N)
	stop_daemon
	t1=$(date +%s.%N)
	check "SIGTERM during a compaction in the background: exit 0 within a second ($(python3 -c "print(round($t1 - $t0, 2))") s)" \
		sh -c "[ $D_STATUS = 0 ] && python3 -c 'assert $t1 - $t0 < 1.5'"
	check "the compaction's child is gone with it" sh -c "[ -n '$child' ] && ! kill -0 '$child' 2>/dev/null"
	check "and its file removed" test ! -e "$T/state/jobs.log.new"
	wait "$BLINKS" 2>/dev/null
	start_daemon
	check "the next start replays the old log whole: 200,000 jobs and every one queued since ($(wc -l <"$T/ids3"))" \
		sh -c "[ \$('$BLINKHOOKCTL' -c '$T/bh.conf' jobs --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') = \$((200000 + \$(wc -l <'$T/ids3'))) ]"
	check "and every job queued around the stop completes" wait_until 30 sh -c "
		for id in \$(cat '$T/ids3'); do [ \"\$('$BLINKHOOKCTL' -c '$T/bh.conf' status \$id --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])')\" = complete ] || exit 1; done"
else
	notok "no compaction began while blinks came in"
fi
