"""Requests and their answers: transaction ids, retransmission, RTT-based timeouts.

DHT frames ride an STT session but are *unreliable* (a lost packet's DHT frame
is not sent again by the session), so this layer retransmits a request until
an answer comes back or ``rpc_attempts`` transmissions went unanswered.

* **Matching.** Every request carries a random 64-bit transaction id; an answer
  is accepted only from the peer the request went to (the session proves who
  that is), with that id, and of a type the request expects. Anything else is
  counted and ignored, so an off-path or on-path peer cannot answer for another.
* **Timeouts from measured RTT.** Each peer has a smoothed RTT and variance (the
  RFC 6298 estimator, fed only by answers to requests sent once, as Karn's rule
  says); the timeout is ``srtt + 4 * rttvar`` clamped to the configured floor and
  ceiling, growing by ``rpc_backoff`` on every retransmission. A peer never
  measured gets ``first_contact_factor`` times the node-wide estimate: its first
  request also pays for the session's handshake.
* **Stalls.** When a request misses its first timeout the owner hears about it
  (``stalled``) before the retransmission, so a lookup can move its window on.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .config import DhtConfig
from .messages import Error, ErrorCode, Message, encode

__all__ = ["PendingRequest", "RpcManager", "RttEstimator"]

Address = Any

#: Peers whose RTT estimate is remembered; the least recently used is forgotten.
MAX_RTT_ENTRIES = 4_096


class RttEstimator:
    """RFC 6298's smoothed RTT and variance."""

    __slots__ = ("srtt", "rttvar")

    def __init__(self, initial: float) -> None:
        self.srtt = initial
        self.rttvar = initial / 2

    def sample(self, rtt: float, first: bool) -> None:
        if first:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    def timeout(self) -> float:
        return self.srtt + 4 * self.rttvar


class PendingRequest:
    """One request waiting for its answer."""

    __slots__ = ("peer_id", "address", "txid", "message", "data", "owner", "sent_at",
                 "first_sent_at", "transmissions", "attempts", "patience", "deadline", "stalled",
                 "done")

    def __init__(self, peer_id: bytes, address: Address, message: Message, data: bytes,
                 owner: Any, attempts: int, now: float, patience: float = 0.0) -> None:
        self.peer_id = peer_id
        self.address = address
        self.txid = message.txid
        self.message = message
        self.data = data
        self.owner = owner
        self.sent_at = now
        self.first_sent_at = now
        self.transmissions = 1
        self.attempts = attempts
        #: seconds from the first transmission before the request may fail
        self.patience = patience
        self.deadline = now
        self.stalled = False
        self.done = False


class RpcManager:
    """Sends requests, retransmits them, matches answers to them."""

    def __init__(self, config: DhtConfig, rng: Callable[[int], bytes]) -> None:
        self._config = config
        self._rng = rng
        self._pending: dict[tuple[bytes, bytes], PendingRequest] = {}
        self._timers: list[tuple[float, int, PendingRequest]] = []
        self._order = itertools.count()
        self._rtt: OrderedDict[bytes, RttEstimator] = OrderedDict()
        self._global = RttEstimator(config.initial_rtt)
        self._global_measured = False
        #: Datagram payloads to send: ``(peer_id, address, bytes)``.
        self.outgoing: list[tuple[bytes, Address, bytes]] = []
        self.stats = {"requests_sent": 0, "retransmissions": 0, "requests_failed": 0,
                      "answers_matched": 0, "answers_unmatched": 0, "requests_refused_full": 0,
                      "requests_deferred": 0}

    # -- sending ---------------------------------------------------------------------

    def has_room(self) -> bool:
        return len(self._pending) < self._config.max_pending_requests

    def request(self, peer_id: bytes, address: Address, build: Callable[[bytes], Message], *,
                owner: Any, now: float, attempts: int | None = None,
                patience: float = 0.0) -> PendingRequest | None:
        """Send the request ``build(txid)`` to ``peer_id``; ``None`` if too many are pending.

        The request fails once ``attempts`` transmissions (default
        ``rpc_attempts``) went unanswered and ``patience`` seconds passed since
        the first: until both, it is sent again at each timeout."""
        if not self.has_room():
            self.stats["requests_refused_full"] += 1
            return None
        while True:
            txid = self._rng(8)
            if (peer_id, txid) not in self._pending:
                break
        message = build(txid)
        entry = PendingRequest(peer_id, address, message, encode(message), owner,
                               attempts or self._config.rpc_attempts, now, patience)
        self._pending[(peer_id, txid)] = entry
        self._arm(entry, now)
        self.outgoing.append((peer_id, address, entry.data))
        self.stats["requests_sent"] += 1
        return entry

    def _timeout(self, peer_id: bytes, transmissions: int) -> float:
        estimate = self._rtt.get(peer_id)
        config = self._config
        base = estimate.timeout() if estimate is not None else \
            config.first_contact_factor * self._global.timeout()
        base = max(config.min_rpc_timeout, base) * config.rpc_backoff ** (transmissions - 1)
        return min(self._config.max_rpc_timeout, base)

    def _arm(self, entry: PendingRequest, now: float, wait: float | None = None) -> None:
        """Time ``entry`` out ``wait`` seconds from ``now`` (default: the
        retransmission timeout of its next transmission)."""
        if wait is None:
            wait = self._timeout(entry.peer_id, entry.transmissions)
        entry.deadline = now + wait
        heapq.heappush(self._timers, (entry.deadline, next(self._order), entry))

    # -- answers ----------------------------------------------------------------------

    def match(self, peer_id: bytes, message: Message, now: float) -> PendingRequest | None:
        """The request ``message`` answers, removed from the pending set, or ``None``."""
        entry = self._pending.get((peer_id, message.txid))
        if entry is None or not entry.message.accepts(message):
            self.stats["answers_unmatched"] += 1
            return None
        if type(message) is Error and message.code == ErrorCode.RATE_LIMITED and \
                self._defer(entry, message.retry_after_ms / 1000, now):
            return None
        self._finish(entry)
        self.stats["answers_matched"] += 1
        if entry.transmissions == 1:
            self._sample(peer_id, now - entry.sent_at)
        return entry

    def _defer(self, entry: PendingRequest, wait: float, now: float) -> bool:
        """A peer that asks us to slow down is asked again after ``wait`` if the
        request's patience lasts that long (an answer it cannot give now is not
        a failure); returns whether the request stays pending."""
        wait = max(wait, self._config.min_rpc_timeout)
        if now + wait > entry.first_sent_at + entry.patience:
            return False
        entry.sent_at = now
        self._arm(entry, now, wait)
        self.stats["requests_deferred"] += 1
        return True

    def _sample(self, peer_id: bytes, rtt: float) -> None:
        estimate = self._rtt.get(peer_id)
        if estimate is None:
            estimate = self._rtt[peer_id] = RttEstimator(rtt)
            if len(self._rtt) > MAX_RTT_ENTRIES:
                self._rtt.popitem(last=False)
        else:
            estimate.sample(rtt, first=False)
            self._rtt.move_to_end(peer_id)
        self._global.sample(rtt, first=not self._global_measured)
        self._global_measured = True

    def rtt(self, peer_id: bytes | None = None) -> float:
        """Smoothed RTT to ``peer_id`` (node-wide when unknown or not given)."""
        estimate = self._rtt.get(peer_id) if peer_id is not None else None
        return (estimate or self._global).srtt

    def _finish(self, entry: PendingRequest) -> None:
        entry.done = True
        del self._pending[(entry.peer_id, entry.txid)]

    def fail_peer(self, peer_id: bytes) -> list[PendingRequest]:
        """Every request to ``peer_id`` fails now (its session could not be set up)."""
        failed = [entry for (peer, _), entry in self._pending.items() if peer == peer_id]
        for entry in failed:
            self._finish(entry)
            self.stats["requests_failed"] += 1
        return failed

    # -- time --------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        timers = self._timers
        while timers and timers[0][2].done:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def handle_timer(self, now: float) -> list[tuple[PendingRequest, bool]]:
        """Retransmit what is due (each wait ``rpc_backoff`` times the one before);
        returns ``(request, failed)`` for each request that missed a timeout:
        ``failed`` once its last transmission went unanswered."""
        missed: list[tuple[PendingRequest, bool]] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, entry = heapq.heappop(timers)
            if entry.done or entry.deadline > now:
                continue
            if entry.transmissions >= entry.attempts and \
                    now - entry.first_sent_at >= entry.patience:
                self._finish(entry)
                self.stats["requests_failed"] += 1
                missed.append((entry, True))
                continue
            entry.transmissions += 1
            entry.sent_at = now
            self.stats["retransmissions"] += 1
            self.outgoing.append((entry.peer_id, entry.address, entry.data))
            self._arm(entry, now)
            missed.append((entry, False))
        return missed

    def __len__(self) -> int:
        return len(self._pending)
