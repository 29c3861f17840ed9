#!/usr/bin/env bash
# A job's end that the database lost: after an asynchronous failover the
# promoted standby may lack the last transactions of the old primary, so a
# job this node recorded complete is "submitted" again in the database.
# The node must not go on believing its own memory: its claim tick finds
# the unfinished row, the node reads the job again from the store and
# works it (asks Meraki), and the row ends complete again.  Simulated here
# by rolling the job's row and events back by hand, as a failover would
# leave them.
. "$(dirname "$0")/../lib.sh"

pg_start
start_sim --min-interval 0.1 --blink-time 0.5 --callback-retries 40 --callback-retry-delay 0.5
write_config "[store] backend = postgresql" "[store] node = n1" "[store] lease = 3s" \
	"[callback] wait = 2s" "[meraki] min_interval = 0.1s"
start_daemon

id=$(ctl blink Q2AA-LOST-0001 --duration 1)
check "the job completes, in the database too" \
	eval 'wait_state 30 "$id" complete && wait_until 10 pg_count_is "id = '"'$id'"' and state = '"'complete'"'" 1'
polls() { sim_get requests | json "len([r for r in j if r['method'] == 'GET' and '/leds/blink/' in r['path']])"; }
polls0=$(polls)

# What the promoted standby would hold: the job as it was once submitted,
# its later events (the status records) never received.
pg_sql "delete from events where job_id = '$id' and seq > (select min(seq) from events
		where job_id = '$id' and record->>'event' = 'submitted');
	update jobs set state = 'submitted', meraki_status = null, status_source = null,
		version = (select max(seq) from events where job_id = '$id'),
		lease_until = now() - interval '1 minute' where id = '$id'" >/dev/null
check "the rolled-back row says submitted" pg_count_is "id = '$id' and state = 'submitted'" 1

check "the node finds the end it recorded is not in the store, and says so" \
	wait_until 15 grep -q "job $id: complete here, but the PostgreSQL store has it unfinished" "$T/daemon.log"
check "it asks Meraki again (a poll), as for any submitted job" \
	eval 'wait_until 20 eval "test \$(polls) -gt $polls0"'
check "and the row ends complete again" \
	wait_until 30 pg_count_is "id = '$id' and state = 'complete'" 1
check "blinkhookctl status agrees" state_is "$id" complete
check "the job was submitted once, not again" \
	test "$(sim_get requests | json "len([r for r in j if r['method'] == 'POST' and 'Q2AA-LOST-0001' in r['path']])")" = 1

[ -n "${SHOWLOG:-}" ] && cat "$T/daemon.log" >&2
[ "$FAILS" -eq 0 ]
