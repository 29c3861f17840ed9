#!/usr/bin/env bash
# parallel: no (replies within 1 s while descriptors run out)
# File descriptors: with `ulimit -n 1024`, 1,030 idle connections from the
# trusted proxy 127.0.0.1 cannot take every descriptor. The connection limit
# comes from RLIMIT_NOFILE minus a reserve, and one trusted proxy holds at most
# half of it; meanwhile the daemon still takes a spool file, calls the API,
# finishes the job and answers a callback. The soft limit is raised to the
# hard one at start. Clients from many addresses together cannot take the
# half kept free for the proxy.
. "$(dirname "$0")/../lib.sh"

hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 4096 ]; then
	echo "# SKIP the hard limit on open files here is $hard; this test needs 4096 (ulimit -Hn)"
	exit 0
fi

start_sim --min-interval 0 --blink-time 0.2
# wait = 1s: the job also finishes by polling if the simulator's callback
# (from 127.0.0.1, whose share the held connections take) cannot get in.
write_config "[callback] wait = 1s" "[callback] trusted_proxies = 127.0.0.1 ::1"
DAEMON_WRAPPER="prlimit --nofile=1024:1024" start_daemon
check "the daemon derives its connection limit from the 1024 descriptors" \
	grep -q 'serving up to 896 connections at once (1024 file descriptors)' "$T/daemon.log"

# tests/hold-connections.py holds idle connections from the given source
# addresses until killed; on SIGUSR1 it writes "OPENED HELD" to a file.
# held NAME: "OPENED HELD" of that holder, asked now.
held() {
	rm -f "$T/$1"
	kill -USR1 "$(cat "$T/$1.pid")"
	wait_until 5 test -s "$T/$1" && cat "$T/$1"
}
hold() { # hold NAME SRC*N...
	local name=$1; shift
	python3 "$TOP/tests/hold-connections.py" "$D_PORT" idle "$T/$name" "$@" &
	PIDS+=($!)
	echo $! >"$T/$name.pid"
	wait_until 60 test -e "$T/$name.ready" || notok "the connections were not opened"
	sleep 1 # the daemon accepts (or refuses) the backlog
}
# Clients alone, from 14 addresses at 64 each, could take every one of the
# 896 connections; they may hold only the half the proxy does not keep free.
hold clients 127.0.0.2*64 127.0.0.3*64 127.0.0.4*64 127.0.0.5*64 127.0.0.6*64 127.0.0.7*64 127.0.0.8*64 \
	127.0.0.9*64 127.0.0.10*64 127.0.0.11*64 127.0.0.12*64 127.0.0.13*64 127.0.0.14*64 127.0.0.15*64
read -r opened held < <(held clients)
diag "client connections opened: $opened, still held by the daemon: $held"
check "896 connections from 14 client addresses: the daemon keeps at most 448 of them ($held)" \
	test "$held" -le 448 -a "$held" -ge 440
r=$(curl -sS --max-time 2 -o /dev/null -w '%{http_code} %{time_total}' "$D_URL/healthz")
check "meanwhile /healthz from the proxy 127.0.0.1 answers 200 within a second ($r)" \
	python3 -c 'import sys; c, t = sys.argv[1].split(); sys.exit(0 if c == "200" and float(t) < 1.0 else 1)' "$r"
kill "$(cat "$T/clients.pid")"
wait "$(cat "$T/clients.pid")" 2>/dev/null
rm -f "$T/clients" "$T/clients.ready"
sleep 1 # the daemon sees them closed

hold proxy 127.0.0.1*1030
read -r opened held < <(held proxy)
diag "connections opened: $opened, still held by the daemon: $held"
check "1,030 connections from 127.0.0.1 were opened, the daemon keeps at most half its limit ($held <= 448)" \
	test "$opened" -ge 1030 -a "$held" -le 448 -a "$held" -ge 400

code=$(curl -sS --max-time 2 --interface 127.0.0.2 -o /dev/null -w '%{http_code}' "$D_URL/healthz")
check "meanwhile /healthz from 127.0.0.2 answers 200 ($code)" test "$code" = 200
code=$(curl -sS --max-time 2 --interface 127.0.0.2 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
	--data '{"sharedSecret":"wrong"}' "$D_URL/callbacks/leds-blink/held-test")
check "and a callback with a wrong secret gets its 401 ($code)" test "$code" = 401
A=$(ctl blink Q2AA-BBBB-CCCC --duration 1)
check "and a blink queued now is taken from the spool and completes" wait_state 20 "$A" complete
curl -sS --max-time 2 --interface 127.0.0.2 "$D_URL/metrics" >"$T/metrics"
check "the connections refused for the cap are counted" \
	sh -c "awk '/^blinkhook_connections_refused_total /{n = \$2} END{exit !(n >= 500)}' '$T/metrics'"
check "/metrics shows the connection limit" grep -qx 'blinkhook_connection_limit 896' "$T/metrics"
check "the daemon never ran out of descriptors" sh -c "! grep -qi 'too many open files' '$T/daemon.log'"
# Every connection the limit allows, the rest from clients: 7 x 64 more.
hold clients 127.0.0.3*64 127.0.0.4*64 127.0.0.5*64 127.0.0.6*64 127.0.0.7*64 127.0.0.8*64 127.0.0.9*64
read -r _ held_proxy < <(held proxy)
read -r _ held_clients < <(held clients)
check "all 896 connections the limit allows are held ($held_proxy + $held_clients)" \
	test "$((held_proxy + held_clients))" -ge 890
B=$(ctl blink Q2AA-BBBB-DDDD --duration 1)
check "with the limit reached, the reserve still lets a blink be taken, submitted and polled to complete" \
	wait_state 20 "$B" complete
check "the daemon still never ran out of descriptors" sh -c "! grep -qi 'too many open files' '$T/daemon.log'"
kill "$(cat "$T/proxy.pid")" "$(cat "$T/clients.pid")"
wait "$(cat "$T/proxy.pid")" "$(cat "$T/clients.pid")" 2>/dev/null
stop_daemon
check "SIGTERM: exit 0" test "$D_STATUS" = 0

# The soft limit is raised to the hard one.
: >"$T/daemon.log"
DAEMON_WRAPPER="prlimit --nofile=512:2048" start_daemon
check "with ulimit -n 512 (hard 2048) the daemon raises it, and serves 1024 connections at most" \
	grep -q 'serving up to 1024 connections at once (2048 file descriptors)' "$T/daemon.log"
check "the daemon's own soft limit is 2048" \
	test "$(awk '/^Max open files/{print $4}' "/proc/$D_PID/limits")" = 2048
stop_daemon
check "no sanitizer report in the daemon's log" sh -c "! grep -q -e 'ERROR: AddressSanitizer' -e 'runtime error:' '$T/daemon.log'"
