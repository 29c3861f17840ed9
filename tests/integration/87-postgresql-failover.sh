#!/usr/bin/env bash
# The PostgreSQL store through a primary failover: a streaming replica, a
# multi-host conninfo with target_session_attrs=read-write; the primary
# stopped, the replica promoted; the daemon finds the new primary by itself
# and every job completes, those from before the failover included.
. "$(dirname "$0")/../lib.sh"

pg_start
PRIMARY=$PG_DIR
pg_standby
STANDBY=$PG_STANDBY_DIR
start_sim --min-interval 0.2 --blink-time 0.5 --callback-retries 40 --callback-retry-delay 0.5
# The multi-host connection string, password included, in the credential
# postgresql-conninfo as an operator gives it.
pg_credential "$PG_CREDS" "host=127.0.0.1,127.0.0.1 port=$PG_PORT,$PG_STANDBY_PORT dbname=blinkhook user=$PG_USER target_session_attrs=read-write"
write_config "[store] backend = postgresql" "[store] node = n1" "[callback] wait = 2s"
start_daemon

count_on() { PG_DIR=$1 pg_count "$2"; }
count_on_is() { test "$(count_on "$1" "$2")" = "$3"; }

for i in 1 2 3; do ctl blink "Q2AA-PGFO-000$i" --duration 1 >/dev/null; done
check "before the failover, three jobs complete on the primary" \
	wait_until 30 count_on_is "$PRIMARY" "state = 'complete'" 3
check "the replica has them too (streaming)" wait_until 10 count_on_is "$STANDBY" "state = 'complete'" 3

pg_cluster_stop "$PRIMARY"
for i in 4 5 6; do ctl blink "Q2AA-PGFO-000$i" --duration 1 >/dev/null; done
sleep 1
pg_promote "$STANDBY"
on_standby() { PG_DIR=$STANDBY pg_sql "select count(*) from pg_stat_activity where usename = '$PG_USER'" postgres | grep -qx '[1-9][0-9]*'; }
check "the daemon reconnects to the promoted replica by itself, and says where (host:port)" \
	eval 'wait_until 40 grep -q "reconnected to the PostgreSQL store at 127.0.0.1:$PG_STANDBY_PORT " "$T/daemon.log" && wait_until 10 on_standby'
check "every job completes on the new primary, those queued during the failover too" \
	wait_until 60 count_on_is "$STANDBY" "state = 'complete'" 6
check "the spool is empty" spool_empty
check "blinkhookctl reads the six jobs from the new primary" \
	test "$(ctl jobs --json | json 'len([x for x in j if x["state"] == "complete"])')" = 6

[ -n "${SHOWLOG:-}" ] && cat "$T/daemon.log" >&2
[ "$FAILS" -eq 0 ]
