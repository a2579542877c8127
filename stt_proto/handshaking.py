"""Driving handshakes: connect attempts and their retries, cookies under load, and
rekeys. (The bytes of the handshake messages are :mod:`stt_proto.handshake`.)

Theory of operation
-------------------
A handshake is one Noise ``IKpsk2`` round trip (``docs/protocol.md`` section 6).
Two objects drive them for an :class:`~stt_proto.endpoint.Endpoint`, one per
role, because the roles share almost nothing but the node's credentials
(:class:`Credentials`):

* :class:`Initiator` owns the outgoing handshakes (:class:`PendingConnect`): a
  ``connect`` or the *rekey* of a session whose keys are due. It sends an
  INITIATION and retransmits a fresh one (new ephemeral key, new index) with
  exponential backoff until a RESPONSE arrives or the deadline passes (section
  6.8). The last :data:`MAX_ATTEMPTS_PER_CONNECT` attempts stay valid, so a
  RESPONSE to an earlier one still completes a connect on a slow path. A RESPONSE
  that does not authenticate means the responder holds another network seed:
  the connect fails with ``auth_failure`` within the round trip. A COOKIE_REPLY
  is answered at once with an INITIATION carrying ``mac2``.
* :class:`Responder` answers INITIATIONs. It does so only if ``mac1`` proves the
  sender knows our node id; under *load* (more INITIATIONs per second than
  configured, or half the half-open slots taken) it first asks for a ``mac2``
  made with a cookie bound to the source address, and answers without one by a
  small COOKIE_REPLY, spending no Diffie-Hellman work and no state (6.6). Before
  an address is validated it never sends more bytes than it received.

Neither reaches into the endpoint. Each is built with a few callables that are
its whole interface back: *queue this datagram*, *push this event*, *arm this
timer*, *a session is established (or rekeyed) with these keys*, *is there room
for another session*. The endpoint's
:class:`~stt_proto.sessions.SessionTable` keeps the sessions and their limits,
the endpoint the timer heap; these objects keep the Noise states, the attempts
and the cookie secrets. A rekey belongs to its session: the table starts it and
cancels it when the session closes, and a rekey whose timer comes due after
that (both were due in one ``handle_timer`` call) does nothing. Both share the endpoint's :class:`~stt_proto.sessions.IndexTable`,
since attempts and sessions draw their indices from the one space the peer
addresses.

When the drivers call back, the handshake is complete in the cryptographic
sense only; what the session's life cycle does with it (``HANDSHAKING`` until
the initiator's first DATA packet, ``ESTABLISHED`` at once for the initiator)
is the endpoint's, through :mod:`stt_proto.state`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from .config import EndpointConfig
from .constants import ErrorCode
from .crypto import PacketKeys
from .errors import DecodeError, NoiseError
from .events import CloseReason, Event, SessionClosed
from .handshake import (
    MAC_SIZE,
    MAX_HANDSHAKE_SIZE,
    MIN_INITIATION_SIZE,
    PROLOGUE,
    SUITE_BY_CIPHER,
    SUITES,
    TransportParameters,
    cookie_key,
    encode_cookie_reply,
    encode_initiation,
    encode_response,
    mac,
    mac1_key,
    macs_equal,
    open_cookie,
    parse_cookie_reply_untrusted,
    parse_initiation_untrusted,
    parse_response_untrusted,
    seal_cookie,
)
from .identity import derive_psk
from .noise import HandshakeState

if TYPE_CHECKING:
    from .sessions import IndexTable, Session

__all__ = ["Initiator", "Responder", "Credentials", "PendingConnect", "BoundedCache",
           "MAX_ATTEMPTS_PER_CONNECT", "STATIC_DH_CACHE_SIZE", "path_datagram_size",
           "local_params"]

Address = Any

#: Handshake attempts of one connect that stay valid at once (older ones are
#: forgotten, so a connect never holds more than this many Noise states).
MAX_ATTEMPTS_PER_CONNECT = 4
#: Noise message 1 of IKpsk2 without payload: ephemeral, encrypted static, tag.
_INITIATION_FIXED = 1 + 1 + 4 + 32 + 48 + 16 + 2 * MAC_SIZE
#: A RESPONSE without payload: kind, two indices, ephemeral, tag, two MACs.
_RESPONSE_FIXED = 1 + 4 + 4 + 32 + 16 + 2 * MAC_SIZE
#: Largest DHT request an INITIATION carries early (6.9); a larger one waits
#: for the session. A FIND_NODE is about 50 bytes.
MAX_EARLY_DHT_REQUEST = 256

#: Peers whose static-static DH result is kept (least recently used evicted).
STATIC_DH_CACHE_SIZE = 4096


def _carried(request: bytes) -> bool:
    """Whether an INITIATION carries this early DHT request (6.9)."""
    return len(request) <= MAX_EARLY_DHT_REQUEST


class BoundedCache(OrderedDict):
    """A mapping that forgets its least recently used entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def get(self, key, default=None):
        value = super().get(key, default)
        if value is not default:
            self.move_to_end(key)
        return value

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        if len(self) > self.limit:
            self.popitem(last=False)


def path_datagram_size(config: EndpointConfig, address: Address) -> int:
    """The largest datagram this side announces and sends on the path to
    ``address`` (see ``EndpointConfig.path_max_datagram_size``)."""
    path = config.path_max_datagram_size
    size = path(address) if path is not None else None
    if size is None:
        return config.max_datagram_size
    return min(max(int(size), 1200), 65527)


def local_params(config: EndpointConfig, address: Address,
                 rekey_index: int | None = None) -> TransportParameters:
    """The transport parameters this side announces to ``address`` (6.4)."""
    return TransportParameters(
        idle_timeout_ms=int(config.idle_timeout * 1000),
        max_datagram_size=path_datagram_size(config, address),
        initial_max_data=config.session_window,
        initial_max_stream_data=config.stream_window,
        initial_max_streams=config.max_streams,
        rekey_index=rekey_index,
    )


def _split(handshake: HandshakeState, *, initiator: bool):
    """Noise ``Split()`` as ``(send, recv)`` for our role (6.3)."""
    i2r, r2i = handshake.split()
    return (i2r, r2i) if initiator else (r2i, i2r)


class Credentials:
    """What every handshake of this node uses: its static key, the PSK derived
    from the network seed, the MAC keys and the static-static DH cache (a
    secret; bounded like every table). Never in a repr or a log."""

    __slots__ = ("rng", "private_key", "public", "psk", "mac1_key", "cookie_key", "static_dh")

    def __init__(self, config: EndpointConfig) -> None:
        self.rng = config.rng
        self.private_key = config.identity.private_key
        self.public = config.identity.node_id
        self.psk = derive_psk(config.shared_seed)
        self.mac1_key = mac1_key(self.public)
        self.cookie_key = cookie_key(self.public)
        # DH(our static, peer static) per peer, reused by every handshake with
        # that peer.
        self.static_dh = BoundedCache(STATIC_DH_CACHE_SIZE)

    def __repr__(self) -> str:
        return "<Credentials>"

    def handshake(self, suite: int, *, initiator: bool,
                  peer_id: bytes | None = None) -> HandshakeState:
        """A fresh Noise state for one handshake."""
        return HandshakeState(SUITES[suite], initiator=initiator, prologue=PROLOGUE,
                              s=self.private_key, rs=peer_id, psks=[self.psk], rng=self.rng,
                              static_dh_cache=self.static_dh)


class _Attempt:
    """One INITIATION in flight: its Noise state, index and ``mac1``."""

    __slots__ = ("handshake", "index", "mac1", "packet")

    def __init__(self, handshake: HandshakeState, index: int, mac1: bytes, packet: bytes):
        self.handshake = handshake
        self.index = index
        self.mac1 = mac1
        self.packet = packet


class PendingConnect:
    """An outgoing handshake: a new session, or a rekey of ``session``."""

    __slots__ = ("session_id", "peer_id", "address", "deadline", "attempts", "next_retry",
                 "interval", "cookie", "cookie_at", "session", "timer_at", "early_dht")

    def __init__(self, session_id: bytes, peer_id: bytes, address: Address, deadline: float,
                 interval: float, session: Session | None) -> None:
        self.session_id = session_id
        self.peer_id = peer_id
        self.address = address
        self.deadline = deadline
        self.attempts: deque[_Attempt] = deque()
        self.next_retry = 0.0
        self.interval = interval
        self.cookie: bytes | None = None
        self.cookie_at = 0.0
        self.session = session
        #: The deadline armed in the endpoint's timer heap (see ``schedule``).
        self.timer_at: float | None = None
        #: A DHT request every INITIATION of this connect carries (6.9).
        self.early_dht: bytes | None = None


class Initiator:
    """The outgoing handshakes of one endpoint: connects and rekeys.

    Args:
        config: the endpoint's configuration.
        credentials: the node's handshake keys.
        indices: the endpoint's index table (attempts are routed through it).
        stats: the endpoint's counters (this object adds to them).
        queue: ``queue(datagram, address)`` sends a datagram.
        push_event: ``push_event(event)`` hands an event to the application.
        schedule: ``schedule(pending, at)`` arms (``at=None``: disarms) the
            timer of a pending connect; :meth:`handle_timer` runs when it fires.
        established: ``established(session_id, peer_id, address, keys, params,
            local_index, now)``: a connect completed with these keys.
        rekeyed: ``rekeyed(session, keys, local_index, now)``: a rekey completed.
        rekey_abandoned: ``rekey_abandoned(session)``: a rekey reached its
            deadline without an answer.
        early_result: ``early_result(session_id, answer, request, now)``, right
            after ``established`` for a connect that carried a DHT ``request``:
            ``answer`` is the responder's answer from its RESPONSE, or ``None``
            when it gave none (the request then still has to be sent).
    """

    def __init__(self, config: EndpointConfig, credentials: Credentials, indices: IndexTable,
                 stats: dict[str, int], *, queue: Callable[[bytes, Address], None],
                 push_event: Callable[[Event], None],
                 schedule: Callable[[PendingConnect, float | None], None],
                 established: Callable[..., None],
                 rekeyed: Callable[[Session, PacketKeys, int, float], None],
                 rekey_abandoned: Callable[[Session], None],
                 early_result: Callable[..., None] | None = None) -> None:
        self._config = config
        self._credentials = credentials
        self._indices = indices
        self._stats = stats
        self._queue = queue
        self._push_event = push_event
        self._schedule = schedule
        self._established = established
        self._rekeyed = rekeyed
        self._rekey_abandoned = rekey_abandoned
        self._early_result = early_result
        #: Connects for new sessions, by session id (``max_pending_connects``).
        self._connects: dict[bytes, PendingConnect] = {}
        #: Rekeys in flight, by the session id they rekey (one per session).
        self._rekeys: dict[bytes, PendingConnect] = {}

    def __len__(self) -> int:
        """Pending connects (rekeys not included)."""
        return len(self._connects)

    def __contains__(self, session_id: bytes) -> bool:
        return session_id in self._connects

    # ------------------------------------------------------------------ commands

    def connect(self, session_id: bytes, peer_id: bytes, address: Address, *,
                deadline: float, now: float, early_dht: bytes | None = None) -> None:
        """Start a connect under ``session_id`` (unused, allocated by the endpoint,
        which also enforces ``max_pending_connects``). ``early_dht``: a DHT
        request for every INITIATION to carry if it has at most
        :data:`MAX_EARLY_DHT_REQUEST` bytes (6.9); ``early_result`` reports on it.

        Raises:
            ValueError: ``peer_id`` is not a usable X25519 public key (nothing
                is kept).
        """
        pending = PendingConnect(session_id, peer_id, address, deadline,
                                 self._config.handshake_retry_initial, None)
        if early_dht is not None:
            pending.early_dht = bytes(early_dht)
        self._connects[session_id] = pending
        try:
            self._send_attempt(pending, now)
        except NoiseError:
            # DH with that key fails: a low-order point, not anybody's node id.
            self._finish(pending, None)
            raise ValueError("peer_id is not a valid node id (X25519 public key)") from None

    def retry(self, session_id: bytes, now: float) -> bool:
        """Send a fresh INITIATION of the connect ``session_id`` now, rather than
        at its next backoff time (its owner has a measured reason to think the
        last one was lost). The backoff still doubles, and only the last
        :data:`MAX_ATTEMPTS_PER_CONNECT` attempts stay valid.

        Returns:
            Whether such a connect was pending.
        """
        pending = self._connects.get(session_id)
        if pending is None:
            return False
        self._send_attempt(pending, now)
        return True

    def start_rekey(self, session: Session, now: float) -> None:
        """Start a fresh handshake for ``session`` (docs/protocol.md 6.7); it runs
        until the current keys expire. The caller moves the session's rekey
        state to ``RUNNING``."""
        current = session.keys.current
        deadline = current.expires_at if current else now
        pending = PendingConnect(session.session_id, session.peer_id, session.address,
                                 max(deadline, now + self._config.handshake_retry_initial),
                                 self._config.handshake_retry_initial, session)
        self._rekeys[session.session_id] = pending
        self._send_attempt(pending, now)

    def cancel_rekey(self, session: Session) -> None:
        """Forget the rekey of ``session`` (it closed); no callback follows."""
        pending = self._rekeys.get(session.session_id)
        if pending is not None and pending.session is session:
            self._finish(pending, None)

    def abandon(self, session_id: bytes, reason: str, code: int, message: str) -> bool:
        """Fail the pending connect ``session_id`` with a ``SessionClosed``.

        Returns:
            Whether such a connect was pending.
        """
        pending = self._connects.get(session_id)
        if pending is None:
            return False
        self._fail(pending, reason, code, message)
        return True

    def fail_connects_to(self, address: Address, reason: str) -> list[bytes]:
        """Fail every pending connect to ``address`` (an ICMP unreachable);
        rekeys are left alone. Returns the failed session ids."""
        failed = [pending for pending in self._connects.values() if pending.address == address]
        for pending in failed:
            self._fail(pending, CloseReason.ERROR, ErrorCode.INTERNAL_ERROR, reason)
        return [pending.session_id for pending in failed]

    # ------------------------------------------------------------------ timers

    def deadline(self, pending: PendingConnect) -> float | None:
        """When ``pending`` next needs :meth:`handle_timer`, or ``None`` if it is over."""
        if pending.session is None:
            live = self._connects.get(pending.session_id) is pending
        else:
            live = self._rekeys.get(pending.session_id) is pending
        return min(pending.deadline, pending.next_retry) if live else None

    def handle_timer(self, pending: PendingConnect, now: float) -> None:
        """Retransmit, or give up at the deadline (``SessionClosed(reason="timeout")``
        for a connect; the ``rekey_abandoned`` callback for a rekey)."""
        if self.deadline(pending) is None:
            # Ended since its timer came due: the session it rekeyed closed in
            # the same handle_timer call (say at key expiry, when both are due).
            return
        if now >= pending.deadline:
            if pending.session is None:
                self._stats["connects_timed_out"] += 1
                self._fail(pending, CloseReason.TIMEOUT, ErrorCode.IDLE_TIMEOUT,
                           "no handshake response before the deadline")
            else:
                self._finish(pending, None)
                self._rekey_abandoned(pending.session)
            return
        if now >= pending.next_retry:
            self._send_attempt(pending, now)
        self._schedule(pending, self.deadline(pending))

    # ------------------------------------------------------------------ packets

    def receive_response(self, data: bytes, address: Address, now: float) -> None:
        """A RESPONSE (6.2, 6.3). Raises only :class:`DecodeError` (the caller drops)."""
        msg = parse_response_untrusted(data)
        found = self._find_attempt(msg.receiver_index)
        if found is None:
            return
        pending, attempt = found
        if not macs_equal(mac(self._credentials.mac1_key, msg.body_for_mac1), msg.mac1):
            self._stats["responses_bad_mac"] += 1
            return
        try:
            payload = attempt.handshake.read_message(msg.noise)
        except NoiseError:
            # The responder is who we asked for (mac1 and the index match) but the
            # handshake does not authenticate: it holds another network seed.
            self._stats["auth_failures"] += 1
            if pending.session is None:
                self._fail(pending, CloseReason.AUTH_FAILURE, ErrorCode.AUTH_FAILURE,
                           "handshake did not authenticate (different network seed?)")
            else:
                self._forget_attempt(pending, attempt)
            return
        try:
            params = TransportParameters.decode_untrusted(payload)
        except DecodeError as exc:
            # docs/protocol.md section 6.4: missing or out-of-range parameters.
            self._stats["responses_bad_parameters"] += 1
            if pending.session is None:
                self._fail(pending, CloseReason.ERROR, ErrorCode.PROTOCOL_VIOLATION,
                           f"bad transport parameters: {exc}")
            else:
                self._forget_attempt(pending, attempt)
            return
        send, recv = _split(attempt.handshake, initiator=True)
        keys = PacketKeys(send=send, recv=recv, local_index=attempt.index,
                          remote_index=msg.sender_index, created_at=now, initiator=True,
                          limits=self._config.key_limits)
        self._finish(pending, attempt)
        if pending.session is not None:
            self._rekeyed(pending.session, keys, attempt.index, now)
        else:
            self._established(pending.session_id, pending.peer_id, address, keys, params,
                              attempt.index, now)
            request = pending.early_dht
            if request is not None and self._early_result is not None:
                # An answer to a request we did not carry is ignored.
                answer = params.early_dht if _carried(request) else None
                self._early_result(pending.session_id, answer, request, now)

    def receive_cookie_reply(self, data: bytes, address: Address, now: float) -> None:
        """A COOKIE_REPLY (6.6). Raises only :class:`DecodeError` (the caller drops)."""
        msg = parse_cookie_reply_untrusted(data)
        found = self._find_attempt(msg.receiver_index)
        if found is None:
            return
        pending, attempt = found
        cookie = open_cookie(cookie_key(pending.peer_id), msg.nonce, msg.sealed_cookie,
                             attempt.mac1)
        if cookie is None:
            self._stats["dropped_unauthenticated"] += 1
            return
        self._stats["cookie_replies_received"] += 1
        pending.cookie = cookie
        pending.cookie_at = now
        # Resend at once with mac2: the cookie reply was smaller than our
        # INITIATION, so this exchange cannot be used to amplify.
        self._send_attempt(pending, now)

    # ------------------------------------------------------------------ internals

    def _send_attempt(self, pending: PendingConnect, now: float) -> None:
        """Send a fresh INITIATION (new ephemeral key, new index)."""
        config = self._config
        suite = SUITE_BY_CIPHER[config.cipher]
        handshake = self._credentials.handshake(suite, initiator=True, peer_id=pending.peer_id)
        rekey_index = pending.session.keys.current.remote_index if pending.session else None
        # Padded so that the RESPONSE and COOKIE_REPLY are always smaller (6.6);
        # with an early DHT request, to the largest handshake packet, which is
        # the room the responder's answer gets under the same rule (6.9).
        params = local_params(config, pending.address, rekey_index)
        if pending.early_dht is not None and _carried(pending.early_dht):
            params = replace(params, early_dht=pending.early_dht)
            pad = MAX_HANDSHAKE_SIZE - _INITIATION_FIXED
        else:
            pad = MIN_INITIATION_SIZE - _INITIATION_FIXED
        params = params.encode(pad_to=pad)
        noise = handshake.write_message(params)
        index = self._indices.new(pending)
        cookie = pending.cookie
        if cookie is not None and now - pending.cookie_at >= config.cookie_secret_lifetime:
            cookie = pending.cookie = None
        packet, mac1_value = encode_initiation(suite, index, noise, pending.peer_id, cookie)
        pending.attempts.append(_Attempt(handshake, index, mac1_value, packet))
        while len(pending.attempts) > MAX_ATTEMPTS_PER_CONNECT:
            self._indices.release(pending.attempts.popleft().index)
        self._queue(packet, pending.address)
        pending.next_retry = now + pending.interval
        pending.interval = min(pending.interval * 2, config.handshake_retry_max)
        self._schedule(pending, self.deadline(pending))

    def _find_attempt(self, index: int) -> tuple[PendingConnect, _Attempt] | None:
        """The handshake attempt a RESPONSE or COOKIE_REPLY answers; counts and
        returns ``None`` when there is none."""
        pending = self._indices.get(index)
        if isinstance(pending, PendingConnect):
            for attempt in pending.attempts:
                if attempt.index == index:
                    return pending, attempt
        self._stats["dropped_unknown_index"] += 1
        return None

    def _forget_attempt(self, pending: PendingConnect, attempt: _Attempt) -> None:
        pending.attempts.remove(attempt)
        self._indices.release(attempt.index)

    def _finish(self, pending: PendingConnect, keep: _Attempt | None) -> None:
        """End ``pending``: release the indices of its attempts but ``keep``'s
        (which the new keys go on using)."""
        for attempt in pending.attempts:
            if attempt is not keep:
                self._indices.release(attempt.index)
        pending.attempts.clear()
        pending.timer_at = None
        if pending.session is None:
            self._connects.pop(pending.session_id, None)
        elif self._rekeys.get(pending.session_id) is pending:
            del self._rekeys[pending.session_id]

    def _fail(self, pending: PendingConnect, reason: str, code: int, message: str) -> None:
        self._finish(pending, None)
        self._stats["sessions_closed"] += 1
        self._push_event(SessionClosed(session_id=pending.session_id, peer_id=pending.peer_id,
                                       reason=reason, error_code=int(code), message=message))


class Responder:
    """The answering side of handshakes: ``mac1`` checks, cookies under load,
    replay protection and the limits on new sessions.

    Args:
        config: the endpoint's configuration.
        credentials: the node's handshake keys.
        indices: the endpoint's index table (new keys draw their index from it).
        stats: the endpoint's counters (this object adds to them).
        queue: ``queue(datagram, address)`` sends a datagram.
        half_open: ``half_open()`` is the number of half-open sessions.
        admits: ``admits(address)`` tells whether the session limits leave room
            for one more session from ``address``.
        rekey_target: ``rekey_target(index, peer_id)`` is the established session
            of ``peer_id`` that owns ``index``, or ``None``.
        half_opened: ``half_opened(peer_id, address, keys, params, local_index,
            now)`` creates the half-open session for a new handshake.
        rekey_offered: ``rekey_offered(session, keys, local_index, now)``: the
            peer rekeys ``session``; the keys wait until it uses them.
        answer_early: ``answer_early(peer_id, address, request, max_bytes, now)``
            answers the DHT request an INITIATION carries (6.9) with at most
            ``max_bytes`` bytes, or returns ``None`` to leave it unanswered. The
            peer is not yet proven a member: see the section.
    """

    def __init__(self, config: EndpointConfig, credentials: Credentials, indices: IndexTable,
                 stats: dict[str, int], *, queue: Callable[[bytes, Address], None],
                 half_open: Callable[[], int], admits: Callable[[Address], bool],
                 rekey_target: Callable[[int, bytes], Session | None],
                 half_opened: Callable[..., None],
                 rekey_offered: Callable[[Session, PacketKeys, int, float], None],
                 answer_early: Callable[..., bytes | None] | None = None) -> None:
        self._config = config
        self._credentials = credentials
        self._rng = credentials.rng
        self._indices = indices
        self._stats = stats
        self._queue = queue
        self._half_open = half_open
        self._admits = admits
        self._rekey_target = rekey_target
        self._half_opened = half_opened
        self._rekey_offered = rekey_offered
        self._answer_early = answer_early
        #: Ephemeral keys of recent INITIATIONs (``replay_cache_size``).
        self._replay_cache: OrderedDict[bytes, None] = OrderedDict()
        self._cookie_secret = self._rng(32)
        self._previous_cookie_secret: bytes | None = None
        self._cookie_secret_at: float | None = None
        self._rate_window_start = float("-inf")
        self._rate_count = 0

    @property
    def replay_cache_size(self) -> int:
        """Entries in the replay cache."""
        return len(self._replay_cache)

    def receive_initiation(self, data: bytes, address: Address, now: float) -> None:
        """An INITIATION (6.1, 6.6). Raises only :class:`DecodeError` (the caller drops)."""
        stats = self._stats
        config = self._config
        stats["initiations_received"] += 1
        stats["handshake_bytes_received_unvalidated"] += len(data)
        msg = parse_initiation_untrusted(data)
        if not macs_equal(mac(self._credentials.mac1_key, msg.body_for_mac1), msg.mac1):
            # The sender does not know our node id: silence, no state, no DH.
            stats["initiations_bad_mac"] += 1
            return
        if SUITES[msg.suite].split("_")[3] not in config.accepted_ciphers:
            stats["initiations_failed"] += 1
            return
        self._rotate_cookie_secret(now)
        if self._under_load(now) and not self._valid_mac2(msg.body_for_mac2, msg.mac2, address):
            nonce = self._rng(12)
            sealed = seal_cookie(self._credentials.cookie_key, nonce,
                                 self._cookie_for(address, self._cookie_secret), msg.mac1)
            stats["cookie_replies_sent"] += 1
            self._send_unvalidated(encode_cookie_reply(msg.sender_index, nonce, sealed),
                                   address, len(data))
            return
        ephemeral = msg.noise[:32]
        if ephemeral in self._replay_cache:
            stats["initiations_replayed"] += 1
            return
        handshake = self._credentials.handshake(msg.suite, initiator=False)
        try:
            payload = handshake.read_message(msg.noise)
            params = TransportParameters.decode_untrusted(payload)
        except (NoiseError, DecodeError):
            stats["initiations_failed"] += 1
            return
        self._replay_cache[ephemeral] = None
        if len(self._replay_cache) > config.replay_cache_size:
            self._replay_cache.popitem(last=False)
        peer_id = handshake.remote_static
        assert peer_id is not None  # IK always transmits the initiator's static key
        rekeyed = None
        if params.rekey_index is not None:
            rekeyed = self._rekey_target(params.rekey_index, peer_id)
            if rekeyed is None:
                stats["initiations_failed"] += 1
                return
        elif not self._admits(address):
            # The limits bound new sessions only, so they are checked once the
            # Noise message told a rekey apart: a rekey replaces the keys of a
            # session already counted, and refusing it would let a full table
            # (or the peer's other sessions) kill that session when its keys
            # reach their hard time limit.
            stats["initiations_rejected_limit"] += 1
            return
        local_index = self._indices.new()
        response_params = local_params(config, address)
        if params.early_dht is not None and rekeyed is None and self._answer_early is not None:
            response_params = self._early(peer_id, address, params.early_dht, response_params,
                                          len(data), now)
        response_noise = handshake.write_message(response_params.encode())
        send, recv = _split(handshake, initiator=False)
        keys = PacketKeys(send=send, recv=recv, local_index=local_index,
                          remote_index=msg.sender_index, created_at=now, initiator=False,
                          limits=config.key_limits)
        packet = encode_response(local_index, msg.sender_index, response_noise, peer_id)
        if rekeyed is not None:
            # A rekey: the new keys wait as ``next`` until the initiator uses them.
            self._rekey_offered(rekeyed, keys, local_index, now)
            self._queue(packet, address)
            return
        self._half_opened(peer_id, address, keys, params, local_index, now)
        self._send_unvalidated(packet, address, len(data))

    def _early(self, peer_id: bytes, address: Address, request: bytes,
               params: TransportParameters, received: int, now: float) -> TransportParameters:
        """Our RESPONSE parameters with the answer to an early DHT request, if it
        fits (6.9). The answer is sealed with keys that mix the network's PSK, so
        only a member can read it; the replay cache has already turned away a
        replayed INITIATION, so one INITIATION gets at most one answer; and the
        RESPONSE stays within the INITIATION's size (6.6), so it cannot amplify."""
        # 3: the parameter's id and a length varint of at most two bytes.
        budget = min(received, MAX_HANDSHAKE_SIZE) - _RESPONSE_FIXED - len(params.encode()) - 3
        if budget <= 0:
            self._stats["early_dht_unanswered"] += 1
            return params
        answer = self._answer_early(peer_id, address, request, budget, now)
        if answer is None or len(answer) > budget:
            self._stats["early_dht_unanswered"] += 1
            return params
        self._stats["early_dht_answered"] += 1
        return replace(params, early_dht=bytes(answer))

    # ------------------------------------------------------------------ load

    def _under_load(self, now: float) -> bool:
        if now - self._rate_window_start >= 1.0:
            self._rate_window_start = now
            self._rate_count = 0
        self._rate_count += 1
        return (
            self._rate_count > self._config.handshakes_per_second_before_cookies
            or self._half_open() * 2 >= self._config.max_half_open
        )

    def _cookie_for(self, address: Address, secret: bytes) -> bytes:
        # The cookie binds the source address: repr() identifies it exactly.
        return mac(secret, repr(address).encode())

    def _rotate_cookie_secret(self, now: float) -> None:
        if self._cookie_secret_at is None:
            self._cookie_secret_at = now
        elif now - self._cookie_secret_at >= self._config.cookie_secret_lifetime:
            self._previous_cookie_secret = self._cookie_secret
            self._cookie_secret = self._rng(32)
            self._cookie_secret_at = now

    def _valid_mac2(self, body: bytes, mac2: bytes, address: Address) -> bool:
        for secret in (self._cookie_secret, self._previous_cookie_secret):
            if secret is not None and macs_equal(mac(self._cookie_for(address, secret), body),
                                                 mac2):
                return True
        return False

    def _send_unvalidated(self, packet: bytes, address: Address, received: int) -> None:
        # docs/protocol.md section 6.6: before an address is validated we never
        # send more bytes than it sent us. The layouts guarantee it (INITIATIONs
        # are padded); this check keeps it true whatever changes later.
        if len(packet) > received:
            self._stats["amplification_refused"] += 1
            return
        self._stats["handshake_bytes_sent_unvalidated"] += len(packet)
        self._queue(packet, address)
