"""The one sans-I/O object the adapters drive: the endpoint plus its overlays.

:class:`OverlayHost` has the endpoint's I/O surface (``receive_datagram``,
``datagrams_to_send``, ``get_timer``, ``handle_timer``, ``next_event``) and
composes it with the overlays (the DHT; pub/sub and content distribution,
each with a stream of its own in every session):

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
* Pub/sub and content messages travel on their overlay's stream of each
  session (:data:`~stt_proto.constants.PUBSUB_STREAM_ID`,
  :data:`~stt_proto.constants.CONTENT_STREAM_ID`); an
  :class:`~stt_proto.overlay_channel.OverlayChannel` per overlay moves them
  between the stream and the engine, opens the sessions the engine asks for
  and runs its DHT operations (announcements, provider lookups). No event of
  an overlay stream reaches the application; a node without that overlay
  stops such a stream.

Commands (``connect``, ``send_message``, ...) stay on :attr:`endpoint`.
"""

from __future__ import annotations

from typing import Any

from .constants import CONTENT_STREAM_ID, FIRST_OVERLAY_STREAM_ID, PUBSUB_STREAM_ID, ErrorCode
from .endpoint import Endpoint
from .errors import LocalProtocolError
from .events import (
    DhtMessageReceived,
    DhtQueryCompleted,
    Event,
    SessionClosed,
    SessionEstablished,
    StreamOpened,
)
from .overlay_channel import OverlayChannel
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
        self._events: list[Event] = []
        self._now = 0.0  # the latest ``now`` the adapter gave (next_event takes none)
        self.stats = {"dht_messages_unrouted": 0, "overlay_streams_refused": 0}
        # The overlays with a stream in every session, by stream id.
        self._channels: dict[int, OverlayChannel] = {}

    def attach_dht(self, dht: Any) -> None:
        """Route DHT frames to ``dht`` (a :class:`~stt_proto.dht.node.DhtNode`)."""
        if self.dht is not None:
            raise ValueError("a DHT is attached already")
        self.dht = dht
        self.endpoint.set_early_dht_handler(self._answer_early)

    def detach_dht(self) -> None:
        self.dht = None
        self.endpoint.set_early_dht_handler(None)

    def _attach(self, engine: Any, stream_id: int, name: str) -> None:
        if stream_id in self._channels:
            raise ValueError(f"a {name} engine is attached already")
        if self.dht is None:
            raise ValueError(f"attach the DHT first: {name} finds its peers through it")
        self._channels[stream_id] = OverlayChannel(
            engine, stream_id, name, endpoint=self.endpoint, pool=self.pool, dht=self.dht,
            stats=self.stats)

    def _engine_of(self, stream_id: int) -> Any:
        channel = self._channels.get(stream_id)
        return channel.engine if channel is not None else None

    def attach_pubsub(self, pubsub: Any) -> None:
        """Route the pub/sub stream to ``pubsub`` (a
        :class:`~stt_proto.pubsub.node.PubSubNode`); needs the DHT attached."""
        self._attach(pubsub, PUBSUB_STREAM_ID, "pubsub")

    def detach_pubsub(self) -> None:
        self._channels.pop(PUBSUB_STREAM_ID, None)

    @property
    def pubsub(self) -> Any:
        """The attached pub/sub engine, or None."""
        return self._engine_of(PUBSUB_STREAM_ID)

    def attach_content(self, content: Any) -> None:
        """Route the content stream to ``content`` (a
        :class:`~stt_proto.content.node.ContentNode`); needs the DHT attached."""
        self._attach(content, CONTENT_STREAM_ID, "content")

    def detach_content(self) -> None:
        self._channels.pop(CONTENT_STREAM_ID, None)

    @property
    def content(self) -> Any:
        """The attached content engine, or None."""
        return self._engine_of(CONTENT_STREAM_ID)

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
        for channel in self._channels.values():
            timers.append(channel.engine.get_timer())
        timers = [t for t in timers if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self.pool.handle_timer(now=now)
        if self.dht is not None:
            self.dht.handle_timer(now=now)
        for channel in list(self._channels.values()):
            channel.engine.handle_timer(now=now)
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
            for channel in list(self._channels.values()):
                if channel.step(now, self._events):
                    moved = True
            if dht is not None:
                for peer_id, address, data in dht.messages_to_send():
                    moved = True
                    if not self.pool.send_dht(peer_id, address, data, now=now):
                        dht.peer_unreachable(peer_id, now=now)
                while (event := dht.next_event()) is not None:
                    if type(event) is DhtQueryCompleted and self._overlay_query(event, now):
                        moved = True
                        continue
                    self._events.append(event)
            if not moved:
                for channel in self._channels.values():
                    if channel.return_credit(now):
                        moved = True
            if not moved:
                return

    def _overlay_query(self, event: DhtQueryCompleted, now: float) -> bool:
        return any(channel.dht_completed(event, now) for channel in self._channels.values())

    def pubsub_unsettled(self) -> bool:
        """Whether pub/sub data is still queued for a peer or written and not yet
        acknowledged (a node stopping now would lose it)."""
        channel = self._channels.get(PUBSUB_STREAM_ID)
        return channel is not None and channel.unsettled()

    def _overlay_stream_event(self, event: Any, now: float) -> None:
        """An event of an overlay stream: an overlay engine's, never the application's."""
        session_id, stream_id = event.session_id, event.stream_id
        channel = self._channels.get(stream_id)
        known = self.pool.peer_of(session_id)
        if channel is None or known is None:
            if type(event) is StreamOpened:
                self.stats["overlay_streams_refused"] += 1
                try:
                    self.endpoint.stop_stream(session_id, stream_id,
                                              ErrorCode.STREAM_STATE_ERROR, now=now)
                except (KeyError, LocalProtocolError):
                    pass
            return
        channel.stream_event(event, known[0], known[1], now)

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
            self.pool.on_established(event.session_id, event.peer_id, event.peer_address,
                                     initiator=event.initiator, now=now)
            if not event.initiator and self.dht is not None:
                # The peer proved it is a member: a request it made inside the
                # handshake now counts as contact.
                self.dht.peer_confirmed(event.peer_id, event.peer_address, now=now)
            for channel in self._channels.values():
                channel.session_established(event.peer_id, event.session_id, now)
        elif kind is SessionClosed:
            unreachable = self.pool.on_closed(event.session_id)
            for channel in list(self._channels.values()):
                channel.session_closed(event.peer_id, event.session_id, unreachable, now)
            if unreachable is not None:
                if self.dht is not None:
                    self.dht.peer_unreachable(unreachable, now=now)
                return  # the application never saw this session
        self._events.append(event)
