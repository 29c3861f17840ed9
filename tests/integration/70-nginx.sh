#!/usr/bin/env bash
# Behind a reverse proxy: a real nginx terminates TLS (a certificate made
# here, from a CA of our own) and passes the callbacks under the sub-path
# /blinkhook/ to the daemon through the shipped conf/nginx-location.conf.
# The simulator's callbacks go through it over https; the daemon logs the
# client's address from X-Forwarded-For only when a trusted proxy sent it;
# /metrics and /healthz are not reachable through the proxy. `nginx -t`
# accepts every shipped nginx file.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../proxylib.sh"

proxy_need NGINX nginx
proxy_need_openssl

# ---- a CA and a server certificate for 127.0.0.1 and localhost ----

proxy_certs

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

proxy_setup nginx
N_PORT=$PX_PORT
N_URL=$PX_URL

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
proxy_wait_up "$NGX/logs/stderr" "$NGX/nginx.conf.log"

start_daemon

# ---- blinks complete with their callbacks through nginx over https ----

proxy_blinks
check "nginx's access log shows POST /blinkhook/callbacks/leds-blink/<id> answered 200" \
	wait_until 5 sh -c "grep -q '\"POST /blinkhook/callbacks/leds-blink/$A HTTP/1.1\" 200 ' '$NGX/logs/access.log' &&
		grep -q '\"POST /blinkhook/callbacks/leds-blink/$B HTTP/1.1\" 200 ' '$NGX/logs/access.log'"
check "the daemon logged the callbacks as coming from the simulator's address" \
	grep -q "job $A: complete (callback from 127.0.0.1)" "$T/daemon.log"
# upstream_conns: established TCP connections to the daemon's port (nginx's ends).
conns=$(upstream_conns)
check "nginx keeps its connection to the daemon open between callbacks (upstream keepalive: $conns)" \
	test "$conns" -ge 1 -a "$conns" -le 16

# ---- the client address ----

proxy_forged_xff n
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

proxy_not_reachable "/blinkhook/metrics /blinkhook/healthz /metrics /healthz /blinkhook/ /callbacks/leds-blink/x" \
	"/blinkhook/callbacks/../metrics /blinkhook/callbacks/%2e%2e/metrics /blinkhook/callbacks/..%2fmetrics
	 /blinkhook/callbacks/../healthz"
code=$(get "$D_URL/healthz")
check "GET /healthz directly: 200 ($code)" test "$code" = 200

# ---- client_max_body_size matches max_body (64KiB) ----

proxy_body_cap
check "... by nginx itself, before the daemon saw it" \
	grep -q 'client intended to send too large body: 65537 bytes' "$NGX/nginx.conf.log"
check "the job is still complete" state_is "$A" complete

# ---- nginx stops cleanly ----
kill -QUIT "$NGINX_PID" 2>/dev/null
check "nginx stopped (its pid file is gone)" wait_until 10 test ! -e "$NGX/nginx.pid"
wait "$NGINX_PID" 2>/dev/null
check "nginx logged no emergency, alert or critical error" \
	sh -c "! grep -E '\\[(emerg|alert|crit)\\]' '$NGX/nginx.conf.log' '$NGX/logs/stderr'"
