#!/usr/bin/env bash
# The PostgreSQL store's connection against what real databases do: a
# multi-host conninfo whose first server is read-only (libpq moves on to the
# next, often on a socket of the same number), a server that turns read-only
# under a running daemon (a failover's old primary), one that accepts and
# never answers, one stopped (SIGSTOP) mid-run; and a password in the
# connection string that no message may show.
. "$(dirname "$0")/../lib.sh"

healthz() { curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$D_URL/healthz"; }
healthz_is() { test "$(healthz)" = "$1"; }
# run_daemon: blinkhookd on $T/bh.conf in the background, not waiting for
# /healthz (the tests here start it where it cannot be ready).
run_daemon() {
	MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh.conf" 2>>"$T/daemon.log" &
	D_PID=$!
	PIDS+=("$D_PID")
}
# new_log: the daemon's log begins anew for the next section's greps; the
# earlier ones go back into it at the end (cleanup looks there for a
# sanitizer's report).
new_log() {
	cat "$T/daemon.log" >>"$T/earlier.log" 2>/dev/null
	: >"$T/daemon.log"
}
# signal_cluster SIG DIR: the signal to the cluster's postmaster and every
# process it started (its backends and helpers), by their ids.
signal_cluster() {
	local pm
	pm=$(head -n1 "$2/data/postmaster.pid")
	# shellcheck disable=SC2046
	kill -"$1" "$pm" $(ps -o pid= --ppid "$pm")
}

pg_start
RO=$PG_DIR RO_PORT=$PG_PORT
pg_sql "alter system set default_transaction_read_only = on" >/dev/null
pg_sql "select pg_reload_conf()" >/dev/null
pg_start
RW=$PG_DIR RW_PORT=$PG_PORT
# use_conninfo CONNINFO: the daemon's connection string (the password added)
# in the credential postgresql-conninfo, as an operator gives it.
use_conninfo() { pg_credential "$PG_CREDS" "$1"; }

# ---- a password in the connection string: never in a message ----
SIM_URL=http://127.0.0.1:1
write_config "[store] backend = postgresql" "[store] node = n1"
mkdir -m 0700 "$T/creds"
checkconf() { CREDENTIALS_DIRECTORY=$T/creds MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh.conf" --check-config 2>&1; }
printf 'postgresql://%s:hunter2@[::1/postgres\n' "$PG_USER" >"$T/creds/postgresql-conninfo"
out=$(checkconf); rc=$?
check "--check-config: a URI libpq cannot parse is refused without its password (libpq's message quotes the URI)" \
	eval '[ $rc -eq 1 ] && grep -q "conninfo: end of string reached .* in URI: \"(hidden)\"" <<<"$out" && ! grep -q hunter2 <<<"$out"'
out=$(CREDENTIALS_DIRECTORY=$T/creds ctl jobs 2>&1); rc=$?
check "blinkhookctl jobs on that credential fails without printing the password" \
	eval '[ $rc -ne 0 ] && grep -q "conninfo: " <<<"$out" && ! grep -q hunter2 <<<"$out"'
new_log
CREDENTIALS_DIRECTORY=$T/creds MERAKI_DASHBOARD_API_KEY=$API_KEY timeout 10 "$BLINKHOOKD" -c "$T/bh.conf" 2>>"$T/daemon.log"
rc=$?
check "the daemon refuses it at its start, and its log does not hold the password" \
	eval '[ $rc -ne 0 ] && grep -q "conninfo: " "$T/daemon.log" && ! grep -q hunter2 "$T/daemon.log"'
printf '%s password=hun ter2x\n' "$PG_CONNINFO" >"$T/creds/postgresql-conninfo"
out=$(checkconf); rc=$?
check "--check-config: an unquoted password with a blank is refused without its pieces" \
	eval '[ $rc -eq 1 ] && grep -q "conninfo: missing \"=\" after \"(hidden)\"" <<<"$out" && ! grep -q ter2x <<<"$out"'
printf '%s password=hunter2 bogus=x\n' "$PG_CONNINFO" >"$T/creds/postgresql-conninfo"
out=$(checkconf); rc=$?
check "--check-config: an unknown option is named, the password is not shown" \
	eval '[ $rc -eq 1 ] && grep -q "conninfo: invalid connection option \"bogus\"" <<<"$out" && ! grep -q hunter2 <<<"$out"'
printf 'host=%s/nowhere dbname=blinkhook user=%s password=hunter2 connect_timeout=2\n' "$T" "$PG_USER" \
	>"$T/creds/postgresql-conninfo"
new_log
CREDENTIALS_DIRECTORY=$T/creds run_daemon
check "a connection that fails is logged (libpq's message, the host in it) without the password" \
	eval 'wait_until 10 grep -q "cannot connect to the PostgreSQL store (.*$T/nowhere" "$T/daemon.log" && ! grep -q hunter2 "$T/daemon.log"'
out=$(CREDENTIALS_DIRECTORY=$T/creds ctl jobs 2>&1)
check "blinkhookctl's word on it neither" eval 'grep -q "cannot connect to the PostgreSQL store" <<<"$out" && ! grep -q hunter2 <<<"$out"'
stop_daemon

# ---- a read-only server first in the list: the daemon comes up on the next ----
start_sim --min-interval 0.2 --blink-time 0.5 --callback-retries 60 --callback-retry-delay 0.5
D_PORT=$(free_port)
use_conninfo "host=127.0.0.1,127.0.0.1 port=$RO_PORT,$RW_PORT dbname=blinkhook user=$PG_USER target_session_attrs=read-write"
write_config "[store] backend = postgresql" "[store] node = n1" "[store] lease = 3s" "[callback] wait = 2s"
new_log
run_daemon
check "with host=A,B and A read-only, the daemon connects to B at its first try (libpq's next host is watched)" \
	eval 'wait_until 15 healthz_is 200 && grep -q "connected to the PostgreSQL store at 127.0.0.1:$RW_PORT " "$T/daemon.log" &&
		! grep -q "cannot connect to the PostgreSQL store" "$T/daemon.log"'
ids=()
for i in 1 2; do ids+=("$(ctl blink "Q2AA-PGCN-000$i" --duration 1)"); done
check "jobs complete on B" wait_until 30 pg_count_is "serial like 'Q2AA-PGCN%' and state = 'complete'" 2

# ---- the primary turns read-only under the running daemon (a failover) ----
for i in 1 2 3; do ctl blink "Q2AA-PGRO-000$i" --duration 1 >/dev/null; done
wait_until 20 pg_count_is "serial like 'Q2AA-PGRO%' and state = 'submitted'" 1
pg_sql "alter system set default_transaction_read_only = on" >/dev/null
pg_sql "select pg_reload_conf()" >/dev/null
check "its writes failing read-only, the daemon takes the store as lost (/healthz 503)" wait_until 10 healthz_is 503
t_ro=$(now)
check "and says so, with the server's reason" \
	grep -q "the PostgreSQL store is unreachable (.*read-only transaction" "$T/daemon.log"
sleep 4
t_rw=$(now)
check "while no server is writable, it stays lost" healthz_is 503
pg_sql "alter system reset default_transaction_read_only" >/dev/null
pg_sql "select pg_reload_conf()" >/dev/null
check "writable again, the daemon reconnects by itself" wait_until 35 healthz_is 200
check "every job completes" wait_until 40 pg_count_is "serial like 'Q2AA-PGRO%' and state = 'complete'" 3
check "callbacks while the store was read-only got 503 (at least one), never 2xx" python3 -c '
import json, sys
cbs, ro, rw = json.loads(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
during = [c for c in cbs if ro <= c["t"] <= rw]
assert during, "no callback came while the store was read-only"
assert all(c["http_status"] == 503 for c in during), [(c["t"], c["http_status"]) for c in during]
' "$(sim_get callbacks)" "$t_ro" "$t_rw"
check "the spool is empty" spool_empty

# ---- the server stopped (SIGSTOP): no answer, no error either ----
lost_before=$(grep -c 'the PostgreSQL store is unreachable' "$T/daemon.log")
signal_cluster STOP "$RW"
t_stop=$SECONDS
ctl blink "Q2AA-PGST-0001" --duration 1 >/dev/null
# The claim tick (every lease / 3) goes out and is never answered: lost
# after the query deadline (the lease, 10 s at least).
check "a stopped server is taken as lost within the query deadline (/healthz 503 within 10 s + the tick)" \
	wait_until 16 healthz_is 503
check "the daemon says so once, with the deadline" \
	eval 'grep -q "the PostgreSQL store is unreachable (no answer within 10s)" "$T/daemon.log" &&
		test "$(grep -c "the PostgreSQL store is unreachable" "$T/daemon.log")" = $((lost_before + 1))'
diag "lost $((SECONDS - t_stop)) s after the stop"
signal_cluster CONT "$RW"
check "the server going on, the daemon reconnects by itself (/healthz 200)" wait_until 30 healthz_is 200
check "and the job queued meanwhile completes" \
	wait_until 30 pg_count_is "serial = 'Q2AA-PGST-0001' and state = 'complete'" 1
stop_daemon
check "the daemon stops cleanly" test "$D_STATUS" = 0

# ---- a failover where the old primary stays up, read-only: the daemon
# must leave it for the promoted standby (listed second) ----
pg_standby
STANDBY=$PG_STANDBY_DIR
D_PORT=$(free_port)
use_conninfo "host=127.0.0.1,127.0.0.1 port=$RW_PORT,$PG_STANDBY_PORT dbname=blinkhook user=$PG_USER target_session_attrs=read-write"
write_config "[store] backend = postgresql" "[store] node = n1" "[store] lease = 3s" "[callback] wait = 2s"
new_log
start_daemon
for i in 1 2 3; do ctl blink "Q2AA-PGFO-000$i" --duration 1 >/dev/null; done
wait_until 20 pg_count_is "serial like 'Q2AA-PGFO%' and state = 'submitted'" 1
wait_until 10 eval 'PG_DIR=$STANDBY pg_count_is "serial like '"'Q2AA-PGFO%'"'" 3'
pg_promote "$STANDBY"
pg_sql "alter system set default_transaction_read_only = on" >/dev/null
pg_sql "select pg_reload_conf()" >/dev/null
check "the old primary read-only, the daemon leaves it for the promoted standby" \
	wait_until 20 grep -q "reconnected to the PostgreSQL store at 127.0.0.1:$PG_STANDBY_PORT " "$T/daemon.log"
check "and the jobs complete there" \
	wait_until 60 eval 'PG_DIR=$STANDBY pg_count_is "serial like '"'Q2AA-PGFO%'"' and state = '"'complete'"'" 3'
if [ "$FAILS" -gt 0 ]; then
	# What the jobs and the daemon say, for a failure in CI (whose
	# directories are not kept).
	PG_DIR=$STANDBY pg_sql "select id, state, owner, lease_until, attempts from jobs where serial like 'Q2AA-PGFO%'" |
		sed 's/^/# /'
	tail -n 40 "$T/daemon.log" | sed 's/^/# /'
fi
stop_daemon
check "the daemon stops cleanly" test "$D_STATUS" = 0
pg_sql "alter system reset default_transaction_read_only" >/dev/null
pg_sql "select pg_reload_conf()" >/dev/null

# ---- a server that accepts and never answers ----
BH_PORT=$(free_port)
python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
held = []
while True:
    held.append(s.accept()[0])
' "$BH_PORT" &
PIDS+=($!)
wait_until 5 python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$BH_PORT"
D_PORT=$(free_port)
use_conninfo "host=127.0.0.1,127.0.0.1 port=$BH_PORT,$RW_PORT dbname=blinkhook user=$PG_USER connect_timeout=2"
write_config "[store] backend = postgresql" "[store] node = n1"
new_log
run_daemon
t0=$SECONDS
check "a server that never answers: the connection attempt ends at connect_timeout, and is logged" \
	wait_until 6 grep -q "cannot connect to the PostgreSQL store (no connection within 2s)" "$T/daemon.log"
check "the next try starts at the next host: the daemon comes up on it" \
	eval 'wait_until 15 healthz_is 200 && grep -q "connected to the PostgreSQL store at 127.0.0.1:$RW_PORT " "$T/daemon.log"'
diag "up $((SECONDS - t0)) s after the start"
stop_daemon
check "the daemon stops cleanly" test "$D_STATUS" = 0

new_log
mv "$T/earlier.log" "$T/daemon.log"
[ -n "${SHOWLOG:-}" ] && cat "$T/daemon.log" >&2
[ "$FAILS" -eq 0 ]
