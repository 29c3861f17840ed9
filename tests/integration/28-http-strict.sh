#!/usr/bin/env bash
# Reached directly (no proxy in front), the daemon refuses the request
# smuggling shapes libmicrohttpd 0.9.75 lets through with 400 and closes the
# connection, so nothing sent after the first request's headers is read as a
# second request; a chunked body is cut off at max_body with 413 before much
# more is read. A unix socket's peers are believed for X-Forwarded-For only
# when trusted_proxies says "unix".
. "$(dirname "$0")/../lib.sh"

start_sim --min-interval 0 --blink-time 0.2
write_config
start_daemon

# raw.py PORT: sends each shape on a connection of its own, reads until the
# daemon closes (or 3 s pass), and prints one JSON line a shape: the status
# lines it got and whether the connection was closed.
cat >"$T/raw.py" <<'PY'
import json, re, socket, sys, time
port = int(sys.argv[1])
# A second, complete request hidden in the first one's bytes: if the daemon
# read it, a second answer (200 from /healthz) would follow.
SECOND = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
CB = b"POST /callbacks/leds-blink/smuggle HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
BODY = b'{"sharedSecret":"x"}'
shapes = {
    "two different Content-Length (0 first)": CB + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SECOND) + SECOND,
    "two different Content-Length (longer first)": CB + b"Content-Length: %d\r\nContent-Length: 0\r\n\r\n" % len(SECOND) + SECOND,
    "Content-Length with Transfer-Encoding": CB + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SECOND,
    "Transfer-Encoding with Content-Length": CB + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + SECOND,
    "Transfer-Encoding other than chunked": CB + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + SECOND,
    "two Transfer-Encoding headers": CB + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + SECOND,
    "NUL in a header value": CB + b"X-Note: a\x00b\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY + SECOND,
    "NUL in the Host header": b"GET /healthz HTTP/1.1\r\nHost: a\x00.example\r\n\r\n" + SECOND,
    "ESC in a header value": CB + b"X-Note: a\x1b[2Jb\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY + SECOND,
    "DEL in a header value": CB + b"X-Note: a\x7fb\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY + SECOND,
    "CR alone in a header value": CB + b"X-Note: a\rb\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY + SECOND,
    "two Host headers": b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + SECOND,
    "HTTP/1.1 without Host": b"GET /healthz HTTP/1.1\r\n\r\n" + SECOND,
    "a control byte in a header name": CB + b"X-N\x01te: a\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY + SECOND,
    # A length is 1*DIGIT; a list or anything after the digits is not one.
    "Content-Length with a sign": CB + b"Content-Length: +%d\r\n\r\n" % len(BODY) + BODY + SECOND,
    "Content-Length of two numbers": CB + b"Content-Length: 0 %d\r\n\r\n" % len(SECOND) + SECOND,
    "Content-Length with letters after the digits": CB + b"Content-Length: 0abc\r\n\r\n" + SECOND,
    "Content-Length as a list of one length": CB + b"Content-Length: %d, %d\r\n\r\n" % (len(BODY), len(BODY)) + BODY + SECOND,
    "Content-Length as a list of two lengths": CB + b"Content-Length: 0, %d\r\n\r\n" % len(SECOND) + SECOND,
    # obs-fold: libmicrohttpd joins a line that begins with SP or HTAB to
    # the previous header's value.
    "a folded Content-Length": CB + b"Content-Length: 0\r\n %d\r\n\r\n" % len(SECOND) + SECOND,
    "a folded header value": CB + b"X-Note: a\r\n\tb\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY + SECOND,
    # Controls: well-formed, kept alive, so the pipelined second request is
    # answered too; a TAB in a value is allowed.
    "control: a wrong secret, then /healthz": CB + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY + SECOND,
    "control: a TAB in a header value": CB + b"X-Note: a\tb\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY + SECOND,
    "control: one Content-Length twice": CB + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(BODY), len(BODY)) + BODY + SECOND,
}
for name, raw in shapes.items():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(raw)
    s.settimeout(3)
    got, closed = b"", False
    end = time.monotonic() + 3
    try:
        while time.monotonic() < end:
            d = s.recv(65536)
            if not d:
                closed = True
                break
            got += d
            # Both answers of a control are in: no need to wait on.
            if name.startswith("control") and len(re.findall(rb"(?m)^HTTP/1\.1 \d\d\d", got)) >= 2:
                break
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    s.close()
    print(json.dumps({"name": name, "status": [int(x) for x in re.findall(rb"(?m)^HTTP/1\.1 (\d\d\d)", got)],
                      "closed": closed}))
PY
python3 "$T/raw.py" "$D_PORT" >"$T/raw.out"
smuggled=0
while read -r line; do
	name=$(json 'j["name"]' <<<"$line")
	status=$(json '" ".join(map(str, j["status"]))' <<<"$line")
	closed=$(json 'j["closed"]' <<<"$line")
	case "$name" in
	"control: a wrong secret, then /healthz" | "control: a TAB in a header value" | "control: one Content-Length twice")
		check "$name: answered 401, then the next request 200 on the same connection ($status)" \
			test "$status" = "401 200"
		;;
	"Content-Length with a sign" | "Content-Length of two numbers" | "Content-Length with letters after the digits" | \
		"Content-Length as a list of one length" | "Content-Length as a list of two lengths")
		# libmicrohttpd answers these itself (its 400 has its status line
		# twice) before the daemon sees the request: not counted.
		check "$name: 400, closed, nothing read as a second request ($status, closed: $closed)" \
			sh -c 'case "$1" in "400 True" | "400 400 True") exit 0 ;; esac; exit 1' _ "$status $closed"
		;;
	*)
		smuggled=$((smuggled + 1))
		check "$name: 400, closed, nothing read as a second request ($status, closed: $closed)" \
			test "$status $closed" = "400 True"
		;;
	esac
done <"$T/raw.out"
check "all 24 shapes were sent" test "$(wc -l <"$T/raw.out")" = 24
curl -sS "$D_URL/metrics" >"$T/metrics"
check "/metrics counts the $smuggled refused requests" grep -qx "blinkhook_requests_malformed_total $smuggled" "$T/metrics"
check "no smuggled request reached the callback handler: no refused callback for job smuggle but the controls' 3" \
	test "$(grep -c 'callback for job smuggle from' "$T/daemon.log")" = 3

# slow.py PORT PATH: a 64 MiB chunked body, 16 KiB every 20 ms (so that a
# daemon slowed by a busy machine still reads as it comes), until an answer
# comes, sending fails or 10 s pass; prints "STATUS BYTES-SENT SECONDS".
cat >"$T/slow.py" <<'PY'
import re, socket, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" % path.encode())
chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
sent, got, t0 = 0, b"", time.monotonic()
s.setblocking(False)
while sent < 64 * 1024 * 1024 and time.monotonic() - t0 < 10:
    try:
        d = s.recv(4096)
        if not d:
            break
        got += d
        if b"\r\n\r\n" in got:
            break
    except BlockingIOError:
        pass
    except OSError:
        break
    try:
        sent += s.send(chunk)
    except BlockingIOError:
        pass
    except OSError:
        break
    time.sleep(0.02)
s.setblocking(True)
s.settimeout(2)
try:
    while b"\r\n\r\n" not in got:
        d = s.recv(4096)
        if not d:
            break
        got += d
except OSError:
    pass
m = re.match(rb"HTTP/1\.1 (\d\d\d)", got)
print(m.group(1).decode() if m else "none", sent, "%.2f" % (time.monotonic() - t0))
PY
read -r code sent secs < <(python3 "$T/slow.py" "$D_PORT" /callbacks/leds-blink/big)
check "a 64 MiB chunked callback sent slowly: 413 after $sent bytes (${secs}s), before 1 MiB was accepted" \
	test "$code" = 413 -a "$sent" -lt 1048576
read -r code sent secs < <(python3 "$T/slow.py" "$D_PORT" /callbacks/probe)
check "a chunked probe past its 256 bytes: 413 after $sent bytes" test "$code" = 413 -a "$sent" -lt 1048576
big=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -H 'Expect:' \
	--data-binary @<(head -c 70000 /dev/zero | tr '\0' x) "$D_URL/callbacks/leds-blink/big")
check "an announced oversized body is still refused 413 ($big)" test "$big" = 413
check "the daemon still answers /healthz" curl -fsS --max-time 2 -o /dev/null "$D_URL/healthz"
stop_daemon
check "SIGTERM: exit 0" test "$D_STATUS" = 0

# ---- a unix listen socket: X-Forwarded-For only with "unix" trusted ----

SOCK=$T/http.sock
sed -i "s|^listen = .*|listen = unix:$SOCK|" "$T/bh.conf"
ucurl() { curl -sS --max-time 5 --unix-socket "$SOCK" "$@"; }
MERAKI_DASHBOARD_API_KEY=$API_KEY "$BLINKHOOKD" -c "$T/bh.conf" 2>>"$T/daemon.log" &
D_PID=$!
PIDS+=($D_PID)
wait_until 15 ucurl -f -o /dev/null http://localhost/healthz || notok "the daemon on a unix socket did not become ready"
# cb JOB: a callback with a wrong secret and a forged X-Forwarded-For; the
# client address the daemon logged for it.
cb() {
	ucurl -o /dev/null -X POST -H 'Content-Type: application/json' -H 'X-Forwarded-For: 203.0.113.7' \
		--data '{"sharedSecret":"wrong"}' "http://localhost/callbacks/leds-blink/$1"
	wait_until 5 grep -q "callback for job $1 from " "$T/daemon.log"
	sed -n "s/.*callback for job $1 from \([^ ]*\) refused.*/\1/p" "$T/daemon.log" | tail -n1
}
from=$(cb unix-untrusted)
check "on a unix socket with the default trusted_proxies, X-Forwarded-For is ignored (client: $from)" \
	test "$from" = local
sed -i "s|^\[callback\]|[callback]\ntrusted_proxies = 127.0.0.1 ::1 unix|" "$T/bh.conf"
kill -HUP "$D_PID"
wait_until 10 grep -q "reload: configuration from" "$T/daemon.log"
from=$(cb unix-trusted)
check "with \"unix\" in trusted_proxies it is believed (client: $from)" test "$from" = 203.0.113.7
stop_daemon
check "SIGTERM: exit 0 (unix socket)" test "$D_STATUS" = 0
check "no sanitizer report in the daemon's log" sh -c "! grep -q -e 'ERROR: AddressSanitizer' -e 'runtime error:' '$T/daemon.log'"
