#!/usr/bin/env bash
# A server too old for the store (PostgreSQL 12, played by
# tests/old-postgres.py) first in a multi-host conninfo: the daemon says so
# once, passes over it and comes up on the next host; it does not stop.
. "$(dirname "$0")/../lib.sh"

pg_start
OLD_PORT=$(free_port)
python3 "$(dirname "$0")/../old-postgres.py" "$OLD_PORT" 12.0 &
PIDS+=($!)
wait_until 5 python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$OLD_PORT"
pg_credential "$PG_CREDS" \
	"host=127.0.0.1,127.0.0.1 port=$OLD_PORT,$PG_PORT dbname=blinkhook user=$PG_USER connect_timeout=2"
SIM_URL=http://127.0.0.1:1
write_config "[store] backend = postgresql" "[store] node = n1"
MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh.conf" 2>>"$T/daemon.log" &
D_PID=$!
PIDS+=($D_PID)
old() { grep -c "PostgreSQL 12 is too old: the store needs 13 or later (127.0.0.1:$OLD_PORT)" "$T/daemon.log"; }
check "the old server is named in an error" wait_until 10 eval '[ "$(old)" -ge 1 ]'
check "the daemon passes over it and comes up on the next host" \
	eval 'wait_until 15 curl -fsS --max-time 1 -o /dev/null "$D_URL/healthz" &&
		grep -q "connected to the PostgreSQL store at 127.0.0.1:$PG_PORT " "$T/daemon.log"'
check "the old server was said once ($(old))" test "$(old)" = 1
check "the daemon still runs" kill -0 "$D_PID"
stop_daemon
check "and stops cleanly" test "$D_STATUS" = 0
[ "$FAILS" -eq 0 ]
