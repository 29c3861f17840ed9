#!/usr/bin/env bash
# Behind HAProxy: a real haproxy runs the shipped conf/haproxy.cfg (its
# certificate, ports and the daemon's address replaced by the test's),
# terminates TLS and passes the callbacks under /blinkhook/ to the daemon.
# Checked through it: the simulator's callbacks complete their jobs; a
# callback with the right secret from another address is logged with that
# address (from HAProxy's X-Forwarded-For), a client's own X-Forwarded-For
# or Forwarded is not believed; /metrics and /healthz are not reachable; a
# body over max_body gets HAProxy's own 413; an idle connection to the
# daemon is closed before the daemon's 15 s idle timeout.  Also the daemon's
# reading of RFC 7239 Forwarded from a trusted peer, sent directly.
#
# HAProxy runs in the foreground on its own config, ports and files; a
# system haproxy service (Debian starts one on install) is left alone.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../proxylib.sh"

proxy_need HAPROXY haproxy
proxy_need_openssl

# ---- a CA and a server certificate for 127.0.0.1 and localhost ----

proxy_certs
# HAProxy reads the certificate and its key from one file.
cat "$T/server.pem" "$T/server.key" >"$T/haproxy.pem" || exit 1

# ---- haproxy with the shipped configuration ----

proxy_setup haproxy
H_PORT=$PX_PORT
H_URL=$PX_URL

# The shipped file with the test's certificate and port for 443, the
# daemon's test port for the documented 127.0.0.1:8787, its log to stderr
# and no user to change to (the test runs it as whoever runs the test).
CFG=$T/haproxy.cfg
sed -e "s|^\( *\)bind :443 ssl crt /etc/haproxy/www.example.net.pem|\1bind 127.0.0.1:$H_PORT ssl crt $T/haproxy.pem|" \
	-e "s|127\.0\.0\.1:8787|127.0.0.1:$D_PORT|g" \
	-e "s|^\( *\)log /dev/log local0|\1log stderr format raw local0 info|" \
	-e "/^ *user haproxy/d" -e "/^ *group haproxy/d" \
	"$TOP/conf/haproxy.cfg" >"$CFG"
check "the test's copy of conf/haproxy.cfg has its certificate, port and daemon address" sh -c "
	grep -q '^ *bind :443 ssl crt /etc/haproxy/www.example.net.pem alpn http/1.1\$' '$TOP/conf/haproxy.cfg' &&
	grep -q '^ *server blinkhookd 127.0.0.1:8787\$' '$TOP/conf/haproxy.cfg' &&
	grep -q '^ *bind 127.0.0.1:$H_PORT ssl crt $T/haproxy.pem' '$CFG' &&
	grep -q '^ *server blinkhookd 127.0.0.1:$D_PORT\$' '$CFG' && ! grep -q 8787 '$CFG'"
check "haproxy -c accepts the shipped configuration" sh -c "'$HAPROXY' -c -q -f '$CFG' >'$T/haproxy-c.log' 2>&1" ||
	sed 's/^/# /' "$T/haproxy-c.log"

"$HAPROXY" -f "$CFG" -db >>"$T/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=$!
proxy_wait_up "$T/haproxy.log"

start_daemon

# ---- blinks complete with their callbacks through haproxy over https ----

proxy_blinks
check "haproxy's log shows POST /blinkhook/callbacks/leds-blink/<id> answered 200 by the blinkhook backend" \
	wait_until 5 sh -c "grep -q 'blinkhook/blinkhookd .* 200 .*\"POST /blinkhook/callbacks/leds-blink/$A HTTP/1.1\"' '$T/haproxy.log'"
check "the daemon logged the callbacks as coming from the simulator's address" \
	grep -q "job $A: complete (callback from 127.0.0.1)" "$T/daemon.log"

# ---- a callback with the right secret from another address ----

proxy_right_secret

# ---- the client address ----

proxy_forged_xff h
proxy_forged_forwarded h haproxy

# Forwarded as the daemon reads it from a trusted peer, sent directly.
code=$(direct d-fwd 127.0.0.1 -H 'Forwarded: for="[2001:db8::7]:4711";proto=https')
from=$(logged_from d-fwd)
check "directly from the trusted 127.0.0.1 with Forwarded for=\"[2001:db8::7]:4711\": believed ($from)" \
	test "$code" = 401 -a "$from" = 2001:db8::7
code=$(direct d-fwd-hops 127.0.0.1 -H 'Forwarded: for=203.0.113.7' -H 'Forwarded: for=198.51.100.4, For=127.0.0.1')
from=$(logged_from d-fwd-hops)
check "two Forwarded lines from a trusted peer walk as one list, trusted hops skipped ($from)" test "$from" = 198.51.100.4
code=$(direct d-fwd-hidden 127.0.0.1 -H 'Forwarded: for=198.51.100.4, for=_hidden')
from=$(logged_from d-fwd-hidden)
check "an obfuscated hop stops the walk and is logged as it was written ($from)" test "$from" = _hidden
code=$(direct d-fwd-bad 127.0.0.1 -H 'Forwarded: for=198.51.100.4, for=198.51.100.5:80')
from=$(logged_from d-fwd-bad)
check "a malformed Forwarded element (an unquoted port) ends the walk: the client is the peer ($from)" \
	test "$from" = 127.0.0.1
code=$(direct d-both-agree 127.0.0.1 -H 'X-Forwarded-For: 198.51.100.4' -H 'Forwarded: for="198.51.100.4:1234"')
from=$(logged_from d-both-agree)
check "X-Forwarded-For and Forwarded naming the same client: that client ($from)" test "$from" = 198.51.100.4
code=$(direct d-both-differ 127.0.0.1 -H 'X-Forwarded-For: 198.51.100.4' -H 'Forwarded: for=203.0.113.7')
from=$(logged_from d-both-differ)
check "X-Forwarded-For and Forwarded naming different clients: neither is believed, the client is the peer ($from)" \
	test "$from" = 127.0.0.1
code=$(direct d-fwd-untrusted 127.0.0.9 -H 'Forwarded: for=203.0.113.7')
from=$(logged_from d-fwd-untrusted)
check "directly from the untrusted 127.0.0.9 with Forwarded: ignored ($from)" test "$code" = 401 -a "$from" = 127.0.0.9
check "no callback was logged as coming from 203.0.113.7" sh -c "! grep -q 'from 203\.0\.113\.7' '$T/daemon.log'"

# ---- only the callbacks are reachable through the proxy ----

proxy_not_reachable "/blinkhook/metrics /blinkhook/healthz /metrics /healthz /blinkhook/ /blinkhook /callbacks/leds-blink/x" \
	"/blinkhook/callbacks/../metrics /blinkhook/callbacks/%2e%2e/metrics /blinkhook/callbacks/..%2fmetrics
	 /blinkhook/callbacks/../healthz /blinkhook/callbacks/./../metrics"

# ---- the body cap matches max_body (64KiB) ----

# Expect: the client waits for the proxy's word before it sends the
# body, so that a refusal is read, not cut off by the closing socket.
proxy_body_cap -H 'Expect: 100-continue'
check "... by haproxy itself (its own page, not the daemon's JSON)" \
	sh -c "grep -q '<h1>413 Payload Too Large</h1>' '$T/got' && ! grep -q '\"error\"' '$T/got'"
code=$(curl -sS --max-time 5 --cacert "$T/ca.pem" -o "$T/got" -w '%{http_code}' -X POST -H 'Expect: 100-continue' \
	-H 'Transfer-Encoding: chunked' -H 'Content-Type: application/json' --data-binary "@$T/big" \
	"$H_URL/blinkhook/callbacks/leds-blink/$A")
check "a chunked body of 64KiB + 1 byte passes haproxy's cap and meets the daemon's own: 413 ($code)" \
	sh -c "test '$code' = 413 && grep -q '\"error\"' '$T/got'"
check "the job is still complete" state_is "$A" complete

# ---- idle connections to the daemon end before its 15 s idle timeout ----

# idle_upstream URL PATH: a client that sends one callback over TLS and keeps
# its connection; prints how many connections to the daemon's port were
# established right after the answer and how many seconds later the last
# of them closed (at most 17 s: the daemon closes them at 15 s).
idle_upstream() {
	python3 - "$1" "$2" "$D_PORT" "$T/ca.pem" <<-'PYEOF'
	import socket, ssl, sys, time
	url, path, port, ca = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
	host, hport = url.split("//")[1].split(":")
	def conns():
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
	    return n
	ctx = ssl.create_default_context(cafile=ca)
	s = ctx.wrap_socket(socket.create_connection((host, int(hport)), timeout=5), server_hostname=host)
	body = b'{"sharedSecret":"wrong"}'
	s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode() +
	          b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
	answer = b""
	while b"\r\n\r\n" not in answer:
	    answer += s.recv(4096)
	t0 = time.time()
	first = conns()
	while conns() > 0 and time.time() - t0 < 17:
	    time.sleep(0.1)
	print(first, "%.1f" % (time.time() - t0), answer.split(b" ")[1].decode())
	s.close()
	PYEOF
}
check "the shipped configuration closes an idle connection to the daemon with its client's (http-reuse never, timeout http-keep-alive 10s)" \
	sh -c "grep -q '^ *http-reuse never\$' '$TOP/conf/haproxy.cfg' &&
		grep -q '^ *timeout http-keep-alive 10s\$' '$TOP/conf/haproxy.cfg'"
read -r first idle code <<<"$(idle_upstream "$H_URL" /blinkhook/callbacks/leds-blink/h-idle)"
check "a client keeping its connection after a callback ($code): haproxy keeps one to the daemon too ($first)" \
	test "$code" = 401 -a "${first:-0}" -ge 1
check "haproxy closed that idle connection to the daemon after ${idle}s, before the daemon's 15 s" \
	python3 -c "import sys; sys.exit(0 if 0 < float(sys.argv[1]) < 14 else 1)" "${idle:-99}"

# ---- haproxy stops cleanly ----
kill -USR1 "$HAPROXY_PID" 2>/dev/null # soft stop
check "haproxy stopped on a soft stop" wait_until 10 sh -c "! kill -0 $HAPROXY_PID"
wait "$HAPROXY_PID" 2>/dev/null
check "haproxy logged no alert or emergency" sh -c "! grep -E '\\[(ALERT|EMERG)\\]' '$T/haproxy.log'"
