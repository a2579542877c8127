"""stt_io._udp.DatagramSocket over real loopback sockets.

Every wait is a bounded ``select`` on the socket, never a sleep. Over loopback the
kernel hands a sent datagram to the receiving socket before ``sendto`` returns, so
the waits are short; the bound only matters when something is broken.
"""

from __future__ import annotations

import contextlib
import errno
import random
import select
import socket
import sys
from collections.abc import Iterator

import pytest

from stt_io import _udp
from stt_io._udp import DatagramSocket

WAIT = 2.0  # upper bound for any wait on loopback, in seconds


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _offload_supported() -> bool:
    try:
        DatagramSocket(gso=True, gro=True).close()
    except OSError:
        return False
    return True


HAVE_IPV6 = _ipv6_loopback()
HAVE_OFFLOAD = _offload_supported()
needs_ipv6 = pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback")
needs_offload = pytest.mark.skipif(not HAVE_OFFLOAD, reason="kernel lacks UDP GSO/GRO")

HOSTS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param("::1", id="ipv6", marks=needs_ipv6),
]
MODES = [
    pytest.param((False, False), id="plain"),
    pytest.param((True, True), id="gso+gro", marks=needs_offload),
    pytest.param((True, False), id="gso", marks=needs_offload),
    pytest.param((False, True), id="gro", marks=needs_offload),
]

GSO_MODES = [
    pytest.param(False, id="plain"),
    pytest.param(True, id="gso+gro", marks=needs_offload),
]


@contextlib.contextmanager
def socket_pair(
    host: str = "127.0.0.1", gso: bool | None = False, gro: bool | None = False
) -> Iterator[tuple[DatagramSocket, DatagramSocket]]:
    with DatagramSocket(host, gso=gso, gro=gro) as a, DatagramSocket(host, gso=gso, gro=gro) as b:
        yield a, b


def closed_port(host: str) -> int:
    """A UDP port on host that nothing listens on (bound, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def receive_exactly(sock: DatagramSocket, count: int) -> list[tuple[bytes, tuple]]:
    received: list[tuple[bytes, tuple]] = []
    while len(received) < count:
        if not select.select([sock], [], [], WAIT)[0]:
            break
        batch = sock.receive()
        if not batch and not select.select([sock], [], [], WAIT)[0]:
            break
        received += batch
    return received


def wait_for_errors(sock: DatagramSocket) -> list[tuple[tuple, OSError]]:
    """Errors, once the ICMP reply made the socket readable (EPOLLERR)."""
    found = sock.errors()
    while not found and select.select([sock], [], [], WAIT)[0]:
        found = sock.errors()
    return found


def send_all(sender: DatagramSocket, receiver: DatagramSocket, datagrams: list) -> list:
    """Send in chunks small enough for the receive buffer, collecting as we go."""
    received = []
    for start in range(0, len(datagrams), 40):
        chunk = datagrams[start : start + 40]
        assert sender.send(chunk) == len(chunk)
        received += receive_exactly(receiver, len(chunk))
    return received


def mixed_datagrams(host: str, address: tuple, count: int = 300) -> list[tuple[bytes, tuple]]:
    """Runs of equal sizes (GSO material), odd sizes, empty and maximal datagrams."""
    rng = random.Random(7)
    largest = 65527 if ":" in host else 65507
    sizes = [0, 1, 1452, largest]
    while len(sizes) < count:
        size = rng.choice([0, 1, 100, 1200, 1452, 1452, 1452, 9000, largest])
        sizes += [size] * rng.choice([1, 1, 3, 10, 70])
        if size and rng.random() < 0.3:
            sizes.append(rng.randrange(1, size + 1))  # a shorter tail ends a GSO run
    return [(random.Random(i).randbytes(size), address) for i, size in enumerate(sizes[:count])]


# -- data path ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("host", HOSTS)
def test_round_trip_in_order(host: str, mode: tuple[bool, bool]) -> None:
    gso, gro = mode
    with socket_pair(host, gso, gro) as (a, b):
        assert (a.gso, a.gro) == (gso, gro)
        datagrams = mixed_datagrams(host, b.address)
        received = send_all(a, b, datagrams)
        assert [data for data, _ in received] == [data for data, _ in datagrams]
        assert all(type(data) is bytes for data, _ in received)
        assert {addr for _, addr in received} == {a.address}
        assert a.errors() == [] and b.errors() == []


@needs_offload
@pytest.mark.parametrize("host", HOSTS)
def test_offload_and_plain_deliver_identical_data(host: str) -> None:
    results = []
    for offload in (True, False):
        with socket_pair(host, offload, offload) as (a, b):
            datagrams = mixed_datagrams(host, b.address, count=400)
            results.append([data for data, _ in send_all(a, b, datagrams)])
            if offload:
                assert a.statistics()["gso_sends"] > 0
                assert b.statistics()["gro_batches"] > 0
            else:
                assert a.statistics()["gso_sends"] == b.statistics()["gro_batches"] == 0
    assert results[0] == results[1] == [data for data, _ in datagrams]


@needs_offload
def test_gso_runs_are_bounded_and_split_by_address() -> None:
    with socket_pair(gso=True, gro=True) as (a, b), DatagramSocket(gso=False, gro=False) as c:
        datagrams = [(bytes([i]) * 1000, b.address) for i in range(150)]
        datagrams[70:70] = [(b"to c", c.address)]
        assert a.send(datagrams) == len(datagrams)
        # 70 to b (64 + 6), 1 to c, 80 to b (64 + 16): four sendmsg runs.
        assert a.statistics()["gso_sends"] == 4
        assert [data for data, _ in receive_exactly(b, 150)] == [
            data for data, addr in datagrams if addr == b.address
        ]
        assert receive_exactly(c, 1) == [(b"to c", a.address)]


def test_receive_is_bounded() -> None:
    with socket_pair() as (a, b):
        assert a.send([(bytes([i]), b.address) for i in range(50)]) == 50
        select.select([b], [], [], WAIT)
        first = b.receive(max_datagrams=20)
        assert [data for data, _ in first] == [bytes([i]) for i in range(20)]
        rest = receive_exactly(b, 30)
        assert [data for data, _ in rest] == [bytes([i]) for i in range(20, 50)]
        assert b.receive() == []


# -- errors -------------------------------------------------------------------


@pytest.mark.parametrize("gso", GSO_MODES)
@pytest.mark.parametrize("host", HOSTS)
def test_port_unreachable_is_reported_with_destination(host: str, gso: bool) -> None:
    port = closed_port(host)
    with socket_pair(host, gso, gso) as (a, b):
        assert a.send([(b"anyone?", (host, port))]) == 1
        errors = wait_for_errors(a)
        assert len(errors) == 1
        addr, exc = errors[0]
        assert addr == (host, port)
        assert isinstance(exc, ConnectionRefusedError)
        assert exc.errno == errno.ECONNREFUSED
        assert a.statistics()["errors"] == 1
        # The socket is not left readable (the error queue was drained).
        assert select.select([a], [], [], 0)[0] == []
        assert a.send([(b"still works", b.address)]) == 1
        assert receive_exactly(b, 1) == [(b"still works", a.address)]


@pytest.mark.parametrize("gso", GSO_MODES)
def test_pending_icmp_error_does_not_eat_the_next_datagram(gso: bool) -> None:
    # Linux also stores the ICMP error as the socket's pending error, which the
    # next sendto returns instead of sending: send() must retry it.
    port = closed_port("127.0.0.1")
    with socket_pair(gso=gso, gro=gso) as (a, b):
        a.send([(b"refused", ("127.0.0.1", port))])
        assert select.select([a], [], [], WAIT)[0]  # the ICMP error arrived
        batch = [(b"x" * 100, b.address)] * 3
        assert a.send(batch) == 3
        assert [data for data, _ in receive_exactly(b, 3)] == [b"x" * 100] * 3
        assert [(addr, type(exc)) for addr, exc in a.errors()] == [
            (("127.0.0.1", port), ConnectionRefusedError)
        ]


def test_receive_drains_error_queue_instead_of_raising() -> None:
    port = closed_port("127.0.0.1")
    with socket_pair() as (a, b):
        a.send([(b"refused", ("127.0.0.1", port))])
        assert select.select([a], [], [], WAIT)[0]
        b.send([(b"hello", a.address)])
        assert a.receive() == [(b"hello", b.address)]  # the pending error is skipped
        a.receive()
        # Nothing left to wake a level-triggered loop.
        assert select.select([a], [], [], 0)[0] == []
        assert [addr for addr, _ in a.errors()] == [("127.0.0.1", port)]
        assert a.errors() == []


@pytest.mark.parametrize("mode", MODES)
def test_failed_datagrams_do_not_stop_the_rest(mode: tuple[bool, bool]) -> None:
    with socket_pair("127.0.0.1", *mode) as (a, b):
        good = [(b"g%d" % i, b.address) for i in range(6)]
        bad = [
            (b"port zero", ("127.0.0.1", 0)),
            (b"needs dns", ("localhost", b.address[1])),
            (b"too big" * 10000, b.address),
            (b"not an address", "127.0.0.1"),
        ]
        datagrams = [good[0], bad[0], good[1], good[2], bad[1], bad[2], good[3], bad[3], *good[4:]]
        assert a.send(datagrams) == len(datagrams)
        assert [data for data, _ in receive_exactly(b, 6)] == [data for data, _ in good]
        errors = a.errors()
        assert [addr for addr, _ in errors] == [addr for _, addr in bad]
        assert errors[0][1].errno == errno.EINVAL
        assert isinstance(errors[1][1], socket.gaierror)
        assert errors[2][1].errno == errno.EMSGSIZE
        assert errors[3][1].errno == errno.EINVAL
        stats = a.statistics()
        assert stats["datagrams_sent"] == 6 and stats["errors"] == 4


def test_pending_errors_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_udp, "MAX_PENDING_ERRORS", 3)
    with DatagramSocket() as a:
        assert a.send([(b"x", ("127.0.0.1", 0))] * 5) == 5
        assert len(a.errors()) == 3
        assert a.statistics()["errors"] == 5
        assert a.statistics()["errors_dropped"] == 2


# -- would block ----------------------------------------------------------------


class ChokingSocket:
    """Wraps the real socket; its sends fail with ``error`` once ``budget`` calls
    have gone through. Over loopback a real socket never blocks on send (the
    loopback device releases each datagram's send-buffer charge as it hands it
    to the receiver), so a tiny SO_SNDBUF cannot make the kernel say EAGAIN."""

    def __init__(self, sock: socket.socket, budget: int, error: int = errno.EAGAIN) -> None:
        self.sock, self.budget, self.error = sock, budget, error

    def _spend(self) -> None:
        if self.budget <= 0:
            raise OSError(self.error, "choked") if self.error != errno.EAGAIN else BlockingIOError(
                errno.EAGAIN, "choked"
            )
        self.budget -= 1

    def sendto(self, *args: object) -> int:
        self._spend()
        return self.sock.sendto(*args)  # type: ignore[call-overload, no-any-return]

    def sendmsg(self, *args: object) -> int:
        self._spend()
        return self.sock.sendmsg(*args)  # type: ignore[arg-type, no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


@pytest.mark.parametrize("error", [errno.EAGAIN, errno.ENOBUFS], ids=["EAGAIN", "ENOBUFS"])
@pytest.mark.parametrize("mode", MODES[:2])
def test_send_stops_when_the_socket_would_block(mode: tuple[bool, bool], error: int) -> None:
    with socket_pair("127.0.0.1", *mode) as (a, b):
        real = a._sock
        # GSO packs equal sizes into runs of 64; odd sizes and a second
        # destination break them up.
        datagrams = [(b"%03d" % i * 400, b.address) for i in range(200)]
        datagrams[37:37] = [(b"odd one", b.address)]
        datagrams[150:150] = [(b"%03d" % i * 400, a.address) for i in range(3)]
        pending, received, rounds = list(datagrams), [], 0
        while pending:
            a._sock = ChokingSocket(real, budget=2, error=error)  # type: ignore[assignment]
            sent = a.send(pending)
            assert 0 < sent <= len(pending)
            received += receive_exactly(b, sum(addr == b.address for _, addr in pending[:sent]))
            pending = pending[sent:]
            rounds += 1
        a._sock = real
        assert [data for data, _ in received] == [
            data for data, addr in datagrams if addr == b.address
        ]
        assert len(receive_exactly(a, 3)) == 3
        assert rounds > 1
        assert a.statistics()["send_would_block"] == rounds - 1
        assert a.statistics()["datagrams_sent"] == len(datagrams)
        assert a.errors() == []


def test_tiny_send_buffer_never_loses_datagrams() -> None:
    # The real-socket counterpart: whatever the kernel does with a tiny buffer,
    # what send() reports as consumed arrives and the rest can be retried.
    with DatagramSocket(send_buffer=1, gso=False, gro=False) as a, DatagramSocket() as b:
        datagrams = [(bytes([i]) * 8000, b.address) for i in range(100)]
        pending, received = list(datagrams), []
        while pending:
            select.select([], [a], [], WAIT)
            sent = a.send(pending[:50])
            pending = pending[sent:]
            received += receive_exactly(b, sent)
        assert received == [(data, a.address) for data, _ in datagrams]


# -- GSO fallback -----------------------------------------------------------------


@needs_ipv6
@needs_offload
def test_gso_falls_back_when_segments_exceed_the_mtu() -> None:
    with socket_pair("::1", True, True) as (a, b):
        # IPV6_MTU (24) lowers this socket's MTU below the segment size: GSO
        # cannot fragment, plain sendto can.
        a._sock.setsockopt(socket.IPPROTO_IPV6, 24, 1280)
        datagrams = [(b"a" * 1452, b.address)] * 10 + [(b"b" * 1000, b.address)] * 10
        assert a.send(datagrams) == 20
        assert a.send(datagrams) == 20
        received = receive_exactly(b, 40)
        assert [data for data, _ in received] == [data for data, _ in datagrams] * 2
        stats = a.statistics()
        assert stats["gso_fallbacks"] == 1  # learnt once, not per call
        assert stats["gso_sends"] == 2  # the 1000-byte runs still use GSO
        assert a.gso and a.errors() == []


@needs_offload
def test_gso_is_switched_off_when_the_kernel_refuses_it() -> None:
    class NoGso(ChokingSocket):
        def sendmsg(self, *args: object) -> int:
            raise OSError(errno.EIO, "no checksum offload")

    with socket_pair(gso=True, gro=True) as (a, b):
        real = a._sock
        a._sock = NoGso(real, budget=1000)  # type: ignore[assignment]
        datagrams = [(b"z" * 500, b.address)] * 10
        assert a.send(datagrams) == 10
        a._sock = real
        assert a.gso is False
        assert a.statistics()["gso_fallbacks"] == 1
        assert len(receive_exactly(b, 10)) == 10


# -- addresses, lifecycle, counters -------------------------------------------------


@needs_ipv6
def test_ipv6_addresses_are_plain_pairs() -> None:
    with socket_pair("::1") as (a, b):
        assert a.family == socket.AF_INET6
        assert a.address == ("::1", a.address[1])
        a.send([(b"hi", ("::1", b.address[1]))])
        assert receive_exactly(b, 1) == [(b"hi", a.address)]


@needs_ipv6
def test_dual_stack_socket_speaks_plain_ipv4_addresses() -> None:
    try:
        dual = DatagramSocket("::", gso=False, gro=False)
    except OSError:
        pytest.skip("cannot bind ::")
    with dual, DatagramSocket("127.0.0.1") as v4:
        if dual.send([(b"to v4", v4.address)]) != 1 or dual.errors():
            pytest.skip("IPv6 socket is not dual-stack here")
        [(data, addr)] = receive_exactly(v4, 1)
        assert data == b"to v4" and addr == ("127.0.0.1", dual.address[1])
        v4.send([(b"back", addr)])
        assert receive_exactly(dual, 1) == [(b"back", v4.address)]


def test_address_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_udp, "MAX_ADDRESS_CACHE", 4)
    with DatagramSocket() as a, DatagramSocket() as b:
        for i in range(10):
            assert a.send([(b"x", ("127.0.0.%d" % (i + 1), b.address[1]))]) == 1
            assert 0 < len(a._addresses) <= 4
        assert receive_exactly(b, 1) == [(b"x", a.address)]  # the rest went elsewhere


def test_close_is_idempotent() -> None:
    a = DatagramSocket()
    assert a.fileno() >= 0 and not a.closed
    a.close()
    a.close()
    assert a.closed and a.fileno() == -1
    with pytest.raises(OSError):
        a.receive()
    with DatagramSocket() as b:
        pass
    assert b.closed


def test_forced_offload_or_clean_failure() -> None:
    # Forcing GSO/GRO either gives them or raises, never a silent plain socket.
    try:
        s = DatagramSocket(gso=True, gro=True)
    except OSError:
        assert not HAVE_OFFLOAD
        return
    with s:
        assert s.gso and s.gro


def test_statistics_count_both_directions() -> None:
    with socket_pair() as (a, b):
        keys = {
            "datagrams_sent", "bytes_sent", "datagrams_received", "bytes_received",
            "gso_sends", "gro_batches", "send_would_block", "errors",
        }
        assert keys <= a.statistics().keys()
        a.send([(b"12345", b.address), (b"", b.address), (b"123", b.address)])
        receive_exactly(b, 3)
        sa, sb = a.statistics(), b.statistics()
        assert (sa["datagrams_sent"], sa["bytes_sent"]) == (3, 8)
        assert (sb["datagrams_received"], sb["bytes_received"]) == (3, 8)
        assert sa["datagrams_received"] == sb["datagrams_sent"] == 0
        sa["datagrams_sent"] = 99  # a copy
        assert a.statistics()["datagrams_sent"] == 3


def test_plain_path_without_linux_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    # What macOS, the BSDs and Windows get: no GSO/GRO, no error queue.
    monkeypatch.setattr(_udp, "_LINUX", False)
    with pytest.raises(OSError):
        DatagramSocket(gso=True)
    with socket_pair(gso=None, gro=None) as (a, b):
        assert (a.gso, a.gro, a._recverr) == (False, False, False)
        datagrams = mixed_datagrams("127.0.0.1", b.address, count=60)
        received = send_all(a, b, datagrams)
        assert [data for data, _ in received] == [data for data, _ in datagrams]


# -- helpers ----------------------------------------------------------------------


def test_address_helpers() -> None:
    normalise, to_sockaddr = _udp._normalise, _udp._to_sockaddr
    assert normalise(("10.0.0.1", 5)) == ("10.0.0.1", 5)
    assert normalise(("2001:db8::1", 5, 123, 0)) == ("2001:db8::1", 5)
    assert normalise(("::ffff:10.0.0.1", 5, 0, 0)) == ("10.0.0.1", 5)
    lo = socket.if_indextoname(1) if hasattr(socket, "if_indextoname") else "1"
    assert normalise(("fe80::1", 5, 0, 1)) == (f"fe80::1%{lo}", 5)
    assert to_sockaddr(("10.0.0.1", 5), socket.AF_INET) == ("10.0.0.1", 5)
    assert to_sockaddr(("10.0.0.1", 5), socket.AF_INET6) == ("::ffff:10.0.0.1", 5)
    assert to_sockaddr((f"fe80::1%{lo}", 5), socket.AF_INET6)[3] == 1
    for bad, family in [
        (("example.com", 5), socket.AF_INET),
        (("::1", 5), socket.AF_INET),
        (("10.0.0.1", 70000), socket.AF_INET),
        ((b"10.0.0.1", 5), socket.AF_INET),
        (("10.0.0.1",), socket.AF_INET),
        (("example.com", 5), socket.AF_INET6),
    ]:
        with pytest.raises(OSError):
            to_sockaddr(bad, family)


def test_extended_error_parsing() -> None:
    # struct sock_extended_err for ICMP "fragmentation needed" (type 3 code 4,
    # MTU in ee_info) followed by the offender's sockaddr_in.
    offender = socket.AF_INET.to_bytes(2, sys.byteorder) + bytes(2) + socket.inet_aton("192.0.2.1")
    data = _udp._EXTENDED_ERR.pack(errno.EMSGSIZE, 2, 3, 4, 0, 1400, 0) + offender + bytes(8)
    parsed = _udp._parse_extended_error(data)
    assert parsed is not None
    exc, origin = parsed
    assert origin == _udp.SO_EE_ORIGIN_ICMP and exc.errno == errno.EMSGSIZE
    assert "mtu=1400" in str(exc) and "192.0.2.1" in str(exc)
    assert _udp._parse_extended_error(data[:10]) is None
    assert _udp._parse_extended_error(_udp._EXTENDED_ERR.pack(0, 2, 0, 0, 0, 0, 0)) is None
