#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# run-bench.sh — blinkhook's benchmark (`make bench`): loads blinkhookd and a
# baseline server over loopback with wrk, measures startup, memory, spool
# intake and idle wakeups, and prints one table with the ratios, all measured
# in this run.  docs/performance.md says what each figure
# means.
#
# Environment:
#   B               build directory (default build): $B/blinkhookd, $B/bench/baseline
#   TMPDIR          where the run's files go (default /tmp/bench)
#   BENCH_SLICE     seconds of one wrk run (default 3).  Each load point of the
#                   main table runs every kind twice, in the order
#                   baseline accepted repeat wrong unknown, then backwards, so
#                   that a drift of a shared machine weighs alike on all kinds
#   BENCH_DURATION  seconds of the single-run points (many connections, nginx,
#                   webhook; default 5)
#   BENCH_JOBS      jobs prepared for accepted callbacks (default 600000; each
#                   takes 4 new statuses, so up to 4x this many accepted requests)
#   BENCH_IDLE      seconds to watch an idle daemon (default 20)
#   BENCH_INTAKE_TIMEOUT  seconds to wait for the spool intake (default 60)
#   BENCH_COMPACT_SECS  seconds of the warm-up load, which runs through the
#                   compaction of the prepared jobs' log (default 8)
#   BENCH_ONLY=compaction  only that point: prepare, start, the warm-up
#                   through the compaction, its figure, then stop
#   BENCH_ONLY=postgresql  prepare, start, the warm-up, accepted at 16
#                   connections, and the PostgreSQL store's points
#   BENCH_PG_JOBS   jobs loaded into the PostgreSQL store (default 20000)
#   BENCH_KEEP=1    keep the run's directory (logs, configs, raw wrk output)
#
# Every load is wrk against 127.0.0.1, bounded in time; every wait is bounded;
# everything started here is stopped by its pid on exit.

set -u

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${B:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
BLINKHOOKD=$B/blinkhookd
BASELINE=$B/bench/baseline
BENCH=$TOP/tests/bench
LUA=$BENCH/callback.lua
SLICE=${BENCH_SLICE:-3}
DUR=${BENCH_DURATION:-5}
NJOBS=${BENCH_JOBS:-600000}
IDLE=${BENCH_IDLE:-20}
INTAKE_TIMEOUT=${BENCH_INTAKE_TIMEOUT:-60}
COMPACT_SECS=${BENCH_COMPACT_SECS:-8}
export TMPDIR=${TMPDIR:-/tmp/bench}
mkdir -p "$TMPDIR"
W=$(mktemp -d "$TMPDIR/run.XXXXXX")
RES=$W/results.jsonl
PIDS=()
export MERAKI_DASHBOARD_API_KEY=bench-key-0123456789abcdef
T_START=$SECONDS

lib() { python3 "$BENCH/benchlib.py" "$@"; }
say() { printf '[%3ds] %s\n' $((SECONDS - T_START)) "$*" >&2; }

# alive PID: running (a zombie nobody reaped yet counts as gone).
alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
# stop PID: SIGTERM, up to 10 s, then SIGKILL.
stop() {
	local p=$1
	kill -TERM "$p" 2>/dev/null
	for _ in $(seq 200); do alive "$p" || break; sleep 0.05; done
	alive "$p" && kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	return 0
}
PG_STOP=
cleanup() {
	local p
	for p in "${PIDS[@]}"; do alive "$p" && stop "$p"; done
	[ -n "$PG_STOP" ] && $PG_STOP >/dev/null 2>&1
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

wait_http() { # wait_http SECONDS URL [CURL ARGS]: until it answers at all
	local end=$((SECONDS + $1)) url=$2; shift 2
	while [ $SECONDS -le $end ]; do
		curl -s -o /dev/null --max-time 1 "$@" "$url" && return 0
		sleep 0.05
	done
	return 1
}
figure() { # figure NAME VALUE [KEY NUM]: one row of "other figures"
	python3 -c 'import json,sys; r={"group":"figure","name":sys.argv[1],"value":sys.argv[2]}
if len(sys.argv) > 4: r["key"]=sys.argv[3]; r["num"]=None if sys.argv[4] in ("","nan") else float(sys.argv[4])
print(json.dumps(r))' "$@" >>"$RES"
}
skipped() { # skipped GROUP NAME CONNS WHY
	python3 -c 'import json,sys; print(json.dumps({"group":sys.argv[1],"name":sys.argv[2],"conns":sys.argv[3],"skipped":1,"why":sys.argv[4]}))' \
		"$@" >>"$RES"
}
kv() { # kv KEY "k=v k=v": the value
	local k=$1 t
	for t in $2; do [ "${t%%=*}" = "$k" ] && { echo "${t#*=}"; return; }; done
}
mib() { echo $(( ($1 + 512) / 1024 )); }

# ---- the machine ----

{
	echo "blinkhook benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), blinkhookd $("$BLINKHOOKD" --version | awk '{print $2}')"
	echo "machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM," \
		"Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
	echo "nothing pinned: wrk, the servers and nginx share the cores"
	echo "job log on $(df -PT "$TMPDIR" | awk 'NR==2 {print $2 " (" $1 ")"}') in $TMPDIR:" \
		"one 160-byte append + fdatasync takes $(lib fsyncprobe "$W") us"
	echo "load: $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), keep-alive unless \"close\", 1 thread for 1 connection, else 2;" \
		"~640-byte Meraki-shaped bodies; table points: 2 x ${SLICE} s a kind, others ${DUR} s"
} >"$W/machine.txt"
cat "$W/machine.txt" >&2

# ---- the main daemon: N submitted jobs, a key we know ----

say "preparing $NJOBS submitted jobs"
lib prepare "$W/main/state" "$NJOBS" "$W/secrets.txt" "$W/ghosts.txt"
CLOSED_PORT=$(lib freeport) # nothing listens there: the daemon never reaches an API
write_conf() { # write_conf DIR PORT: a config that never submits or polls
	mkdir -p "$1/spool"
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
start_daemon() { # start_daemon DIR PORT: sets PID and OUT
	OUT=$(lib start "$BLINKHOOKD" "$1/bh.conf" "http://127.0.0.1:$2" "$1/daemon.log")
	PID=$(kv pid "$OUT")
	PIDS+=("$PID")
	if [ "$(kv failed "$OUT")" = 1 ]; then
		echo "blinkhookd did not start:" >&2
		tail -20 "$1/daemon.log" >&2
		exit 1
	fi
}
D_PORT=$(lib freeport)
D_URL=http://127.0.0.1:$D_PORT
write_conf "$W/main" "$D_PORT"
start_daemon "$W/main" "$D_PORT"
D_PID=$PID
say "blinkhookd ready with $NJOBS jobs ($(kv ready_s "$OUT") s)"

SECRET0=$(head -1 "$W/secrets.txt")
"$BASELINE" 0 "$SECRET0" >"$W/baseline.port" 2>"$W/baseline.log" &
BASE_PID=$!
PIDS+=("$BASE_PID")
for _ in $(seq 50); do [ -s "$W/baseline.port" ] && break; sleep 0.1; done
BASE_URL=http://127.0.0.1:$(cat "$W/baseline.port")

echo 0 >"$W/stream.pos"

# load GROUP NAME CONNS MODE URL SECONDS [key=value...]: one wrk run; appends
# its record.  CONNS "close" means 64 connections, each request with
# Connection: close.  With URL $D_URL (or SNAP=1) the daemon's counters are
# read before and after.  Extra key=value words go into the record.
load() {
	local group=$1 name=$2 conns=$3 mode=$4 url=$5 secs=$6
	shift 6
	local c=$conns close=0 t=2 tag="$W/wrk-$group-$conns-$RANDOM"
	[ "$conns" = close ] && { c=64; close=1; }
	[ "$c" -lt 2 ] && t=1
	local daemon=${SNAP:-0}
	[ "$url" = "$D_URL" ] && daemon=1
	[ "$daemon" = 1 ] && lib snap "$D_URL" "$W/main/state" "$W/main/daemon.log" >"$tag.before"
	BENCH_MODE=$mode BENCH_SECRETS=$W/secrets.txt BENCH_GHOSTS=$W/ghosts.txt BENCH_N=$NJOBS \
		BENCH_START=$(cat "$W/stream.pos") BENCH_THREADS=$t BENCH_CLOSE=$close BENCH_SECRET=$SECRET0 \
		BENCH_PATH=${BENCH_PATH:-/callbacks/leds-blink/%s} BENCH_POOL=1000 BENCH_OUT="$tag.out" \
		timeout $((secs + 30)) wrk -t$t -c"$c" -d"${secs}s" --timeout 5s -s "$LUA" "$url" >"$tag.txt" 2>&1
	if [ "$daemon" = 1 ]; then
		lib snap "$D_URL" "$W/main/state" "$W/main/daemon.log" >"$tag.after"
		lib record "$group" "$name" "$conns" "$tag.out" "$tag.before" "$tag.after" "$@" >>"$RES"
	else
		lib record "$group" "$name" "$conns" "$tag.out" "$@" >>"$RES"
	fi
	if [ "$mode" = accepted ]; then
		local next
		next=$(kv next "$(cat "$tag.out" 2>/dev/null)")
		[ -n "$next" ] && echo "$next" >"$W/stream.pos"
	fi
	say "$group $conns: $(kv rps "$(cat "$tag.out" 2>/dev/null)") req/s"
}

# The first ~1000 records after a start make the daemon compact the log
# (records >= 2 x jobs + 1000).  The warm-up load runs through that
# compaction of all $NJOBS jobs: its worst latency is the worst wait of a
# callback while the compaction ran (a child process writes the snapshot;
# the loop goes on), reported next to the compaction's own duration.
say "warm-up (the first compaction, under load)"
load warmup "warm-up" 16 accepted "$D_URL" "$COMPACT_SECS"
sleep 0.5
c=$(sed -n 's/.*compacted the job log: \([0-9]*\) records to \([0-9]*\).*, \([0-9.]*s\)\( in the background\)\{0,1\}$/\1 records to \2 in \3/p' \
	"$W/main/daemon.log" | head -1)
# The same load once more, with no compaction: what the machine's own
# noise makes the worst latency anyway.
load steady "no compaction" 16 accepted "$D_URL" "$COMPACT_SECS"
maxms() { # maxms GROUP: the worst latency of its last run, in ms
	python3 -c 'import json,sys
r=[json.loads(l) for l in open(sys.argv[1]) if json.loads(l).get("group") == sys.argv[2]][-1]
print("%.1f" % (r["max_us"] / 1000) if not r.get("failed") else "")' "$RES" "$1"
}
worst=$(maxms warmup)
if [ -n "$c" ]; then
	figure "compaction of the $NJOBS-job log under load (16 connections, accepted): its duration; the worst callback latency while it ran (the same load without a compaction)" \
		"$c; worst latency ${worst:-?} ms ($(maxms steady) ms)" compact_worst_ms "$worst"
else
	figure "compaction of the $NJOBS-job log under load" "did not end within the ${COMPACT_SECS} s warm-up" compact_worst_ms ""
fi
if [ "${BENCH_ONLY:-}" = compaction ]; then
	lib table "$RES" "$W/machine.txt"
	exit 0
fi

# ---- accepted callbacks on the PostgreSQL store ----

# A throwaway cluster (fsync and synchronous_commit as shipped: a commit is
# durable, as the job log's fdatasync is), BENCH_PG_JOBS submitted jobs in
# its events and jobs tables under the same kind of key, and a daemon with
# [store] backend = postgresql; the same accepted callbacks as the log
# store's point.
pg_points() {
	local pgbin n=${BENCH_PG_JOBS:-20000} P=$W/pg as=() conns port url keyhex out pid tag
	pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
	if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
		for conns in 16 64; do skipped postgresql "accepted, PostgreSQL store" "$conns" "PostgreSQL is not installed"; done
		return 0
	fi
	say "the PostgreSQL store: $n jobs"
	mkdir -p "$P"
	chmod 0755 "$P"
	if [ "$(id -u)" -eq 0 ]; then
		# The server runs as nobody: it passes through the run's
		# directory (no listing) into its own.
		chmod o+x "$W" "$TMPDIR"
		chown nobody:nogroup "$P"
		as=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
	fi
	"${as[@]}" "$pgbin/initdb" -D "$P/data" -U blinkhook -A trust -E UTF8 >"$P/initdb.log" 2>&1 &&
		"${as[@]}" "$pgbin/pg_ctl" -D "$P/data" -l "$P/server.log" -w -t 30 \
			-o "-k $P -c listen_addresses= -c max_connections=20" start >/dev/null || {
		for conns in 16 64; do skipped postgresql "accepted, PostgreSQL store" "$conns" "the cluster did not start"; done
		return 0
	}
	PG_STOP="${as[*]} $pgbin/pg_ctl -D $P/data -m fast -w stop"
	psql_() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$P" -U blinkhook -d postgres "$@"; }
	lib prepare "$P/state" "$n" "$P/secrets.txt" "$P/ghosts.txt"
	port=$(lib freeport)
	url=http://127.0.0.1:$port
	write_conf "$P" "$port"
	printf '%s\n' "[store]" "backend = postgresql" "conninfo = host=$P dbname=postgres user=blinkhook" \
		"node = bench" "lease = 1h" >>"$P/bh.conf"
	# The first start makes the schema; then the jobs and the key go in.
	start_daemon "$P" "$port"
	stop "$PID"
	keyhex=$(od -An -tx1 -v "$P/state/secret.key" | tr -d ' \n')
	python3 -c 'import json, sys
for l in open(sys.argv[1]):
    print("%s\tbench\t%s" % (json.loads(l)["id"], l.rstrip("\n")))' "$P/state/jobs.log" >"$P/events.tsv"
	psql_ -c "delete from keys; insert into keys (name, key) values ('callback', decode('$keyhex', 'hex'))" \
		-c "\\copy events (job_id, node, record) from '$P/events.tsv'" \
		-c "insert into jobs (id, serial, duration, state, leds_blink_id, meraki_status, status_source, attempts,
			nonce, created_at, updated_at, owner, lease_until)
			select q.job_id, q.record->>'serial', 30, 'submitted', s.record->>'leds_blink_id', 'new', 'api', 1, '',
			(q.record->>'ts')::timestamptz, (s.record->>'ts')::timestamptz, 'bench', now() + interval '1 day'
			from events q join events s on s.job_id = q.job_id and s.record->>'event' = 'submitted'
			where q.record->>'event' = 'queued'" -c "vacuum analyze" >"$P/load.log" 2>&1 || {
		sed 's/^/  /' "$P/load.log" >&2
		for conns in 16 64; do skipped postgresql "accepted, PostgreSQL store" "$conns" "loading the jobs failed"; done
		return 0
	}
	rm -f "$P/state/jobs.log"
	start_daemon "$P" "$port"
	pid=$PID
	say "blinkhookd on PostgreSQL ready with $n jobs ($(kv ready_s "$OUT") s)"
	out=0
	for conns in 16 64; do
		tag="$W/wrk-postgresql-$conns"
		BENCH_MODE=accepted BENCH_SECRETS=$P/secrets.txt BENCH_GHOSTS=$P/ghosts.txt BENCH_N=$n \
			BENCH_START=$out BENCH_THREADS=2 BENCH_CLOSE=0 BENCH_SECRET=$(head -1 "$P/secrets.txt") \
			BENCH_PATH=/callbacks/leds-blink/%s BENCH_POOL=1000 BENCH_OUT="$tag.out" \
			timeout $((2 * SLICE + 30)) wrk -t2 -c"$conns" -d"$((2 * SLICE))s" --timeout 5s -s "$LUA" "$url" \
			>"$tag.txt" 2>&1
		lib record postgresql "accepted, PostgreSQL store" "$conns" "$tag.out" >>"$RES"
		out=$(kv next "$(cat "$tag.out" 2>/dev/null)")
		out=${out:-0}
		say "postgresql $conns: $(kv rps "$(cat "$tag.out" 2>/dev/null)") req/s"
	done
	stop "$pid"
	$PG_STOP >/dev/null 2>&1
	PG_STOP=
}
if [ "${BENCH_ONLY:-}" = postgresql ]; then
	load accepted "accepted" 16 accepted "$D_URL" "$((2 * SLICE))"
	load accepted "accepted" 64 accepted "$D_URL" "$((2 * SLICE))"
	pg_points
	lib table "$RES" "$W/machine.txt"
	exit 0
fi

# ---- accepted and refused callbacks against the baseline ----

# Each kind runs twice at each load point, in the order baseline accepted
# repeat wrong unknown, then backwards: a drift of the shared machine during
# the point weighs alike on all of them.

KINDS=("baseline:baseline:fixed:$BASE_URL" "accepted:accepted:accepted:$D_URL" "repeat:accepted repeat:repeat:$D_URL"
	"wrong:wrong secret:wrong:$D_URL" "unknown:unknown job:unknown:$D_URL")
for conns in 1 16 64 256 close; do
	order=(0 1 2 3 4 4 3 2 1 0)
	for s in 0 1; do
		for i in "${order[@]:$((s * 5)):5}"; do
			IFS=: read -r group name mode url <<<"${KINDS[$i]}" # url keeps its colons
			load "$group" "$name" "$conns" "$mode" "$url" "$SLICE" "slice=$s"
		done
	done
done
lib merge "$RES" "$W/slices.jsonl"

# ---- many connections: no stall, no collapse ----

# baseline, accepted, accepted, baseline: each 2 slices, in the same order
# trick as above.
for conns in 128 384 512; do
	for s in 0 1; do
		if [ $s = 0 ]; then
			load baseline baseline "$conns" fixed "$BASE_URL" "$SLICE" "slice=$s"
			load stall accepted "$conns" accepted "$D_URL" "$SLICE" "slice=$s"
		else
			load stall accepted "$conns" accepted "$D_URL" "$SLICE" "slice=$s"
			load baseline baseline "$conns" fixed "$BASE_URL" "$SLICE" "slice=$s"
		fi
	done
done
lib merge "$RES" "$W/slices.jsonl"

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
	# The shipped upstream (with the daemon's port) and snippet.
	sed "s|127\.0\.0\.1:8787|127.0.0.1:$D_PORT|g" "$TOP/conf/nginx-upstream.conf" >"$NGX/upstream.conf"
	cp "$TOP/conf/nginx-location.conf" "$NGX/blinkhook.conf"
	# The variant: the snippet proxying to the address itself, a new
	# connection a callback (what a proxy_pass without an upstream does).
	sed -e "s|proxy_pass http://blinkhook/callbacks/;|proxy_pass http://127.0.0.1:$D_PORT/callbacks/;|" \
		-e "s|proxy_set_header Connection \"\";||" "$TOP/conf/nginx-location.conf" >"$NGX/blinkhook-nk.conf"
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
	    include $NGX/upstream.conf;
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
	        include $NGX/blinkhook-nk.conf;
	    }
	}
	EOF
	"$NGINX" -p "$NGX" -c "$NGX/nginx.conf" -g "daemon off;" 2>>"$NGX/logs/stderr" &
	NGINX_PID=$!
	PIDS+=("$NGINX_PID")
	if wait_http 10 "https://127.0.0.1:$N_PORT/" -k; then
		for conns in 16 64 256; do
			SNAP=1 BENCH_PATH=/blinkhook/callbacks/leds-blink/%s load nginx "via nginx" "$conns" accepted \
				"https://127.0.0.1:$N_PORT" "$DUR"
		done
		for conns in 64 256; do
			SNAP=1 BENCH_PATH=/blinkhook/callbacks/leds-blink/%s load nginx-nk "via nginx, no upstream keepalive" \
				"$conns" accepted "https://127.0.0.1:$NK_PORT" "$DUR"
		done
	else
		skipped nginx "via nginx" 64 "nginx did not start (see its log)"
	fi
	stop "$NGINX_PID"
else
	skipped nginx "via nginx" 64 "nginx or openssl missing"
fi

# ---- the main daemon's totals ----

lib snap "$D_URL" "$W/main/state" "$W/main/daemon.log" >"$W/main/final.json"
read -r syncs n200 records <<<"$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(int(j["syncs"]), int(j["cb200"]), int(j["records"]))' "$W/main/final.json")"
figure "job-log syncs / callbacks answered 200 (whole run)" \
	"$syncs / $n200 = $(python3 -c "print('%.4f' % ($syncs / max($n200, 1)))") ($records new records from callbacks)"
figure "compactions of the job log during the run" "$(grep -c 'compacted the job log' "$W/main/daemon.log"):$(sed -n 's/.*compacted the job log: .*, \([0-9.]*s\)\( in the background\)\{0,1\}$/ \1/p' "$W/main/daemon.log" | tr -d '\n')"
stop "$D_PID"
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
		before=$(wc -l <"$WH/callbacks.log")
		BENCH_PATH='/hooks/leds-blink?job=%s' load webhook "webhook" 64 fixed "http://127.0.0.1:$WH_PORT" "$DUR"
		sleep 1
		lib amendkv "$RES" "recorded=$(($(wc -l <"$WH/callbacks.log") - before))" \
			"note=$([ "$wrong" = 0 ] && echo wrong_secret_not_recorded || echo WRONG_SECRET_RECORDED)"
	else
		skipped webhook webhook 64 "webhook did not start"
	fi
	stop "$WH_PID"
else
	skipped webhook webhook 64 "webhook missing (Debian package webhook)"
fi

# ---- an empty daemon: idle RSS, the spool's intake ----

say "spool intake"
Q_PORT=$(lib freeport)
write_conf "$W/q" "$Q_PORT"
start_daemon "$W/q" "$Q_PORT"
Q_PID=$PID
sleep 0.5
rss_idle=$(kv rss_kib "$(lib rss "$Q_PID")")
figure "RSS idle (no jobs)" "$(mib "$rss_idle") MiB ($rss_idle KiB)"
out=$(lib intake "$W/q/spool" "$W/q/state" 10000 "$INTAKE_TIMEOUT")
if [ "$(kv intake_s "$out")" = nan ]; then
	v="NOT DONE in $INTAKE_TIMEOUT s: $(kv queued "$out") of 10000 queued, $(kv left "$out") files left in new/"
else
	v="$(kv intake_s "$out") s"
fi
figure "spool intake: 10,000 files renamed into new/ of a running daemon, until all queued (durable) and removed" \
	"$v; first record durable after $(kv first_s "$out") s; the renames took $(kv renamed_s "$out") s" \
	intake_s "$(kv intake_s "$out")"
stop "$Q_PID"
write_conf "$W/q2" "$Q_PORT"
out=$(lib intake-start "$BLINKHOOKD" "$W/q2/bh.conf" "http://127.0.0.1:$Q_PORT" "$W/q2/daemon.log" "$W/q2/spool" \
	"$W/q2/state" 10000 "$INTAKE_TIMEOUT")
PIDS+=("$(kv pid "$out")")
figure "spool intake: 10,000 files already in new/ at start, from exec until all queued and removed" \
	"$(kv intake_s "$out") s ($(kv queued "$out") queued)"
stop "$(kv pid "$out")"

# ---- startup: replay of 1,000,000 events; memory; idle wakeups ----

# idle PID...: wakeups of each daemon over the same $IDLE s, from the kernel's
# count of its context switches, and its epoll_wait calls from perf when perf
# works.  Prints "pid switches epoll_waits" lines.
idle() {
	local p
	declare -A v0
	for p in "$@"; do v0[$p]=$(awk '/ctxt_switches/ {s += $2} END {print s}' "/proc/$p/status"); done
	for p in "$@"; do
		perf stat -x, -e syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_pwait2 \
			-p "$p" -o "$W/perf-idle.$p" -- sleep "$IDLE" >/dev/null 2>&1 &
	done
	sleep "$IDLE"
	wait
	for p in "$@"; do
		local n perf_n
		n=$(($(awk '/ctxt_switches/ {s += $2} END {print s}' "/proc/$p/status") - v0[$p]))
		perf_n=$(awk -F, '/sys_enter_epoll/ {if ($1 ~ /^[0-9]+$/) s += $1; else if ($1 !~ /not counted/) bad = 1; seen = 1}
			END {if (seen && !bad) print s + 0}' "$W/perf-idle.$p" 2>/dev/null)
		echo "$p $n ${perf_n:--}"
	done
}

say "startup: generating a 1,000,000-event job log"
lib genlog "$W/s/state" 500000 unfinished
S_PORT=$(lib freeport)
write_conf "$W/s" "$S_PORT"
sync
start_daemon "$W/s" "$S_PORT"
S_PID=$PID
ready_s=$(kv ready_s "$OUT")
rss=$(lib rss "$S_PID")
figure "startup: replay of 1,000,000 events (500,000 unfinished jobs) to READY=1" \
	"$ready_s s (/healthz 200 at $(kv healthz_s "$OUT") s), peak RSS $(mib "$(kv hwm_kib "$rss")") MiB" replay_s "$ready_s"
per100k_u=$(( ($(kv rss_kib "$rss") - rss_idle) / 5 ))
figure "RSS per 100,000 unfinished jobs (each with its timer)" "$(mib "$per100k_u") MiB ($per100k_u KiB)"

# The watchdog's own wakeups, for comparison: an empty daemon with WATCHDOG_USEC.
W_PORT=$(lib freeport)
write_conf "$W/w" "$W_PORT"
OUT=$(WATCHDOG_USEC=10000000 BENCH_KEEP_ENV=WATCHDOG_USEC lib start "$BLINKHOOKD" "$W/w/bh.conf" \
	"http://127.0.0.1:$W_PORT" "$W/w/daemon.log")
W_PID=$(kv pid "$OUT")
PIDS+=("$W_PID")
sleep 1
say "idle wakeups, $IDLE s"
while read -r p n pn; do
	permin=$(python3 -c "print('%g' % round($n * 60 / $IDLE, 1))")
	if [ "$p" = "$S_PID" ]; then
		figure "idle wakeups, 500,000 jobs, no watchdog" "$permin /min ($n context switches in $IDLE s; perf: $pn epoll_wait calls)" \
			idle_wakeups "$permin"
	else
		figure "idle wakeups, no jobs, WATCHDOG_USEC=10s (for comparison)" \
			"$permin /min ($n context switches in $IDLE s; perf: $pn epoll_wait calls)"
	fi
done < <(idle "$S_PID" "$W_PID")
t0=$(date +%s%N)
stop "$S_PID"
figure "stop (SIGTERM to exit) with 500,000 jobs" "$(python3 -c "print('%.2f s' % (($(date +%s%N) - $t0) / 1e9))")"
stop "$W_PID"

rm -rf "$W/s/state" # 140 MB
lib genlog "$W/f/state" 500000 final
F_PORT=$(lib freeport)
write_conf "$W/f" "$F_PORT"
sync
start_daemon "$W/f" "$F_PORT"
F_PID=$PID
rss=$(lib rss "$F_PID")
records=$(sed -n 's/.*replayed \([0-9]*\) records.*/\1/p' "$W/f/daemon.log")
per100k_f=$(( ($(kv rss_kib "$rss") - rss_idle) / 5 ))
figure "startup: 500,000 complete jobs (compacted log, one record each) to READY=1" \
	"$(kv ready_s "$OUT") s ($records records replayed)"
figure "RSS per 100,000 retained complete jobs" "$(mib "$per100k_f") MiB ($per100k_f KiB)"
stop "$F_PID"

pg_points

# ---- the table ----

mkdir -p "$B/bench"
lib table "$RES" "$W/machine.txt" | tee "$B/bench/results.txt"
cp "$RES" "$B/bench/results.jsonl"
echo
echo "(table in $B/bench/results.txt; whole run $((SECONDS - T_START)) s)"
