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
. "$(dirname "$0")/../proxylib.sh"

APACHE=$(command -v apache2 || { test -x /usr/sbin/apache2 && echo /usr/sbin/apache2; })
MODS=/usr/lib/apache2/modules
if [ -z "$APACHE" ] || [ ! -e "$MODS/mod_proxy_http.so" ]; then
	echo "# SKIP apache2 is not installed (Debian package \"apache2\"; \`make deps\` installs it)"
	exit 0
fi
proxy_need_openssl
if [ "$(id -u)" = 0 ]; then
	# As root Apache must change to a user for its workers.
	A_USER=nobody
	A_GROUP=$(id -gn nobody 2>/dev/null) || { echo "# SKIP no user \"nobody\" for Apache's workers"; exit 0; }
fi

# ---- a CA and a server certificate for 127.0.0.1 and localhost ----

proxy_certs

# ---- apache2 with the shipped site ----

proxy_setup apache2
A_PORT=$PX_PORT
A_URL=$PX_URL

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
proxy_wait_up "$AD/logs/stderr" "$AD/logs/error.log"

start_daemon

# ---- an idle connection to the daemon is not used after 10 s ----

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

proxy_blinks
check "apache2's access log shows POST /blinkhook/callbacks/leds-blink/<id> answered 200" \
	wait_until 5 sh -c "grep -q '\"POST /blinkhook/callbacks/leds-blink/$A HTTP/1.1\" 200 ' '$AD/logs/access.log'"
check "the daemon logged the callbacks as coming from the simulator's address" \
	grep -q "job $A: complete (callback from 127.0.0.1)" "$T/daemon.log"

# ---- a callback with the right secret from another address ----

proxy_right_secret

# ---- the client address ----

proxy_forged_xff a
proxy_forged_forwarded a Apache

check "no callback was logged as coming from 203.0.113.7" sh -c "! grep -q 'from 203\.0\.113\.7' '$T/daemon.log'"

# ---- only the callbacks are reachable through the proxy ----

proxy_not_reachable "/blinkhook/metrics /blinkhook/healthz /metrics /healthz /blinkhook/ /blinkhook /callbacks/leds-blink/x" \
	"/blinkhook/callbacks/../metrics /blinkhook/callbacks/%2e%2e/metrics /blinkhook/callbacks/..%2fmetrics
	 /blinkhook/callbacks/../healthz /blinkhook/callbacks/./../metrics"

# ---- the body cap matches max_body (64KiB) ----

# Expect: the client waits for the proxy's word before it sends the
# body, so that a refusal is read, not cut off by the closing socket.
proxy_body_cap -H 'Expect: 100-continue'
check "... by apache2 itself (its own page, not the daemon's JSON)" \
	sh -c "grep -q '<title>413 ' '$T/got' && ! grep -q '\"error\"' '$T/got'"
check "the job is still complete" state_is "$A" complete

# ---- apache2 stops cleanly ----
kill -TERM "$APACHE_PID" 2>/dev/null
check "apache2 stopped (its pid file is gone)" wait_until 10 test ! -e "$AD/run/apache2.pid"
wait "$APACHE_PID" 2>/dev/null
check "apache2 logged no emergency, alert or critical error" \
	sh -c "! grep -E '\\[[a-z_]*:(emerg|alert|crit)\\]' '$AD/logs/error.log' '$AD/logs/stderr'"
