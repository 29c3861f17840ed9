#!/usr/bin/env bash
# How a node reads the other nodes' events from PostgreSQL: a job it claims
# without knowing it (its events before the reads' window) is read whole
# and worked, not renewed for good by nobody; a backlog is read a page at a
# time; the first read after a reconnection goes by seq (the new server's
# xids say nothing of what was read); a second daemon with the same node
# name is refused (and takes over once the first is gone); the session of a
# dead run of a node (idle, holding the node's lock) is ended.
. "$(dirname "$0")/../lib.sh"

pg_start
start_sim --min-interval 0.1 --blink-time 1 --callback-retries 40 --callback-retry-delay 0.5
export BLINKHOOK_LOG_LEVEL=debug
write_config "[store] backend = postgresql" "[store] node = n1" "[store] lease = 3s" \
	"[callback] wait = 5s" "[meraki] min_interval = 0.1s"
start_daemon

reads() { grep -c "PostgreSQL store: read [0-9]* events of other nodes' commits" "$T/daemon.log"; }
reads_above() { test "$(reads)" -gt "$1"; }
posts() { sim_get requests | json "len([r for r in j if r['method'] == 'POST' and '/devices/$1/' in r['path']])"; }
posts_ge() { test "$(posts "$1")" -ge "$2"; }

# ---- 1. a claimed job this node never read ----
real=$(ctl blink Q2AA-REAL-0001 --duration 1)
check "a job of this node completes" wait_state 30 "$real" complete
# A read after the job: the node's saved xmin is past the job's commit.
n=$(reads)
pg_sql "select pg_notify('blinkhook_events', '')" >/dev/null
wait_until 10 reads_above "$n"
# Another node's job, queued in a transaction older than that xmin (xid 3),
# its lease run out: the node's tick claims it.
pg_sql "with ev as (insert into events (job_id, node, record, xid)
		select 'orphan-0001', 'n0', record || '{\"id\": \"orphan-0001\", \"serial\": \"Q2AA-ORPH-0001\"}'::jsonb,
		'3'::xid8 from events where job_id = '$real' order by seq limit 1 returning seq)
	insert into jobs select (jsonb_populate_record(null::jobs, to_jsonb(j) || jsonb_build_object(
		'id', 'orphan-0001', 'serial', 'Q2AA-ORPH-0001', 'state', 'queued', 'leds_blink_id', null,
		'meraki_status', null, 'status_source', null, 'attempts', 0, 'error', null, 'owner', 'n0',
		'lease_until', now() - interval '1 minute', 'version', (select seq from ev)))).*
	from jobs j where id = '$real'" >/dev/null
check "the job claimed though never read is submitted" wait_until 20 posts_ge Q2AA-ORPH-0001 1
orphan_is() { test "$(pg_sql "select state || ' ' || owner from jobs where id = 'orphan-0001'")" = "$1"; }
check "and completes, on this node" wait_until 20 orphan_is "complete n1"
check "the log says its events were read whole" \
	grep -q "job orphan-0001: claimed, but this node has not read its events; reading them whole" "$T/daemon.log"

# ---- 2. a backlog, a page at a time ----
n=$(reads)
pg_sql "insert into events (job_id, node, record)
		select 'bulk-' || g, 'n0', record || jsonb_build_object('id', 'bulk-' || g, 'serial', 'Q2AA-BULK-0001')
		from (select record from events where job_id = '$real' order by seq limit 1) r, generate_series(1, 12000) g;
	select pg_notify('blinkhook_events', '')" >/dev/null
wait_until 30 reads_above "$n"
line=$(grep "PostgreSQL store: read [0-9]* events of other nodes' commits" "$T/daemon.log" | sed -n "$((n + 1))p")
diag "$line"
rows=$(sed -n 's/.* read \([0-9]*\) events .*/\1/p' <<<"$line")
check "12000 events of another node are read, in 3 pages" \
	eval '[ "${rows:-0}" -ge 12000 ] && grep -q " in 3 page(s) " <<<"$line"'
check "the first and the last of them are in the node's table" \
	eval 'grep -q "job bulk-1: queued, recorded by node n0" "$T/daemon.log" &&
		grep -q "job bulk-12000: queued, recorded by node n0" "$T/daemon.log"'

# ---- 3. the first read after a reconnection goes by seq ----
pg_sql "select pg_terminate_backend(pid) from pg_stat_activity where usename = 'blinkhook'" >/dev/null
check "the node reconnects" wait_until 20 grep -q "reconnected to the PostgreSQL store" "$T/daemon.log"
after_reconnect() { sed -n '/reconnected to the PostgreSQL store/,$p' "$T/daemon.log" |
	grep "PostgreSQL store: read [0-9]* events of other nodes' commits" | sed -n "${1}p"; }
wait_until 10 test -n "$(after_reconnect 1)"
diag "$(after_reconnect 1)"
check "its first read of the other nodes' events goes by the last xmin or by seq" \
	eval 'after_reconnect 1 | grep -q "(by transaction from [0-9]* or seq after [0-9]*)"'
pg_sql "select pg_notify('blinkhook_events', '')" >/dev/null
wait_until 10 test -n "$(after_reconnect 2)"
check "the next by transaction, from the first's xmin" eval 'after_reconnect 2 | grep -q "(by transaction from "'

# ---- 3b. a transaction running at the last read before a loss ----
# Another "node" inserts an event and holds its transaction open while
# more than SYNC_OVERLAP later events commit and are read; it commits just
# as the node's connection ends: the first read after the reconnection
# must find it (by the xmin kept across the loss; by seq it is too old).
mkfifo "$T/t.fifo"
PGPASSFILE=$T/pgpass "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p "$(pg_port "$PG_DIR")" \
	-U "$PG_SUPER" -d blinkhook <"$T/t.fifo" >"$T/t.out" 2>&1 &
PIDS+=($!)
exec 7>"$T/t.fifo"
echo "begin; insert into events (job_id, node, record)
	select 'late-0001', 'n0', record || '{\"id\": \"late-0001\", \"serial\": \"Q2AA-LATE-0001\"}'::jsonb
	from events where job_id = '$real' order by seq limit 1;" >&7
open_tx() { test "$(pg_sql "select count(*) from pg_stat_activity where state = 'idle in transaction'")" = 1; }
wait_until 10 open_tx
n=$(reads)
pg_sql "insert into events (job_id, node, record)
		select 'more-' || g, 'n0', record || jsonb_build_object('id', 'more-' || g, 'serial', 'Q2AA-MORE-0001')
		from (select record from events where job_id = '$real' order by seq limit 1) r, generate_series(1, 1500) g;
	select pg_notify('blinkhook_events', '')" >/dev/null
check "the later events are read" wait_until 30 grep -q "job more-1500: queued, recorded by node n0" "$T/daemon.log"
wait_until 10 reads_above "$n"
reconnects() { grep -c "reconnected to the PostgreSQL store" "$T/daemon.log"; }
r0=$(reconnects)
echo "commit; select pg_terminate_backend(pid) from pg_stat_activity where usename = 'blinkhook';" >&7
exec 7>&-
check "the node reconnects again" wait_until 20 eval '[ "$(reconnects)" -gt "$r0" ]'
check "the transaction's event is read after the reconnection" \
	wait_until 15 grep -q "job late-0001: queued, recorded by node n0" "$T/daemon.log"

# ---- 3c. a read cut off part-way ----
# A backlog of several pages; a session waits until a page of the node's
# read holds its lock on events, then asks for an exclusive lock: a later
# page waits behind it, and the connection ends there.  The pages read
# must not move the next read's seq window past the backlog's start.
mkfifo "$T/c.fifo"
PGPASSFILE=$T/pgpass "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p "$(pg_port "$PG_DIR")" \
	-U "$PG_SUPER" -d blinkhook <"$T/c.fifo" >"$T/c.out" 2>&1 &
PIDS+=($!)
exec 7>"$T/c.fifo"
s0=$(pg_sql "select max(seq) from events")
echo "begin; do \$\$ begin
	for i in 1..200000 loop
		exit when exists (select 1 from pg_locks l join pg_stat_activity a on a.pid = l.pid
			where a.usename = 'blinkhook' and l.relation = 'events'::regclass and l.granted);
		perform pg_stat_clear_snapshot();
	end loop; end \$\$;
	lock table events in access exclusive mode;" >&7
pg_sql "insert into events (job_id, node, record)
		select 'cut-' || g, 'n0', record || jsonb_build_object('id', 'cut-' || g, 'serial', 'Q2AA-CUTS-0001')
		from (select record from events where job_id = '$real' order by seq limit 1) r, generate_series(1, 20000) g;
	select pg_notify('blinkhook_events', '')" >/dev/null
page_waits() { test "$(pg_sql "select count(*) from pg_stat_activity where usename = 'blinkhook'
	and wait_event_type = 'Lock' and query like '%FROM events WHERE%'")" -ge 1; }
check "a later page of the read waits for the lock" wait_until 20 page_waits
r0=$(reconnects)
pg_sql "select pg_terminate_backend(pid) from pg_stat_activity where usename = 'blinkhook'" >/dev/null
echo "rollback;" >&7
exec 7>&-
wait_until 20 eval '[ "$(reconnects)" -gt "$r0" ]'
after_last_reconnect() { awk '/reconnected to the PostgreSQL store/ { buf = ""; next }
	/PostgreSQL store: read [0-9]* events of other nodes/ { buf = buf $0 "\n" } END { printf "%s", buf }' \
	"$T/daemon.log" | sed -n "${1}p"; }
wait_until 20 test -n "$(after_last_reconnect 1)"
diag "$(after_last_reconnect 1) (the backlog after seq $s0)"
from=$(after_last_reconnect 1 | sed -n 's/.* or seq after \([0-9]*\)).*/\1/p')
check "the next read's seq window starts before the backlog ($from < $s0)" test "${from:-$s0}" -lt "$s0"
check "the whole backlog is read" wait_until 20 grep -q "job cut-20000: queued, recorded by node n0" "$T/daemon.log"

# ---- 4. two daemons with the same node name ----
P2=$(free_port)
mkdir -p "$T/b"
sed -e "s|^listen = .*|listen = 127.0.0.1:$P2|" -e "s|^public_url = .*|public_url = http://127.0.0.1:$P2|" \
	-e "s|^dir = $T/spool|dir = $T/b/spool|" -e "s|^dir = $T/state|dir = $T/b/state|" "$T/bh.conf" >"$T/b.conf"
MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/b.conf" 2>>"$T/b.log" &
B_PID=$!
PIDS+=($B_PID)
said() { grep -c "another blinkhookd is connected to the PostgreSQL store as node n1; each node needs its own \[store\] node" "$T/b.log"; }
check "a second daemon named n1 is refused, with an error" wait_until 20 eval '[ "$(said)" -ge 1 ]'
code=$(curl -sS --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P2/healthz")
check "its /healthz answers 503 ($code)" test "$code" = 503
check "the first one stays up" curl -fsS --max-time 2 -o /dev/null "$D_URL/healthz"
stop_daemon
check "the second takes the name once the first is gone" \
	wait_until 40 curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$P2/healthz"
check "it said so once ($(said))" test "$(said)" = 1

# ---- 5. the session of a dead run of the node ----
# A run cut off without a word (a power loss) leaves its session open, its
# lock held, until the server notices: a session idle with the lock.
kill -TERM "$B_PID"
wait "$B_PID" 2>/dev/null
(umask 077 && printf '127.0.0.1:*:*:%s:%s\n' "$PG_USER" "$PG_PASSWORD" >"$T/pgpass-node")
(echo "select pg_advisory_lock(1580962247, hashtext('n1'));"; sleep 120) |
	PGAPPNAME=deadrun PGPASSFILE=$T/pgpass-node "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" \
		-d blinkhook >/dev/null 2>&1 &
DEAD=$!
PIDS+=($DEAD)
dead_locked() {
	test "$(pg_sql "select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid
		where a.application_name = 'deadrun' and l.locktype = 'advisory' and l.granted")" = 1
}
check "a stale session of node n1 holds its lock" wait_until 10 dead_locked
P3=$(free_port)
mkdir -p "$T/c"
sed -e "s|^listen = .*|listen = 127.0.0.1:$P3|" -e "s|^public_url = .*|public_url = http://127.0.0.1:$P3|" \
	-e "s|^lease = .*|lease = 2s|" \
	-e "s|^dir = $T/spool|dir = $T/c/spool|" -e "s|^dir = $T/state|dir = $T/c/state|" "$T/bh.conf" >"$T/c.conf"
grep -q "^lease = 2s" "$T/c.conf" || diag "no lease line in $T/c.conf"
MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/c.conf" 2>>"$T/c.log" &
C_PID=$!
PIDS+=($C_PID)
check "a new run of n1 is refused at first" \
	wait_until 10 grep -q "another blinkhookd is connected to the PostgreSQL store as node n1" "$T/c.log"
check "then ends the stale session and comes up" \
	wait_until 20 curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$P3/healthz"
check "saying so" grep -q "ended the PostgreSQL session of an earlier run of node n1 (idle for [0-9]*s)" "$T/c.log"
check "the stale session is gone" eval '! dead_locked'
kill -TERM "$C_PID"
wait "$C_PID" 2>/dev/null

[ "$FAILS" -eq 0 ]
