#!/usr/bin/env bash
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
