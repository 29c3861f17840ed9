#!/usr/bin/env bash
# File descriptors: with `ulimit -n 1024`, 1,030 idle connections from the
# trusted proxy 127.0.0.1 cannot take every descriptor. The connection limit
# comes from RLIMIT_NOFILE minus a reserve, and one trusted proxy holds at most
# half of it; meanwhile the daemon still takes a spool file, calls the API,
# finishes the job and answers a callback. The soft limit is raised to the
# hard one at start.
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

# hold.py OUT SRC*N...: N idle connections from each source address, held
# until killed; on SIGUSR1 writes how many were opened and how many the
# daemon still keeps open.
cat >"$T/hold.py" <<'PY'
import resource, signal, socket, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for spec in sys.argv[3:]:
    src, n = spec.split("*")
    for _ in range(int(n)):
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
            socks.append(s)
        except OSError:
            pass
def alive():
    k = 0
    for s in socks:
        try:
            s.setblocking(False)
            if s.recv(1, socket.MSG_PEEK) != b"":
                k += 1
        except BlockingIOError:
            k += 1
        except OSError:
            pass
    return k
def report(*_):
    with open(out + ".tmp", "w") as f:
        f.write("%d %d\n" % (len(socks), alive()))
    import os
    os.rename(out + ".tmp", out)
signal.signal(signal.SIGUSR1, report)
open(out + ".ready", "w").close()
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    time.sleep(0.5)
PY
# held NAME: "OPENED HELD" of that holder, asked now.
held() {
	rm -f "$T/$1"
	kill -USR1 "$(cat "$T/$1.pid")"
	wait_until 5 test -s "$T/$1" && cat "$T/$1"
}
hold() { # hold NAME SRC*N...
	local name=$1; shift
	python3 "$T/hold.py" "$D_PORT" "$T/$name" "$@" &
	PIDS+=($!)
	echo $! >"$T/$name.pid"
	wait_until 60 test -e "$T/$name.ready" || notok "the connections were not opened"
	sleep 1 # the daemon accepts (or refuses) the backlog
}
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
check "with ulimit -n 512 (hard 2048) the daemon raises it: 1920 connections of 2048" \
	grep -q 'serving up to 1920 connections at once (2048 file descriptors)' "$T/daemon.log"
check "the daemon's own soft limit is 2048" \
	test "$(awk '/^Max open files/{print $4}' "/proc/$D_PID/limits")" = 2048
stop_daemon
check "no sanitizer report in the daemon's log" sh -c "! grep -q -e 'ERROR: AddressSanitizer' -e 'runtime error:' '$T/daemon.log'"
