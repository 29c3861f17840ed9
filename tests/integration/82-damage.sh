#!/usr/bin/env bash
# Damage the daemon must survive or refuse: a torn tail of the job log (cut
# off with a warning), damage in the middle of it and a record of a newer
# format (refused, the file left as it is, blinkhookctl still reads), a stale
# file in the spool's tmp/ (moved aside), and every kind of bad spool file
# (moved to rejected/ with a reason while the daemon keeps going).
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.2
write_config "[callback] wait = 1s"
LOG=$T/state/jobs.log

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# starts ...: start_daemon, and checks that its replay saw JOBS jobs.
starts() {
	local desc=$1 jobs=$2 from
	from=$(($(wc -l <"$T/daemon.log" 2>/dev/null || echo 0) + 1))
	start_daemon
	check "$desc: the daemon starts and replays $jobs jobs" \
		sh -c "tail -n +$from '$T/daemon.log' | grep -q 'replayed [0-9]* records: $jobs jobs'"
}
# refuses DESCRIPTION: the daemon, run in the foreground, must exit non-zero
# at once; its stderr is in $T/refused.log.
refuses() {
	MERAKI_DASHBOARD_API_KEY=$API_KEY timeout 10 "$BLINKHOOKD" -c "$T/bh.conf" 2>"$T/refused.log"
	local rc=$?
	if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then ok "$1: the daemon refuses to start (exit $rc)"; else notok "$1: exit $rc"; fi
	sed -n 's/^/# daemon: /p' "$T/refused.log" | grep -v ' info: ' | head -n 5
}
in_refusal() { grep -qF -- "$1" "$T/refused.log"; }

# ---- a log with three complete jobs ----
touch "$T/daemon.log"
J=()
for s in Q2DM-AAAA-0001 Q2DM-AAAA-0002 Q2DM-AAAA-0003; do J+=("$(ctl blink "$s" --duration 1)"); done
starts "the first start" 0
for id in "${J[@]}"; do wait_state 20 "$id" complete || notok "job $id did not complete"; done
stop_daemon
jobs0=$(ctl jobs --json)
check "three complete jobs to start from" test "$(echo "$jobs0" | json 'sum(x["state"] == "complete" for x in j)')" = 3

# ---- (a) a torn tail: half a record, no newline ----
size0=$(size "$LOG")
sum0=$(sha "$LOG")
printf '{"v":1,"ts":"2026-01-01T00:00:00Z","id":"torn-job","event":"queu' >>"$LOG"
torn=$(($(size "$LOG") - size0))
out=$(ctl jobs --json 2>"$T/ctl.err")
check "blinkhookctl reads a log with a torn tail, no warning" test "$out" = "$jobs0" -a ! -s "$T/ctl.err"
starts "a torn tail" 3
check "the daemon warns that it cut off the torn record at byte offset $size0 ($torn bytes)" \
	grep -q "jobs.log: cut off a torn last record at byte offset $size0 ($torn bytes" "$T/daemon.log"
check "the log is cut back to its old size ($(size "$LOG") = $size0)" test "$(size "$LOG")" = "$size0"
check "the log is byte for byte what it was" test "$(sha "$LOG")" = "$sum0"
check "the jobs are intact" test "$(ctl jobs --json)" = "$jobs0"
stop_daemon

# ---- (a2) a tail of zeros, as a power cut can leave when the size went to disk and the data not ----
head -c 700 /dev/zero >>"$LOG"
starts "a tail of NUL bytes" 3
check "the zeros are cut off at byte offset $size0" grep -q "cut off a torn last record at byte offset $size0 (700 bytes" "$T/daemon.log"
check "the log is byte for byte what it was" test "$(sha "$LOG")" = "$sum0"
stop_daemon

# ---- (a3) zero-filled lines to the end, as a power cut can leave them: torn ----
{ head -c 300 /dev/zero; printf '\n'; head -c 100 /dev/zero; printf '\n{"v":1,"ts":"20'; } >>"$LOG"
tail3=$(($(size "$LOG") - size0))
starts "zero-filled lines to the end" 3
check "they are cut off at byte offset $size0 ($tail3 bytes)" grep -q "cut off a torn last record at byte offset $size0 ($tail3 bytes" "$T/daemon.log"
check "the log is byte for byte what it was" test "$(sha "$LOG")" = "$sum0"
check "the jobs are intact" test "$(ctl jobs --json)" = "$jobs0"
stop_daemon

# ---- (a4) complete lines at the end that do not parse: damage, not a torn write ----
# We only ever write whole records, so such lines are not ours to cut off.
printf '{"v":1,"ts":"2026-01-01T00:00:00Z","id":"x"\n{"v":1,"ts":"20\n' >>"$LOG"
sum_a4=$(sha "$LOG")
refuses "complete bad lines at the end"
check "the refusal names the first bad line's offset" in_refusal "(byte offset $size0) is damaged"
check "the lines are not cut off" test "$(sha "$LOG")" = "$sum_a4"
truncate -s "$size0" "$LOG"

# ---- (b) damage in the middle, good records after it ----
# The first job's "complete" record becomes garbage.
read -r bad_line bad_off < <(python3 - "$LOG" "${J[0]}" <<-'EOF'
	import json, sys
	lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
	off = 0
	for n, l in enumerate(lines, 1):
	    e = json.loads(l)
	    if e["id"] == sys.argv[2] and e["event"] == "complete":
	        assert n < len(lines), "no good line after it"
	        print(n, off)
	        break
	    off += len(l) + 1
	EOF
)
cp "$LOG" "$T/jobs.log.good"
sed -i "${bad_line}s/.*/this line is not a record \x01 at all/" "$LOG"
sum_bad=$(sha "$LOG")
refuses "damage at line $bad_line"
check "the message names the line and its byte offset" in_refusal "jobs.log: line $bad_line (byte offset $bad_off) is damaged; the daemon will not guess"
check "the message says what to do" sh -c "grep -qF 'Copy the file aside, then delete or repair that line' '$T/refused.log'"
check "the damaged log is left unchanged" test "$(sha "$LOG")" = "$sum_bad"
out=$(ctl jobs --json 2>"$T/ctl.err")
rc=$?
check "blinkhookctl jobs still works on the damaged log (exit $rc)" test "$rc" = 0
check "blinkhookctl jobs reads the rest: three jobs, the first one without its lost record" python3 -c '
import json, sys
a = {j["id"]: j["state"] for j in json.loads(sys.argv[1])}
ids = sys.argv[2:]
assert a == {ids[0]: "submitted", ids[1]: "complete", ids[2]: "complete"}, a
' "$out" "${J[@]}"
check "blinkhookctl warns about the damaged line on stderr ($(cat "$T/ctl.err"))" \
	grep -q "skipped 1 damaged line(s), the first at line $bad_line" "$T/ctl.err"
ctl log >/dev/null 2>"$T/ctl.err"
check "blinkhookctl log still works and warns (exit $?)" grep -q "skipped 1 damaged line" "$T/ctl.err"
sed -i "${bad_line}d" "$LOG"
starts "after the damaged line is deleted" 3
check "the job whose record was lost is finished by asking Meraki" wait_state 20 "${J[0]}" complete
check "... and that came from a poll" sh -c "'$BLINKHOOKCTL' -c '$T/bh.conf' log --json | grep '\"id\":\"${J[0]}\"' | grep -q '\"source\":\"poll\"'"
stop_daemon
jobs0=$(ctl jobs --json)

# ---- (c) a record of a newer format, as the last line ----
n_lines=$(wc -l <"$LOG")
v2_off=$(size "$LOG")
printf '{"v":2,"ts":"2026-01-01T00:00:00Z","id":"from-the-future","event":"queued","serial":"Q2DM-FFFF-0001","duration":5,"priority":"high"}\n' >>"$LOG"
sum_v2=$(sha "$LOG")
refuses "a \"v\":2 record"
check "the message names the line, the offset and the version problem" \
	in_refusal "jobs.log: line $((n_lines + 1)) (byte offset $v2_off) has a record version this blinkhookd does not know"
check "the message says to run the newer blinkhookd" in_refusal "run the newer blinkhookd"
check "the newer record is not cut off as if torn" test "$(sha "$LOG")" = "$sum_v2"
out=$(ctl jobs --json 2>"$T/ctl.err")
check "blinkhookctl jobs reads around it, with a warning" sh -c "[ '$out' = '$jobs0' ] && grep -q 'skipped 1 damaged line' '$T/ctl.err'"
# The same in the middle of the log.
cp "$LOG" "$T/jobs.log.v2"
python3 - "$LOG" <<-'EOF'
	import sys
	lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
	lines.insert(2, lines.pop())
	open(sys.argv[1], "wb").write(b"\n".join(lines) + b"\n")
	EOF
refuses "a \"v\":2 record at line 3"
check "the message names line 3" in_refusal "jobs.log: line 3 (byte offset"
# Damage followed by nothing but newer records is no torn tail either: the
# newer records are whole lines that some blinkhookd wrote, and must not be cut.
cp "$T/jobs.log.v2" "$LOG"
sed -i '$i this line is damaged' "$LOG"
sum_v2=$(sha "$LOG")
refuses "a damaged line followed only by a \"v\":2 record"
check "the newer record after the damaged line is not cut off as if torn" test "$(sha "$LOG")" = "$sum_v2"
cp "$T/jobs.log.v2" "$LOG"
sed -i '$d' "$LOG"

# ---- (f) a whole record that parses but cannot apply (a job nobody queued), as the last line ----
f_off=$(size "$LOG")
printf '{"v":1,"ts":"2026-01-01T00:00:00Z","id":"never-queued","event":"complete","meraki_status":"complete","source":"callback"}\n' >>"$LOG"
sum_f=$(sha "$LOG")
refuses "a record for a job that was never queued"
check "the message names the line and says it cannot be applied" \
	in_refusal "jobs.log: line $((n_lines + 1)) (byte offset $f_off) is a record this daemon cannot apply"
check "the record is not cut off as if torn" test "$(sha "$LOG")" = "$sum_f"
sed -i '$d' "$LOG"

# ---- (d) stale and fresh files in tmp/; (e) every kind of bad spool file, in one batch with a good one ----
mkdir -p "$T/spool/tmp" "$T/spool/new"
echo '{"serial":"Q2DM-STAL-0001"}' >"$T/spool/tmp/stale.json"
touch -d '2 minutes ago' "$T/spool/tmp/stale.json"
echo '{"serial":"Q2DM-FRSH-0001"}' >"$T/spool/tmp/fresh.json"

N=$T/spool/new
declare -A want # file name -> a phrase its .reason must hold
bad() { # bad NAME PHRASE CONTENT: a bad spool file written straight into new/
	printf '%s' "$3" >"$N/$1"
	want[$1]=$2
}
R_JSON="not valid JSON"
R_DUR="duration is not a whole number of seconds from 1 to 3600"
R_SERIAL="serial is not a Meraki serial"
bad e-notjson.json "$R_JSON" 'this is not json'
bad e-empty.json "$R_JSON" ''
bad e-truncated.json "$R_JSON" '{"serial":"Q2DM-BBBB-0001",'
bad e-badutf8.json "$R_JSON" $'{"serial":"Q2DM-BBBB-\xff\xfe01"}'
bad e-deep.json "$R_JSON" '{"serial":[[[[[[["Q2DM-BBBB-0001"]]]]]]]}'
bad e-array.json "not a JSON object" '["Q2DM-BBBB-0001"]'
bad e-unknown.json "unknown field" '{"serial":"Q2DM-BBBB-0002","colour":"red"}'
bad e-noserial.json "serial is missing" '{"duration":5}'
bad e-badserial.json "$R_SERIAL" '{"serial":"nope","duration":5}'
bad e-serial5.json "$R_SERIAL" '{"serial":"Q2DM-BBBBB-0003"}'
bad e-serialnum.json "$R_SERIAL" '{"serial":12345}'
bad e-dur0.json "$R_DUR" '{"serial":"Q2DM-BBBB-0004","duration":0}'
bad e-dur3601.json "$R_DUR" '{"serial":"Q2DM-BBBB-0005","duration":3601}'
bad e-durstr.json "$R_DUR" '{"serial":"Q2DM-BBBB-0006","duration":"20"}'
bad e-durfrac.json "$R_DUR" '{"serial":"Q2DM-BBBB-0007","duration":1.5}'
bad e-durneg.json "$R_DUR" '{"serial":"Q2DM-BBBB-0008","duration":-1}'
bad e-durbool.json "$R_DUR" '{"serial":"Q2DM-BBBB-0009","duration":true}'
bad e-durnull.json "$R_DUR" '{"serial":"Q2DM-BBBB-0010","duration":null}'
bad e-badid.json "id is not 1 to 64 characters" '{"serial":"Q2DM-BBBB-0011","id":"a/b"}'
bad e-cancelplus.json "a cancel request has no other field" "{\"cancel\":\"${J[1]}\",\"serial\":\"Q2DM-BBBB-0012\"}"
bad e-cancelnone.json "cancel names no known job" '{"cancel":"nosuchjob"}'
bad e-reusedid.json "its id is already used by another job" "{\"id\":\"${J[1]}\",\"serial\":\"Q2DM-BBBB-0013\"}"
python3 -c 'import sys; sys.stdout.write("{\"serial\":\"Q2DM-BBBB-0014\"" + " " * 5000 + "}")' >"$N/e-large.json"
want[e-large.json]="file is larger than 4096 bytes"
echo '{"serial":"Q2DM-BBBB-0015","duration":1}' >"$T/target.json"
ln -s "$T/target.json" "$N/e-symlink.json"
want[e-symlink.json]="a symbolic link, not a file"
# A directory is never moved into rejected/ (a member could make it one
# others write into there): an empty one is removed.
mkdir "$N/e-dir.json"
mkfifo "$N/e-fifo.json"
want[e-fifo.json]="not a regular file"
# Good ones in the same batch: a plain request, and one of exactly 4096 bytes.
echo '{"serial":"Q2DM-GOOD-0001","duration":1}' >"$N/good.json"
python3 -c 'import sys; s = "{\"serial\":\"Q2DM-GOOD-0002\",\"duration\":1"; sys.stdout.write(s + " " * (4095 - len(s)) + "}")' >"$N/good-4096.json"
echo '{"serial":"Q2DM-HIDE-0001"}' >"$N/.hidden.json"
check "the exactly-4096-byte request is 4096 bytes" test "$(size "$N/good-4096.json")" = 4096

starts "a start with a stale tmp/ file and a batch of bad spool files" 3
check "the stale tmp/ file is moved to rejected/" test -f "$T/spool/rejected/stale.json" -a ! -e "$T/spool/tmp/stale.json"
check "... with a log line" grep -q "moved 1 stale file(s) from \"$T/spool/tmp\" to rejected/" "$T/daemon.log"
check "the fresh tmp/ file is left alone" test -f "$T/spool/tmp/fresh.json" -a ! -e "$T/spool/rejected/fresh.json"
serial_done() { ctl jobs --serial "$1" --json | python3 -c 'import json,sys; a=json.load(sys.stdin); sys.exit(0 if len(a)==1 and a[0]["state"]=="complete" else 1)'; }
check "the good file in the batch becomes a job and completes" wait_until 20 serial_done Q2DM-GOOD-0001
check "the 4096-byte file becomes a job and completes" wait_until 20 serial_done Q2DM-GOOD-0002
rejected_ok() { # rejected_ok NAME PHRASE
	test -e "$T/spool/rejected/$1" -o -L "$T/spool/rejected/$1" || return 1
	test ! -e "$N/$1" -a ! -L "$N/$1" || return 1
	grep -qF -- "$2" "$T/spool/rejected/$1.reason"
}
for f in $(printf '%s\n' "${!want[@]}" | sort); do
	check "bad spool file $f: in rejected/ with its reason ($(cat "$T/spool/rejected/$f.reason" 2>/dev/null))" \
		rejected_ok "$f" "${want[$f]}"
done
check "the symlink's target is untouched" test "$(cat "$T/target.json")" = '{"serial":"Q2DM-BBBB-0015","duration":1}'
check "rejected/ holds the FIFO as it was" test -p "$T/spool/rejected/e-fifo.json"
check "the empty directory in new/ is removed, not moved into rejected/" \
	test ! -e "$N/e-dir.json" -a ! -e "$T/spool/rejected/e-dir.json"
check "a hidden file in new/ is left alone" test -f "$N/.hidden.json"
check "nothing else is left in new/" test "$(ls "$N")" = ""
check "the job reused id kept its own serial" test "$(ctl status "${J[1]}" --json | json 'j["serial"] + " " + j["state"]')" = "Q2DM-AAAA-0002 complete"
check "no bad file became a job" test "$(ctl jobs --json | json 'len(j)')" = 5
nrej=${#want[@]}
check "/metrics counts $nrej rejected files" sh -c "curl -sS --max-time 5 '$D_URL/metrics' | grep -qx 'blinkhook_spool_rejected_total $nrej'"
check "the daemon is still healthy" curl -fsS --max-time 5 -o /dev/null "$D_URL/healthz"

# ---- (e, live) the same kinds arriving while the daemon runs, the producer's way (tmp/, then rename) ----
P=$T/spool/tmp
printf 'not json' >"$P/l-notjson.json"
printf '{"serial":"Q2DM-CCCC-0001","duration":0}' >"$P/l-dur0.json"
ln -s "$T/target.json" "$P/l-symlink.json"
mkdir "$P/l-dir.json"
mkfifo "$P/l-fifo.json"
python3 -c 'import sys; sys.stdout.write("{\"serial\":\"Q2DM-CCCC-0002\"" + " " * 5000 + "}")' >"$P/l-large.json"
echo '{"serial":"Q2DM-GOOD-0003","duration":1}' >"$P/l-good.json"
for f in l-notjson l-dur0 l-symlink l-dir l-fifo l-large l-good; do mv "$P/$f.json" "$N/$f.json"; done
check "while running: the good file becomes a job and completes" wait_until 20 serial_done Q2DM-GOOD-0003
live_rejected() {
	rejected_ok l-notjson.json "$R_JSON" && rejected_ok l-dur0.json "$R_DUR" &&
		rejected_ok l-symlink.json "symbolic link" && test ! -e "$N/l-dir.json" -a ! -e "$T/spool/rejected/l-dir.json" &&
		rejected_ok l-fifo.json "not a regular file" && rejected_ok l-large.json "larger than 4096"
}
check "while running: each bad file goes to rejected/ with its reason (the empty directory is removed)" wait_until 10 live_rejected
check "the daemon is still healthy" curl -fsS --max-time 5 -o /dev/null "$D_URL/healthz"
check "the daemon's log shows no sanitizer report" sh -c "! grep -q -e 'ERROR: AddressSanitizer' -e 'runtime error:' '$T/daemon.log'"
stop_daemon
check "SIGTERM: exit 0" test "$D_STATUS" = 0
