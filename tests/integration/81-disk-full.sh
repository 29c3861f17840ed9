#!/usr/bin/env bash
# A disk that fills up and empties again.  The state directory is a small
# tmpfs; a filler file takes all of it.  While it is full the daemon keeps
# running, leaves new spool files in the spool, answers callbacks 503 and
# /healthz 503, and says so once in its log; once the filler is gone it
# resumes by itself: every job from before and during completes, and the job
# log never holds a partial line.  Needs root (mount); skipped otherwise.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/state"
if ! mount -t tmpfs -o size=256k,mode=0750 tmpfs "$T/state" 2>"$T/mount.err"; then
	echo "# SKIP 81-disk-full: cannot mount a tmpfs: $(head -n1 "$T/mount.err")"
	exit 0
fi
cleanup_mount() {
	local p
	# The daemon first: a mount point in use cannot be unmounted.
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	cp "$T/state/jobs.log" "$T/jobs.log.copy" 2>/dev/null
	umount "$T/state" 2>/dev/null || umount -l "$T/state"
	cleanup
}
trap cleanup_mount EXIT

start_sim --min-interval 0 --blink-time 0.2 --callback-retries 10 --callback-retry-delay 0.3
write_config "[callback] wait = 2s"
start_daemon

# callback ID STATUS LEDSBLINKID: posts Meraki's callback by hand (secret_of: lib.sh);
# prints the HTTP status.
callback() {
	local body
	body=$(printf '{"callbackId":"9","organization":{"id":"1","name":"o"},"network":{"id":"N_1","name":"n"},"sentAt":"2026-01-01T00:00:00Z","sharedSecret":"%s","message":{"ledsBlinkId":"%s","url":"/x","status":"%s","request":{"serial":"Q2DF-LLLL-0001","duration":1},"error":null}}' \
		"$(secret_of "$1")" "$3" "$2")
	curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
		--data-binary "$body" "$D_URL/callbacks/leds-blink/$1"
}
healthz() { curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$D_URL/healthz"; }
healthy() { test "$(healthz)" = 200; }
failing_logged() { grep -c 'cannot write the job log' "$T/daemon.log"; }
all_complete() { # all_complete ID...
	ctl jobs --json | python3 -c '
import json, sys
have = {j["id"]: j["state"] for j in json.load(sys.stdin)}
sys.exit(0 if all(have.get(i) == "complete" for i in sys.argv[1:]) else 1)' "$@"
}
log_whole() { # every line of the job log is a whole JSON record
	python3 -c '
import json, sys
data = open(sys.argv[1], "rb").read()
assert data == b"" or data.endswith(b"\n"), "no newline at the end"
assert b"\0" not in data, "NUL bytes"
for l in data.split(b"\n")[:-1]:
    assert json.loads(l)["v"] == 1
' "$T/state/jobs.log"
}

# ---- before: jobs that complete, and one (L) that Meraki never finishes ----
BEFORE=()
for s in Q2DF-BBBB-0001 Q2DF-BBBB-0002 Q2DF-BBBB-0003; do BEFORE+=("$(ctl blink "$s" --duration 1)"); done
check "the jobs from before complete" wait_until 20 all_complete "${BEFORE[@]}"
sim_fault '{"kind":"never_final","count":1}'
L=$(ctl blink Q2DF-LLLL-0001 --duration 1)
check "job L is submitted (Meraki will never finish it)" wait_state 15 "$L" submitted
LBI=$(ctl status "$L" --json | json 'j["leds_blink_id"]')
# Its "running" callback, so that nothing more is due for it.
wait_until 10 sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' status '$L' --json | grep -q '\"meraki_status\":\"running\"'"

# ---- fill the disk ----
dd if=/dev/zero of="$T/state/filler" bs=4k 2>/dev/null
check "the state file system is full" test "$(df --output=avail -B1 "$T/state" | tail -n1 | tr -d ' ')" = 0
size=$(stat -c %s "$T/state/jobs.log")
diag "jobs.log is $size bytes; $(((4096 - size % 4096) % 4096)) bytes of its last page are still free"
# tmpfs keeps the free rest of the log's last page: appends go on until one
# crosses into a new page.  Queue jobs one by one until the daemon's log write fails.
DURING=()
for ((i = 1; i <= 40; i++)); do
	[ "$(failing_logged)" -gt 0 ] && break
	DURING+=("$(ctl blink "$(printf 'Q2DF-DDDD-%04d' "$i")" --duration 1)")
	wait_until 5 sh -c "grep -q 'cannot write the job log' '$T/daemon.log' || '$BLINKHOOKCTL' -c '$T/bh.conf' status '${DURING[-1]}' --json | grep -q '\"state\":\"complete\"'"
done
check "the daemon's job log write failed once the disk was full (after ${#DURING[@]} more jobs)" test "$(failing_logged)" -gt 0
grep 'cannot write the job log' "$T/daemon.log" | head -n1 | sed 's/^/# daemon: /'

# ---- while full ----
LATE=()
for s in Q2DF-EEEE-0001 Q2DF-EEEE-0002 Q2DF-EEEE-0003; do LATE+=("$(ctl blink "$s" --duration 1)"); done
code=$(callback "$L" complete "$LBI")
check "a callback with the right secret while the disk is full: 503 ($code)" test "$code" = 503
code=$(healthz)
check "GET /healthz while the disk is full: 503 ($code)" test "$code" = 503
sleep 3
late_waiting() {
	local id
	for id in "${LATE[@]}"; do test -f "$T/spool/new/$id.json" || return 1; done
}
check "new spool files stay in the spool while the disk is full" late_waiting
check "blinkhookctl shows them as queued" state_is "${LATE[0]}" queued
check "the daemon keeps running" kill -0 "$D_PID"
code=$(callback "$L" complete "$LBI")
check "the callback retried while still full: 503 again ($code)" test "$code" = 503
errs=$(curl -sS --max-time 5 "$D_URL/metrics" | sed -n 's/^blinkhook_log_sync_errors_total //p')
check "/metrics counts the failed commits ($errs)" test "${errs:-0}" -ge 2
check "the job log holds no partial line while the disk is full" log_whole
check "the error is logged once, not at every retry ($(failing_logged))" test "$(failing_logged)" = 1
check "the job L is still submitted in the log" state_is "$L" submitted

# ---- the disk empties again: the daemon resumes without a restart ----
rm -f "$T/state/filler"
t0=$(date +%s.%N)
check "GET /healthz answers 200 again without a restart" wait_until 45 healthy
diag "resumed $(python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))")s after the filler was removed"
check "the daemon says the job log is writable again" grep -q 'the job log is writable again' "$T/daemon.log"
check "the same daemon process is still running" kill -0 "$D_PID"
code=$(callback "$L" complete "$LBI")
check "the callback retried after the disk emptied: 200 ($code)" test "$code" = 200
check "job L is complete" state_is "$L" complete
check "the spool files from while the disk was full become jobs and complete" wait_until 30 all_complete "${LATE[@]}"
check "the jobs queued as the disk filled complete (${#DURING[@]})" wait_until 30 all_complete "${DURING[@]}"
check "the jobs from before are still complete" all_complete "${BEFORE[@]}"
check "the spool's new/ is empty" test -z "$(ls -A "$T/spool/new")"
check "every line of the job log is a whole JSON record" log_whole
check "the job log error was logged exactly once" test "$(failing_logged)" = 1
check "the daemon's log shows no sanitizer report" sh -c "! grep -q -e 'ERROR: AddressSanitizer' -e 'runtime error:' '$T/daemon.log'"

# ---- and the log replays ----
total=$((${#BEFORE[@]} + 1 + ${#DURING[@]} + ${#LATE[@]}))
before=$(ctl jobs --json)
stop_daemon
check "SIGTERM: exit 0" test "$D_STATUS" = 0
start_daemon
check "the restart replays $total jobs, 0 unfinished" grep -q "replayed [0-9]* records: $total jobs, 0 unfinished" "$T/daemon.log"
check "after the restart the jobs are the same" test "$(ctl jobs --json)" = "$before"
stop_daemon
