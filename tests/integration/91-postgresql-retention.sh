#!/usr/bin/env bash
# The PostgreSQL store's history: [state] retention applied to the database
# (final jobs past it and their events deleted, in batches; live jobs kept,
# however old), and the first load read a page at a time, of the jobs still
# needed only.
. "$(dirname "$0")/../lib.sh"

pg_start
start_sim --min-interval 0.1 --blink-time 0.3
write_config "[store] backend = postgresql" "[store] node = n1"
start_daemon

# One real job, the template of the ones made below by SQL.
tpl=$(ctl blink Q2AA-PGRT-0001 --duration 1)
# rows_in TABLE_AND_WHERE: how many rows, e.g. rows_in "events where ..."
# (pg_count, of lib.sh, counts jobs by a condition alone).
rows_in() { pg_sql "select count(*) from $1"; }
rows_in_is() { test "$(rows_in "$1")" = "$2"; }
check "a job completes (the template)" wait_until 30 pg_count_is "id = '$tpl' and state = 'complete'" 1
stop_daemon

# copies PREFIX N AGE: N copies of the template job (its row and its events,
# ids and ledsBlinkIds of their own), PREFIX-1 ... PREFIX-N, final AGE ago.
copies() {
	pg_sql "insert into jobs select (jsonb_populate_record(null::jobs, to_jsonb(j) || jsonb_build_object(
			'id', '$1-' || i, 'leds_blink_id', '$1L' || i, 'owner', null,
			'updated_at', now() - interval '$3', 'created_at', now() - interval '$3' - interval '1 minute'))).*
		from jobs j, generate_series(1, $2) i where j.id = '$tpl'" >/dev/null &&
	pg_sql "insert into events (job_id, node, record)
		select '$1-' || i, 'elsewhere', e.record || jsonb_build_object('id', '$1-' || i)
			|| case when e.record ? 'leds_blink_id' then jsonb_build_object('leds_blink_id', '$1L' || i)
			   else '{}'::jsonb end
		from events e, generate_series(1, $2) i where e.job_id = '$tpl' order by i, e.seq" >/dev/null
}
# 1500 final jobs past the retention (30 days by default), 4000 within it.
copies old 1500 '40 days' && copies rec 4000 '1 day'
# A live job queued 40 days ago (its node gone): retention is not for it.
pg_sql "insert into jobs select (jsonb_populate_record(null::jobs, to_jsonb(j) || jsonb_build_object(
		'id', 'live-old', 'state', 'queued', 'leds_blink_id', null, 'meraki_status', null,
		'status_source', null, 'attempts', 0, 'owner', 'gone', 'lease_until', now() - interval '40 days',
		'updated_at', now() - interval '40 days', 'created_at', now() - interval '40 days'))).*
	from jobs j where j.id = '$tpl';
	insert into events (job_id, node, record) select 'live-old', 'gone', e.record || '{\"id\": \"live-old\"}'
	from events e where e.job_id = '$tpl' and e.record->>'event' = 'queued'" >/dev/null
per_job=$(rows_in "events where job_id = '$tpl'")
want=$(pg_sql "select count(*) from events e join jobs j on j.id = e.job_id where j.id not like 'old-%'")
check "the database holds 5502 jobs and more than 12,000 events to load" \
	eval 'rows_in_is jobs 5502 && [ "$want" = $((4001 * per_job + 1)) ] && [ "$want" -gt 12000 ]'
pages=$((want / 5000 + 1))

# The server logs the daemon's statements from here on: the retention
# pass's batches are seen there (the daemon logs the pass's total only).
pg_sql "alter role $PG_USER set log_statement = 'all'"
logged_from=$(($(wc -l <"$PG_DIR/server.log") + 1))
retain_statements() { tail -n "+$logged_from" "$PG_DIR/server.log" | grep -c 'WITH old AS (SELECT id FROM jobs WHERE state IN'; }
: >"$T/daemon.log"
start_daemon
check "the first load reads only the jobs still needed ($want events: not the 1500 past retention), in $pages pages of at most 5000" \
	wait_until 20 grep -q "loaded $want records from the PostgreSQL store: 4002 jobs, 1 unfinished, in $pages page(s) of at most 5000" "$T/daemon.log"
grep "loaded .* records" "$T/daemon.log" | sed 's/^/# /'
check "the retention pass deletes the final jobs past retention and their events" \
	wait_until 30 eval 'pg_count_is "id like '"'old-%'"'" 0 && rows_in_is "events where job_id like '"'old-%'"'" 0'
check "and says how many" grep -q "deleted 1500 final job(s) past retention from the PostgreSQL store" "$T/daemon.log"
check "in two batches (statements) of at most 1000 jobs: 1000, then the 500 left ($(retain_statements) statements)" \
	eval 'test "$(retain_statements)" = 2 &&
		test "$(tail -n "+$logged_from" "$PG_DIR/server.log" | grep "WITH old AS (SELECT id FROM jobs" | grep -c " LIMIT 1000 FOR UPDATE SKIP LOCKED")" = 2'
check "the final jobs within retention stay, with their events" \
	eval 'pg_count_is "id like '"'rec-%'"' or id = '"'$tpl'"'" 4001 && rows_in_is "events where job_id like '"'rec-%'"'" $((4000 * per_job))'
check "the live job queued 40 days ago stays, and completes" \
	wait_until 30 pg_count_is "id = 'live-old' and state = 'complete'" 1
check "blinkhookctl reads a loaded job" test "$(ctl status rec-4000 --json | json 'j["state"]')" = complete
stop_daemon
check "the daemon stops cleanly" test "$D_STATUS" = 0

[ -n "${SHOWLOG:-}" ] && cat "$T/daemon.log" >&2
[ "$FAILS" -eq 0 ]
