#!/usr/bin/env bash
# asan: skip (it installs the normal build and boots systemd around it)
# The units under real systemd: a throwaway systemd-nspawn container (tmpfs
# root, the host's /usr read-only, a private network with loopback only)
# boots systemd; `make install PREFIX=/usr/local` goes in as its /usr/local.
# In it: the README's install steps, the socket and the service, blinks
# against the simulator, socket activation, a restart with the socket staying
# up, a reload, the watchdog killing and restarting a frozen (SIGSTOPped)
# daemon, and an instance of the template.
#
# Needs root. Skipped, loudly ("# SKIP: ..."), only when systemd-nspawn cannot
# run a container on this machine at all (e.g. inside an unprivileged
# container); a container that runs but does not boot is a failure.
. "$(dirname "$0")/../lib.sh"

MACHINE=blinkhook-t$$
SIM_IN_PORT=9797
CB_PORT=8787 # the ListenStream= of blinkhookd.socket
CT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
NS_PID=
LEADER=

skip() {
	echo "# SKIP: $*"
	echo "# SKIP 65-nspawn.sh: $*" >&2
	exit 0
}

# ---- the container ----

# stop_container: poweroff through nspawn (SIGTERM), bounded; then SIGKILL
# the container's init and nspawn, by pid.
stop_container() {
	[ -n "$NS_PID" ] || return 0
	if kill -0 "$NS_PID" 2>/dev/null; then
		kill -TERM "$NS_PID" 2>/dev/null
		local i
		for i in $(seq 200); do
			kill -0 "$NS_PID" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$NS_PID" 2>/dev/null; then
			diag "the container did not power off in 20 s; killing it"
			[ -n "$LEADER" ] && kill -KILL "$LEADER" 2>/dev/null
			kill -KILL "$NS_PID" 2>/dev/null
		fi
	fi
	wait "$NS_PID" 2>/dev/null
	NS_PID=
}
trap 'stop_container; cleanup' EXIT

# in_ct COMMAND...: runs in the container's namespaces, as its root, with a
# clean environment; bounded.
in_ct() {
	timeout 60 nsenter --target "$LEADER" --mount --uts --ipc --net --pid --cgroup -- \
		env -i PATH="$CT_PATH" SYSTEMD_PAGER= SYSTEMD_COLORS=0 LANG=C.UTF-8 "$@"
}
# as_tech COMMAND...: the same, as the user "tech", a member of blinkhook-queue.
as_tech() { in_ct setpriv --reuid=tech --regid=tech --init-groups "$@"; }

ct_show() { in_ct systemctl show -P "$2" "$1"; }
ct_state_is() { test "$(ct_show "$1" ActiveState)" = "$2"; }
ct_ctl() { in_ct blinkhookctl "$@"; }
ct_job_state() { ct_ctl status "$1" --json | json 'j["state"]'; }
ct_state_of_job() { test "$(ct_job_state "$1" 2>/dev/null)" = "$2"; }
ct_wait_state() { wait_until "$1" ct_state_of_job "$2" "$3"; }
ct_curl() { in_ct curl -sS --max-time "${CURL_MAX:-5}" "$@"; }
healthz_ok() { test "$(ct_curl -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CB_PORT/healthz")" = 200; }
# The listening socket's inode, from the container's /proc/net/tcp.
listen_inode() {
	local port_hex
	port_hex=$(printf '%04X' "$CB_PORT")
	awk -v a="0100007F:$port_hex" '$2 == a && $4 == "0A" { print $10 }' "/proc/$LEADER/net/tcp"
}
journal_has() { in_ct journalctl --no-pager -q -u "$1" | grep -q -- "$2"; }
dump_journal() {
	in_ct journalctl --no-pager -q -n "${2:-40}" -u "$1" 2>&1 | sed 's/^/#   /'
}

# ---- preconditions ----

[ "$(id -u)" = 0 ] || skip "systemd-nspawn needs root (running as uid $(id -u))"
if ! command -v systemd-nspawn >/dev/null || ! command -v nsenter >/dev/null; then
	notok "systemd-nspawn and nsenter are installed (Debian packages systemd-container, util-linux; make deps installs them)"
	exit 1
fi
probe=$(timeout 60 systemd-nspawn --quiet --register=no --keep-unit --volatile=yes --directory=/ \
	--private-network --machine="$MACHINE-probe" </dev/null /bin/true 2>&1)
rc=$?
if [ "$rc" != 0 ]; then
	skip "systemd-nspawn cannot run a container here (exit $rc): $(tr '\n' ' ' <<<"$probe" | sed 's/\x1b\[[0-9;]*m//g')"
fi

# ---- install into a staging root, boot ----

STAGE=$T/stage
make -s -C "$TOP" install DESTDIR="$STAGE" PREFIX=/usr/local B="$B" >"$T/install.log" 2>&1
check "make install DESTDIR=... PREFIX=/usr/local succeeds" test $? = 0
check "the installed unit runs /usr/local/sbin/blinkhookd" \
	grep -q '^ExecStart=/usr/local/sbin/blinkhookd ' "$STAGE/usr/local/lib/systemd/system/blinkhookd.service"

# A machine id of its own: not a first boot, so /etc/ (an empty tmpfs) gets
# no preset symlinks and nothing from the host's /usr starts but the basics.
python3 -c 'import uuid; print(uuid.uuid4().hex)' >"$T/machine-id"
systemd-nspawn --quiet --register=no --keep-unit --boot --volatile=yes --directory=/ \
	--private-network --machine="$MACHINE" --console=read-only \
	--bind-ro="$T/machine-id:/etc/machine-id" \
	--bind-ro="$STAGE/usr/local:/usr/local" \
	--bind-ro="$TOP/tests/sim:/srv/blinkhook-sim" \
	-- systemd.unit=multi-user.target systemd.mask=systemd-machine-id-commit.service \
	</dev/null >"$T/nspawn.log" 2>&1 &
NS_PID=$!

# child_of PID: a child process of PID (the container's init is nspawn's only
# child); from /proc, so that procps is not needed.
child_of() {
	python3 -c '
import os, sys
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            stat = open("/proc/%s/stat" % p).read()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == sys.argv[1]:
            print(p)
            break
' "$1"
}
booted() {
	kill -0 "$NS_PID" 2>/dev/null || return 2
	[ -n "$LEADER" ] || LEADER=$(child_of "$NS_PID")
	[ -n "$LEADER" ] || return 1
	case "$(in_ct systemctl is-system-running 2>/dev/null)" in
	running | degraded) return 0 ;;
	esac
	return 1
}
if ! wait_until 60 booted; then
	notok "the container boots systemd within 60 s"
	sed 's/\x1b\[[0-9;]*m//g; s/^/#   /' "$T/nspawn.log" | tail -n 40
	exit 1
fi
ok "the container boots systemd (pid $LEADER on the host)"
check "the container's PID 1 is systemd" test "$(in_ct cat /proc/1/comm)" = systemd
only_lo() { test "$(awk -F: 'NR > 2 { gsub(/ /, "", $1); print $1 }' "/proc/$LEADER/net/dev" | tr '\n' ' ')" = 'lo '; }
check "the container has a private network (loopback only)" only_lo
failed_units=$(in_ct systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')
[ -z "$failed_units" ] || diag "failed units in the container after boot: $failed_units"

# ---- the README's install steps ----

R=/proc/$LEADER/root
# What `make install` put in /etc, as it put it (the config 0640 root:root).
cp -a "$STAGE/etc/blinkhook" "$R/etc/"
cat >"$R/etc/blinkhook/blinkhookd.conf" <<EOF
# written by 65-nspawn.sh
[meraki]
base_url = http://127.0.0.1:$SIM_IN_PORT/api/v1
min_interval = 0.2s
retry_initial = 100ms
retry_max = 1s
request_timeout = 5s
[callback]
public_url = http://127.0.0.1:$CB_PORT
EOF
(umask 077 && printf '%s\n' "$API_KEY" >"$R/etc/blinkhook/meraki-api-key")

in_ct systemd-sysusers >"$T/sysusers.log" 2>&1
check "systemd-sysusers succeeds" test $? = 0
check "sysusers made the user blinkhook and the group blinkhook-queue" \
	sh -c "grep -q '^blinkhook:' '$R/etc/passwd' && grep -q '^blinkhook-queue:' '$R/etc/group'"
# Only our own tmpfiles.d entry: the host's /usr may carry others whose users
# this container lacks.
in_ct systemd-tmpfiles --create /usr/local/lib/tmpfiles.d/blinkhook.conf >"$T/tmpfiles.log" 2>&1
check "systemd-tmpfiles --create succeeds" test $? = 0
check "the spool is blinkhook:blinkhook-queue; only tmp/ and new/ group-writable (sticky)" \
	test "$(in_ct stat -c '%n %U:%G %a' /var/spool/blinkhook /var/spool/blinkhook/tmp /var/spool/blinkhook/new \
		/var/spool/blinkhook/rejected | tr '\n' ' ')" = "/var/spool/blinkhook blinkhook:blinkhook-queue 2751 \
/var/spool/blinkhook/tmp blinkhook:blinkhook-queue 3770 /var/spool/blinkhook/new blinkhook:blinkhook-queue 3770 \
/var/spool/blinkhook/rejected blinkhook:blinkhook-queue 2750 "
check "the config is root:blinkhook-queue 0640 (the daemon and blinkhookctl users read it)" \
	test "$(in_ct stat -c '%U:%G %a' /etc/blinkhook/blinkhookd.conf)" = "root:blinkhook-queue 640"
in_ct systemctl daemon-reload
check "systemd sees the installed units" \
	test "$(ct_show blinkhookd.socket LoadState)/$(ct_show blinkhookd.service LoadState)" = loaded/loaded
in_ct useradd -M -U -G blinkhook-queue -s /usr/sbin/nologin tech
check "a queue member 'tech' exists" test "$(in_ct id -nG tech | tr ' ' '\n' | grep -cx blinkhook-queue)" = 1

# ---- the simulator, in the container (it shares the private network) ----

in_ct systemd-run --quiet --unit=merakisim --property=Type=exec \
	/usr/bin/python3 /srv/blinkhook-sim/merakisim.py --host 127.0.0.1 --port "$SIM_IN_PORT" \
	--foreign-host 127.0.0.2 --api-key "$API_KEY" --min-interval 0.1 --blink-time 0.3 --log /run/merakisim.log
sim_up() { ct_curl -f -o /dev/null "http://127.0.0.1:$SIM_IN_PORT/_sim/health"; }
if ! wait_until 20 sim_up; then
	notok "the simulator runs in the container"
	dump_journal merakisim.service
	exit 1
fi
ok "the simulator runs in the container"

# ---- the socket and the service ----

in_ct systemctl start blinkhookd.socket blinkhookd.service >"$T/start.log" 2>&1
rc=$?
check "systemctl start blinkhookd.socket blinkhookd.service succeeds" test "$rc" = 0
if ! ct_state_is blinkhookd.service active; then
	notok "blinkhookd.service is active"
	sed 's/^/#   /' "$T/start.log"
	dump_journal blinkhookd.service
	exit 1
fi
ok "blinkhookd.service is active"
check "blinkhookd.socket is active" ct_state_is blinkhookd.socket active
check "the daemon listens on the socket passed by systemd" journal_has blinkhookd.service 'listening on the socket passed by systemd'
check "the daemon has the API key from the credential" journal_has blinkhookd.service 'API key from credential'
# LimitNOFILE=65536, or what the container's own limit leaves of it: far
# more than the 1024 the daemon's connections once took all of.
check "under the unit the daemon has the descriptors for its cap of 1024 connections" \
	journal_has blinkhookd.service 'serving up to 1024 connections at once ([0-9]* file descriptors)'
MAIN=$(ct_show blinkhookd.service MainPID)
# "uid gid supplementary-groups", numeric, from the container's /proc.
# (awk on the host's side: the container's /etc/alternatives is empty.)
ids_of() { in_ct cat "/proc/$1/status" | awk '/^Uid:/ { u = $2 } /^Gid:/ { g = $2 } /^Groups:/ { $1 = ""; s = $0 } END { print u, g, s }' | tr -s ' ' | sed 's/ $//'; }
queue_gid=$(in_ct getent group blinkhook-queue | cut -d: -f3)
want_ids="$(in_ct id -u blinkhook) $queue_gid $queue_gid"
check "the daemon runs as blinkhook:blinkhook-queue, no other groups (uid gid groups: $want_ids)" \
	test "$(ids_of "$MAIN")" = "$want_ids"
caps_none() { in_ct grep -E '^Cap(Eff|Prm|Bnd):' "/proc/$1/status" | grep -vq ':[[:space:]]*0000000000000000$'; test $? = 1; }
check "the daemon has no capabilities (effective, permitted, bounding)" caps_none "$MAIN"
status_text_ok() { ct_show blinkhookd.service StatusText | grep -qE '^[0-9]+ queued, [0-9]+ submitted, [0-9]+ complete, [0-9]+ failed, [0-9]+ expired$'; }
check "the daemon's STATUS= is systemd's StatusText" status_text_ok
check "/healthz answers 200 through the socket" healthz_ok

# ---- blinks ----

ids=()
for s in Q2AA-BBBB-NS01 Q2AA-BBBB-NS02; do
	ids+=("$(ct_ctl blink "$s" --duration 1)")
done
tech_id=$(as_tech blinkhookctl blink Q2AA-BBBB-NS03 --duration 1)
check "the queue member can queue a blink" test -n "$tech_id"
for id in "${ids[@]}" "$tech_id"; do
	check "job $id reaches complete in the container" ct_wait_state 20 "$id" complete
done
story_complete() {
	local out
	out=$(in_ct journalctl --no-pager -q -o cat "BLINKHOOK_JOB_ID=$1")
	grep -q "job $1: queued" <<<"$out" && grep -q "job $1: submitted" <<<"$out" &&
		grep -q "job $1: complete (callback from " <<<"$out"
}
check "journalctl BLINKHOOK_JOB_ID=... tells one job's story: queued, submitted, callback, complete" \
	wait_until 10 story_complete "${ids[0]}"
story_serial() { in_ct journalctl --no-pager -q -o cat BLINKHOOK_SERIAL=Q2AA-BBBB-NS02 BLINKHOOK_STATE=complete | grep -q "job ${ids[1]}: complete"; }
check "the journal fields BLINKHOOK_SERIAL and BLINKHOOK_STATE select entries too" story_serial
tech_reads_status() { test "$(as_tech blinkhookctl status "$1" --json | json 'j["state"]')" = complete; }
check "the queue member can read the job's status" tech_reads_status "$tech_id"
tech_lists_jobs() { test "$(as_tech blinkhookctl jobs --json | json 'len(j)')" = "$1"; }
check "the queue member can list the jobs" tech_lists_jobs 3
callbacks_ok() {
	ct_curl "http://127.0.0.1:$SIM_IN_PORT/_sim/callbacks" | python3 -c '
import json, sys
cbs = json.load(sys.stdin)
assert len(cbs) >= int(sys.argv[2]), cbs
assert all(c["url"].startswith("http://127.0.0.1:%s/callbacks/leds-blink/" % sys.argv[1]) for c in cbs), cbs
assert all(c["http_status"] == 200 for c in cbs), cbs
' "$CB_PORT" "$1"
}
check "every callback came through the socket and was answered 200" callbacks_ok 3

# ---- socket activation, and a restart with the socket staying up ----

INODE=$(listen_inode)
check "the listening socket exists (inode ${INODE:-none})" test -n "$INODE"
pid1_holds() { ls -l "/proc/$LEADER/fd" 2>/dev/null | grep -q "socket:\[$1\]"; }
check "the container's systemd holds the listening socket" pid1_holds "$INODE"

in_ct systemctl stop blinkhookd.service 2>>"$T/systemctl.log"
check "systemctl stop: the daemon exited 0 (Result=$(ct_show blinkhookd.service Result), status $(ct_show blinkhookd.service ExecMainStatus))" \
	test "$(ct_show blinkhookd.service Result)/$(ct_show blinkhookd.service ExecMainStatus)" = success/0
check "with the service stopped the socket stays active" ct_state_is blinkhookd.socket active
check "with the service stopped the socket keeps its inode" test "$(listen_inode)" = "$INODE"
activated() { CURL_MAX=20 healthz_ok; }
check "a connection to the socket starts the stopped service and is answered 200 (socket activation)" activated
check "the service is active again" ct_state_is blinkhookd.service active

MAIN=$(ct_show blinkhookd.service MainPID)
in_ct systemctl restart blinkhookd.service
rc=$?
check "systemctl restart blinkhookd.service succeeds" test "$rc" = 0
check "after the restart the daemon is a new process" test "$(ct_show blinkhookd.service MainPID)" != "$MAIN"
check "the socket stayed active across the restart" ct_state_is blinkhookd.socket active
check "the listening socket is the same one (inode $INODE)" test "$(listen_inode)" = "$INODE"
check "right after the restart /healthz answers through the socket" healthz_ok
id=$(ct_ctl blink Q2AA-BBBB-NS04 --duration 1)
check "a blink right after the restart completes (its callback through the kept socket)" ct_wait_state 20 "$id" complete
check "the old daemon logged its stop (SIGTERM)" journal_has blinkhookd.service 'received Terminated; stopping'

# ---- reload ----

MAIN_R=$(ct_show blinkhookd.service MainPID)
in_ct systemctl reload blinkhookd.service
rc=$?
check "systemctl reload succeeds (RELOADING=1, then READY=1)" test "$rc" = 0
check "the daemon logged the reload" journal_has blinkhookd.service 'reload: API key'
check "after the reload the service is active, same process" \
	test "$(ct_show blinkhookd.service ActiveState)/$(ct_show blinkhookd.service MainPID)" = "active/$MAIN_R"

# ---- the watchdog ----

mkdir -p "$R/etc/systemd/system/blinkhookd.service.d"
printf '[Service]\nWatchdogSec=4s\n' >"$R/etc/systemd/system/blinkhookd.service.d/50-test-watchdog.conf"
in_ct systemctl daemon-reload
in_ct systemctl restart blinkhookd.service
check "the drop-in sets WatchdogSec=4s" test "$(ct_show blinkhookd.service WatchdogUSec)" = 4s
MAIN=$(ct_show blinkhookd.service MainPID)
NR=$(ct_show blinkhookd.service NRestarts)
WT0=$(ct_show blinkhookd.service WatchdogTimestampMonotonic)
sleep 6
check "a live daemon outlasts its 4 s watchdog (same pid after 6 s, no restarts)" \
	test "$(ct_show blinkhookd.service MainPID)/$(ct_show blinkhookd.service NRestarts)" = "$MAIN/$NR"
WT1=$(ct_show blinkhookd.service WatchdogTimestampMonotonic)
check "systemd received watchdog pings (its watchdog timestamp moved on by $(((WT1 - WT0) / 1000)) ms)" \
	test "$WT1" -gt "$WT0"

in_ct systemctl kill -s SIGSTOP blinkhookd.service
stopped() { in_ct grep -q '^State:[[:space:]]*T' "/proc/$1/status"; }
check "SIGSTOP froze the daemon" wait_until 5 stopped "$MAIN"
restarted() {
	local pid nr st
	pid=$(ct_show blinkhookd.service MainPID)
	nr=$(ct_show blinkhookd.service NRestarts)
	st=$(ct_show blinkhookd.service ActiveState)
	[ "$st" = active ] && [ "$pid" != 0 ] && [ "$pid" != "$MAIN" ] && [ "$nr" -gt "$NR" ]
}
t0=$SECONDS
if wait_until 40 restarted; then
	ok "the watchdog killed the frozen daemon and systemd restarted it ($((SECONDS - t0)) s; NRestarts $NR -> $(ct_show blinkhookd.service NRestarts))"
else
	notok "the watchdog killed the frozen daemon and systemd restarted it within 40 s"
	dump_journal blinkhookd.service
fi
check "systemd logged the watchdog timeout" journal_has blinkhookd.service 'Watchdog timeout'
check "the socket stayed active through the watchdog restart" ct_state_is blinkhookd.socket active
check "the listening socket is still the same one" test "$(listen_inode)" = "$INODE"
id=$(ct_ctl blink Q2AA-BBBB-NS05 --duration 1)
check "a blink after the watchdog restart completes" ct_wait_state 20 "$id" complete
check "every job is still in the log (5 complete)" \
	test "$(ct_ctl jobs --state complete --json | json 'len(j)')" = 5

# ---- an instance of the template, beside the main service ----

INST_PORT=8788
cat >"$R/etc/blinkhook/acme.conf" <<EOF
# written by 65-nspawn.sh: the instance blinkhookd@acme
[meraki]
base_url = http://127.0.0.1:$SIM_IN_PORT/api/v1
min_interval = 0.2s
retry_initial = 100ms
retry_max = 1s
[callback]
public_url = http://127.0.0.1:$INST_PORT
listen = 127.0.0.1:$INST_PORT
[queue]
dir = /var/spool/blinkhook/acme
[state]
dir = /var/lib/blinkhook/acme
EOF
chmod 0640 "$R/etc/blinkhook/acme.conf"
(umask 077 && printf '%s\n' "$API_KEY" >"$R/etc/blinkhook/acme.meraki-api-key")
# The instance's group and spool, as blinkhookd@.service's comment says.
mkdir -p "$R/etc/tmpfiles.d" "$R/etc/sysusers.d"
echo "g blinkhook-queue-acme -" >"$R/etc/sysusers.d/blinkhook-acme.conf"
sed -n 's/^#     \([dz] .*\)$/\1/p' "$TOP/systemd/blinkhookd@.service" >"$R/etc/tmpfiles.d/blinkhook-acme.conf"
check "the unit's comment gives the instance's tmpfiles lines" test "$(wc -l <"$R/etc/tmpfiles.d/blinkhook-acme.conf")" = 5
in_ct systemd-sysusers /etc/sysusers.d/blinkhook-acme.conf >>"$T/sysusers.log" 2>&1
in_ct systemd-tmpfiles --create /usr/local/lib/tmpfiles.d/blinkhook.conf /etc/tmpfiles.d/blinkhook-acme.conf \
	>>"$T/tmpfiles.log" 2>&1
check "tmpfiles gives the instance's config to root:blinkhook-queue-acme 0640" \
	test "$(in_ct stat -c '%U:%G %a' /etc/blinkhook/acme.conf)" = "root:blinkhook-queue-acme 640"
check "the instance's spool is its group's" \
	test "$(in_ct stat -c '%U:%G %a' /var/spool/blinkhook/acme/new)" = "blinkhook:blinkhook-queue-acme 3770"
in_ct useradd -M -U -G blinkhook-queue-acme -s /usr/sbin/nologin acmetech
as_acmetech() { in_ct setpriv --reuid=acmetech --regid=acmetech --init-groups "$@"; }
fails() { ! "$@"; }
in_ct systemctl start blinkhookd@acme.service >"$T/start-acme.log" 2>&1
rc=$?
if [ "$rc" = 0 ] && ct_state_is blinkhookd@acme.service active; then
	ok "blinkhookd@acme.service starts"
	check "the instance listens on its own address" journal_has blinkhookd@acme.service "listening on 127.0.0.1:$INST_PORT"
	acme_state_is() { test "$(in_ct blinkhookctl -c /etc/blinkhook/acme.conf status "$1" --json 2>/dev/null | json 'j["state"]')" = "$2"; }
	id=$(as_acmetech blinkhookctl -c /etc/blinkhook/acme.conf blink Q2AA-BBBB-AC01 --duration 1)
	check "a member of the instance's queue group: its blink to the instance completes" \
		wait_until 20 acme_state_is "$id" complete
	acme_reads_jobs() { test "$(as_acmetech blinkhookctl -c /etc/blinkhook/acme.conf jobs --json | json 'len(j)')" = 1; }
	check "... and it reads the instance's jobs" acme_reads_jobs
	main_member_queues_for_acme() {
		as_tech blinkhookctl -c /etc/blinkhook/acme.conf blink Q2AA-BBBB-AC02 >/dev/null 2>&1 ||
			test -n "$(ls -A "$R/var/spool/blinkhook/acme/new")"
	}
	check "a member of the main queue cannot queue for the instance" fails main_member_queues_for_acme
	main_member_reads_acme() {
		as_tech ls /var/spool/blinkhook/acme/new >/dev/null 2>&1 ||
			as_tech cat /var/lib/blinkhook/acme/jobs.log >/dev/null 2>&1
	}
	check "... nor read its spool or jobs" fails main_member_reads_acme
	acme_member_queues_for_main() { as_acmetech blinkhookctl blink Q2AA-BBBB-AC03 >/dev/null 2>&1; }
	check "the instance's member cannot queue for the main service" fails acme_member_queues_for_main
	check "the instance keeps its job log in /var/lib/blinkhook/acme" test -s "$R/var/lib/blinkhook/acme/jobs.log"
	check "the main service's job log does not have the instance's job" \
		sh -c "! grep -q '$id' '$R/var/lib/blinkhook/jobs.log'"
	in_ct systemctl stop blinkhookd@acme.service
	check "the instance stops cleanly" \
		test "$(ct_show blinkhookd@acme.service Result)/$(ct_show blinkhookd@acme.service ExecMainStatus)" = success/0
else
	notok "blinkhookd@acme.service starts"
	sed 's/^/#   /' "$T/start-acme.log"
	dump_journal blinkhookd@acme.service
fi

# ---- stop ----

in_ct systemctl stop blinkhookd.service blinkhookd.socket 2>>"$T/systemctl.log"
check "systemctl stop of the service and socket: the daemon exited 0" \
	test "$(ct_show blinkhookd.service Result)/$(ct_show blinkhookd.service ExecMainStatus)" = success/0
check "the socket is closed" test -z "$(listen_inode)"

if [ "$FAILS" -gt 0 ]; then
	diag "the daemon's journal:"
	dump_journal blinkhookd.service 80
fi
