#!/usr/bin/env python3
"""A PostgreSQL server too old for the store, for the integration tests.

old-postgres.py PORT VERSION

Listens on 127.0.0.1:PORT and, to each client, declines SSL and GSS
encryption, accepts the startup without a password and reports
server_version VERSION (e.g. 12.0); any query after that is answered with
an error.  Counts nothing; stops after two minutes.
"""
import socket
import struct
import sys
import threading
import time


def msg(kind, payload=b""):
    return kind + struct.pack("!I", len(payload) + 4) + payload


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def serve(conn, version):
    try:
        while True:
            (length,) = struct.unpack("!I", recv_exact(conn, 4))
            body = recv_exact(conn, length - 4)
            (code,) = struct.unpack("!I", body[:4])
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                conn.sendall(b"N")
                continue
            break
        status = b"".join(
            k + b"\0" + v + b"\0"
            for k, v in ((b"server_version", version), (b"server_encoding", b"UTF8"),
                         (b"client_encoding", b"UTF8"), (b"integer_datetimes", b"on"),
                         (b"standard_conforming_strings", b"on")))
        out = msg(b"R", struct.pack("!I", 0))
        for k, v in zip(status.split(b"\0")[0::2], status.split(b"\0")[1::2]):
            if k:
                out += msg(b"S", k + b"\0" + v + b"\0")
        out += msg(b"K", struct.pack("!II", 4242, 4242)) + msg(b"Z", b"I")
        conn.sendall(out)
        while True:
            kind = recv_exact(conn, 1)
            (length,) = struct.unpack("!I", recv_exact(conn, 4))
            recv_exact(conn, length - 4)
            if kind == b"X":
                break
            conn.sendall(msg(b"E", b"SERROR\0C0A000\0Mnot supported here\0\0") + msg(b"Z", b"I"))
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def main():
    port, version = int(sys.argv[1]), sys.argv[2].encode()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    srv.settimeout(1)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(conn, version), daemon=True).start()


if __name__ == "__main__":
    main()
