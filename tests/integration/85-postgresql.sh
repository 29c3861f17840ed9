#!/usr/bin/env bash
# The PostgreSQL store ([store] backend = postgresql) against a real,
# throwaway cluster (tests/lib.sh: pg_start) and the Meraki simulator.
. "$(dirname "$0")/../lib.sh"

pg_start
check "a throwaway PostgreSQL cluster answers on its own socket" test "$(pg_sql 'select 1+1')" = 2

# ---- --check-config: the connection string, from the config or the credential ----
SIM_URL=http://127.0.0.1:1
write_config
cp "$T/bh.conf" "$T/base.conf"
checkconf() { MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh.conf" --check-config "$@" 2>&1; }

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
out=$(CREDENTIALS_DIRECTORY=$T/creds checkconf); rc=$?
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

[ "$FAILS" -eq 0 ]
