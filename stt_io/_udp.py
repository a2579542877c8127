"""A non-blocking UDP socket with batched I/O, shared by the asyncio and trio adapters.

Theory of operation
-------------------
:class:`DatagramSocket` owns one bound, non-blocking UDP socket and knows nothing
about event loops: the adapter registers :meth:`DatagramSocket.fileno` with its
loop (``loop.add_reader``, ``trio.lowlevel.wait_readable``) and, whenever the
socket is readable, calls :meth:`~DatagramSocket.receive` (which drains up to
``max_datagrams`` datagrams in one go, instead of the one-datagram-per-wakeup of
the stock transports) and :meth:`~DatagramSocket.errors`. It hands whatever
``Endpoint.datagrams_to_send`` returned to :meth:`~DatagramSocket.send`, which
reports how many it consumed; if that is fewer than given, the socket would
block, so the adapter keeps the rest and waits for writability. No call ever
blocks and nothing here allocates without bound: see the ``MAX_*`` constants
and :meth:`~DatagramSocket.statistics` for the counters.

Addresses are ``(host, port)`` 2-tuples with a *numeric* host, in both
directions and for both families, so they compare equal to what the engine was
given. IPv6 flow info is dropped; a non-zero scope id is kept as ``"%ifname"`` in
the host (``fe80::1%eth0``), which is also how a link-local address must be given
to :meth:`~DatagramSocket.send`. On a dual-stack IPv6 socket (bound to ``::``),
IPv4 peers appear as plain dotted quads, and plain dotted quads given to
:meth:`~DatagramSocket.send` are mapped to ``::ffff:a.b.c.d``. Names are never
resolved when sending (that would block): a non-numeric host is reported as a
``socket.gaierror`` for that datagram.

Linux specifics
---------------
*Generic segmentation offload* (``UDP_SEGMENT``, Linux >= 4.18). ``send()``
cuts the list into runs of consecutive datagrams to the same address in which all
but the last have the same size (the last may be shorter), at most
:data:`GSO_MAX_SEGMENTS` datagrams and :data:`GSO_MAX_BYTES` bytes, and sends each
run with one ``sendmsg`` carrying a ``UDP_SEGMENT`` control message; the kernel
(or the NIC) splits it back into ordinary datagrams, so the peer needs nothing
special. The kernel refuses a run if the segment size does not fit the route's
MTU (GSO cannot fragment; ``EINVAL`` for IPv4, ``EMSGSIZE`` for IPv6), and with
``EIO`` if the egress device has no checksum offload or the route goes through
IPsec. Any such failure re-sends the run one datagram at a time (so a datagram
larger than the MTU is fragmented as usual); if that works, the failure was GSO's
fault and is remembered for the socket: a lower segment-size cap for the
MTU errors (the cap is per socket, not per route), GSO off altogether for the
others. The segment limit is 64 up to Linux 6.12 and 128 since; we use 64
everywhere.

*Generic receive offload* (``UDP_GRO``, Linux >= 5.0). The kernel may hand one
``recvmsg`` a buffer of several datagrams of one flow, all the same size but the
last, with the size in a ``UDP_GRO`` control message; ``receive()`` splits it.
Datagrams sent with GSO over loopback arrive still coalesced, which is where the
loopback gains come from; from real NICs the driver's GRO coalesces. Without
``UDP_GRO`` set the kernel splits such buffers itself before queueing them.

*ICMP errors* (``IP_RECVERR``/``IPV6_RECVERR``). Without them Linux drops ICMP
errors for unconnected UDP sockets. With them, each error is queued on the
socket's *error queue* as a message whose ``msg_name`` is the destination of the
datagram that failed and whose ``IP_RECVERR`` control message is a
``struct sock_extended_err`` (errno, origin, ICMP type and code, MTU for
"fragmentation needed") followed by the address of the node that sent the ICMP.
:meth:`~DatagramSocket.errors` reads it with ``MSG_ERRQUEUE``. Two side effects
matter:

- The error also sets the socket's pending error (``sk_err``), which the *next*
  ``sendto`` or ``recvfrom`` on the socket returns instead of doing its job, no
  matter which peer it was for. ``send()`` therefore retries a datagram once
  after such an "asynchronous" errno (and then reads the queue, which holds the
  real, attributable error); ``receive()`` skips it. Reading the whole error queue
  also clears ``sk_err``.
- A non-empty error queue makes the socket report ``EPOLLERR``, which epoll and
  select deliver as *readable*. An adapter that never drained it would spin, so
  ``receive()`` drains the queue (into the list :meth:`~DatagramSocket.errors`
  returns) whenever it is called and finds no data.

With ``IP_RECVERR`` the kernel also reports ``ENOBUFS`` (a full device queue
dropped the datagram) instead of hiding it; ``send()`` treats it like
``EAGAIN`` so the datagram is retried.

Elsewhere (macOS, BSD, Windows) the plain path uses ``sendto`` and
``recvfrom`` only, ``gso`` and ``gro`` are false, and ICMP errors are not
reported (Windows' spurious ``WSAECONNRESET`` on ``recvfrom`` is switched off with
``SIO_UDP_CONNRESET`` where available, and skipped otherwise). Python retries
``EINTR`` itself (PEP 475), so no method raises :class:`InterruptedError`.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from typing import Any

__all__ = ["DatagramSocket"]

Address = Any  # (host, port) with a numeric host; see the module docstring

# Linux constants the socket module does not always export (include/uapi/linux/udp.h,
# include/uapi/linux/in.h, include/uapi/linux/in6.h, include/uapi/linux/errqueue.h),
# as plain ints: the socket module's IntFlag members are slow in hot loops.
SOL_UDP = int(getattr(socket, "SOL_UDP", 17))
UDP_SEGMENT = int(getattr(socket, "UDP_SEGMENT", 103))
UDP_GRO = int(getattr(socket, "UDP_GRO", 104))
SOL_IP = int(getattr(socket, "SOL_IP", 0))
SOL_IPV6 = int(getattr(socket, "SOL_IPV6", 41))
IP_RECVERR = int(getattr(socket, "IP_RECVERR", 11))
IPV6_RECVERR = int(getattr(socket, "IPV6_RECVERR", 25))
MSG_ERRQUEUE = int(getattr(socket, "MSG_ERRQUEUE", 0x2000))
MSG_TRUNC = int(getattr(socket, "MSG_TRUNC", 0x20))
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3

#: At most this many datagrams go in one GSO ``sendmsg`` (Linux's ``UDP_MAX_SEGMENTS``
#: was 64 before 6.13).
GSO_MAX_SEGMENTS = 64
#: At most this many payload bytes go in one GSO ``sendmsg``: a run is one IP packet
#: until it is segmented, so 65535 minus the IPv4 and UDP headers.
GSO_MAX_BYTES = 65507
#: The size of every read: any UDP payload (IPv6 allows 65527 bytes) or one
#: coalesced GRO buffer (at most 64 KiB) fits, so nothing is truncated. Each read
#: lets CPython allocate the result and shrink it to size, which measured faster
#: than reading into one reused bytearray and copying out (the returned datagrams
#: must be independent ``bytes`` either way).
RECEIVE_BUFFER_SIZE = 65536
#: Errors kept for :meth:`DatagramSocket.errors` between calls; more are counted
#: in ``errors_dropped`` and discarded.
MAX_PENDING_ERRORS = 1024
#: Error-queue messages read per drain, so one call stays bounded.
MAX_ERRQUEUE_READS = 256
#: Validated destination addresses remembered by ``send()``; the cache is emptied
#: when full.
MAX_ADDRESS_CACHE = 4096

# errnos a socket call can return because of an *earlier* ICMP error (the socket's
# pending sk_err; see icmp_err_convert in net/ipv4/icmp.c and icmpv6_err_convert),
# or, on Windows, because of an earlier port unreachable.
_ASYNC_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN",
        "ENONET", "ENOPROTOOPT", "EMSGSIZE", "EOPNOTSUPP", "EPROTO", "EACCES",
    )
    if hasattr(errno, name)
)
_WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})

# struct sock_extended_err { u32 ee_errno; u8 ee_origin, ee_type, ee_code, ee_pad;
#                            u32 ee_info; u32 ee_data; } then the offender sockaddr.
_EXTENDED_ERR = struct.Struct("=IBBBBII")
_ERRQUEUE_ANCBUFSIZE = 256  # room for the struct, a sockaddr_in6 and then some
_GRO_ANCBUFSIZE = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 64
_ICMP_FRAG_NEEDED = {(SO_EE_ORIGIN_ICMP, 3, 4), (SO_EE_ORIGIN_ICMP6, 2, 0)}

_LINUX = sys.platform.startswith("linux")

# _send_run outcomes besides an errno (always positive).
_SENT = 0
_BLOCKED = -1
_PLAIN = -2


class DatagramSocket:
    """A bound, non-blocking UDP socket that reads and writes datagrams in batches.

    It never blocks and never touches an event loop: register :meth:`fileno` with
    one and call :meth:`receive`/:meth:`errors` when it is readable and
    :meth:`send` again when it is writable.

    Args:
        host: numeric address (or a name, resolved once, here) to bind to; its
            family decides the socket's. ``""`` binds the wildcard.
        port: port to bind, 0 for any.
        recv_buffer: ``SO_RCVBUF`` to ask for (the kernel may cap it).
        send_buffer: ``SO_SNDBUF`` to ask for (the kernel may cap it).
        gso: use ``UDP_SEGMENT`` for sending: ``None`` probes for it, ``True``
            requires it.
        gro: use ``UDP_GRO`` for receiving: ``None`` probes for it, ``True``
            requires it.

    Raises:
        OSError: the socket could not be created or bound, or ``gso``/``gro`` is
            ``True`` and the kernel does not support it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        recv_buffer: int = 4 << 20,
        send_buffer: int = 4 << 20,
        gso: bool | None = None,
        gro: bool | None = None,
    ) -> None:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            host or None, port, socket.AF_UNSPEC, socket.SOCK_DGRAM, 0, socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for option, size in ((socket.SO_RCVBUF, recv_buffer), (socket.SO_SNDBUF, send_buffer)):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, size)
                except OSError:
                    pass  # best effort: the kernel default still works
            self._recverr = _LINUX and _enable_recverr(sock, family)
            if sys.platform == "win32" and hasattr(socket, "SIO_UDP_CONNRESET"):
                try:
                    sock.ioctl(socket.SIO_UDP_CONNRESET, False)  # type: ignore[attr-defined]
                except OSError:
                    pass
            use_gso = _enable_option(sock, UDP_SEGMENT, 0, gso, "UDP_SEGMENT (GSO)")
            use_gro = _enable_option(sock, UDP_GRO, 1, gro, "UDP_GRO (GRO)")
            sock.bind(sockaddr)
            self.address: Address = _normalise(sock.getsockname())
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.family: int = family
        #: Whether ``send()`` uses GSO; it turns false if GSO fails at run time.
        self.gso: bool = use_gso
        #: Whether the socket asked for GRO, so ``receive()`` splits coalesced reads.
        self.gro: bool = use_gro
        self._closed = False
        self._gso_max_segment = GSO_MAX_BYTES  # lowered when a route's MTU says so
        self._addresses: dict[Address, Any] = {}
        self._pending_errors: list[tuple[Address, OSError]] = []
        self._stats = dict.fromkeys(
            (
                "datagrams_sent", "bytes_sent", "datagrams_received", "bytes_received",
                "gso_sends", "gso_fallbacks", "gro_batches", "send_would_block",
                "errors", "errors_dropped", "datagrams_truncated",
            ),
            0,
        )

    # -- plumbing -------------------------------------------------------------

    def fileno(self) -> int:
        """The file descriptor to wait on (``-1`` once closed)."""
        return self._sock.fileno()

    def close(self) -> None:
        """Close the socket. Calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._sock.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def __enter__(self) -> DatagramSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self.fileno()}"
        return f"<DatagramSocket {self.address!r} {state} gso={self.gso} gro={self.gro}>"

    def statistics(self) -> dict[str, int]:
        """Counters since creation.

        ``datagrams_sent``/``bytes_sent`` and ``datagrams_received``/
        ``bytes_received`` count payloads; ``gso_sends`` the ``sendmsg`` calls that
        carried several datagrams, ``gso_fallbacks`` the GSO runs re-sent one by one;
        ``gro_batches`` the reads that returned a coalesced buffer;
        ``send_would_block`` the ``send()`` calls that stopped early; ``errors`` the
        errors recorded for :meth:`errors` (``errors_dropped`` those discarded past
        :data:`MAX_PENDING_ERRORS`); ``datagrams_truncated`` the reads dropped
        because they did not fit the buffer.
        """
        return dict(self._stats)

    # -- receiving ------------------------------------------------------------

    def receive(self, max_datagrams: int = 256) -> list[tuple[bytes, Address]]:
        """Read every queued datagram, up to about ``max_datagrams``; never blocks.

        Call it when the socket is readable, then :meth:`errors`. A coalesced GRO
        read is always returned whole, so the list can exceed ``max_datagrams`` by
        less than one such read (at most 127 datagrams).

        Returns:
            ``(data, (host, port))`` pairs in arrival order; each ``data`` is an
            independent :class:`bytes`. Empty when nothing was queued.

        Raises:
            OSError: an unexpected socket error with nothing read yet (a closed
                socket raises ``EBADF``). Errors caused by ICMP messages never
                raise: they are queued for :meth:`errors`.
        """
        if not self.gro:
            return self._receive_plain(max_datagrams)
        recvmsg = self._sock.recvmsg
        normalise = _normalise if self.family == socket.AF_INET6 else None
        received: list[tuple[bytes, Address]] = []
        append = received.append
        total = truncated = coalesced = attempts = 0
        while len(received) < max_datagrams and attempts < max_datagrams:
            attempts += 1
            try:
                data, ancdata, flags, addr = recvmsg(RECEIVE_BUFFER_SIZE, _GRO_ANCBUFSIZE)
            except BlockingIOError:
                if attempts == 1 and self._recverr:
                    # Woken with nothing to read: probably EPOLLERR from a
                    # non-empty error queue, which would wake us forever.
                    self._drain_error_queue()
                break
            except OSError as exc:
                if exc.errno in _ASYNC_ERRNOS:
                    # An earlier ICMP error (the socket's pending sk_err), not
                    # this read's; the queued datagrams are still there.
                    if self._recverr:
                        self._drain_error_queue()
                    continue
                if received:
                    break  # hand over what we have; the error will come back
                raise
            if flags & MSG_TRUNC:  # cannot happen with a 64 KiB buffer, but never split a stump
                truncated += 1
                continue
            if normalise is not None:
                addr = normalise(addr)
            nbytes = len(data)
            total += nbytes
            segment = 0
            for level, kind, value in ancdata:
                if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
                    segment = int.from_bytes(value[:4], sys.byteorder)
            if 0 < segment < nbytes:
                coalesced += 1
                for offset in range(0, nbytes, segment):
                    append((data[offset : offset + segment], addr))
            else:
                append((data, addr))
        stats = self._stats
        stats["datagrams_received"] += len(received)
        stats["bytes_received"] += total
        stats["gro_batches"] += coalesced
        stats["datagrams_truncated"] += truncated
        return received

    def _receive_plain(self, max_datagrams: int) -> list[tuple[bytes, Address]]:
        """receive() without GRO: recvfrom already returns the (data, addr) pairs."""
        recvfrom = self._sock.recvfrom
        received: list[tuple[bytes, Address]] = []
        append = received.append
        remaining = max_datagrams
        while remaining > 0:
            try:
                while remaining > 0:
                    remaining -= 1
                    append(recvfrom(RECEIVE_BUFFER_SIZE))
            except BlockingIOError:
                if remaining == max_datagrams - 1 and self._recverr:
                    self._drain_error_queue()  # see receive()
                break
            except OSError as exc:
                if exc.errno in _ASYNC_ERRNOS:
                    if self._recverr:
                        self._drain_error_queue()  # see receive()
                    continue
                if received:
                    break
                raise
        if received and self.family == socket.AF_INET6:
            received = [(data, _normalise(addr)) for data, addr in received]
        stats = self._stats
        stats["datagrams_received"] += len(received)
        stats["bytes_received"] += sum([len(data) for data, _ in received])
        return received

    # -- errors ---------------------------------------------------------------

    def errors(self) -> list[tuple[Address, OSError]]:
        """Return the errors since the last call; never blocks.

        These are the per-datagram errors :meth:`send` met (``EMSGSIZE``, an
        unreachable network, an invalid address) and, on Linux, the ICMP errors
        read from the socket's error queue (port unreachable gives
        :class:`ConnectionRefusedError`; "fragmentation needed" / "packet too big"
        gives ``EMSGSIZE`` with the MTU in the message). Call it after
        :meth:`receive` whenever the socket was readable.

        Returns:
            ``((host, port), error)`` pairs, oldest first, where the address is
            the destination of the datagram that failed. Empty when there are none.
        """
        if self._recverr and not self._closed:
            self._drain_error_queue()
        pending, self._pending_errors = self._pending_errors, []
        return pending

    def take_errors(self) -> list[tuple[Address, OSError]]:
        """Like :meth:`errors`, without a system call: only the errors that
        :meth:`receive` and :meth:`send` have already collected.

        :meth:`receive` reads the error queue whenever the kernel signals an
        error (a read fails with it, or a wake-up finds no datagram), so a caller
        that takes errors after every :meth:`receive` misses none and saves one
        ``recvmsg`` per wake-up.
        """
        if not self._pending_errors:
            return []
        pending, self._pending_errors = self._pending_errors, []
        return pending

    def _record_error(self, addr: Address, exc: OSError) -> None:
        self._stats["errors"] += 1
        if len(self._pending_errors) < MAX_PENDING_ERRORS:
            self._pending_errors.append((addr, exc))
        else:
            self._stats["errors_dropped"] += 1

    def _drain_error_queue(self) -> None:
        """Move up to MAX_ERRQUEUE_READS error-queue messages to the pending list."""
        recvmsg = self._sock.recvmsg
        for _ in range(MAX_ERRQUEUE_READS):
            try:
                # The payload is the start of the failed datagram: not wanted.
                _, ancdata, _, addr = recvmsg(0, _ERRQUEUE_ANCBUFSIZE, MSG_ERRQUEUE)
            except OSError:
                return  # EAGAIN: empty (nothing else is expected from MSG_ERRQUEUE)
            for level, kind, data in ancdata:
                if (level, kind) in ((SOL_IP, IP_RECVERR), (SOL_IPV6, IPV6_RECVERR)):
                    parsed = _parse_extended_error(data)
                    # Local errors (EMSGSIZE on send) were already raised by the
                    # sendto that caused them, and carry no destination port.
                    if parsed is not None and addr and parsed[1] != SO_EE_ORIGIN_LOCAL:
                        self._record_error(_normalise(addr), parsed[0])

    # -- sending --------------------------------------------------------------

    def send(self, datagrams: list[tuple[bytes, Address]]) -> int:
        """Send datagrams in order, until the socket would block; never blocks.

        With GSO, runs of datagrams to one address go out in single system calls
        (see the module docstring). A datagram that fails for its own reasons
        (too large, unreachable network, invalid or non-numeric address) is
        recorded for :meth:`errors` and counts as consumed: it never stops the rest.

        Args:
            datagrams: ``(data, (host, port))`` pairs, as returned by
                ``Endpoint.datagrams_to_send``.

        Returns:
            How many leading datagrams were consumed (sent or failed). If fewer
            than ``len(datagrams)``, the socket would block (``EAGAIN``, or
            ``ENOBUFS`` from a full device queue): keep ``datagrams[n:]`` and call
            again when :meth:`fileno` is writable.
        """
        count = len(datagrams)
        if self.gso:
            sent = self._send_gso(datagrams, count)
        else:
            sent = self._send_plain(datagrams, 0, count)
        if sent < count:
            self._stats["send_would_block"] += 1
        return sent

    def _send_plain(self, datagrams: list[tuple[bytes, Address]], start: int, stop: int) -> int:
        """Send ``datagrams[start:stop]`` one by one; return the index reached."""
        sendto = self._sock.sendto
        addresses = self._addresses
        sent = nbytes = 0
        index = start
        while index < stop:
            data, addr = datagrams[index]
            try:
                sockaddr = addresses[addr]
            except (KeyError, TypeError):
                sockaddr = self._resolve(addr)
                if sockaddr is None:
                    index += 1
                    continue
            try:
                sendto(data, sockaddr)
            except OSError as exc:
                outcome = self._send_failed(exc, data, addr, sockaddr)
                if outcome < 0:
                    break
                if outcome == 0:
                    index += 1
                    continue
            sent += 1
            nbytes += len(data)
            index += 1
        self._stats["datagrams_sent"] += sent
        self._stats["bytes_sent"] += nbytes
        return index

    def _send_gso(self, datagrams: list[tuple[bytes, Address]], count: int) -> int:
        """Send with UDP_SEGMENT where runs allow it; return the index reached.

        Datagrams that do not start a run of two or more collect in a plain
        stretch (``plain``) that goes out one by one before the next run.
        """
        index = plain = 0
        while index < count:
            if not self.gso:  # switched off by a failure below
                break
            data, addr = datagrams[index]
            size = len(data)
            end = index + 1
            total = size
            if 0 < size <= self._gso_max_segment:
                # Extend the run: same address, same size, or one shorter to close it.
                limit = min(count, index + GSO_MAX_SEGMENTS)
                while end < limit:
                    next_data, next_addr = datagrams[end]
                    next_size = len(next_data)
                    if (
                        next_size > size
                        or next_size == 0
                        or total + next_size > GSO_MAX_BYTES
                        or next_addr != addr
                    ):
                        break
                    total += next_size
                    end += 1
                    if next_size < size:
                        break
            if end - index == 1:
                index = end
                continue
            if plain < index:
                reached = self._send_plain(datagrams, plain, index)
                if reached < index:
                    return reached
            plain = end
            outcome = self._send_run(datagrams, index, end, size, total, addr)
            if outcome == _BLOCKED:
                return index
            if outcome != _SENT:
                sent_before = self._stats["datagrams_sent"]
                reached = self._send_plain(datagrams, index, end)
                if outcome > 0 and self._stats["datagrams_sent"] > sent_before:
                    # GSO failed where plain datagrams went through: GSO's fault.
                    self._stats["gso_fallbacks"] += 1
                    if outcome in (errno.EINVAL, errno.EMSGSIZE):
                        # A segment larger than the route's MTU (GSO cannot
                        # fragment): IPv4 says EINVAL, IPv6 EMSGSIZE.
                        self._gso_max_segment = size - 1
                    else:  # EIO (no checksum offload, IPsec), ENOPROTOOPT, ...
                        self.gso = False
                if reached < end:
                    return reached
            index = end
        return self._send_plain(datagrams, plain, count) if plain < count else count

    def _send_run(
        self,
        datagrams: list[tuple[bytes, Address]],
        start: int,
        end: int,
        segment: int,
        total: int,
        addr: Address,
    ) -> int:
        """One GSO sendmsg of ``datagrams[start:end]``.

        Returns ``_SENT``, ``_BLOCKED``, ``_PLAIN`` (the address is unusable: let
        the plain path record it) or the errno of a failure.
        """
        try:
            sockaddr = self._addresses[addr]
        except (KeyError, TypeError):
            sockaddr = self._resolve(addr, record=False)
            if sockaddr is None:
                return _PLAIN
        buffers = [data for data, _ in datagrams[start:end]]
        control = [(SOL_UDP, UDP_SEGMENT, segment.to_bytes(2, sys.byteorder))]
        sendmsg = self._sock.sendmsg
        try:
            sendmsg(buffers, control, 0, sockaddr)
        except OSError as exc:
            code = exc.errno or errno.EIO
            if code in _WOULD_BLOCK:
                return _BLOCKED
            if code not in _ASYNC_ERRNOS or not self._recverr:
                return code
            # Maybe an earlier ICMP error (sk_err) that failed this call instead.
            self._drain_error_queue()
            try:
                sendmsg(buffers, control, 0, sockaddr)
            except OSError as again:
                code = again.errno or errno.EIO
                return _BLOCKED if code in _WOULD_BLOCK else code
        stats = self._stats
        stats["gso_sends"] += 1
        stats["datagrams_sent"] += end - start
        stats["bytes_sent"] += total
        return _SENT

    def _send_failed(self, exc: OSError, data: bytes, addr: Address, sockaddr: Any) -> int:
        """Handle a failed sendto. Returns -1 (would block), 0 (recorded) or 1
        (the retry went out)."""
        if exc.errno in _WOULD_BLOCK:
            return -1
        if exc.errno in _ASYNC_ERRNOS and self._recverr:
            # The socket's pending error from an earlier ICMP message made this
            # call fail without sending; the error queue says what it was about.
            self._drain_error_queue()
            try:
                self._sock.sendto(data, sockaddr)
            except OSError as again:
                if again.errno in _WOULD_BLOCK:
                    return -1
                exc = again
            else:
                return 1
        self._record_error(addr, exc)
        return 0

    def _resolve(self, addr: Address, record: bool = True) -> Any:
        """Validate a destination and turn it into what sendto wants, caching it.

        Returns None (after recording the error, if asked) when it is unusable.
        """
        try:
            sockaddr = _to_sockaddr(addr, self.family)
        except OSError as exc:
            if record:
                self._record_error(addr, exc)
            return None
        if len(self._addresses) >= MAX_ADDRESS_CACHE:
            self._addresses.clear()
        try:
            self._addresses[addr] = sockaddr
        except TypeError:
            pass  # unhashable (a list): validated again next time
        return sockaddr


# -- helpers -------------------------------------------------------------------


def _enable_recverr(sock: socket.socket, family: int) -> bool:
    """Ask for ICMP errors on the error queue; False if the kernel refuses."""
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(SOL_IPV6, IPV6_RECVERR, 1)
            # IPv4-mapped traffic on a dual-stack socket is governed by the IPv4 flag.
            try:
                sock.setsockopt(SOL_IP, IP_RECVERR, 1)
            except OSError:
                pass
        else:
            sock.setsockopt(SOL_IP, IP_RECVERR, 1)
    except OSError:
        return False
    return True


def _enable_option(
    sock: socket.socket, option: int, value: int, wanted: bool | None, name: str
) -> bool:
    """Set a SOL_UDP option if wanted (None: if supported)."""
    if wanted is False:
        return False
    if not _LINUX or not hasattr(socket.socket, "sendmsg"):
        if wanted:
            raise OSError(errno.ENOPROTOOPT, f"{name} needs Linux")
        return False
    try:
        # UDP_SEGMENT 0 is the default (no segmentation), so probing it is harmless.
        sock.setsockopt(SOL_UDP, option, value)
    except OSError:
        if wanted:
            raise
        return False
    return True


def _normalise(addr: Any) -> Address:
    """An OS address as a (host, port) 2-tuple (see the module docstring)."""
    if len(addr) == 2:
        return addr
    host, port, _flowinfo, scope_id = addr[:4]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]  # IPv4 peer of a dual-stack socket
    elif scope_id:
        try:
            host = f"{host}%{socket.if_indextoname(scope_id)}"
        except OSError:
            host = f"{host}%{scope_id}"
    return (host, port)


def _to_sockaddr(addr: Any, family: int) -> Any:
    """Validate a (host, port) destination without resolving names."""
    try:
        host, port = addr[0], addr[1]
        if not isinstance(host, str) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
            raise TypeError
    except (TypeError, IndexError, KeyError):
        raise OSError(errno.EINVAL, f"not a (host, port) address: {addr!r}") from None
    if family == socket.AF_INET:
        try:
            socket.inet_pton(socket.AF_INET, host)
        except OSError:
            raise _not_numeric(host) from None
        return (host, port)
    if "%" in host:
        try:
            return socket.getaddrinfo(
                host, port, socket.AF_INET6, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST
            )[0][4]
        except OSError:
            raise _not_numeric(host) from None
    try:
        socket.inet_pton(socket.AF_INET6, host)
        return (host, port) if len(addr) == 2 else tuple(addr)
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        raise _not_numeric(host) from None
    return (f"::ffff:{host}", port)


def _not_numeric(host: str) -> OSError:
    return socket.gaierror(
        socket.EAI_NONAME, f"{host!r} is not a numeric address of the socket's family"
    )


def _parse_extended_error(data: bytes) -> tuple[OSError, int] | None:
    """Turn an IP_RECVERR/IPV6_RECVERR payload into (error, origin)."""
    if len(data) < _EXTENDED_ERR.size:
        return None
    code, origin, icmp_type, icmp_code, _pad, info, _data = _EXTENDED_ERR.unpack_from(data)
    if code == 0:
        return None
    detail = [os.strerror(code)]
    if origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
        version = "ICMP" if origin == SO_EE_ORIGIN_ICMP else "ICMPv6"
        offender = _parse_offender(data[_EXTENDED_ERR.size :])
        source = f" from {offender}" if offender else ""
        detail.append(f"({version} type {icmp_type} code {icmp_code}{source})")
        if (origin, icmp_type, icmp_code) in _ICMP_FRAG_NEEDED and info:
            detail.append(f"mtu={info}")
    return OSError(code, " ".join(detail)), origin


def _parse_offender(data: bytes) -> str | None:
    """The address of the node that sent the ICMP error (SO_EE_OFFENDER)."""
    if len(data) < 2:
        return None
    family = int.from_bytes(data[:2], sys.byteorder)
    try:
        if family == socket.AF_INET and len(data) >= 8:
            return socket.inet_ntop(socket.AF_INET, data[4:8])
        if family == socket.AF_INET6 and len(data) >= 24:
            host = socket.inet_ntop(socket.AF_INET6, data[8:24])
            return host[7:] if host.startswith("::ffff:") and "." in host else host
    except (OSError, ValueError):
        pass
    return None
