"""One overlay's stream in every session: the link between a sans-I/O overlay
engine (pub/sub, content) and the sessions of the :class:`~stt_proto.pool.SessionPool`.

Theory of operation
-------------------
An overlay talks to peers by node id; each of its messages is one stream
message on the overlay's own stream id (``docs/protocol.md`` 10.1), the same
id in every session and in both directions, so either side may start it.
:class:`OverlayChannel` keeps, per peer, the session whose stream carries the
overlay (its *link*) and moves bytes both ways:

* **In.** A message on the stream goes to ``engine.receive(peer, address,
  data)``. A peer that writes first on a session links it: the peer may have
  picked another session of the pair than we did, and either proves who it is.
  The engine consumes what it receives at once, so with ``auto_credit`` off the
  flow-control credit goes back once per drain, not once per message.
* **Out.** The engine keeps its own per-peer queues; the channel pops from them
  into the stream only while the stream holds less than the engine's
  ``max_stream_buffered`` unacknowledged bytes, and pushes back what the stream
  refuses. The rest waits for ``StreamWritable``. Keeping the queue in the
  engine, not in the stream, is what lets the engine still choose what to
  drop, cancel or reorder.
* **Sessions.** The engine names peers it wants to reach
  (``connects_wanted``); the pool opens or reuses a session. A session that
  closes unlinks its peer (the engine learns it, and whether the peer was
  unreachable); a newer session of the same peer is linked at once. A peer the
  engine banned has its stream stopped.
* **DHT.** The engine's announcements and provider lookups run as DHT queries;
  their completions are given back to the engine.

The engine's interface (both :class:`~stt_proto.pubsub.node.PubSubNode` and
:class:`~stt_proto.content.node.ContentNode` have it): ``receive``,
``output_peers``, ``pop_output``, ``push_back``, ``peer_linked``,
``peer_unlinked``, ``expects``, ``connects_wanted``, ``take_banned``,
``dht_actions``, ``providers_found``, ``provided``, ``next_event``,
``get_timer``, ``handle_timer`` and ``config.max_stream_buffered``.
"""

from __future__ import annotations

from typing import Any

from .constants import ErrorCode
from .errors import DhtBusyError, LocalProtocolError, SendBufferFullError
from .events import (
    DhtQueryCompleted,
    Event,
    MessageReceived,
    StreamClosed,
    StreamDataReceived,
    StreamEnded,
    StreamReset,
    StreamStopped,
    StreamWritable,
)

__all__ = ["OverlayChannel"]

Address = Any

#: Stream events after which the stream carries nothing more: the peer left
#: the overlay on this session (or broke its framing, sending raw bytes).
_STREAM_GONE = (StreamStopped, StreamReset, StreamEnded, StreamClosed, StreamDataReceived)


class OverlayChannel:
    """The links of one overlay engine on stream ``stream_id`` (see the module
    docstring). ``name`` prefixes its counters in ``stats`` (shared with the host)."""

    def __init__(self, engine: Any, stream_id: int, name: str, *, endpoint: Any, pool: Any,
                 dht: Any, stats: dict[str, int]) -> None:
        self.engine = engine
        self.stream_id = stream_id
        self.name = name
        self._endpoint = endpoint
        self._pool = pool
        self._dht = dht
        self._stats = stats
        self._links_lost = f"{name}_links_lost"
        stats.setdefault(self._links_lost, 0)
        self.links: dict[bytes, bytes] = {}      # peer -> session carrying its stream
        self.queries: dict[int, bytes] = {}      # DHT query id -> key it was for
        self.credit: dict[bytes, int] = {}       # session -> bytes consumed since the last drain
        self._auto_credit = endpoint._config.auto_credit

    # -- one drain round ------------------------------------------------------------------

    def step(self, now: float, events: list[Event]) -> bool:
        """Run what the engine asked for; True if anything moved."""
        engine, pool = self.engine, self._pool
        moved = False
        for action, key in engine.dht_actions():
            moved = True
            self._run_dht(action, key, now)
        for peer_id, address in engine.connects_wanted():
            moved = True
            session_id = pool.reach(peer_id, address, now=now)
            if session_id is False:
                engine.peer_unlinked(peer_id, now=now, unreachable=True)
            elif session_id is not None:
                self.link(peer_id, session_id, now)
        for peer_id in engine.take_banned():
            session_id = self.links.pop(peer_id, None)
            if session_id is not None:
                self._stop(session_id, ErrorCode.PROTOCOL_VIOLATION, now)
        for peer_id in engine.output_peers():
            if self._write(peer_id, now):
                moved = True
        while (event := engine.next_event()) is not None:
            events.append(event)
        return moved

    def _run_dht(self, action: str, key: bytes, now: float) -> None:
        dht, engine = self._dht, self.engine
        try:
            if action == "provide":
                self.queries[dht.provide(key, now=now)] = key
            elif action == "stop_providing":
                dht.stop_providing(key)
            else:
                self.queries[dht.find_providers(key, now=now)] = key
        except DhtBusyError:
            # The application's lookups fill the DHT: the engine asks again later.
            if action == "find_providers":
                engine.providers_found(key, [], now=now)
            elif action == "provide":
                engine.provided(key, now=now, stored=False)

    def dht_completed(self, event: DhtQueryCompleted, now: float) -> bool:
        """Give the engine the answer to one of its DHT queries; False if the
        query was not the engine's."""
        key = self.queries.pop(event.query_id, None)
        if key is None:
            return False
        if event.kind == "find_providers":
            self.engine.providers_found(key, event.result, now=now)
        else:
            self.engine.provided(key, now=now)
        return True

    def return_credit(self, now: float) -> bool:
        """Give back the credit of what the engine consumed; True if any."""
        if not self.credit:
            return False
        credit, self.credit = self.credit, {}
        consumed = self._endpoint.stream_consumed
        for session_id, nbytes in credit.items():
            consumed(session_id, self.stream_id, nbytes, now=now)
        return True

    def unsettled(self) -> bool:
        """Whether data is still queued for a peer, or written and not yet
        acknowledged (a node stopping now would lose it)."""
        if self.engine.output_peers():
            return True
        buffered = self._endpoint.stream_send_buffered
        return any(buffered(session_id, self.stream_id) for session_id in self.links.values())

    # -- links --------------------------------------------------------------------------

    def link(self, peer_id: bytes, session_id: bytes, now: float) -> None:
        if self.links.get(peer_id) == session_id:
            return
        if peer_id in self.links:
            # A newer session replaces the link: what was queued on the old
            # stream's side is the engine's to send again.
            self.engine.peer_unlinked(peer_id, now=now)
        known = self._pool.peer_of(session_id)
        self.links[peer_id] = session_id
        self.engine.peer_linked(peer_id, known[1] if known else None, now=now)

    def unlink(self, peer_id: bytes, now: float) -> None:
        if self.links.pop(peer_id, None) is not None:
            self._stats[self._links_lost] += 1
            self.engine.peer_unlinked(peer_id, now=now)

    def _write(self, peer_id: bytes, now: float) -> bool:
        """Write the peer's queue into its stream until the stream is full."""
        session_id = self.links.get(peer_id)
        if session_id is None:
            return False
        engine, endpoint, stream_id = self.engine, self._endpoint, self.stream_id
        limit = engine.config.max_stream_buffered
        wrote = False
        while endpoint.stream_send_buffered(session_id, stream_id) < limit and \
                (data := engine.pop_output(peer_id)) is not None:
            try:
                endpoint.send_message(session_id, stream_id, data, now=now)
            except SendBufferFullError:
                engine.push_back(peer_id, data)
                break
            except (KeyError, LocalProtocolError, ValueError):
                self.unlink(peer_id, now)
                break
            wrote = True
        if wrote:
            self._pool.touch(session_id, now)
        return wrote

    def _stop(self, session_id: bytes, code: int, now: float) -> None:
        try:
            self._endpoint.stop_stream(session_id, self.stream_id, code, now=now)
        except (KeyError, LocalProtocolError):
            pass

    # -- endpoint events ----------------------------------------------------------------

    def stream_event(self, event: Any, peer_id: bytes, address: Address, now: float) -> None:
        """An event of this overlay's stream in a pooled session of ``peer_id``."""
        session_id = event.session_id
        kind = type(event)
        if kind is MessageReceived:
            if peer_id not in self.links:
                self.link(peer_id, session_id, now)
            if not self._auto_credit:
                credit = self.credit
                credit[session_id] = credit.get(session_id, 0) + event.flow_controlled_length
            self.engine.receive(peer_id, address, event.data, now=now)
        elif kind is StreamWritable:
            self._write(peer_id, now)
        elif kind in _STREAM_GONE:
            # The id never opens again in this session, so the link is gone with it.
            if self.links.get(peer_id) == session_id:
                self.unlink(peer_id, now)

    def session_established(self, peer_id: bytes, session_id: bytes, now: float) -> None:
        # The pool's choice, not necessarily this session: the losing half of
        # a simultaneous open is confirmed after the kept one at one end.
        current = self._pool.session_of(peer_id)
        if current is not None and self.engine.expects(peer_id):
            self.link(peer_id, current, now)

    def session_closed(self, peer_id: bytes, session_id: bytes, unreachable: bytes | None,
                       now: float) -> None:
        """``unreachable``: the peer a connect of the pool failed to reach, if that
        is what closed."""
        if unreachable is not None:
            self.engine.peer_unlinked(unreachable, now=now, unreachable=True)
        elif self.links.get(peer_id) == session_id:
            self.unlink(peer_id, now)
            newer = self._pool.session_of(peer_id)
            if newer is not None and self.engine.expects(peer_id):
                self.link(peer_id, newer, now)
