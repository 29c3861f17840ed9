#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# profile.sh — where blinkhookd's instructions go, per request, next to the
# baseline's: each server runs under callgrind with instrumentation switched
# on only while wrk sends one kind of callback; the instruction count is
# divided by the requests the server answered in that window.  Also the
# replay of a job log at start.  Not part of `make bench` (it takes minutes
# and needs valgrind); docs/performance.md quotes its output.
#
#   B=build tests/bench/profile.sh [KIND...]
#
# KIND: baseline accepted repeat wrong unknown replay (default: all).  The
# callgrind files and the annotated summaries stay in $TMPDIR/profile.*.
# Loopback only; every load is bounded in time (PROFILE_SECONDS, default 8).

set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${B:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
BENCH=$TOP/tests/bench
SECS=${PROFILE_SECONDS:-8}
export TMPDIR=${TMPDIR:-/tmp/bench}
mkdir -p "$TMPDIR"
W=$(mktemp -d "$TMPDIR/profile.XXXXXX")
export MERAKI_DASHBOARD_API_KEY=bench-key-0123456789abcdef
N=20000
KINDS=("$@")
[ ${#KINDS[@]} = 0 ] && KINDS=(baseline accepted repeat wrong unknown replay)
command -v valgrind >/dev/null || { echo "profile.sh: valgrind is missing (Debian package valgrind)" >&2; exit 1; }

lib() { python3 "$BENCH/benchlib.py" "$@"; }
kv() { local k=$1 t; for t in $2; do [ "${t%%=*}" = "$k" ] && { echo "${t#*=}"; return; }; done; }
VG_PID=
cleanup() { [ -n "$VG_PID" ] && kill "$VG_PID" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT

lib prepare "$W/state" "$N" "$W/secrets.txt" "$W/ghosts.txt"
PORT=$(lib freeport)
mkdir -p "$W/spool"
cat >"$W/bh.conf" <<EOF
[meraki]
base_url = http://127.0.0.1:$(lib freeport)/api/v1
min_interval = 1h
[callback]
public_url = http://127.0.0.1:$PORT
listen = 127.0.0.1:$PORT
wait = 1d
expire = 30d
[queue]
dir = $W/spool
[state]
dir = $W/state
EOF
SECRET0=$(head -1 "$W/secrets.txt")
POS=0

# wrk_run MODE URL SECONDS: prints wrk's result line
wrk_run() {
	BENCH_MODE=$1 BENCH_SECRETS=$W/secrets.txt BENCH_GHOSTS=$W/ghosts.txt BENCH_N=$N BENCH_START=$POS \
		BENCH_THREADS=1 BENCH_SECRET=$SECRET0 BENCH_POOL=1000 \
		timeout $(($3 + 30)) wrk -t1 -c16 -d"$3s" --timeout 10s -s "$BENCH/callback.lua" "$2" 2>&1 | tail -1
}
summary() { # summary CALLGRIND-FILE REQUESTS LABEL
	local total
	total=$(callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
	printf '%-10s %8d requests  %9.0f instructions/request\n' "$3" "$2" "$(echo "$total / $2" | bc -l)"
	callgrind_annotate --inclusive=yes "$1" 2>/dev/null | sed -n '/file:function/,$p' | sed -n '3,40p' |
		awk -v n="$2" '{c = $1; gsub(",", "", c); sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "");
			if (c + 0 > 0) printf "    %9.0f /req  %s\n", c / n, $0}' |
		cut -c1-150 >"$1.txt"
}

for kind in "${KINDS[@]}"; do
	case $kind in
	baseline)
		valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$W/cg.baseline" \
			"$B/bench/baseline" 0 "$SECRET0" >"$W/baseline.port" 2>"$W/baseline.log" &
		VG_PID=$!
		for _ in $(seq 100); do [ -s "$W/baseline.port" ] && break; sleep 0.2; done
		url=http://127.0.0.1:$(cat "$W/baseline.port")
		wrk_run fixed "$url" 2 >/dev/null
		callgrind_control -i on "$VG_PID" >/dev/null
		wrk_run fixed "$url" "$SECS" >"$W/wrk.baseline"
		callgrind_control -i off "$VG_PID" >/dev/null
		kill "$VG_PID"; wait "$VG_PID" 2>/dev/null; VG_PID=
		# requests during the window: wrk's count (the warm-up's are outside it)
		n=$(kv requests "$(cat "$W/wrk.baseline")")
		summary "$W/cg.baseline" "$n" baseline
		;;
	accepted | repeat | wrong | unknown)
		valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$W/cg.$kind" \
			"$B/blinkhookd" -c "$W/bh.conf" 2>"$W/daemon.$kind.log" &
		VG_PID=$!
		for _ in $(seq 300); do curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
		# Warm-up: past the first compaction (1000 records after a start).
		wrk_run accepted "http://127.0.0.1:$PORT" 3 >"$W/wrk.warm.$kind"
		POS=$(kv next "$(cat "$W/wrk.warm.$kind")")
		before=$(lib snap "http://127.0.0.1:$PORT" "$W/state" "$W/daemon.$kind.log")
		callgrind_control -i on "$VG_PID" >/dev/null
		wrk_run "$kind" "http://127.0.0.1:$PORT" "$SECS" >"$W/wrk.$kind"
		callgrind_control -i off "$VG_PID" >/dev/null
		after=$(lib snap "http://127.0.0.1:$PORT" "$W/state" "$W/daemon.$kind.log")
		[ "$kind" = accepted ] && POS=$(kv next "$(cat "$W/wrk.$kind")")
		kill "$VG_PID"; wait "$VG_PID" 2>/dev/null; VG_PID=
		n=$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(int(sum(b[k]-a[k] for k in ("cb200","cb401","cb404","cb503"))))' "$before" "$after")
		summary "$W/cg.$kind" "$n" "$kind"
		;;
	replay)
		mkdir -p "$W/r/spool"
		lib genlog "$W/r/state" 50000 unfinished
		sed -e "s|$W/spool|$W/r/spool|; s|$W/state|$W/r/state|" "$W/bh.conf" >"$W/r/bh.conf"
		valgrind --tool=callgrind --callgrind-out-file="$W/cg.replay" \
			"$B/blinkhookd" -c "$W/r/bh.conf" 2>"$W/daemon.replay.log" &
		VG_PID=$!
		for _ in $(seq 600); do grep -q ': ready' "$W/daemon.replay.log" 2>/dev/null && break; sleep 0.2; done
		kill "$VG_PID"; wait "$VG_PID" 2>/dev/null; VG_PID=
		summary "$W/cg.replay" 100000 "replay" # 100,000 records: per record
		;;
	*) echo "profile.sh: unknown kind $kind" >&2; exit 2 ;;
	esac
	cat "$W/cg.$kind.txt"
	echo
done
echo "(callgrind files in $W)"
