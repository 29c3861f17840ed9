#!/usr/bin/env bash
# The PostgreSQL store ([store] backend = postgresql) against a real,
# throwaway cluster (tests/lib.sh: pg_start) and the Meraki simulator.
. "$(dirname "$0")/../lib.sh"

pg_start
check "a throwaway PostgreSQL cluster answers on its own socket" test "$(pg_sql 'select 1+1')" = 2

[ "$FAILS" -eq 0 ]
