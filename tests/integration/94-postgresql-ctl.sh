#!/usr/bin/env bash
# blinkhookctl on the PostgreSQL store: log --follow prints an event whose
# transaction took its seq before another's and committed after it, once;
# status/jobs/log read a history larger than one page (keyset pages).
. "$(dirname "$0")/../lib.sh"

pg_start
start_sim --min-interval 0 --blink-time 0.5
write_config "[store] backend = postgresql" "[store] node = n1" "[callback] wait = 2s"
start_daemon

first=$(ctl blink Q2AA-PGCT-0001 --duration 1)
check "a first job is in the database" wait_until 10 test "$(pg_sql "select count(*) from events where job_id = '$first'")" -ge 1

ctl log --follow --json >"$T/follow.out" 2>"$T/follow.err" &
FOLLOW_PID=$!
PIDS+=("$FOLLOW_PID")
lines() { grep -c -- "$1" "$T/follow.out"; }
lines_ge() { test "$(lines "$1")" -ge "$2"; }
check "log --follow prints the first job's queued event" wait_until 10 lines_ge "\"id\":\"$first\"" 1

# ---- a late commit: its seq below the events committed before it ----
# A queued record as the daemon wrote it, under another id.
late=$(pg_sql "select jsonb_set(record, '{id}', '\"late-0001\"') from events
	where job_id = '$first' and record->>'event' = 'queued'")
PGPASSFILE=$T/pgpass "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port "$PG_DIR")" -U "$PG_SUPER" -d blinkhook \
	-c "begin; insert into events (job_id, node, record) values ('late-0001', 'psql', '$late');
	notify blinkhook_events; select pg_sleep(2); commit;" >/dev/null 2>&1 &
LATE=$!
PIDS+=("$LATE")
# The late transaction holds its seq; the daemon's commit takes a higher one
# and commits first, and log --follow reads after it.
sleep 0.5
second=$(ctl blink Q2AA-PGCT-0002 --duration 1)
check "log --follow prints the job committed meanwhile" wait_until 10 lines_ge "\"id\":\"$second\"" 1
wait "$LATE"
check "the late transaction's event has the lower seq" \
	test "$(pg_sql "select (select seq from events where job_id = 'late-0001') < (select min(seq) from events where job_id = '$second')")" = t
check "log --follow prints the late transaction's event when it commits" wait_until 10 lines_ge '"id":"late-0001"' 1
# Reads after it (a commit's notification, the 5 s timeout) print it no more.
ctl blink Q2AA-PGCT-0003 --duration 1 >/dev/null
sleep 6
check "and prints it once, however many reads came after (seen $(lines '"id":"late-0001"'))" \
	test "$(lines '"id":"late-0001"')" = 1
check "log --follow printed each of the daemon's events once" \
	test "$(grep -c . "$T/follow.out")" = "$(pg_sql "select count(*) from events")"

# ---- 12,000 events: more than two pages ----
stop_daemon
pg_sql "begin; insert into events (job_id, node, record)
	select 'bulk-' || g, 'psql', jsonb_set(record, '{id}', to_jsonb('bulk-' || g))
	from (select record from events where job_id = '$first' and record->>'event' = 'queued') r, generate_series(1, 12000) g;
	notify blinkhook_events; commit;" >/dev/null
# The server logs the statements of the read (a superuser's setting): its
# pages are counted there.
log_at=$(stat -c %s "$PG_DIR/server.log")
pg_sql "alter database blinkhook set log_statement = 'all'" >/dev/null
check "blinkhookctl jobs lists the 12,000 jobs" \
	test "$(ctl jobs --json | json 'len(set(x["id"] for x in j if x["id"].startswith("bulk-")))')" = 12000
pg_sql "alter database blinkhook reset log_statement" >/dev/null
pages=$(tail -c +$((log_at + 1)) "$PG_DIR/server.log" | grep -c 'ORDER BY seq LIMIT 5000) e ON true')
total=$(pg_sql "select count(*) from events")
check "read a page of at most 5000 events at a time ($pages statements for $total events)" \
	test "$pages" = $((total / 5000 + 1))
check "blinkhookctl log prints each of their events once" \
	test "$(ctl log --json | grep -o '"id":"bulk-[0-9]*"' | sort -u | wc -l)|$(ctl log --json | grep -c '"id":"bulk-')" = "12000|12000"
check "blinkhookctl status reads one of them, in the last page" \
	test "$(ctl status bulk-12000 --json | json 'j["state"]')" = queued
check "log --follow printed each of them once" wait_until 15 lines_ge '"id":"bulk-' 12000
sleep 6
check "and no more after its next read" test "$(grep -o '"id":"bulk-[0-9]*"' "$T/follow.out" | sort -u | wc -l)|$(lines '"id":"bulk-')" = "12000|12000"
kill "$FOLLOW_PID" 2>/dev/null

[ -n "${SHOWLOG:-}" ] && cat "$T/daemon.log" "$T/follow.err" >&2
[ "$FAILS" -eq 0 ]
