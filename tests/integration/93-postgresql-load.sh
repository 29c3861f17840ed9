#!/usr/bin/env bash
# parallel: no (bounded times for a read and a submission under a stream of commits)
# The PostgreSQL store's scheduling under faults and load: a commit that
# keeps failing with an error that is not a lost connection (here a trigger
# that raises) is retried with the ledger's back-off, not in a hot loop,
# and said once when it fails and once when it recovers.  And under a steady
# stream of commits (callbacks arriving within each commit's round trip), the
# other queries take turns with the commits: a slot is reserved (a new job is
# submitted) and a read of the other nodes' events (a callback for a job this
# node does not know) goes within a bounded time, not after the stream.
# The query deadline follows a reload's [store] lease.
. "$(dirname "$0")/../lib.sh"

pg_start
start_sim --min-interval 0 --blink-time 120 --callback-retries 0
write_config "[store] backend = postgresql" "[store] node = n1" "[callback] wait = 2s"
start_daemon

healthz() { curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$D_URL/healthz"; }
healthz_is() { test "$(healthz)" = "$1"; }
count_is() { test "$(pg_sql "select count(*) from jobs where $1")" = "$2"; }
# secret JOB: the job's callback secret under the database's key.
secret() {
	python3 -c '
import base64, hashlib, hmac, sys
msg = sys.argv[2].encode() + b"\0" + sys.argv[3].encode()
print(base64.urlsafe_b64encode(hmac.new(bytes.fromhex(sys.argv[1]), msg, hashlib.sha256).digest()).decode().rstrip("="))
' "$(pg_sql "select encode(key, 'hex') from keys where name = 'callback'")" "$1" \
		"$(pg_sql "select nonce from jobs where id = '$1'")"
}
# complete_cb JOB SECRET LBI: Meraki's "complete" callback for the job, its HTTP status.
complete_cb() {
	curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary \
		"{\"callbackId\":\"7\",\"sentAt\":\"2026-01-01T00:00:00Z\",\"sharedSecret\":\"$2\",\"message\":{\"ledsBlinkId\":\"$3\",\"status\":\"complete\",\"error\":null}}" \
		"$D_URL/callbacks/leds-blink/$1"
}

# ---- a commit error that is not a lost connection ----
id=$(ctl blink Q2AA-PGLD-0001 --duration 30)
wait_until 20 count_is "id = '$id' and state = 'submitted'" 1
sec=$(secret "$id")
lbi=$(pg_sql "select leds_blink_id from jobs where id = '$id'")
# Every try of a commit (statement-level: once per batch) counted by a
# sequence, which a rollback does not undo; then the error.
pg_sql "CREATE SEQUENCE tries; GRANT USAGE ON SEQUENCE tries TO blinkhook;
CREATE FUNCTION nope() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN PERFORM nextval('tries'); RAISE EXCEPTION 'nope'; END\$\$;
CREATE TRIGGER nope BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION nope();"
code=$(complete_cb "$id" "$sec" "$lbi")
check "a callback whose commit fails is answered 503 (got $code)" test "$code" = 503
check "/healthz answers 503 while commits fail" healthz_is 503
n0=$(pg_sql "select last_value from tries")
sleep 5
n1=$(pg_sql "select last_value from tries")
tries=$((n1 - n0))
check "the failing commit is tried again with a back-off: $tries tries in 5 s (a handful, not a loop)" \
	test "$tries" -ge 1 -a "$tries" -le 5
lines=$(grep -c 'a commit failed' "$T/daemon.log")
check "the error is logged once for the failing stretch ($lines lines)" test "$lines" = 1
check "the log line names the database's error" grep -q 'a commit failed: .*nope' "$T/daemon.log"
code=$(complete_cb "$id" "$sec" "$lbi")
check "a callback meanwhile is still answered 503 (got $code)" test "$code" = 503
check "the daemon keeps running" kill -0 "$D_PID"

pg_sql "DROP TRIGGER nope ON events"
check "with the trigger dropped, the held commit goes through and the job completes" \
	wait_until 40 count_is "id = '$id' and state = 'complete'" 1
check "the daemon says once that commits succeed again" \
	test "$(grep -c 'commits succeed again' "$T/daemon.log")" = 1
check "/healthz answers 200 again" wait_until 10 healthz_is 200
code=$(complete_cb "$id" "$sec" "$lbi")
check "a callback is answered 200 again (got $code)" test "$code" = 200

stop_daemon
check "the daemon stops cleanly" test "$D_STATUS" = 0

# ---- a steady stream of commits ----
# Submissions as fast as Meraki takes them, no polls meanwhile (the blinks'
# own callbacks come after the test), a claim tick every second (a new job
# is this node's at the next one).
write_config "[store] backend = postgresql" "[store] node = n1" "[meraki] min_interval = 0s" \
	"[callback] wait = 5min" "[callback] expire = 1h" "[store] lease = 3s"
start_daemon
N=100
serials=()
for i in $(seq -w 1 $N); do serials+=("Q2AA-PGST-0$i"); done
ctl blink "${serials[@]}" --duration 60 >/dev/null
check "$N jobs are submitted" wait_until 60 count_is "serial like 'Q2AA-PGST-%' and state = 'submitted'" $N
pg_sql "select id, nonce, leds_blink_id from jobs where serial like 'Q2AA-PGST-%'" >"$T/stream.jobs"
key=$(pg_sql "select encode(key, 'hex') from keys where name = 'callback'")
# Each commit takes 200 ms (a trigger that sleeps): the callbacks of 32
# clients, each waiting for its answer (the commit) and a random pause of up
# to 600 ms before its next (clients in step would leave gaps), keep a record
# waiting at the end of every commit.
pg_sql "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END\$\$;
CREATE TRIGGER slow BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION slow();"
# The stream: each job's progress (ready, scheduled, running: its 201 said
# new) and its end, one record a callback; its start and end times (monotonic) in stream.times.
python3 - "$D_PORT" "$key" "$T/stream.jobs" "$T/stream.times" <<'PY' &
import base64, hashlib, hmac, http.client, json, random, sys, threading, time
port, key, jobs_file, times_file = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4]
jobs = [l.split("|") for l in open(jobs_file).read().split()]
codes = {}
def client(mine):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for status in ("ready", "scheduled", "running", "complete"):
        for jid, nonce, lbi in mine:
            time.sleep(random.uniform(0, 0.6))
            sec = base64.urlsafe_b64encode(hmac.new(key, jid.encode() + b"\0" + nonce.encode(), hashlib.sha256).digest()).decode().rstrip("=")
            body = json.dumps({"callbackId": "1", "sentAt": "2026-01-01T00:00:00Z", "sharedSecret": sec,
                               "message": {"ledsBlinkId": lbi, "status": status, "error": None}})
            c.request("POST", "/callbacks/leds-blink/" + jid, body, {"Content-Type": "application/json"})
            r = c.getresponse(); r.read()
            codes[r.status] = codes.get(r.status, 0) + 1
start = time.monotonic()
ts = [threading.Thread(target=client, args=(jobs[k::32],)) for k in range(32)]
for t in ts: t.start()
for t in ts: t.join()
open(times_file, "w").write("%f %f %s\n" % (start, time.monotonic(), json.dumps(codes)))
PY
STREAM=$!
PIDS+=($STREAM)
mono() { python3 -c 'import time; print("%f" % time.monotonic())'; }
sleep 1
# A callback for a job nobody here knows waits for a read of the other
# nodes' events (then 404); a new job waits for its slot.
t0=$(mono)
(
	c=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
		--data-binary '{"callbackId":"1","sentAt":"2026-01-01T00:00:00Z","sharedSecret":"x","message":{"ledsBlinkId":"1","status":"running","error":null}}' \
		"$D_URL/callbacks/leds-blink/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	echo "$c $(mono)" >"$T/read.out"
) &
READ=$!
newid=$(ctl blink Q2AA-PGST-9999 --duration 60)
submitted() { count_is "id = '$newid' and state = 'submitted'" 1; }
wait_until 30 submitted
t2=$(mono)
wait "$READ"
read -r code t1 <"$T/read.out"
wait "$STREAM"
read -r s0 s1 codes <"$T/stream.times"
diag "stream: $(python3 -c "print('%.1f' % ($s1 - $s0))") s, answers $codes; read after $(python3 -c "print('%.2f' % ($t1 - $t0))") s, new job submitted after $(python3 -c "print('%.2f' % ($t2 - $t0))") s"
check "the stream's callbacks were recorded (all answered 200)" test "$codes" = '{"200": '$((N * 4))'}'
check "the stream was still going when the read and the submission were done" \
	python3 -c "import sys; sys.exit(0 if max($t1, $t2) < $s1 else 1)"
# Not 503: judged after the read (refused, the job being nobody's).
check "a callback waiting for a read of other nodes' events is answered within 1.5 s during the stream ($code)" \
	python3 -c "import sys; sys.exit(0 if $t1 - $t0 < 1.5 and '$code' in ('401', '404') else 1)"
check "a new job is claimed, reserved a slot and submitted within 4 s during the stream" \
	python3 -c "import sys; sys.exit(0 if $t2 - $t0 < 4 else 1)"
pg_sql "DROP TRIGGER slow ON events"

# ---- the query deadline follows [store] lease after a reload ----
# Opened with lease = 3s (a query's deadline: 10 s, the least); reloaded
# with 14s, a server that stops answering is given up after 14 s.
sed -i 's/^lease = 3s$/lease = 14s/' "$T/bh.conf"
kill -HUP "$D_PID"
wait_until 10 grep -q 'reload: API key\|keeping the current API key' "$T/daemon.log"
backend=$(pg_sql "select pid from pg_stat_activity where usename = 'blinkhook' and backend_type = 'client backend'")
kill -STOP $backend
wait_until 30 grep -q 'the PostgreSQL store is unreachable (no answer within' "$T/daemon.log"
kill -CONT $backend
check "after a reload with lease = 14s, a query unanswered is given up after 14 s, not 10 s" \
	grep -q 'the PostgreSQL store is unreachable (no answer within 14s)' "$T/daemon.log"
stop_daemon
check "the daemon stops cleanly" test "$D_STATUS" = 0

[ -n "${SHOWLOG:-}" ] && cat "$T/daemon.log" >&2
[ "$FAILS" -eq 0 ]
