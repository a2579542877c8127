"""Handshake benchmark: full STT handshakes per second between two in-memory
endpoints on one core (both sides' work counted, no sockets).

Usage::

    python bench/bench_handshake.py [--seconds 3] [--cipher AESGCM]

Each handshake is a complete connect: INITIATION, RESPONSE, and the initiator's
first DATA packet that confirms the keys, until both endpoints report
``SessionEstablished``. Sessions are closed again so the tables stay small.
"""

from __future__ import annotations

import argparse
import time

from stt_proto.config import EndpointConfig
from stt_proto.endpoint import Endpoint
from stt_proto.events import SessionEstablished
from stt_proto.identity import Identity

SEED = b"benchmark network seed, 32 bytes"
A, B = ("127.0.0.1", 1), ("127.0.0.1", 2)


def run(seconds: float, cipher: str) -> tuple[int, float]:
    a = Endpoint(EndpointConfig(identity=Identity.generate(), shared_seed=SEED, cipher=cipher,
                                handshakes_per_second_before_cookies=1e9))
    b = Endpoint(EndpointConfig(identity=Identity.generate(), shared_seed=SEED,
                                handshakes_per_second_before_cookies=1e9))
    peers = {A: a, B: b}
    done = 0
    now = 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        now += 0.001
        sid = a.connect(B, b.node_id, now=now)
        established = 0
        while established < 2:
            moved = False
            for addr, ep in peers.items():
                for data, dst in ep.datagrams_to_send(now):
                    peers[dst].receive_datagram(data, addr, now)
                    moved = True
                while (event := ep.next_event()) is not None:
                    if isinstance(event, SessionEstablished):
                        established += 1
                        if ep is b:
                            b.close(event.session_id, now=now)
            if not moved and established < 2:
                raise RuntimeError("handshake stalled")
        a.close(sid, now=now)
        for ep in peers.values():
            ep.datagrams_to_send(now)
            while ep.next_event() is not None:
                pass
        now += 10.0  # let closed sessions' linger expire
        a.handle_timer(now)
        b.handle_timer(now)
        done += 1
    return done, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--cipher", default="AESGCM", choices=["AESGCM", "ChaChaPoly"])
    args = parser.parse_args()
    done, elapsed = run(args.seconds, args.cipher)
    print(f"full handshakes (both sides, one core, {args.cipher}): "
          f"{done / elapsed:,.0f}/s  ({elapsed / done * 1e6:,.0f} us each, {done} in {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
