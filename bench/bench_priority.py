"""Priority benchmark: a chat stream's round trips under bulk load on the same
STT session, over loopback.

Usage::

    python bench/bench_priority.py [--seconds 4] [--backend asyncio,trio]

The server and the client run in two separate processes on 127.0.0.1 (the
server prints its port and id; the client measures and prints JSON; this
script starts both and prints the table). On one session the client keeps a
bulk stream busy (64 KiB messages, written as fast as the send buffer takes
them) and, on another stream, sends a 100-byte chat message, waits for the
server's echo, pauses 5 ms and sends the next, for ``--seconds``. Each row is
a new session:

* ``chat alone``: no bulk stream (the floor);
* ``same urgency``: chat and bulk both at the default urgency 3, nobody set a
  priority; only the scheduler's interactive rule keeps the chat from queueing
  behind the bulk (stt_proto/priority.py);
* ``chat 0, bulk 7``: the chat stream at urgency 0, the bulk at 7.

Figures: round-trip p50 and p99 in milliseconds (``time.perf_counter`` around
send and receive), how many round trips, the bulk stream's rate in MB/s
(10**6 bytes a second, counted by the client's session while the chat ran),
and the session's smoothed RTT and congestion window at the end of the row.
Every setting of both nodes is its default. Loopback has no bottleneck link,
but the receiving process is one: the scheduler puts the chat message in the
next packet the window lets out, and what it waits for then is the bulk
already in flight ahead of it, queued in the receiver's socket and event loop
(about a window: ``cwnd kB / bulk MB/s`` milliseconds), which no priority can
overtake.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import anyio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _processes as processes  # noqa: E402

SEED = b"priority benchmark network seed!"
HOST = "127.0.0.1"
CHAT_SIZE = 100
BULK_CHUNK = 64 * 1024
#: (label, chat urgency, bulk urgency or None for no bulk stream)
SCENARIOS = [("chat alone", 3, None), ("same urgency", 3, 3), ("chat 0, bulk 7", 0, 7)]


def _node_class(backend: str):
    if backend == "trio":
        from stt_io.trio import Node
    else:
        from stt_io.asyncio import Node
    return Node


def _run(backend: str, main, *args):
    if backend == "trio":
        import trio
        return trio.run(main, *args)
    import asyncio
    return asyncio.run(main(*args))


# -- the server: discard bulk streams, echo chat streams ----------------------------------


async def _serve_stream(stream) -> None:
    from stt_io.errors import STTError
    try:
        kind = await stream.receive()
        if kind == b"B":
            async for _ in stream:
                pass
        else:
            async for message in stream:
                await stream.send(message)
    except STTError:
        pass


async def run_server(backend: str) -> None:
    from stt_io.errors import STTError
    async with _node_class(backend)(shared_seed=SEED, host=HOST) as node:

        async def on_session(session) -> None:
            async with anyio.create_task_group() as streams:
                while True:
                    try:
                        stream = await session.accept_stream()
                    except STTError:
                        return
                    streams.start_soon(_serve_stream, stream)

        node.on_session(on_session)
        print(json.dumps({"port": node.address[1], "id": node.node_id.hex()}), flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                break


# -- the client -----------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _scenario(node, address, peer_id: bytes, chat_urgency: int,
                    bulk_urgency: int | None, seconds: float) -> dict:
    session = await node.connect(address, peer_id, new=True)
    chat = session.open_stream(priority=chat_urgency)
    await chat.send(b"C")
    message = os.urandom(CHAT_SIZE)
    round_trips: list[float] = []
    async with anyio.create_task_group() as tasks:
        if bulk_urgency is not None:
            bulk = session.open_stream(priority=bulk_urgency)
            await bulk.send(b"B")

            async def write_bulk() -> None:
                block = bytes(BULK_CHUNK)
                while True:
                    await bulk.send(block)

            tasks.start_soon(write_bulk)
            await anyio.sleep(0.5)  # the transfer reaches its pace
        sent_before = session.statistics()["stream_bytes_sent"]
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await chat.send(message)
            if await chat.receive() != message:
                raise RuntimeError("the echo differs")
            round_trips.append(time.perf_counter() - t0)
            await anyio.sleep(0.005)
        elapsed = time.perf_counter() - start
        stats = session.statistics()
        sent = stats["stream_bytes_sent"] - sent_before
        tasks.cancel_scope.cancel()
    with anyio.move_on_after(5, shield=True):
        await session.close()
    return {"p50_ms": _percentile(round_trips, 0.5) * 1e3,
            "p99_ms": _percentile(round_trips, 0.99) * 1e3,
            "round_trips": len(round_trips),
            "bulk_mb_s": None if bulk_urgency is None else sent / elapsed / 1e6,
            "srtt_ms": stats["rtt_smoothed"] * 1e3,
            "cwnd_kb": stats["congestion_window"] / 1e3}


async def run_client(backend: str, port: int, peer_id: str, seconds: float) -> list:
    results = []
    async with _node_class(backend)(shared_seed=SEED, host=HOST) as node:
        for label, chat_urgency, bulk_urgency in SCENARIOS:
            with anyio.fail_after(60 + 2 * seconds):
                result = await _scenario(node, (HOST, port), bytes.fromhex(peer_id),
                                         chat_urgency, bulk_urgency, seconds)
            results.append(dict(result, label=label))
    return results


# -- the driver -------------------------------------------------------------------------------


def _measure(backend: str, seconds: float) -> list:
    me = os.path.abspath(__file__)
    with processes.serving([sys.executable, me, "--serve", backend]) as hello:
        return processes.run_client([sys.executable, me, "--client", backend, "--port",
                                     str(hello["port"]), "--peer-id", hello["id"],
                                     "--seconds", str(seconds)],
                                    timeout=120 + 6 * seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="chat round trips per row, in seconds (4)")
    parser.add_argument("--backend", default="asyncio,trio",
                        help="comma-separated adapters: asyncio, trio (both)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--peer-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _run(args.serve, run_server, args.serve)
        return 0
    if args.client:
        results = _run(args.client, run_client, args.client, args.port, args.peer_id,
                       args.seconds)
        json.dump(results, sys.stdout)
        return 0
    print(f"chat: {CHAT_SIZE}-byte messages echoed, 5 ms apart, {args.seconds:g} s a row; "
          f"bulk: {BULK_CHUNK // 1024} KiB messages, as fast as they go; loopback, "
          "client and server in separate processes")
    print(f"{'adapter':8} {'row':16} {'p50 ms':>8} {'p99 ms':>8} {'trips':>6} "
          f"{'bulk MB/s':>10} {'srtt ms':>8} {'cwnd kB':>8}")
    for backend in args.backend.split(","):
        for row in _measure(backend, args.seconds):
            bulk = "-" if row["bulk_mb_s"] is None else f"{row['bulk_mb_s']:.1f}"
            print(f"{backend:8} {row['label']:16} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
                  f"{row['round_trips']:6d} {bulk:>10} {row['srtt_ms']:8.2f} "
                  f"{row['cwnd_kb']:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
