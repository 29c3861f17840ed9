#!/usr/bin/env bash
# The PostgreSQL store's several-nodes claims test.  It builds on the basic
# one, 85 (one node, the cluster, the schema): 84 is only the free number
# below 85-89 when it was added, not an order to read them in.
#
# Claims and leases of two nodes on one PostgreSQL (lease 3 s, a tick every
# second): under a steady stream of commits the tick still renews the
# leases (no lease of a job node a works runs out, node b takes none of
# them); a node stopped past its lease (SIGSTOP) does not submit, once
# continued, the job the other node took meanwhile; jobs claimed at a tick
# whose following read of the events failed (the connection lost) are still
# worked after the reconnection; the same explicit id queued on both nodes
# is taken once, and the second node rejects its request without touching
# the first one's job.
. "$(dirname "$0")/../lib.sh"

pg_start
start_sim --min-interval 0.1 --blink-time 10 --callback-retries 80 --callback-retry-delay 0.5

declare -A PORT NPID
PORT[a]=$(free_port)
PORT[b]=$(free_port)
D_PORT=${PORT[a]}
# Both nodes' callbacks go to node a (any node verifies any job's callback).
write_config "[store] backend = postgresql" "[store] lease = 3s" \
	"[callback] wait = 5s" "[meraki] min_interval = 0.1s"
for n in a b; do
	mkdir -p "$T/$n"
	sed -e "s|^listen = .*|listen = 127.0.0.1:${PORT[$n]}|" \
		-e "s|^dir = $T/spool|dir = $T/$n/spool|" -e "s|^dir = $T/state|dir = $T/$n/state|" \
		-e "s|^backend = postgresql|backend = postgresql\nnode = node-$n|" "$T/bh.conf" >"$T/$n.conf"
done
start_node() {
	BLINKHOOK_LOG_LEVEL=debug MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/$1.conf" 2>>"$T/$1.log" &
	NPID[$1]=$!
	PIDS+=($!)
}
healthy() { curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:${PORT[$1]}/healthz"; }
nctl() {
	local n=$1
	shift
	"$BLINKHOOKCTL" -c "$T/$n.conf" "$@"
}
count_ge() { test "$(pg_count "$1")" -ge "$2"; }
posts() { sim_get requests | json "len([r for r in j if r['method'] == 'POST' and '/devices/$1/' in r['path']])"; }
posts_ge() { test "$(posts "$1")" -ge "$2"; }

start_node a
start_node b
check "two nodes come up" wait_until 20 sh -c "curl -fsS --max-time 1 -o /dev/null http://127.0.0.1:${PORT[a]}/healthz &&
	curl -fsS --max-time 1 -o /dev/null http://127.0.0.1:${PORT[b]}/healthz"

# ---- 1. a steady stream of commits does not starve the lease renewals ----
# 40 jobs on node a, submitted; their callbacks come 10 s later, about one
# every 0.15 s, each recorded in a commit that a trigger makes last 0.4 s:
# there is always a callback waiting for the next commit.
for i in $(seq -w 1 40); do nctl a blink "Q2AA-STRV-00$i" --duration 1 >/dev/null; done
check "node a submitted its 40 jobs" wait_until 40 pg_count_is "serial like 'Q2AA-STRV-%' and state = 'submitted'" 40
pg_sql "create function slow_commit() returns trigger language plpgsql as \$\$ begin perform pg_sleep(0.4); return null; end \$\$;
	create trigger slow_commit after insert on events for each statement execute function slow_commit();"
expired=0 taken=0 samples=0
end=$((SECONDS + 14))
while [ $SECONDS -lt $end ] && ! pg_count_is "serial like 'Q2AA-STRV-%' and state = 'complete'" 40; do
	e=$(pg_count "owner = 'node-a' and state in ('queued', 'submitted') and lease_until < now()")
	t=$(pg_count "owner = 'node-b' and serial like 'Q2AA-STRV-%'")
	[ "$e" -gt "$expired" ] && expired=$e
	[ "$t" -gt "$taken" ] && taken=$t
	samples=$((samples + 1))
	sleep 0.25
done
diag "$samples samples; $(pg_count "serial like 'Q2AA-STRV-%' and state = 'complete'") of 40 complete by then"
check "every job completes" wait_until 40 pg_count_is "serial like 'Q2AA-STRV-%' and state = 'complete'" 40
pg_sql "drop trigger slow_commit on events"
check "under the stream of commits no lease of node a's unfinished jobs ran out (most at once: $expired)" \
	test "$expired" = 0
check "node b took none of node a's jobs (most: $taken)" test "$taken" = 0

# ---- 2. a node stopped past its lease does not submit what another took ----
# The pacing row pushed 6 s ahead: node a reserves the job's slot and waits
# for it; stopped meanwhile, its lease runs out; node b claims the job and
# submits it; node a, continued after its slot, must not submit it again.
pg_sql "insert into pacing (scope, next_allowed) values ('global', now() + interval '6 seconds')
	on conflict (scope) do update set next_allowed = now() + interval '6 seconds'"
pushed=$(pg_sql "select next_allowed from pacing where scope = 'global'")
fid=$(nctl a blink Q2AA-FENC-0001 --duration 1)
slot_moved() { test "$(pg_sql "select next_allowed > '$pushed' from pacing where scope = 'global'")" = t; }
check "node a reserves the fenced job's slot" wait_until 10 slot_moved
kill -STOP "${NPID[a]}"
check "node b claims the job when node a's lease runs out" wait_until 15 pg_count_is "id = '$fid' and owner = 'node-b'" 1
check "node b submits it" wait_until 20 posts_ge Q2AA-FENC-0001 1
kill -CONT "${NPID[a]}"
sleep 4
check "node a, continued, did not submit it again ($(posts Q2AA-FENC-0001) submission(s))" \
	test "$(posts Q2AA-FENC-0001)" = 1
check "node a let the job go" grep -q "job $fid: .*letting it go" "$T/a.log"

# ---- 3. claims taken at a tick whose read of the events failed ----
# Node b's jobs wait for their slot (the pacing row pushed ahead); node b
# dies.  The events table locked, node a's tick claims them and its next
# read of the events hangs; its connection is cut there; after the
# reconnection it must work the jobs it claimed.
pg_sql "update pacing set next_allowed = now() + interval '60 seconds' where scope = 'global'"
cids=()
for i in 1 2 3; do cids+=("$(nctl b blink "Q2AA-CLMB-000$i" --duration 1)"); done
check "node b committed its three jobs" wait_until 10 pg_count_is "serial like 'Q2AA-CLMB-%' and owner = 'node-b'" 3
sleep 1
kill -KILL "${NPID[b]}"
wait "${NPID[b]}" 2>/dev/null
PGAPPNAME=locker PGPASSFILE=$T/pgpass "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPER" -d blinkhook \
	-c "begin; lock table events in access exclusive mode; select pg_sleep(60);" >/dev/null 2>&1 &
LOCKER=$!
PIDS+=($LOCKER)
locked() {
	test "$(pg_sql "select count(*) from pg_locks l join pg_class c on c.oid = l.relation
		where c.relname = 'events' and l.mode = 'AccessExclusiveLock' and l.granted")" = 1
}
check "the events table is locked" wait_until 10 locked
check "node a claims node b's jobs when their lease runs out" \
	wait_until 15 pg_count_is "serial like 'Q2AA-CLMB-%' and owner = 'node-a'" 3
waiting_sync() {
	pg_sql "select pid from pg_stat_activity where wait_event_type = 'Lock' and application_name <> 'locker'
		and query like 'SELECT %record::text, %job_id, %seq, %node%FROM%events%'"
}
sync_waits() { test -n "$(waiting_sync)"; }
check "node a's read of the events after the claim waits for the lock" wait_until 10 sync_waits
pid=$(waiting_sync)
[ -n "$pid" ] && pg_sql "select pg_terminate_backend($pid)" >/dev/null
pg_sql "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'locker'" >/dev/null
pg_sql "update pacing set next_allowed = now() where scope = 'global'"
check "node a reconnects" wait_until 15 grep -q "reconnected to the PostgreSQL store" "$T/a.log"
check "node a submits the jobs it claimed before the failed read" \
	wait_until 30 pg_count_is "serial like 'Q2AA-CLMB-%' and state in ('submitted', 'complete')" 3

# ---- 4. the same explicit id queued on both nodes at the same moment ----
# Both nodes stopped, the request put into both spools, both continued: each
# takes its file before it hears of the other's commit (a trigger makes the
# commits last 0.5 s).  One job stands, with its own nonce; the other node
# rejects its request as the log store does.
start_node b
check "node b is back" wait_until 20 healthy b
pg_sql "create trigger slow_commit after insert on events for each statement execute function slow_commit();
	create or replace function slow_commit() returns trigger language plpgsql as \$\$ begin perform pg_sleep(0.5); return null; end \$\$;"
kill -STOP "${NPID[a]}" "${NPID[b]}"
nctl a blink Q2AA-DUPL-000A --id dup-1 --duration 1 >/dev/null
nctl b blink Q2AA-DUPL-000B --id dup-1 --duration 1 >/dev/null
kill -CONT "${NPID[a]}" "${NPID[b]}"
rejected_one() { test "$(ls "$T"/a/spool/rejected/*.reason "$T"/b/spool/rejected/*.reason 2>/dev/null | wc -l)" = 1; }
check "one of the two nodes rejects its request" wait_until 15 rejected_one
pg_sql "drop trigger slow_commit on events"
check "its reason is that the id is already used" \
	grep -q "already used" "$T"/a/spool/rejected/*.reason "$T"/b/spool/rejected/*.reason
check "both spools are empty" test -z "$(find "$T/a/spool/new" "$T/b/spool/new" -type f)"
check "one job of that id, with one queued event" \
	test "$(pg_sql "select count(*) from events where job_id = 'dup-1' and record->>'event' = 'queued'")" = 1
check "the job keeps the nonce of its own queued record" test "$(pg_sql "select count(*) from jobs j join events e
	on e.job_id = j.id and e.record->>'event' = 'queued' and e.record->>'nonce' = j.nonce where j.id = 'dup-1'")" = 1
check "it completes by its callback (the callback secret still verifies)" \
	wait_until 40 pg_count_is "id = 'dup-1' and state = 'complete' and status_source = 'callback'" 1

# ---- 5. a node reads only what the other nodes' commits brought ----
# 1500 events more in the table; then ten commits of node a, each read by
# node b.  Each read used to fetch the 1000 events below the highest seen
# again; now those of the transactions not ended at its last read.
pg_sql "insert into events (job_id, node, record) select 'filler-' || g, 'node-z', '{}'::jsonb from generate_series(1, 1500) g;
	analyze events"
nctl a blink Q2AA-SYNC-0000 --duration 1 >/dev/null
check "node a committed a job" wait_until 10 pg_count_is "serial = 'Q2AA-SYNC-0000'" 1
sleep 2
# What the server's backends fetched from the table events (their counts
# reach the statistics within a second of their going idle).
fetched() {
	pg_sql "select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) from pg_stat_user_tables where relname = 'events'"
}
f0=$(fetched)
for i in 1 2 3 4 5 6 7 8 9; do
	nctl a blink "Q2AA-SYNC-000$i" --duration 1 >/dev/null
	sleep 0.3
done
check "node a committed nine more" wait_until 10 pg_count_is "serial like 'Q2AA-SYNC-%'" 10
sleep 2
f1=$(fetched)
check "node b's reads after those commits fetched few events ($((f1 - f0)); a read of 1000 each before)" \
	test $((f1 - f0)) -lt 1000
# A transaction that took its seq before another's and commits after it:
# its event is read all the same.
late_id=$(pg_sql "select id from jobs where serial = 'Q2AA-SYNC-0001'")
PGAPPNAME=late PGPASSFILE=$T/pgpass "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPER" -d blinkhook -c "begin;
	insert into events (job_id, node, record) select '$late_id', 'node-z',
		jsonb_build_object('v', 1, 'ts', (select record->>'ts' from events where job_id = '$late_id' order by seq desc limit 1),
		'id', '$late_id', 'event', 'status', 'meraki_status', 'running', 'source', 'test');
	select pg_sleep(2); commit; select pg_notify('blinkhook_events', '');" >/dev/null 2>&1 &
LATE=$!
sleep 0.5
nctl a blink Q2AA-SYNC-0010 --duration 1 >/dev/null
check "node a commits after the late transaction took its seq" wait_until 10 pg_count_is "serial = 'Q2AA-SYNC-0010'" 1
wait "$LATE"
check "node b read the late transaction's event (lower seq, committed later)" \
	wait_until 10 grep -q "job $late_id: submitted, recorded by node node-z" "$T/b.log"

# ---- 6. a row is not kept from an update by another node's clock ----
# A node whose clock runs an hour ahead wrote the row last; node a's next
# change must still reach it (the guard is the events' order, not a clock).
vid=$(nctl a blink Q2AA-CLCK-0001 --duration 1)
check "node a submitted the job" wait_until 10 pg_count_is "id = '$vid' and state = 'submitted'" 1
pg_sql "update jobs set updated_at = now() + interval '1 hour' where id = '$vid'"
check "the job completes, and its row says so" wait_until 40 pg_count_is "id = '$vid' and state = 'complete'" 1


[ "$FAILS" -eq 0 ] || { for n in a b; do echo "# ---- node $n"; tail -n 40 "$T/$n.log" | sed 's/^/# /'; done; }
exit "$FAILS"
