#!/usr/bin/env bash
# blinkhookctl as an operator at a rack uses it: several devices at once,
# --wait and wait with their exit codes, the live display on a terminal and
# one line a change elsewhere, output that cannot be written.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.5
write_config
start_daemon

# ---- several devices, --wait ----
ctl blink Q2AA-WAIT-0001 Q2AA-WAIT-0002 --duration 2 --wait=30s >"$T/out" 2>"$T/err"
rc=$?
mapfile -t ids <"$T/out"
check "blink of two serials --wait: exit 0 (rc $rc)" test "$rc" = 0
check "it printed two job ids, one a line" test "${#ids[@]}" = 2 -a "${ids[0]:-none}" != "${ids[1]:-none}"
check "both jobs are complete when it returns" sh -c "[ '$(job_state "${ids[0]:-none}")' = complete ] && [ '$(job_state "${ids[1]:-none}")' = complete ]"
check "in the order given" test "$(ctl status "${ids[0]:-none}" --json | json 'j["serial"]')" = Q2AA-WAIT-0001 -a \
	"$(ctl status "${ids[1]:-none}" --json | json 'j["serial"]')" = Q2AA-WAIT-0002
check "without a terminal: one plain line a change on stderr, each job's last one complete" \
	sh -c "grep -q '^${ids[0]:-none}  Q2AA-WAIT-0001  complete' '$T/err' && grep -q '^${ids[1]:-none}  Q2AA-WAIT-0002  complete' '$T/err'"
check "... and no terminal control sequence" sh -c "! grep -q $'\033' '$T/err'"
check "... and no line twice" test "$(sed 's/ *[0-9]*s$//' "$T/err" | sort | uniq -d | wc -l)" = 0

# ---- --json: the final job objects, as jobs --json has them ----
ctl blink Q2AA-WAIT-0003 Q2AA-WAIT-0004 --wait=30s --json >"$T/out" 2>/dev/null
rc=$?
check "blink --wait --json: exit 0 (rc $rc)" test "$rc" = 0
check "... prints one array of two complete jobs" \
	test "$(json '[x["state"] for x in j] == ["complete", "complete"] and [x["serial"] for x in j] == ["Q2AA-WAIT-0003", "Q2AA-WAIT-0004"]' <"$T/out")" = True
id3=$(json 'j[0]["id"]' <"$T/out")
check "... the same objects as jobs --json" \
	test "$(json "[x for x in j if x['id'] == '$id3'][0]" < <(ctl jobs --json))" = "$(json 'j[0]' <"$T/out")"
ctl blink Q2AA-WAIT-0005 --json >"$T/out"
check "blink --json without --wait: an array with the queued job" \
	test "$(json 'len(j) == 1 and j[0]["state"] == "queued" and j[0]["serial"] == "Q2AA-WAIT-0005" and j[0]["duration"] == 20' <"$T/out")" = True

# ---- a blink that fails: exit 3 ----
sim_fault '{"kind":"failed","serial":"Q2AA-FAIL-0001","error":"Device is offline"}'
ctl blink Q2AA-WAIT-0006 Q2AA-FAIL-0001 --wait=30s >"$T/out" 2>"$T/err"
rc=$?
check "blink --wait where one job fails: exit 3 (rc $rc)" test "$rc" = 3
check "... the other one completed, and the failure shows its error" \
	sh -c "grep -q 'Q2AA-WAIT-0006  complete' '$T/err' && grep -q 'Q2AA-FAIL-0001  failed .*Device is offline' '$T/err'"
fid=$(sed -n 2p "$T/out")
check "... and at the end one line with the failed job's whole error" \
	sh -c "[ \$(grep -c '^blinkhookctl: .* failed: ' '$T/err') = 1 ] && grep -q '^blinkhookctl: $fid failed: .*Device is offline' '$T/err'"
ctl wait "$fid" --timeout 5s >"$T/out" 2>/dev/null
rc=$?
check "wait on the failed job: exit 3 at once, its id on stdout (rc $rc)" test "$rc" = 3 -a "$(cat "$T/out")" = "$fid"
ctl wait "${ids[0]:-none}" "${ids[1]:-none}" --json >"$T/out" 2>/dev/null
rc=$?
check "wait on complete jobs: exit 0, the JSON array (rc $rc)" test "$rc" = 0 -a "$(json 'len(j)' <"$T/out")" = 2

# ---- usage ----
before=$(ls "$T/spool/new" | wc -l)
ctl blink Q2AA-WAIT-0007 Q2AA-WAIT-0008 Q2AA-BAD Q2AA-WAIT-0009 >"$T/out" 2>"$T/err"
rc=$?
check "several serials with one invalid: exit 2, a message naming it, nothing printed (rc $rc)" \
	sh -c "[ $rc = 2 ] && grep -q 'Q2AA-BAD' '$T/err' && [ ! -s '$T/out' ]"
check "... and nothing queued" sh -c "[ \$(ls '$T/spool/new' | wc -l) = $before ] && ! grep -rq 'Q2AA-WAIT-000[789]' '$T/spool/new' '$T/state/jobs.log'"
ctl blink Q2AA-WAIT-0007 Q2AA-WAIT-0008 --id two-devices >/dev/null 2>&1
check "--id with two devices: exit 2" test $? = 2
ctl blink Q2AA-WAIT-0007 --wait=soon >/dev/null 2>&1
check "--wait with a bad span: exit 2" test $? = 2
ctl wait >/dev/null 2>&1
check "wait without a job id: exit 2" test $? = 2
ctl wait 'no/such' >/dev/null 2>&1
check "wait with a malformed id: exit 2" test $? = 2
ctl wait nosuchjob --timeout 2s >/dev/null 2>"$T/err"
check "wait on an unknown job: exit 1 with a message" test $? = 1 -a -s "$T/err"
ctl wait nosuchjob1 nosuchjob2 --timeout 2s >/dev/null 2>"$T/err"
rc=$?
check "wait on two unknown jobs: exit 1, each named (rc $rc)" \
	sh -c "[ $rc = 1 ] && grep -qx 'blinkhookctl: no job \"nosuchjob1\"' '$T/err' && grep -qx 'blinkhookctl: no job \"nosuchjob2\"' '$T/err'"
ctl blink Q2AA-WAIT-0007 --wait 5min >/dev/null 2>"$T/err"
rc=$?
check "blink --wait 5min: exit 2, the way to write a time limit ($(head -1 "$T/err"))" \
	sh -c "[ $rc = 2 ] && grep -q '\"5min\" is not a Meraki serial.*(for a time limit, write --wait=5min)' '$T/err'"
ctl blink 5min --wait >/dev/null 2>"$T/err"
check "... but not for a span that does not follow --wait" sh -c "[ $? = 2 ] && grep -q 'is not a Meraki serial' '$T/err' && ! grep -q 'time limit' '$T/err'"
ctl blink --mac nonsense >/dev/null 2>"$T/err"
check "--mac's error lists the spellings it takes, bare hex digits too" grep -q 'aabbccddeeff' "$T/err"
check "... which it takes" test "$(ctl blink --mac AABBCC001133 --json | json 'j[0]["mac"]')" = aa:bb:cc:00:11:33

# ---- a request the daemon rejects: the wait for it ends, failed ----
printf '{"id":"rejected-1","serial":"Q2AA-WAIT-0011","duration":0}' >"$T/spool/tmp/r" && mv "$T/spool/tmp/r" "$T/spool/new/rejected-1.json"
wait_until 10 test -e "$T/spool/rejected/rejected-1.json.reason"
ctl wait rejected-1 --timeout 10s --json >"$T/out" 2>"$T/err"
rc=$?
check "wait on a request the daemon rejected: exit 3 (rc $rc)" test "$rc" = 3
check "... failed, with the daemon's reason" \
	test "$(json 'j[0]["state"] == "failed" and j[0]["error"].startswith("rejected by the daemon: ")' <"$T/out")" = True

# ---- the daemon not running: the wait times out (exit 4), the job goes on ----
stop_daemon
# A request with the id of one rejected before, taken from new/ while the
# wait looks (here: by hand, the daemon being stopped): the old reason is not
# believed for it.
touch -d '1 minute ago' "$T/spool/rejected/rejected-1.json.reason"
ctl blink Q2AA-WAIT-0012 --id rejected-1 --wait=3s >"$T/out" 2>"$T/err" &
bp=$!
wait_until 5 test -e "$T/spool/new/rejected-1.json"
mv "$T/spool/new/rejected-1.json" "$T/spool/tmp/taken"
wait "$bp"
rc=$?
check "a stale rejection of an earlier request with the same id is not believed: exit 4, not 3 (rc $rc)" \
	test "$rc" = 4
ctl blink Q2AA-WAIT-0010 >"$T/out"
qid=$(cat "$T/out")
t0=$(date +%s%N)
ctl wait "$qid" --timeout 2s >/dev/null 2>"$T/err"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check "wait --timeout 2s on a job that cannot finish: exit 4 (rc $rc)" test "$rc" = 4
check "... after about 2 s (${ms} ms)" test "$ms" -ge 1500 -a "$ms" -le 4000
check "... saying it timed out, the job still in the spool, not that it goes on ($(grep 'timed out' "$T/err"))" \
	sh -c "grep -qx 'blinkhookctl: timed out after 2s: 1 job(s) not final yet (still in the spool: is blinkhookd running?)' '$T/err' && ! grep -q 'go on' '$T/err'"
check "... and no word about the daemon before 10 s" sh -c "! grep -q 'is still in the spool after' '$T/err'"
ctl wait "$qid" --timeout 11500ms >/dev/null 2>"$T/err"
check "a wait for a request still in the spool after 10 s asks once whether the daemon runs" \
	sh -c "[ \$(grep -c '^blinkhookctl: ' '$T/err') = 2 ] && grep -qx 'blinkhookctl: $qid is still in the spool after 10 s: is blinkhookd running? (systemctl status blinkhookd)' '$T/err'"
check "... and the job is still queued" state_is "$qid" queued
ctl wait rejected-1 "$qid" --timeout 1s >/dev/null 2>&1
rc=$?
check "one job failed and another not final when the limit passes: exit 3, the failure (rc $rc)" test "$rc" = 3
# Waiting costs nothing while nothing happens: the process sleeps until
# inotify or the one-second tick wakes it, so it blocks about once a second
# (a poll every 250 ms would be 12 times in 3 s).
"$BLINKHOOKCTL" -c "$T/bh.conf" wait "$qid" --timeout 5s >/dev/null 2>&1 &
WPID=$!
sleep 3
switches=$(awk '/^voluntary_ctxt_switches/ { print $2 }' "/proc/$WPID/status" 2>/dev/null)
wait "$WPID"
check "an idle wait wakes about once a second ($switches voluntary context switches in 3 s)" \
	test -n "$switches" -a "${switches:-99}" -le 6

# ---- devices by name and MAC: the requests in the spool carry them ----
ctl blink --name 'edge-sw-1' Q2AA-NAME-0001 --mac AA-BB-CC-00-11-22 --name 'core sw ü' --duration 7 >"$T/out" 2>"$T/err"
rc=$?
mapfile -t nids <"$T/out"
check "blink --name, a serial, --mac, --name: exit 0, four ids (rc $rc)" test "$rc" = 0 -a "${#nids[@]}" = 4
spooled() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r.get("serial"), r.get("name"), r.get("mac"), r["duration"])' "$T/spool/new/$1.json"; }
check "the first request names the device" test "$(spooled "${nids[0]:-none}")" = "None edge-sw-1 None 7"
check "the second is by serial, in the order given" test "$(spooled "${nids[1]:-none}")" = "Q2AA-NAME-0001 None None 7"
check "the third carries the MAC in the colon form" test "$(spooled "${nids[2]:-none}")" = "None None aa:bb:cc:00:11:22 7"
check "the fourth a name with a space and UTF-8" test "$(spooled "${nids[3]:-none}")" = "None core sw ü None 7"
ctl wait "${nids[0]:-none}" "${nids[2]:-none}" --timeout 1s >/dev/null 2>"$T/err"
check "wait shows a job by name or MAC as name:NAME / mac:MAC until it is resolved" \
	sh -c "grep -q '^${nids[0]:-none}  name:edge-sw-1  *queued' '$T/err' && grep -q '^${nids[2]:-none}  mac:aa:bb:cc:00:11:22  queued' '$T/err'"
for id in "${nids[@]}"; do rm -f "$T/spool/new/$id.json"; done
before=$(ls "$T/spool/new" | wc -l)
for bad in "--mac aa:bb:cc:dd:ee" "--mac zz:bb:cc:dd:ee:ff" "--name ''" "--name $'a\tb'"; do
	eval "ctl blink Q2AA-NAME-0002 $bad" >"$T/out" 2>"$T/err"
	rc=$?
	check "blink Q2AA-NAME-0002 $bad: exit 2, a message, nothing queued (rc $rc)" \
		sh -c "[ $rc = 2 ] && [ -s '$T/err' ] && [ ! -s '$T/out' ] && [ \$(ls '$T/spool/new' | wc -l) = $before ]"
done

# ---- stdout that cannot be written: exit 1, the id on stderr ----
ctl blink Q2AA-FULL-0001 >/dev/full 2>"$T/err"
rc=$?
fullid=$(grep -o 'queued nonetheless: [A-Za-z0-9_-]*' "$T/err" | cut -d' ' -f3)
check "blink >/dev/full: exit 1 (rc $rc)" test "$rc" = 1
check "... and the queued job's id on stderr ($(cat "$T/err"))" sh -c "[ -n '$fullid' ] && [ \"\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"serial\"])' '$T/spool/new/$fullid.json')\" = Q2AA-FULL-0001 ]"
ctl jobs --json >/dev/full 2>"$T/err"
check "jobs --json >/dev/full: exit 1 with a message" test $? = 1 -a -s "$T/err"
ctl status "$qid" >/dev/full 2>/dev/null
check "status >/dev/full: exit 1" test $? = 1
ctl log >/dev/full 2>/dev/null
check "log >/dev/full: exit 1" test $? = 1
timeout 10 "$BLINKHOOKCTL" -c "$T/bh.conf" log --follow >/dev/full 2>"$T/err"
check "log --follow >/dev/full: exit 1 with a message, not following on" test $? = 1 -a -s "$T/err"
"$BLINKHOOKCTL" --version >/dev/full 2>/dev/null
check "blinkhookctl --version >/dev/full: exit 1" test $? = 1
"$BLINKHOOKCTL" --help >/dev/full 2>/dev/null
check "blinkhookctl --help >/dev/full: exit 1" test $? = 1
"$BLINKHOOKD" --version >/dev/full 2>"$T/err"
check "blinkhookd --version >/dev/full: exit 1 with a message" test $? = 1 -a -s "$T/err"
"$BLINKHOOKD" --help >/dev/full 2>/dev/null
check "blinkhookd --help >/dev/full: exit 1" test $? = 1
MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh.conf" --check-config >/dev/full 2>/dev/null
check "blinkhookd --check-config >/dev/full: exit 1" test $? = 1
"$BLINKHOOKCTL" --version >/dev/null
check "--version to a writable stdout: exit 0" test $? = 0

# ---- a wait started while the daemon is down ends when it has run the
# jobs; the daemon compacts the log at start (a rename under the reader) ----
python3 - "$T/state/jobs.log" <<'PY'
import sys, time, json
def ts(t): return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
t = time.time() - 3600
with open(sys.argv[1], "a") as f:
    for i in range(1200):
        for ev in ({"event": "queued", "serial": "Q2AA-%04d-OLDS" % i, "duration": 5, "source": "queue"},
                   {"event": "submitted", "leds_blink_id": str(9000 + i), "meraki_status": "new", "attempts": 1, "source": "api"},
                   {"event": "complete", "leds_blink_id": str(9000 + i), "meraki_status": "complete", "source": "callback"}):
            rec = {"v": 1, "ts": ts(t), "id": "old%05d" % i}
            rec.update(ev)
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
PY
ino_before=$(stat -c %i "$T/state/jobs.log")
ctl wait "$qid" "$fullid" --timeout 60s >"$T/out" 2>"$T/err" &
WAITER=$!
PIDS+=($WAITER)
sleep 0.5
start_daemon
wait_until 30 sh -c "! kill -0 $WAITER"
wait "$WAITER"
rc=$?
check "a wait begun with the daemon down ends when the jobs complete: exit 0 (rc $rc)" test "$rc" = 0
check "... across the compaction that replaced the log" \
	sh -c "grep -q 'compacted the job log' '$T/daemon.log' && [ $(stat -c %i "$T/state/jobs.log") != $ino_before ]"
check "... printing the ids it waited for" test "$(cat "$T/out")" = "$qid"$'\n'"$fullid"

# ---- the live display on a terminal ----
sim_fault '{"kind":"progress","serial":"Q2AA-LIVE-0001"}'
TERM=xterm script -qfec "'$BLINKHOOKCTL' -c '$T/bh.conf' blink Q2AA-LIVE-0001 Q2AA-LIVE-0002 --duration 1 --wait=30s; echo \"exit=\$?\"" /dev/null >"$T/tty" 2>&1 </dev/null
check "on a terminal: the wait ends with exit 0" grep -q 'exit=0' "$T/tty"
# The screen as a terminal shows it: each cursor-up goes back to the
# display's first line, each line is cleared and drawn anew.
python3 - "$T/tty" >"$T/screen" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read().decode("utf-8", "replace").replace("\r\n", "\n")
lines, row, frames = [], 0, []
for tok in re.split(r"(\x1b\[\d*[A-Za-z]|\n|\r)", data):
    if not tok:
        continue
    m = re.match(r"\x1b\[(\d*)([A-Za-z])", tok)
    if m:
        if m.group(2) == "A":
            frames.append(list(lines))
            row = max(0, row - int(m.group(1) or 1))
        elif m.group(2) == "K":
            if row < len(lines):
                lines[row] = ""
        continue
    if tok == "\n":
        row += 1
        continue
    if tok == "\r":
        continue
    while len(lines) <= row:
        lines.append("")
    lines[row] += tok
print("frames:", len(frames))
for f in frames:
    print("frame:", " | ".join(f))
print("final:")
print("\n".join(lines))
PY
check "the display goes back up its two lines to redraw them" grep -qF $'\033[2A' "$T/tty"
check "... clearing each line before it draws it" grep -qF $'\r\033[2K' "$T/tty"
check "it showed the job submitted before it was complete" grep -q '^frame:.*Q2AA-LIVE-0001  submitted' "$T/screen"
check "it showed Meraki's progress (running) as it came in" grep -Eq '^frame:.*Q2AA-LIVE-0001  submitted +running' "$T/screen"
check "the screen ends with both final lines" sh -c "sed -n '/^final:/,\$p' '$T/screen' | grep -Eq 'Q2AA-LIVE-0001  complete +complete' && sed -n '/^final:/,\$p' '$T/screen' | grep -Eq 'Q2AA-LIVE-0002  complete +complete'"
check "the display's lines are the last ones, after the ids, before the exit" \
	sh -c "sed -n '/^final:/,\$p' '$T/screen' | grep -v '^exit=' | tail -n 2 | grep -c ' complete ' | grep -qx 2"

# A failed job's error, longer than the terminal is wide: the display cuts
# it, the line at the end has it whole.
long="Device is offline; $(printf 'detail%02d ' $(seq 1 20))end"
sim_fault "{\"kind\":\"failed\",\"serial\":\"Q2AA-LONG-0001\",\"error\":\"$long\"}"
TERM=xterm script -qfec "'$BLINKHOOKCTL' -c '$T/bh.conf' blink Q2AA-LONG-0001 --wait=30s; echo \"exit=\$?\"" /dev/null >"$T/tty" 2>&1 </dev/null
check "on a terminal, a failed job: exit 3, then its whole error on a line of its own" \
	sh -c "grep -q 'exit=3' '$T/tty' && tr -d '\r' <'$T/tty' | grep -Eq '^blinkhookctl: [A-Za-z0-9_-]+ failed: .*detail20 end\$'"

# ---- by name and MAC end to end: the daemon resolves them, the wait shows it ----
curl -sS --max-time 5 -X POST -H 'Content-Type: application/json' -d '{"organizations": [{"id": "549236",
	"name": "Simulated Organization", "devices": [
	{"name": "edge-sw-1", "serial": "Q2AA-RSLV-0001", "mac": "00:18:0a:00:00:01"},
	{"name": "edge-sw-2", "serial": "Q2AA-RSLV-0002", "mac": "00:18:0a:00:00:02"},
	{"name": "lobby-ap", "serial": "Q2AA-RSLV-0003", "mac": "00:18:0a:00:00:03"},
	{"name": "lobby-ap", "serial": "Q2AA-RSLV-0004", "mac": "00:18:0a:00:00:04"}]}]}' \
	"$SIM_URL/_sim/inventory" >/dev/null
ctl blink --name edge-sw-1 --mac 00-18-0A-00-00-02 --wait=30s --json >"$T/out" 2>"$T/err"
rc=$?
check "blink --name --mac --wait: exit 0 when both resolve and complete (rc $rc)" test "$rc" = 0
check "... the JSON has each job's name or MAC and the serial it resolved to" \
	test "$(json '[(x["name"], x["mac"], x["serial"], x["state"]) for x in j]' <"$T/out")" = \
	"[('edge-sw-1', None, 'Q2AA-RSLV-0001', 'complete'), (None, '00:18:0a:00:00:02', 'Q2AA-RSLV-0002', 'complete')]"
nid=$(json 'j[0]["id"]' <"$T/out")
check "... the display showed the name while queued, the serial once resolved" \
	sh -c "grep -q '^$nid  name:edge-sw-1  *queued' '$T/err' && grep -q '^$nid  Q2AA-RSLV-0001  complete' '$T/err'"
ctl blink --name lobby-ap --wait=30s >/dev/null 2>"$T/err"
rc=$?
check "blink --name of an ambiguous name --wait: exit 3, the error names the candidates (rc $rc)" \
	sh -c "[ $rc = 3 ] && grep -q 'failed .*Q2AA-RSLV-0003' '$T/err' && grep -q 'failed .*Q2AA-RSLV-0004' '$T/err'"
