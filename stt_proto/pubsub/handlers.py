"""What each pub/sub message that arrives from a peer does (part of :class:`PubSubNode`).

Every message is charged to its sender's token bucket before anything else
(PUBLISH and control have separate ones); a message that does not decode costs
the sender ``PENALTY_MALFORMED``, one whose signature fails ``PENALTY_FORGED``.
A duplicate is cheap: it is recognised by its publisher, epoch and sequence
number before its signature is checked.
"""

from __future__ import annotations

from typing import Any

from ..errors import DecodeError
from ..events import PubSubGap, PubSubMessage
from . import messages as m
from .delivery import Gap
from .links import Peer, Topic, Want

__all__ = ["Handlers"]

Address = Any


class Handlers:
    """Mixed into :class:`~stt_proto.pubsub.node.PubSubNode`."""

    def receive(self: Any, peer_id: bytes, address: Address, data: bytes, *, now: float) -> None:
        """One message from the pub/sub stream of our session to ``peer_id``."""
        self._now_hint = now
        peer = self._peer(peer_id, address, now)
        if not peer.linked:
            self.peer_linked(peer_id, address, now=now)
        if peer.banned:
            self.stats["messages_from_banned"] += 1
            return
        slot = m.publish_slot(data)
        if slot is not None and self._known_copy(peer, slot, now):
            return
        try:
            message = m.decode(data)
        except DecodeError:
            self.stats["messages_malformed"] += 1
            self._penalise(peer, self.PENALTY_MALFORMED)
            return
        kind = type(message)
        if kind is m.Publish:
            if not peer.messages.take(now):
                self.stats["messages_rate_limited"] += 1
                if message.publisher == peer.peer_id:
                    # Flooding with its own messages. A forwarder is not
                    # blamed: it may be relaying somebody else's flood.
                    self._penalise(peer, self.PENALTY_FLOOD)
                return
            self._on_publish(peer, message, now)
        else:
            if not peer.control.take(now):
                self.stats["control_rate_limited"] += 1
                self._penalise(peer, self.PENALTY_FLOOD)
                return
            handler = self._HANDLERS[kind]
            handler(self, peer, message, now)
        self._arm(now)

    # -- messages ---------------------------------------------------------------------

    def _known_copy(self: Any, peer: Peer, slot: tuple[bytes, bytes, int, int],
                    now: float) -> bool:
        """A PUBLISH for a slot we already have (most copies, with eager push
        over a mesh): counted and dropped before it is decoded or verified.
        It still counts against the peer's rate."""
        topic_key, publisher, epoch, seq = slot
        topic = self._topics.get(topic_key)
        if topic is None or not topic.subscribed:
            return False
        if self.history.get(topic_key, publisher, epoch, seq) is None and \
                (publisher == self.own_id or topic.ordering.is_new_slot(publisher, epoch, seq)):
            return False
        if not peer.messages.take(now):
            self.stats["messages_rate_limited"] += 1
            return True
        self.stats["messages_received"] += 1
        self.stats["messages_duplicate"] += 1
        if peer.peer_id in topic.mesh:
            topic.arrivals[peer.peer_id] = topic.arrivals.get(peer.peer_id, 0) + 1
        if publisher != self.own_id:  # it holds that one: no need to push it our copy
            peer.held((topic_key, publisher, epoch), seq, self.config.max_publishers)
            peer.sent_us((topic_key, publisher, epoch), seq)
        return True

    def _on_publish(self: Any, peer: Peer, message: Any, now: float) -> None:
        self.stats["messages_received"] += 1
        topic = self._topics.get(message.topic)
        if topic is None or not topic.subscribed:
            self.stats["messages_unwanted"] += 1
            return
        if len(message.data) > self.config.max_message_size:
            self.stats["messages_too_large"] += 1
            self._penalise(peer, self.PENALTY_MALFORMED)
            return
        if peer.peer_id in topic.mesh:
            topic.arrivals[peer.peer_id] = topic.arrivals.get(peer.peer_id, 0) + 1
        stream = (message.topic, message.publisher, message.epoch)
        own = message.publisher == self.own_id
        ordering = topic.ordering
        if not own and ordering.full and not ordering.knows(message.publisher) and \
                not peer.evictions.take(now):
            # One peer cannot churn the publishers we track (and make us forget
            # where the others stood) faster than one a second.
            self.stats["publishers_refused"] += 1
            return
        if self.history.get(*stream, message.seq) is not None or \
                (not own and not topic.ordering.is_new(message)):
            self.stats["messages_duplicate"] += 1
            if not own:  # it holds that one: no need to push it our copy
                peer.held(stream, message.seq, self.config.max_publishers)
                peer.sent_us(stream, message.seq)
            return
        if not m.verify_publish(message):
            self.stats["messages_forged"] += 1
            self._penalise(peer, self.PENALTY_FORGED)
            return
        if own:  # ours, from an earlier epoch or out of our history: nothing to do
            self.stats["messages_duplicate"] += 1
            return
        peer.held(stream, message.seq, self.config.max_publishers)
        self.history.add(message, now)
        self._push(topic, message, topic.mesh, exclude=(peer.peer_id, message.publisher))
        self._deliver(topic, ordering.offer(message, now))
        if (message.publisher, message.epoch) in topic.wants or \
                ordering.settling(message.publisher, message.epoch):
            self._rewant(topic, message.publisher, message.epoch, now, prefer=peer)

    def _rewant(self: Any, topic: Topic, publisher: bytes, epoch: int, now: float, *,
                prefer: Peer | None = None) -> None:
        """What we asked of ``publisher`` changed (messages came, or a GONE): once
        nothing of the IWANT in flight is still wanted, ask for what is wanted
        now, at once rather than at the next heartbeat."""
        key = (publisher, epoch)
        want = topic.wants.get(key)
        wanted = topic.ordering.wanted(publisher, epoch)
        if want is not None and wanted is not None and \
                wanted[0] <= want.last and wanted[1] >= want.first:
            return  # still on its way
        topic.wants.pop(key, None)
        if wanted is not None:
            self._want(topic, publisher, epoch, wanted, now, prefer=prefer)

    def _deliver(self: Any, topic: Topic, items: list[Any]) -> None:
        for item in items:
            if type(item) is Gap:
                self._events.append(PubSubGap(topic=topic.key, publisher=item.publisher,
                                              epoch=item.epoch, first=item.first,
                                              last=item.last))
            else:
                self.stats["messages_delivered"] += 1
                self._events.append(PubSubMessage(
                    topic=topic.key, publisher=item.publisher, epoch=item.epoch, seq=item.seq,
                    data=item.data, message_id=m.message_id(item.topic, item.publisher,
                                                            item.epoch, item.seq)))

    def _on_subscribe(self: Any, peer: Peer, message: Any, now: float) -> None:
        if message.topic not in peer.topics:
            if len(peer.topics) >= self.config.max_peer_topics:
                self.stats["peer_topics_refused"] += 1
                return
            peer.topics.add(message.topic)
        topic = self._topics.get(message.topic)
        if topic is not None and topic.subscribed:
            topic.learn(peer.peer_id, peer.address, self.config.max_known_subscribers)
            self._link_topic(peer, topic)
        elif topic is not None:
            topic.learn(peer.peer_id, peer.address, self.config.max_known_subscribers)

    def _on_unsubscribe(self: Any, peer: Peer, message: Any, now: float) -> None:
        peer.topics.discard(message.topic)
        topic = self._topics.get(message.topic)
        if topic is not None:
            topic.forget(peer.peer_id)

    def _on_graft(self: Any, peer: Peer, message: Any, now: float) -> None:
        topic = self._topics.get(message.topic)
        config = self.config
        if topic is None or not topic.subscribed:
            self._send(peer, m.Prune(topic=message.topic, backoff_ms=0, peers=()), control=True)
            return
        topic.learn(peer.peer_id, peer.address, config.max_known_subscribers)
        if peer.peer_id in topic.mesh:
            return
        if topic.backoff.get(peer.peer_id, 0.0) > now or len(topic.mesh) >= config.mesh_high:
            self.stats["grafts_refused"] += 1
            self._prune(topic, peer, now)
            return
        topic.mesh.add(peer.peer_id)
        self.stats["mesh_grafted"] += 1
        self._link_topic(peer, topic)

    def _on_prune(self: Any, peer: Peer, message: Any, now: float) -> None:
        topic = self._topics.get(message.topic)
        if topic is None:
            return
        topic.mesh.discard(peer.peer_id)
        topic.fanout.discard(peer.peer_id)
        backoff = max(message.backoff_ms / 1000.0, self.config.heartbeat)
        topic.backoff[peer.peer_id] = now + min(backoff, self.config.prune_backoff)
        for contact in message.peers:
            self._learn(topic, contact.node_id, contact.address)

    def _on_ihave(self: Any, peer: Peer, message: Any, now: float) -> None:
        topic = self._topics.get(message.topic)
        if topic is None:
            return
        limit = self.config.max_publishers
        for entry in message.entries:
            publisher, epoch, high = entry.publisher, entry.epoch, entry.high
            if publisher == self.own_id:
                continue
            peer.held((message.topic, publisher, epoch), high, limit)
            if topic.subscribed:
                hole = topic.ordering.summary_heard(publisher, epoch, high, now)
                if hole is not None:
                    self._want(topic, publisher, epoch, hole, now, prefer=peer)

    def _on_iwant(self: Any, peer: Peer, message: Any, now: float) -> None:
        history = self.history
        gone_from = None
        for seq in range(message.first, message.last + 1):
            held = history.get(message.topic, message.publisher, message.epoch, seq)
            if held is None:
                if gone_from is None:
                    gone_from = seq
                continue
            if gone_from is not None:
                self._gone(peer, message, gone_from, seq - 1)
                gone_from = None
            if not self._send(peer, held):
                return  # its queue is full: it asks again (or elsewhere) later
            self.stats["iwant_answered"] += 1
        if gone_from is not None:
            self._gone(peer, message, gone_from, message.last)

    def _gone(self: Any, peer: Peer, want: Any, first: int, last: int) -> None:
        self.stats["gone_sent"] += 1
        self._send(peer, m.Gone(topic=want.topic, publisher=want.publisher, epoch=want.epoch,
                                first=first, last=last), control=True)

    def _on_gone(self: Any, peer: Peer, message: Any, now: float) -> None:
        topic = self._topics.get(message.topic)
        if topic is None or not topic.subscribed:
            return
        key = (message.publisher, message.epoch)
        stream = (message.topic, message.publisher, message.epoch)
        # Its summary gave the highest it holds, which does not promise every
        # one below (a peer that joined late lacks the older ones): not a
        # fault, but it is not asked for these again.
        peer.lack(stream, message.first, message.last, self.config.max_publishers)
        want = topic.wants.get(key)
        if want is None or want.peer != peer.peer_id:
            return
        del topic.wants[key]
        wanted = topic.ordering.wanted(message.publisher, message.epoch)
        if topic.ordering.settling(message.publisher, message.epoch):
            if wanted is not None and self._want(topic, message.publisher, message.epoch,
                                                 wanted, now, asked=want.asked):
                return
            # Looking for where our messages start, and no peer that holds the
            # publisher has these: older than their repair window, so from
            # before our time.
            self._deliver(topic, topic.ordering.gone(message.publisher, message.epoch,
                                                     message.last))
            self._rewant(topic, message.publisher, message.epoch, now, prefer=peer)
            return
        if wanted is None:
            return
        # Ask another peer that says it holds them. If none is left, the next
        # heartbeats ask again (summaries tell only the highest a peer holds,
        # not every one below it): a hole is reported lost only when the repair
        # window has passed, not because the peers we knew of lacked it.
        self._want(topic, message.publisher, message.epoch, wanted, now, asked=want.asked)

    # -- repair -----------------------------------------------------------------------------

    def _want(self: Any, topic: Topic, publisher: bytes, epoch: int, hole: tuple[int, int],
              now: float, *, prefer: Peer | None = None, asked: set[bytes] | None = None) -> bool:
        """Ask one peer that holds them for the messages of ``hole``; False when
        no peer left to ask holds them."""
        key = (publisher, epoch)
        existing = topic.wants.get(key)
        if existing is not None and existing.deadline > now:
            return True
        if existing is None and len(topic.wants) >= self.config.max_wants_in_flight:
            return True  # asked for later, when a slot frees
        first, last = hole
        stream = (topic.key, publisher, epoch)
        asked = set(asked or ()) | (existing.asked if existing is not None else set())
        chosen = None
        if prefer is not None and prefer.linked and prefer.peer_id not in asked and \
                prefer.holds.get(stream, 0) >= first and not prefer.lacks_seq(stream, first):
            chosen = prefer
        else:
            holders = [p for p in self._peers.values() if p.linked and not p.banned
                       and p.peer_id not in asked and p.holds.get(stream, 0) >= first
                       and not p.lacks_seq(stream, first)]
            if holders:
                # Not always the one with the highest summary: that may be a
                # late joiner without the older messages.
                chosen = self._random.choice(holders)
        if chosen is None:
            topic.wants.pop(key, None)
            return False
        last = min(last, chosen.holds[stream], first + m.MAX_RANGE - 1)
        want = Want(first, last, chosen.peer_id, now + self.config.want_timeout)
        want.asked |= asked
        topic.wants[key] = want
        self.stats["iwant_sent"] += 1
        self._send(chosen, m.IWant(topic=topic.key, publisher=publisher, epoch=epoch,
                                   first=first, last=last), control=True)
        return True

    _HANDLERS = {
        m.Subscribe: _on_subscribe,
        m.Unsubscribe: _on_unsubscribe,
        m.Graft: _on_graft,
        m.Prune: _on_prune,
        m.IHave: _on_ihave,
        m.IWant: _on_iwant,
        m.Gone: _on_gone,
    }
