#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""notify-listener — stands in for systemd's end of NOTIFY_SOCKET.

Binds a unix datagram socket at SOCKET_PATH and appends every assignment of
every sd_notify() message it receives to LOG_FILE, one line each:

    <CLOCK_MONOTONIC seconds, 6 decimals> <sender pid or -> <ASSIGNMENT>

e.g. "12345.678901 4242 WATCHDOG=1".  A message carrying several assignments
("READY=1\\nSTATUS=...") gives one line per assignment, all with the same
time.  The log is flushed after each message, so a test can poll it.

The socket path exists once the listener is ready.  SIGTERM or SIGINT ends it
(and removes the socket).  Python 3 standard library only.

usage: notify-listener.py SOCKET_PATH LOG_FILE
"""

import os
import signal
import socket
import struct
import sys
import time


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__.split("usage: ", 1)[1])
        return 2
    path, log_path = sys.argv[1], sys.argv[2]

    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    # Bind under a temporary name and rename: the path appears ready or not at all.
    tmp = path + ".tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    sock.bind(tmp)
    # SO_PASSCRED: the kernel attaches the sender's pid, as systemd asks for.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(0.2)
    os.rename(tmp, path)

    ucred_size = struct.calcsize("3i")
    with open(log_path, "a", encoding="utf-8") as log:
        while not stop:
            try:
                data, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(ucred_size))
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            now = time.monotonic()
            pid = "-"
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(cdata) >= ucred_size:
                    pid = str(struct.unpack("3i", cdata[:ucred_size])[0])
            text = data.decode("utf-8", "replace")
            for line in text.split("\n"):
                if line:
                    log.write(f"{now:.6f} {pid} {line}\n")
            log.flush()
    sock.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
