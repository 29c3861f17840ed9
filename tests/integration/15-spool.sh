#!/usr/bin/env bash
# parallel: no (/healthz must answer within 1 s while 2,000 files come in)
# The spool as a trust boundary: what careless or hostile queue members put
# into it never stops the queue, spins the daemon or touches anything outside
# the spool.  Run as root, the daemon runs as an unprivileged user (bhtest-d,
# group bhtest-q, as the unit's blinkhook:blinkhook-queue) and the producer
# as another member of the group (bhtest-p), so that modes mean something.
. "$(dirname "$0")/../lib.sh"

SERIAL=Q2SP-OOL1-AAAA
if [ "$(id -u)" = 0 ]; then
	# Made once a machine, under a lock: this script may run beside itself
	# (the ASan pass), and of two useradds at once one fails.
	{
		flock 9
		getent group bhtest-q >/dev/null || groupadd -r bhtest-q
		id bhtest-d >/dev/null 2>&1 || useradd -r -M -N -g bhtest-q -s /usr/sbin/nologin bhtest-d
		id bhtest-p >/dev/null 2>&1 || useradd -r -M -U -G bhtest-q -s /usr/sbin/nologin bhtest-p
	} 9>"${TMPDIR:-/tmp}/blinkhook-test-users.lock"
	if ! id bhtest-d >/dev/null 2>&1 || ! id -nG bhtest-p | grep -qw bhtest-q; then
		echo "# SKIP cannot create the test users bhtest-d and bhtest-p"
		exit 0
	fi
	DAEMON_WRAPPER="setpriv --reuid=bhtest-d --regid=bhtest-q --init-groups"
	as_producer() { setpriv --reuid=bhtest-p --regid=bhtest-p --init-groups "$@"; }
	as_daemon_user() { setpriv --reuid=bhtest-d --regid=bhtest-q --init-groups "$@"; }
	D_OWNER=bhtest-d:bhtest-q
else
	DAEMON_WRAPPER=
	as_producer() { "$@"; }
	as_daemon_user() { "$@"; }
	D_OWNER=$(id -un):$(id -gn)
fi
chmod 0755 "$T"
# A tree under a home directory of mode 0700 (root's; Debian 12 makes new
# users' homes so) is closed to the test users: they run copies in $T.
if ! as_producer test -x "$BLINKHOOKCTL" || ! as_daemon_user test -x "$BLINKHOOKD"; then
	install -d -m 0755 "$T/bin"
	install -m 0755 "$BLINKHOOKD" "$T/bin/blinkhookd"
	install -m 0755 "$BLINKHOOKCTL" "$T/bin/blinkhookctl"
	BLINKHOOKD=$T/bin/blinkhookd
	BLINKHOOKCTL=$T/bin/blinkhookctl
fi
# The producer's python, not one under root's home.
PY=$(command -v /usr/bin/python3 || command -v python3)

start_sim --min-interval 0.01 --blink-time 0.2
write_config "[meraki] min_interval = 0.01s"
chmod 0644 "$T/bh.conf"
# The layout systemd/blinkhook.tmpfiles makes.
install -d -m 0750 -o "${D_OWNER%:*}" -g "${D_OWNER#*:}" "$T/state"
install -d -m 2755 -o "${D_OWNER%:*}" -g "${D_OWNER#*:}" "$T/spool"
install -d -m 3770 -o "${D_OWNER%:*}" -g "${D_OWNER#*:}" "$T/spool/tmp" "$T/spool/new"
install -d -m 2750 -o "${D_OWNER%:*}" -g "${D_OWNER#*:}" "$T/spool/rejected"
start_daemon

pctl() { as_producer "$BLINKHOOKCTL" -c "$T/bh.conf" "$@"; }
# drop_files PREFIX N CONTENT [MODE]: N files new/PREFIX-NNNN.json written
# as a producer does (into tmp/, then renamed), "%d" in CONTENT the file's
# number, MODE (octal) set before the rename.
drop_files() {
	as_producer "$PY" - "$T/spool" "$@" <<'EOF'
import os, sys
spool, prefix, n, content = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
mode = int(sys.argv[5], 8) if len(sys.argv) > 5 else None
for i in range(n):
    name = "%s-%04d.json" % (prefix, i)
    t = os.path.join(spool, "tmp", name)
    with open(t, "w") as f:
        f.write(content.replace("%d", str(i)))
    if mode is not None:
        os.chmod(t, mode)
    os.rename(t, os.path.join(spool, "new", name))
EOF
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$D_PID/stat"; }
log_lines() { wc -l <"$T/daemon.log"; }
n_in() { find "$T/spool/$1" -mindepth 1 -maxdepth 1 ! -name '*.reason' | wc -l; }
new_empty() { test "$(n_in new)" = 0; }
# In the job log (status would also find a request still waiting in new/).
job_known() { grep -q "job $1: queued" "$T/daemon.log"; }
metric() { curl -sS --max-time 5 "$D_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# --- 1. A producer with umask 077 -------------------------------------------
id1=$(as_producer sh -c 'umask 077; exec "$0" -c "$1" blink "$2"' "$BLINKHOOKCTL" "$T/bh.conf" "$SERIAL")
check "blink with umask 077 prints an id" test -n "$id1"
check "the umask-077 request is taken by the daemon" wait_until 10 job_known "$id1"
check "... and completes" wait_state 20 "$id1" complete

# --- 2. A reused id ---------------------------------------------------------
idr=$(pctl blink "$SERIAL" --id rack12-sw3)
check "blink --id rack12-sw3 is queued" test "$idr" = rack12-sw3
check "... and taken" wait_until 10 job_known rack12-sw3
out=$(pctl blink "$SERIAL" --id rack12-sw3 2>&1)
rc=$?
check "blink --id with an id the log has exits 1" test "$rc" = 1
check "... saying the id is already used" grep -q 'already used' <<<"$out"
# A job log that cannot be read: one line says so, and the request is queued.
mkdir -p "$T/badstate/jobs.log" "$T/spool2/tmp" "$T/spool2/new" "$T/spool2/rejected"
sed -e "s|^dir = $T/state\$|dir = $T/badstate|" -e "s|^dir = $T/spool\$|dir = $T/spool2|" "$T/bh.conf" >"$T/bad.conf"
out=$("$BLINKHOOKCTL" -c "$T/bad.conf" blink "$SERIAL" --id unread-log-1 2>"$T/err")
rc=$?
check "blink --id with an unreadable job log still queues it (exit $rc)" test "$rc" = 0 -a "$out" = unread-log-1
check "... and says so in one line ($(wc -l <"$T/err"))" sh -c \
	"[ \$(wc -l <'$T/err') = 1 ] && grep -q 'cannot read .*jobs.log: .*; not checking whether id \"unread-log-1\" is already used' '$T/err'"

as_producer sh -c "umask 027; printf '%s\n' '{\"id\":\"rack12-sw3\",\"serial\":\"$SERIAL\",\"duration\":20}' \
	>'$T/spool/tmp/again.json' && mv '$T/spool/tmp/again.json' '$T/spool/new/again.json'"
check "a request reusing an id is moved to rejected/" wait_until 10 test -e "$T/spool/rejected/again.json"
check "... with the reason 'already used'" grep -q 'already used' "$T/spool/rejected/again.json.reason"
check "... and a log line" grep -q 'again.json.*rejected: its id is already used' "$T/daemon.log"
as_producer sh -c "umask 027; printf '%s\n' '{\"id\":\"rack12-sw3\",\"serial\":\"$SERIAL\",\"duration\":20}' \
	>'$T/spool/tmp/again.json' && mv '$T/spool/tmp/again.json' '$T/spool/new/again.json'"
check "a second reject of the same name is moved to rejected/again.json.1" \
	wait_until 10 test -e "$T/spool/rejected/again.json.1"
check "... and its log line names where it went" \
	wait_until 5 grep -q 'again.json.*rejected: its id is already used by another job (moved to rejected/again.json.1)' "$T/daemon.log"

# --- 3. Where even the move to rejected/ fails (here: rejected/ not
# writable), a file is skipped with one log line, never retried in a loop.
chmod 0550 "$T/spool/rejected"
drop_files stuck 5 $'not json\n'
id3=$(pctl blink "$SERIAL")
check "with rejected/ unwritable, a good request still completes" wait_state 20 "$id3" complete
id4=$(pctl blink "$SERIAL")
check "... and another after it" wait_state 20 "$id4" complete
stuck_lines=$(grep -c 'stuck-.*cannot be moved to rejected' "$T/daemon.log")
check "each file that cannot be moved is logged once ($stuck_lines lines for 5 files, 2 rounds)" test "$stuck_lines" = 5
t0=$(cpu_ticks)
sleep 2
t1=$(cpu_ticks)
check "the daemon stays idle with them in new/ (CPU $((t1 - t0)) ticks in 2 s)" test $((t1 - t0)) -le 10
chmod 2750 "$T/spool/rejected"
rm -f "$T"/spool/new/stuck-*

# --- 3b. A member's directories in new/: never moved into rejected/, where
# one anybody may write in would stay writable; an empty one is removed.
as_producer sh -c "mkdir '$T/spool/new/evil-dir' '$T/spool/new/empty-dir' && chmod 777 '$T/spool/new/evil-dir' &&
	echo x >'$T/spool/new/evil-dir/inside'"
idd=$(pctl blink "$SERIAL")
check "with a directory in new/, a good request still completes" wait_state 20 "$idd" complete
idd=$(pctl blink "$SERIAL")
check "... and another after it" wait_state 20 "$idd" complete
check "the directory is not moved into rejected/" sh -c "[ -d '$T/spool/new/evil-dir' ] && [ ! -e '$T/spool/rejected/evil-dir' ]"
check "the empty directory is removed" test ! -e "$T/spool/new/empty-dir"
n=$(grep -c 'evil-dir' "$T/daemon.log")
check "the directory is logged once ($n)" test "$n" = 1
t0=$(cpu_ticks)
sleep 2
t1=$(cpu_ticks)
check "the daemon stays idle with it in new/ (CPU $((t1 - t0)) ticks in 2 s)" test $((t1 - t0)) -le 10
rm -rf "$T/spool/new/evil-dir"

# --- 4. 256 unreadable files and a socket: the queue keeps flowing ----------
drop_files locked 256 $'{"serial": "Q2SP-OOL1-AAAA"}\n' 0
as_producer "$PY" -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
	"$T/spool/new/a-socket.json"
lines0=$(log_lines)
id2=$(pctl blink "$SERIAL")
check "a good request queued after 256 unreadable files and a socket is taken" wait_until 10 job_known "$id2"
check "... and completes" wait_state 20 "$id2" complete
check "the 256 unreadable files and the socket are moved to rejected/" wait_until 10 new_empty
check "their reasons say why (may not read / socket)" \
	sh -c "grep -l 'may not read' '$T'/spool/rejected/locked-*.reason | wc -l | grep -qx 256 &&
		grep -q socket '$T/spool/rejected/a-socket.json.reason'"
sleep 0.5
t0=$(cpu_ticks)
l0=$(log_lines)
sleep 2
t1=$(cpu_ticks)
l1=$(grep -vc 'not logged one by one' "$T/daemon.log")
l0=$((l0 - $(head -n "$l0" "$T/daemon.log" | grep -c 'not logged one by one')))
diag "daemon CPU over 2 s after the intake: $((t1 - t0)) tick(s); log lines for the 257 rejects: $((l0 - lines0))"
check "the daemon is idle afterwards (CPU $((t1 - t0)) ticks in 2 s)" test $((t1 - t0)) -le 10
check "its log does not grow while idle (but for the limiter's one summary line)" test "$l1" = "$l0"
check "the rejects' log lines are limited ($((l0 - lines0)) for 257)" test $((l0 - lines0)) -le 40

# --- 5. Links: nothing outside the spool is touched -------------------------
mkdir -p "$T/outside"
printf 'the victim\n' >"$T/outside/victim"
printf 'the second victim\n' >"$T/outside/victim2"
chown "$D_OWNER" "$T/outside/victim" "$T/outside/victim2"
touch -d '2001-02-03 04:05:06' "$T/outside/victim" "$T/outside/victim2"
before=$(stat -c '%Y %s' "$T/outside/victim" "$T/outside/victim2" | tr '\n' ' ')
# A hard link in new/ to a file outside, and a planted link where its reason
# would go (where fs.protected_hardlinks=0, any member could make both).
ln "$T/outside/victim2" "$T/spool/rejected/linked.json.reason"
ln "$T/outside/victim" "$T/spool/new/linked.json"
# (A link is no IN_MOVED_TO: the next request's arrival makes the scan.)
id6=$(pctl blink "$SERIAL")
check "a hard link in new/ is moved to rejected/" wait_until 10 test ! -e "$T/spool/new/linked.json"
check "... with the reason 'hard links'" wait_until 5 grep -q 'hard links' "$T/spool/rejected/linked.json.reason"
after=$(stat -c '%Y %s' "$T/outside/victim" "$T/outside/victim2" | tr '\n' ' ')
check "the files outside the spool keep their content and mtime" \
	sh -c "test '$before' = '$after' && grep -qx 'the victim' '$T/outside/victim' &&
		grep -qx 'the second victim' '$T/outside/victim2'"

# A symbolic link for rejected/: the daemon refuses to start.
stop_daemon
mv "$T/spool/rejected" "$T/spool/rejected.real"
mkdir -p "$T/outside/rej"
chown "$D_OWNER" "$T/outside/rej"
ln -s "$T/outside/rej" "$T/spool/rejected"
printf 'x\n' >"$T/spool/new/bad.json"
chown "$D_OWNER" "$T/spool/new/bad.json"
MERAKI_DASHBOARD_API_KEY=$API_KEY timeout 10 $DAEMON_WRAPPER "$BLINKHOOKD" -c "$T/bh.conf" 2>"$T/symlink.log"
rc=$?
check "with rejected/ a symbolic link the daemon refuses to start (exit $rc)" test "$rc" != 0 -a "$rc" != 124
check "... saying it is a symbolic link" grep -q 'symbolic link' "$T/symlink.log"
check "... and nothing is written through it" test -z "$(ls -A "$T/outside/rej")"
rm "$T/spool/rejected" "$T/spool/new/bad.json"
mv "$T/spool/rejected.real" "$T/spool/rejected"

# --- 6. 2,000 garbage files: bounded log, /healthz answers during the intake -
start_daemon
# First a file that looks taken by the run before (cp -p, touch -d can make
# one): the same id, serial and duration, older than the job.  It is removed,
# but with a line that names it and the job.
dur=$(ctl status rack12-sw3 --json | json 'j["duration"]')
as_producer sh -c "umask 027; printf '%s\n' '{\"id\":\"rack12-sw3\",\"serial\":\"$SERIAL\",\"duration\":$dur}' \
	>'$T/spool/tmp/retaken.json' && touch -d '1 hour ago' '$T/spool/tmp/retaken.json' &&
	mv '$T/spool/tmp/retaken.json' '$T/spool/new/retaken.json'"
check "a file that looks taken before the restart is removed" \
	wait_until 10 test ! -e "$T/spool/new/retaken.json"
check "... not silently: a line names the file and the job" wait_until 5 \
	grep -q 'spool file ".*/retaken.json" removed: job rack12-sw3 took the same request before a restart' "$T/daemon.log"
rej0=$(metric blinkhook_spool_rejected_total)
lines0=$(log_lines)
python3 - "$D_URL/healthz" "$T/probe.json" "$T/garbage.go" <<'EOF' &
import json, os, sys, time, urllib.request
url, out, go = sys.argv[1:]
worst, n = 0.0, 0
limit = time.monotonic() + 10
while not os.path.exists(go) and time.monotonic() < limit:
    time.sleep(0.005)
end = time.monotonic() + 4
while time.monotonic() < end:
    t = time.monotonic()
    urllib.request.urlopen(url, timeout=5).read()
    worst = max(worst, time.monotonic() - t)
    n += 1
    time.sleep(0.01)
json.dump({"worst": worst, "n": n}, open(out, "w"))
EOF
probe=$!
t_start=$(date +%s.%N)
touch "$T/garbage.go"
drop_files garbage 2000 $'garbage %d\n'
t_written=$(date +%s.%N)
wait_until 30 new_empty
t_end=$(date +%s.%N)
wait "$probe"
worst=$(json 'round(j["worst"], 3)' <"$T/probe.json")
glines=$(($(log_lines) - lines0))
rej1=$(metric blinkhook_spool_rejected_total)
diag "2000 garbage files: written in $(python3 -c "print(round($t_written - $t_start, 2))")s, new/ empty $(python3 -c "print(round($t_end - $t_start, 2))")s after the first; worst /healthz latency during the intake ${worst}s ($(json 'j["n"]' <"$T/probe.json") probes); $glines log lines"
check "all 2000 garbage files are moved to rejected/" test "$(ls "$T"/spool/rejected/garbage-*.reason | wc -l)" = 2000
check "/metrics counts every one ($rej0 -> $rej1)" test "$((rej1 - rej0))" = 2000
check "the log got at most 30 lines for them ($glines)" test "$glines" -le 30
check "/healthz answered within 1.0 s throughout (worst ${worst}s)" python3 -c "import sys; sys.exit(not $worst < 1.0)"
id5=$(pctl blink "$SERIAL")
check "a good request after them completes" wait_state 20 "$id5" complete

# --- 7. A failed scan is retried on a timer --------------------------------
# Out of descriptors, listing the spool fails (EMFILE).  Connections can no
# longer get it there (the connection limit keeps descriptors in reserve:
# 27-descriptors.sh), so the daemon's own limit is lowered under it to the
# lowest free descriptor: every new one fails.  The request that caused the
# scan must still be taken once descriptors are back, by the retry, without
# another file arriving.
lowest_free=$(python3 -c '
import os, sys
used = {int(n) for n in os.listdir("/proc/%s/fd" % sys.argv[1])}
print(next(i for i in range(1 << 20) if i not in used))' "$D_PID")
limits=$(as_daemon_user prlimit --pid "$D_PID" --nofile --output SOFT,HARD --noheadings --raw | awk '{print $1 ":" $2}')
diag "lowest free descriptor $lowest_free, limits $limits"
as_daemon_user prlimit --pid "$D_PID" --nofile="$lowest_free:${limits#*:}"
idm=$(pctl blink "$SERIAL")
check "with no descriptor to spare, the scan fails and says it tries again" \
	wait_until 10 grep -q 'cannot list the spool.*trying again in' "$T/daemon.log"
as_daemon_user prlimit --pid "$D_PID" --nofile="$limits"
check "... and the request is taken by the retry once descriptors are back, nothing new arriving" \
	wait_until 10 job_known "$idm"
