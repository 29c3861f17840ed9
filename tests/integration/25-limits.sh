#!/usr/bin/env bash
# parallel: no (a real callback must be answered within 1 s under the flood)
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

# tests/hold-connections.py opens connections from the given source addresses
# and keeps them in the given state until killed; on SIGUSR1 it writes
# "OPENED ALIVE" to a file.
alive() { # alive NAME: how many of that holder's connections are still open
	rm -f "$T/$1"
	kill -USR1 "$(eval echo "\$HOLD_$1")"
	wait_until 5 test -s "$T/$1" && cut -d' ' -f2 "$T/$1"
}
hold() { # hold NAME MODE SOURCE*N...
	local name=$1 mode=$2; shift 2
	python3 "$TOP/tests/hold-connections.py" "$D_PORT" "$mode" "$T/$name" "$@" &
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
n=$(alive idle)
check "200 idle connections are held open ($n)" test "$n" = 200
r=$(timed_callback scheduled)
check "with 350 idle, half-sent and trickling connections, a valid callback is answered 200 within a second ($r)" fast "$r" 200
r=$(timed_callback running)
check "and the next one too ($r)" fast "$r" 200
check "the status was recorded" test "$(ctl status "$A" --json | json 'j["meraki_status"]')" = running

# One address beyond its share: the rest are refused at accept.
hold flood idle 127.0.0.9*100
n=$(alive flood)
check "one address holds at most 64 connections ($n of 100 open)" test "$n" -le 64
check "the refusals are counted in the metrics" sh -c "curl -sS '$D_URL/metrics' | grep -qE '^blinkhook_connections_refused_total [1-9]'"
r=$(timed_callback complete)
check "a valid callback still gets through at once ($r)" fast "$r" 200
check "the job is complete" state_is "$A" complete

# Half-sent requests are dropped after the connection timeout (15 s).
sleep 16
n=$(alive half)
check "connections that stopped sending are closed after the timeout ($n of 50 left)" test "$n" = 0
check "the daemon still answers /healthz" sh -c "curl -fsS --max-time 2 '$D_URL/healthz' >/dev/null"
