#!/usr/bin/env python3
"""The far end of scripts/bench-nat.sh's ping measurement: N phones behind one NAT address.

Registers N users from one UDP socket (so that, under `--nat always`, every binding's
destination is this socket, as for phones behind one NAT), then answers every OPTIONS ping that
arrives with 200 OK until DURATION seconds have passed, and prints one JSON line: how many it
registered and how many pings it answered.

usage: nat-ping-peer.py PROXY_PORT USERS RATE DURATION
"""
import json
import socket
import sys
import time

port, users, rate, duration = (int(a) for a in sys.argv[1:5])
proxy = ("127.0.0.1", port)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.1", 0))
me = "%s:%d" % s.getsockname()

REGISTER = ("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKnb%d;rport\r\n"
            "Max-Forwards: 70\r\nTo: <sip:u%d@example.com>\r\nFrom: <sip:u%d@example.com>;tag=b\r\n"
            "Call-ID: nb%d\r\nCSeq: 1 REGISTER\r\nContact: <sip:u%d@10.0.0.2:5060>\r\nExpires: 3600\r\n"
            "Content-Length: 0\r\n\r\n")


def answer(msg):
    """200 OK to an OPTIONS: its Via, From, To, Call-ID and CSeq copied."""
    head = msg.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    keep = [l for l in head[1:] if l.split(b":", 1)[0].lower() in (b"via", b"from", b"to", b"call-id", b"cseq")]
    return b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n"


registered = answered = 0
s.setblocking(False)
start = time.monotonic()
sent = 0
while registered < users and time.monotonic() - start < 60:
    due = min(users, int((time.monotonic() - start) * rate) + 1)
    while sent < due:
        s.sendto((REGISTER % (sent, sent, sent, sent, sent)).encode(), proxy)
        sent += 1
    try:
        while True:
            d, _ = s.recvfrom(65535)
            if d.startswith(b"SIP/2.0 200"):
                registered += 1
            elif d.startswith(b"OPTIONS "):
                s.sendto(answer(d), proxy)
                answered += 1
    except BlockingIOError:
        time.sleep(0.0005)
print(json.dumps({"event": "registered", "users": registered, "seconds": time.monotonic() - start}), flush=True)
s.setblocking(True)
s.settimeout(0.5)
end = time.monotonic() + duration
while time.monotonic() < end:
    try:
        d, _ = s.recvfrom(65535)
    except socket.timeout:
        continue
    if d.startswith(b"OPTIONS "):
        s.sendto(answer(d), proxy)
        answered += 1
print(json.dumps({"event": "done", "registered": registered, "answered": answered}), flush=True)
