"""The pub/sub engine of one node: meshes, eager push, lazy repair, ordered delivery.

Sans-I/O like the DHT: the host (:class:`stt_proto.overlay.OverlayHost`) feeds
it the pub/sub messages that arrive on the pub/sub stream of each session
(:meth:`PubSubNode.receive`), tells it which peers are linked, writes what it
queues per peer into those streams, opens the sessions it asks for and runs
the DHT operations it needs (announcing a topic, finding its subscribers).

Theory of operation
-------------------
* **Rendezvous.** A subscriber provides the topic's key in the DHT while it is
  subscribed, and finds the other subscribers with ``find_providers``.
* **Mesh and eager push.** Per topic a subscriber keeps ``mesh_degree`` peers
  (between ``mesh_low`` and ``mesh_high``), grafting and pruning at each
  heartbeat, and forwards every new, verified message to its mesh at once.
  Each link is a reliable, ordered stream, so a message is lost on a link only
  with the link itself.
* **Lazy repair.** At each heartbeat a node sends its mesh and a few other
  subscribers an IHAVE summary: per publisher, the highest sequence number it
  holds. A subscriber that misses something asks with IWANT; the peer answers
  from its history or says GONE. A summary also goes out on every new link
  before the first message, so the peer knows where it starts (delivery.py).
* **Order and exactly-once** are :mod:`stt_proto.pubsub.delivery`'s.
* **Publishing** signs with the node's identity; a node that is not
  subscribed sends to ``fanout`` subscribers it found in the DHT.
* **Hostile peers** are rate-limited per peer, and scored down for forged,
  malformed or flooding traffic, for broken IHAVE promises and for sitting in a
  mesh without forwarding; at ``min_score`` they are banned.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

from ..errors import MessageTooLargeError, PubSubError
from ..events import Event
from . import messages as m
from .config import PubSubConfig
from .delivery import Budget, Ordering
from .handlers import Handlers
from .heartbeat import Heartbeat
from .history import History
from .links import Peer, Topic

__all__ = ["PubSubNode"]

Address = Any


class PubSubNode(Handlers, Heartbeat):
    """Pub/sub for one node (see the module docstring).

    :param identity: the node's identity; it signs what the node publishes.
    :param wall_offset: wall-clock time minus the ``now`` the host passes, in
        seconds: epochs are wall-clock milliseconds, so a restarted publisher's
        epoch is later than its last one.
    """

    # Score penalties; a peer at ``min_score`` (-100 by default) is banned, so two
    # forgeries or malformed messages ban it, while one lost repair costs little.
    PENALTY_FORGED = 50.0
    PENALTY_MALFORMED = 50.0
    PENALTY_FLOOD = 1.0
    PENALTY_IDLE = 5.0
    PENALTY_BROKEN_PROMISE = 2.0

    def __init__(self, identity: Any, config: PubSubConfig | None = None, *,
                 wall_offset: float = 0.0, rng: Callable[[int], bytes] | None = None,
                 now: float = 0.0) -> None:
        self.identity = identity
        self.own_id: bytes = identity.node_id
        self.config = config or PubSubConfig()
        self.wall_offset = wall_offset
        self._random = random.Random((rng or os.urandom)(16))
        self.epoch = self._wall_ms(now)
        self._stamp = self.epoch  # the publishing time of our latest message
        self._topics: dict[bytes, Topic] = {}
        self._peers: dict[bytes, Peer] = {}
        self._events: list[Event] = []
        self._connects: dict[bytes, Address] = {}
        self._dht: list[tuple[str, bytes]] = []
        self._banned_new: list[bytes] = []
        self._next_heartbeat: float | None = None
        self.stats: dict[str, int] = dict.fromkeys((
            "messages_published", "messages_published_to_nobody", "messages_received",
            "messages_delivered",
            "messages_duplicate", "messages_forwarded", "messages_forged",
            "messages_malformed", "messages_too_large", "messages_unwanted",
            "messages_rate_limited", "control_rate_limited", "messages_stale_epoch",
            "messages_buffer_full", "messages_from_banned", "messages_lost", "gaps_reported",
            "messages_before_subscription", "starts_unsettled", "publishers_refused",
            "publishers_forgotten", "history_evicted", "queue_full", "control_dropped",
            "mesh_grafted", "mesh_pruned", "mesh_pruned_slow", "mesh_pruned_idle",
            "grafts_refused", "pushes_skipped_held", "ihave_sent", "iwant_sent", "iwant_answered", "gone_sent",
            "wants_timed_out", "peers_banned", "peer_topics_refused"), 0)
        self._budget = Budget(self.config.max_buffered_bytes)
        self.history = History(window=self.config.repair_window,
                               max_bytes=self.config.max_history_bytes, stats=self.stats)

    def _wall_ms(self, now: float) -> int:
        return int((now + self.wall_offset) * 1000)

    # -- the application's side ---------------------------------------------------------

    def _topic(self, key: bytes) -> Topic:
        topic = self._topics.get(key)
        if topic is None:
            if len(key) != 32:
                raise ValueError("a topic key is 32 bytes (messages.topic_key(name))")
            if len(self._topics) >= self.config.max_topics:
                raise PubSubError(f"{self.config.max_topics} topics are in use (max_topics)")
            topic = self._topics[key] = Topic(key)
        return topic

    def subscribe(self, key: bytes, *, now: float) -> None:
        """Subscribe to the topic ``key``: announce it in the DHT, find the other
        subscribers and join their mesh. Subscribing twice does nothing."""
        topic = self._topic(key)
        if topic.subscribed:
            return
        config = self.config
        topic.subscribed = True
        topic.ordering = Ordering(
            subscribed_at=self._wall_ms(now), tolerance_ms=int(config.clock_tolerance * 1000),
            max_publishers=config.max_publishers, max_buffered=config.max_buffered_per_publisher,
            budget=self._budget, stats=self.stats)
        topic.fanout.clear()
        self._announce(topic)
        self._discover(topic, now)
        for peer_id in list(topic.known):
            peer = self._peers.get(peer_id)
            if peer is not None and peer.linked:
                self._link_topic(peer, topic)
        self._maintain(topic, now)
        self._arm(now)

    def unsubscribe(self, key: bytes, *, now: float) -> None:
        """Leave the topic: tell linked peers, withdraw from the DHT. Our own
        sequence numbers on it are kept, so publishing later goes on from them."""
        topic = self._topics.get(key)
        if topic is None or not topic.subscribed:
            return
        topic.subscribed = False
        topic.ordering.close()
        topic.ordering = None
        topic.wants.clear()
        for peer in self._peers.values():
            if peer.linked and key in peer.summarised:
                self._send(peer, m.Unsubscribe(topic=key), control=True)
                peer.summarised.discard(key)
        topic.mesh.clear()
        self._dht.append(("stop_providing", key))

    def publish(self, key: bytes, data: bytes, *, now: float) -> Any:
        """Sign ``data`` as our next message on the topic and hand it to the mesh
        (or the fan-out); returns the :class:`~stt_proto.pubsub.messages.Publish`.
        Call when :meth:`publish_ready` is true, or the message may reach only
        the peers that have room.

        Raises:
            MessageTooLargeError: ``data`` exceeds ``max_message_size``.
            PubSubError: ``max_topics`` topics are in use already.
        """
        if len(data) > self.config.max_message_size:
            raise MessageTooLargeError(
                f"a message of {len(data)} bytes exceeds max_message_size "
                f"({self.config.max_message_size})")
        topic = self._topic(key)
        topic.seq += 1
        # Stamps never go back within an epoch, even if the wall clock does:
        # subscribers rely on it to find where what they are owed starts.
        self._stamp = max(self._stamp, self._wall_ms(now))
        message = m.sign_publish(self.identity, key, self.epoch, topic.seq, bytes(data),
                                 published_ms=self._stamp)
        self.stats["messages_published"] += 1
        if topic.subscribed:
            targets = topic.mesh
        else:
            topic.fanout_used = now
            self._fill_fanout(topic, now)
            targets = topic.fanout
        if (topic.unsent or not targets) and topic.discovering and \
                topic.unsent_bytes + len(data) <= self.config.max_queued_bytes_per_peer:
            # Nobody to send to yet, but the DHT is being asked: keep it out of
            # the summaries (the subscribers found would take it as sent
            # before their time) and send it first when they are found.
            topic.unsent.append(message)
            topic.unsent_bytes += len(data)
        else:
            self.history.add(message, now)
            self._push(topic, message, targets, exclude=(), own=True)
        self._arm(now)
        return message

    def _flush_unsent(self, topic: Topic, now: float) -> None:
        """Send what waited for the topic's first peers (see :meth:`publish`)."""
        targets = topic.mesh if topic.subscribed else topic.fanout
        if not topic.unsent or (not targets and topic.discovering):
            return
        unsent, topic.unsent, topic.unsent_bytes = topic.unsent, [], 0
        for peer_id in targets:
            peer = self._peers.get(peer_id)
            if peer is not None:
                self._link_topic(peer, topic)  # the summary goes before them
        for message in unsent:
            self.history.add(message, now)
            self._push(topic, message, targets, exclude=(), own=True)

    def publish_ready(self, key: bytes) -> bool:
        """Whether a publish on ``key`` would be handed to somebody now: false
        while a publisher without subscribers in sight is still looking for them,
        and while every peer it would send to has a full queue."""
        topic = self._topics.get(key)
        if topic is None:
            return True
        targets = topic.mesh if topic.subscribed else topic.fanout
        if not targets:
            return not topic.discovering
        return any(self._has_room(self._peers[p], 0) for p in targets if p in self._peers)

    def topics(self) -> list[bytes]:
        """The topics we subscribe to."""
        return [key for key, topic in self._topics.items() if topic.subscribed]

    def mesh_peers(self, key: bytes) -> list[bytes]:
        topic = self._topics.get(key)
        return sorted(topic.mesh) if topic is not None else []

    def known_subscribers(self, key: bytes) -> list[bytes]:
        topic = self._topics.get(key)
        return list(topic.known) if topic is not None else []

    # -- the host's side ------------------------------------------------------------------

    def peer_linked(self, peer_id: bytes, address: Address, *, now: float) -> None:
        """A session to ``peer_id`` is up: its queue may be written."""
        peer = self._peer(peer_id, address, now)
        peer.linked = True
        peer.wanted = False
        peer.address = address
        self._connects.pop(peer_id, None)

    def expects(self, peer_id: bytes) -> bool:
        """Whether we asked for a session to ``peer_id`` or have a link to it."""
        peer = self._peers.get(peer_id)
        return peer is not None and (peer.wanted or peer.linked)

    def peer_unlinked(self, peer_id: bytes, *, now: float, unreachable: bool = False) -> None:
        """Our session to ``peer_id`` ended (or could not be opened)."""
        self._connects.pop(peer_id, None)
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return
        if peer_id in self._banned_new:  # its session is gone: nothing to stop
            self._banned_new.remove(peer_id)
        peer.unlink()
        for topic in self._topics.values():
            topic.mesh.discard(peer_id)
            topic.fanout.discard(peer_id)
            if unreachable:
                topic.known.pop(peer_id, None)
            for want in topic.wants.values():
                if want.peer == peer_id:
                    want.deadline = now  # ask somebody else at the next look
        self._arm(now)

    def connects_wanted(self) -> list[tuple[bytes, Address]]:
        """Peers we queued messages for and have no session to."""
        wanted, self._connects = list(self._connects.items()), {}
        return wanted

    def dht_actions(self) -> list[tuple[str, bytes]]:
        """``("provide" | "stop_providing" | "find_providers", topic key)`` to run."""
        actions, self._dht = self._dht, []
        return actions

    def take_banned(self) -> list[bytes]:
        """Peers banned since the last call (the host stops their pub/sub stream)."""
        banned, self._banned_new = self._banned_new, []
        return banned

    def output_peers(self) -> list[bytes]:
        return [p.peer_id for p in self._peers.values() if p.linked and p.queue]

    def pop_output(self, peer_id: bytes) -> bytes | None:
        peer = self._peers.get(peer_id)
        if peer is None or not peer.linked:
            return None
        queue, copies = peer.queue, peer.copies
        while queue:
            data, stream, seq = queue.popleft()
            peer.queued_bytes -= len(data)
            if stream is not None and stream + (seq,) in copies:
                # It sent us this message while our copy waited: it has it, so
                # a slow peer's link does not carry it twice.
                self.stats["pushes_skipped_held"] += 1
                continue
            peer.popped = (stream, seq)
            return data
        return None

    def push_back(self, peer_id: bytes, data: bytes) -> None:
        """The stream did not take ``data`` (it is full): keep it first in line."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            stream, seq = peer.popped
            peer.queue.appendleft((data, stream, seq))
            peer.queued_bytes += len(data)

    def providers_found(self, key: bytes, providers: list[tuple[bytes, Address]], *,
                        now: float) -> None:
        """The DHT's answer to a ``find_providers`` we asked for."""
        topic = self._topics.get(key)
        if topic is None:
            return
        topic.discovering = False
        for peer_id, address in providers:
            self._learn(topic, peer_id, address)
        if topic.subscribed:
            self._maintain(topic, now)
        else:
            self._fill_fanout(topic, now)
        self._flush_unsent(topic, now)
        self._arm(now)

    def _announce(self, topic: Topic) -> None:
        topic.announcing = True
        self._dht.append(("provide", topic.key))

    def provided(self, key: bytes, *, now: float, stored: bool = True) -> None:
        """Our announcement of ``key`` is stored (``stored=False``: the DHT was
        too busy to take it; it is asked again at the next heartbeat).
        Subscribers who looked before it was could not see us, so look for
        them again now."""
        topic = self._topics.get(key)
        if topic is None or not topic.subscribed:
            return
        if not stored:
            topic.announcing = None  # due again
            return
        topic.announcing = False
        if len(topic.known) < self.config.mesh_degree:
            self._discover(topic, now, force=True)

    def joined(self, key: bytes) -> bool:
        """Whether our subscription to ``key`` is in place: announced in the DHT,
        the other subscribers looked up, and a mesh joined (or nobody else
        subscribes). Messages published from then on are owed to us."""
        topic = self._topics.get(key)
        if topic is None or not topic.subscribed or topic.announcing is not False \
                or topic.discovering:
            return False
        linked = any(self._peers[p].linked for p in topic.mesh if p in self._peers)
        return linked or not topic.known

    def holds_unsent(self, key: bytes, message: Any) -> bool:
        """Whether ``message`` (a :meth:`publish` result) still waits for the
        topic's first subscribers to be found."""
        topic = self._topics.get(key)
        return topic is not None and any(held is message for held in topic.unsent)

    def fanout_peers(self, key: bytes) -> list[bytes]:
        """The subscribers a publisher that does not subscribe sends to."""
        topic = self._topics.get(key)
        return sorted(topic.fanout) if topic is not None else []

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    # -- peers and queues -----------------------------------------------------------------

    def _peer(self, peer_id: bytes, address: Address, now: float) -> Peer:
        peer = self._peers.get(peer_id)
        if peer is None:
            peer = self._peers[peer_id] = Peer(
                peer_id, address, message_rate=self.config.max_messages_per_second,
                control_rate=self.config.max_control_per_second, now=now)
        return peer

    def _reach(self, peer_id: bytes, address: Address, now: float) -> Peer | None:
        """The peer, asking the host for a session if there is none."""
        peer = self._peers.get(peer_id)
        if peer is None:
            if address is None:
                return None
            peer = self._peer(peer_id, address, now)
        if peer.banned:
            return None
        if not peer.linked and not peer.wanted:
            peer.wanted = True
            self._connects[peer_id] = peer.address
        return peer

    def _send(self, peer: Peer, message: Any, *, control: bool = False,
              encoded: bytes | None = None, push: bool = False) -> bool:
        """Queue ``message`` for ``peer``. Data waits at ``max_queued_bytes_per_peer``;
        control (small) may use as much again before it is dropped."""
        if peer.banned:
            return False
        data = encoded if encoded is not None else m.encode(message)
        if not self._has_room(peer, len(data), 2 if control else 1):
            self.stats["control_dropped" if control else "queue_full"] += 1
            return False
        if push:
            # An eager push: skipped if the peer sends us this very message
            # before it leaves (an answer to its IWANT is never skipped).
            stream: tuple | None = (message.topic, message.publisher, message.epoch)
            seq = message.seq
        else:
            stream, seq = None, 0
        peer.queue.append((data, stream, seq))
        peer.queued_bytes += len(data)
        return True

    def _has_room(self, peer: Peer, size: int, factor: int = 1) -> bool:
        """Whether ``size`` more bytes fit ``peer``'s queue (``factor`` times the
        limits for control messages). An empty queue always takes one message."""
        config = self.config
        return not peer.queue or (
            peer.queued_bytes + size <= factor * config.max_queued_bytes_per_peer
            and len(peer.queue) < factor * config.max_queued_messages_per_peer)

    def _link_topic(self, peer: Peer, topic: Topic) -> None:
        """Make sure the link to ``peer`` carries ``topic``: our SUBSCRIBE (if we
        subscribe) and a summary of what we hold, before any message of it."""
        if topic.key in peer.summarised:
            return
        peer.summarised.add(topic.key)
        if topic.subscribed:
            self._send(peer, m.Subscribe(topic=topic.key), control=True)
        self._send_summary(peer, topic)

    def _send_summary(self, peer: Peer, topic: Topic) -> None:
        entries = [m.IHaveEntry(publisher=p, epoch=e, high=h)
                   for p, e, h in sorted(self.history.summary(topic.key))]
        for start in range(0, max(len(entries), 1), m.MAX_IHAVE_ENTRIES):
            self._send(peer, m.IHave(topic=topic.key,
                                     entries=tuple(entries[start:start + m.MAX_IHAVE_ENTRIES])),
                       control=True)
            self.stats["ihave_sent"] += 1

    def _push(self, topic: Topic, message: Any, targets: set[bytes], *, exclude: tuple,
              own: bool = False) -> None:
        """Queue ``message`` for ``targets``; one of our own (``own``) that no peer
        gets counts ``messages_published_to_nobody``."""
        encoded = m.encode(message)
        sent = 0
        for peer_id in list(targets):
            if peer_id in exclude:
                continue
            peer = self._peers.get(peer_id)
            if peer is None or peer.banned:
                continue
            self._link_topic(peer, topic)
            if not own and not self._has_room(peer, len(encoded)):
                # A peer that cannot keep up leaves the mesh and catches up by
                # repair; nobody else waits for it.
                topic.mesh.discard(peer_id)
                topic.backoff[peer_id] = self._now_hint + self.config.prune_backoff
                self.stats["mesh_pruned_slow"] += 1
                continue
            if self._send(peer, message, encoded=encoded, push=True):
                self.stats["messages_forwarded"] += 0 if own else 1
                sent += 1
        if own and not sent:
            self.stats["messages_published_to_nobody"] += 1

    _now_hint = 0.0  # the latest ``now`` seen, for backoffs set deep in a call

    def _learn(self, topic: Topic, peer_id: bytes, address: Address) -> None:
        """``peer_id`` subscribes to ``topic``: a mesh candidate, unless it is us
        or banned."""
        peer = self._peers.get(peer_id)
        if peer_id != self.own_id and (peer is None or not peer.banned):
            topic.learn(peer_id, address, self.config.max_known_subscribers)

    def _ban(self, peer: Peer) -> None:
        if peer.banned:
            return
        peer.banned = True
        peer.queue.clear()
        peer.queued_bytes = 0
        peer.summarised.clear()
        self.stats["peers_banned"] += 1
        self._banned_new.append(peer.peer_id)
        for topic in self._topics.values():
            topic.forget(peer.peer_id)

    def _penalise(self, peer: Peer, amount: float) -> None:
        peer.score -= amount
        if peer.score <= self.config.min_score:
            self._ban(peer)
