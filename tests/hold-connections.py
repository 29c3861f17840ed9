#!/usr/bin/env python3
"""Holds TCP connections open to a local port, for the integration tests.

hold-connections.py PORT MODE OUT SRC*N...

Opens N connections from each source address SRC to 127.0.0.1:PORT and keeps
them until killed (at most two minutes). MODE is what each one sends:
idle (nothing), half (a request cut short in its body), headers (a request
line and one header, no end), trickle (one byte every half second).
Writes OUT.ready once every connection was tried; on SIGUSR1 writes
"OPENED ALIVE" to OUT: how many connects succeeded and how many the peer
still keeps open.
"""
import os
import resource
import signal
import socket
import sys
import time

port, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for spec in sys.argv[4:]:
    src, n = spec.split("*")
    for _ in range(int(n)):
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
            if mode == "half":
                s.sendall(b"POST /callbacks/leds-blink/x HTTP/1.1\r\nHost: a\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"shared")
            elif mode == "headers":
                s.sendall(b"POST /callbacks/leds-blink/x HTTP/1.1\r\nHost: a\r\n")
            socks.append(s)
        except OSError:
            s.close()


def alive():
    k = 0
    for s in socks:
        try:
            s.setblocking(False)
            if s.recv(1, socket.MSG_PEEK) != b"":
                k += 1
        except BlockingIOError:
            k += 1
        except OSError:
            pass
    return k


def report(*_):
    with open(out + ".tmp", "w") as f:
        f.write("%d %d\n" % (len(socks), alive()))
    os.rename(out + ".tmp", out)


signal.signal(signal.SIGUSR1, report)
open(out + ".ready", "w").close()
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    if mode == "trickle":
        for s in socks:
            try:
                s.send(b"X")
            except OSError:
                pass
    time.sleep(0.5)
