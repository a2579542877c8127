"""Many sessions on one node over real UDP: the server and client programs.

Run by ``bench_sessions.py --udp`` and by ``tests/adapters/test_session_scale.py``
(one server process, several client processes, all on 127.0.0.1). Each program
speaks JSON lines: it prints one line once it is up, then answers one line per
command read on stdin.

* ``server --backend B``: a node whose session limits fit the run; every stream
  a client opens is echoed. Prints ``{"port", "node_id", "rss_kib"}``. Commands:
  ``{"op": "stats"}`` -> ``{"sessions", "rss_kib", "handshakes",
  "cookie_replies"}``; ``{"op": "quit"}`` -> it stops its node.
* ``client --backend B --port P --node-id H --sessions N``: one node that opens
  ``N`` sessions to the server (``connect(new=True)``, at most ``--concurrency``
  handshakes at once) and prints ``{"connected", "seconds"}``; the sessions
  stay idle, with no stream. ``{"op": "echo"}``: every session opens a stream,
  sends 100 bytes and waits for them back -> ``{"echoed", "seconds", "alive"}``
  (``alive``: the sessions still open before the echo). ``{"op": "quit"}``.

Every wait is bounded (``--timeout``); a program whose stdin ends stops.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import anyio

HOST = "127.0.0.1"
SEED = b"session scale benchmark seed"
PAYLOAD = bytes(range(100))


def rss_kib() -> int:
    """The process's resident memory, KiB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _say(answer: dict[str, Any]) -> None:
    print(json.dumps(answer), flush=True)


def _node_class(backend: str) -> Any:
    if backend == "trio":
        from stt_io.trio import Node
    else:
        from stt_io.asyncio import Node
    return Node


async def _commands() -> Any:
    """The commands read on stdin, one JSON object a line, until it ends."""
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            return
        yield json.loads(line)


async def serve(args: argparse.Namespace) -> None:
    room = args.room
    # Every client is on 127.0.0.1: the per-address cap must fit them all. The
    # cookie round trip under load stays on (its default rate): it is part of
    # what a node accepting this many sessions does.
    node = _node_class(args.backend)(shared_seed=SEED, host=HOST, max_sessions=room,
                                     max_sessions_per_address=room, max_half_open=room,
                                     max_pending_connects=room)
    await node.start()
    try:
        async with anyio.create_task_group() as tasks:

            async def echo(stream: Any) -> None:
                try:
                    async for message in stream:
                        await stream.send(message)
                    await stream.close()
                except Exception:  # a client that stops mid-echo is no error here
                    pass

            async def on_session(session: Any) -> None:
                while True:
                    try:
                        stream = await session.accept_stream()
                    except Exception:
                        return
                    tasks.start_soon(echo, stream)

            node.on_session(on_session)
            _say({"port": node.address[1], "node_id": node.node_id.hex(), "rss_kib": rss_kib()})
            async for command in _commands():
                if command["op"] == "quit":
                    break
                stats = node.statistics()
                _say({"sessions": stats["sessions"], "rss_kib": rss_kib(),
                      "handshakes": stats["handshakes_completed"],
                      "cookie_replies": stats["cookie_replies_sent"]})
            tasks.cancel_scope.cancel()
    finally:
        with anyio.move_on_after(10, shield=True):
            await node.stop()
    _say({"ok": True})


async def connect_all(args: argparse.Namespace) -> None:
    node = _node_class(args.backend)(shared_seed=SEED, host=HOST,
                                     max_pending_connects=max(args.concurrency, 1_024))
    await node.start()
    peer_id = bytes.fromhex(args.node_id)
    sessions: list[Any] = []
    try:
        began = time.perf_counter()
        limiter = anyio.CapacityLimiter(args.concurrency)
        with anyio.fail_after(args.timeout):
            async with anyio.create_task_group() as tasks:

                async def one() -> None:
                    async with limiter:
                        sessions.append(await node.connect((HOST, args.port), peer_id,
                                                           new=True))

                for _ in range(args.sessions):
                    tasks.start_soon(one)
        _say({"connected": len(sessions), "seconds": time.perf_counter() - began})
        async for command in _commands():
            if command["op"] == "quit":
                break
            alive = sum(1 for session in sessions if not session.is_closed())
            began = time.perf_counter()
            echoed = 0
            with anyio.fail_after(args.timeout):
                async with anyio.create_task_group() as tasks:

                    async def echo(session: Any) -> None:
                        nonlocal echoed
                        async with limiter:
                            stream = session.open_stream()
                            await stream.send(PAYLOAD)
                            if await stream.receive() == PAYLOAD:
                                echoed += 1
                            await stream.close()

                    for session in sessions:
                        tasks.start_soon(echo, session)
            _say({"echoed": echoed, "seconds": time.perf_counter() - began, "alive": alive})
    finally:
        with anyio.move_on_after(10, shield=True):
            await node.stop()
    _say({"ok": True})


# -- the orchestrator: one server, several clients -------------------------------------


class _Program:
    """One program started as a child: JSON lines in, JSON lines out, bounded waits
    (a thread reads its stdout, so a silent program fails a wait instead of hanging)."""

    def __init__(self, argv: list[str], name: str) -> None:
        self.name = name
        # stderr to a file: a pipe nobody reads would block a chatty program.
        self.errors = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.errors, text=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.process.stdout:
                self._lines.put(line)
        except (OSError, ValueError):  # closed under us by kill()
            pass
        self._lines.put(None)

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            self.kill()
            self.errors.seek(0)
            raise RuntimeError(f"{self.name} did not answer within {timeout} s: "
                               + self.errors.read()[-2000:])
        return json.loads(line)

    def send(self, command: dict[str, Any]) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            pipe.close()


def run_scale(client_backends: list[str], sessions_per_client: int, *,
              server_backend: str = "asyncio", idle: float = 2.0,
              timeout: float = 300.0) -> dict[str, Any]:
    """One server node and a client process per entry of ``client_backends``,
    each opening ``sessions_per_client`` sessions at once; the sessions sit idle
    ``idle`` seconds, then each echoes 100 bytes on a new stream. Returns the
    figures (see :mod:`bench.bench_sessions`)."""
    total = len(client_backends) * sessions_per_client
    programs: list[_Program] = []
    try:
        server = _Program(["server", "--backend", server_backend, "--room", str(total + 64)],
                          f"server ({server_backend})")
        programs.append(server)
        hello = server.receive(60)
        clients = [_Program(["client", "--backend", backend, "--port", str(hello["port"]),
                             "--node-id", hello["node_id"], "--sessions",
                             str(sessions_per_client), "--timeout", str(timeout)],
                            f"client {i} ({backend})")
                   for i, backend in enumerate(client_backends)]
        programs += clients
        connected = [client.receive(timeout + 60) for client in clients]
        server.send({"op": "stats"})
        after_connect = server.receive(60)
        time.sleep(idle)
        for client in clients:
            client.send({"op": "echo"})
        echoed = [client.receive(timeout + 60) for client in clients]
        server.send({"op": "stats"})
        after_echo = server.receive(60)
        for program in programs:
            program.send({"op": "quit"})
        for program in programs:
            program.receive(60)
        slowest = max(c["seconds"] for c in connected)
        return {
            "sessions": total, "connected": sum(c["connected"] for c in connected),
            "connect_seconds": slowest, "handshakes_per_second": total / slowest,
            "server_sessions": after_connect["sessions"],
            "rss_kib_idle": hello["rss_kib"], "rss_kib_sessions": after_connect["rss_kib"],
            "rss_bytes_per_session": (after_connect["rss_kib"] - hello["rss_kib"]) * 1024
            / max(total, 1),
            "cookie_replies": after_connect["cookie_replies"],
            "alive_after_idle": sum(e["alive"] for e in echoed),
            "echoed": sum(e["echoed"] for e in echoed),
            "echo_seconds": max(e["seconds"] for e in echoed),
            "server_sessions_after_echo": after_echo["sessions"],
        }
    finally:
        for program in programs:
            program.kill()
            program.errors.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--room", type=int, default=20_000,
                        help="server: session limits (sessions, per address, half-open)")
    parser.add_argument("--port", type=int)
    parser.add_argument("--node-id")
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=64,
                        help="client: handshakes (and echoes) in flight at once")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="client: the longest the connects, or an echo round, may take")
    args = parser.parse_args()
    run = serve if args.role == "server" else connect_all
    anyio.run(run, args, backend=args.backend)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
