"""The pub/sub heartbeat: mesh upkeep, lazy gossip, repair retries, gaps (part of
:class:`PubSubNode`).

Each ``heartbeat`` seconds, per topic:

* **Mesh.** Peers whose session is gone leave the mesh. Below ``mesh_low`` the
  node grafts known subscribers (not in backoff) up to ``mesh_degree``; above
  ``mesh_high`` it prunes back to ``mesh_degree``, telling the pruned peers of
  other subscribers (peer exchange). A mesh peer that forwarded nothing over
  ``idle_window`` while ``idle_minimum`` messages arrived is pruned and scored
  down: it is a black hole, or the mesh serves it badly.
* **Lazy gossip.** An IHAVE summary goes to the mesh and to ``LAZY_PEERS``
  other linked subscribers.
* **Repair.** IWANTs that timed out go to another peer that holds the range;
  holes past ``repair_window`` are reported as gaps.
* **Discovery.** A topic that knows fewer than ``mesh_degree`` subscribers asks
  the DHT again, at most every ``discovery_interval``.
"""

from __future__ import annotations

from typing import Any

from . import messages as m
from .links import Peer, Topic

__all__ = ["Heartbeat"]

#: how long a fan-out set is kept after the last publish on its topic
FANOUT_TTL = 60.0
#: IHAVE summaries per heartbeat to subscribers outside the mesh, per topic
LAZY_PEERS = 6


class Heartbeat:
    """Mixed into :class:`~stt_proto.pubsub.node.PubSubNode`."""

    def _arm(self: Any, now: float) -> None:
        if self._next_heartbeat is None and self._topics:
            self._next_heartbeat = now + self.config.heartbeat

    def get_timer(self: Any) -> float | None:
        timers = [self._next_heartbeat] if self._next_heartbeat is not None else []
        for topic in self._topics.values():
            timers.extend(want.deadline for want in topic.wants.values())
        return min(timers) if timers else None

    def handle_timer(self: Any, *, now: float) -> None:
        self._now_hint = now
        for topic in self._topics.values():
            if topic.subscribed:
                self._retry_wants(topic, now)
        if self._next_heartbeat is None or now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.config.heartbeat if self._topics else None
        self.history.expire(now)
        for topic in list(self._topics.values()):
            if topic.subscribed:
                if topic.announcing is None:
                    self._announce(topic)
                self._maintain(topic, now)
                self._check_idle(topic, now)
                self._gossip(topic)
                for publisher, epoch, first, last in topic.ordering.missing():
                    self._want(topic, publisher, epoch, (first, last), now)
                self._deliver(topic, topic.ordering.expire(now, self.config.repair_window))
            elif topic.fanout and now - topic.fanout_used > FANOUT_TTL:
                topic.fanout.clear()
            for peer_id in [p for p, until in topic.backoff.items() if until <= now]:
                del topic.backoff[peer_id]

    # -- the mesh ---------------------------------------------------------------------

    def _usable(self: Any, topic: Topic, peer_id: bytes, now: float) -> bool:
        peer = self._peers.get(peer_id)
        if peer is not None and (peer.banned or not self._has_room(peer, 0)):
            return False
        return topic.backoff.get(peer_id, 0.0) <= now

    def _maintain(self: Any, topic: Topic, now: float) -> None:
        config = self.config
        for peer_id in list(topic.mesh):
            peer = self._peers.get(peer_id)
            if peer is None or peer.banned or not (peer.linked or peer.wanted):
                topic.mesh.discard(peer_id)
        if len(topic.mesh) < config.mesh_low:
            candidates = [p for p in topic.known if p not in topic.mesh
                          and self._usable(topic, p, now)]
            self._random.shuffle(candidates)
            for peer_id in candidates[:config.mesh_degree - len(topic.mesh)]:
                peer = self._reach(peer_id, topic.known[peer_id], now)
                if peer is None:
                    continue
                topic.mesh.add(peer_id)
                self.stats["mesh_grafted"] += 1
                self._link_topic(peer, topic)
                self._send(peer, m.Graft(topic=topic.key), control=True)
        elif len(topic.mesh) > config.mesh_high:
            extra = sorted(topic.mesh)
            self._random.shuffle(extra)
            for peer_id in extra[:len(topic.mesh) - config.mesh_degree]:
                self._prune(topic, self._peers[peer_id], now)
        if len(topic.known) < config.mesh_degree:
            self._discover(topic, now)

    def _prune(self: Any, topic: Topic, peer: Peer, now: float) -> None:
        topic.mesh.discard(peer.peer_id)
        topic.backoff[peer.peer_id] = now + self.config.prune_backoff
        self.stats["mesh_pruned"] += 1
        exchange = [m.Contact(node_id=p, address=a) for p, a in reversed(topic.known.items())
                    if p != peer.peer_id and a is not None and _encodable(a)]
        self._send(peer, m.Prune(topic=topic.key,
                                 backoff_ms=int(self.config.prune_backoff * 1000),
                                 peers=tuple(exchange[:m.MAX_PEER_EXCHANGE])), control=True)

    def _check_idle(self: Any, topic: Topic, now: float) -> None:
        config = self.config
        if now - topic.window_start < config.idle_window:
            return
        arrived = sum(topic.arrivals.values())
        if arrived >= config.idle_minimum:
            for peer_id in list(topic.mesh):
                if topic.arrivals.get(peer_id) is None and peer_id in topic.watched:
                    peer = self._peers.get(peer_id)
                    if peer is not None:
                        self.stats["mesh_pruned_idle"] += 1
                        self._prune(topic, peer, now)
                        self._penalise(peer, self.PENALTY_IDLE)
        topic.arrivals = {}
        topic.watched = set(topic.mesh)  # judged at the end of the next whole window
        topic.window_start = now

    def _gossip(self: Any, topic: Topic) -> None:
        lazy = [p for p in self._peers.values() if p.linked and not p.banned
                and topic.key in p.topics and p.peer_id not in topic.mesh]
        self._random.shuffle(lazy)
        for peer in [self._peers[p] for p in topic.mesh if p in self._peers] + lazy[:LAZY_PEERS]:
            if peer.linked:
                self._link_topic(peer, topic)
                self._send_summary(peer, topic)

    # -- publishers and discovery -------------------------------------------------------

    def _fill_fanout(self: Any, topic: Topic, now: float) -> None:
        for peer_id in list(topic.fanout):
            peer = self._peers.get(peer_id)
            if peer is None or peer.banned:
                topic.fanout.discard(peer_id)
        missing = self.config.fanout - len(topic.fanout)
        if missing > 0:
            candidates = [p for p in topic.known if p not in topic.fanout
                          and self._usable(topic, p, now)]
            self._random.shuffle(candidates)
            for peer_id in candidates[:missing]:
                peer = self._reach(peer_id, topic.known[peer_id], now)
                if peer is not None:
                    topic.fanout.add(peer_id)
                    self._link_topic(peer, topic)
        if not topic.fanout:
            self._discover(topic, now)

    def _discover(self: Any, topic: Topic, now: float, *, force: bool = False) -> None:
        """Ask the DHT for the topic's subscribers. While it knows fewer than it
        needs, a topic asks again after 1, 2, 4, ... seconds, up to
        ``discovery_interval``: subscribers who announced themselves at the same
        moment find each other within seconds, and a quiet topic costs little."""
        if topic.discovering:
            return
        if not force and topic.discovered_at is not None and \
                now - topic.discovered_at < topic.discovery_delay:
            return
        if topic.discovered_at is not None:
            topic.discovery_delay = min(2 * topic.discovery_delay, self.config.discovery_interval)
        topic.discovering = True
        topic.discovered_at = now
        self._dht.append(("find_providers", topic.key))

    def _retry_wants(self: Any, topic: Topic, now: float) -> None:
        for key, want in list(topic.wants.items()):
            if want.deadline > now:
                continue
            self.stats["wants_timed_out"] += 1
            peer = self._peers.get(want.peer)
            if peer is not None and peer.linked:
                self._penalise(peer, self.PENALTY_BROKEN_PROMISE)
            wanted = topic.ordering.wanted(*key)
            if wanted is None:
                del topic.wants[key]
                continue
            if not self._want(topic, key[0], key[1], wanted, now, asked=want.asked):
                # Nobody else holds it: ask the same peers again at the next heartbeat
                # until the repair window runs out.
                topic.wants.pop(key, None)


def _encodable(address: Any) -> bool:
    try:
        m.Contact(node_id=bytes(32), address=address)
    except ValueError:
        return False
    return True

