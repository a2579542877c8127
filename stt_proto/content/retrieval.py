"""One retrieval: which chunk to ask of which provider, and what to do with what arrives.

Theory of operation
-------------------
A retrieval starts from a content id alone. Its providers come from the DHT;
up to ``max_providers`` are used at once and the rest wait as spares. Every
chunk that arrives is verified against the id with its proof before anything
else happens to it; the first chunk also tells the content's length, which the
id commits to, so nothing a provider says is taken on trust.

* **Before the length is known** one request is out: the first chunk wanted
  (chunk 0 for a whole content), from one provider at a time. A range past
  the end is refused ``OUT_OF_RANGE``; chunk 0 then tells the length.
* **Pipelines.** Each provider is asked for up to ``depth`` chunks ahead.
  ``depth`` starts at ``initial_depth`` and then follows what the provider
  delivers: twice its measured rate times its shortest request-to-chunk time,
  in chunks, plus one (the bandwidth-delay product with room to spare), within
  ``2..max_depth``. Providers pull work as they free slots, so a faster one
  gets more of it; chunks are handed out lowest index first, which keeps a
  file written mostly in order.
* **Endgame.** Once every chunk still missing has been asked for, a provider
  with a free slot is given a copy of an outstanding chunk that is *overdue*:
  asked longer ago than twice its provider's request-to-chunk time
  (``endgame_patience`` while that is unknown), lowest index first, with at
  most ``endgame_copies`` askers per chunk. The first copy to arrive wins; the
  others are cancelled. Copying only overdue chunks keeps a small content,
  whose chunks all fit in the first pipelines, from being fetched twice.
* **Bad providers.** A chunk that fails its proof, or answers a request for
  another index, drops its provider for good (``bad_chunk``) and its chunks
  go back to the others. A refusal ``BUSY`` rests the provider for the time
  it asked and halves its depth -- unless it asks for more than
  ``max_busy_wait``, or rests ``max_busy_rests`` times in a row without a
  chunk between: then, as on other refusals, it is dropped (``refused``). A provider that owes
  chunks and sends nothing for
  ``stall_timeout`` (or eight of its request-to-chunk times, if longer) is
  dropped as ``stalled``.
* **Running out.** With no provider left and chunks missing, the DHT is
  asked again (``provider_lookups`` times in all, backing off); then the
  retrieval fails with ``no_providers``. What was verified stays in the sink,
  so retrieving again resumes from it.

The retrieval does no I/O: it calls its owner (:class:`~stt_proto.content.node.ContentNode`)
to send requests and cancels and to look for providers, and writes verified
chunks into its *sink* -- a partial entry of the store, or memory for a range.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

from ..errors import LocalProtocolError, ProofError
from .messages import Chunk, RefuseReason
from .tree import CHUNK_SIZE, chunk_count, verify_chunk

__all__ = ["Retrieval", "RangeSink"]

Address = Any

FINDING, FETCHING, DONE, FAILED = "finding", "fetching", "done", "failed"


class RangeSink:
    """Verified chunks of a byte range, kept in memory (the range is the caller's
    to bound); the same interface as a store's partial entry."""

    def __init__(self, content_id: bytes, length: int) -> None:
        self.content_id = content_id
        self.length = length
        self._chunks: dict[int, bytes] = {}

    def have(self, index: int) -> bool:
        return index in self._chunks

    def write(self, index: int, data: Any, leaf: bytes) -> None:
        self._chunks[index] = bytes(data)

    def read_chunk(self, index: int) -> bytes | None:
        return self._chunks.get(index)

    @property
    def done_bytes(self) -> int:
        return sum(len(c) for c in self._chunks.values())


class _Provider:
    __slots__ = ("peer_id", "address", "linked", "outstanding", "depth", "rate", "latency",
                 "last_arrival", "resting_until", "rests", "received")

    def __init__(self, peer_id: bytes, address: Address, depth: int) -> None:
        self.peer_id = peer_id
        self.address = address
        self.linked = False
        self.outstanding: dict[int, tuple[int, float]] = {}   # index -> (request id, sent at)
        self.depth = depth
        self.rate = 0.0            # bytes/s, smoothed
        self.latency = math.inf    # shortest request-to-chunk time seen
        self.last_arrival = -math.inf
        self.resting_until = -math.inf
        self.rests = 0             # BUSY rests in a row, with no chunk between
        self.received = 0


class Retrieval:
    """The state machine of one retrieval (see the module docstring).

    :param owner: sends for it: ``_send_request(retrieval, peer, index, now) ->
        request id``, ``_send_cancel(peer, request id, tell=True)``, ``_find_providers(retrieval)``,
        ``_want_link(peer, address)``, ``_open_sink(retrieval, length) -> sink``
        and ``_report(retrieval, event kind, **fields)``.
    :param first, last: the byte range wanted (``last=None``: to the end).
    :param whole: into the store's partial (at ``path`` if given), else a range into memory.
    """

    def __init__(self, retrieval_id: int, content_id: bytes, owner: Any, config: Any, *,
                 now: float, first: int = 0, last: int | None = None, whole: bool = True,
                 path: str | None = None, provide: bool = True) -> None:
        self.id = retrieval_id
        self.content_id = content_id
        self.whole = whole          # into the store (else a range, into memory)
        self.path = path            # the file it is written to in place, if any
        self.provide = provide      # provided once retrieved
        self.leader: Retrieval | None = None   # the retrieval this one waits for
        self.owner = owner
        self.config = config
        self.state = FINDING
        self.sink: Any = None                 # set once the length is known
        self.length: int | None = None
        self.first_byte = first
        self.last_byte = last
        self.providers: dict[bytes, _Provider] = {}
        self.spares: list[tuple[bytes, Address]] = []
        self.bad: set[bytes] = set()
        self.dropped: set[bytes] = set()
        self._pending: list[int] = []             # heap of chunks not asked of anyone
        self._askers: dict[int, set[bytes]] = {}  # outstanding chunk -> providers asked
        self._due: dict[int, float] = {}          # outstanding chunk -> when it is overdue
        self._endgame_at: float | None = None
        self._missing: set[int] = set()           # chunks wanted and not in the sink
        self._probe_index = first // CHUNK_SIZE
        self._lookups = 0
        self._lookup_at: float | None = None
        self._progress_at = -math.inf
        self.started = now

    # -- providers -----------------------------------------------------------------------

    def begin(self, now: float, sink: Any = None) -> None:
        """Start: with ``sink`` when the length is known already (the store has
        the content, or part of it), else the first chunk tells it."""
        if sink is not None:
            self.sink = sink
            self._plan(sink.length)
            if not self._missing:
                self._finish(now)  # the store had every chunk wanted
                return
        self._lookup(now)

    def _lookup(self, now: float) -> None:
        self._lookups += 1
        self._lookup_at = None
        self.owner._find_providers(self)

    def providers_found(self, providers: list[tuple[bytes, Address]], now: float) -> None:
        if self.state in (DONE, FAILED):
            return
        own = self.owner.own_id
        known = {p for p, _ in self.spares}
        for peer_id, address in providers:
            if peer_id == own or peer_id in self.providers or peer_id in self.bad \
                    or peer_id in known:
                continue
            self.spares.append((peer_id, address))
            known.add(peer_id)
        if self.state == FINDING:
            self.state = FETCHING
        self._recruit()
        self._check_starved(now)

    def _recruit(self) -> None:
        while self.spares and len(self.providers) < self.config.max_providers:
            peer_id, address = self.spares.pop(0)
            self.providers[peer_id] = _Provider(peer_id, address, self.config.initial_depth)
            self.owner._want_link(peer_id, address)

    def provider_linked(self, peer_id: bytes, now: float) -> None:
        provider = self.providers.get(peer_id)
        if provider is not None:
            provider.linked = True
            self.schedule(now)

    def provider_lost(self, peer_id: bytes, now: float, reason: str = "unreachable") -> None:
        """The peer is gone for this node (unreachable, or banned): not a spare
        any more either, and dropped if it was fetching."""
        self.spares = [(p, a) for p, a in self.spares if p != peer_id]
        if peer_id in self.providers:
            self._drop(self.providers[peer_id], reason, now)

    def _drop(self, provider: _Provider, reason: str, now: float) -> None:
        del self.providers[provider.peer_id]
        if reason == "bad_chunk":
            self.bad.add(provider.peer_id)
        self.dropped.add(provider.peer_id)
        for index, (request_id, _) in provider.outstanding.items():
            # A bad provider is not worth a CANCEL; its late answers are ignored.
            self.owner._send_cancel(provider.peer_id, request_id,
                                    tell=reason != "bad_chunk")
            self._unask(index, provider.peer_id)
        provider.outstanding.clear()
        self.owner._report(self, "dropped", provider=provider.peer_id, reason=reason)
        self._recruit()
        self.schedule(now)
        self._check_starved(now)

    def _check_starved(self, now: float) -> None:
        if self.state != FETCHING or self.providers or self.spares:
            return
        if self._lookups >= self.config.provider_lookups:
            self._fail("no_providers", now)
        elif self._lookup_at is None:
            self._lookup_at = now + self.config.lookup_backoff * 2 ** (self._lookups - 1)

    # -- the plan of chunks ----------------------------------------------------------------

    def _plan(self, length: int) -> None:
        """The length is known: the chunks wanted, minus those the sink has."""
        self.length = length
        count = chunk_count(length)
        first = min(self.first_byte // CHUNK_SIZE, count - 1)
        end = length if self.last_byte is None else min(self.last_byte, length)
        last = max(first, (max(end, 1) - 1) // CHUNK_SIZE)
        have = self.sink.have
        self._missing = {i for i in range(first, last + 1) if not have(i)}
        self._pending = [i for i in self._missing if i not in self._askers]
        heapq.heapify(self._pending)

    def _unask(self, index: int, peer_id: bytes) -> None:
        askers = self._askers.get(index)
        if askers is None:
            return
        askers.discard(peer_id)
        if not askers:
            del self._askers[index]
            self._due.pop(index, None)
            if index in self._missing:
                heapq.heappush(self._pending, index)

    def schedule(self, now: float) -> None:
        """Fill the free pipeline slots of every linked, rested provider."""
        if self.state != FETCHING:
            return
        if self.length is None:
            self._probe(now)
            return
        pending, askers = self._pending, self._askers
        self._endgame_at = None
        for provider in sorted(self.providers.values(), key=lambda p: -p.rate):
            if not provider.linked or provider.resting_until > now:
                continue
            while len(provider.outstanding) < provider.depth:
                while pending and (pending[0] in askers or pending[0] not in self._missing):
                    heapq.heappop(pending)
                if pending:
                    index = heapq.heappop(pending)
                elif (index := self._endgame_pick(provider, now)) is None:
                    break
                self._ask(provider, index, now)

    def _endgame_pick(self, provider: _Provider, now: float) -> int | None:
        """The lowest overdue chunk ``provider`` may copy; else None, with the
        endgame timer set to when the next one falls due."""
        best = None
        copies, due = self.config.endgame_copies, self._due
        for index, askers in self._askers.items():
            if provider.peer_id in askers or len(askers) >= copies:
                continue
            if due[index] > now:
                if self._endgame_at is None or due[index] < self._endgame_at:
                    self._endgame_at = due[index]
                continue
            if best is None or index < best:
                best = index
        return best

    def _ask(self, provider: _Provider, index: int, now: float) -> None:
        request_id = self.owner._send_request(self, provider.peer_id, index, now)
        provider.outstanding[index] = (request_id, now)
        askers = self._askers.setdefault(index, set())
        if not askers:
            patience = 2 * provider.latency if provider.latency < math.inf else \
                self.config.endgame_patience
            self._due[index] = now + patience
        askers.add(provider.peer_id)

    def _probe(self, now: float) -> None:
        """One request out until the length is known."""
        if self._askers:
            return
        for provider in self.providers.values():
            if provider.linked and provider.resting_until <= now:
                self._ask(provider, self._probe_index, now)
                return

    # -- answers -----------------------------------------------------------------------------

    def on_chunk(self, peer_id: bytes, chunk: Chunk, index: int, now: float) -> None:
        """``chunk`` came from ``peer_id`` under the id of its request for chunk
        ``index``; anything else under that id (another index, a failed proof)
        is a bad chunk."""
        provider = self.providers.get(peer_id)
        if provider is None or self.state != FETCHING:
            return
        sent = provider.outstanding.get(index)
        if sent is None or sent[0] != chunk.request_id:
            return
        del provider.outstanding[index]
        try:
            if chunk.index != index:
                raise ProofError(f"chunk {chunk.index} sent for chunk {index}")
            leaf = verify_chunk(self.content_id, chunk.length, index, chunk.data,
                                list(chunk.proof))
        except ProofError:
            self._unask(index, peer_id)
            self._drop(provider, "bad_chunk", now)
            return
        self._measure(provider, len(chunk.data), now - sent[1], now)
        provider.rests = 0
        if self.length is None:
            sink = self.owner._open_sink(self, chunk.length)
            if sink is None:
                return  # the owner failed the retrieval (no room)
            self.sink = sink
            self._plan(chunk.length)
        askers = self._askers.pop(index, set())
        self._due.pop(index, None)
        for other in askers - {peer_id}:
            rival = self.providers.get(other)
            if rival is not None and index in rival.outstanding:
                self.owner._send_cancel(other, rival.outstanding.pop(index)[0])
        if index in self._missing and not self._write(index, chunk.data, leaf, now):
            return
        if not self._missing:
            self._finish(now)
            return
        self._progress(now)
        self.schedule(now)

    def _write(self, index: int, data: Any, leaf: bytes, now: float) -> bool:
        """Write a verified chunk into the sink; False if the retrieval failed.
        The store may have dropped the sink meanwhile (the content was removed,
        or added whole): then the sink is opened again and the plan follows it."""
        try:
            self.sink.write(index, data, leaf)
        except LocalProtocolError:
            sink = self.owner._open_sink(self, self.length)
            if sink is None:
                return False
            self.sink = sink
            self._plan(self.length)
            if index in self._missing:
                sink.write(index, data, leaf)
        self._missing.discard(index)
        return True

    def _measure(self, provider: _Provider, size: int, latency: float, now: float) -> None:
        provider.received += size
        if latency > 0:
            provider.latency = min(provider.latency, latency)
        gap = now - provider.last_arrival
        provider.last_arrival = now
        if 0 < gap < math.inf:
            sample = size / gap
            provider.rate = sample if provider.rate == 0 else 0.75 * provider.rate + 0.25 * sample
            if provider.latency < math.inf:
                bdp = 2 * provider.rate * provider.latency / CHUNK_SIZE
                provider.depth = max(2, min(self.config.max_depth, math.ceil(bdp) + 1))

    def on_refuse(self, peer_id: bytes, request_id: int, index: int, reason: int,
                  retry_after: float, now: float) -> None:
        provider = self.providers.get(peer_id)
        if provider is None:
            return
        sent = provider.outstanding.get(index)
        if sent is None or sent[0] != request_id:
            return
        del provider.outstanding[index]
        self._unask(index, peer_id)
        if reason == RefuseReason.BUSY:
            if provider.resting_until <= now:
                # The first refusal of a burst starts a rest; the requests already
                # on their way are refused too, and do not count again.
                provider.rests += 1
            if retry_after > self.config.max_busy_wait or \
                    provider.rests > self.config.max_busy_rests:
                self._drop(provider, "refused", now)
                return
            provider.resting_until = max(provider.resting_until, now + max(retry_after, 0.001))
            provider.depth = max(1, provider.depth // 2)
            self.schedule(now)
        elif reason == RefuseReason.OUT_OF_RANGE and self.length is None \
                and self._probe_index != 0:
            # A range past the end: chunk 0 tells the length, and the range is clipped.
            self._probe_index = 0
            self.schedule(now)
        else:
            self._drop(provider, "refused", now)

    # -- time --------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        if self.state in (DONE, FAILED):
            return None
        timers = [t for t in (self._lookup_at, self._endgame_at) if t is not None]
        for provider in self.providers.values():
            if provider.outstanding:
                timers.append(self._stall_deadline(provider))
            if provider.resting_until > -math.inf:
                timers.append(provider.resting_until)
        return min(timers) if timers else None

    def _stall_deadline(self, provider: _Provider) -> float:
        since = max(provider.last_arrival, min(t for _, t in provider.outstanding.values()))
        latency = provider.latency if provider.latency < math.inf else 0.0
        return since + max(self.config.stall_timeout, 8 * latency)

    def handle_timer(self, now: float) -> None:
        if self.state in (DONE, FAILED):
            return
        if self._lookup_at is not None and self._lookup_at <= now:
            self._lookup(now)
        for provider in list(self.providers.values()):
            if provider.outstanding and self._stall_deadline(provider) <= now:
                self._drop(provider, "stalled", now)
            elif provider.resting_until <= now:
                provider.resting_until = -math.inf  # rested: no timer for it
        self.schedule(now)

    # -- the end ------------------------------------------------------------------------------

    def _progress(self, now: float) -> None:
        if now - self._progress_at >= self.config.progress_interval:
            self._progress_at = now
            self.owner._report(self, "progress")

    def _finish(self, now: float) -> None:
        self.state = DONE
        self._cancel_all()
        self.owner._report(self, "progress")
        self.owner._report(self, "retrieved")

    def _fail(self, reason: str, now: float) -> None:
        self.state = FAILED
        self._cancel_all()
        self.owner._report(self, "failed", reason=reason)

    def cancel(self, now: float) -> None:
        if self.state not in (DONE, FAILED):
            self._fail("cancelled", now)

    def _cancel_all(self) -> None:
        for provider in self.providers.values():
            for request_id, _ in provider.outstanding.values():
                self.owner._send_cancel(provider.peer_id, request_id)
            provider.outstanding.clear()
        self._askers.clear()
        self._due.clear()
        self._pending.clear()
        self._endgame_at = None

    @property
    def done_bytes(self) -> int:
        return self.sink.done_bytes if self.sink is not None else 0

    def fail_no_room(self, now: float) -> None:
        self._fail("store_full", now)

    def fail_store_error(self, now: float) -> None:
        self._fail("store_error", now)
