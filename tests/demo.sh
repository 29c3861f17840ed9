#!/usr/bin/env bash
# make demo: the whole product on loopback, with the project's Meraki
# simulator standing in for the Dashboard API. Nothing leaves this machine.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-build}
D=$(mktemp -d "${TMPDIR:-/tmp}/blinkhook-demo.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
until_true() { local n=$1; shift; while [ "$n" -gt 0 ]; do "$@" && return 0; sleep 0.2; n=$((n - 1)); done; return 1; }

say "Starting the Meraki simulator (one blink per 2 s, callbacks after 1 s)"
python3 "$TOP/tests/sim/merakisim.py" --port 0 --port-file "$D/sim.port" --api-key demo-key-0000abcd \
	--min-interval 2 --blink-time 1 --log "$D/sim.log" &
pids+=($!)
until_true 50 test -s "$D/sim.port" || { echo "the simulator did not start"; exit 1; }
SIM="http://127.0.0.1:$(cat "$D/sim.port")"
DPORT=$(port)
cat >"$D/blinkhookd.conf" <<CONF
[meraki]
base_url = $SIM/api/v1
min_interval = 2s
[callback]
public_url = http://127.0.0.1:$DPORT
listen = 127.0.0.1:$DPORT
[queue]
dir = $D/spool
[state]
dir = $D/state
CONF
echo "simulator: $SIM/api/v1"
echo "config:    $D/blinkhookd.conf"

say "Starting blinkhookd"
MERAKI_DASHBOARD_API_KEY=demo-key-0000abcd "$TOP/$B/blinkhookd" -c "$D/blinkhookd.conf" 2>"$D/daemon.log" &
pids+=($!)
# -s without -S: the refusals before it listens are expected, not news.
until_true 50 curl -fs -o /dev/null "http://127.0.0.1:$DPORT/healthz" || { cat "$D/daemon.log"; exit 1; }
echo "listening on http://127.0.0.1:$DPORT (GET /healthz: $(curl -fsS "http://127.0.0.1:$DPORT/healthz"))"

ctl() { "$TOP/$B/blinkhookctl" -c "$D/blinkhookd.conf" "$@"; }
# The simulator reports one device's progress (scheduled, running) before
# the outcome, as Meraki may.
curl -fs -o /dev/null -X POST -H 'Content-Type: application/json' \
	-d '{"kind":"progress","serial":"Q2AA-BBBB-0002"}' "$SIM/_sim/faults"

say "Blinking three devices and waiting for Meraki's callbacks"
echo "\$ blinkhookctl blink Q2AA-BBBB-0001 Q2AA-BBBB-0002 Q2CC-DDDD-0003 --duration 30 --wait=5min"
# stdout: the job ids; stderr: the live display (on a terminal; one line
# a change otherwise).
ctl blink Q2AA-BBBB-0001 Q2AA-BBBB-0002 Q2CC-DDDD-0003 --duration 30 --wait=5min >"$D/ids"
rc=$?
mapfile -t ids <"$D/ids"
echo "exit status $rc (0: every blink complete); the job ids it printed on stdout:"
printf '%s\n' "${ids[@]}"

say "blinkhookctl jobs"
ctl jobs
say "blinkhookctl status ${ids[0]} --json"
ctl status "${ids[0]}" --json
say "blinkhookctl log"
ctl log
say "The daemon's log"
cat "$D/daemon.log"
n=$(ctl jobs --state complete --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
say "$n of ${#ids[@]} blinks complete"
[ "$n" = "${#ids[@]}" ]
