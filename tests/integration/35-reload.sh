#!/usr/bin/env bash
# SIGHUP re-reads the config and the API key: what can change applies to what
# comes next, listen and the directories wait for a restart, a broken config
# changes nothing.
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.2
printf '%s\n' "$API_KEY" >"$T/key"
chmod 600 "$T/key"
write_config "[meraki] api_key_file = $T/key"
# The key comes from the file only.
start_daemon_from_file() {
	env -u MERAKI_DASHBOARD_API_KEY "$BLINKHOOKD" -c "$T/bh.conf" 2>>"$T/daemon.log" &
	D_PID=$!
	PIDS+=($D_PID)
	wait_until 15 curl -fsS --max-time 1 -o /dev/null "$D_URL/healthz" || { notok "daemon did not start"; exit 1; }
}
start_daemon_from_file
reloaded() { # reloaded N: the Nth "reload:" summary has been logged
	wait_until 10 sh -c "[ \$(grep -c 'reload: API key\|keeping the current API key' '$T/daemon.log') -ge $1 ]"
}

a=$(ctl blink Q2AA-BBBB-0001)
check "a job completes with the key from the file" wait_state 10 "$a" complete

# A rotated key: the next request uses it (the simulator refuses this one).
printf 'rotated-key-9999\n' >"$T/key"
kill -HUP "$D_PID"
reloaded 1
check "reload names the new key's source, masked" grep -q 'reload: API key …9999 from file' "$T/daemon.log"
b=$(ctl blink Q2AA-BBBB-0002)
check "the next blink uses the rotated key (Meraki refuses it: failed)" wait_state 10 "$b" failed
printf '%s\n' "$API_KEY" >"$T/key"

# What can change: secret_header; what cannot: listen.
OLD_PORT=$D_PORT
sed -i "s|^listen = .*|listen = 127.0.0.1:$(free_port)|; s|^\[callback\]|[callback]\nsecret_header = X-Blink-Secret|" "$T/bh.conf"
kill -HUP "$D_PID"
reloaded 2
check "a changed listen address is reported as needing a restart" grep -q 'listen changed; it takes effect at the next restart' "$T/daemon.log"
check "the daemon still listens where it did" curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$OLD_PORT/healthz"
check "the configuration was applied" grep -q 'reload: configuration from .* applied' "$T/daemon.log"
sim_fault '{"kind":"lost_callback"}'
c=$(ctl blink Q2AA-BBBB-0003)
wait_state 10 "$c" submitted
SC=$(secret_of "$c")
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -H "X-Blink-Secret: Bearer $SC" \
	--data '{"message":{"status":"complete"}}' "http://127.0.0.1:$OLD_PORT/callbacks/leds-blink/$c")
check "the secret_header set by the reload is honoured ($code)" test "$code" = 200

# A broken config changes nothing.
cp "$T/bh.conf" "$T/bh.conf.good"
sed -i 's/^min_interval = .*/min_interval = soon/' "$T/bh.conf"
kill -HUP "$D_PID"
reloaded 3
check "a broken config is reported with file:line and kept out" grep -q "reload: $T/bh.conf:[0-9]*: min_interval: .*keeping the running configuration" "$T/daemon.log"
check "the daemon keeps serving" curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$OLD_PORT/healthz"
cp "$T/bh.conf.good" "$T/bh.conf" # blinkhookctl reads it too
d=$(ctl blink Q2AA-BBBB-0004)
check "and keeps working" wait_state 10 "$d" complete
stop_daemon
check "SIGTERM after reloads: exit 0" test "$D_STATUS" = 0
