#!/usr/bin/env python3
"""A HEP collector over TCP for scripts/bench-forward.sh's sipshard-hep-stream: accepts
connections on HOST:PORT and reads and discards what they carry, for at most SECONDS.

usage: hep-tcp-sink.py HOST:PORT SECONDS
"""
import socket
import sys
import threading
import time


def drain(conn):
    with conn:
        while conn.recv(1 << 16):
            pass


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    deadline = time.monotonic() + float(sys.argv[2])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(64)
    srv.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
