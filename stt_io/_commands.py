"""The networking subcommands of ``stt`` (see :mod:`stt_io.cli`).

File transfer protocol between ``stt send`` and ``stt listen`` (application
level, on one stream): the first message is ``b"STT-FILE "`` followed by a JSON
object ``{"name": ..., "size": ...}``; the file follows as messages of at most
1 MiB; the sender then ends its side. The listener answers with one message,
``b"OK "`` + the BLAKE2b-256 hex digest of what it stored, or ``b"ERR "`` + a
reason. Any other stream is echoed message by message.

Each command is written once, against the API both adapters share, and runs
on the adapter ``--backend`` picks (:mod:`stt_io.asyncio` by default, or
:mod:`stt_io.trio`). What little differs between the event loops (running the
command, sleeping, waiting forever) goes through a small :class:`Backend`.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from stt_proto.identity import Identity

from ._core import NodeBase, Session, Stream
from .errors import STTError
from .keys import load_identity, load_seed, save_identity

FILE_MAGIC = b"STT-FILE "
CHUNK = 1024 * 1024

#: The event loops ``--backend`` offers; the first is the default.
BACKENDS = ("asyncio", "trio")


# ---------------------------------------------------------------------------- backends


class Backend(abc.ABC):
    """What a command needs from its event loop, beyond the adapter's API.

    Tasks are not part of it: a command hands them to its node (see
    :func:`spawn`), so they end with the node on either backend.
    """

    name: str
    #: The adapter's node class (``stt_io.asyncio.Node`` or ``stt_io.trio.Node``).
    Node: type[NodeBase]

    @abc.abstractmethod
    def run(self, command: Callable[..., Awaitable[int]], *args: Any) -> int:
        """Run ``await command(*args)`` in a new event loop; return its result."""

    @abc.abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Sleep on the backend's clock."""

    @abc.abstractmethod
    async def wait_forever(self) -> None:
        """Block until cancelled (by Ctrl-C or a signal)."""


class _AsyncioBackend(Backend):
    name = "asyncio"

    def __init__(self) -> None:
        from .asyncio import Node

        self.Node = Node

    def run(self, command: Callable[..., Awaitable[int]], *args: Any) -> int:
        return asyncio.run(command(*args))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_forever(self) -> None:
        await asyncio.Event().wait()


class _TrioBackend(Backend):
    name = "trio"

    def __init__(self, trio: Any) -> None:
        from .trio import Node

        self._trio = trio
        self.Node = Node

    def run(self, command: Callable[..., Awaitable[int]], *args: Any) -> int:
        return self._trio.run(command, *args)

    async def sleep(self, seconds: float) -> None:
        await self._trio.sleep(seconds)

    async def wait_forever(self) -> None:
        await self._trio.sleep_forever()


def load_backend(name: str) -> Backend:
    """The :class:`Backend` called ``name``. trio is an optional dependency
    (``pip install 'stt[trio]'``): without it, exit with a one-line message."""
    if name == "trio":
        try:
            import trio
        except ImportError as exc:
            raise SystemExit(f"stt: --backend trio needs trio (pip install 'stt[trio]'): "
                             f"{exc}") from None
        return _TrioBackend(trio)
    if name == "asyncio":
        return _AsyncioBackend()
    raise ValueError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")


def spawn(session: Session, coro: Awaitable[Any], what: str) -> None:
    """Run ``coro`` as a task of the session's node, on whichever backend: the
    node cancels it when it stops, and logs (never raises) its exception."""
    session._node._spawn(coro, what)


def backend_option(parser: argparse.ArgumentParser, default: str = argparse.SUPPRESS) -> None:
    """Add ``--backend`` to ``parser``. The main parser gives the default; a
    subcommand's option has none, so that it leaves a value given before the
    subcommand (``stt --backend trio listen``) in place."""
    parser.add_argument("--backend", choices=BACKENDS, default=default,
                        help="run on asyncio (the default) or trio (needs stt[trio])")


def add_commands(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="two nodes on loopback: connect, send a file, verify")
    demo.add_argument("--mib", type=int, default=64, help="size of the generated file (MiB)")
    backend_option(demo)
    demo.set_defaults(func=lambda a: _run(_demo, a))

    keygen = sub.add_parser("keygen", help="create an identity file (mode 0600)")
    keygen.add_argument("--out", default="stt-identity.key", help="where to write it")
    keygen.add_argument("--force", action="store_true", help="overwrite an existing file")
    keygen.set_defaults(func=_keygen)

    ident = sub.add_parser("id", help="print the node id of an identity file")
    ident.add_argument("--identity", default="stt-identity.key")
    ident.set_defaults(func=_id)

    listen = sub.add_parser("listen", help="accept sessions: receive files, echo streams")
    _seed_options(listen)
    listen.add_argument("--identity", help="identity file (default: a new identity)")
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--port", type=int, default=4000)
    listen.add_argument("--save-dir", default=".", help="where received files go")
    backend_option(listen)
    listen.set_defaults(func=lambda a: _run(_listen, a))

    send = sub.add_parser("send", help="send a file to a listener")
    _seed_options(send)
    _peer_options(send)
    send.add_argument("file", help="the file to send")
    backend_option(send)
    send.set_defaults(func=lambda a: _run(_send, a))

    ping = sub.add_parser("ping", help="round trips to a listener")
    _seed_options(ping)
    _peer_options(ping)
    ping.add_argument("-c", "--count", type=int, default=5)
    backend_option(ping)
    ping.set_defaults(func=lambda a: _run(_ping, a))


def _seed_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", help="network seed (text); or set STT_SEED")
    parser.add_argument("--seed-file", help="file holding the network seed (mode 0600)")


def _peer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, metavar="HOST:PORT")
    parser.add_argument("--peer", required=True, metavar="NODE_ID", help="the peer's node id (hex)")
    parser.add_argument("--identity", help="identity file (default: a new identity)")
    parser.add_argument("--timeout", type=float, default=10.0)


def _seed(args: argparse.Namespace) -> bytes:
    if args.seed_file:
        return load_seed(args.seed_file)
    text = args.seed or os.environ.get("STT_SEED")
    if not text:
        raise SystemExit("stt: no network seed: use --seed, --seed-file or STT_SEED")
    return text.encode()


def _identity(args: argparse.Namespace) -> Identity | None:
    return load_identity(args.identity) if getattr(args, "identity", None) else None


def _target(args: argparse.Namespace) -> tuple[tuple[str, int], bytes]:
    host, _, port = args.to.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit("stt: --to must be HOST:PORT")
    try:
        peer = bytes.fromhex(args.peer)
    except ValueError:
        raise SystemExit("stt: --peer must be a hex node id") from None
    if len(peer) != 32:
        raise SystemExit("stt: --peer must be 32 bytes (64 hex digits)")
    return (host.strip("[]"), int(port)), peer


async def _connect(node: NodeBase, address: tuple[str, int], peer: bytes,
                   timeout: float) -> Session:
    try:
        return await node.connect(address, peer, timeout=timeout)
    except ValueError as exc:  # e.g. a peer id that is no X25519 public key
        raise SystemExit(f"stt: --peer: {exc}") from None


def _run(command: Callable[[argparse.Namespace, Backend], Awaitable[int]],
         args: argparse.Namespace) -> int:
    io = load_backend(getattr(args, "backend", BACKENDS[0]))
    try:
        return io.run(command, args, io)
    except (STTError, OSError) as exc:
        print(f"stt: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _keygen(args: argparse.Namespace) -> int:
    identity = Identity.generate()
    try:
        save_identity(identity, args.out, overwrite=args.force)
    except FileExistsError:
        print(f"stt: {args.out} exists (use --force to replace it)", file=sys.stderr)
        return 1
    print(identity.node_id.hex())
    return 0


def _id(args: argparse.Namespace) -> int:
    print(load_identity(args.identity).node_id.hex())
    return 0


# ---------------------------------------------------------------------------- transfer


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.start = time.perf_counter()
        self.shown = -1

    def update(self, done: int) -> None:
        percent = done * 100 // self.total if self.total else 100
        if percent == self.shown:
            return
        self.shown = percent
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        bar = "#" * (percent // 4) + "." * (25 - percent // 4)
        sys.stderr.write(f"\r{self.label} [{bar}] {percent:3d}% "
                         f"{done / elapsed / 1e6:7.1f} MB/s")
        sys.stderr.flush()

    def finish(self) -> float:
        sys.stderr.write("\n")
        return time.perf_counter() - self.start


async def send_file(session: Session, name: str, chunks, size: int,
                    progress: Progress | None = None) -> str:
    """Send a file on a new stream; returns the digest the receiver confirmed."""
    stream = session.open_stream(max_frame_size=CHUNK + 4096)
    await stream.send(FILE_MAGIC + json.dumps({"name": name, "size": size}).encode())
    digest = hashlib.blake2b(digest_size=32)
    sent = 0
    async for chunk in chunks:
        await stream.send(chunk)
        digest.update(chunk)
        sent += len(chunk)
        if progress:
            progress.update(sent)
    await stream.close()
    answer = await stream.receive()
    if not answer.startswith(b"OK "):
        raise STTError(f"receiver refused the file: {answer.decode(errors='replace')}")
    theirs = answer[3:].decode()
    if theirs != digest.hexdigest():
        raise STTError("hash mismatch: the receiver stored different bytes")
    return theirs


async def serve_session(session: Session, save_dir: Path | None, log=print) -> None:
    """Handle a listener's session: save files, echo everything else."""
    while True:
        try:
            stream = await session.accept_stream()
        except STTError:
            return
        spawn(session, _serve_stream(stream, save_dir, log), "an stt stream handler")


async def _serve_stream(stream: Stream, save_dir: Path | None, log) -> None:
    try:
        first = await stream.receive()
    except STTError:
        return
    try:
        if first.startswith(FILE_MAGIC):
            await _receive_file(stream, json.loads(first[len(FILE_MAGIC):]), save_dir, log)
        else:
            await stream.send(first)
            async for message in stream:
                await stream.send(message)
            await stream.close()
    except (STTError, ValueError, OSError) as exc:
        log(f"stream {stream.stream_id}: {type(exc).__name__}: {exc}")


async def _receive_file(stream: Stream, header: dict, save_dir: Path | None, log) -> None:
    name = Path(str(header.get("name", "file"))).name or "file"
    size = int(header.get("size", -1))
    digest = hashlib.blake2b(digest_size=32)
    received = 0
    out = open(save_dir / name, "wb") if save_dir is not None else None
    try:
        async for chunk in stream:
            digest.update(chunk)
            received += len(chunk)
            if out is not None:
                out.write(chunk)
    finally:
        if out is not None:
            out.close()
    if received != size:
        await stream.send(b"ERR size %d, expected %d" % (received, size))
    else:
        await stream.send(b"OK " + digest.hexdigest().encode())
        log(f"received {name}: {received:,} bytes, blake2b {digest.hexdigest()[:16]}...")
    await stream.close()


# ---------------------------------------------------------------------------- commands


async def _listen(args: argparse.Namespace, io: Backend) -> int:
    save_dir = Path(args.save_dir)
    async with io.Node(_identity(args), _seed(args), args.host, args.port) as node:
        host, port = node.address
        print(f"listening on {host}:{port}", flush=True)
        print(f"node id {node.node_id.hex()}", flush=True)
        print(f"backend {io.name}", flush=True)

        @node.on_session
        async def handle(session: Session) -> None:
            print(f"session from {session.peer_address[0]}:{session.peer_address[1]} "
                  f"peer {session.peer_id.hex()[:16]}...", flush=True)
            await serve_session(session, save_dir)

        node.on_session_closed(lambda sid, reason: print(f"session closed: {reason}",
                                                         flush=True))
        await io.wait_forever()
    return 0


async def _file_chunks(path: str, io: Backend):
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
            await io.sleep(0)


async def _send(args: argparse.Namespace, io: Backend) -> int:
    address, peer = _target(args)
    size = os.path.getsize(args.file)
    async with io.Node(_identity(args), _seed(args)) as node:
        session = await _connect(node, address, peer, args.timeout)
        progress = Progress(size, os.path.basename(args.file))
        digest = await send_file(session, os.path.basename(args.file),
                                 _file_chunks(args.file, io), size, progress)
        elapsed = progress.finish()
        print(f"sent {size:,} bytes in {elapsed:.2f} s ({size / elapsed / 1e6:.1f} MB/s), "
              f"blake2b {digest[:16]}... verified by the receiver")
        await session.close()
    return 0


async def _ping(args: argparse.Namespace, io: Backend) -> int:
    address, peer = _target(args)
    async with io.Node(_identity(args), _seed(args)) as node:
        start = time.perf_counter()
        session = await _connect(node, address, peer, args.timeout)
        print(f"connected in {(time.perf_counter() - start) * 1e3:.2f} ms")
        stream = session.open_stream()
        rtts = []
        for i in range(args.count):
            start = time.perf_counter()
            await stream.send(b"ping %d" % i)
            await stream.receive()
            rtts.append((time.perf_counter() - start) * 1e3)
            print(f"reply {i}: {rtts[-1]:.3f} ms")
            await io.sleep(0.2 if i + 1 < args.count else 0)
        print(f"min/avg/max {min(rtts):.3f}/{sum(rtts) / len(rtts):.3f}/{max(rtts):.3f} ms")
        await stream.close()
        await session.close()
    return 0


async def _generated(size: int):
    block = os.urandom(CHUNK)
    sent = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        yield block[:n]
        sent += n


async def _demo(args: argparse.Namespace, io: Backend) -> int:
    # The demo makes up a seed for its own two nodes; real networks pass one in.
    seed = os.urandom(32)
    size = args.mib * 1024 * 1024
    async with io.Node(shared_seed=seed) as server, io.Node(shared_seed=seed) as client:
        print(f"backend {io.name} ({io.Node.__module__})")
        print(f"server {server.address[0]}:{server.address[1]} "
              f"node id {server.node_id.hex()[:16]}...")
        print(f"client {client.address[0]}:{client.address[1]} "
              f"node id {client.node_id.hex()[:16]}...")
        server.on_session(lambda session: serve_session(session, None, log=lambda m: None))
        start = time.perf_counter()
        session = await client.connect(server.address, server.node_id)
        assert session.peer_id == server.node_id
        print(f"session established in {(time.perf_counter() - start) * 1e3:.2f} ms "
              f"(Noise IKpsk2; the server's node id is authenticated)")
        progress = Progress(size, f"sending {args.mib} MiB")
        digest = await send_file(session, "demo.bin", _generated(size), size, progress)
        elapsed = progress.finish()
        print(f"hash verified by the receiver: blake2b {digest[:32]}...")
        print(f"throughput {size / elapsed / 1e6:.1f} MB/s ({elapsed:.2f} s)")
        stats = session.statistics()
        rtt_min = stats["rtt_min"]
        print("session statistics:")
        for label, value in [
            ("rtt smoothed / min", f"{stats['rtt_smoothed'] * 1e3:.3f} ms / "
                                   f"{(rtt_min or 0) * 1e3:.3f} ms"),
            ("congestion control", f"{stats['congestion_control']}, window "
                                   f"{stats['congestion_window']:,} bytes"),
            ("packets sent / received", f"{stats['packets_sent']:,} / "
                                        f"{stats['packets_received']:,}"),
            ("bytes sent / received", f"{stats['bytes_sent']:,} / {stats['bytes_received']:,}"),
            ("packets lost / bytes retransmitted", f"{stats['packets_lost']:,} / "
                                                   f"{stats['bytes_retransmitted']:,}"),
            ("streams open", f"{stats['streams_open']}"),
        ]:
            print(f"  {label:<36} {value}")
        await session.close()
        print(f"session closed: {session.close_reason}")
    print("demo OK")
    return 0
