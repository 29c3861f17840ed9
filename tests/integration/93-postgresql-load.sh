#!/usr/bin/env bash
# The PostgreSQL store's scheduling under faults and load: a commit that
# keeps failing with an error that is not a lost connection (here a trigger
# that raises) is retried with the ledger's back-off, not in a hot loop,
# and said once when it fails and once when it recovers.
. "$(dirname "$0")/../lib.sh"

pg_start
start_sim --min-interval 0.2 --blink-time 30 --callback-retries 0
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

[ -n "${SHOWLOG:-}" ] && cat "$T/daemon.log" >&2
[ "$FAILS" -eq 0 ]
