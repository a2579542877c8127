"""Packet protection for DATA packets: AEAD sealing, the replay window, key lifetimes.

Theory of operation
-------------------
**Packet protection.** A DATA packet (``docs/protocol.md`` section 3) is::

    kind = 0x04 (1) | receiver index (uint32) | packet number (uint64) | AEAD(payload)

The 13-byte clear header is the AEAD's associated data, so changing any bit of it
in flight makes the packet fail authentication. The AEAD nonce is the packet
number, laid out as Noise specifies for the cipher (:meth:`CipherState.encrypt_with_nonce
<stt_proto.noise.CipherState.encrypt_with_nonce>`). An AEAD is only secure if a
(key, nonce) pair is never used twice, so the sender numbers its packets 0, 1, 2,
... and never goes back: :meth:`PacketKeys.seal` takes the number before it
encrypts, so not even a failed call can hand the same number out twice. Every
handshake yields fresh keys, and the two directions use different keys (Noise
``Split``), so equal packet numbers in the two directions or in two sessions never
share a key.

**Replay window.** UDP reorders and duplicates, and an attacker can replay any
packet it saw. The receiver keeps a :class:`ReplayWindow`: the highest packet number
it accepted and a bitmap of which of the ``size`` numbers below it were seen
(the sliding window of RFC 6479 and of the WireGuard paper, section 5.4). A
packet is accepted once if it is new and not older than the window; anything else
is dropped before decryption, which is cheap. The window moves only after a packet
*authenticated* -- otherwise a forged packet carrying a huge packet number would
push every genuine packet out of the window.

**Key lifetimes.** A key is used for a bounded time and a bounded number of
packets (:class:`KeyLimits`). Past the *soft* limits (:meth:`PacketKeys.needs_rekey`)
the endpoint starts a new handshake in the background while the old key keeps
working; past the *hard* limits the key refuses to seal or open anything, so a
session whose rekey never completes stops instead of overusing a key. The time
values are WireGuard's (paper section 6: Rekey-After-Time, Reject-After-Time);
the packet values follow the AEAD limits of RFC 9001 section 6.6: a confidentiality
limit on packets sealed and an integrity limit on forgeries attempted against one
key.

**Rotation.** :class:`KeyRing` holds a session's keys across rekeys: ``current``
(sends and receives), ``previous`` (receives only, for a short grace period so that
packets sealed before the switch and still in flight are not lost) and ``next``
(a responder's new key that it may not send with until the peer proves it has it,
WireGuard paper sections 5.4 and 6). The class docstring walks through it.

Everything here is sans-I/O: time enters as the ``now`` argument, and nothing
draws randomness (the indices come from the endpoint, the keys from the
handshake).

Error model: :meth:`PacketKeys.open_untrusted` and :meth:`KeyRing.open_untrusted`
never raise for any datagram; a packet that is malformed, misrouted, replayed, too
old, refused or forged is dropped and counted (see ``statistics()``). Local misuse
raises: sealing with an exhausted key raises :class:`KeyExhaustedError`.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from . import _wire as wire
from .constants import DATA_HEADER_SIZE, VARINT_MAX, PacketKind
from .errors import DecodeError, LocalProtocolError
from .noise import MAX_NONCE, CipherState

#: The largest packet number: ACK frames name packets by varint, so a number
#: beyond it could never be acknowledged (below Noise's MAX_NONCE too).
MAX_PACKET_NUMBER = min(VARINT_MAX, MAX_NONCE)

__all__ = [
    "REPLAY_WINDOW_SIZE",
    "REKEY_AFTER_TIME",
    "REJECT_AFTER_TIME",
    "REKEY_AFTER_PACKETS",
    "REJECT_AFTER_PACKETS",
    "INTEGRITY_LIMIT_FAILURES",
    "PREVIOUS_KEY_GRACE",
    "KeyExhaustedError",
    "KeyLimits",
    "ReplayWindow",
    "PacketKeys",
    "KeyRing",
]


# ---------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------

#: Packets the replay window tracks below the highest one accepted. It must cover
#: the reordering a path can produce: at 1 Gbit/s with 1200-byte packets, 4096
#: packets are about 40 ms of traffic. WireGuard uses 8192 minus one word, RFC 6479
#: suggests sizes of this order; the cost is 512 bytes per key.
REPLAY_WINDOW_SIZE = 4096

#: Seconds after which a key should be replaced (soft limit): WireGuard's
#: Rekey-After-Time (paper section 6). Frequent rekeying bounds how much traffic a
#: stolen session key exposes and refreshes forward secrecy.
REKEY_AFTER_TIME = 120.0

#: Seconds after which a key is refused for sending and receiving (hard limit):
#: WireGuard's Reject-After-Time. The 60 s between the two limits leave room for
#: several handshake attempts before the session stalls.
REJECT_AFTER_TIME = 180.0

#: Packets sealed after which a key should be replaced (soft limit): half the hard
#: limit, so the background handshake has 2**22 packets of headroom to finish.
REKEY_AFTER_PACKETS = 2**22

#: Packets sealed after which a key is refused (hard limit). RFC 9001 section 6.6
#: sets the confidentiality limit of AES-GCM at 2**23 packets. ChaCha20-Poly1305's
#: limit is beyond any packet count, but one rule for both ciphers keeps the
#: behaviour independent of the cipher, and 2**23 packets is still about 10 GB of
#: 1200-byte packets per key.
REJECT_AFTER_PACKETS = 2**23

#: Failed decryptions after which a key is refused for receiving. RFC 9001 section
#: 6.6 sets the integrity limit of ChaCha20-Poly1305 at 2**36 forged packets
#: (AES-GCM's is 2**52); past it, the chance that one forgery succeeded is no longer
#: negligible. The lower value covers both ciphers.
INTEGRITY_LIMIT_FAILURES = 2**36

#: Seconds an old receive key keeps decrypting after a new key replaced it, so that
#: packets sealed before the switch and still in flight are not lost. Far longer
#: than any reordering delay or round trip, and as long as WireGuard's Rekey-Timeout.
PREVIOUS_KEY_GRACE = 5.0


class KeyExhaustedError(LocalProtocolError):
    """The key may no longer seal packets (hard time or packet limit reached).

    The caller must complete a rekey (install new keys) before sending again.
    """


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyLimits:
    """Lifetime limits of one handshake's keys. The defaults are the module constants;
    tests and special deployments pass smaller values.

    :raises ValueError: if a value is not a positive finite number, a soft limit is
        not below its hard limit, or the packet limit exceeds the Noise nonce space.
    """

    rekey_after_time: float = REKEY_AFTER_TIME
    """Key age (seconds) after which :meth:`PacketKeys.needs_rekey` asks for a rekey."""

    reject_after_time: float = REJECT_AFTER_TIME
    """Key age (seconds) from which the key neither seals nor opens."""

    rekey_after_packets: int = REKEY_AFTER_PACKETS
    """Packets sealed after which :meth:`PacketKeys.needs_rekey` asks for a rekey."""

    reject_after_packets: int = REJECT_AFTER_PACKETS
    """Packets a key may seal in all; packet numbers run ``0 .. reject_after_packets - 1``.
    A received packet number at or above it is refused too: the peer overused the key."""

    integrity_limit_failures: int = INTEGRITY_LIMIT_FAILURES
    """Failed decryptions after which the key opens nothing more."""

    previous_key_grace: float = PREVIOUS_KEY_GRACE
    """Seconds a replaced key keeps opening packets in a :class:`KeyRing`."""

    def __post_init__(self) -> None:
        for name in ("rekey_after_time", "reject_after_time", "previous_key_grace"):
            value = getattr(self, name)
            if not _is_seconds(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("rekey_after_packets", "reject_after_packets", "integrity_limit_failures"):
            value = getattr(self, name)
            if not _is_count(value) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.rekey_after_time >= self.reject_after_time:
            raise ValueError("rekey_after_time must be below reject_after_time")
        if self.rekey_after_packets >= self.reject_after_packets:
            raise ValueError("rekey_after_packets must be below reject_after_packets")
        # Every packet number a key may seal must be a valid Noise nonce.
        if self.reject_after_packets > MAX_NONCE + 1:
            raise ValueError(f"reject_after_packets must be at most {MAX_NONCE + 1}")


_DEFAULT_LIMITS = KeyLimits()


# ---------------------------------------------------------------------------
# Replay window
# ---------------------------------------------------------------------------


#: Replay window masks by size (see ReplayWindow.__init__).
_MASKS: dict[int, int] = {}


class ReplayWindow:
    """Sliding anti-replay window over 64-bit packet numbers.

    Accepts each packet number at most once, and refuses numbers more than
    ``size - 1`` below the highest one accepted (RFC 6479; WireGuard paper section
    5.4).

    The bitmap is one Python ``int``: bit ``i`` says whether ``highest - i`` was
    seen. Moving the window forward is a shift and a mask. This is simpler than RFC
    6479's ring of 64-bit words (no modular word index, no clearing loop), and a
    quick measurement showed both equally fast in CPython at 4096 bits, because the
    shift of a 512-byte int runs in C while the word ring needs several interpreted
    steps per packet. The mask keeps the int at most ``size`` bits, and a jump
    further than ``size`` resets it to a single bit, so memory is ``O(size)``
    whatever packet numbers arrive.

    :param size: packets tracked; a multiple of 64, at least 64.
    :raises ValueError: for any other size.
    """

    __slots__ = ("_size", "_mask", "_bitmap", "_highest")

    def __init__(self, size: int = REPLAY_WINDOW_SIZE) -> None:
        if not _is_count(size) or size < 64 or size % 64:
            raise ValueError(f"replay window size must be a multiple of 64, at least 64: {size!r}")
        self._size = size
        # One mask per size for all windows: a 4,096-bit int is half a KiB, a
        # good part of an idle session's memory if each window had its own.
        mask = _MASKS.get(size)
        if mask is None:
            mask = _MASKS[size] = (1 << size) - 1
        self._mask = mask
        self._bitmap = 0
        self._highest = -1

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self._size}, highest={self._highest})"

    @property
    def size(self) -> int:
        """Packets tracked below and including :attr:`highest`."""
        return self._size

    @property
    def highest(self) -> int:
        """Highest packet number accepted so far, ``-1`` before the first."""
        return self._highest

    def is_too_old(self, pn: int) -> bool:
        """Whether ``pn`` lies below the window (so it would be refused however new)."""
        return pn <= self._highest - self._size

    def would_accept(self, pn: int) -> bool:
        """Whether ``pn`` is neither a duplicate nor older than the window.

        Call this before decrypting: it is cheaper than the AEAD. It changes nothing.
        """
        if pn < 0:
            return False
        offset = self._highest - pn
        if offset < 0:
            return True
        if offset >= self._size:
            return False
        return not (self._bitmap >> offset) & 1

    def accept(self, pn: int) -> None:
        """Mark ``pn`` as seen, moving the window forward if it is the new highest.

        Call this only after the packet **authenticated**. A forged packet can carry
        any packet number; if it moved the window, a forgery numbered ``2**63`` would
        make every genuine packet look too old and silence the session, and a forged
        copy of an expected number would make the genuine packet look replayed.

        :raises ValueError: if :meth:`would_accept` is false for ``pn`` (the caller
            skipped the check).
        """
        if pn < 0:
            raise ValueError("packet number must not be negative")
        offset = self._highest - pn
        if offset < 0:
            shift = -offset
            if shift >= self._size:
                # Nothing of the old window survives such a jump: start afresh
                # instead of shifting in ``shift`` zero bits only to mask them off.
                self._bitmap = 1
            else:
                self._bitmap = ((self._bitmap << shift) | 1) & self._mask
            self._highest = pn
            return
        if offset >= self._size or (self._bitmap >> offset) & 1:
            raise ValueError("packet number is a duplicate or older than the window")
        self._bitmap |= 1 << offset


# ---------------------------------------------------------------------------
# One handshake's keys
# ---------------------------------------------------------------------------

# Clear header of a DATA packet: kind, receiver index, packet number (protocol.md
# section 3). struct is about five times faster than wire.Writer for these 13 bytes
# (80 ns against 470 ns per packet, measured) and seal is the hot path; parsing
# goes through the wire codec, the single definition of what a valid header is.
_HEADER = struct.Struct(">BIQ")
_KIND_DATA = int(PacketKind.DATA)
_U32_MAX = 0xFFFFFFFF

#: Names of the counters in :meth:`PacketKeys.statistics`.
_KEY_COUNTERS = (
    "packets_sent",
    "packets_received",
    "auth_failures",
    "replayed",
    "too_old",
    "wrong_index",
    "rejected_expired",
    "malformed",
)


class PacketKeys:
    """The transport keys of one handshake, for both directions, with their counters.

    :param send: the cipher state for packets this side sends.
    :param recv: the cipher state for packets the peer sends.
    :param local_index: the index this side chose; incoming packets carry it.
    :param remote_index: the index the peer chose; outgoing packets carry it.
    :param created_at: ``now`` when the handshake completed; ages count from here.
    :param initiator: whether this side initiated the handshake. Only the initiator
        rekeys on time at :attr:`KeyLimits.rekey_after_time`; the responder waits
        until halfway to the hard limit, so both sides do not start a handshake at
        the same moment (WireGuard, paper section 6, lets only the initiator rekey on
        time; the later responder deadline still rescues a session whose initiator
        went quiet).
    :param limits: lifetime limits.
    :raises ValueError: if a cipher state has no key or an index is not a uint32.
    """

    __slots__ = (
        "_send",
        "_encrypt",
        "_decrypt",
        "_send_nonce",
        "_recv_nonce",
        "_window",
        "local_index",
        "remote_index",
        "created_at",
        "initiator",
        "limits",
        "_rekey_at",
        "_reject_at",
        "_reject_packets",
        "_integrity_limit",
        "_next_pn",
        "_first_pn",
        "_recv_base",
        "_received",
        "_auth_failures",
        "_replayed",
        "_too_old",
        "_wrong_index",
        "_rejected_expired",
        "_malformed",
    )

    def __init__(
        self,
        *,
        send: CipherState,
        recv: CipherState,
        local_index: int,
        remote_index: int,
        created_at: float,
        initiator: bool,
        limits: KeyLimits = _DEFAULT_LIMITS,
    ) -> None:
        if not (send.has_key() and recv.has_key()):
            raise ValueError("both cipher states must have a key")
        for name, index in (("local_index", local_index), ("remote_index", remote_index)):
            if not _is_count(index) or not 0 <= index <= _U32_MAX:
                raise ValueError(f"{name} must be a uint32, got {index!r}")
        self._send = send
        # The AEADs' own methods, looked up once: seal and open run per packet.
        sealer, self._send_nonce = send.packet_aead()
        opener, self._recv_nonce = recv.packet_aead()
        self._encrypt = sealer.encrypt
        self._decrypt = opener.decrypt
        self._window = ReplayWindow()
        self.local_index = local_index
        self.remote_index = remote_index
        self.created_at = created_at
        self.initiator = bool(initiator)
        self.limits = limits
        rekey_after = limits.rekey_after_time
        if not initiator:
            rekey_after += (limits.reject_after_time - limits.rekey_after_time) / 2
        self._rekey_at = created_at + rekey_after
        self._reject_at = created_at + limits.reject_after_time
        self._reject_packets = limits.reject_after_packets
        self._integrity_limit = limits.integrity_limit_failures
        self._next_pn = 0
        #: Packet numbers of a session run on across its keys (see continue_from).
        self._first_pn = 0
        #: Lowest packet number opened under this key; the peer's own limit counts
        #: from its first packet, so the receiving check does too.
        self._recv_base: int | None = None
        self._received = 0
        self._auth_failures = 0
        self._replayed = 0
        self._too_old = 0
        self._wrong_index = 0
        self._rejected_expired = 0
        self._malformed = 0

    def __repr__(self) -> str:
        # Indices are on the wire anyway; key material never appears here.
        role = "initiator" if self.initiator else "responder"
        return (
            f"PacketKeys(cipher={self._send.cipher_name!r}, role={role!r}, "
            f"local_index={self.local_index:#010x}, remote_index={self.remote_index:#010x}, "
            f"sent={self._next_pn - self._first_pn}, received={self._received})"
        )

    # -- properties ------------------------------------------------------------

    @property
    def cipher_name(self) -> str:
        """The AEAD in use, ``"AESGCM"`` or ``"ChaChaPoly"``."""
        return self._send.cipher_name

    @property
    def packets_sent(self) -> int:
        """Packets sealed so far with this key."""
        return self._next_pn - self._first_pn

    @property
    def next_pn(self) -> int:
        """The packet number the next :meth:`seal` will use."""
        return self._next_pn

    def continue_from(self, pn: int) -> None:
        """Number this key's packets from ``pn`` on, so that a session's packet
        numbers keep increasing across rekeys and acknowledgements stay
        unambiguous. Only allowed before the key sealed anything; lifetime limits
        count from here."""
        if self._next_pn != self._first_pn:
            raise LocalProtocolError("continue_from() after the key sealed packets")
        if not _is_count(pn) or pn < 0:
            raise ValueError("packet number must be a non-negative int")
        self._next_pn = self._first_pn = pn

    @property
    def highest_received(self) -> int:
        """Highest packet number opened so far, ``-1`` before the first."""
        return self._window.highest

    @property
    def rekey_at(self) -> float:
        """When :meth:`needs_rekey` turns true on age alone."""
        return self._rekey_at

    @property
    def expires_at(self) -> float:
        """When the key stops sealing and opening (hard time limit)."""
        return self._reject_at

    # -- lifetime ----------------------------------------------------------------

    def can_send(self, now: float) -> bool:
        """Whether :meth:`seal` would succeed now."""
        return self._next_pn - self._first_pn < self._reject_packets and now < self._reject_at

    def can_receive(self, now: float) -> bool:
        """Whether :meth:`open_untrusted` may still accept packets: the key is not past
        its hard time limit nor its integrity limit."""
        return now < self._reject_at and self._auth_failures < self._integrity_limit

    def needs_rekey(self, now: float) -> bool:
        """Whether the endpoint should start a new handshake in the background.

        True once a soft limit is reached (age, see ``initiator``; packets sealed),
        and also once the key can no longer send or receive at all.
        """
        return (
            now >= self._rekey_at
            or self._next_pn - self._first_pn >= self.limits.rekey_after_packets
            or self._auth_failures >= self._integrity_limit
        )

    # -- packets -----------------------------------------------------------------

    def seal(self, payload: bytes, now: float) -> tuple[int, bytes]:
        """Protect ``payload`` (encoded frames) as one DATA packet.

        :returns: ``(packet_number, datagram)``; packet numbers start at 0 (or where
            :meth:`continue_from` put them) and go up by one per call, never reused.
        :raises KeyExhaustedError: past the hard packet or time limit; install new
            keys first (:meth:`needs_rekey` asked for them long before).
        """
        pn = self._next_pn
        if pn - self._first_pn >= self._reject_packets or now >= self._reject_at:
            raise KeyExhaustedError("key exhausted: rekey before sending")
        if pn > MAX_PACKET_NUMBER:  # reachable only through continue_from
            raise KeyExhaustedError("packet numbers exhausted: rekey before sending")
        # Take the number before encrypting: even a call that fails half-way must not
        # leave a number that a later call could reuse under the same key.
        self._next_pn = pn + 1
        header = _HEADER.pack(_KIND_DATA, self.remote_index, pn)
        return pn, header + self._encrypt(self._send_nonce(pn), payload, header)

    def open_untrusted(self, datagram: bytes, now: float) -> tuple[int, bytes] | None:
        """Authenticate and decrypt a DATA packet.

        Drops (returns ``None`` and counts) a datagram that is malformed
        (``malformed``), carries another receiver index (``wrong_index``), arrives
        when the key is past its hard limits or carries a packet number the sender
        was not allowed to use (``rejected_expired``), is a duplicate
        (``replayed``), is older than the replay window (``too_old``), or does not
        authenticate (``auth_failures``). Never raises for any bytes.

        :returns: ``(packet_number, payload)`` of an authentic, new packet.
        """
        try:
            index, pn = wire.pull_data_header_untrusted(datagram)
        except DecodeError:
            self._malformed += 1
            return None
        if index != self.local_index:
            self._wrong_index += 1
            return None
        if (
            now >= self._reject_at
            or self._auth_failures >= self._integrity_limit
            or (self._recv_base is not None and pn - self._recv_base >= self._reject_packets)
            # A number no conforming peer seals (seal refuses it) and no ACK can
            # name: dropped before the AEAD, whoever sealed it.
            or pn > MAX_PACKET_NUMBER
        ):
            self._rejected_expired += 1
            return None
        window = self._window
        # The replay check comes first: it is far cheaper than the AEAD.
        if not window.would_accept(pn):
            if window.is_too_old(pn):
                self._too_old += 1
            else:
                self._replayed += 1
            return None
        try:
            payload = self._decrypt(self._recv_nonce(pn), datagram[DATA_HEADER_SIZE:],
                                    datagram[:DATA_HEADER_SIZE])
        except InvalidTag:
            self._auth_failures += 1
            return None
        # Only now, with the packet authentic, may the window move (see accept()).
        window.accept(pn)
        if self._recv_base is None or pn < self._recv_base:
            self._recv_base = pn
        self._received += 1
        return pn, payload

    def statistics(self) -> dict[str, int]:
        """Counters of this key: packets sealed and opened, and drops by reason."""
        return {
            "packets_sent": self._next_pn - self._first_pn,
            "packets_received": self._received,
            "auth_failures": self._auth_failures,
            "replayed": self._replayed,
            "too_old": self._too_old,
            "wrong_index": self._wrong_index,
            "rejected_expired": self._rejected_expired,
            "malformed": self._malformed,
        }


# ---------------------------------------------------------------------------
# A session's keys across rekeys
# ---------------------------------------------------------------------------


class KeyRing:
    """The keys of one session across rekeys: ``current``, ``previous`` and ``next``.

    * ``current`` seals every outgoing packet and opens incoming ones.
    * ``previous`` is the key ``current`` replaced. It only opens, and only until
      ``retired_at + limits.previous_key_grace``; :meth:`expire` then drops it.
    * ``next`` exists on the responder of a rekey: the handshake completed, but the
      responder does not know whether its response arrived, so it may not send with
      the new key yet (the peer could not decrypt). It opens incoming packets, and
      the first one that authenticates under it proves that the peer has the key:
      ``next`` becomes ``current`` and ``current`` becomes ``previous``.

    The initiator of a rekey installs its new keys as confirmed (``install(...,
    confirmed=True)``) as soon as it processed the handshake response: the response
    proves that the responder derived the same keys. It then sends with them at
    once. The endpoint must make sure that a packet (a PING if nothing else) goes
    out promptly under the new key, because that packet is what lets the responder
    switch; until it arrives, the responder keeps sending with the old key, which
    the initiator still opens as ``previous``.

    Why nothing in flight is lost: a side only starts sealing with a new key once
    it knows the peer holds that key (the initiator learns it from the response,
    the responder from the first packet), so every packet under the new key can be
    opened on arrival. Packets sealed under the old key before the switch are still
    opened for ``previous_key_grace`` seconds after it, far longer than any
    reordering delay. (One exception: if both sides start a rekey at the same time,
    an old key can be dropped early, as in WireGuard; loss recovery resends what
    that costs.)

    At most three keys are alive, so the ring is bounded whatever the peer does.
    Counters of dropped keys are kept in :meth:`statistics`.

    :param limits: the session's limits; the ring uses
        :attr:`KeyLimits.previous_key_grace` (each key enforces its own lifetime
        limits, given to :class:`PacketKeys`).
    """

    __slots__ = (
        "current",
        "previous",
        "next",
        "_previous_expires_at",
        "limits",
        "_retired",
        "_unknown_index",
        "_grace_expired",
    )

    def __init__(self, *, limits: KeyLimits = _DEFAULT_LIMITS) -> None:
        #: The limits given to the constructor.
        self.limits = limits
        #: Keys for sending and receiving, or ``None`` before the first confirmed key.
        self.current: PacketKeys | None = None
        #: Replaced keys, receiving only until :meth:`next_deadline`.
        self.previous: PacketKeys | None = None
        #: A responder's new keys, waiting for the peer's first packet under them.
        self.next: PacketKeys | None = None
        self._previous_expires_at: float | None = None
        self._retired: dict[str, int] = {}
        self._unknown_index = 0
        self._grace_expired = 0

    def __repr__(self) -> str:
        return f"KeyRing(current={self.current!r}, previous={self.previous!r}, next={self.next!r})"

    # -- installing and dropping ------------------------------------------------

    def install(self, keys: PacketKeys, now: float, confirmed: bool) -> None:
        """Add the keys of a completed handshake.

        ``confirmed=True`` (the initiator after the handshake response): ``keys``
        become ``current`` at once and the old ``current`` moves to ``previous``
        (receive only, for the grace period). If a ``next`` was pending, it moves to
        ``previous`` instead and the old ``current`` is dropped: the peer, which
        initiated that ``next``, already sends with it (WireGuard's rule).

        ``confirmed=False`` (the responder): ``keys`` become ``next``, replacing any
        older unconfirmed ``next``; ``current`` keeps sending until a packet under
        ``next`` arrives (:meth:`open_untrusted`).

        After installing confirmed keys, queue a packet under them promptly (a PING
        if there is nothing else) so that the responder can switch; see the class
        docstring.

        :raises ValueError: if ``keys.local_index`` is already used by a key in the
            ring (the endpoint must pick a fresh index for every handshake).
        """
        if keys.local_index in self.indices():
            raise ValueError("local index already in use in this key ring")
        if not confirmed:
            self._drop(self.next)
            self.next = keys
            return
        if self.next is not None:
            self._continue(keys, self.next)
            self._continue(keys, self.current)
            self._drop(self.current)
            self._retire(self.next, now)
            self.next = None
        elif self.current is not None:
            self._continue(keys, self.current)
            self._retire(self.current, now)
        self.current = keys

    @staticmethod
    def _continue(keys: PacketKeys, old: PacketKeys | None) -> None:
        # One packet-number space per session: a new key starts after the old.
        if old is not None and keys.next_pn < old.next_pn and keys.packets_sent == 0:
            keys.continue_from(old.next_pn)

    def expire(self, now: float) -> None:
        """Drop ``previous`` once its grace period is over. Call at
        :meth:`next_deadline` (the endpoint's timer) or any time."""
        if self._previous_expires_at is not None and now >= self._previous_expires_at:
            self._drop(self.previous)
            self.previous = None
            self._previous_expires_at = None

    def next_deadline(self) -> float | None:
        """When ``previous`` expires, or ``None`` if there is no previous key."""
        return self._previous_expires_at

    def indices(self) -> tuple[int, ...]:
        """Local indices of the keys in the ring, so the endpoint routes them here."""
        keys = (self.current, self.next, self.previous)
        return tuple(k.local_index for k in keys if k is not None)

    def _retire(self, keys: PacketKeys, now: float) -> None:
        # Any older previous key is dropped: at most one key is in its grace period.
        self._drop(self.previous)
        self.previous = keys
        self._previous_expires_at = now + self.limits.previous_key_grace

    def _drop(self, keys: PacketKeys | None) -> None:
        if keys is None:
            return
        retired = self._retired
        for name, value in keys.statistics().items():
            retired[name] = retired.get(name, 0) + value

    # -- packets -------------------------------------------------------------------

    def seal(self, payload: bytes, now: float) -> tuple[int, bytes]:
        """Seal ``payload`` with ``current`` (see :meth:`PacketKeys.seal`).

        :returns: ``(packet_number, datagram)``.
        :raises LocalProtocolError: if there is no confirmed key yet (a responder
            waits for the initiator's first packet).
        :raises KeyExhaustedError: if ``current`` is past its hard limits.
        """
        current = self.current
        if current is None:
            raise LocalProtocolError("no confirmed key to send with yet")
        return current.seal(payload, now)

    def open_untrusted(
        self, datagram: bytes, receiver_index: int, now: float
    ) -> tuple[PacketKeys, int, bytes] | None:
        """Open a DATA packet with the key whose local index is ``receiver_index``.

        ``receiver_index`` is what the endpoint parsed to route the datagram here.
        The first authentic packet under ``next`` confirms it (``next`` becomes
        ``current``, ``current`` becomes ``previous``). ``previous`` opens nothing
        once its grace period is over. Never raises for any bytes.

        :returns: ``(keys, packet_number, payload)``, ``keys`` being the key that
            opened it, or ``None`` if the packet was dropped (counted).
        """
        current = self.current
        if current is not None and current.local_index == receiver_index:
            opened = current.open_untrusted(datagram, now)
            return None if opened is None else (current, opened[0], opened[1])
        pending = self.next
        if pending is not None and pending.local_index == receiver_index:
            opened = pending.open_untrusted(datagram, now)
            if opened is None:
                return None
            # The peer sealed this under the new key, so it has it: switch.
            self.next = None
            self._continue(pending, current)
            if current is not None:
                self._retire(current, now)
            self.current = pending
            return pending, opened[0], opened[1]
        previous = self.previous
        if previous is not None and previous.local_index == receiver_index:
            if self._previous_expires_at is not None and now >= self._previous_expires_at:
                self._grace_expired += 1
                self.expire(now)
                return None
            opened = previous.open_untrusted(datagram, now)
            return None if opened is None else (previous, opened[0], opened[1])
        self._unknown_index += 1
        return None

    def statistics(self) -> dict[str, int]:
        """Counters summed over every key the ring has held (see
        :meth:`PacketKeys.statistics`), plus ``unknown_index`` (no key has that
        index) and ``grace_expired`` (a previous key past its grace period)."""
        totals = dict(self._retired)
        for keys in (self.current, self.next, self.previous):
            if keys is not None:
                for name, value in keys.statistics().items():
                    totals[name] = totals.get(name, 0) + value
        for name in _KEY_COUNTERS:
            totals.setdefault(name, 0)
        totals["unknown_index"] = self._unknown_index
        totals["grace_expired"] = self._grace_expired
        return totals
