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

``--udp`` runs the sessions over real UDP on 127.0.0.1 instead, from several
client processes (``--clients``, asyncio and trio alternating) to one server
node (``--server``), with the programs of ``_scale_peers.py``: every client
opens its share of the sessions at once (64 handshakes in flight each), the
sessions sit idle (``--idle`` seconds: keep-alives only), then each echoes 100
bytes on a new stream. It prints the time to establish them all, the server's
resident memory per session (everything: the engine, the adapter's objects and
the server's one handler task per session, as an application would have it),
how many were still open after the idle time and how many echoes came back.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tracemalloc

from _processes import run_in_build
from _scale_peers import run_scale

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
    parser.add_argument("--udp", action="store_true",
                        help="over real UDP from client processes, not in the simulator")
    parser.add_argument("--clients", type=int, default=4, help="--udp: client processes (4)")
    parser.add_argument("--server", choices=("asyncio", "trio"), default="asyncio",
                        help="--udp: the server node's adapter")
    parser.add_argument("--idle", type=float, default=15.0,
                        help="--udp: seconds the sessions sit idle before the echo (15)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        json.dump(measure(args.sessions), sys.stdout)
        return 0
    if args.udp:
        return _udp(args)
    builds = {"both": (False, True), "compiled": (False,), "pure": (True,)}[args.build]
    print(f"session scale: {args.sessions:,} idle sessions on one node, simulator, "
          f"memory per session end (target {TARGET:,} B)")
    print(f"{'build':<10}{'bytes/session end':>19}{'target':>8}")
    for pure in builds:
        r = _child(args.sessions, pure)
        print(f"{'pure' if pure else 'compiled':<10}{r['bytes_per_end']:>19,.0f}"
              f"{'met' if r['bytes_per_end'] <= TARGET else 'MISSED':>8}")
    return 0


def _udp(args: argparse.Namespace) -> int:
    backends = [("asyncio", "trio")[i % 2] for i in range(args.clients)]
    per_client = -(-args.sessions // args.clients)
    r = run_scale(backends, per_client, server_backend=args.server, idle=args.idle)
    total = r["sessions"]
    print(f"session scale over UDP: {total:,} sessions to one {args.server} node from "
          f"{args.clients} client processes ({', '.join(backends)}), 127.0.0.1")
    print(f"  established        {r['connected']:,} in {r['connect_seconds']:.1f} s "
          f"({r['handshakes_per_second']:,.0f} handshakes/s; the server sent "
          f"{r['cookie_replies']:,} cookie replies under load)")
    print(f"  server memory      {r['rss_kib_sessions'] / 1024:,.1f} MiB resident with them, "
          f"{r['rss_kib_idle'] / 1024:,.1f} MiB before: "
          f"{r['rss_bytes_per_session']:,.0f} B per session (engine, adapter and a handler "
          f"task each)")
    print(f"  after {args.idle:g} s idle    {r['alive_after_idle']:,} open; "
          f"{r['echoed']:,} echoed 100 bytes on a new stream in {r['echo_seconds']:.1f} s")
    ok = r["connected"] == r["alive_after_idle"] == r["echoed"] == total
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
