#!/usr/bin/env bash
# Hundreds of idle, half-sent and trickling connections cannot lock a real
# callback out; one address cannot hold more than its share.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.2
write_config
start_daemon
sim_fault '{"kind":"lost_callback"}'
A=$(ctl blink Q2AA-BBBB-CCCC --duration 5)
wait_state 10 "$A" submitted || notok "the job was not submitted"
SA=$(secret_of "$A")

# hold.py: opens connections from the given source addresses and keeps them
# in the given state until killed; prints how many are still open when asked
# (SIGUSR1 writes the count to a file).
cat >"$T/hold.py" <<'PY'
import signal, socket, sys, time
port, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sources = sys.argv[4:]
socks = []
for spec in sources:
    src, n = spec.split("*")
    for _ in range(int(n)):
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
            if mode == "half":
                s.sendall(b"POST /callbacks/leds-blink/x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"shared")
            elif mode == "headers":
                s.sendall(b"POST /callbacks/leds-blink/x HTTP/1.1\r\nHost: a\r\n")
            socks.append(s)
        except OSError:
            pass
def alive():
    n = 0
    for s in socks:
        try:
            s.setblocking(False)
            d = s.recv(1, socket.MSG_PEEK)
            if d != b"":
                n += 1
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n
def report(*_):
    with open(out, "w") as f:
        f.write("%d\n" % alive())
signal.signal(signal.SIGUSR1, report)
open(out + ".ready", "w").close()
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    if mode == "trickle":
        for s in socks:
            try:
                s.send(b"X")
            except OSError:
                pass
    time.sleep(0.5)
PY

hold() { # hold NAME MODE SOURCE*N...
	local name=$1 mode=$2; shift 2
	python3 "$T/hold.py" "$D_PORT" "$mode" "$T/$name" "$@" &
	PIDS+=($!)
	eval "HOLD_$name=$!"
	wait_until 30 test -e "$T/$name.ready"
}
timed_callback() { # prints "CODE SECONDS"
	curl -sS --max-time 5 -o /dev/null -w '%{http_code} %{time_total}' -H 'Content-Type: application/json' \
		--data "{\"sharedSecret\":\"$SA\",\"message\":{\"status\":\"$1\"}}" "$D_URL/callbacks/leds-blink/$A"
}
fast() { # fast "CODE SECONDS" CODE: the code, within a second
	python3 -c 'import sys; c, t = sys.argv[1].split(); sys.exit(0 if c == sys.argv[2] and float(t) < 1.0 else 1)' "$1" "$2"
}

hold idle idle 127.0.0.2*50 127.0.0.3*50 127.0.0.4*50 127.0.0.5*50
hold half half 127.0.0.6*50
hold headers headers 127.0.0.7*50
hold trickle trickle 127.0.0.8*50
kill -USR1 "$HOLD_idle"; wait_until 5 test -s "$T/idle"
check "200 idle connections are held open ($(cat "$T/idle"))" test "$(cat "$T/idle")" = 200
r=$(timed_callback scheduled)
check "with 350 idle, half-sent and trickling connections, a valid callback is answered 200 within a second ($r)" fast "$r" 200
r=$(timed_callback running)
check "and the next one too ($r)" fast "$r" 200
check "the status was recorded" test "$(ctl status "$A" --json | json 'j["meraki_status"]')" = running

# One address beyond its share: the rest are refused at accept.
hold flood idle 127.0.0.9*100
kill -USR1 "$HOLD_flood"; wait_until 5 test -s "$T/flood"
check "one address holds at most 64 connections ($(cat "$T/flood") of 100 open)" test "$(cat "$T/flood")" -le 64
check "the refusals are counted in the metrics" sh -c "curl -sS '$D_URL/metrics' | grep -qE '^blinkhook_connections_refused_total [1-9]'"
r=$(timed_callback complete)
check "a valid callback still gets through at once ($r)" fast "$r" 200
check "the job is complete" state_is "$A" complete

# Half-sent requests are dropped after the connection timeout (15 s).
sleep 16
kill -USR1 "$HOLD_half"; sleep 0.5
check "connections that stopped sending are closed after the timeout ($(cat "$T/half") of 50 left)" test "$(cat "$T/half")" = 0
check "the daemon still answers /healthz" sh -c "curl -fsS --max-time 2 '$D_URL/healthz' >/dev/null"
