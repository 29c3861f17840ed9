#!/usr/bin/env bash
# Behind Apache httpd: a real apache2 runs the shipped conf/apache-blinkhook.conf
# (its certificate, port and the daemon's address replaced by the test's)
# inside a main configuration of the test's own, terminates TLS and passes
# the callbacks under /blinkhook/ to the daemon.  Checked through it: the
# simulator's callbacks complete their jobs; a callback with the right secret
# from another address is logged with that address (from Apache's
# X-Forwarded-For), a client's own X-Forwarded-For or Forwarded is not
# believed; /metrics and /healthz are not reachable; a body over max_body
# gets Apache's own 413; an idle connection to the daemon is not used again
# after 10 s (ttl=10), below the daemon's 15 s idle timeout.
#
# Apache runs in the foreground (-DFOREGROUND) from its own main file, with
# its own port, pid file, logs and runtime directory in the test's directory,
# as root dropping to "nobody"; /etc/apache2 and a system apache2 service
# (Debian starts one on install) are left alone.
. "$(dirname "$0")/../lib.sh"

APACHE=$(command -v apache2 || { test -x /usr/sbin/apache2 && echo /usr/sbin/apache2; })
MODS=/usr/lib/apache2/modules
if [ -z "$APACHE" ] || [ ! -e "$MODS/mod_proxy_http.so" ]; then
	echo "# SKIP apache2 is not installed (Debian package \"apache2\"; \`make deps\` installs it)"
	exit 0
fi
if ! command -v openssl >/dev/null; then
	echo "# SKIP openssl is not installed (Debian package \"openssl\"; \`make deps\` installs it)"
	exit 0
fi
if [ "$(id -u)" = 0 ]; then
	# As root Apache must change to a user for its workers.
	A_USER=nobody
	A_GROUP=$(id -gn nobody 2>/dev/null) || { echo "# SKIP no user \"nobody\" for Apache's workers"; exit 0; }
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

# ---- apache2 with the shipped site ----

start_sim --min-interval 0 --blink-time 0.2 --callback-cafile "$T/ca.pem" --callback-retry-delay 0.2
write_config "[callback] trusted_proxies = 127.0.0.1 ::1"
A_PORT=$(free_port)
A_URL="https://127.0.0.1:$A_PORT"
sed -i "s|^public_url = .*|public_url = $A_URL/blinkhook|" "$T/bh.conf"

AD=$T/apache
mkdir -p "$AD/run" "$AD/logs" "$AD/www"
# The shipped site with the test's certificate and port for 443 and the
# daemon's test port for the documented 127.0.0.1:8787.
sed -e "s|^<VirtualHost \*:443>|<VirtualHost 127.0.0.1:$A_PORT>|" \
	-e "s|/etc/letsencrypt/live/www.example.net/fullchain.pem|$T/server.pem|" \
	-e "s|/etc/letsencrypt/live/www.example.net/privkey.pem|$T/server.key|" \
	-e "s|127\.0\.0\.1:8787|127.0.0.1:$D_PORT|g" -e "s|/var/www/html|$AD/www|" \
	"$TOP/conf/apache-blinkhook.conf" >"$AD/site.conf"
check "the test's copy of conf/apache-blinkhook.conf has its certificate, port and daemon address" sh -c "
	grep -q '^<VirtualHost \*:443>\$' '$TOP/conf/apache-blinkhook.conf' &&
	grep -q 'ProxyPass \"http://127.0.0.1:8787/callbacks/\"' '$TOP/conf/apache-blinkhook.conf' &&
	grep -q '^<VirtualHost 127.0.0.1:$A_PORT>\$' '$AD/site.conf' &&
	grep -q 'ProxyPass \"http://127.0.0.1:$D_PORT/callbacks/\"' '$AD/site.conf' &&
	grep -q 'SSLCertificateKeyFile $T/server.key\$' '$AD/site.conf' && ! grep -q 8787 '$AD/site.conf'"
# The main file: the modules docs/reverse-proxies.md names, one worker process (so that
# its pool of connections to the daemon is the only one), everything in $AD.
cat >"$AD/apache2.conf" <<EOF
# written by the test
ServerRoot $AD
ServerName localhost
Listen 127.0.0.1:$A_PORT
PidFile $AD/run/apache2.pid
DefaultRuntimeDir $AD/run
Mutex file:$AD/run default
${A_USER:+User $A_USER}
${A_GROUP:+Group $A_GROUP}
ErrorLog $AD/logs/error.log
LogLevel info
LoadModule mpm_event_module $MODS/mod_mpm_event.so
LoadModule authz_core_module $MODS/mod_authz_core.so
LoadModule headers_module $MODS/mod_headers.so
LoadModule proxy_module $MODS/mod_proxy.so
LoadModule proxy_http_module $MODS/mod_proxy_http.so
LoadModule rewrite_module $MODS/mod_rewrite.so
LoadModule socache_shmcb_module $MODS/mod_socache_shmcb.so
LoadModule ssl_module $MODS/mod_ssl.so
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MaxRequestWorkers 16
MinSpareThreads 1
MaxSpareThreads 16
# As Debian's apache2.conf: no .htaccess, nothing of the file system served.
<Directory />
    AllowOverride None
    Require all denied
</Directory>
LogFormat "%h \"%r\" %>s %b" common
CustomLog $AD/logs/access.log common
Include $AD/site.conf
EOF
check "apache2 -t accepts the shipped site" sh -c "'$APACHE' -t -f '$AD/apache2.conf' >'$AD/t.log' 2>&1" ||
	sed 's/^/# /' "$AD/t.log"

"$APACHE" -f "$AD/apache2.conf" -DFOREGROUND >>"$AD/logs/stderr" 2>&1 &
PIDS+=($!)
APACHE_PID=$!
wait_until 10 curl -sS --max-time 1 --cacert "$T/ca.pem" -o /dev/null "$A_URL/" || {
	notok "apache2 did not start"
	sed 's/^/# /' "$AD/logs/stderr" "$AD/logs/error.log"
	exit 1
}
ok "apache2 serves https on 127.0.0.1:$A_PORT with the test CA's certificate"

start_daemon

# ---- an idle connection to the daemon is not used after 10 s ----

# upstream_ports: the local ports of the established connections to the
# daemon's port (Apache's ends), sorted, on one line.
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
check "the shipped site does not use a connection to the daemon idle for 10 s (ttl=10 < 15)" \
	grep -q 'ProxyPass "http://127.0.0.1:8787/callbacks/" ttl=10 ' "$TOP/conf/apache-blinkhook.conf"
# First of all, while no connection to the daemon is open: the first
# callback opens one.
idle_post() {
	curl -sS --max-time 5 --cacert "$T/ca.pem" -o /dev/null -X POST -H 'Content-Type: application/json' \
		--data-binary '{"sharedSecret":"wrong"}' "$A_URL/blinkhook/callbacks/leds-blink/$1"
}
check "no connection to the daemon is open yet" test -z "$(upstream_ports)"
idle_post a-idle-1
first=$(upstream_ports)
idle_post a-idle-2
second=$(upstream_ports)
check "apache2 keeps its connection to the daemon and uses it again for the next callback ($first, then $second)" \
	test -n "$first" -a "$first" = "$second"
sleep 11
idle_post a-idle-3
third=$(upstream_ports)
check "11 s later the next callback goes over a new connection, and apache2 has closed the old one, before the daemon's 15 s (before: $first; now: $third)" \
	sh -c "test -n '$third' && for p in $first; do case ' $third ' in *\" \$p \"*) exit 1;; esac; done"

# ---- blinks complete with their callbacks through apache2 over https ----

A=$(ctl blink Q2AA-BBBB-CCCC --duration 1)
B=$(ctl blink Q2AA-BBBB-DDDD --duration 1)
check "a blink completes with its callback through apache2" wait_state 20 "$A" complete
check "a second blink completes too" wait_state 20 "$B" complete
cb_url=$(sim_get jobs | json "[x['callback_url'] for x in j if x['callback_url'] and x['callback_url'].endswith('/$A')][0]")
check "Meraki was given the callback URL under public_url's path ($cb_url)" \
	test "$cb_url" = "$A_URL/blinkhook/callbacks/leds-blink/$A"
check "the simulator's callbacks were answered 200 over https through apache2" sh -c "
	curl -sS --max-time 5 '$SIM_URL/_sim/callbacks' | python3 -c '
import json, sys
c = [x for x in json.load(sys.stdin) if x[\"url\"].startswith(\"$A_URL/blinkhook/callbacks/\")]
ok = [x for x in c if x[\"http_status\"] == 200]
sys.exit(0 if len(ok) >= 2 and all(x[\"url\"].startswith(\"https://\") for x in c) else 1)'"
check "apache2's access log shows POST /blinkhook/callbacks/leds-blink/<id> answered 200" \
	wait_until 5 sh -c "grep -q '\"POST /blinkhook/callbacks/leds-blink/$A HTTP/1.1\" 200 ' '$AD/logs/access.log'"
check "the daemon logged the callbacks as coming from the simulator's address" \
	grep -q "job $A: complete (callback from 127.0.0.1)" "$T/daemon.log"

# ---- a callback with the right secret from another address ----

body() { # body SECRET STATUS LEDSBLINKID
	printf '{"callbackId":"9","organization":{"id":"1","name":"o"},"network":{"id":"N_1","name":"n"},"sentAt":"2026-01-01T00:00:00Z","sharedSecret":"%s","message":{"ledsBlinkId":"%s","url":"/x","status":"%s","request":{"serial":"Q2AA-BBBB-EEEE","duration":1},"error":null}}' "$1" "$3" "$2"
}
sim_fault '{"kind":"lost_callback","count":1}'
C=$(ctl blink Q2AA-BBBB-EEEE --duration 1)
wait_state 10 "$C" submitted || notok "job $C was not submitted"
code=$(curl -sS --max-time 5 --cacert "$T/ca.pem" -o /dev/null -w '%{http_code}' --interface 127.0.0.5 -X POST \
	-H 'Content-Type: application/json' -H 'X-Forwarded-For: 203.0.113.7' -H 'Forwarded: for=203.0.113.8' \
	--data-binary "$(body "$(secret_of "$C")" complete "$(ctl status "$C" --json | json 'j["leds_blink_id"]')")" \
	"$A_URL/blinkhook/callbacks/leds-blink/$C")
check "a callback with the right secret from 127.0.0.5 through apache2 is accepted ($code)" test "$code" = 200
check "... and completes its job" wait_state 5 "$C" complete
check "... logged with the client 127.0.0.5, not the forged X-Forwarded-For or Forwarded" \
	grep -q "job $C: complete (callback from 127.0.0.5)" "$T/daemon.log"

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
via_proxy() { local id=$1 src=$2; shift 2; post "$A_URL/blinkhook/callbacks/leds-blink/$id" --interface "$src" "$@"; }
direct() { local id=$1 src=$2; shift 2; post "$D_URL/callbacks/leds-blink/$id" --interface "$src" "$@"; }

code=$(via_proxy a-plain 127.0.0.5)
from=$(logged_from a-plain)
check "through apache2 from 127.0.0.5: answered by the daemon ($code), which logs the client 127.0.0.5 ($from)" \
	test "$code" = 401 -a "$from" = 127.0.0.5
code=$(via_proxy a-xff 127.0.0.5 -H 'X-Forwarded-For: 203.0.113.7')
from=$(logged_from a-xff)
check "through apache2 with the client's own X-Forwarded-For 203.0.113.7: the client is 127.0.0.5 ($from)" \
	test "$code" = 401 -a "$from" = 127.0.0.5
code=$(via_proxy a-xff-trusted 127.0.0.5 -H 'X-Forwarded-For: 127.0.0.1')
from=$(logged_from a-xff-trusted)
check "through apache2 claiming to be the trusted 127.0.0.1: the client is 127.0.0.5 ($from)" \
	test "$code" = 401 -a "$from" = 127.0.0.5
code=$(via_proxy a-fwd 127.0.0.5 -H 'Forwarded: for=203.0.113.7')
from=$(logged_from a-fwd)
check "through apache2 with the client's own Forwarded (removed by Apache): the client is 127.0.0.5 ($from)" \
	test "$code" = 401 -a "$from" = 127.0.0.5

check "no callback was logged as coming from 203.0.113.7" sh -c "! grep -q 'from 203\.0\.113\.7' '$T/daemon.log'"

# ---- only the callbacks are reachable through the proxy ----

get() { curl -sS --max-time 5 --cacert "$T/ca.pem" -o "$T/got" -w '%{http_code}' "$@"; }
for p in /blinkhook/metrics /blinkhook/healthz /metrics /healthz /blinkhook/ /blinkhook /callbacks/leds-blink/x; do
	code=$(get "$A_URL$p")
	check "GET $p through apache2: not served ($code)" sh -c "
		test '$code' = 404 -o '$code' = 403 && ! grep -q blinkhook_ '$T/got'"
done
for p in /blinkhook/callbacks/../metrics /blinkhook/callbacks/%2e%2e/metrics /blinkhook/callbacks/..%2fmetrics \
	/blinkhook/callbacks/../healthz /blinkhook/callbacks/./../metrics; do
	code=$(get --path-as-is "$A_URL$p")
	check "GET $p through apache2: not the daemon's metrics or health ($code)" sh -c "
		test '$code' != 200 && ! grep -q blinkhook_ '$T/got'"
done
code=$(get "$D_URL/metrics")
check "GET /metrics directly: 200 ($code)" sh -c "test '$code' = 200 && grep -q blinkhook_ '$T/got'"
code=$(get "$A_URL/blinkhook/callbacks/leds-blink/$A")
check "GET on a callback URL through apache2: the daemon's 405 ($code)" test "$code" = 405

# ---- only the callbacks are reachable through the proxy ----

get() { curl -sS --max-time 5 --cacert "$T/ca.pem" -o "$T/got" -w '%{http_code}' "$@"; }
for p in /blinkhook/metrics /blinkhook/healthz /metrics /healthz /blinkhook/ /blinkhook /callbacks/leds-blink/x; do
	code=$(get "$A_URL$p")
	check "GET $p through apache2: not served ($code)" sh -c "
		test '$code' = 404 -o '$code' = 403 && ! grep -q blinkhook_ '$T/got'"
done
for p in /blinkhook/callbacks/../metrics /blinkhook/callbacks/%2e%2e/metrics /blinkhook/callbacks/..%2fmetrics \
	/blinkhook/callbacks/../healthz /blinkhook/callbacks/./../metrics; do
	code=$(get --path-as-is "$A_URL$p")
	check "GET $p through apache2: not the daemon's metrics or health ($code)" sh -c "
		test '$code' != 200 && ! grep -q blinkhook_ '$T/got'"
done
code=$(get "$D_URL/metrics")
check "GET /metrics directly: 200 ($code)" sh -c "test '$code' = 200 && grep -q blinkhook_ '$T/got'"
code=$(get "$A_URL/blinkhook/callbacks/leds-blink/$A")
check "GET on a callback URL through apache2: the daemon's 405 ($code)" test "$code" = 405

# ---- the body cap matches max_body (64KiB) ----

big() { # big BYTES: a POST of that many bytes through apache2; prints the HTTP status.
	head -c "$1" /dev/zero | tr '\0' 'a' >"$T/big"
	# Expect: the client waits for the proxy's word before it sends the
	# body, so that a refusal is read, not cut off by the closing socket.
	curl -sS --max-time 5 --cacert "$T/ca.pem" -o "$T/got" -w '%{http_code}' -X POST -H 'Expect: 100-continue' \
		-H 'Content-Type: application/json' --data-binary "@$T/big" "$A_URL/blinkhook/callbacks/leds-blink/$A"
}
code=$(big 65536)
check "a 64KiB body through apache2 reaches the daemon, which finds it is not JSON ($code)" \
	sh -c "test '$code' = 400 && grep -q '\"error\":\"bad request\"' '$T/got'"
code=$(big 65537)
check "a body of 64KiB + 1 byte is refused with 413 ($code)" test "$code" = 413
check "... by apache2 itself (its own page, not the daemon's JSON)" \
	sh -c "grep -q '<title>413 ' '$T/got' && ! grep -q '\"error\"' '$T/got'"
check "the job is still complete" state_is "$A" complete

# ---- apache2 stops cleanly ----
kill -TERM "$APACHE_PID" 2>/dev/null
check "apache2 stopped (its pid file is gone)" wait_until 10 test ! -e "$AD/run/apache2.pid"
wait "$APACHE_PID" 2>/dev/null
check "apache2 logged no emergency, alert or critical error" \
	sh -c "! grep -E '\\[[a-z_]*:(emerg|alert|crit)\\]' '$AD/logs/error.log' '$AD/logs/stderr'"
