#!/usr/bin/env bash
# Behind a reverse proxy: a real nginx terminates TLS (a certificate made
# here, from a CA of our own) and passes the callbacks under the sub-path
# /blinkhook/ to the daemon through the shipped conf/nginx-location.conf.
# The simulator's callbacks go through it over https; the daemon logs the
# client's address from X-Forwarded-For only when a trusted proxy sent it;
# /metrics and /healthz are not reachable through the proxy. `nginx -t`
# accepts every shipped nginx file.
. "$(dirname "$0")/../lib.sh"

NGINX=$(command -v nginx || { test -x /usr/sbin/nginx && echo /usr/sbin/nginx; })
if [ -z "$NGINX" ]; then
	echo "# SKIP nginx is not installed (Debian package \"nginx\"; \`make deps\` installs it)"
	exit 0
fi
if ! command -v openssl >/dev/null; then
	echo "# SKIP openssl is not installed (Debian package \"openssl\"; \`make deps\` installs it)"
	exit 0
fi

# ---- a CA and a server certificate for 127.0.0.1 and localhost ----

mkcerts() {
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
check "a CA and a server certificate for 127.0.0.1 made with openssl" mkcerts ||
	{ sed 's/^/# /' "$T/openssl.log"; exit 1; }

# ---- nginx, with the shipped snippet under /blinkhook/ ----

# nginx_conf FILE HTTP-CONTENT...: a main nginx.conf for a private nginx in
# $T/nginx (its own pid file, logs and temp paths; no system file touched).
# Its error log is FILE.log.
NGX=$T/nginx
mkdir -p "$NGX/logs" "$NGX/tmp"
nginx_conf() {
	local f=$1; shift
	cat >"$f" <<-EOF
	# written by the test
	user root;
	worker_processes 1;
	pid $NGX/nginx.pid;
	error_log $f.log info;
	events { worker_connections 64; }
	http {
	    access_log $NGX/logs/access.log;
	    client_body_temp_path $NGX/tmp/body;
	    proxy_temp_path $NGX/tmp/proxy;
	    fastcgi_temp_path $NGX/tmp/fastcgi;
	    uwsgi_temp_path $NGX/tmp/uwsgi;
	    scgi_temp_path $NGX/tmp/scgi;
	$(printf '    %s\n' "$@")
	}
	EOF
}
# nginx_t CONF: `nginx -t` on it (which also binds its ports); its output in CONF.t.
nginx_t() { "$NGINX" -t -q -p "$NGX" -c "$1" -g "error_log $1.log;" >"$1.t" 2>&1; }

start_sim --min-interval 0 --blink-time 0.2 --callback-cafile "$T/ca.pem" --callback-retry-delay 0.2
write_config "[callback] trusted_proxies = 127.0.0.1 ::1"
N_PORT=$(free_port)
N_URL="https://127.0.0.1:$N_PORT"
sed -i "s|^public_url = .*|public_url = $N_URL/blinkhook|" "$T/bh.conf"

# The shipped upstream, with the daemon's test port for the documented
# 127.0.0.1:8787, and the shipped snippet as it is.
sed "s|127\.0\.0\.1:8787|127.0.0.1:$D_PORT|g" "$TOP/conf/nginx-upstream.conf" >"$NGX/upstream.conf"
check "the shipped upstream names 127.0.0.1:8787 (the default listen), which the test replaced" \
	sh -c "grep -q '^ *server 127.0.0.1:8787;' '$TOP/conf/nginx-upstream.conf' &&
		grep -q '^ *server 127.0.0.1:$D_PORT;' '$NGX/upstream.conf'"
check "the shipped snippet proxies to that upstream over kept-alive connections" \
	sh -c "grep -q 'proxy_pass http://blinkhook/callbacks/;' '$TOP/conf/nginx-location.conf' &&
		grep -q 'proxy_set_header Connection \"\";' '$TOP/conf/nginx-location.conf'"
cp "$TOP/conf/nginx-location.conf" "$NGX/blinkhook.conf"
nginx_conf "$NGX/nginx.conf" \
	"include $NGX/upstream.conf;" \
	"server {" \
	"    listen 127.0.0.1:$N_PORT ssl;" \
	"    server_name localhost;" \
	"    ssl_certificate $T/server.pem;" \
	"    ssl_certificate_key $T/server.key;" \
	"    include $NGX/blinkhook.conf;" \
	"}"
check "nginx -t accepts conf/nginx-upstream.conf in http and conf/nginx-location.conf inside a TLS server block" \
	nginx_t "$NGX/nginx.conf" ||
	sed 's/^/# /' "$NGX/nginx.conf.t"

# The complete site example, with the test's certificate for Let's Encrypt's,
# the snippet where the example installs it, and free loopback ports for 80
# and 443 (nginx -t binds them; IPv6 may be missing here).
P80=$(free_port)
P443=$(free_port)
sed -e "s|/etc/letsencrypt/live/www.example.net/fullchain.pem|$T/server.pem|" \
	-e "s|/etc/letsencrypt/live/www.example.net/privkey.pem|$T/server.key|" \
	-e "s|include /etc/nginx/snippets/blinkhook.conf;|include $TOP/conf/nginx-location.conf;|" \
	-e "s|^\( *\)listen 80;|\1listen 127.0.0.1:$P80;|" -e "s|^\( *\)listen 443 ssl;|\1listen 127.0.0.1:$P443 ssl;|" \
	-e "s#^\( *\)listen \[::\]:\(80\|443 ssl\);#\1\# (the test dropped: listen [::]:\2;)#" \
	"$TOP/conf/nginx-site.conf" >"$NGX/site.conf"
check "the test's copy of the site example has its certificate, the snippet and its ports" sh -c "
	grep -q 'include $TOP/conf/nginx-location.conf;' '$NGX/site.conf' &&
	grep -q 'ssl_certificate *$T/server.pem;' '$NGX/site.conf' &&
	grep -q 'ssl_certificate_key *$T/server.key;' '$NGX/site.conf' &&
	test \"\$(grep -c 'listen 127.0.0.1:$P80;' '$NGX/site.conf') \$(grep -c 'listen 127.0.0.1:$P443 ssl;' '$NGX/site.conf')\" = '1 1' &&
	! grep -q '^ *listen [^1]' '$NGX/site.conf'"
nginx_conf "$NGX/site-main.conf" "include $NGX/upstream.conf;" "include $NGX/site.conf;"
check "nginx -t accepts conf/nginx-site.conf (with the test's certificate)" nginx_t "$NGX/site-main.conf" ||
	sed 's/^/# /' "$NGX/site-main.conf.t"

"$NGINX" -p "$NGX" -c "$NGX/nginx.conf" -g "daemon off;" 2>>"$NGX/logs/stderr" &
PIDS+=($!)
NGINX_PID=$!
wait_until 10 curl -sS --max-time 1 --cacert "$T/ca.pem" -o /dev/null "$N_URL/" || {
	notok "nginx did not start"
	sed 's/^/# /' "$NGX/logs/stderr" "$NGX/nginx.conf.log"
	exit 1
}
ok "nginx serves https on 127.0.0.1:$N_PORT with the test CA's certificate"

start_daemon

# ---- blinks complete with their callbacks through nginx over https ----

A=$(ctl blink Q2AA-BBBB-CCCC --duration 1)
B=$(ctl blink Q2AA-BBBB-DDDD --duration 1)
check "a blink completes with its callback through nginx" wait_state 20 "$A" complete
check "a second blink completes too" wait_state 20 "$B" complete
cb_url=$(sim_get jobs | json "[x['callback_url'] for x in j if x['callback_url'] and x['callback_url'].endswith('/$A')][0]")
check "Meraki was given the callback URL under public_url's path ($cb_url)" \
	test "$cb_url" = "$N_URL/blinkhook/callbacks/leds-blink/$A"
check "the simulator's callbacks were answered 200 over https through nginx" sh -c "
	curl -sS --max-time 5 '$SIM_URL/_sim/callbacks' | python3 -c '
import json, sys
c = [x for x in json.load(sys.stdin) if x[\"url\"].startswith(\"$N_URL/blinkhook/callbacks/\")]
ok = [x for x in c if x[\"http_status\"] == 200]
sys.exit(0 if len(ok) >= 2 and all(x[\"url\"].startswith(\"https://\") for x in c) else 1)'"
check "nginx's access log shows POST /blinkhook/callbacks/leds-blink/<id> answered 200" \
	wait_until 5 sh -c "grep -q '\"POST /blinkhook/callbacks/leds-blink/$A HTTP/1.1\" 200 ' '$NGX/logs/access.log' &&
		grep -q '\"POST /blinkhook/callbacks/leds-blink/$B HTTP/1.1\" 200 ' '$NGX/logs/access.log'"
check "the daemon logged the callbacks as coming from the simulator's address" \
	grep -q "job $A: complete (callback from 127.0.0.1)" "$T/daemon.log"
# upstream_conns: established TCP connections to the daemon's port (nginx's ends).
upstream_conns() {
	python3 -c '
import sys
port = int(sys.argv[1])
n = 0
for f in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        lines = open(f).read().splitlines()[1:]
    except OSError:
        continue
    for l in lines:
        p = l.split()
        if p[3] == "01" and int(p[2].rsplit(":", 1)[1], 16) == port:
            n += 1
print(n)' "$D_PORT"
}
conns=$(upstream_conns)
check "nginx keeps its connection to the daemon open between callbacks (upstream keepalive: $conns)" \
	test "$conns" -ge 1 -a "$conns" -le 16

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
	sed -n "s/.*callback for job $1 from \([^ :]*\).*/\1/p" "$T/daemon.log" | tail -n1
}
# via_proxy JOB SOURCE-ADDRESS [CURL ARGS...] / direct JOB SOURCE-ADDRESS [CURL ARGS...]
via_proxy() { local id=$1 src=$2; shift 2; post "$N_URL/blinkhook/callbacks/leds-blink/$id" --interface "$src" "$@"; }
direct() { local id=$1 src=$2; shift 2; post "$D_URL/callbacks/leds-blink/$id" --interface "$src" "$@"; }

code=$(via_proxy xff-proxied 127.0.0.5)
from=$(logged_from xff-proxied)
check "through nginx from 127.0.0.5: answered by the daemon ($code), which logs the client 127.0.0.5 ($from)" \
	test "$code" = 401 -a "$from" = 127.0.0.5
code=$(via_proxy xff-proxied-spoof 127.0.0.5 -H 'X-Forwarded-For: 203.0.113.7')
from=$(logged_from xff-proxied-spoof)
check "through nginx from 127.0.0.5 with its own X-Forwarded-For 203.0.113.7: the client is 127.0.0.5 ($from)" \
	test "$code" = 401 -a "$from" = 127.0.0.5
code=$(via_proxy xff-proxied-trusted 127.0.0.5 -H 'X-Forwarded-For: 127.0.0.1')
from=$(logged_from xff-proxied-trusted)
check "through nginx from 127.0.0.5 claiming to be the trusted 127.0.0.1: the client is 127.0.0.5 ($from)" \
	test "$code" = 401 -a "$from" = 127.0.0.5
code=$(direct xff-direct-untrusted 127.0.0.9 -H 'X-Forwarded-For: 203.0.113.7')
from=$(logged_from xff-direct-untrusted)
check "directly from the untrusted 127.0.0.9 with X-Forwarded-For 203.0.113.7: ignored, the client is 127.0.0.9 ($from)" \
	test "$code" = 401 -a "$from" = 127.0.0.9
code=$(direct xff-direct-trusted 127.0.0.1 -H 'X-Forwarded-For: 203.0.113.7')
from=$(logged_from xff-direct-trusted)
check "directly from the trusted 127.0.0.1 with X-Forwarded-For 203.0.113.7: believed ($from)" \
	test "$code" = 401 -a "$from" = 203.0.113.7
check "no refused callback was logged as coming from 203.0.113.7 but the trusted one" \
	test "$(grep -c 'from 203\.0\.113\.7 ' "$T/daemon.log")" = 1
long=$(python3 -c 'print(", ".join(["198.51.100.%d" % i for i in range(60)]))')
code=$(via_proxy xff-long 127.0.0.5 -H "X-Forwarded-For: $long")
from=$(logged_from xff-long)
check "a long X-Forwarded-For through nginx: the client is still 127.0.0.5 ($from)" test "$from" = 127.0.0.5
code=$(direct xff-two 127.0.0.1 -H 'X-Forwarded-For: 203.0.113.7' -H 'X-Forwarded-For: 127.0.0.5')
from=$(logged_from xff-two)
check "two X-Forwarded-For lines from a trusted proxy are read as one list ($from)" test "$from" = 127.0.0.5

# ---- blinkhookctl selftest: the probe through public_url ----
said() { [ "$rc" = "$1" ] && grep -qi -- "$2" <<<"$out"; } # said RC PATTERN: about the last selftest
sed -i "s|^\[meraki\]|[meraki]\nca_file = $T/ca.pem|" "$T/bh.conf"
jobs_before=$(ctl jobs --json)
out=$(ctl selftest 2>&1)
rc=$?
check "selftest through nginx reaches this daemon ($out)" said 0 '^OK: https://127.0.0.1:.*/blinkhook/callbacks/probe reached this blinkhookd'
check "the daemon logged the probe with the client address" grep -q 'selftest probe from 127.0.0.1 answered' "$T/daemon.log"
check "the probe's answer names no instance: no Blinkhook-Instance header, no instance-id file" sh -c "
	curl -sS -i --max-time 5 --cacert '$T/ca.pem' -H 'Content-Type: application/json' -d '{\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAAAA\"}' '$N_URL/blinkhook/callbacks/probe' >'$T/probe.answer' &&
	grep -q '^HTTP/1.1 200' '$T/probe.answer' && ! grep -qi '^blinkhook-instance' '$T/probe.answer' && ! test -e '$T/state/instance-id'"
check "the probe changed no job" test "$(ctl jobs --json)" = "$jobs_before"
cp "$T/bh.conf" "$T/bh.conf.keep"
sed -i "s|^public_url = .*|public_url = $N_URL/elsewhere|" "$T/bh.conf"
out=$(ctl selftest 2>&1)
rc=$?
check "selftest with a prefix the proxy does not forward fails and says so ($out)" said 1 'answered HTTP 404'
sed -i "s|^public_url = .*|public_url = https://127.0.0.1:$(free_port)/blinkhook|" "$T/bh.conf"
out=$(ctl selftest 2>&1)
rc=$?
check "selftest where nothing listens fails with the reason ($out)" said 1 'did not answer'
sed -i "s|^ca_file = .*|ca_file = /etc/ssl/certs/ca-certificates.crt|; s|^public_url = .*|public_url = $N_URL/blinkhook|" "$T/bh.conf"
out=$(ctl selftest 2>&1)
rc=$?
check "selftest refuses a certificate it cannot verify ($out)" said 1 'certificate'
cp "$T/bh.conf.keep" "$T/bh.conf"

# ---- only the callbacks are reachable through the proxy ----

get() { curl -sS --max-time 5 --cacert "$T/ca.pem" -o "$T/got" -w '%{http_code}' "$@"; }
for p in /blinkhook/metrics /blinkhook/healthz /metrics /healthz /blinkhook/ /callbacks/leds-blink/x; do
	code=$(get "$N_URL$p")
	check "GET $p through nginx: not served ($code)" sh -c "
		test '$code' = 404 -o '$code' = 403 && ! grep -q blinkhook_ '$T/got'"
done
for p in /blinkhook/callbacks/../metrics /blinkhook/callbacks/%2e%2e/metrics /blinkhook/callbacks/..%2fmetrics \
	/blinkhook/callbacks/../healthz; do
	code=$(get --path-as-is "$N_URL$p")
	check "GET $p through nginx: not the daemon's metrics or health ($code)" sh -c "
		test '$code' != 200 && ! grep -q blinkhook_ '$T/got'"
done
code=$(get "$D_URL/metrics")
check "GET /metrics directly: 200 ($code)" sh -c "test '$code' = 200 && grep -q blinkhook_ '$T/got'"
code=$(get "$D_URL/healthz")
check "GET /healthz directly: 200 ($code)" test "$code" = 200
code=$(get "$N_URL/blinkhook/callbacks/leds-blink/$A")
check "GET on a callback URL through nginx: the daemon's 405 ($code)" test "$code" = 405

# ---- client_max_body_size matches max_body (64KiB) ----

big() { # big BYTES: a POST of that many bytes through nginx; prints the HTTP status.
	head -c "$1" /dev/zero | tr '\0' 'a' >"$T/big"
	curl -sS --max-time 5 --cacert "$T/ca.pem" -o "$T/got" -w '%{http_code}' -X POST \
		-H 'Content-Type: application/json' --data-binary "@$T/big" "$N_URL/blinkhook/callbacks/leds-blink/$A"
}
code=$(big 65536)
check "a 64KiB body through nginx reaches the daemon, which finds it is not JSON ($code)" \
	sh -c "test '$code' = 400 && grep -q '\"error\":\"bad request\"' '$T/got'"
code=$(big 65537)
check "a body of 64KiB + 1 byte is refused with 413 ($code)" test "$code" = 413
check "... by nginx itself, before the daemon saw it" \
	grep -q 'client intended to send too large body: 65537 bytes' "$NGX/nginx.conf.log"
check "the job is still complete" state_is "$A" complete

# ---- nginx stops cleanly ----
kill -QUIT "$NGINX_PID" 2>/dev/null
check "nginx stopped (its pid file is gone)" wait_until 10 test ! -e "$NGX/nginx.pid"
wait "$NGINX_PID" 2>/dev/null
check "nginx logged no emergency, alert or critical error" \
	sh -c "! grep -E '\\[(emerg|alert|crit)\\]' '$NGX/nginx.conf.log' '$NGX/logs/stderr'"
