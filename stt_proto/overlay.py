"""The one sans-I/O object the adapters drive: the endpoint plus its overlays.

:class:`OverlayHost` has the endpoint's I/O surface (``receive_datagram``,
``datagrams_to_send``, ``get_timer``, ``handle_timer``, ``next_event``) and
composes it with the overlays (the DHT now; pub/sub and content distribution
attach the same way):

* DHT frames that arrive on a session go to the DHT with the session's proven
  peer id; they never reach the application.
* Messages the DHT sends go out through the :class:`~stt_proto.pool.SessionPool`,
  which opens sessions as needed and keeps one per peer.
* A connect the pool started that fails tells the DHT its peer is unreachable.
  The adapters hand the pool's sessions, and while an overlay is attached the
  inbound ones, to the application only once the peer opens a stream or sends
  a datagram on them (or through ``dht.connect``): DHT-only sessions never
  pile up in ``accept``.
* The earliest of all timers is the host's timer.
* A DHT request that arrives inside a handshake INITIATION is answered inside
  the RESPONSE (``docs/protocol.md`` 6.9), by the DHT's
  :meth:`~stt_proto.dht.node.DhtNode.answer_early`, which keeps the sender,
  not yet proven a member, out of its routing table.
* Pub/sub messages travel on the pub/sub stream of each session
  (:data:`~stt_proto.constants.PUBSUB_STREAM_ID`): the host gives what arrives
  on it to the pub/sub engine, writes the engine's per-peer queues into it
  while the stream takes data (the rest waits for ``StreamWritable``), opens
  the sessions the engine asks for, and runs its DHT operations (announcing a
  topic, finding its subscribers). No event of an overlay stream reaches the
  application; a node without pub/sub stops such a stream.

Commands (``connect``, ``send_message``, ...) stay on :attr:`endpoint`.
"""

from __future__ import annotations

from typing import Any

from .constants import FIRST_OVERLAY_STREAM_ID, PUBSUB_STREAM_ID, ErrorCode
from .endpoint import Endpoint
from .errors import DhtBusyError, LocalProtocolError, SendBufferFullError
from .events import (
    DhtMessageReceived,
    DhtQueryCompleted,
    Event,
    MessageReceived,
    SessionClosed,
    SessionEstablished,
    StreamClosed,
    StreamDataReceived,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamStopped,
    StreamWritable,
)
from .pool import SessionPool

__all__ = ["OverlayHost"]

Address = Any


class OverlayHost:
    """An :class:`Endpoint` with its overlays and session pool.

    :param endpoint: the endpoint to drive.
    :param pool: the session pool (default: one with default limits).
    """

    def __init__(self, endpoint: Endpoint, *, pool: SessionPool | None = None) -> None:
        self.endpoint = endpoint
        self.pool = pool if pool is not None else SessionPool(endpoint)
        self.dht: Any = None
        self.pubsub: Any = None
        self._events: list[Event] = []
        self._now = 0.0  # the latest ``now`` the adapter gave (next_event takes none)
        # The session whose pub/sub stream carries each peer's messages.
        self._pubsub_link: dict[bytes, bytes] = {}
        self._pubsub_queries: dict[int, bytes] = {}   # find_providers query -> topic
        # Flow-control credit the pub/sub engine took from each session's
        # stream since the last drain (the engine consumes what it receives).
        self._credit: dict[bytes, int] = {}
        self._auto_credit = endpoint._config.auto_credit
        self.stats = {"dht_messages_unrouted": 0, "overlay_streams_refused": 0,
                      "pubsub_links_lost": 0}

    def attach_dht(self, dht: Any) -> None:
        """Route DHT frames to ``dht`` (a :class:`~stt_proto.dht.node.DhtNode`)."""
        if self.dht is not None:
            raise ValueError("a DHT is attached already")
        self.dht = dht
        self.endpoint.set_early_dht_handler(self._answer_early)

    def detach_dht(self) -> None:
        self.dht = None
        self.endpoint.set_early_dht_handler(None)

    def attach_pubsub(self, pubsub: Any) -> None:
        """Route the pub/sub stream to ``pubsub`` (a
        :class:`~stt_proto.pubsub.node.PubSubNode`); needs the DHT attached."""
        if self.pubsub is not None:
            raise ValueError("a pub/sub engine is attached already")
        if self.dht is None:
            raise ValueError("attach the DHT first: pub/sub finds subscribers through it")
        self.pubsub = pubsub

    def detach_pubsub(self) -> None:
        self.pubsub = None
        self._pubsub_link.clear()
        self._pubsub_queries.clear()

    def _answer_early(self, peer_id: bytes, address: Address, request: bytes, max_bytes: int,
                      now: float) -> bytes | None:
        dht = self.dht
        if dht is None:
            return None
        return dht.answer_early(peer_id, address, request, max_bytes=max_bytes, now=now)

    @property
    def node_id(self) -> bytes:
        return self.endpoint.node_id

    # -- the I/O surface -----------------------------------------------------------------

    def receive_datagram(self, data: bytes, address: Address, now: float) -> None:
        self.endpoint.receive_datagram(data, address, now)
        self._drain(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        self._drain(now)
        return self.endpoint.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        timers = [self.endpoint.get_timer(), self.pool.get_timer()]
        if self.dht is not None:
            timers.append(self.dht.get_timer())
        if self.pubsub is not None:
            timers.append(self.pubsub.get_timer())
        timers = [t for t in timers if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self.pool.handle_timer(now=now)
        if self.dht is not None:
            self.dht.handle_timer(now=now)
        if self.pubsub is not None:
            self.pubsub.handle_timer(now=now)
        self._drain(now)

    def next_event(self) -> Event | None:
        if not self._events:
            self._drain(None)
        return self._events.pop(0) if self._events else None

    # -- routing ------------------------------------------------------------------------

    def _drain(self, now: float | None) -> None:
        """Take the endpoint's events, feed the overlays, send what they produce.
        Repeats until nothing moves: an answer sent may complete a query at once."""
        endpoint = self.endpoint
        dht = self.dht
        if now is None or now < self._now:
            now = self._now
        self._now = now
        while True:
            moved = False
            while (event := endpoint.next_event()) is not None:
                moved = True
                self._route(event, now)
            if self.pubsub is not None and self._pubsub_step(now):
                moved = True
            if dht is not None:
                for peer_id, address, data in dht.messages_to_send():
                    moved = True
                    if not self.pool.send_dht(peer_id, address, data, now=now):
                        dht.peer_unreachable(peer_id, now=now)
                while (event := dht.next_event()) is not None:
                    if type(event) is DhtQueryCompleted and event.query_id in self._pubsub_queries:
                        moved = True
                        key = self._pubsub_queries.pop(event.query_id)
                        if self.pubsub is None:
                            continue
                        if event.kind == "find_providers":
                            self.pubsub.providers_found(key, event.result, now=now)
                        else:
                            self.pubsub.provided(key, now=now)
                        continue
                    self._events.append(event)
            if not moved and self._credit:
                moved = True
                credit, self._credit = self._credit, {}
                for session_id, nbytes in credit.items():
                    endpoint.stream_consumed(session_id, PUBSUB_STREAM_ID, nbytes, now=now)
            if not moved:
                return

    # -- pub/sub ----------------------------------------------------------------------------

    def _pubsub_step(self, now: float) -> bool:
        """Run what the pub/sub engine asked for; True if anything moved."""
        pubsub, dht, pool = self.pubsub, self.dht, self.pool
        moved = False
        for action, key in pubsub.dht_actions():
            moved = True
            if dht is None:
                continue
            try:
                if action == "provide":
                    self._pubsub_queries[dht.provide(key, now=now)] = key
                elif action == "stop_providing":
                    dht.stop_providing(key)
                else:
                    self._pubsub_queries[dht.find_providers(key, now=now)] = key
            except DhtBusyError:
                # The application's lookups fill the DHT: the topic asks again
                # at a later heartbeat.
                if action == "find_providers":
                    pubsub.providers_found(key, [], now=now)
                elif action == "provide":
                    pubsub.provided(key, now=now, stored=False)
        for peer_id, address in pubsub.connects_wanted():
            moved = True
            session_id = pool.reach(peer_id, address, now=now)
            if session_id is False:
                pubsub.peer_unlinked(peer_id, now=now, unreachable=True)
            elif session_id is not None:
                self._link(peer_id, session_id, now)
        for peer_id in pubsub.take_banned():
            session_id = self._pubsub_link.pop(peer_id, None)
            if session_id is not None:
                try:
                    self.endpoint.stop_stream(session_id, PUBSUB_STREAM_ID,
                                              ErrorCode.PROTOCOL_VIOLATION, now=now)
                except (KeyError, LocalProtocolError):
                    pass
        for peer_id in pubsub.output_peers():
            if self._write(peer_id, now):
                moved = True
        while (event := pubsub.next_event()) is not None:
            self._events.append(event)
        return moved

    def pubsub_unsettled(self) -> bool:
        """Whether pub/sub data is still queued for a peer or written and not yet
        acknowledged (a node stopping now would lose it)."""
        if self.pubsub is None:
            return False
        if self.pubsub.output_peers():
            return True
        buffered = self.endpoint.stream_send_buffered
        return any(buffered(session_id, PUBSUB_STREAM_ID)
                   for session_id in self._pubsub_link.values())

    def _link(self, peer_id: bytes, session_id: bytes, now: float) -> None:
        if self._pubsub_link.get(peer_id) == session_id:
            return
        if peer_id in self._pubsub_link:
            # A newer session replaces the link: what was queued on the old
            # stream's side is the engine's to send again (repair).
            self.pubsub.peer_unlinked(peer_id, now=now)
        known = self.pool.peer_of(session_id)
        self._pubsub_link[peer_id] = session_id
        self.pubsub.peer_linked(peer_id, known[1] if known else None, now=now)

    def _write(self, peer_id: bytes, now: float) -> bool:
        """Write the peer's queue into its pub/sub stream until the stream is full."""
        session_id = self._pubsub_link.get(peer_id)
        if session_id is None:
            return False
        pubsub, endpoint = self.pubsub, self.endpoint
        limit = pubsub.config.max_stream_buffered
        wrote = False
        while endpoint.stream_send_buffered(session_id, PUBSUB_STREAM_ID) < limit and \
                (data := pubsub.pop_output(peer_id)) is not None:
            try:
                endpoint.send_message(session_id, PUBSUB_STREAM_ID, data, now=now)
            except SendBufferFullError:
                pubsub.push_back(peer_id, data)
                break
            except (KeyError, LocalProtocolError, ValueError):
                self._unlink(peer_id, now)
                break
            wrote = True
        if wrote:
            self.pool.touch(session_id, now)
        return wrote

    def _unlink(self, peer_id: bytes, now: float) -> None:
        if self._pubsub_link.pop(peer_id, None) is not None:
            self.stats["pubsub_links_lost"] += 1
            self.pubsub.peer_unlinked(peer_id, now=now)

    def _overlay_stream_event(self, event: Any, now: float) -> None:
        """An event of an overlay stream: the pub/sub engine's, never the application's."""
        session_id, stream_id = event.session_id, event.stream_id
        pubsub = self.pubsub
        known = self.pool.peer_of(session_id)
        if stream_id != PUBSUB_STREAM_ID or pubsub is None or known is None:
            if type(event) is StreamOpened:
                self.stats["overlay_streams_refused"] += 1
                try:
                    self.endpoint.stop_stream(session_id, stream_id,
                                              ErrorCode.STREAM_STATE_ERROR, now=now)
                except (KeyError, LocalProtocolError):
                    pass
            return
        peer_id, address = known
        kind = type(event)
        if kind is MessageReceived:
            if peer_id not in self._pubsub_link:
                # The peer started pub/sub with us: answer on this session. A
                # peer may write on another session of the pair than we do;
                # either proves who it is, so both are read.
                self._link(peer_id, session_id, now)
            if not self._auto_credit:
                # Credit goes back once per drain, not once per message.
                credit = self._credit
                credit[session_id] = credit.get(session_id, 0) + event.flow_controlled_length
            pubsub.receive(peer_id, address, event.data, now=now)
        elif kind is StreamWritable:
            self._write(peer_id, now)
        elif kind in (StreamStopped, StreamReset, StreamEnded, StreamClosed,
                      StreamDataReceived):
            # The peer left pub/sub on this session (or broke its framing): the
            # id never opens again in it, so the link is gone with it.
            if self._pubsub_link.get(peer_id) == session_id:
                self._unlink(peer_id, now)

    def _route(self, event: Event, now: float) -> None:
        kind = type(event)
        stream_id = getattr(event, "stream_id", None)
        if stream_id is not None and stream_id >= FIRST_OVERLAY_STREAM_ID:
            self._overlay_stream_event(event, now)
            return
        if kind is DhtMessageReceived:
            known = self.pool.peer_of(event.session_id)
            if known is None or self.dht is None:
                self.stats["dht_messages_unrouted"] += 1
                return
            self.dht.receive(known[0], known[1], event.data, now=now)
            return
        if kind is SessionEstablished:
            self.pool.on_established(event.session_id, event.peer_id, event.peer_address, now=now)
            if not event.initiator and self.dht is not None:
                # The peer proved it is a member: a request it made inside the
                # handshake now counts as contact.
                self.dht.peer_confirmed(event.peer_id, event.peer_address, now=now)
            if self.pubsub is not None and self.pubsub.expects(event.peer_id):
                self._link(event.peer_id, event.session_id, now)
        elif kind is SessionClosed:
            unreachable = self.pool.on_closed(event.session_id)
            if self.pubsub is not None:
                if unreachable is not None:
                    self.pubsub.peer_unlinked(unreachable, now=now, unreachable=True)
                elif self._pubsub_link.get(event.peer_id) == event.session_id:
                    self._unlink(event.peer_id, now)
                    newer = self.pool.session_of(event.peer_id)
                    if newer is not None and self.pubsub.expects(event.peer_id):
                        self._link(event.peer_id, newer, now)
            if unreachable is not None:
                if self.dht is not None:
                    self.dht.peer_unreachable(unreachable, now=now)
                return  # the application never saw this session
        self._events.append(event)
