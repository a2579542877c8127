"""The iterative Kademlia lookup as a state machine: no I/O, no clock, no RPC ids.

The owner asks :meth:`Lookup.next_requests` whom to query, sends the requests,
and reports each outcome with :meth:`Lookup.answered`, :meth:`Lookup.stalled`
or :meth:`Lookup.failed`. The lookup ends (:attr:`Lookup.finished`) when, on
every path, the ``k`` closest candidates that did not fail have all answered.

Two choices differ from the paper's lock-step rounds (and from bmuller's
``kademlia``, which waits for the slowest node of each round):

* **A sliding window.** ``alpha`` requests are in flight per path at any time;
  each answer immediately lets the next closest candidate be queried.
* **Stalled requests free their slot.** When a request misses its first
  retransmission timeout the owner calls :meth:`stalled`: the request stays
  open (a late answer still counts) but no longer holds a window slot, so a slow
  or dead node delays a lookup by one timeout at most, never by its retries.
  For the same reason the end condition passes over stalled candidates: the
  lookup ends when the ``k`` closest candidates that are neither failed nor
  stalled have answered (a stalled node that answers in time still joins).

**Disjoint paths** (S/Kademlia, section 4.4): with ``paths = d`` the seeds are
dealt round robin to ``d`` paths and a node belongs to the first path that
learns of it, so the paths never share a node. An adversarial node can then
only mislead the paths it sits on; the result merges every path's answers.

``rounds`` is the length of the longest referral chain behind the result: a
seed is one round, a node a seed told us of is two, and so on. It is the figure
the paper's ``log2(N/k)`` bound speaks about.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

__all__ = ["Lookup", "Candidate"]

Address = Any

# Candidate states.
NEW = 0        # known, not queried
WAITING = 1    # queried, holding a window slot
STALLED = 2    # queried, missed a timeout: no longer holds a slot, may still answer
ANSWERED = 3
FAILED = 4


class Candidate:
    """A node the lookup knows of, ordered by its distance to the target."""

    __slots__ = ("node_id", "address", "distance", "state", "depth", "path")

    def __init__(self, node_id: bytes, address: Address, distance: int, depth: int,
                 path: int) -> None:
        self.node_id = node_id
        self.address = address
        self.distance = distance
        self.state = NEW
        self.depth = depth
        self.path = path

    def __lt__(self, other: Candidate) -> bool:
        return self.distance < other.distance

    def __repr__(self) -> str:
        return f"<Candidate {self.node_id[:4].hex()} state={self.state} depth={self.depth}>"


class _Path:
    __slots__ = ("candidates", "in_flight")

    def __init__(self) -> None:
        self.candidates: list[Candidate] = []   # sorted by distance
        self.in_flight = 0                       # WAITING candidates


class Lookup:
    """One iterative lookup for ``target``.

    :param target: the 32-byte id looked up.
    :param seeds: ``(node_id, address)`` pairs to start from (the closest the
        routing table knows).
    :param exclude: ids never queried (our own id).
    """

    __slots__ = ("target", "k", "alpha", "_target_int", "_paths", "_by_id", "_exclude",
                 "_stopped", "requests_sent")

    def __init__(self, target: bytes, seeds: Iterable[tuple[bytes, Address]], *, k: int = 20,
                 alpha: int = 3, paths: int = 1, exclude: Iterable[bytes] = ()) -> None:
        if len(target) != 32:
            raise ValueError("target must be 32 bytes")
        if k < 1 or alpha < 1 or paths < 1:
            raise ValueError("k, alpha and paths must be at least 1")
        self.target = bytes(target)
        self.k = k
        self.alpha = alpha
        self._target_int = int.from_bytes(self.target, "big")
        self._paths = [_Path() for _ in range(paths)]
        self._by_id: dict[bytes, Candidate] = {}
        self._exclude = set(exclude)
        self._stopped = False
        self.requests_sent = 0
        ordered = sorted(
            ((int.from_bytes(node_id, "big") ^ self._target_int, node_id, address)
             for node_id, address in dict(seeds).items() if node_id not in self._exclude))
        for index, (_, node_id, address) in enumerate(ordered):
            self._add(node_id, address, depth=0, path=index % paths)

    # -- learning ------------------------------------------------------------------

    def _add(self, node_id: bytes, address: Address, *, depth: int, path: int) -> None:
        if node_id in self._by_id or node_id in self._exclude or len(node_id) != 32:
            return
        candidate = Candidate(node_id, address,
                              int.from_bytes(node_id, "big") ^ self._target_int, depth, path)
        self._by_id[node_id] = candidate
        bisect.insort(self._paths[path].candidates, candidate)

    # -- the owner's side ------------------------------------------------------------

    def next_requests(self) -> list[tuple[bytes, Address]]:
        """The nodes to query now; each is marked as queried."""
        if self._stopped:
            return []
        chosen: list[tuple[bytes, Address]] = []
        for path in self._paths:
            if path.in_flight >= self.alpha:
                continue
            live = 0
            for candidate in path.candidates:
                if candidate.state >= STALLED and candidate.state != ANSWERED:
                    continue
                live += 1
                if live > self.k:
                    break
                if candidate.state == NEW:
                    candidate.state = WAITING
                    path.in_flight += 1
                    chosen.append((candidate.node_id, candidate.address))
                    if path.in_flight >= self.alpha:
                        break
        self.requests_sent += len(chosen)
        return chosen

    def answered(self, node_id: bytes, contacts: Iterable[tuple[bytes, Address]] = ()) -> None:
        """``node_id`` answered, naming ``contacts`` closer to the target."""
        candidate = self._by_id.get(node_id)
        if candidate is None or candidate.state in (ANSWERED, NEW):
            return
        self._release(candidate)
        candidate.state = ANSWERED
        for contact_id, address in contacts:
            self._add(contact_id, address, depth=candidate.depth + 1, path=candidate.path)

    def unsend(self, node_id: bytes) -> None:
        """The request chosen for ``node_id`` could not be sent: choose it again later."""
        candidate = self._by_id.get(node_id)
        if candidate is not None and candidate.state == WAITING:
            self._release(candidate)
            candidate.state = NEW
            self.requests_sent -= 1

    def stalled(self, node_id: bytes) -> None:
        """The request to ``node_id`` missed a timeout: free its window slot."""
        candidate = self._by_id.get(node_id)
        if candidate is not None and candidate.state == WAITING:
            self._release(candidate)
            candidate.state = STALLED

    def failed(self, node_id: bytes) -> None:
        """``node_id`` never answered (or answered nonsense): drop it."""
        candidate = self._by_id.get(node_id)
        if candidate is None or candidate.state in (ANSWERED, FAILED, NEW):
            return
        self._release(candidate)
        candidate.state = FAILED

    def _release(self, candidate: Candidate) -> None:
        if candidate.state == WAITING:
            self._paths[candidate.path].in_flight -= 1

    def stop(self) -> None:
        """End the lookup now (a value was found)."""
        self._stopped = True

    # -- outcome ---------------------------------------------------------------------

    def _path_finished(self, path: _Path) -> bool:
        live = 0
        for candidate in path.candidates:
            if candidate.state in (FAILED, STALLED):
                continue
            if candidate.state != ANSWERED:
                return False
            live += 1
            if live >= self.k:
                return True
        return True

    @property
    def finished(self) -> bool:
        """True once every path's ``k`` closest live candidates have answered."""
        return self._stopped or all(self._path_finished(path) for path in self._paths)

    @property
    def pending(self) -> int:
        """Requests sent and not yet answered or failed (stalled ones included)."""
        return sum(1 for c in self._by_id.values() if c.state in (WAITING, STALLED))

    def closest(self, count: int | None = None) -> list[tuple[bytes, Address]]:
        """The closest nodes that answered, closest first, over all paths."""
        answered = sorted(c for c in self._by_id.values() if c.state == ANSWERED)
        return [(c.node_id, c.address) for c in answered[:count or self.k]]

    def is_candidate(self, node_id: bytes) -> bool:
        return node_id in self._by_id

    @property
    def rounds(self) -> int:
        """Longest referral chain behind the result (0 before any answer)."""
        answered = sorted(c for c in self._by_id.values() if c.state == ANSWERED)[: self.k]
        return max((c.depth + 1 for c in answered), default=0)
