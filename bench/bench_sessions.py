"""Session scale benchmark: memory per idle session with many sessions on one node.

Usage::

    python bench/bench_sessions.py                 # 10,000 sessions, both builds
    python bench/bench_sessions.py --sessions 1000 --build compiled

In the simulator (``stt_proto.testing``, simulated time, no sockets), ``--sessions``
client nodes each open one session to one server node, whose limits
(``max_sessions``, ``max_half_open``, ``max_sessions_per_address``) are raised to
fit them. Once every handshake has finished, the sessions sit idle: no stream,
no data. The figure is the memory the Python allocator holds for them
(``tracemalloc``: every block allocated from just before the first connect to
after the handshakes, less what was freed), divided by the number of session
*ends* (two per session: the client's and the server's). It counts everything a
session keeps: keys, replay window, recovery, congestion controller, flow
control, acknowledgement state, stream tables and the node's tables of it, and
a little of the simulator's own bookkeeping per node (its routes and timers),
not the interpreter, imports or the client nodes themselves (made before the
measurement starts). Issue 18's target is 8 KiB per idle session end.

Each build runs in a subprocess of its own (the build is chosen at import;
``STT_NO_EXTENSIONS=1`` selects the pure one).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tracemalloc

from _processes import run_in_build

TARGET = 8 * 1024


def measure(sessions: int) -> dict:
    import stt_proto
    from stt_proto.testing import Network

    net = Network(seed=1)
    room = sessions + 16
    server = net.add_node("server", max_sessions=room, max_half_open=room,
                          max_sessions_per_address=room)
    clients = [net.add_node(f"client{i}") for i in range(sessions)]
    for client in clients:
        net.connect_nodes(client, server)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for client in clients:
        client.connect(server)
    net.run(until=10.0)  # simulated seconds: every handshake ends within the first
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    established = server.endpoint.statistics()["handshakes_completed"]
    if established != sessions:
        raise SystemExit(f"only {established} of {sessions} sessions were established")
    return {"compiled": stt_proto.COMPILED, "sessions": sessions,
            "bytes_per_end": held / (2 * sessions)}


def _child(sessions: int, pure: bool) -> dict:
    return run_in_build([sys.executable, os.path.abspath(__file__), "--sessions",
                         str(sessions), "--child"], pure=pure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000,
                        help="sessions on the server node (10,000)")
    parser.add_argument("--build", choices=("both", "compiled", "pure"), default="both")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        json.dump(measure(args.sessions), sys.stdout)
        return 0
    builds = {"both": (False, True), "compiled": (False,), "pure": (True,)}[args.build]
    print(f"session scale: {args.sessions:,} idle sessions on one node, simulator, "
          f"memory per session end (target {TARGET:,} B)")
    print(f"{'build':<10}{'bytes/session end':>19}{'target':>8}")
    for pure in builds:
        r = _child(args.sessions, pure)
        print(f"{'pure' if pure else 'compiled':<10}{r['bytes_per_end']:>19,.0f}"
              f"{'met' if r['bytes_per_end'] <= TARGET else 'MISSED':>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
