#!/usr/bin/env bash
# The daemon's side of systemd, without systemd as PID 1:
#  a. sd_notify: a stand-in NOTIFY_SOCKET listener sees READY=1, STATUS=,
#     WATCHDOG=1 at about half of WATCHDOG_USEC, RELOADING=1 then READY=1 on
#     SIGHUP, STOPPING=1 on SIGTERM, and the daemon exits 0;
#  b. socket activation: systemd-socket-activate hands the daemon its
#     listening socket, and Meraki's callbacks reach the daemon through it;
#  c. `systemd-analyze verify` has nothing to say about the units;
#  d. `systemd-analyze security --offline=yes` scores them at most 1.5.
# The real thing (systemd as PID 1, the socket unit kept across a restart,
# the watchdog killing a frozen daemon) is 65-nspawn.sh.
. "$(dirname "$0")/../lib.sh"

LISTENER="$TOP/tests/systemd/notify-listener.py"
MAX_EXPOSURE=1.5

# wait_exit SECONDS PID: until PID is gone (it must be a child: sets W_STATUS).
wait_exit() {
	local limit=$1 pid=$2
	if wait_until "$limit" sh -c "! kill -0 $pid"; then
		wait "$pid" 2>/dev/null
		W_STATUS=$?
		return 0
	fi
	W_STATUS=timeout
	return 1
}

# notify_after LINE: the listener's log after its first LINE lines, without
# the time and pid columns.
notify_after() { tail -n +"$(($1 + 1))" "$NL_LOG" | cut -d' ' -f3-; }
notify_lines() { wc -l <"$NL_LOG"; }

# ---- a. sd_notify and the watchdog ----

start_sim --min-interval 0.1 --blink-time 0.3
write_config

NL_SOCK=$T/notify.sock
NL_LOG=$T/notify.log
: >"$NL_LOG"
python3 "$LISTENER" "$NL_SOCK" "$NL_LOG" 2>>"$T/listener.log" &
PIDS+=($!)
wait_until 10 test -S "$NL_SOCK" || { notok "the notify listener did not start"; exit 1; }

# WATCHDOG_PID must be the daemon's own pid: bash execs the daemon in place.
NOTIFY_SOCKET=$NL_SOCK WATCHDOG_USEC=2000000 MERAKI_DASHBOARD_API_KEY=$API_KEY \
	bash -c 'export WATCHDOG_PID=$$; exec "$0" -c "$1"' "$BLINKHOOKD" "$T/bh.conf" 2>>"$T/daemon.log" &
D_PID=$!
PIDS+=($D_PID)
if ! wait_until 15 curl -fsS --max-time 1 -o /dev/null "$D_URL/healthz"; then
	notok "the daemon under NOTIFY_SOCKET did not become ready"
	sed 's/^/# /' "$T/daemon.log"
	exit 1
fi
check "READY=1 reaches NOTIFY_SOCKET" wait_until 5 grep -q ' READY=1$' "$NL_LOG"
check "READY=1 comes from the daemon's own pid" grep -q "^[0-9.]* $D_PID READY=1\$" "$NL_LOG"
check "STATUS= with the job counts comes with READY" \
	grep -qE ' STATUS=[0-9]+ queued, [0-9]+ submitted, [0-9]+ complete, [0-9]+ failed, [0-9]+ expired$' "$NL_LOG"
check "STATUS= comes before READY=1" python3 -c '
import sys
lines = [l.split(" ", 2)[2].rstrip("\n") for l in open(sys.argv[1])]
s = next(i for i, l in enumerate(lines) if l.startswith("STATUS="))
r = lines.index("READY=1")
assert s < r, lines
' "$NL_LOG"

# The watchdog, while the daemon also has work to do: one blink.
t0=$(python3 -c 'import time; print(time.monotonic())')
id=$(ctl blink Q2AA-BBBB-WD01 --duration 1)
check "a blink under NOTIFY_SOCKET completes" wait_state 15 "$id" complete
sleep 4.5
t1=$(python3 -c 'import time; print(time.monotonic())')
wd=$(python3 -c '
import sys
t0, t1 = float(sys.argv[2]), float(sys.argv[3])
ts = [float(l.split(" ", 2)[0]) for l in open(sys.argv[1]) if l.rstrip("\n").endswith(" WATCHDOG=1")]
ts = [t for t in ts if t0 <= t <= t1]
iv = [b - a for a, b in zip(ts, ts[1:])]
print(len(ts), "%.3f" % (min(iv) if iv else 0), "%.3f" % (max(iv) if iv else 99), "%.1f" % (t1 - t0))
' "$NL_LOG" "$t0" "$t1")
read -r wd_n wd_min wd_max wd_span <<<"$wd"
diag "watchdog: $wd_n pings in ${wd_span}s, intervals ${wd_min}s..${wd_max}s (WATCHDOG_USEC=2s)"
check "WATCHDOG=1 pings come (at least 3 in ${wd_span}s; got $wd_n)" test "$wd_n" -ge 3
check "WATCHDOG=1 at most 1.5 s apart (3/4 of WATCHDOG_USEC, +0.1 s timer slack; max ${wd_max}s)" \
	python3 -c 'import sys; sys.exit(not float(sys.argv[1]) <= 1.6)' "$wd_max"
check "WATCHDOG=1 no more often than every 0.4 s (min ${wd_min}s)" \
	python3 -c 'import sys; sys.exit(not float(sys.argv[1]) >= 0.4)' "$wd_min"
check "WATCHDOG=1 comes from the daemon's own pid" \
	sh -c "grep ' WATCHDOG=1\$' '$NL_LOG' | grep -qv '^[0-9.]* $D_PID '; test \$? = 1"

# SIGHUP: RELOADING=1, then READY=1 again; the daemon keeps serving.
n=$(notify_lines)
kill -HUP "$D_PID"
reloaded() { notify_after "$n" | grep -qx 'READY=1'; }
check "SIGHUP: READY=1 again within 5 s" wait_until 5 reloaded
check "SIGHUP: RELOADING=1 before that READY=1" \
	sh -c "tail -n +$((n + 1)) '$NL_LOG' | cut -d' ' -f3- | grep -x -e 'RELOADING=1' -e 'READY=1' | head -n2 | tr '\n' ' ' | grep -qx 'RELOADING=1 READY=1 '"
check "after the reload the daemon still answers /healthz" curl -fsS --max-time 2 -o /dev/null "$D_URL/healthz"
check "the daemon logs the reload" grep -q 'reload: API key' "$T/daemon.log"

# SIGTERM: STOPPING=1 and exit 0.
n=$(notify_lines)
kill -TERM "$D_PID"
check "SIGTERM: the daemon exits within 10 s" wait_exit 10 "$D_PID"
check "SIGTERM: exit status 0 (got $W_STATUS)" test "$W_STATUS" = 0
check "SIGTERM: STOPPING=1 reaches NOTIFY_SOCKET" sh -c "tail -n +$((n + 1)) '$NL_LOG' | grep -q ' STOPPING=1\$'"
check "no READY=1 after STOPPING=1" sh -c "tail -n +$((n + 1)) '$NL_LOG' | sed -n '/ STOPPING=1\$/,\$p' | grep -q ' READY=1\$'; test \$? = 1"

# ---- b. socket activation with systemd-socket-activate ----

if ! command -v systemd-socket-activate >/dev/null; then
	notok "systemd-socket-activate is missing (Debian package systemd)"
else
	# The config's own listen address is another port: whatever answers on
	# SA_PORT is the socket systemd-socket-activate passed.
	SA_PORT=$(free_port)
	OTHER_PORT=$(free_port)
	sed -i -e "s|^public_url = .*|public_url = http://127.0.0.1:$SA_PORT|" \
		-e "s|^listen = .*|listen = 127.0.0.1:$OTHER_PORT|" "$T/bh.conf"
	sa_env=(-E "MERAKI_DASHBOARD_API_KEY=$API_KEY")
	for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
		[ -n "${!v:-}" ] && sa_env+=(-E "$v")
	done
	: >"$T/daemon.log"
	systemd-socket-activate -l "127.0.0.1:$SA_PORT" "${sa_env[@]}" \
		"$BLINKHOOKD" -c "$T/bh.conf" 2>>"$T/daemon.log" &
	SA_PID=$!
	PIDS+=($SA_PID)
	if ! wait_until 15 curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$SA_PORT/healthz"; then
		notok "the socket-activated daemon did not answer /healthz"
		sed 's/^/# /' "$T/daemon.log"
	else
		ok "the socket-activated daemon answers /healthz on the passed socket"
		check "the daemon logs that it listens on the socket passed by systemd" \
			grep -q 'listening on the socket passed by systemd' "$T/daemon.log"
		check "the daemon did not open its configured listen address" \
			sh -c "! curl -sS --max-time 1 -o /dev/null http://127.0.0.1:$OTHER_PORT/healthz 2>/dev/null"
		check "systemd-socket-activate exec'd the daemon in place (same pid)" \
			test "$(readlink "/proc/$SA_PID/exe")" = "$(readlink -f "$BLINKHOOKD")"
		id=$(ctl blink Q2AA-BBBB-SA01 --duration 1)
		check "a blink completes with its callback through the passed socket" wait_state 15 "$id" complete
		check "the simulator's callback went to the passed socket's port and was answered 200" python3 -c '
import json, sys, urllib.request
cbs = json.load(urllib.request.urlopen(sys.argv[1] + "/_sim/callbacks"))
mine = [c for c in cbs if c["url"].endswith("/callbacks/leds-blink/" + sys.argv[3])]
assert mine, cbs
assert all(c["url"].startswith("http://127.0.0.1:%s/" % sys.argv[2]) for c in mine), mine
assert mine[-1]["http_status"] == 200, mine
' "$SIM_URL" "$SA_PORT" "$id"
	fi
	kill -TERM "$SA_PID" 2>/dev/null
	check "SIGTERM: the socket-activated daemon exits within 10 s" wait_exit 10 "$SA_PID"
	check "SIGTERM: the socket-activated daemon exits 0 (got $W_STATUS)" test "$W_STATUS" = 0
fi

# ---- c. systemd-analyze verify ----

UNITS=$T/units
mkdir -p "$UNITS"
cp "$TOP/systemd/blinkhookd.service" "$TOP/systemd/blinkhookd.socket" "$TOP/systemd/blinkhookd@.service" "$UNITS/"
# ExecStart= must name an existing executable for verify.
sed -i "s|^ExecStart=/usr/sbin/blinkhookd |ExecStart=$BLINKHOOKD |" "$UNITS/blinkhookd.service" "$UNITS/blinkhookd@.service"
ln -s blinkhookd@.service "$UNITS/blinkhookd@test.service"
check "the units' ExecStart= was pointed at the built daemon" \
	sh -c "grep -q '^ExecStart=$BLINKHOOKD ' '$UNITS/blinkhookd.service' && grep -q '^ExecStart=$BLINKHOOKD ' '$UNITS/blinkhookd@.service'"
# verify runs man(1) for each Documentation=man:...: the pages of this tree,
# laid out as make install does, so that a page the units name must exist.
for s in 1 5 8; do mkdir -p "$T/man/man$s" && cp "$TOP"/docs/man/*."$s" "$T/man/man$s/"; done
for u in blinkhookd.socket blinkhookd.service blinkhookd@test.service; do
	out=$(cd "$UNITS" && MANPATH=$T/man SYSTEMD_LOG_COLOR=0 timeout 60 systemd-analyze verify "$UNITS/$u" 2>&1)
	rc=$?
	if [ "$rc" = 0 ] && [ -z "$out" ]; then
		ok "systemd-analyze verify $u prints nothing"
	else
		notok "systemd-analyze verify $u prints nothing (exit $rc)"
		sed 's/^/#   /' <<<"$out"
	fi
done

# ---- d. systemd-analyze security --offline=yes ----

for u in blinkhookd.service blinkhookd@test.service; do
	out=$(cd "$UNITS" && SYSTEMD_LOG_COLOR=0 timeout 60 systemd-analyze security --offline=yes --no-pager "$UNITS/$u" 2>&1)
	score=$(sed -n 's/^.*Overall exposure level for [^:]*: \([0-9.]*\).*$/\1/p' <<<"$out" | tail -n1)
	diag "systemd-analyze security: $u exposure ${score:-?}"
	if [ -n "$score" ] && python3 -c 'import sys; sys.exit(not float(sys.argv[1]) <= float(sys.argv[2]))' "$score" "$MAX_EXPOSURE"; then
		ok "systemd-analyze security scores $u $score (at most $MAX_EXPOSURE)"
	else
		notok "systemd-analyze security scores $u ${score:-nothing} (at most $MAX_EXPOSURE)"
		grep '✗' <<<"$out" | sed 's/^/#   /'
		[ -n "$score" ] || sed 's/^/#   /' <<<"$out"
	fi
done
