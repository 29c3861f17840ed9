#!/usr/bin/env bash
# The PostgreSQL store ([store] backend = postgresql) against a real,
# throwaway cluster (tests/lib.sh: pg_start) and the Meraki simulator.
. "$(dirname "$0")/../lib.sh"

pg_start
check "a throwaway PostgreSQL cluster answers (over TCP, by password)" test "$(pg_sql 'select 1+1')" = 2
# The test cluster is set up as an operator's should be: nothing trusted,
# the daemon's role by scram-sha-256 password, TCP on loopback only.
check "its pg_hba.conf has no trust line, only scram-sha-256" \
	test "$(pg_sql "select string_agg(distinct auth_method, ',') from pg_hba_file_rules")" = scram-sha-256
check "it listens on 127.0.0.1 only, its socket's directory is the cluster user's alone (0700)" \
	test "$(pg_sql 'show listen_addresses')|$(stat -c %a "$PG_DIR")" = "127.0.0.1|700"
check "the role blinkhook cannot log in without its password" \
	eval '! PGPASSWORD=wrong "$PG_BIN/psql" -X -w -At -h 127.0.0.1 -p "$PG_PORT" -U blinkhook -d blinkhook -c "select 1" >/dev/null 2>&1'
check "the role blinkhook is no superuser" test "$(pg_sql "select rolsuper from pg_roles where rolname = 'blinkhook'")" = f

# ---- --check-config: the connection string, from the config or the credential ----
SIM_URL=http://127.0.0.1:1
write_config
cp "$T/bh.conf" "$T/base.conf"
# Without the test cluster's credential unless a check names one.
checkconf() { CREDENTIALS_DIRECTORY=${CHECK_CREDS:-} MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh.conf" --check-config "$@" 2>&1; }

printf '[store]\nbackend = postgresql\nnode = n1\nconninfo = %s\n' "$PG_CONNINFO" >>"$T/bh.conf"
out=$(checkconf)
check "--check-config accepts [store] backend = postgresql and names the conninfo's source and the node" \
	grep -q "OK; API key .* PostgreSQL store, connection string from config, node n1" <<<"$out"

cp "$T/base.conf" "$T/bh.conf"
printf '[store]\nbackend = postgresql\nconninfo = %s password=hunter2\n' "$PG_CONNINFO" >>"$T/bh.conf"
out=$(checkconf); rc=$?
check "--check-config refuses a password in the config file's conninfo, and does not echo it" \
	eval '[ $rc -eq 1 ] && grep -q "conninfo: holds a password; put the whole string into the credential postgresql-conninfo" <<<"$out" && ! grep -q hunter2 <<<"$out"'

mkdir -m 0700 "$T/creds"
printf '%s password=hunter2\n' "$PG_CONNINFO" >"$T/creds/postgresql-conninfo"
cp "$T/base.conf" "$T/bh.conf"
printf '[store]\nbackend = postgresql\n' >>"$T/bh.conf"
out=$(CHECK_CREDS=$T/creds checkconf); rc=$?
check "--check-config takes the conninfo (password and all) from the credential postgresql-conninfo" \
	eval '[ $rc -eq 0 ] && grep -q "connection string from credential, node " <<<"$out" && ! grep -q hunter2 <<<"$out"'
out=$(checkconf); rc=$?
check "--check-config: backend = postgresql without any conninfo is an error" \
	eval '[ $rc -eq 1 ] && grep -q "no PostgreSQL connection string: set the credential postgresql-conninfo or \[store\] conninfo" <<<"$out"'
cp "$T/base.conf" "$T/bh.conf"
printf '[store]\nbackend = postgresql\nconninfo = host=x colour=red\n' >>"$T/bh.conf"
out=$(checkconf); rc=$?
check "--check-config: a conninfo libpq cannot parse is an error" \
	eval '[ $rc -eq 1 ] && grep -q "conninfo: invalid connection option \"colour\"" <<<"$out"'

# ---- the connection: schema, /healthz, the database going away and back ----
start_sim
D_PORT=$(free_port)
# The connection string, password included, from the credential
# postgresql-conninfo (tests/lib.sh: pg_start), as operators give it.
write_config "[store] backend = postgresql" "[store] node = n1"
start_daemon
check "the daemon comes up on the PostgreSQL store (/healthz 200)" \
	curl -fsS --max-time 2 -o /dev/null "$D_URL/healthz"
check "it created the schema: version 1 (one migration), and the tables jobs, events, pacing, keys" \
	test "$(pg_sql "select string_agg(version::text, ',' order by version) from schema_version")|$(pg_sql "select string_agg(tablename, ',' order by tablename) from pg_tables where schemaname = 'public'")" = "1|events,jobs,keys,pacing,schema_version"

healthz() { curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$D_URL/healthz"; }
healthz_is() { test "$(healthz)" = "$1"; }
pg_cluster_stop "$PG_DIR"
check "with the database stopped, /healthz answers 503" wait_until 10 healthz_is 503
sleep 4
check "the daemon says once that the store is unreachable (not at every retry)" \
	test "$(grep -c 'the PostgreSQL store is unreachable' "$T/daemon.log")" = 1
check "the daemon keeps running while the database is down" kill -0 "$D_PID"
pg_cluster_start "$PG_DIR"
check "with the database back, the daemon reconnects by itself (/healthz 200)" wait_until 35 healthz_is 200
check "and says so once" test "$(grep -c 'reconnected to the PostgreSQL store' "$T/daemon.log")" = 1
stop_daemon
check "the daemon stops cleanly on SIGTERM" test "$D_STATUS" = 0

# ---- the database down when the daemon starts ----
pg_cluster_stop "$PG_DIR"
: >"$T/daemon.log"
MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh.conf" 2>>"$T/daemon.log" &
D_PID=$!
PIDS+=("$D_PID")
check "started with the database down, the daemon runs and /healthz answers 503" \
	eval 'wait_until 10 healthz_is 503 && kill -0 "$D_PID"'
check "it says once that it cannot connect" \
	eval 'sleep 2; test "$(grep -c "cannot connect to the PostgreSQL store" "$T/daemon.log")" = 1'
queued=$(ctl blink Q2AA-PGST-0001 --duration 1)
sleep 1
check "meanwhile the spool file stays" test -n "$(ls -A "$T/spool/new")"
pg_cluster_start "$PG_DIR"
check "once the database is there, it connects by itself (/healthz 200)" wait_until 20 healthz_is 200
check "and takes the spool file into the database" \
	wait_until 10 test "$(pg_sql "select count(*) from jobs where id = '$queued'")" = 1
stop_daemon
check "the daemon stops cleanly" test "$D_STATUS" = 0

# ---- two nodes starting at the same moment on an empty database ----
pg_sql 'create database fresh owner blinkhook' >/dev/null
pg_credential "$T/freshcreds" "${PG_CONNINFO/dbname=blinkhook/dbname=fresh}"
D_PORT=$(free_port)
write_config "[store] backend = postgresql" "[store] node = a"
D2_PORT=$(free_port)
sed -e "s|127.0.0.1:$D_PORT|127.0.0.1:$D2_PORT|g" -e "s|$T/state|$T/state2|" -e "s|$T/spool|$T/spool2|" \
	-e "s|node = a|node = b|" "$T/bh.conf" >"$T/bh2.conf"
CREDENTIALS_DIRECTORY=$T/freshcreds MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh.conf" 2>>"$T/a.log" &
A_PID=$!
CREDENTIALS_DIRECTORY=$T/freshcreds MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh2.conf" 2>>"$T/b.log" &
B_PID=$!
PIDS+=("$A_PID" "$B_PID")
up() { curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$1/healthz"; }
check "two nodes starting at once on an empty database both come up" \
	eval 'wait_until 15 up "$D_PORT" && wait_until 15 up "$D2_PORT"'
check "the schema was created once" \
	test "$(pg_sql "select count(*) || '|' || max(version) from schema_version" fresh)" = "1|1"
check "and one callback key, which both use" \
	test "$(pg_sql 'select count(*) from keys' fresh)" = 1
check "neither node logged an error" eval '! grep -q "<3>\|error\|cannot" "$T/a.log" "$T/b.log"'
check "the server's notices do not reach stderr as libpq's raw text" eval '! grep -q "^NOTICE:" "$T/daemon.log" "$T/a.log" "$T/b.log"'

# ---- a schema newer than this daemon: it stops rather than guess ----
kill "$A_PID" "$B_PID" 2>/dev/null
wait "$A_PID" "$B_PID" 2>/dev/null
pg_sql 'insert into schema_version (version) values (99)' fresh
CREDENTIALS_DIRECTORY=$T/freshcreds MERAKI_DASHBOARD_API_KEY=$API_KEY timeout 20 "$BLINKHOOKD" -c "$T/bh.conf" 2>"$T/new.log"
rc=$?
check "on a schema newer than it knows, the daemon says so and exits 1" \
	eval '[ $rc = 1 ] && grep -q "schema is version 99, newer than this blinkhookd knows (1): run the newer blinkhookd" "$T/new.log"'

[ -n "${SHOWLOG:-}" ] && cat "$T/daemon.log" "$T/a.log" "$T/b.log" >&2
[ "$FAILS" -eq 0 ]
