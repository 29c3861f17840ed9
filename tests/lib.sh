# Shared helpers for the integration tests (sourced, not run).
#
# Each test script starts the real daemon and the Meraki simulator in its own
# temporary directory, on loopback ports, and prints one TAP-style line per
# check ("ok - ..." / "not ok - ..."); tests/run-tests.sh counts them.
# Every wait is bounded; every process started here is stopped on exit.

set -u

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${B:-build}
BLINKHOOKD=${BLINKHOOKD:-$TOP/$B/blinkhookd}
BLINKHOOKCTL=${BLINKHOOKCTL:-$TOP/$B/blinkhookctl}
SIM="$TOP/tests/sim/merakisim.py"
API_KEY=${API_KEY:-test-key-0123456789abcdef}
T=$(mktemp -d "${TMPDIR:-/tmp}/blinkhook-test.XXXXXX")
PIDS=()
PG_DIRS=()
FAILS=0

cleanup() {
	local p sanitized=
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	for p in "${PG_DIRS[@]}"; do pg_destroy "$p"; done
	grep -lx "$$" "$PORT_CLAIMS"/[0-9]* 2>/dev/null | xargs -r rm -f
	# A sanitized daemon reports to its stderr and may exit as asked all
	# the same: only its log tells (daemon.log, or a node's own log in the
	# tests that run several).
	for p in "$T"/*.log; do
		[ -f "$p" ] && grep -Eq "$SANITIZER_REPORT" "$p" || continue
		notok "no sanitizer report in $(basename "$p")"
		grep -E -A40 "$SANITIZER_REPORT" "$p" | head -n 200 | sed 's/^/# /'
		sanitized=yes
	done
	if [ "$FAILS" -gt 0 ] && [ -z "${CI:-}" ]; then
		echo "# kept $T for a look" >&2
	else
		rm -rf "$T"
	fi
	if [ -n "$sanitized" ]; then exit 1; fi
}
SANITIZER_REPORT='ERROR: AddressSanitizer|runtime error:|LeakSanitizer'
trap cleanup EXIT

ok() { echo "ok - $*"; }
notok() { echo "not ok - $*"; FAILS=$((FAILS + 1)); }
# check DESCRIPTION COMMAND...: one check, by a command's exit status.
check() {
	local desc=$1; shift
	if "$@"; then ok "$desc"; else notok "$desc"; fi
}
diag() { echo "# $*"; }

# wait_until SECONDS COMMAND...: polls every 0.1 s until the command succeeds.
wait_until() {
	local limit=$1; shift
	local end=$((SECONDS + limit))
	while [ $SECONDS -le $end ]; do
		"$@" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# free_port: a free loopback port for this script alone.  Scripts run beside
# each other (tests/run-tests.sh), so a port the kernel once found free is not
# enough: it is taken below the kernel's ephemeral range (where no port-0
# bind, such as the simulator's, and no outgoing connection's own port can
# take it before its user binds it), and claimed, under a lock, in a directory
# every test script on the machine consults; the claim ends with the script.
PORT_CLAIMS=${TMPDIR:-/tmp}/blinkhook-test-ports.$(id -u)
free_port() {
	python3 - "$PORT_CLAIMS" "$$" <<-'EOF'
	import errno, fcntl, os, random, socket, stat, sys
	claims, me = sys.argv[1], sys.argv[2]
	with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
	    ephemeral = int(f.read().split()[0])
	first, last = 10000, ephemeral - 1
	if last - first < 1000:
	    sys.exit("free_port: no room below the ephemeral ports (%d)" % ephemeral)
	def opened(path, flags, mode="r"):
	    # Never through a symbolic link, never readable by others.
	    return os.fdopen(os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), mode)
	def alive(claim):
	    try:
	        with opened(claim, os.O_RDONLY) as f:
	            os.kill(int(f.read()), 0)
	    except (FileNotFoundError, ValueError, ProcessLookupError):
	        return False
	    except PermissionError:
	        pass
	    except OSError:
	        pass  # a link or the like: not a claim to take over
	    return True
	def bindable(port):
	    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
	        try:
	            s = socket.socket(family)
	        except OSError:
	            continue  # no IPv6 here
	        try:
	            s.bind((host, port))
	        except OSError as e:
	            if e.errno != errno.EADDRNOTAVAIL:
	                return False
	        finally:
	            s.close()
	    return True
	# The directory is shared by name: it must be ours alone, or another
	# user could plant links in it (files truncated) or hold its lock.
	try:
	    os.mkdir(claims, 0o700)
	except FileExistsError:
	    pass
	st = os.lstat(claims)
	if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) != 0o700:
	    sys.exit("free_port: %s is not a directory of uid %d with mode 0700: remove it or set TMPDIR"
	             % (claims, os.getuid()))
	with opened(os.path.join(claims, "lock"), os.O_RDWR | os.O_CREAT, "r+") as lock:
	    fcntl.flock(lock, fcntl.LOCK_EX)
	    start = random.randint(first, last)
	    for i in range(last - first + 1):
	        port = first + (start - first + i) % (last - first + 1)
	        claim = os.path.join(claims, str(port))
	        if not alive(claim) and bindable(port):
	            with opened(claim, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "w") as f:
	                f.write(me)
	            print(port)
	            sys.exit(0)
	sys.exit("free_port: every port is taken")
	EOF
}

# json EXPR < JSON: evaluates a Python expression over the parsed input `j`.
json() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }

# start_sim [ARGS...]: the Meraki simulator; sets SIM_PORT and SIM_URL.
start_sim() {
	rm -f "$T/sim.port"
	python3 "$SIM" --host 127.0.0.1 --port 0 --port-file "$T/sim.port" \
		--foreign-host 127.0.0.2 --foreign-port 0 --foreign-port-file "$T/sim.foreign" \
		--api-key "$API_KEY" --log "$T/sim.log" "$@" &
	PIDS+=($!)
	SIM_PID=$!
	wait_until 10 test -s "$T/sim.port" || { notok "simulator did not start"; exit 1; }
	SIM_PORT=$(cat "$T/sim.port")
	SIM_URL="http://127.0.0.1:$SIM_PORT"
}

sim_get() { curl -sS --max-time 5 "$SIM_URL/_sim/$1"; }
sim_fault() { curl -sS --max-time 5 -X POST -H 'Content-Type: application/json' -d "$1" "$SIM_URL/_sim/faults" >/dev/null; }

# write_config [EXTRA INI LINES...]: $T/bh.conf with the daemon on a free
# port; extra lines go into the section they name ("[callback] wait = 1s").
write_config() {
	D_PORT=${D_PORT:-$(free_port)}
	D_URL="http://127.0.0.1:$D_PORT"
	local meraki="" callback="" queue="" state="" store=""
	local l
	for l in "$@"; do
		case "$l" in
		"[meraki] "*) meraki+="${l#\[meraki\] }"$'\n' ;;
		"[callback] "*) callback+="${l#\[callback\] }"$'\n' ;;
		"[queue] "*) queue+="${l#\[queue\] }"$'\n' ;;
		"[state] "*) state+="${l#\[state\] }"$'\n' ;;
		"[store] "*) store+="${l#\[store\] }"$'\n' ;;
		esac
	done
	cat >"$T/bh.conf" <<-EOF
	# written by the test
	[meraki]
	base_url = $SIM_URL/api/v1
	min_interval = 0.2s
	retry_initial = 100ms
	retry_max = 1s
	request_timeout = 5s
	$meraki
	[callback]
	public_url = $D_URL
	listen = 127.0.0.1:$D_PORT
	$callback
	[queue]
	dir = $T/spool
	$queue
	[state]
	dir = $T/state
	$state
	[store]
	$store
	EOF
}

# start_daemon: blinkhookd on $T/bh.conf, ready when /healthz answers 200.
start_daemon() {
	MERAKI_DASHBOARD_API_KEY=$API_KEY ${DAEMON_WRAPPER:-} "$BLINKHOOKD" -c "$T/bh.conf" 2>>"$T/daemon.log" &
	D_PID=$!
	PIDS+=($D_PID)
	wait_until 15 curl -fsS --max-time 1 -o /dev/null "$D_URL/healthz" || {
		notok "daemon did not become ready"
		sed 's/^/# /' "$T/daemon.log"
		exit 1
	}
}

stop_daemon() {
	kill -TERM "$D_PID" 2>/dev/null
	wait "$D_PID" 2>/dev/null
	D_STATUS=$?
}

ctl() { "$BLINKHOOKCTL" -c "$T/bh.conf" "$@"; }

job_state() { ctl status "$1" --json | json 'j["state"]'; }
# secret_of JOB_ID: the job's callback secret, computed as the daemon does:
# base64url(HMAC-SHA256(state/secret.key, id NUL nonce)), unpadded, with the
# nonce of the job's latest "queued" (or compaction's "job") record in
# state/jobs.log; HMAC-SHA256(key, id) for a job logged without a nonce.
secret_of() {
	python3 -c '
import base64, hashlib, hmac, json, sys
key = open(sys.argv[1], "rb").read()
msg = sys.argv[2].encode()
nonce = None
try:
    for line in open(sys.argv[3], "rb"):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("id") == sys.argv[2] and rec.get("event") in ("queued", "job"):
            nonce = rec.get("nonce")
except FileNotFoundError:
    pass
if nonce:
    msg += b"\0" + nonce.encode()
print(base64.urlsafe_b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode().rstrip("="))
' "$T/state/secret.key" "$1" "$T/state/jobs.log"
}

state_is() { test "$(job_state "$1")" = "$2"; }
# wait_state SECONDS JOB STATE
wait_state() { wait_until "$1" state_is "$2" "$3"; }

# ---- throwaway PostgreSQL clusters ----
#
# pg_start: initdb and pg_ctl (PostgreSQL's own, from /usr/lib/postgresql)
# in a fresh temporary directory, so that parallel tests share nothing, set
# up as a careful operator's server is: run as root, the cluster runs as
# nobody (PostgreSQL refuses root), which alone owns its directory (0700,
# the unix socket in it); TCP on 127.0.0.1 only, on a port of its own; every
# connection authenticated by scram-sha-256 password (pg_hba.conf has no
# "trust" line).  The superuser "postgres" (its generated password in a
# .pgpass for pg_sql) makes the role blinkhook (a generated password of its
# own, no superuser) and its database blinkhook.  The daemon and blinkhookctl
# get the connection string, password included, the way operators give it:
# the credential postgresql-conninfo, in $CREDENTIALS_DIRECTORY (exported).
# Sets PG_DIR (the cluster: data in $PG_DIR/data), PG_PORT, PG_CONNINFO
# (without the password, for a config file), PG_CREDS; cleanup stops the
# cluster and removes it.  Without PostgreSQL the script fails.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
PG_USER=blinkhook
PG_SUPER=postgres

pg_as() {
	if [ "$(id -u)" -eq 0 ]; then
		setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
	else
		"$@"
	fi
}

# pg_password: 32 random characters, safe in a conninfo and a .pgpass.
pg_password() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# pg_dir: a new, empty cluster directory, the cluster user's alone.
pg_dir() {
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/blinkhook-pg.XXXXXX")
	chmod 0700 "$d"
	[ "$(id -u)" -eq 0 ] && chown nobody:nogroup "$d"
	free_port >"$T/pgport.${d##*.}"
	echo "$d"
}
pg_port() { cat "$T/pgport.${1##*.}"; }

# pg_credential DIR CONNINFO: the credential postgresql-conninfo in DIR
# (made 0700): CONNINFO with the role blinkhook's password.
pg_credential() {
	mkdir -p -m 0700 "$1"
	(umask 077 && printf '%s password=%s\n' "$2" "$PG_PASSWORD" >"$1/postgresql-conninfo")
}

pg_start() {
	# Not a skip: make check installs PostgreSQL first (make deps), so
	# without it the machine is not set up, and a skip would pass make
	# check with none of the PostgreSQL store's tests run.
	if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
		notok "PostgreSQL is installed (make deps)"
		exit 1
	fi
	PG_DIR=$(pg_dir)
	PG_DIRS+=("$PG_DIR")
	PG_PORT=$(pg_port "$PG_DIR")
	# One test's clusters share the passwords: a multi-host conninfo
	# gives one password for every host.
	PG_SUPER_PASSWORD=${PG_SUPER_PASSWORD:-$(pg_password)}
	PG_PASSWORD=${PG_PASSWORD:-$(pg_password)}
	# The superuser's password reaches initdb in a file of the cluster's
	# own directory, removed once read.
	echo "$PG_SUPER_PASSWORD" | pg_as sh -c 'umask 077 && cat >"$1"' sh "$PG_DIR/pwfile"
	pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_SUPER" --pwfile="$PG_DIR/pwfile" \
		-A scram-sha-256 -E UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1 || {
		notok "initdb failed"
		sed 's/^/# /' "$PG_DIR/initdb.log"
		exit 1
	}
	rm -f "$PG_DIR/pwfile"
	# Only what the tests use, and only by password: the superuser over
	# the socket and over TCP (with replication, for pg_standby), the
	# daemon's role over TCP.
	pg_as tee "$PG_DIR/data/pg_hba.conf" >/dev/null <<-EOF
	# TYPE  DATABASE     USER          ADDRESS        METHOD
	local   all          $PG_SUPER                    scram-sha-256
	host    all          $PG_SUPER     127.0.0.1/32   scram-sha-256
	host    replication  $PG_SUPER     127.0.0.1/32   scram-sha-256
	host    all          $PG_USER      127.0.0.1/32   scram-sha-256
	EOF
	(umask 077 && printf '127.0.0.1:*:*:%s:%s\n' "$PG_SUPER" "$PG_SUPER_PASSWORD" >"$T/pgpass")
	pg_cluster_start "$PG_DIR" || exit 1
	pg_sql "create role $PG_USER login password '$PG_PASSWORD'" postgres >/dev/null &&
		pg_sql "create database blinkhook owner $PG_USER" postgres >/dev/null || {
		notok "cannot create the role and database blinkhook"
		exit 1
	}
	PG_CONNINFO="host=127.0.0.1 port=$PG_PORT dbname=blinkhook user=$PG_USER"
	PG_CREDS=$T/pgcreds
	pg_credential "$PG_CREDS" "$PG_CONNINFO"
	export CREDENTIALS_DIRECTORY=$PG_CREDS
}

# pg_standby: a second cluster, a streaming replica of $PG_DIR's (made by
# pg_basebackup, started); sets PG_STANDBY_DIR and PG_STANDBY_PORT.
# pg_promote DIR makes it the primary.
pg_standby() {
	PG_STANDBY_DIR=$(pg_dir)
	PG_DIRS+=("$PG_STANDBY_DIR")
	PG_STANDBY_PORT=$(pg_port "$PG_STANDBY_DIR")
	PGPASSWORD=$PG_SUPER_PASSWORD pg_as "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPER" \
		-D "$PG_STANDBY_DIR/data" -R -X stream >"$PG_STANDBY_DIR/basebackup.log" 2>&1 || {
		notok "pg_basebackup failed"
		sed 's/^/# /' "$PG_STANDBY_DIR/basebackup.log"
		exit 1
	}
	pg_cluster_start "$PG_STANDBY_DIR" || exit 1
}

pg_promote() {
	pg_as "$PG_BIN/pg_ctl" -D "$1/data" -w -t 30 promote >/dev/null
}

# pg_cluster_start DIR / pg_cluster_stop DIR: start or stop (fast) a cluster
# pg_start made; TCP on 127.0.0.1 and its own port, the socket in DIR.
pg_cluster_start() {
	pg_as "$PG_BIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 30 \
		-o "-k $1 -c listen_addresses=127.0.0.1 -p $(pg_port "$1") -c fsync=off -c max_connections=40" \
		start >/dev/null || {
		notok "PostgreSQL did not start"
		sed 's/^/# /' "$1/server.log"
		return 1
	}
}

pg_cluster_stop() {
	pg_as "$PG_BIN/pg_ctl" -D "$1/data" -m fast -w -t 30 stop >/dev/null 2>&1
}

pg_destroy() {
	[ -f "$1/data/postmaster.pid" ] && pg_cluster_stop "$1"
	if [ "$FAILS" -gt 0 ] && [ -z "${CI:-}" ]; then
		echo "# kept $1 for a look" >&2
	else
		rm -rf "$1"
	fi
}

# pg_sql SQL [DATABASE]: runs SQL as the superuser on $PG_DIR's cluster (in
# the database blinkhook by default), prints unaligned tuples only.
pg_sql() {
	PGPASSFILE=$T/pgpass "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p "$(pg_port "$PG_DIR")" \
		-U "$PG_SUPER" -d "${2:-blinkhook}" -c "$1"
}

# pg_count WHERE: how many rows of jobs the condition WHERE selects (on
# $PG_DIR's cluster); pg_count_is WHERE N: whether that is N.
pg_count() { pg_sql "select count(*) from jobs where $1"; }
pg_count_is() { test "$(pg_count "$1")" = "$2"; }

# spool_empty: whether the daemon's spool (new/) holds no file.
spool_empty() { [ -z "$(ls -A "$T/spool/new")" ]; }

# now: monotonic seconds, the clock of the simulator's timestamps.
now() { python3 -c 'import time; print(time.monotonic())'; }
