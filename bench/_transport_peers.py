"""The peers of bench/bench_transport.py: one server and one client per transport.

Every transport carries the same tiny application protocol on one stream. The
first thing the client sends says what the stream is for:

* ``B`` + 8-byte big-endian length: bulk. The client sends ``length`` bytes;
  the server hashes them (SHA-256) as they arrive and answers with the digest
  and the length it counted (40 bytes), which the client checks.
* ``E``: echo. Every 100-byte request is answered with the same 100 bytes.
* ``P``: ping. The server answers ``p`` (the "first byte") once.

On STT the header is a message of its own and every chunk is one message; on
QUIC and TCP+TLS it is the first bytes of the byte stream. Servers print one
JSON line ``{"port": ..., "id": ...}`` on stdout and serve until SIGTERM
(``bench/_processes.py`` runs them).

The bare UDP rows (``udp`` on asyncio, ``udp-trio`` on trio) have no protocol
and no header: the server sends every datagram back to where it came from, and
the client runs only the round-trip phase, one 100-byte datagram each way, with
the loop's stock UDP API (a ``DatagramProtocol``; ``trio.socket``). That is the
floor under any protocol's round trip on that event loop.

The STT server and the three client phases are written once, on anyio, and
run on the backend of the row: ``stt`` and the QUIC and TCP rows on asyncio
(``asyncio.run``, or ``uvloop.run``), ``stt-trio`` on trio (``trio.run``).
anyio only catches SIGTERM, runs the connect workers and times phases out
(background tasks use each backend's own, cheaper primitive: :class:`_Tasks`);
the loops that are measured call the transport and nothing else, so neither
backend pays for the shared code. The QUIC and TCP servers and connections
stay plain asyncio.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import hashlib
import importlib
import ipaddress
import json
import os
import signal
import ssl
import statistics
import struct
import sys
import time

import anyio

SEED = b"benchmark network seed, 32 bytes"
ALPN = ["stt-bench"]
HOST = "127.0.0.1"
ECHO_SIZE = 100
BULK_HEADER = struct.Struct(">cQ")
#: after the 32-byte digest: bytes received, server CPU seconds spent meanwhile
BULK_ANSWER = struct.Struct(">Qd")
ANSWER_SIZE = 32 + BULK_ANSWER.size
#: session counters the STT client reports after bulk
STT_STATS = ("packets_sent", "packets_lost", "bytes_retransmitted", "probe_timeouts",
             "rtt_min", "rtt_smoothed", "congestion_window", "pacing_rate")
#: the STT rows and the adapter (and so the backend) each one runs on
STT_BACKENDS = {"stt": "asyncio", "stt-trio": "trio"}
#: the bare UDP ping-pong rows (no protocol, round trips only) and their backend
UDP_BACKENDS = {"udp": "asyncio", "udp-trio": "trio"}


def backend(kind: str) -> str:
    """The event loop a transport's peers run on: trio for ``stt-trio`` and
    ``udp-trio``, else asyncio."""
    return STT_BACKENDS.get(kind) or UDP_BACKENDS.get(kind, "asyncio")


def _stt_node_class(kind: str):
    """``Node`` of the STT adapter the row ``kind`` runs."""
    if backend(kind) == "trio":
        from stt_io.trio import Node
    else:
        from stt_io.asyncio import Node
    return Node

# -- certificates (generated at run time) ------------------------------------------------


def make_certificate(directory: str) -> None:
    """A throwaway CA (``ca.pem``, what clients trust) and a P-256 server
    certificate it signed for ``localhost`` and 127.0.0.1 (``cert.pem``,
    ``key.pem``). qh3 refuses a CA certificate used as the server's own, so the
    "self-signed" certificate is a two-link chain made at run time."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, public_key, signing_key, ca: bool):
        builder = (x509.CertificateBuilder()
                   .subject_name(subject).issuer_name(issuer).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=7))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                  critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        else:
            builder = (builder
                       .add_extension(x509.SubjectAlternativeName([
                           x509.DNSName("localhost"),
                           x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                      critical=False))
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stt bench CA")])
    ca = build(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = build(name, ca_name, key.public_key(), ca_key, False)
    pem = serialization.Encoding.PEM
    with open(os.path.join(directory, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(os.path.join(directory, "cert.pem"), "wb") as f:
        f.write(cert.public_bytes(pem) + ca.public_bytes(pem))
    with open(os.path.join(directory, "key.pem"), "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _quic_lib(kind: str):
    """(serve, connect, QuicConfiguration) of ``aioquic`` or ``qh3``."""
    lib_asyncio = importlib.import_module(f"{kind}.asyncio")
    config = importlib.import_module(f"{kind}.quic.configuration")
    return lib_asyncio.serve, lib_asyncio.connect, config.QuicConfiguration


def _tls_server_context(certdir: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(os.path.join(certdir, "cert.pem"), os.path.join(certdir, "key.pem"))
    return ctx


def _tls_client_context(certdir: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(os.path.join(certdir, "ca.pem"))
    return ctx


# -- servers ------------------------------------------------------------------------------


async def _serve_bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The server side of one byte stream (QUIC or TCP+TLS)."""
    try:
        mode = await reader.readexactly(1)
        if mode == b"B":
            (length,) = struct.unpack(">Q", await reader.readexactly(8))
            cpu = time.process_time()
            digest = hashlib.sha256()
            got = 0
            while got < length:
                data = await reader.read(min(1 << 20, length - got))
                if not data:
                    break
                digest.update(data)
                got += len(data)
            writer.write(digest.digest() + BULK_ANSWER.pack(got, time.process_time() - cpu))
        elif mode == b"E":
            while True:
                try:
                    request = await reader.readexactly(ECHO_SIZE)
                except asyncio.IncompleteReadError:
                    break
                writer.write(request)
        elif mode == b"P":
            writer.write(b"p")
        with contextlib.suppress(Exception):
            await reader.read()  # until the client goes away
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _serve_stt_stream(stream) -> None:
    from stt_io.errors import STTError
    try:
        header = await stream.receive()
        mode = header[:1]
        if mode == b"B":
            (length,) = struct.unpack(">Q", header[1:9])
            cpu = time.process_time()
            digest = hashlib.sha256()
            got = 0
            while got < length:
                data = await stream.receive()
                digest.update(data)
                got += len(data)
            await stream.send(digest.digest() + BULK_ANSWER.pack(got, time.process_time() - cpu))
        elif mode == b"E":
            async for request in stream:
                await stream.send(request)
        elif mode == b"P":
            await stream.send(b"p")
    except STTError:
        pass
    except Exception as exc:  # noqa: BLE001 - one stream's bug must not end the server
        print(f"STT server stream: {type(exc).__name__}: {exc}", file=sys.stderr)


class _Tasks:
    """Fire-and-forget tasks on the backend's own primitive: asyncio tasks, or a
    trio nursery. (anyio's task group costs about 30 µs more per task on
    asyncio, which handshakes/s would show.) Leaving the block waits at most
    ``timeout`` seconds for what still runs, then cancels it. A task's
    exception is its own business: the callers here catch everything."""

    def __init__(self, backend: str, timeout: float) -> None:
        self._trio = backend == "trio"
        self._timeout = timeout
        self._tasks: set[asyncio.Task] = set()
        self._nursery_manager = self._nursery = None

    async def __aenter__(self) -> _Tasks:
        if self._trio:
            import trio
            self._nursery_manager = trio.open_nursery()
            self._nursery = await self._nursery_manager.__aenter__()
        return self

    def start_soon(self, function, *args) -> None:
        if self._trio:
            self._nursery.start_soon(function, *args)
            return
        task = asyncio.ensure_future(function(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aexit__(self, *exc_info) -> bool | None:
        if self._trio:
            import trio
            self._nursery.cancel_scope.deadline = trio.current_time() + self._timeout
            return await self._nursery_manager.__aexit__(*exc_info)
        if self._tasks and self._timeout > 0:
            await asyncio.wait(list(self._tasks), timeout=self._timeout)
        for task in list(self._tasks):
            task.cancel()
        return None


def _hello(port: int, ident: str) -> None:
    """The line the benchmark waits for: the server is up and where."""
    print(json.dumps({"port": port, "id": ident}), flush=True)


@contextlib.contextmanager
def _profiled(profile: str | None):
    """cProfile what runs inside (the serving, not the start-up), dumped to ``profile``."""
    if not profile:
        yield
        return
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


async def run_stt_server(kind: str, profile: str | None, stt_config: dict | None = None) -> None:
    """The STT server on the adapter of ``kind``, until SIGTERM (anyio: the same
    code on asyncio and trio)."""
    from stt_io.errors import STTError
    # A benchmark from one address: no per-address session cap (closed sessions
    # linger 3 s and count) and no cookie round trip under load, as QUIC's
    # serve() runs without Retry.
    node = _stt_node_class(kind)(
        shared_seed=SEED, host=HOST, max_sessions_per_address=1_000_000,
        handshakes_per_second_before_cookies=1e9, max_half_open=100_000,
        max_sessions=1_000_000, **(stt_config or {}))
    await node.start()
    try:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async with _Tasks(backend(kind), timeout=0) as streams:

                async def on_session(session) -> None:
                    while True:
                        try:
                            stream = await session.accept_stream()
                        except STTError:
                            return
                        streams.start_soon(_serve_stt_stream, stream)

                node.on_session(on_session)
                _hello(node.address[1], node.node_id.hex())
                with _profiled(profile):
                    async for _ in signals:
                        break
    finally:
        with anyio.move_on_after(5, shield=True):
            await node.stop()


class _UdpEcho(asyncio.DatagramProtocol):
    """The bare UDP server on asyncio: every datagram goes back to where it came from."""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(data, addr)


async def _trio_udp_echo(sock) -> None:
    """The bare UDP server on trio (the loop, as :class:`_UdpEcho` on asyncio)."""
    while True:
        data, addr = await sock.recvfrom(65536)
        await sock.sendto(data, addr)


async def run_udp_server(kind: str, profile: str | None) -> None:
    """The bare UDP echo of ``kind`` (``udp`` on asyncio, ``udp-trio`` on trio),
    until SIGTERM: the floor under any protocol's round trip on that loop."""
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        if backend(kind) == "trio":
            import trio
            with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
                await sock.bind((HOST, 0))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_trio_udp_echo, sock)
                    _hello(sock.getsockname()[1], "")
                    with _profiled(profile):
                        async for _ in signals:
                            break
                    nursery.cancel_scope.cancel()
        else:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                _UdpEcho, local_addr=(HOST, 0))
            try:
                _hello(transport.get_extra_info("sockname")[1], "")
                with _profiled(profile):
                    async for _ in signals:
                        break
            finally:
                transport.close()


async def run_server(kind: str, certdir: str, profile: str | None) -> None:
    """A QUIC or TCP+TLS server on asyncio, until SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tasks: set[asyncio.Task] = set()

    def spawn(coro) -> None:
        task = loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    closers = []
    if kind in ("aioquic", "qh3"):
        serve, _, QuicConfiguration = _quic_lib(kind)
        config = QuicConfiguration(is_client=False, alpn_protocols=ALPN)
        config.load_cert_chain(os.path.join(certdir, "cert.pem"),
                               os.path.join(certdir, "key.pem"))
        server = await serve(HOST, 0, configuration=config,
                             stream_handler=lambda r, w: spawn(_serve_bytes(r, w)))
        port = server._transport.get_extra_info("sockname")[1]

        async def close_quic() -> None:
            server.close()
        closers.append(close_quic)
    elif kind == "tcp-tls":
        server = await asyncio.start_server(_serve_bytes, HOST, 0,
                                            ssl=_tls_server_context(certdir))
        port = server.sockets[0].getsockname()[1]

        async def close_tcp() -> None:
            server.close()
        closers.append(close_tcp)
    else:
        raise SystemExit(f"unknown transport {kind!r}")
    _hello(port, "")
    with _profiled(profile):
        await stop.wait()
    for task in list(tasks):
        task.cancel()
    for close in closers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close(), 5)


# -- clients: one connection, one stream ---------------------------------------------------


class _SttConn:
    """An STT session with one stream, message by message."""

    def __init__(self, node, session, stream) -> None:
        self.node, self.session, self.stream = node, session, stream

    @classmethod
    async def open(cls, peer, mode: bytes):
        session = await peer.node.connect((HOST, peer.port), peer.peer_id, new=True)
        stream = session.open_stream()
        await stream.send(mode)
        return cls(peer.node, session, stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def receive(self, n: int) -> bytes:
        data = await self.stream.receive()
        if len(data) != n:
            raise RuntimeError(f"expected a {n}-byte message, got {len(data)}")
        return data

    def statistics(self) -> dict:
        stats = self.session.statistics()
        return {f"stt_{k}": stats.get(k) for k in STT_STATS}

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.stream.close()
        with contextlib.suppress(Exception):
            await self.session.close()


class _QuicConn:
    def __init__(self, cm, reader, writer) -> None:
        self.cm, self.reader, self.writer = cm, reader, writer

    @classmethod
    async def open(cls, peer, mode: bytes):
        cm = peer.connect(HOST, peer.port, configuration=peer.make_config())
        protocol = await cm.__aenter__()
        reader, writer = await protocol.create_stream()
        writer.write(mode)
        return cls(cm, reader, writer)

    def statistics(self) -> dict:
        return {}

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.sleep(0)  # qh3's stream writer has no drain(); let the loop run

    async def receive(self, n: int) -> bytes:
        return await self.reader.readexactly(n)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write_eof()
        with contextlib.suppress(Exception):
            await self.cm.__aexit__(None, None, None)


class _TlsConn:
    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, peer, mode: bytes):
        reader, writer = await asyncio.open_connection(HOST, peer.port, ssl=peer.ssl_context,
                                                       server_hostname="localhost")
        writer.write(mode)
        return cls(reader, writer)

    def statistics(self) -> dict:
        return {}

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self, n: int) -> bytes:
        return await self.reader.readexactly(n)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


class _UdpConn(asyncio.DatagramProtocol):
    """A bare asyncio UDP socket (the stock datagram transport): a message is one
    datagram, sent with ``sendto`` to the server's address (not a connected
    socket, as STT sends). There is no header: the server echoes everything, so
    only the round-trip phase makes sense."""

    def __init__(self) -> None:
        self.received: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future | None = None

    @classmethod
    async def open(cls, peer, mode: bytes):
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_datagram_endpoint(cls, local_addr=(HOST, 0))
        conn.address = (HOST, peer.port)
        return conn

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.received.append(data)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def statistics(self) -> dict:
        return {}

    async def send(self, data: bytes) -> None:
        self.transport.sendto(data, self.address)

    async def receive(self, n: int) -> bytes:
        while not self.received:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return _datagram_of(self.received.popleft(), n)

    async def close(self) -> None:
        self.transport.close()


class _TrioUdpConn:
    """A bare trio UDP socket (``trio.socket``), as :class:`_UdpConn` on asyncio."""

    def __init__(self, sock, address) -> None:
        self.sock, self.address = sock, address

    @classmethod
    async def open(cls, peer, mode: bytes):
        import trio
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.bind((HOST, 0))
        return cls(sock, (HOST, peer.port))

    def statistics(self) -> dict:
        return {}

    async def send(self, data: bytes) -> None:
        await self.sock.sendto(data, self.address)

    async def receive(self, n: int) -> bytes:
        data, _ = await self.sock.recvfrom(65536)
        return _datagram_of(data, n)

    async def close(self) -> None:
        self.sock.close()


def _datagram_of(data: bytes, n: int) -> bytes:
    if len(data) != n:
        raise RuntimeError(f"expected a {n}-byte datagram, got {len(data)}")
    return data


class Peer:
    """What a client needs to reach the server of one transport."""

    def __init__(self, kind: str, port: int, peer_id: str, certdir: str,
                 stt_config: dict | None = None) -> None:
        self.kind, self.port = kind, port
        self.backend = backend(kind)
        self.stt_config = stt_config or {}
        self.peer_id = bytes.fromhex(peer_id) if peer_id else b""
        self.node = None
        if kind in STT_BACKENDS:
            self.conn = _SttConn
        elif kind in UDP_BACKENDS:
            self.conn = _TrioUdpConn if self.backend == "trio" else _UdpConn
        elif kind in ("aioquic", "qh3"):
            _, self.connect, QuicConfiguration = _quic_lib(kind)
            cafile = os.path.join(certdir, "ca.pem")

            def make_config():
                config = QuicConfiguration(is_client=True, alpn_protocols=ALPN,
                                           server_name="localhost")
                config.load_verify_locations(cafile)
                return config
            self.make_config = make_config
            self.conn = _QuicConn
        else:
            self.ssl_context = _tls_client_context(certdir)
            self.conn = _TlsConn

    async def start(self) -> None:
        if self.kind in STT_BACKENDS:
            self.node = _stt_node_class(self.kind)(shared_seed=SEED, host=HOST,
                                                   max_pending_connects=100_000,
                                                   **self.stt_config)
            await self.node.start()

    async def stop(self) -> None:
        if self.node is not None:
            await self.node.stop()

    def open(self, mode: bytes):
        return self.conn.open(self, mode)


# -- the three phases --------------------------------------------------------------------------


async def phase_bulk(peer: Peer, mib: float, chunk: int, repeat: int = 1) -> dict:
    """The best of ``repeat`` transfers, each on a new connection (all rates kept)."""
    runs = []
    for _ in range(max(1, repeat)):
        runs.append(await _bulk_once(peer, mib, chunk))
    best = max(runs, key=lambda r: r["mb_s"])
    return dict(best, runs_mb_s=[round(r["mb_s"], 1) for r in runs])


async def _bulk_once(peer: Peer, mib: float, chunk: int) -> dict:
    total = int(mib * (1 << 20))
    block = os.urandom(1 << 20)
    pieces = []
    expected = hashlib.sha256()
    sent = 0
    while sent < total:  # chunks cut from a random MiB, at shifting offsets
        size = min(chunk, total - sent)
        offset = (sent * 7919) % ((1 << 20) - size + 1)
        piece = block[offset:offset + size]
        pieces.append(piece)
        expected.update(piece)
        sent += size
    conn = await peer.open(BULK_HEADER.pack(b"B", total))
    try:
        start = time.perf_counter()
        cpu = time.process_time()
        for piece in pieces:
            await conn.send(piece)
        answer = await conn.receive(ANSWER_SIZE)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        extra = conn.statistics()
    finally:
        await conn.close()
    got, server_cpu = BULK_ANSWER.unpack(answer[32:])
    if got != total or answer[:32] != expected.digest():
        raise RuntimeError(f"bulk verification failed: server counted {got} of {total} bytes"
                           f"{'' if got != total else ', digest differs'}")
    return {"bytes": total, "seconds": elapsed, "mb_s": total / elapsed / 1e6,
            "client_cpu": cpu / elapsed, "server_cpu": server_cpu / elapsed,
            "verified": "sha256", **extra}


async def phase_echo(peer: Peer, seconds: float) -> dict:
    conn = await peer.open(b"E")
    request = os.urandom(ECHO_SIZE)
    try:
        # warm up
        for _ in range(20):
            await conn.send(request)
            if await conn.receive(ECHO_SIZE) != request:
                raise RuntimeError("echo answer differs")
        count = 0
        start = time.perf_counter()
        cpu = time.process_time()
        deadline = start + seconds
        now = start
        while now < deadline:
            await conn.send(request)
            if await conn.receive(ECHO_SIZE) != request:
                raise RuntimeError("echo answer differs")
            count += 1
            if count % 64 == 0:
                now = time.perf_counter()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    finally:
        await conn.close()
    return {"round_trips": count, "seconds": elapsed, "rt_s": count / elapsed,
            "client_cpu_us": cpu / count * 1e6}


async def _connect_once(peer: Peer) -> tuple[float, object]:
    start = time.perf_counter()
    conn = await peer.open(b"P")
    if await conn.receive(1) != b"p":
        raise RuntimeError("wrong first byte")
    return time.perf_counter() - start, conn


async def phase_connect(peer: Peer, count: int, seconds: float, concurrency: int) -> dict:
    # one unmeasured connect warms up imports, caches and the server
    _, conn = await _connect_once(peer)
    await conn.close()
    latencies = []
    for _ in range(count):
        latency, conn = await _connect_once(peer)
        latencies.append(latency)
        await conn.close()
    done = 0
    async with _Tasks(peer.backend, timeout=10) as closing:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                _, conn = await _connect_once(peer)
                done += 1
                closing.start_soon(conn.close)  # closing is not timed

        async with anyio.create_task_group() as workers:
            for _ in range(concurrency):
                workers.start_soon(worker)
        elapsed = time.perf_counter() - start
    return {"connect_ms": statistics.median(latencies) * 1e3,
            "connect_p90_ms": sorted(latencies)[int(0.9 * (len(latencies) - 1))] * 1e3,
            "handshakes": done, "handshake_seconds": elapsed, "hs_s": done / elapsed}


async def run_client(kind: str, port: int, peer_id: str, certdir: str, opts: dict) -> dict:
    peer = Peer(kind, port, peer_id, certdir, opts.get("stt_config"))
    await peer.start()
    results: dict = {}
    phases = [
        ("bulk", lambda: phase_bulk(peer, opts["mib"], opts["chunk"], opts.get("repeat", 1)),
         (30 + 2.0 * opts["mib"]) * opts.get("repeat", 1)),
        ("echo", lambda: phase_echo(peer, opts["seconds"]), 30 + opts["seconds"]),
        ("connect", lambda: phase_connect(peer, opts["connects"], opts["seconds"],
                                          opts["concurrency"]), 60 + opts["seconds"]),
    ]
    try:
        for name, phase, timeout in phases:
            if name not in opts["phases"]:
                continue
            try:
                with anyio.fail_after(timeout):
                    results[name] = await phase()
            except TimeoutError:
                results[name] = {"error": f"timed out after {timeout:.0f} s"}
            except Exception as exc:  # one phase failing must not hide the others
                exc = _sole(exc)
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        with contextlib.suppress(Exception), anyio.move_on_after(10, shield=True):
            await peer.stop()
    return results


def _sole(exc: BaseException) -> BaseException:
    """The exception inside groups of one (a task group's failure), for the report."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run(main, *args, kind: str, use_uvloop: bool = False):
    """``main(*args)`` on the backend of ``kind``: ``trio.run`` for the trio
    row; else ``asyncio.run``, or ``uvloop.run``, as an asyncio program would
    (anyio's calls work inside either)."""
    if backend(kind) == "trio":
        import trio
        return trio.run(main, *args)
    if use_uvloop:
        import uvloop
        return uvloop.run(main(*args))
    return asyncio.run(main(*args))


def main_server(kind: str, certdir: str, use_uvloop: bool, profile: str | None,
                stt_config: dict | None = None) -> int:
    if kind in STT_BACKENDS:
        run(run_stt_server, kind, profile, stt_config, kind=kind, use_uvloop=use_uvloop)
    elif kind in UDP_BACKENDS:
        run(run_udp_server, kind, profile, kind=kind, use_uvloop=use_uvloop)
    else:
        run(run_server, kind, certdir, profile, kind=kind, use_uvloop=use_uvloop)
    return 0


def main_client(kind: str, port: int, peer_id: str, certdir: str, use_uvloop: bool,
                opts: dict, profile: str | None) -> int:
    args = (run_client, kind, port, peer_id, certdir, opts)
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        results = profiler.runcall(run, *args, kind=kind, use_uvloop=use_uvloop)
        profiler.dump_stats(profile)
    else:
        results = run(*args, kind=kind, use_uvloop=use_uvloop)
    json.dump(results, sys.stdout)
    return 0
