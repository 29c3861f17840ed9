#!/usr/bin/env bash
# The PostgreSQL store on one node, end to end: jobs from the spool into the
# database, submitted, completed by their callbacks, loaded again at a
# restart; the database stopped for 3 s mid-run (callbacks 503, never 2xx,
# the spool held), and every job still completes.
. "$(dirname "$0")/../lib.sh"

pg_start
# The first two jobs are queued by name and by MAC (resolved through the
# simulator's inventory): the row keeps those too.
printf '%s' '{"organizations": [{"id": "549236", "name": "Simulated Organization", "devices": [
	{"name": "pg-sw-1", "serial": "Q2AA-PGPG-0001", "mac": "00:18:0a:00:0c:01"},
	{"name": "pg-sw-2", "serial": "Q2AA-PGPG-0002", "mac": "00:18:0a:00:0c:02"}]}]}' >"$T/inventory.json"
start_sim --inventory "$T/inventory.json" --min-interval 0.2 --blink-time 1.5 --callback-retries 40 --callback-retry-delay 0.5
write_config "[store] backend = postgresql" "[store] node = n1" "[callback] wait = 2s"
start_daemon


ids=("$(ctl blink --name pg-sw-1 --duration 2)" "$(ctl blink --mac 0018.0a00.0c02 --duration 2)")
for i in 3 4 5; do ids+=("$(ctl blink "Q2AA-PGPG-000$i" --duration 2)"); done
check "five jobs reach complete in the database" wait_until 40 pg_count_is "state = 'complete'" 5
check "the spool files were removed (after the commit)" spool_empty
check "no job was submitted twice" \
	test "$(sim_get requests | json 'len([r for r in j if r["method"] == "POST"])')" = 5

row=$(pg_sql "select row_to_json(jobs) from jobs where id = '${ids[0]}'")
row2=$(pg_sql "select row_to_json(jobs) from jobs where id = '${ids[1]}'")
check "a job's row holds every field of the job JSON, as the log store has them" python3 -c '
import json, sys, re
j, j2 = json.loads(sys.argv[1]), json.loads(sys.argv[2])
need = ["id","serial","name","mac","duration","state","leds_blink_id","meraki_status","status_source","attempts","error","created_at","updated_at"]
assert all(k in j for k in need), [k for k in need if k not in j]
assert j["serial"] == "Q2AA-PGPG-0001" and j["duration"] == 2 and j["state"] == "complete", j
assert j["name"] == "pg-sw-1" and j["mac"] is None, j
assert j2["serial"] == "Q2AA-PGPG-0002" and j2["mac"] == "00:18:0a:00:0c:02" and j2["name"] is None, j2
assert isinstance(j["leds_blink_id"], str) and j["meraki_status"] == "complete", j
assert j["status_source"] == "callback" and j["attempts"] == 1 and j["error"] is None, j
assert re.match(r"^[0-9a-f]{32}$", j["nonce"]), j
' "$row" "$row2"
evs=$(pg_sql "select string_agg(record->>'event', ',' order by seq) from events where job_id = '${ids[0]}'")
check "its events are the job log's records, in order (queued, resolved, submitted, ..., complete: $evs)" \
	eval '[[ "$evs" == queued,resolved,submitted,*complete ]]'

st=$(ctl status "${ids[0]}" --json)
check "blinkhookctl status --json reads the job from the database, in the log store's shape" python3 -c '
import json, sys, re
j, row = json.loads(sys.argv[1]), json.loads(sys.argv[2])
need = ["id","serial","name","mac","duration","state","leds_blink_id","meraki_status","status_source","attempts","error","created_at","updated_at"]
assert all(k in j for k in need), [k for k in need if k not in j]
assert {k: j[k] for k in need if k not in ("created_at", "updated_at")} == {k: row[k] for k in need if k not in ("created_at", "updated_at")}, (j, row)
rfc = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
assert rfc.match(j["created_at"]) and rfc.match(j["updated_at"]), j
' "$st" "$row"
check "blinkhookctl jobs lists the five jobs from the database" \
	test "$(ctl jobs --json | json 'len([x for x in j if x["state"] == "complete"])')" = 5
check "blinkhookctl log prints the database's events" \
	test "$(ctl log --json | grep -c '"event":"queued"')" = 5

# ---- the callback key is the database's, shared by every node ----
check "the database holds one callback key" test "$(pg_sql "select count(*) || '|' || max(length(key)) from keys")" = "1|32"
# secret PG|FILE JOB: the job's secret under the database's key or under the
# local state/secret.key: base64url(HMAC-SHA256(key, id NUL nonce)).
secret() {
	local keyhex
	if [ "$1" = PG ]; then keyhex=$(pg_sql "select encode(key, 'hex') from keys where name = 'callback'")
	else keyhex=$(od -An -tx1 -v "$T/state/secret.key" | tr -d ' \n'); fi
	python3 -c '
import base64, hashlib, hmac, sys
msg = sys.argv[2].encode() + b"\0" + sys.argv[3].encode()
print(base64.urlsafe_b64encode(hmac.new(bytes.fromhex(sys.argv[1]), msg, hashlib.sha256).digest()).decode().rstrip("="))
' "$keyhex" "$2" "$(pg_sql "select nonce from jobs where id = '$2'")"
}
repeat_cb() { # repeat_cb SECRET: the job's final callback again, its HTTP status
	local lbi
	lbi=$(pg_sql "select leds_blink_id from jobs where id = '${ids[0]}'")
	curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary \
		"{\"callbackId\":\"9\",\"sentAt\":\"2026-01-01T00:00:00Z\",\"sharedSecret\":\"$1\",\"message\":{\"ledsBlinkId\":\"$lbi\",\"status\":\"complete\",\"error\":null}}" \
		"$D_URL/callbacks/leds-blink/${ids[0]}"
}
check "a callback signed with the database's key is accepted (200, a repeat)" test "$(repeat_cb "$(secret PG "${ids[0]}")")" = 200
check "one signed with the node's local key file is refused (401): the database's key is the one" \
	test "$(repeat_cb "$(secret FILE "${ids[0]}")")" = 401

# ---- a restart loads the jobs from the database ----
stop_daemon
check "the daemon stops cleanly" test "$D_STATUS" = 0
start_daemon
check "a restart loads the jobs from the database" \
	wait_until 10 grep -q "loaded [0-9]* records from the PostgreSQL store: 5 jobs, 0 unfinished" "$T/daemon.log"

# ---- the database stopped for 3 s mid-run ----
ids=()
for i in 1 2 3 4; do ids+=("$(ctl blink "Q2AA-PGDN-000$i" --duration 1)"); done
# Down while blinks are out: their callbacks come during the outage.
wait_until 20 pg_count_is "state = 'submitted'" 1
pg_cluster_stop "$PG_DIR"
t_down=$(now)
queued_id=$(ctl blink "Q2AA-PGDN-0009" --duration 1)
sleep 3
check "while the database is down, a new spool file stays in the spool" eval '! spool_empty'
t_up=$(now)
pg_cluster_start "$PG_DIR"
ids+=("$queued_id")
check "after the outage every job completes" wait_until 60 pg_count_is "serial like 'Q2AA-PGDN%' and state = 'complete'" 5
check "the spool is empty again" spool_empty
cbs=$(sim_get callbacks)
check "callbacks during the outage got 503 (at least one), never 2xx" python3 -c '
import json, sys
cbs, down, up = json.loads(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
during = [c for c in cbs if down <= c["t"] <= up]
assert during, "no callback came during the outage"
assert all(c["http_status"] == 503 for c in during), [(c["t"], c["http_status"]) for c in during]
' "$cbs" "$t_down" "$t_up"
check "the daemon said once that the store went away, once that it is back" \
	test "$(grep -c 'the PostgreSQL store is unreachable' "$T/daemon.log")|$(grep -c 'reconnected to the PostgreSQL store' "$T/daemon.log")" = "1|1"

# ---- blinkhookctl log --follow, woken by the commits (LISTEN/NOTIFY) ----
ctl log --follow --json >"$T/follow.out" 2>"$T/follow.err" &
FOLLOW_PID=$!
PIDS+=("$FOLLOW_PID")
follow_has() { test "$(grep -c "$1" "$T/follow.out")" -ge "$2"; }
check "log --follow prints the events already in the database" wait_until 10 follow_has '"event":"queued"' 10

# Without the notification it would wait for its 5 s timeout.
sleep 5.5
ctl blink "Q2AA-PGNT-0001" --duration 1 >/dev/null
check "a commit wakes log --follow at once (within 3 s, not at its 5 s timeout)" wait_until 3 follow_has PGNT 1

# ---- SIGKILL mid-run loses nothing ----
for i in 1 2 3 4 5 6; do ctl blink "Q2AA-PGKL-000$i" --duration 1 >/dev/null; done
wait_until 20 pg_count_is "serial like 'Q2AA-PGKL%' and state <> 'queued'" 2
kill -KILL "$D_PID"
wait "$D_PID" 2>/dev/null
start_daemon
check "after a SIGKILL and a restart every job completes" \
	wait_until 60 pg_count_is "serial like 'Q2AA-PGKL%' and state = 'complete'" 6
check "and the spool is empty" spool_empty
check "no job was submitted more than twice (at most one repeat for the kill)" python3 -c '
import json, sys, collections
n = collections.Counter(r["path"] for r in json.loads(sys.argv[1]) if r["method"] == "POST" and "PGKL" in r["path"])
assert len(n) == 6 and max(n.values()) <= 2, n
' "$(sim_get requests)"

check "log --follow printed the new jobs' events as they were committed, across the daemon's kill" \
	eval 'wait_until 10 follow_has "PGKL" 6 && test "$(grep "\"event\":\"complete\"" "$T/follow.out" | grep -c -f <(pg_sql "select id from jobs where serial like '"'"'Q2AA-PGKL%'"'"'"))" = 6'
kill "$FOLLOW_PID" 2>/dev/null

[ -n "${SHOWLOG:-}" ] && cat "$T/daemon.log" >&2
[ "$FAILS" -eq 0 ]
