#!/usr/bin/env bash
# Two nodes on one PostgreSQL behind nginx (conf/nginx-two-nodes.conf):
# jobs queued on both; one node SIGKILLed while submissions of its are in
# flight (the simulator answers them late) and started again 5 s later; the
# database stopped for 3 s mid-run.  Every job ends complete, each node's
# blinkhookctl shows every job as the simulator saw it (complete, its
# ledsBlinkId), the simulator's min_interval is never breached across the
# nodes, a job is submitted twice only if its submission was in flight at
# the kill (every other exactly once), and callbacks during the outage got
# 503, never 2xx.  Then a node that stays dead: the other
# takes its jobs when their lease runs out.
. "$(dirname "$0")/../lib.sh"

NGINX=$(command -v nginx || { test -x /usr/sbin/nginx && echo /usr/sbin/nginx; })
if [ -z "$NGINX" ]; then
	echo "# SKIP nginx is not installed (Debian package \"nginx\"; \`make deps\` installs it)"
	exit 0
fi

pg_start
MIN_INTERVAL=0.4
start_sim --min-interval "$MIN_INTERVAL" --blink-time 1 --callback-retries 80 --callback-retry-delay 0.5

# ---- nginx in front of both nodes, with the shipped upstream's settings ----
N_PORT=$(free_port)
N_URL="http://127.0.0.1:$N_PORT"
declare -A PORT
PORT[a]=$(free_port)
PORT[b]=$(free_port)
NGX=$T/nginx
mkdir -p "$NGX/logs" "$NGX/tmp"
sed -e "s|10\.0\.0\.11:8787|127.0.0.1:${PORT[a]}|" -e "s|10\.0\.0\.12:8787|127.0.0.1:${PORT[b]}|" \
	"$TOP/conf/nginx-two-nodes.conf" >"$NGX/upstream.conf"
cat >"$NGX/nginx.conf" <<-NGINX
	user root;
	worker_processes 1;
	pid $NGX/nginx.pid;
	error_log $NGX/error.log info;
	events { worker_connections 256; }
	http {
	    access_log $NGX/logs/access.log;
	    client_body_temp_path $NGX/tmp/body;
	    proxy_temp_path $NGX/tmp/proxy;
	    fastcgi_temp_path $NGX/tmp/fastcgi;
	    uwsgi_temp_path $NGX/tmp/uwsgi;
	    scgi_temp_path $NGX/tmp/scgi;
	    include $NGX/upstream.conf;
	    server {
	        listen 127.0.0.1:$N_PORT;
	        location /callbacks/ {
	            proxy_pass http://blinkhook;
	            proxy_http_version 1.1;
	            proxy_set_header Connection "";
	            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
	            proxy_next_upstream error timeout non_idempotent;
	            proxy_next_upstream_tries 2;
	            proxy_connect_timeout 2s;
	        }
	    }
	}
NGINX
check "the two-node upstream example names two servers" test "$(grep -c '^ *server ' "$TOP/conf/nginx-two-nodes.conf")" = 2
check "nginx accepts the two-node config" "$NGINX" -t -q -p "$NGX" -c "$NGX/nginx.conf"
"$NGINX" -p "$NGX" -c "$NGX/nginx.conf"
check "nginx runs" wait_until 5 test -s "$NGX/nginx.pid"
NGINX_PID=$(cat "$NGX/nginx.pid")

# ---- two nodes, one database, the same public_url (the proxy) ----
D_PORT=${PORT[a]}
write_config "[store] backend = postgresql" "[store] lease = 6s" \
	"[callback] wait = 3s" "[meraki] min_interval = ${MIN_INTERVAL}s"
for n in a b; do
	mkdir -p "$T/$n"
	sed -e "s|^public_url = .*|public_url = $N_URL|" -e "s|^listen = .*|listen = 127.0.0.1:${PORT[$n]}|" \
		-e "s|^dir = $T/spool|dir = $T/$n/spool|" -e "s|^dir = $T/state|dir = $T/$n/state|" \
		-e "s|^backend = postgresql|backend = postgresql\nnode = node-$n|" "$T/bh.conf" >"$T/$n.conf"
done
declare -A NPID
start_node() {
	MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/$1.conf" 2>>"$T/$1.log" &
	NPID[$1]=$!
	PIDS+=($!)
}
healthy() { curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:${PORT[$1]}/healthz"; }
nctl() { local n=$1; shift; "$BLINKHOOKCTL" -c "$T/$n.conf" "$@"; }
# Both at the same moment on the empty database: the schema is made once.
start_node a
start_node b
check "two nodes started together on an empty database both come up" \
	wait_until 20 sh -c "curl -fsS --max-time 1 -o /dev/null http://127.0.0.1:${PORT[a]}/healthz &&
		curl -fsS --max-time 1 -o /dev/null http://127.0.0.1:${PORT[b]}/healthz"
check "the schema was created once (each version once)" test "$(pg_sql "select count(*) = count(distinct version) and count(*) = max(version) from schema_version")" = t

accepted() { sim_get requests | json 'len([r for r in j if r["method"] == "POST" and r["status"] == 201])'; }
accepted_ge() { test "$(accepted)" -ge "$1"; }

# The first submissions are answered 2 s late (the blink made at once, as
# Meraki would), so that node a has one in flight when it is killed.
sim_fault '{"kind":"delay","seconds":2,"count":12}'
ids=()
for i in $(seq -w 1 15); do
	ids+=("$(nctl a blink "Q2AA-TWOA-00$i" --duration 1)")
	ids+=("$(nctl b blink "Q2AA-TWOB-00$i" --duration 1)")
done
check "30 jobs queued, 15 on each node" test "${#ids[@]}" = 30

# ---- node a killed with a submission in flight, started again 5 s later ----
# Node a's connections to the simulator (their local ports, as the
# simulator records its peers'), from ss.
a_ports() {
	ss -tnpH "( dport = :$SIM_PORT )" | python3 -c '
import re, sys
pid = sys.argv[1]
print(" ".join(m.group(1) for line in sys.stdin if "pid=%s," % pid in line
	for m in [re.search(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:\d+", line)] if m))' "${NPID[a]}"
}
# a_busy: node a has a blink request the simulator has not answered yet.
a_busy() {
	A_PORTS=$(a_ports)
	sim_get requests | json 'any(r["method"] == "POST" and r["t_answer"] is None and str(r["peer_port"]) in "'"$A_PORTS"'".split() for r in j)'  | grep -qx True
}
wait_until 30 accepted_ge 3
wait_until 30 a_busy
t_kill0=$(now)
kill -KILL "${NPID[a]}"
wait "${NPID[a]}" 2>/dev/null
t_kill1=$(now)
killed_at=$(accepted)
sleep 5
start_node a
check "node a is back after its SIGKILL" wait_until 20 healthy a

# ---- the database stopped for 3 s mid-run ----
wait_until 60 accepted_ge $((killed_at + 6))
pg_cluster_stop "$PG_DIR"
t_down=$(now)
sleep 3
t_up=$(now)
pg_cluster_start "$PG_DIR"
# Both nodes back on the database (each has run a tick since: lease / 3).
wait_until 40 eval 'healthy a && healthy b'
sleep 2
t_back=$(now)

check "every job ends complete" wait_until 150 pg_count_is "state = 'complete'" 30
pg_sql "select state, count(*) from jobs group by state" | sed 's/^/# /'

# Both nodes read the same database, so that they agree with each other
# proves little: each is held to what the simulator saw instead.
for n in a b; do
	nctl "$n" jobs --json --limit 100 >"$T/$n.jobs"
	for id in "${ids[@]}"; do nctl "$n" status "$id" --json; echo; done >"$T/$n.status"
done
sim_get jobs >"$T/sim.jobs"
check "each node's blinkhookctl status and jobs show every job as the simulator saw it (complete, its ledsBlinkId)" python3 -c '
import json, sys, collections
sim = json.load(open(sys.argv[1] + "/sim.jobs"))
blinks = collections.defaultdict(dict)  # serial: {ledsBlinkId: status}
for b in sim:
	blinks[b["serial"]][b["ledsBlinkId"]] = b["status"]
for n in ("a", "b"):
	status = [json.loads(l) for l in open(sys.argv[1] + "/%s.status" % n) if l.strip()]
	jobs = json.load(open(sys.argv[1] + "/%s.jobs" % n))
	assert len(status) == 30 and len(jobs) == 30, (n, len(status), len(jobs))
	assert {(j["id"], j["state"], j["leds_blink_id"]) for j in jobs} == \
		{(j["id"], j["state"], j["leds_blink_id"]) for j in status}, n
	assert {j["serial"] for j in status} == set(blinks), (n, sorted(set(blinks) ^ {j["serial"] for j in status}))
	for j in status:
		made = blinks[j["serial"]]
		# The job is complete with a blink the simulator made for its
		# device and completed; with one blink, that one.
		assert j["state"] == "complete" and made.get(j["leds_blink_id"]) == "complete", (n, j, made)
		assert len(made) > 1 or list(made) == [j["leds_blink_id"]], (n, j, made)
	print("# node %s: 30 jobs, each complete with the ledsBlinkId the simulator completed" % n)
' "$T"

reqs=$(sim_get requests)
check "the simulator saw no breach of min_interval across the nodes (no 429, gaps >= min_interval)" python3 -c '
import json, sys
reqs, mi = json.loads(sys.argv[1]), float(sys.argv[2])
blinks = [r for r in reqs if r["method"] == "POST" and "/liveTools/leds/blink" in r["path"]]
assert not [r for r in blinks if r["too_fast"] or r["status"] == 429], "429s: %d" % len([r for r in blinks if r["too_fast"]])
ts = sorted(r["t"] for r in blinks if r["status"] == 201)
gaps = [b - a for a, b in zip(ts, ts[1:])]
assert len(ts) >= 30 and min(gaps) >= mi, (len(ts), min(gaps))
print("# %d submissions accepted, smallest gap %.3f s (min_interval %.1f s)" % (len(ts), min(gaps), mi))
' "$reqs" "$MIN_INTERVAL"
# The kill allows one repeated submission of a job it caught (in flight at
# it); the database's outage none: a node whose claim lapsed while it was
# cut off is fenced by its lease at its next slot.  Every other job
# exactly once.
check "submissions were in flight at the kill (node a's among them); only their jobs were submitted twice, at most, every other exactly once" python3 -c '
import json, sys, collections
reqs, t0, t1, a_ports = json.loads(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4].split()
serial = lambda r: r["path"].split("/devices/")[1].split("/")[0]
posts = [r for r in reqs if r["method"] == "POST" and "/liveTools/leds/blink" in r["path"]
	and "-LEAS-" not in r["path"]]
# In flight at the kill: arrived before it was done, not answered before it began.
flight = [r for r in posts if r["t"] <= t1 and (r["t_answer"] is None or r["t_answer"] >= t0)]
mine = [r for r in flight if str(r["peer_port"]) in a_ports]
print("# in flight at the kill: %s (node a: %s)" % (sorted(map(serial, flight)), sorted(map(serial, mine))))
assert mine, "no submission of node a was in flight at the kill"
c = collections.Counter(map(serial, posts))
assert len(c) == 30, len(c)
rep = {s: n for s, n in c.items() if n > 1}
print("# submitted twice: %s" % (rep or "none"))
inflight = set(map(serial, flight))
print("# repeats allowed: in flight at the kill %s" % sorted(inflight))
assert all(n <= 2 for n in c.values()), rep
allowed = inflight
assert all(n == 1 for s, n in c.items() if s not in allowed), {s: n for s, n in rep.items() if s not in allowed}
' "$reqs" "$t_kill0" "$t_kill1" "$A_PORTS"
cbs=$(sim_get callbacks)
check "callbacks during the outage got 503 (at least one), never 2xx" python3 -c '
import json, sys
cbs, down, up = json.loads(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
during = [c for c in cbs if down <= c["t"] <= up]
assert during, "no callback came during the outage"
assert all(c["http_status"] == 503 for c in during), [(c["t"], c["http_status"]) for c in during]
print("# %d callbacks during the outage, all 503" % len(during))
' "$cbs" "$t_down" "$t_up"
check "callbacks were taken by both nodes (through the proxy)" \
	sh -c "grep -q 'Meraki reports\|complete (callback' '$T/a.log' && grep -q 'Meraki reports\|complete (callback' '$T/b.log'"

# ---- a node that stays dead: the other takes its jobs when the lease runs out ----
before=$(accepted)
for i in 1 2 3 4 5 6; do nctl b blink "Q2AA-LEAS-000$i" --duration 1 >/dev/null; done
wait_until 30 accepted_ge $((before + 1))
kill -KILL "${NPID[b]}"
wait "${NPID[b]}" 2>/dev/null
check "node b's jobs complete on node a after b died for good" \
	wait_until 90 pg_count_is "serial like 'Q2AA-LEAS-%' and state = 'complete'" 6
check "node a claimed them when node b's lease ran out" grep -q "claimed (its node's lease ran out)" "$T/a.log"
check "none of them was submitted more than twice" python3 -c '
import json, sys, collections
reqs = json.loads(sys.argv[1])
c = collections.Counter(r["path"].split("/devices/")[1].split("/")[0] for r in reqs
	if r["method"] == "POST" and "/liveTools/leds/blink" in r["path"] and r["status"] == 201)
lease = {s: n for s, n in c.items() if s.startswith("Q2AA-LEAS-")}
assert len(lease) == 6 and max(lease.values()) <= 2, lease
assert not [r for r in reqs if r["too_fast"]], "a 429"
' "$(sim_get requests)"

kill "$NGINX_PID" 2>/dev/null
[ "$FAILS" -eq 0 ] || { for n in a b; do echo "# ---- node $n"; tail -n 40 "$T/$n.log" | sed 's/^/# /'; done; }
exit "$FAILS"
