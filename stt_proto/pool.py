"""One session per peer, shared by the overlays and the application, bounded.

The overlays talk to peers by node id; :class:`SessionPool` turns that into
sessions of the :class:`~stt_proto.endpoint.Endpoint`:

* It knows every established session (opened by either side, by the pool or by
  the application) and sends on the **newest** one of a peer, so a peer that
  restarted (a new session while the old one still times out) is reached at once.
* Except after a **simultaneous open**: when both nodes dial each other at the
  same moment, each end holds two sessions, one opened by either side, whose
  handshakes complete within ``simultaneous_window`` of each other. Both ends
  then send on the one the smaller node id opened (the tie-break
  ``Node.connect`` uses), whatever order the two were confirmed in, and the
  larger node closes its own half if the pool opened it (the application's
  half is the application's to close: the adapter's connect does). Without
  this each end would send on the other's session and leave its own idle, and
  the pool's idle close would take both down.
* To a peer without a session it opens one whose handshake carries the first
  message (the peer may answer it in the handshake, ``docs/protocol.md`` 6.9)
  and keeps what else is to be sent in a small per-peer queue
  (``max_queued_per_peer``, oldest dropped and counted) until the handshake
  completes. If the connect fails, the owner learns which
  peer is unreachable. A message sent again while the handshake runs (the
  DHT's retransmission) is not queued twice: it retries the handshake at once.
* Sessions the pool opened itself are closed after ``idle_close`` seconds
  without overlay traffic when no stream is open on them. ``max_sessions``
  bounds what the pool opens (sessions and connects under way): the least
  recently used session is closed to make room, and when every slot is a
  connect still running, the send is refused (``pool_refused_full``) and the
  DHT treats the peer as unreachable. Sessions the
  application opened or accepted are the application's to close.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .errors import LocalProtocolError

__all__ = ["SessionPool"]

Address = Any


class _Peer:
    __slots__ = ("sessions", "connecting", "queue", "address", "early")

    def __init__(self, address: Address) -> None:
        self.sessions: list[bytes] = []      # established, oldest first
        self.connecting: bytes | None = None
        self.queue: list[bytes] = []
        self.address = address
        self.early: bytes | None = None   # what the pending connect's handshake carries


class SessionPool:
    """Sessions by peer for an endpoint (see the module docstring)."""

    def __init__(self, endpoint: Any, *, max_sessions: int = 256, idle_close: float = 120.0,
                 max_queued_per_peer: int = 32, connect_timeout: float | None = None,
                 simultaneous_window: float = 2.0) -> None:
        if max_sessions < 1 or max_queued_per_peer < 1 or not idle_close > 0 \
                or not simultaneous_window >= 0:
            raise ValueError("max_sessions, max_queued_per_peer and idle_close must be "
                             "positive, simultaneous_window not negative")
        self._endpoint = endpoint
        self.max_sessions = max_sessions
        self.idle_close = idle_close
        #: Two sessions with a peer, one opened by each side, confirmed within
        #: this many seconds of each other are a simultaneous open. A handshake
        #: takes a round trip plus its retransmissions; a peer that restarted
        #: comes back later than that, and its new session is the one to use.
        self.simultaneous_window = simultaneous_window
        self.max_queued_per_peer = max_queued_per_peer
        self.connect_timeout = connect_timeout
        self._peers: dict[bytes, _Peer] = {}
        self._sessions: dict[bytes, tuple[bytes, Address]] = {}   # sid -> (peer, address)
        self._opened: dict[bytes, tuple[float, bool]] = {}        # sid -> (confirmed at, we dialled)
        self._connecting: dict[bytes, bytes] = {}                 # sid -> peer
        # Sessions the pool opened, least recently used first, with their last use.
        self._own: OrderedDict[bytes, float] = OrderedDict()
        self.stats = {"pool_connects": 0, "pool_connect_failures": 0, "pool_idle_closed": 0,
                      "pool_evicted": 0, "pool_queue_dropped": 0, "pool_send_failed": 0,
                      "pool_connect_retries": 0, "pool_refused_full": 0,
                      "pool_simultaneous_closed": 0}

    # -- lookups -----------------------------------------------------------------------

    def session_of(self, peer_id: bytes) -> bytes | None:
        """The established session to ``peer_id`` that overlay traffic goes on,
        if any: the newest, or the kept half of a simultaneous open."""
        peer = self._peers.get(peer_id)
        return self._current(peer_id, peer) if peer is not None and peer.sessions else None

    def _current(self, peer_id: bytes, peer: _Peer) -> bytes:
        """The session of ``peer`` (which has one) to send on (module docstring)."""
        sessions = peer.sessions
        newest = sessions[-1]
        if len(sessions) > 1:
            pair = self._simultaneous(peer_id, sessions[-2], newest)
            if pair is not None:
                return pair[0]
        return newest

    def _simultaneous(self, peer_id: bytes, older: bytes, newer: bytes
                      ) -> tuple[bytes, bytes] | None:
        """``(kept, dropped)`` when ``older`` and ``newer`` are the two halves of
        a simultaneous open, else None. The kept one is the session the smaller
        node id opened: both ends pick the same one without a word."""
        at_old, ours_old = self._opened[older]
        at_new, ours_new = self._opened[newer]
        if ours_old == ours_new or at_new - at_old > self.simultaneous_window:
            return None
        we_keep_ours = self._endpoint.node_id < peer_id
        return (older, newer) if ours_old == we_keep_ours else (newer, older)

    def peer_of(self, session_id: bytes) -> tuple[bytes, Address] | None:
        """``(peer_id, address)`` of an established session."""
        return self._sessions.get(session_id)

    def owns(self, session_id: bytes) -> bool:
        """Whether the pool opened ``session_id`` (rather than the application)."""
        return session_id in self._own or session_id in self._connecting

    def disown(self, session_id: bytes) -> None:
        """The application took ``session_id`` over: the pool no longer closes it."""
        self._own.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)

    # -- sending -------------------------------------------------------------------------

    def send_dht(self, peer_id: bytes, address: Address, data: bytes, *, now: float) -> bool:
        """Send a DHT message to ``peer_id``, connecting first if needed.

        Returns False when the peer cannot be reached right away (the connect
        could not even start); the caller treats the peer as unreachable.
        """
        peer = self._peers.get(peer_id)
        if peer is None:
            peer = self._peers[peer_id] = _Peer(address)
        if peer.sessions:
            session_id = self._current(peer_id, peer)
            try:
                self._endpoint.send_dht(session_id, data, now=now)
            except (KeyError, LocalProtocolError, ValueError):
                self.stats["pool_send_failed"] += 1
                return True  # the DHT layer retransmits or times out
            self.touch(session_id, now)
            return True
        if peer.connecting is None:
            if not self._make_room(now):
                self.stats["pool_refused_full"] += 1
                self._forget_if_empty(peer_id)
                return False
            try:
                # The first message rides in the handshake: the peer may answer
                # it in its RESPONSE, which saves the round trip a cold peer
                # would cost (docs/protocol.md 6.9).
                session_id = self._endpoint.connect(address, peer_id, now=now,
                                                    timeout=self.connect_timeout,
                                                    early_dht=data)
            except (LocalProtocolError, ValueError):
                self.stats["pool_connect_failures"] += 1
                self._forget_if_empty(peer_id)
                return False
            peer.connecting = session_id
            peer.address = address
            peer.early = data
            self._connecting[session_id] = peer_id
            self.stats["pool_connects"] += 1
            return True
        if data == peer.early or data in peer.queue:
            # The DHT retransmits (the same bytes) after a timeout from its
            # measured RTTs: the handshake's packet was lost. Retry it now
            # rather than after the endpoint's fixed backoff (1 s at first).
            if self._endpoint.retry_connect(peer.connecting, now=now):
                self.stats["pool_connect_retries"] += 1
            return True
        if len(peer.queue) >= self.max_queued_per_peer:
            peer.queue.pop(0)
            self.stats["pool_queue_dropped"] += 1
        peer.queue.append(data)
        return True

    def reach(self, peer_id: bytes, address: Address, *, now: float) -> bytes | None | bool:
        """A session to ``peer_id`` for an overlay's stream: its id if one is up;
        None while a connect runs (the owner hears ``SessionEstablished``);
        False when the connect could not even start."""
        peer = self._peers.get(peer_id)
        if peer is None:
            peer = self._peers[peer_id] = _Peer(address)
        if peer.sessions:
            session_id = self._current(peer_id, peer)
            self.touch(session_id, now)
            return session_id
        if peer.connecting is not None:
            return None
        if not self._make_room(now):
            self.stats["pool_refused_full"] += 1
            self._forget_if_empty(peer_id)
            return False
        try:
            session_id = self._endpoint.connect(address, peer_id, now=now,
                                                timeout=self.connect_timeout)
        except (LocalProtocolError, ValueError):
            self.stats["pool_connect_failures"] += 1
            self._forget_if_empty(peer_id)
            return False
        peer.connecting = session_id
        peer.address = address
        self._connecting[session_id] = peer_id
        self.stats["pool_connects"] += 1
        return None

    def touch(self, session_id: bytes, now: float) -> None:
        """Overlay traffic on ``session_id``: it is the most recently used."""
        if session_id in self._own:
            self._own[session_id] = now
            self._own.move_to_end(session_id)

    def _make_room(self, now: float) -> bool:
        """Room for one more session of the pool's own (``max_sessions`` counts the
        sessions it opened and the connects it runs), closing the least recently
        used one if needed; False when every slot is a connect still running."""
        while len(self._own) + len(self._connecting) >= self.max_sessions:
            if not self._own:
                return False
            session_id = next(iter(self._own))
            self._own.pop(session_id)
            self.stats["pool_evicted"] += 1
            self._close(session_id, now)
        return True

    def _close(self, session_id: bytes, now: float) -> None:
        try:
            self._endpoint.close(session_id, now=now)
        except KeyError:
            pass

    # -- the endpoint's events --------------------------------------------------------------

    def on_established(self, session_id: bytes, peer_id: bytes, address: Address, *,
                       initiator: bool, now: float) -> None:
        """A session with ``peer_id`` was confirmed; ``initiator``: we dialled it."""
        peer = self._peers.get(peer_id)
        if peer is None:
            peer = self._peers[peer_id] = _Peer(address)
        peer.sessions.append(session_id)
        self._sessions[session_id] = (peer_id, address)
        self._opened[session_id] = (now, initiator)
        if self._connecting.pop(session_id, None) is not None:
            peer.connecting = None
            peer.early = None
            self._own[session_id] = now
        if len(peer.sessions) > 1:
            pair = self._simultaneous(peer_id, peer.sessions[-2], session_id)
            if pair is not None and pair[1] in self._own:
                # Our half of a simultaneous open lost the tie-break: the peer
                # sends on the other one, so this one would only idle.
                self._own.pop(pair[1])
                self.stats["pool_simultaneous_closed"] += 1
                self._close(pair[1], now)
        queue, peer.queue = peer.queue, []
        for data in queue:
            try:
                self._endpoint.send_dht(self._current(peer_id, peer), data, now=now)
            except (KeyError, LocalProtocolError, ValueError):
                self.stats["pool_send_failed"] += 1

    def on_closed(self, session_id: bytes) -> bytes | None:
        """A session ended; returns the peer id when it was a connect of the pool
        that failed (the peer is unreachable)."""
        self._own.pop(session_id, None)
        self._opened.pop(session_id, None)
        peer_id = self._connecting.pop(session_id, None)
        if peer_id is not None:
            peer = self._peers.get(peer_id)
            if peer is not None:
                peer.connecting = None
                peer.early = None
                peer.queue.clear()
            self.stats["pool_connect_failures"] += 1
            self._forget_if_empty(peer_id)
            return peer_id
        known = self._sessions.pop(session_id, None)
        if known is not None:
            peer = self._peers.get(known[0])
            if peer is not None and session_id in peer.sessions:
                peer.sessions.remove(session_id)
            self._forget_if_empty(known[0])
        return None

    def _forget_if_empty(self, peer_id: bytes) -> None:
        peer = self._peers.get(peer_id)
        if peer is not None and not peer.sessions and peer.connecting is None and not peer.queue:
            del self._peers[peer_id]

    # -- time ------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        if not self._own:
            return None
        return next(iter(self._own.values())) + self.idle_close

    def handle_timer(self, *, now: float) -> None:
        """Close the pool's sessions idle for ``idle_close`` with no stream open."""
        while self._own:
            session_id, last = next(iter(self._own.items()))
            if last + self.idle_close > now:
                break
            self._own.pop(session_id)
            try:
                busy = bool(self._endpoint.stream_ids(session_id))
            except KeyError:
                busy = False
            if busy:  # streams in use: look again after another idle period
                self._own[session_id] = now
                continue
            self.stats["pool_idle_closed"] += 1
            self._close(session_id, now)
