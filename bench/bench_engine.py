"""Engine benchmark: bulk stream throughput of two in-memory endpoints on one core.

Usage::

    python bench/bench_engine.py [--mib 64] [--quick] [--batch] [--repeat 3]
    python bench/bench_engine.py --profile [--mib 32] [--datagram 1452]
    python bench/bench_engine.py --round-trips 20000

``--round-trips N`` measures latency work instead of bulk: N request/response
exchanges of 100-byte messages on one stream (the server echoes each, the
client sends the next on the echo), flushed after every datagram; the figure
is the CPU time of both engines per round trip, compiled and pure.

Two real :class:`~stt_proto.endpoint.Endpoint` objects, with encryption, live in
one process and hand each other their datagrams directly: no sockets, no
simulator, no loss, no latency. After the handshake the client sends one stream
of ``--mib`` MiB as 1 MiB messages (``send_message``; on ``SendBufferFullError``
it waits for ``StreamWritable``) and the server compares every message it
receives byte for byte with what was sent. The figure is the engine's *CPU
ceiling*: application payload delivered per second of one core, sender and
receiver work together (one side per core would see up to about twice it).

The loop does what an adapter does, on both sides: after *each* datagram it hands
to ``receive_datagram`` it pulls the events, calls ``datagrams_to_send`` and
re-reads ``get_timer``, so acknowledgements are as frequent as on a real socket.
``--batch`` instead delivers everything queued for a side before flushing it
once, as an adapter reading with ``recvmmsg`` would.

The clock. The engines' ``now`` is the wall clock (``time.perf_counter``) since
the start, so the RTT they measure is the real processing delay and BBR's
bandwidth estimate is the real delivery rate. When neither side has a datagram
to deliver and what is left is a timer in the future (the pacer holding a packet
back, a delayed ACK), the clock *jumps* to that timer instead of waiting for it.
So no time is ever spent idle and the congestion controller cannot hold the
figure below the CPU ceiling, while its per-packet work is still counted in it.
The "paced" column is the share of the engines' time that was such jumps (0 %
means the controller and the pacer never made the engines wait; a real single
core would deliver the CPU figure times ``1 - paced``). The default controller,
BBR, runs as configured; ``--cc unlimited`` swaps in a controller with no window
and no pacing, to check that the real ones are not what limits the figure.

MB/s counts delivered application payload (10**6 bytes per MB) per second of
CPU time of the process (``time.process_time``, so that time the machine gives
to other processes does not count) during the transfer, less the time the
benchmark itself spends comparing messages; packets/s counts the client's
datagrams (the ones carrying the data). Each build
runs in its own subprocess, because the compiled or pure codec is chosen at
import time (``STT_NO_EXTENSIONS=1`` selects the pure one). ``--profile`` runs
one transfer under cProfile in this process and prints the functions with the
most own time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import deque

from _processes import run_in_build

import stt_proto
from stt_proto.config import EndpointConfig
from stt_proto.endpoint import Endpoint
from stt_proto.errors import SendBufferFullError
from stt_proto.events import (
    MessageReceived,
    SessionClosed,
    SessionEstablished,
    StreamEnded,
    StreamWritable,
)
from stt_proto.identity import Identity
from stt_proto.congestion import (
    CONGESTION_CONTROLLERS,
    CongestionController,
    register_congestion_controller,
)

MIB = 1 << 20
SEED = b"benchmark network seed, 32 bytes"
CLIENT, SERVER = ("127.0.0.1", 1), ("127.0.0.1", 2)
#: Distinct 1 MiB messages, sent in turn (a prime count, so a lost, repeated or
#: reordered message cannot line up with an identical one).
DISTINCT_MESSAGES = 7
#: (cipher, max_datagram_size) of the table's rows.
ROWS = [("AESGCM", 1452), ("ChaChaPoly", 1452), ("AESGCM", 16384), ("AESGCM", 65527)]
QUICK_ROWS = [("AESGCM", 1452), ("AESGCM", 65527)]


class _Clock:
    """Wall-clock seconds since the start, plus every jump over an idle wait."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self.skipped = 0.0
        self.jumps = 0

    def now(self) -> float:
        return time.perf_counter() - self._start + self.skipped

    def jump_to(self, at: float) -> float:
        now = self.now()
        if at > now:
            self.skipped += at - now
            self.jumps += 1
            return at
        return now


def _register_unlimited() -> None:
    """Register ``"unlimited"``: a controller with an endless window and no
    pacing (a check, not something to run a network with)."""
    if "unlimited" in CONGESTION_CONTROLLERS:
        return

    @register_congestion_controller
    class Unlimited(CongestionController):
        name = "unlimited"
        __slots__ = ()

        def __init__(self, *, max_datagram_size: int) -> None:
            super().__init__(max_datagram_size=max_datagram_size)
            self.congestion_window = 1 << 62

        def on_packet_sent(self, packet, *, bytes_in_flight, now) -> None:
            pass

        def on_packets_acked(self, packets, *, bytes_in_flight, rtt, now) -> None:
            pass

        def on_packets_lost(self, packets, *, bytes_in_flight, now) -> None:
            pass

        def on_persistent_congestion(self, *, now) -> None:
            pass

        def on_app_limited(self, *, bytes_in_flight, now) -> None:
            pass

        def pacing_rate(self, rtt):
            return None

        @property
        def state(self) -> str:
            return "unlimited"


class _Transfer:
    """One bulk transfer between two fresh endpoints (see the module docstring)."""

    def __init__(self, mib: int, *, cipher: str, max_datagram_size: int,
                 congestion_control: str, batch: bool) -> None:
        if congestion_control == "unlimited":
            _register_unlimited()

        def endpoint(**options) -> Endpoint:
            return Endpoint(EndpointConfig(
                identity=Identity.generate(), shared_seed=SEED,
                max_datagram_size=max_datagram_size,
                congestion_control=congestion_control, **options))

        self.mib = mib
        self.batch = batch
        self.client = endpoint(cipher=cipher)
        self.server = endpoint()
        rnd = random.Random(mib)
        self.messages = [rnd.randbytes(MIB) for _ in range(DISTINCT_MESSAGES)]
        self.clock = _Clock()
        self.timers: dict = {self.client: None, self.server: None}
        self.to_server: deque = deque()
        self.to_client: deque = deque()
        self.session_id: bytes | None = None
        self.stream_id = 0
        self.established = 0
        self.sent = 0
        self.received = 0
        self.blocked = False
        self.ended = False
        self.checking = 0.0  # seconds spent comparing messages (not the engine's)

    # -- the applications ---------------------------------------------------------------

    def _send_more(self, now: float) -> None:
        """The sending application: queue messages until the buffer is full."""
        client, mib = self.client, self.mib
        while self.sent < mib and not self.blocked:
            index = self.sent
            try:
                client.send_message(self.session_id, self.stream_id,
                                    self.messages[index % DISTINCT_MESSAGES],
                                    now=now, end_stream=index == mib - 1)
            except SendBufferFullError:
                self.blocked = True
                return
            self.sent = index + 1

    def _flush(self, ep, out: deque, now: float) -> None:
        """Pull the events of ``ep``, then its datagrams, then its timer, as an
        adapter does after every input."""
        while True:
            while (event := ep.next_event()) is not None:
                self._on_event(ep, event, now)
            datagrams = ep.datagrams_to_send(now)
            if not datagrams:
                break
            out.extend(datagrams)
        self.timers[ep] = ep.get_timer()

    def _on_event(self, ep, event, now: float) -> None:
        kind = type(event)
        if kind is MessageReceived:
            start = time.perf_counter()
            expected = self.messages[self.received % DISTINCT_MESSAGES]
            if event.data != expected:
                raise RuntimeError(f"message {self.received} arrived corrupted")
            self.received += 1
            self.checking += time.perf_counter() - start
        elif kind is StreamWritable:
            self.blocked = False
            self._send_more(now)
        elif kind is StreamEnded:
            self.ended = True
        elif kind is SessionEstablished:
            self.established += 1
            if ep is self.client:
                self.session_id = event.session_id
        elif kind is SessionClosed:
            raise RuntimeError(f"session closed: {event}")

    # -- the network ----------------------------------------------------------------------

    def _deliver(self, ep, queue: deque, reply: deque, source) -> None:
        now = self.clock.now()
        if self.batch:
            while queue:
                ep.receive_datagram(queue.popleft()[0], source, now)
        else:
            ep.receive_datagram(queue.popleft()[0], source, now)
        self._flush(ep, reply, now)

    def _run(self, done) -> None:
        client, server = self.client, self.server
        to_server, to_client = self.to_server, self.to_client
        while not done():
            if to_server or to_client:
                if to_server:
                    self._deliver(server, to_server, to_client, CLIENT)
                if to_client:
                    self._deliver(client, to_client, to_server, SERVER)
                continue
            due = [t for t in self.timers.values() if t is not None]
            if not due:
                raise RuntimeError("transfer stalled: no datagram and no timer")
            now = self.clock.jump_to(min(due))
            for ep, out in ((client, to_server), (server, to_client)):
                at = self.timers[ep]
                if at is not None and at <= now:
                    ep.handle_timer(now)
                    self._flush(ep, out, now)

    def _open(self) -> None:
        """The handshake, then the client's stream (not timed)."""
        client, now = self.client, self.clock.now()
        client.connect(SERVER, self.server.node_id, now=now)
        self._flush(client, self.to_server, now)
        self._run(lambda: self.established == 2)
        self.stream_id = client.open_stream(self.session_id)

    def run(self) -> dict:
        clock, client = self.clock, self.client
        self._open()
        skipped, jumps = clock.skipped, clock.jumps
        start = time.process_time()
        start_virtual = clock.now()
        self._send_more(start_virtual)
        self._flush(client, self.to_server, start_virtual)
        self._run(lambda: self.ended)
        elapsed = time.process_time() - start - self.checking
        virtual = clock.now() - start_virtual
        if self.received != self.mib:
            raise RuntimeError(f"{self.received} of {self.mib} messages arrived")

        stats = client.session_statistics(self.session_id)
        return {
            "compiled": bool(stt_proto.COMPILED),
            "bytes": self.mib * MIB,
            "elapsed": elapsed,
            "virtual": virtual,
            "skipped": clock.skipped - skipped,
            "jumps": clock.jumps - jumps,
            "packets_sent": stats["packets_sent"],
            "acks_received": stats["packets_received"],
            "packets_lost": stats["packets_lost"],
            "congestion_window": stats["congestion_window"],
            "rtt_smoothed": stats["rtt_smoothed"],
        }


class _RoundTrips(_Transfer):
    """``count`` request/response exchanges of ``size``-byte messages on one
    stream: the client sends one, the server echoes it, the client sends the
    next on the echo. Each side is flushed after every datagram, as an adapter
    does, so the figure is the engines' whole per-round-trip work: two sealed
    and opened packets each way plus the acknowledgements they carry."""

    def __init__(self, count: int, size: int, **options) -> None:
        super().__init__(0, **options)
        self.count = count
        self.payload = random.Random(size).randbytes(size)
        self.answered = 0

    def _on_event(self, ep, event, now: float) -> None:
        if type(event) is not MessageReceived:
            super()._on_event(ep, event, now)
            return
        if ep is self.server:
            self.server.send_message(event.session_id, event.stream_id, event.data, now=now)
            return
        if event.data != self.payload:
            raise RuntimeError(f"echo {self.answered} arrived corrupted")
        self.answered += 1
        if self.answered < self.count:
            self.client.send_message(self.session_id, self.stream_id, self.payload, now=now)

    def run(self) -> dict:
        clock, client = self.clock, self.client
        self._open()
        start = time.process_time()
        now = clock.now()
        client.send_message(self.session_id, self.stream_id, self.payload, now=now)
        self._flush(client, self.to_server, now)
        self._run(lambda: self.answered >= self.count)
        elapsed = time.process_time() - start
        stats = client.session_statistics(self.session_id)
        return {"compiled": bool(stt_proto.COMPILED), "round_trips": self.count,
                "elapsed": elapsed, "packets_sent": stats["packets_sent"],
                "packets_lost": stats["packets_lost"]}


def round_trips(count: int, size: int = 100, *, congestion_control: str = "bbr") -> dict:
    """Connect two endpoints and time ``count`` echoed ``size``-byte messages."""
    return _RoundTrips(count, size, cipher="AESGCM", max_datagram_size=1452,
                       congestion_control=congestion_control, batch=False).run()


def transfer(mib: int, *, cipher: str = "AESGCM", max_datagram_size: int = 1452,
             congestion_control: str = "bbr", batch: bool = False) -> dict:
    """Connect two endpoints, send ``mib`` MiB one way, return the figures."""
    return _Transfer(mib, cipher=cipher, max_datagram_size=max_datagram_size,
                     congestion_control=congestion_control, batch=batch).run()


# -- the parent: one subprocess per build, then the table -------------------------------


def _child(args: argparse.Namespace) -> int:
    results = []
    for cipher, size in json.loads(args.child):
        runs = [transfer(args.mib, cipher=cipher, max_datagram_size=size,
                         congestion_control=args.cc, batch=args.batch)
                for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["elapsed"])
        results.append(dict(best, cipher=cipher, size=size))
    json.dump(results, sys.stdout)
    return 0


def _round_trip_table(args: argparse.Namespace) -> int:
    figures = {}
    for pure in (False, True):
        code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench_engine as b;"
                " runs = [b.round_trips(int(sys.argv[2]), congestion_control=sys.argv[3])"
                " for _ in range(int(sys.argv[4]))];"
                " print(json.dumps(min(runs, key=lambda r: r['elapsed'])))")
        result = run_in_build([sys.executable, "-c", code, os.path.dirname(__file__),
                               str(args.round_trips), args.cc, str(args.repeat)], pure=pure)
        figures[pure] = result["elapsed"] / result["round_trips"] * 1e6
    print(f"engine round trips: {args.round_trips:,} echoed 100-byte messages on one stream, "
          f"both endpoints on one core, flush after every datagram, {args.cc}, "
          f"best of {args.repeat}")
    print(f"{'compiled µs/round trip':>24}{'pure µs/round trip':>20}{'ratio':>8}")
    print(f"{figures[False]:>24.1f}{figures[True]:>20.1f}{figures[True] / figures[False]:>7.2f}x")
    return 0


def _run_build(pure: bool, rows: list, args: argparse.Namespace) -> list[dict]:
    command = [sys.executable, os.path.abspath(__file__), "--mib", str(args.mib),
               "--repeat", str(args.repeat), "--cc", args.cc, "--child", json.dumps(rows)]
    if args.batch:
        command.append("--batch")
    return run_in_build(command, pure=pure)


def _profile(args: argparse.Namespace) -> int:
    import cProfile
    import pstats

    transfer(2, max_datagram_size=args.datagram, congestion_control=args.cc, batch=args.batch)
    profiler = cProfile.Profile()
    profiler.enable()
    result = transfer(args.mib, max_datagram_size=args.datagram, congestion_control=args.cc,
                      batch=args.batch)
    profiler.disable()
    print(f"{'compiled' if stt_proto.COMPILED else 'pure'} build, {args.mib} MiB, "
          f"{args.datagram}-byte datagrams, {result['packets_sent']:,} data packets "
          f"(cProfile slows the run several times; compare shares, not times)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="MiB sent per run (default 64)")
    parser.add_argument("--quick", action="store_true",
                        help="16 MiB, one run, AES-GCM at 1452 and 65527 bytes only")
    parser.add_argument("--batch", action="store_true",
                        help="deliver every queued datagram before flushing (recvmmsg-style)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs (3)")
    parser.add_argument("--cc", default="bbr",
                        help="congestion controller: bbr (default), cubic, newreno, or "
                             "unlimited (no window, no pacing)")
    parser.add_argument("--profile", action="store_true",
                        help="run one transfer under cProfile in this process instead")
    parser.add_argument("--datagram", type=int, default=1452,
                        help="max_datagram_size for --profile (1452)")
    parser.add_argument("--top", type=int, default=25, help="functions --profile shows (25)")
    parser.add_argument("--round-trips", type=int, metavar="N",
                        help="instead of bulk: N echoed 100-byte messages on one stream, "
                             "the engines' CPU time per round trip")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)
    if args.profile:
        return _profile(args)
    if args.round_trips:
        return _round_trip_table(args)
    rows = ROWS
    if args.quick:
        args.mib, args.repeat, rows = 16, 1, QUICK_ROWS
    compiled = _run_build(False, rows, args)
    pure = _run_build(True, rows, args)

    mode = "batched delivery" if args.batch else "flush after every datagram"
    print(f"engine bulk transfer: {args.mib} MiB as 1 MiB messages, both endpoints on one "
          f"core, {mode}, {args.cc}, best of {args.repeat}")
    print(f"{'cipher':<11}{'datagram':>9}{'compiled MB/s':>15}{'pkts/s':>10}{'paced':>7}"
          f"{'pure MB/s':>11}{'pkts/s':>10}{'paced':>7}{'ratio':>8}")
    for c, p in zip(compiled, pure):
        rate_c = c["bytes"] / c["elapsed"] / 1e6
        rate_p = p["bytes"] / p["elapsed"] / 1e6
        print(f"{c['cipher']:<11}{c['size']:>9}"
              f"{rate_c:>15.1f}{c['packets_sent'] / c['elapsed']:>10,.0f}"
              f"{c['skipped'] / c['virtual']:>7.0%}"
              f"{rate_p:>11.1f}{p['packets_sent'] / p['elapsed']:>10,.0f}"
              f"{p['skipped'] / p['virtual']:>7.0%}"
              f"{rate_c / rate_p:>7.2f}x")
    lost = sum(r["packets_lost"] for r in compiled + pure)
    if lost:
        print(f"note: {lost} packets were declared lost in memory (spurious loss detection)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
