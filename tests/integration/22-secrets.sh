#!/usr/bin/env bash
# Secrets: a job that reuses the id of a dropped job never accepts the old
# job's callback secret (each job's secret binds a nonce from its first
# record); the API key leaves the daemon's environment block and sits in
# memory that core dumps leave out.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.2
write_config
start_daemon

# The key is used (the simulator refuses any other), yet the environment
# block the daemon started with no longer holds it.
check "/proc/PID/environ no longer holds the API key" sh -c "! grep -qaF '$API_KEY' /proc/$D_PID/environ"
# Pages marked alike merge into one mapping: count their size (below 1 MiB a
# mapping: ASan's shadow memory is left out of dumps too).
dd_kb=$(awk '$1 == "Size:" { size = $2 } $1 == "VmFlags:" && / wr / && / dd / && size < 1024 { kb += size } END { print kb + 0 }' \
	"/proc/$D_PID/smaps")
check "the API key (the daemon's and the client's copy) and the HMAC key are in writable pages left out of core dumps (VmFlags wr dd: $dd_kb kB)" \
	test "$dd_kb" -ge 12

# The README's install step checks the config with the key file as the
# unit's credential, the key on no command line.
mkdir -p "$T/etc" && (umask 077 && printf '%s\n' "$API_KEY" >"$T/etc/meraki-api-key")
out=$(env -u MERAKI_DASHBOARD_API_KEY CREDENTIALS_DIRECTORY="$T/etc" "$BLINKHOOKD" -c "$T/bh.conf" --check-config 2>&1)
check "--check-config with CREDENTIALS_DIRECTORY reads the key file as the credential ($out)" \
	sh -c "echo '$out' | grep -q 'OK; API key .*${API_KEY: -4} from credential'"

# post ID SECRET STATUS: prints the HTTP status of a callback.
post() {
	curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
		--data-binary '{"sharedSecret":"'"$2"'","message":{"ledsBlinkId":"'"$LBI"'","status":"'"$3"'"}}' \
		"$D_URL/callbacks/leds-blink/$1"
}
# hmac MESSAGE-BYTES (python literal): base64url(HMAC-SHA256(key, message)).
hmac() {
	python3 -c 'import base64, hashlib, hmac, sys
print(base64.urlsafe_b64encode(hmac.new(open(sys.argv[1], "rb").read(), eval(sys.argv[2]), hashlib.sha256).digest()).decode().rstrip("="))' \
		"$T/state/secret.key" "$1"
}

sim_fault '{"kind":"lost_callback","count":2}'
ID=rack12-sw3
J=$(ctl blink Q2AA-0000-0001 --duration 1 --id "$ID")
wait_state 15 "$ID" submitted || notok "job $ID was not submitted"
LBI=$(ctl status "$ID" --json | json 'j["leds_blink_id"]')
OLD=$(secret_of "$ID")
check "the job's first record holds its nonce" \
	sh -c "grep '\"id\":\"$ID\",\"event\":\"queued\"' '$T/state/jobs.log' | grep -qE '\"nonce\":\"[0-9a-f]{32}\"'"
check "the nonce is in no blinkhookctl output" \
	sh -c "! { '$BLINKHOOKCTL' -c '$T/bh.conf' log --json; '$BLINKHOOKCTL' -c '$T/bh.conf' log; '$BLINKHOOKCTL' -c '$T/bh.conf' status '$ID' --json; '$BLINKHOOKCTL' -c '$T/bh.conf' jobs --json; } | grep -q nonce"
check "a secret of the id alone, HMAC(key, id), is refused: 401" test "$(post "$ID" "$(hmac "b'$ID'")" complete)" = 401
check "the job's own secret: 200" test "$(post "$ID" "$OLD" complete)" = 200
wait_state 5 "$ID" complete || notok "job $ID did not complete"

# Retention drops the job (here: the whole log, which holds only it), and a
# producer queues a new job with the same id.
stop_daemon
rm -f "$T/state/jobs.log"
start_daemon
[ "$J" = "$ID" ] && ctl blink Q2AA-0000-0002 --duration 1 --id "$ID" >/dev/null
wait_state 15 "$ID" submitted || notok "the second job $ID was not submitted"
LBI=$(ctl status "$ID" --json | json 'j["leds_blink_id"]')
NEW=$(secret_of "$ID")
check "the new job has a secret of its own" test "$NEW" != "$OLD"
check "the earlier job's captured secret is refused by the new job: 401" test "$(post "$ID" "$OLD" failed)" = 401
# The refusal decides nothing (it may prompt a poll, which asks Meraki):
# the forged "failed" is nowhere, and no callback taught the job anything.
check "the refused callback did not fail the new job" test "$(job_state "$ID")" != failed
check "the refused callback recorded nothing" \
	test "$(ctl status "$ID" --json | json 'j["status_source"]')" != callback
check "the new job's own secret: 200" test "$(post "$ID" "$NEW" complete)" = 200
wait_state 5 "$ID" complete || notok "the second job $ID did not complete"

# A job log from before nonces: its jobs keep HMAC(key, id).
stop_daemon
LEGACY=old-job-1
printf '{"v":1,"ts":"%s","id":"%s","event":"queued","serial":"Q2AA-0000-0003","duration":1,"source":"queue"}\n' \
	"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$LEGACY" >>"$T/state/jobs.log"
printf '{"v":1,"ts":"%s","id":"%s","event":"submitted","leds_blink_id":"777","attempts":1,"meraki_status":"new"}\n' \
	"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$LEGACY" >>"$T/state/jobs.log"
start_daemon
LBI=777
check "a job logged without a nonce accepts HMAC(key, id): 200" test "$(post "$LEGACY" "$(secret_of "$LEGACY")" complete)" = 200
wait_state 5 "$LEGACY" complete || notok "the old-format job did not complete"

# A reload cannot read the wiped variable again: it keeps the key, which
# still works.
kill -HUP "$D_PID"
check "a reload keeps the API key from the environment" \
	wait_until 10 grep -q 'reload: API key .* kept (the environment is read once, at start)' "$T/daemon.log"
R=$(ctl blink Q2AA-0000-0004 --duration 1)
check "after the reload a blink still completes with that key" wait_state 15 "$R" complete
check "and the key is still out of /proc/PID/environ" sh -c "! grep -qaF '$API_KEY' /proc/$D_PID/environ"

# A key that cannot be read is not called damaged: only a short or long one
# (EINVAL) is; a link in its place (ELOOP) is reported as what it is.
stop_daemon
mv "$T/state/secret.key" "$T/secret.key.saved"
ln -s "$T/secret.key.saved" "$T/state/secret.key"
out=$(MERAKI_DASHBOARD_API_KEY=$API_KEY timeout 10 "$BLINKHOOKD" -c "$T/bh.conf" 2>&1)
check "a symbolic link as secret.key stops the start, not called a damaged key" \
	sh -c 'printf "%s\n" "$1" | grep -q "secret.key.*: Too many levels of symbolic links\$"' _ "$out"
rm "$T/state/secret.key"
head -c 5 /dev/urandom >"$T/state/secret.key"
chmod 600 "$T/state/secret.key"
out=$(MERAKI_DASHBOARD_API_KEY=$API_KEY timeout 10 "$BLINKHOOKD" -c "$T/bh.conf" 2>&1)
check "a short secret.key is called damaged" sh -c 'printf "%s\n" "$1" | grep -q "a damaged key: delete it"' _ "$out"

exit $((FAILS > 0))
