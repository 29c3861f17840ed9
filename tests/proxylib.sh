# shellcheck shell=bash
# Shared steps of the reverse-proxy scripts (tests/integration/7x-*.sh),
# sourced after lib.sh.  Each proxy script sets up its own proxy and keeps
# its own checks; what all of them do the same way is here, written once.
# The proxy is named by PX_NAME (as the checks say it: nginx, haproxy,
# apache2) and reached at PX_URL (https://127.0.0.1:PX_PORT), both set by
# proxy_setup.

# proxy_need VAR PROGRAM: VAR names PROGRAM (from PATH or /usr/sbin); the
# script is skipped where it is not installed (its Debian package has its
# name).
proxy_need() {
	local path
	path=$(command -v "$2" || { test -x "/usr/sbin/$2" && echo "/usr/sbin/$2"; })
	if [ -z "$path" ]; then
		echo "# SKIP $2 is not installed (Debian package \"$2\"; \`make deps\` installs it)"
		exit 0
	fi
	printf -v "$1" '%s' "$path"
}

# proxy_need_openssl: skip the script where openssl is missing.
proxy_need_openssl() { proxy_need PX_OPENSSL openssl; }

# proxy_mkcerts: a CA ($T/ca.pem) and a server certificate for 127.0.0.1
# and localhost ($T/server.pem, $T/server.key); openssl's words in
# $T/openssl.log.
proxy_mkcerts() {
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 2 \
		-subj "/CN=blinkhook test CA" -keyout "$T/ca.key" -out "$T/ca.pem" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" &&
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-subj "/CN=127.0.0.1" -keyout "$T/server.key" -out "$T/server.csr" &&
	printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		"authorityKeyIdentifier=keyid" "subjectKeyIdentifier=hash" >"$T/server.ext" &&
	openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
		-days 2 -extfile "$T/server.ext" -out "$T/server.pem"
} >"$T/openssl.log" 2>&1
# proxy_certs: the same as a check; the script ends if it fails.
proxy_certs() {
	check "a CA and a server certificate for 127.0.0.1 made with openssl" proxy_mkcerts ||
		{ sed 's/^/# /' "$T/openssl.log"; exit 1; }
}

# proxy_setup NAME: the simulator (calling back over https, trusting the
# test CA) and a daemon config that trusts the proxy on loopback, with
# public_url under /blinkhook on a free port for the proxy.
proxy_setup() {
	PX_NAME=$1
	start_sim --min-interval 0 --blink-time 0.2 --callback-cafile "$T/ca.pem" --callback-retry-delay 0.2
	write_config "[callback] trusted_proxies = 127.0.0.1 ::1"
	PX_PORT=$(free_port)
	PX_URL="https://127.0.0.1:$PX_PORT"
	sed -i "s|^public_url = .*|public_url = $PX_URL/blinkhook|" "$T/bh.conf"
}

# proxy_wait_up LOG...: the proxy answers https with the test CA's
# certificate within 10 s; else the script ends, showing the LOG files.
proxy_wait_up() {
	wait_until 10 curl -sS --max-time 1 --cacert "$T/ca.pem" -o /dev/null "$PX_URL/" || {
		notok "$PX_NAME did not start"
		sed 's/^/# /' "$@"
		exit 1
	}
	ok "$PX_NAME serves https on 127.0.0.1:$PX_PORT with the test CA's certificate"
}

# proxy_blinks: two blinks complete with their callbacks through the proxy
# over https, with the callback URL under public_url's path; sets A and B.
proxy_blinks() {
	A=$(ctl blink Q2AA-BBBB-CCCC --duration 1)
	B=$(ctl blink Q2AA-BBBB-DDDD --duration 1)
	check "a blink completes with its callback through $PX_NAME" wait_state 20 "$A" complete
	check "a second blink completes too" wait_state 20 "$B" complete
	cb_url=$(sim_get jobs | json "[x['callback_url'] for x in j if x['callback_url'] and x['callback_url'].endswith('/$A')][0]")
	check "Meraki was given the callback URL under public_url's path ($cb_url)" \
		test "$cb_url" = "$PX_URL/blinkhook/callbacks/leds-blink/$A"
	check "the simulator's callbacks were answered 200 over https through $PX_NAME" sh -c "
	curl -sS --max-time 5 '$SIM_URL/_sim/callbacks' | python3 -c '
import json, sys
c = [x for x in json.load(sys.stdin) if x[\"url\"].startswith(\"$PX_URL/blinkhook/callbacks/\")]
ok = [x for x in c if x[\"http_status\"] == 200]
sys.exit(0 if len(ok) >= 2 and all(x[\"url\"].startswith(\"https://\") for x in c) else 1)'"
}

# proxy_right_secret: a callback with the right secret from 127.0.0.5
# through the proxy, with a forged X-Forwarded-For and Forwarded, is
# accepted and logged with 127.0.0.5.
proxy_right_secret() {
	local body code
	sim_fault '{"kind":"lost_callback","count":1}'
	C=$(ctl blink Q2AA-BBBB-EEEE --duration 1)
	wait_state 10 "$C" submitted || notok "job $C was not submitted"
	body=$(printf '{"callbackId":"9","organization":{"id":"1","name":"o"},"network":{"id":"N_1","name":"n"},"sentAt":"2026-01-01T00:00:00Z","sharedSecret":"%s","message":{"ledsBlinkId":"%s","url":"/x","status":"%s","request":{"serial":"Q2AA-BBBB-EEEE","duration":1},"error":null}}' \
		"$(secret_of "$C")" "$(ctl status "$C" --json | json 'j["leds_blink_id"]')" complete)
	code=$(curl -sS --max-time 5 --cacert "$T/ca.pem" -o /dev/null -w '%{http_code}' --interface 127.0.0.5 -X POST \
		-H 'Content-Type: application/json' -H 'X-Forwarded-For: 203.0.113.7' -H 'Forwarded: for=203.0.113.8' \
		--data-binary "$body" "$PX_URL/blinkhook/callbacks/leds-blink/$C")
	check "a callback with the right secret from 127.0.0.5 through $PX_NAME is accepted ($code)" test "$code" = 200
	check "... and completes its job" wait_state 5 "$C" complete
	check "... logged with the client 127.0.0.5, not the forged X-Forwarded-For or Forwarded" \
		grep -q "job $C: complete (callback from 127.0.0.5)" "$T/daemon.log"
}

# ---- the client address ----

# post URL [CURL ARGS...]: a callback with a wrong secret; prints the HTTP status.
post() {
	local url=$1; shift
	curl -sS --max-time 5 --cacert "$T/ca.pem" -o /dev/null -w '%{http_code}' -X POST \
		-H 'Content-Type: application/json' --data-binary '{"sharedSecret":"wrong"}' "$@" "$url"
}
# logged_from JOB: the client address the daemon logged for a callback to JOB.
logged_from() {
	wait_until 5 grep -q "callback for job $1 from " "$T/daemon.log"
	sed -n "s/.*callback for job $1 from \([^ ]*\) .*/\1/p" "$T/daemon.log" | tail -n1
}
# via_proxy JOB SOURCE-ADDRESS [CURL ARGS...] / direct JOB SOURCE-ADDRESS [CURL ARGS...]
via_proxy() { local id=$1 src=$2; shift 2; post "$PX_URL/blinkhook/callbacks/leds-blink/$id" --interface "$src" "$@"; }
direct() { local id=$1 src=$2; shift 2; post "$D_URL/callbacks/leds-blink/$id" --interface "$src" "$@"; }

# proxy_forged_xff PREFIX: callbacks through the proxy from 127.0.0.5, plain
# and with the client's own X-Forwarded-For, are answered by the daemon,
# which logs the client 127.0.0.5.  PREFIX names the jobs.
proxy_forged_xff() {
	local code from
	code=$(via_proxy "$1-plain" 127.0.0.5)
	from=$(logged_from "$1-plain")
	check "through $PX_NAME from 127.0.0.5: answered by the daemon ($code), which logs the client 127.0.0.5 ($from)" \
		test "$code" = 401 -a "$from" = 127.0.0.5
	code=$(via_proxy "$1-xff" 127.0.0.5 -H 'X-Forwarded-For: 203.0.113.7')
	from=$(logged_from "$1-xff")
	check "through $PX_NAME with the client's own X-Forwarded-For 203.0.113.7: the client is 127.0.0.5 ($from)" \
		test "$code" = 401 -a "$from" = 127.0.0.5
	code=$(via_proxy "$1-xff-trusted" 127.0.0.5 -H 'X-Forwarded-For: 127.0.0.1')
	from=$(logged_from "$1-xff-trusted")
	check "through $PX_NAME claiming to be the trusted 127.0.0.1: the client is 127.0.0.5 ($from)" \
		test "$code" = 401 -a "$from" = 127.0.0.5
}

# proxy_forged_forwarded PREFIX WHO: the client's own Forwarded, which WHO
# removes, is not believed either.
proxy_forged_forwarded() {
	local code from
	code=$(via_proxy "$1-fwd" 127.0.0.5 -H 'Forwarded: for=203.0.113.7')
	from=$(logged_from "$1-fwd")
	check "through $PX_NAME with the client's own Forwarded (removed by $2): the client is 127.0.0.5 ($from)" \
		test "$code" = 401 -a "$from" = 127.0.0.5
}

# ---- only the callbacks are reachable through the proxy ----

get() { curl -sS --max-time 5 --cacert "$T/ca.pem" -o "$T/got" -w '%{http_code}' "$@"; }

# proxy_not_reachable "PATHS" "TRAVERSALS": each of PATHS through the proxy
# is not served, each of TRAVERSALS (sent as written) is not the daemon's
# metrics or health; /metrics directly is; a GET on a callback URL (job A)
# gets the daemon's 405.
proxy_not_reachable() {
	local p code
	for p in $1; do
		code=$(get "$PX_URL$p")
		check "GET $p through $PX_NAME: not served ($code)" sh -c "
			test '$code' = 404 -o '$code' = 403 && ! grep -q blinkhook_ '$T/got'"
	done
	for p in $2; do
		code=$(get --path-as-is "$PX_URL$p")
		check "GET $p through $PX_NAME: not the daemon's metrics or health ($code)" sh -c "
			test '$code' != 200 && ! grep -q blinkhook_ '$T/got'"
	done
	code=$(get "$D_URL/metrics")
	check "GET /metrics directly: 200 ($code)" sh -c "test '$code' = 200 && grep -q blinkhook_ '$T/got'"
	code=$(get "$PX_URL/blinkhook/callbacks/leds-blink/$A")
	check "GET on a callback URL through $PX_NAME: the daemon's 405 ($code)" test "$code" = 405
}

# ---- the body cap matches max_body (64KiB) ----

# big BYTES [CURL ARGS...]: a POST of that many bytes through the proxy to
# job A's callback URL; prints the HTTP status, the answer in $T/got.
big() {
	local n=$1; shift
	head -c "$n" /dev/zero | tr '\0' 'a' >"$T/big"
	curl -sS --max-time 5 --cacert "$T/ca.pem" -o "$T/got" -w '%{http_code}' -X POST "$@" \
		-H 'Content-Type: application/json' --data-binary "@$T/big" "$PX_URL/blinkhook/callbacks/leds-blink/$A"
}
# proxy_body_cap [CURL ARGS...]: 64KiB through the proxy reach the daemon,
# one byte more gets 413.
proxy_body_cap() {
	local code
	code=$(big 65536 "$@")
	check "a 64KiB body through $PX_NAME reaches the daemon, which finds it is not JSON ($code)" \
		sh -c "test '$code' = 400 && grep -q '\"error\":\"bad request\"' '$T/got'"
	code=$(big 65537 "$@")
	check "a body of 64KiB + 1 byte is refused with 413 ($code)" test "$code" = 413
}

# ---- connections to the daemon ----

# upstream_ports: the local ports of the established connections to the
# daemon's port (the proxy's ends), sorted, on one line.
upstream_ports() {
	python3 -c '
import sys
port = int(sys.argv[1])
ports = []
for f in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        lines = open(f).read().splitlines()[1:]
    except OSError:
        continue
    for l in lines:
        p = l.split()
        if p[3] == "01" and int(p[2].rsplit(":", 1)[1], 16) == port:
            ports.append(int(p[1].rsplit(":", 1)[1], 16))
print(" ".join(str(x) for x in sorted(ports)))' "$D_PORT"
}
# upstream_conns: how many of them there are.
upstream_conns() {
	local p
	p=$(upstream_ports)
	wc -w <<<"$p"
}
