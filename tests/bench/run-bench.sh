#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# run-bench.sh — blinkhook's benchmark (`make bench`): loads blinkhookd and a
# baseline server over loopback with wrk, measures startup, memory, spool
# intake and idle wakeups, and prints one table with the ratios, all measured
# in this run.  README-performance.md (beside this file) says what each figure
# means.
#
# Environment:
#   B               build directory (default build): $B/blinkhookd, $B/bench/baseline
#   TMPDIR          where the run's files go (default /tmp/bench)
#   BENCH_DURATION  seconds of load per point (default 5)
#   BENCH_JOBS      jobs prepared for accepted callbacks (default 250000; each
#                   takes 4 new statuses, so up to 4x this many accepted requests)
#   BENCH_IDLE      seconds to watch an idle daemon (default 20)
#   BENCH_KEEP=1    keep the run's directory (logs, configs, raw wrk output)
#
# Every load is wrk against 127.0.0.1 for BENCH_DURATION seconds; every wait is
# bounded; everything started here is stopped by its pid on exit.

set -u

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${B:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
BLINKHOOKD=$B/blinkhookd
BASELINE=$B/bench/baseline
BENCH=$TOP/tests/bench
LUA=$BENCH/callback.lua
DUR=${BENCH_DURATION:-5}
NJOBS=${BENCH_JOBS:-250000}
IDLE=${BENCH_IDLE:-20}
export TMPDIR=${TMPDIR:-/tmp/bench}
mkdir -p "$TMPDIR"
W=$(mktemp -d "$TMPDIR/run.XXXXXX")
RES=$W/results.jsonl
PIDS=()
API_KEY=bench-key-0123456789abcdef
export MERAKI_DASHBOARD_API_KEY=$API_KEY
T_START=$SECONDS

lib() { python3 "$BENCH/benchlib.py" "$@"; }
say() { printf '[%3ds] %s\n' $((SECONDS - T_START)) "$*" >&2; }

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [ -n "${BENCH_KEEP:-}" ]; then
		say "kept $W"
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for f in "$BLINKHOOKD" "$BASELINE"; do
	[ -x "$f" ] || { echo "run-bench.sh: $f is missing; run \`make bench\`" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "run-bench.sh: wrk is missing (Debian package wrk; \`make bench-deps\`)" >&2; exit 1; }
# Up to 512 connections on each side, and nginx's to the daemon.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

# stop PID: SIGTERM, wait up to 10 s, then SIGKILL.
stop() {
	local p=$1
	kill -TERM "$p" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
}
wait_http() { # wait_http SECONDS URL [CURL ARGS]: until it answers at all
	local end=$((SECONDS + $1)) url=$2; shift 2
	while [ $SECONDS -le $end ]; do
		curl -s -o /dev/null --max-time 1 "$@" "$url" && return 0
		sleep 0.05
	done
	return 1
}
figure() { # figure NAME VALUE [KEY NUM]: one "other figure" row
	python3 -c 'import json,sys; r={"group":"figure","name":sys.argv[1],"value":sys.argv[2]}
if len(sys.argv) > 4: r["key"]=sys.argv[3]; r["num"]=None if sys.argv[4] in ("","nan") else float(sys.argv[4])
print(json.dumps(r))' "$@" >>"$RES"
}
kv() { # kv KEY "k=v k=v": the value
	local k=$1 t
	for t in $2; do [ "${t%%=*}" = "$k" ] && { echo "${t#*=}"; return; }; done
}

# ---- the machine ----

fs=$(df -PT "$TMPDIR" | awk 'NR==2 {print $2 " on " $1}')
sync_us=$(python3 - "$W" <<-'EOF'
	import os, sys, time
	p = os.path.join(sys.argv[1], "fdatasync.probe")
	fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
	n, t0 = 0, time.monotonic()
	while time.monotonic() - t0 < 1.0:
		os.write(fd, b"x" * 160 + b"\n"); os.fdatasync(fd); n += 1
	os.close(fd); os.unlink(p)
	print("%.0f" % (1e6 * (time.monotonic() - t0) / n))
	EOF
)
{
	echo "blinkhook benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), blinkhookd $("$BLINKHOOKD" --version | awk '{print $2}')"
	echo "machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM," \
		"Linux $(uname -r); nothing pinned: load generator, servers and nginx share the cores"
	echo "job log on $fs ($TMPDIR): one 160-byte append + fdatasync takes ${sync_us} us"
	echo "load: $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), ${DUR} s a point, keep-alive unless \"close\";" \
		"1 thread for 1 connection, else 2; ~640-byte Meraki-shaped bodies"
} >"$W/machine.txt"
cat "$W/machine.txt" >&2

# ---- the main daemon: N submitted jobs, a key we know ----

say "preparing $NJOBS submitted jobs"
mkdir -p "$W/main/spool"
lib prepare "$W/main/state" "$NJOBS" "$W/secrets.txt" "$W/ghosts.txt"
D_PORT=$(lib freeport)
D_URL=http://127.0.0.1:$D_PORT
CLOSED_PORT=$(lib freeport) # nothing listens there: the daemon never reaches an API
write_conf() { # write_conf DIR PORT: a config that never submits or polls
	cat >"$1/bh.conf" <<-EOF
	# written by tests/bench/run-bench.sh
	[meraki]
	base_url = http://127.0.0.1:$CLOSED_PORT/api/v1
	min_interval = 1h
	[callback]
	public_url = http://127.0.0.1:$2
	listen = 127.0.0.1:$2
	wait = 1d
	expire = 30d
	[queue]
	dir = $1/spool
	[state]
	dir = $1/state
	EOF
}
write_conf "$W/main" "$D_PORT"
out=$(lib start "$BLINKHOOKD" "$W/main/bh.conf" "$D_URL" "$W/main/daemon.log")
D_PID=$(kv pid "$out")
PIDS+=("$D_PID")
[ "$(kv failed "$out")" = 1 ] && { echo "blinkhookd did not start:" >&2; tail -20 "$W/main/daemon.log" >&2; exit 1; }
say "blinkhookd ready with $NJOBS jobs ($(kv ready_s "$out") s)"

SECRET0=$(head -1 "$W/secrets.txt")
"$BASELINE" 0 "$SECRET0" >"$W/baseline.port" 2>"$W/baseline.log" &
BASE_PID=$!
PIDS+=("$BASE_PID")
for _ in $(seq 50); do [ -s "$W/baseline.port" ] && break; sleep 0.1; done
BASE_URL=http://127.0.0.1:$(cat "$W/baseline.port")

echo 0 >"$W/stream.pos"

# load GROUP NAME CONNS MODE URL [key=value...]: one wrk point; appends its record.
# CONNS "close" means 64 connections, each request with Connection: close.
# Against blinkhookd (URL $D_URL), the daemon's counters are read before and
# after.  Extra key=value words go into the record.
load() {
	local group=$1 name=$2 conns=$3 mode=$4 url=$5
	shift 5
	local c=$conns close=0 t=2 tag="$W/wrk-$group-$conns-$RANDOM"
	[ "$conns" = close ] && { c=64; close=1; }
	[ "$c" -lt 2 ] && t=1
	local daemon=${SNAP:-0}
	[ "$url" = "$D_URL" ] && daemon=1
	[ $daemon = 1 ] && lib snap "$D_URL" "$W/main/state" "$W/main/daemon.log" >"$tag.before"
	BENCH_MODE=$mode BENCH_SECRETS=$W/secrets.txt BENCH_GHOSTS=$W/ghosts.txt BENCH_N=$NJOBS \
		BENCH_START=$(cat "$W/stream.pos") BENCH_THREADS=$t BENCH_CLOSE=$close BENCH_SECRET=$SECRET0 \
		BENCH_PATH=${BENCH_PATH:-/callbacks/leds-blink/%s} BENCH_POOL=1000 BENCH_OUT="$tag.out" \
		timeout $((DUR + 30)) wrk -t$t -c"$c" -d"${DUR}s" --timeout 5s -s "$LUA" "$url" >"$tag.txt" 2>&1
	if [ $daemon = 1 ]; then
		lib snap "$D_URL" "$W/main/state" "$W/main/daemon.log" >"$tag.after"
		lib record "$group" "$name" "$conns" "$tag.out" "$tag.before" "$tag.after" "$@" >>"$RES"
	else
		lib record "$group" "$name" "$conns" "$tag.out" "$@" >>"$RES"
	fi
	if [ "$mode" = accepted ] || [ "$mode" = fixed ]; then
		local next
		next=$(kv next "$(cat "$tag.out" 2>/dev/null)")
		[ -n "$next" ] && echo "$next" >"$W/stream.pos"
	fi
	say "$group $conns: $(kv rps "$(cat "$tag.out" 2>/dev/null)") req/s"
}

# The first ~1000 records after a start make the daemon compact the log
# (records >= 2 x jobs + 1000): let that happen before measuring.
say "warm-up (the first compaction)"
DUR_SAVED=$DUR
DUR=3
load warmup "warm-up" 16 accepted "$D_URL"
DUR=$DUR_SAVED
sleep 0.5
n=$(grep -c 'compacted the job log' "$W/main/daemon.log")
c=$(sed -n 's/.*compacted the job log: \([0-9]*\) records to \([0-9]*\).*, \([0-9.]*s\)$/\1 records to \2 in \3/p' \
	"$W/main/daemon.log" | head -1)
[ "$n" -gt 0 ] && figure "compaction during the warm-up (event loop blocked)" "$c"

# ---- accepted and refused callbacks, each between two baseline runs ----

for conns in 1 16 64 256 close; do
	load baseline-a "baseline" "$conns" fixed "$BASE_URL"
	load accepted "accepted" "$conns" accepted "$D_URL"
	load repeat "accepted repeat" "$conns" repeat "$D_URL"
	load wrong "wrong secret" "$conns" wrong "$D_URL"
	load unknown "unknown job" "$conns" unknown "$D_URL"
	load baseline-b "baseline" "$conns" fixed "$BASE_URL"
done
lib mergebase "$RES" >"$RES.tmp" && mv "$RES.tmp" "$RES"

# ---- many connections: no stall, no collapse ----

for conns in 128 384 512; do
	load stall "accepted" "$conns" accepted "$D_URL"
done

# ---- through nginx (TLS, the shipped snippet on /blinkhook/) ----

NGINX=$(command -v nginx || { test -x /usr/sbin/nginx && echo /usr/sbin/nginx; })
if [ -n "$NGINX" ] && command -v openssl >/dev/null; then
	say "nginx"
	NGX=$W/nginx
	mkdir -p "$NGX/logs" "$NGX/tmp"
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 2 -subj "/CN=127.0.0.1" \
		-addext "subjectAltName=IP:127.0.0.1" -keyout "$NGX/server.key" -out "$NGX/server.pem" >"$NGX/openssl.log" 2>&1
	N_PORT=$(lib freeport)
	NK_PORT=$(lib freeport)
	sed "s|127\.0\.0\.1:8787|127.0.0.1:$D_PORT|g" "$TOP/conf/nginx-location.conf" >"$NGX/blinkhook.conf"
	# The variant: the same snippet with a keep-alive upstream (not shipped).
	sed -e "s|proxy_pass http://127\.0\.0\.1:8787/callbacks/;|proxy_pass http://blinkhook_ka/callbacks/; proxy_set_header Connection \"\";|" \
		"$TOP/conf/nginx-location.conf" >"$NGX/blinkhook-ka.conf"
	cat >"$NGX/nginx.conf" <<-EOF
	# written by tests/bench/run-bench.sh
	user root;
	worker_processes auto;
	pid $NGX/nginx.pid;
	error_log $NGX/logs/error.log warn;
	events { worker_connections 4096; }
	http {
	    access_log $NGX/logs/access.log;
	    client_body_temp_path $NGX/tmp/body;
	    proxy_temp_path $NGX/tmp/proxy;
	    fastcgi_temp_path $NGX/tmp/fastcgi;
	    uwsgi_temp_path $NGX/tmp/uwsgi;
	    scgi_temp_path $NGX/tmp/scgi;
	    upstream blinkhook_ka { server 127.0.0.1:$D_PORT; keepalive 64; }
	    server {
	        listen 127.0.0.1:$N_PORT ssl;
	        ssl_certificate $NGX/server.pem;
	        ssl_certificate_key $NGX/server.key;
	        include $NGX/blinkhook.conf;
	    }
	    server {
	        listen 127.0.0.1:$NK_PORT ssl;
	        ssl_certificate $NGX/server.pem;
	        ssl_certificate_key $NGX/server.key;
	        include $NGX/blinkhook-ka.conf;
	    }
	}
	EOF
	"$NGINX" -p "$NGX" -c "$NGX/nginx.conf" -g "daemon off;" 2>>"$NGX/logs/stderr" &
	NGINX_PID=$!
	PIDS+=("$NGINX_PID")
	if wait_http 10 "https://127.0.0.1:$N_PORT/" -k; then
		for conns in 16 64 256; do
			SNAP=1 BENCH_PATH=/blinkhook/callbacks/leds-blink/%s load nginx "via nginx" "$conns" accepted \
				"https://127.0.0.1:$N_PORT"
		done
		for conns in 64 256; do
			SNAP=1 BENCH_PATH=/blinkhook/callbacks/leds-blink/%s load nginx-ka "via nginx, upstream keepalive" \
				"$conns" accepted "https://127.0.0.1:$NK_PORT"
		done
	else
		echo '{"group":"nginx","name":"via nginx","conns":"64","skipped":1,"why":"nginx did not start"}' >>"$RES"
	fi
	stop "$NGINX_PID"
else
	echo '{"group":"nginx","name":"via nginx","conns":"64","skipped":1,"why":"nginx or openssl missing"}' >>"$RES"
fi

# ---- the main daemon's totals ----

lib snap "$D_URL" "$W/main/state" "$W/main/daemon.log" >"$W/main/final.json"
read -r syncs n200 <<<"$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(int(j["syncs"]), int(j["cb200"]))' "$W/main/final.json")"
figure "job-log syncs / callbacks answered 200 (whole run)" \
	"$syncs / $n200 = $(python3 -c "print('%.4f' % ($syncs / max($n200, 1)))")"
t0=$(date +%s.%N)
stop "$D_PID"
figure "stop (SIGTERM to exit), $NJOBS jobs" "$(python3 -c "print('%.2f s' % ($(date +%s.%N) - $t0))")"
stop "$BASE_PID"

# ---- the alternative: adnanh/webhook ----

WEBHOOK=$(command -v webhook || true)
if [ -n "$WEBHOOK" ]; then
	say "webhook"
	WH=$W/webhook
	mkdir -p "$WH"
	cat >"$WH/record.sh" <<-'EOF'
	#!/bin/sh
	# Records one callback: the job id and its status, a line each.
	printf '%s %s\n' "$1" "$2" >>"$(dirname "$0")/callbacks.log"
	EOF
	chmod +x "$WH/record.sh"
	: >"$WH/callbacks.log"
	# The rule checks the shared secret; the answer waits for the record
	# (include-command-output-in-response), as blinkhookd's 200 does.
	cat >"$WH/hooks.json" <<-EOF
	[
	  {
	    "id": "leds-blink",
	    "execute-command": "$WH/record.sh",
	    "command-working-directory": "$WH",
	    "include-command-output-in-response": true,
	    "pass-arguments-to-command": [
	      {"source": "url", "name": "job"},
	      {"source": "payload", "name": "message.status"}
	    ],
	    "trigger-rule": {
	      "match": {"type": "value", "value": "$SECRET0", "parameter": {"source": "payload", "name": "sharedSecret"}}
	    }
	  }
	]
	EOF
	WH_PORT=$(lib freeport)
	"$WEBHOOK" -hooks "$WH/hooks.json" -ip 127.0.0.1 -port "$WH_PORT" >"$WH/webhook.log" 2>&1 &
	WH_PID=$!
	PIDS+=("$WH_PID")
	if wait_http 10 "http://127.0.0.1:$WH_PORT/"; then
		# A wrong secret must not be recorded.
		curl -s -o /dev/null --max-time 5 -H 'Content-Type: application/json' \
			-d '{"sharedSecret":"wrong","message":{"status":"running"}}' "http://127.0.0.1:$WH_PORT/hooks/leds-blink?job=x"
		wrong=$(wc -l <"$WH/callbacks.log")
		for conns in 64; do
			before=$(wc -l <"$WH/callbacks.log")
			BENCH_PATH='/hooks/leds-blink?job=%s' load webhook "webhook" "$conns" fixed "http://127.0.0.1:$WH_PORT"
		done
		sleep 1
		lib amendkv "$RES" "recorded=$(($(wc -l <"$WH/callbacks.log") - before))" \
			"note=$([ "$wrong" = 0 ] && echo wrong_secret_not_recorded || echo WRONG_SECRET_RECORDED)"
	else
		echo '{"group":"webhook","name":"webhook","conns":"64","skipped":1,"why":"webhook did not start"}' >>"$RES"
	fi
	stop "$WH_PID"
else
	echo '{"group":"webhook","name":"webhook","conns":"64","skipped":1,"why":"webhook missing (Debian package webhook)"}' >>"$RES"
fi

# ---- an empty daemon: idle RSS, the spool's intake ----

say "spool intake"
mkdir -p "$W/q/spool" "$W/q/state"
Q_PORT=$(lib freeport)
write_conf "$W/q" "$Q_PORT"
out=$(lib start "$BLINKHOOKD" "$W/q/bh.conf" "http://127.0.0.1:$Q_PORT" "$W/q/daemon.log")
Q_PID=$(kv pid "$out")
PIDS+=("$Q_PID")
sleep 0.5
rss_idle=$(kv rss_kib "$(lib rss "$Q_PID")")
figure "RSS idle (no jobs)" "$((rss_idle / 1024)) MiB ($rss_idle KiB)"
out=$(lib intake "$W/q/spool" "$W/q/state" 10000 120)
figure "spool intake: 10,000 files to queued (durable, files removed)" \
	"$(kv intake_s "$out") s (renames took $(kv renamed_s "$out") s; queued $(kv queued "$out"), rejected $(kv rejected "$out"))" \
	intake_s "$(kv intake_s "$out")"
stop "$Q_PID"

# ---- startup: replay of 1,000,000 events; memory; idle wakeups ----

# idle PID LABEL: wakeups over $IDLE s, from the kernel's count of the
# process's context switches, and epoll_wait calls from perf when it works.
idle() {
	local pid=$1 label=$2 v0 v1 n perf_n="" permin
	v0=$(awk '/ctxt_switches/ {s += $2} END {print s}' "/proc/$pid/status")
	if perf stat -x, -e syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_pwait2 \
		-p "$pid" -o "$W/perf-idle.txt" -- sleep "$IDLE" 2>/dev/null; then
		perf_n=$(awk -F, '/sys_enter_epoll/ {if ($1 ~ /^[0-9]+$/) s += $1; else if ($1 ~ /not counted/) s += 0; else bad = 1}
			END {if (!bad) print s}' "$W/perf-idle.txt")
	else
		sleep "$IDLE"
	fi
	v1=$(awk '/ctxt_switches/ {s += $2} END {print s}' "/proc/$pid/status")
	n=$((v1 - v0))
	permin=$(python3 -c "print('%g' % round($n * 60 / $IDLE, 1))")
	figure "idle wakeups, $label" \
		"$permin /min ($n context switches in $IDLE s${perf_n:+; perf: $perf_n epoll_wait calls})" \
		"$3" "$permin"
}

say "startup: generating a 1,000,000-event job log"
mkdir -p "$W/s/spool"
lib genlog "$W/s/state" 500000 unfinished
S_PORT=$(lib freeport)
write_conf "$W/s" "$S_PORT"
sync
out=$(lib start "$BLINKHOOKD" "$W/s/bh.conf" "http://127.0.0.1:$S_PORT" "$W/s/daemon.log")
S_PID=$(kv pid "$out")
PIDS+=("$S_PID")
ready_s=$(kv ready_s "$out")
rss=$(lib rss "$S_PID")
figure "startup: replay 1,000,000 events (500,000 unfinished jobs) to READY=1" \
	"$ready_s s (/healthz 200 at $(kv healthz_s "$out") s), peak RSS $(($(kv hwm_kib "$rss") / 1024)) MiB" replay_s "$ready_s"
per100k_u=$(( ($(kv rss_kib "$rss") - rss_idle) / 5 ))
figure "RSS per 100,000 unfinished jobs (each with a timer)" "$((per100k_u / 1024)) MiB ($per100k_u KiB)"
say "idle wakeups, $IDLE s"
idle "$S_PID" "500,000 jobs, no watchdog" idle_wakeups
stop "$S_PID"

mkdir -p "$W/f/spool"
lib genlog "$W/f/state" 500000 final
F_PORT=$(lib freeport)
write_conf "$W/f" "$F_PORT"
sync
out=$(lib start "$BLINKHOOKD" "$W/f/bh.conf" "http://127.0.0.1:$F_PORT" "$W/f/daemon.log")
F_PID=$(kv pid "$out")
PIDS+=("$F_PID")
rss=$(lib rss "$F_PID")
per100k_f=$(( ($(kv rss_kib "$rss") - rss_idle) / 5 ))
figure "startup: 500,000 complete jobs (snapshot records) to READY=1" "$(kv ready_s "$out") s"
figure "RSS per 100,000 retained complete jobs" "$((per100k_f / 1024)) MiB ($per100k_f KiB)"
stop "$F_PID"

# The watchdog's own wakeups, for comparison: an empty daemon with WATCHDOG_USEC.
mkdir -p "$W/w/spool"
W_PORT=$(lib freeport)
write_conf "$W/w" "$W_PORT"
out=$(WATCHDOG_USEC=10000000 BENCH_KEEP_ENV=WATCHDOG_USEC lib start "$BLINKHOOKD" "$W/w/bh.conf" \
	"http://127.0.0.1:$W_PORT" "$W/w/daemon.log")
W_PID=$(kv pid "$out")
PIDS+=("$W_PID")
sleep 1
say "idle wakeups with a 10 s watchdog, $IDLE s"
idle "$W_PID" "empty, WATCHDOG_USEC=10s" watchdog_wakeups
stop "$W_PID"

# ---- the table ----

mkdir -p "$B/bench"
lib table "$RES" "$W/machine.txt" | tee "$B/bench/results.txt"
cp "$RES" "$B/bench/results.jsonl"
echo
echo "(table in $B/bench/results.txt; whole run $((SECONDS - T_START)) s)"
