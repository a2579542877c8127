"""The content engine of one node: it serves its store, runs retrievals and
announces what it provides.

Theory of operation
-------------------
:class:`ContentNode` is the sans-I/O engine an
:class:`~stt_proto.overlay.OverlayHost` drives through an
:class:`~stt_proto.overlay_channel.OverlayChannel`: every session has one
content stream (:data:`~stt_proto.constants.CONTENT_STREAM_ID`) that carries
both sides' requests and chunks (``docs/content-wire.md``). Per peer the node
keeps a small queue of control messages (requests, cancels, refusals), sent
before anything else so that a peer's requests never wait behind the chunks
it is being served; then the :class:`~stt_proto.content.serving.Server`'s
answers, read from the store one chunk at a time as the stream takes them.

Retrievals (:class:`~stt_proto.content.retrieval.Retrieval`) share the node's
request ids, which map every answer back to the retrieval and provider that
asked. An answer to a request that was cancelled (an endgame copy, a dropped
provider) is expected now and then and ignored; a chunk nobody asked for at
all counts against the peer, which is banned past ``max_unsolicited``.

Retrievals of one content into the store do not fetch side by side (each
would miss the chunks the other wrote into the one partial entry): the first
fetches and the others wait for it, ending as it ends, or starting when it
is cancelled or wrote to another file (``_hand_over``).

Content the node provides is announced in the DHT (``provide``); the DHT
republishes the announcement while the node keeps providing. At most
``_MAX_ANNOUNCING`` announcements run at once, so a restart with a large store
does not fill the DHT's lookup slots.

The store is the one piece of I/O: synchronous reads and writes of one chunk
(an injected object, in memory for tests).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from ..errors import DecodeError, StoreFullError
from ..events import (
    ContentProgress,
    ContentProviderDropped,
    ContentRetrievalFailed,
    ContentRetrieved,
    Event,
)
from .config import ContentConfig
from .messages import Cancel, Chunk, MessageType, Refuse, Request, decode
from .retrieval import DONE, FAILED, RangeSink, Retrieval
from .serving import Server

__all__ = ["ContentNode"]

Address = Any

#: DHT announcements running at once.
_MAX_ANNOUNCING = 8
#: Seconds before an announcement the DHT was too busy for is tried again.
_ANNOUNCE_RETRY = 5.0
_REFUSE = bytes([MessageType.REFUSE])
#: Cancelled request ids remembered (their late answers are not the peer's fault).
_MAX_CANCELLED = 4_096


class _Peer:
    __slots__ = ("address", "linked", "wanted", "control", "refusals", "unsolicited")

    def __init__(self, address: Address) -> None:
        self.address = address
        self.linked = False
        self.wanted = False
        self.control: deque[bytes] = deque()    # our requests and cancels
        self.refusals: deque[bytes] = deque()   # our refusals of its requests
        self.unsolicited = 0


class ContentNode:
    """Serves ``store``, retrieves into it, announces what it provides (see the
    module docstring).

    :param node_id: this node's id (never used as a provider of its own retrievals).
    :param store: a :class:`~stt_proto.content.store.ContentStore`.
    :param announce: False: what it provides is served but never announced in the DHT.
    """

    def __init__(self, node_id: bytes, store: Any, config: ContentConfig | None = None, *,
                 now: float = 0.0, announce: bool = True) -> None:
        self.own_id = bytes(node_id)
        self.announces = announce
        self.store = store
        self.config = config if config is not None else ContentConfig()
        self.stats: dict[str, int] = dict.fromkeys((
            "messages_malformed", "chunks_received", "chunks_late", "chunks_unsolicited",
            "bad_chunks", "retrievals_started", "retrievals_done", "retrievals_failed",
            "retrievals_joined", "announcements", "peers_banned_unread"), 0)
        self.server = Server(store, self.config, self.stats)
        self._peers: dict[bytes, _Peer] = {}
        self._connects: dict[bytes, Address] = {}
        self._banned: list[bytes] = []
        self._events: list[Event] = []
        self._dht: list[tuple[str, bytes]] = []
        self._now = now
        # Retrievals by id, the requests they have out, and who looks for providers.
        self._retrievals: dict[int, Retrieval] = {}
        self._next_retrieval = 1
        self._requests: dict[int, tuple[Retrieval, bytes, int]] = {}   # -> (.., peer, index)
        self._next_request = 0
        self._cancelled: OrderedDict[int, None] = OrderedDict()
        self._finding: dict[bytes, list[int]] = {}
        # One retrieval of a content into the store fetches; the others wait for it.
        self._leading: dict[bytes, Retrieval] = {}
        self._followers: dict[int, list[Retrieval]] = {}
        # Announcements: content provided, waiting to be announced, being announced.
        self._provided: set[bytes] = set()
        self._announce: deque[bytes] = deque()
        self._announcing: set[bytes] = set()
        self._announce_at: float | None = None
        self._announced: set[bytes] = set()   # announced at least once since published

    # -- providing ---------------------------------------------------------------------

    def publish(self, content_id: bytes) -> None:
        """Provide ``content_id`` (complete in the store) and announce it."""
        content_id = bytes(content_id)
        if not self.store.has(content_id):
            raise KeyError("publish content the store has complete")
        if content_id not in self._provided:
            self._provided.add(content_id)
            if self.announces:
                self._announce.append(content_id)

    def unpublish(self, content_id: bytes) -> bool:
        """Stop providing ``content_id`` and announcing it (records at other nodes
        expire on their own); the store keeps it unless the caller removes it."""
        content_id = bytes(content_id)
        if content_id not in self._provided:
            return False
        self._provided.discard(content_id)
        self._announced.discard(content_id)
        if content_id in self._announce:
            self._announce.remove(content_id)
        self._dht.append(("stop_providing", content_id))
        return True

    def announced(self, content_id: bytes) -> bool:
        """Whether the DHT took an announcement of ``content_id`` since it was published."""
        return content_id in self._announced

    def published(self) -> list[bytes]:
        return sorted(self._provided)

    def provided(self, key: bytes, *, now: float, stored: bool = True) -> None:
        self._announcing.discard(key)
        if stored:
            self.stats["announcements"] += 1
            if key in self._provided:
                self._announced.add(key)
        elif key in self._provided:
            self._announce.append(key)
            self._announce_at = now + _ANNOUNCE_RETRY

    # -- retrieving --------------------------------------------------------------------

    def retrieve(self, content_id: bytes, *, now: float, path: str | None = None,
                 provide: bool = True, first: int = 0, last: int | None = None,
                 whole: bool = True) -> Retrieval:
        """Start retrieving ``content_id`` (``whole``: into the store, at ``path``
        if given, then provided unless ``provide`` is False; else the bytes
        ``first..last`` into memory). The retrieval reports with events."""
        content_id = bytes(content_id)
        if len(content_id) != 32:
            raise ValueError("a content id is 32 bytes")
        if len(self._retrievals) >= self.config.max_retrievals:
            raise StoreFullError(f"{self.config.max_retrievals} retrievals are running already")
        retrieval = Retrieval(self._next_retrieval, content_id, self, self.config, now=now,
                              first=first, last=last, whole=whole, path=path, provide=provide)
        self._next_retrieval += 1
        self._retrievals[retrieval.id] = retrieval
        self.stats["retrievals_started"] += 1
        leader = self._leading.get(content_id) if whole else None
        if leader is not None:
            # Two fetches into one partial would each miss what the other wrote:
            # this one waits for the running one (see ``_hand_over``).
            self.stats["retrievals_joined"] += 1
            retrieval.leader = leader
            self._followers.setdefault(leader.id, []).append(retrieval)
            return retrieval
        try:
            self._begin(retrieval, now)
        except BaseException:
            self._end(retrieval)
            raise
        return retrieval

    def _begin(self, retrieval: Retrieval, now: float) -> None:
        """Open the retrieval's sink if the store knows the length, and start it.
        Raises what ``store.begin`` raises (no room, a path that cannot be made)."""
        content_id, sink = retrieval.content_id, None
        if retrieval.whole:
            self._leading[content_id] = retrieval
            length = self.store.length(content_id) if self.store.has(content_id) else \
                self.store.partial_length(content_id)
            if length is not None:
                sink = self.store.begin(content_id, length, path=retrieval.path)
        elif self.store.has(content_id):
            sink = _StoreRange(self.store, content_id)
        retrieval.begin(now, sink)

    def _hand_over(self, leader: Retrieval, kind: str, reason: str | None) -> None:
        """The retrieval others waited for has ended: those writing to the same
        place end as it did, unless it was cancelled; the rest start, the first
        fetching and the others waiting for it."""
        followers = self._followers.pop(leader.id, [])
        starting = []
        for follower in followers:
            follower.leader = None
            if follower.path != leader.path or (kind == "failed" and reason == "cancelled"):
                starting.append(follower)
            elif kind == "retrieved":
                follower.sink, follower.length, follower.state = leader.sink, leader.length, DONE
                self._report(follower, "progress")
                self._report(follower, "retrieved")
            else:
                follower.state = FAILED
                self._report(follower, "failed", reason=reason)
        if not starting:
            return
        first = starting[0]
        for follower in starting[1:]:
            follower.leader = first
        self._followers[first.id] = starting[1:]
        try:
            self._begin(first, self._now)
        except StoreFullError:
            first.fail_no_room(self._now)
        except (OSError, ValueError):
            first.fail_store_error(self._now)

    def cancel(self, retrieval_id: int, *, now: float) -> None:
        retrieval = self._retrievals.get(retrieval_id)
        if retrieval is not None:
            retrieval.cancel(now)

    # What a retrieval calls.

    def _send_request(self, retrieval: Retrieval, peer_id: bytes, index: int,
                      now: float) -> int:
        request_id = self._next_request
        self._next_request = (request_id + 1) & 0xFFFFFFFF
        self._requests[request_id] = (retrieval, peer_id, index)
        self._control(peer_id, Request(request_id=request_id, content_id=retrieval.content_id,
                                      index=index).encode())
        return request_id

    def _send_cancel(self, peer_id: bytes, request_id: int, *, tell: bool = True) -> None:
        """Forget a request; ``tell``: and send the provider a CANCEL."""
        if self._requests.pop(request_id, None) is None:
            return
        self._cancelled[request_id] = None
        if len(self._cancelled) > _MAX_CANCELLED:
            self._cancelled.popitem(last=False)
        peer = self._peers.get(peer_id)
        if tell and peer is not None and peer.linked:
            self._control(peer_id, Cancel(request_id=request_id).encode())

    def _find_providers(self, retrieval: Retrieval) -> None:
        waiting = self._finding.setdefault(retrieval.content_id, [])
        if not waiting:
            self._dht.append(("find_providers", retrieval.content_id))
        waiting.append(retrieval.id)

    def _want_link(self, peer_id: bytes, address: Address) -> None:
        peer = self._peers.get(peer_id)
        if peer is None:
            peer = self._peers[peer_id] = _Peer(address)
        if peer.linked:
            for retrieval in list(self._retrievals.values()):
                retrieval.provider_linked(peer_id, self._now)
            return
        peer.wanted = True
        self._connects[peer_id] = address

    def _open_sink(self, retrieval: Retrieval, length: int) -> Any:
        """The sink for the retrieval's chunks, or None with the retrieval failed."""
        if not retrieval.whole:
            return RangeSink(retrieval.content_id, length)
        try:
            return self.store.begin(retrieval.content_id, length, path=retrieval.path)
        except StoreFullError:
            retrieval.fail_no_room(self._now)
        except OSError:
            retrieval.fail_store_error(self._now)
        return None

    def _report(self, retrieval: Retrieval, kind: str, **fields: Any) -> None:
        content_id = retrieval.content_id
        if kind == "progress":
            providers = sum(1 for p in retrieval.providers.values() if p.linked)
            for each in [retrieval, *self._followers.get(retrieval.id, ())]:
                self._events.append(ContentProgress(
                    retrieval_id=each.id, content_id=content_id,
                    done_bytes=retrieval.done_bytes, total_bytes=retrieval.length or 0,
                    providers=providers))
        elif kind == "dropped":
            if fields["reason"] == "bad_chunk":
                self.stats["bad_chunks"] += 1
            self._events.append(ContentProviderDropped(
                retrieval_id=retrieval.id, content_id=content_id, **fields))
        elif kind == "retrieved":
            self._end(retrieval)
            if retrieval.whole and not isinstance(retrieval.sink, _StoreRange):
                retrieval.sink.complete()
            if retrieval.whole and retrieval.provide:
                self.publish(content_id)
            self.stats["retrievals_done"] += 1
            self._events.append(ContentRetrieved(retrieval_id=retrieval.id,
                                                 content_id=content_id,
                                                 length=retrieval.length or 0))
            self._hand_over(retrieval, kind, None)
        else:
            self._end(retrieval)
            self.stats["retrievals_failed"] += 1
            self._events.append(ContentRetrievalFailed(retrieval_id=retrieval.id,
                                                       content_id=content_id, **fields))
            self._hand_over(retrieval, kind, fields["reason"])

    def _end(self, retrieval: Retrieval) -> None:
        self._retrievals.pop(retrieval.id, None)
        if self._leading.get(retrieval.content_id) is retrieval:
            del self._leading[retrieval.content_id]
        if retrieval.leader is not None:
            self._followers[retrieval.leader.id].remove(retrieval)
            retrieval.leader = None
        waiting = self._finding.get(retrieval.content_id)
        if waiting is not None and retrieval.id in waiting:
            waiting.remove(retrieval.id)

    def providers_found(self, key: bytes, providers: list[tuple[bytes, Address]], *,
                        now: float) -> None:
        self._now = max(self._now, now)
        # A peer this node banned drops what it sends unread: no use asking it.
        providers = [(p, a) for p, a in providers if not self.server.is_banned(p, now)]
        for retrieval_id in self._finding.pop(key, []):
            retrieval = self._retrievals.get(retrieval_id)
            if retrieval is not None:
                retrieval.providers_found(providers, now)

    # -- the channel's interface -------------------------------------------------------

    def receive(self, peer_id: bytes, address: Address, data: bytes, *, now: float) -> None:
        self._now = max(self._now, now)
        if self.server.is_banned(peer_id, now):
            return
        try:
            message = decode(data)
        except DecodeError:
            self.stats["messages_malformed"] += 1
            self._ban(peer_id, now)
            return
        kind = type(message)
        if kind is Chunk:
            self._on_chunk(peer_id, message, now)
        elif kind is Request:
            refusal = self.server.request(peer_id, message, now)
            if refusal is not None:
                self._refuse(peer_id, refusal, now)
            elif self.server.is_banned(peer_id, now):  # that request passed the bound
                self._ban(peer_id, now)
        elif kind is Refuse:
            entry = self._requests.get(message.request_id)
            if entry is not None and entry[1] == peer_id:
                del self._requests[message.request_id]
                entry[0].on_refuse(peer_id, message.request_id, entry[2], message.reason,
                                   message.retry_after_ms / 1000, now)
        elif kind is Cancel:
            self.server.cancel(peer_id, message.request_id)

    def _on_chunk(self, peer_id: bytes, chunk: Chunk, now: float) -> None:
        entry = self._requests.get(chunk.request_id)
        if entry is None or entry[1] != peer_id:
            if chunk.request_id in self._cancelled:
                self.stats["chunks_late"] += 1
                return
            self.stats["chunks_unsolicited"] += 1
            peer = self._peers.get(peer_id)
            if peer is not None:
                peer.unsolicited += 1
                if peer.unsolicited > self.config.max_unsolicited:
                    self._ban(peer_id, now)
            return
        del self._requests[chunk.request_id]
        self.stats["chunks_received"] += 1
        entry[0].on_chunk(peer_id, chunk, entry[2], now)

    def _ban(self, peer_id: bytes, now: float) -> None:
        self.server.ban(peer_id, now)
        self._banned.extend(self.server.take_banned())
        self._forget(peer_id, now, reason="refused")

    def _refuse(self, peer_id: bytes, refusal: bytes, now: float) -> None:
        """Queue a refusal; a peer that asks again while ``max_queued_refusals``
        wait for it, unread, is banned (it asks without reading)."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        if len(peer.refusals) >= self.config.max_queued_refusals:
            self.stats["peers_banned_unread"] += 1
            self._ban(peer_id, now)
            return
        peer.refusals.append(refusal)

    def _control(self, peer_id: bytes, data: bytes) -> None:
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        peer.control.append(data)

    def peer_linked(self, peer_id: bytes, address: Address, *, now: float) -> None:
        self._now = max(self._now, now)
        peer = self._peers.get(peer_id)
        if peer is None:
            peer = self._peers[peer_id] = _Peer(address)
        peer.linked = True
        peer.wanted = False
        if address is not None:
            peer.address = address
        self._connects.pop(peer_id, None)
        for retrieval in list(self._retrievals.values()):
            retrieval.provider_linked(peer_id, now)

    def peer_unlinked(self, peer_id: bytes, *, now: float, unreachable: bool = False) -> None:
        self._now = max(self._now, now)
        self._forget(peer_id, now, reason="unreachable")

    def _forget(self, peer_id: bytes, now: float, *, reason: str) -> None:
        self._connects.pop(peer_id, None)
        self.server.forget(peer_id)
        if self._peers.pop(peer_id, None) is None:
            return
        for retrieval in list(self._retrievals.values()):
            retrieval.provider_lost(peer_id, now, reason)

    def expects(self, peer_id: bytes) -> bool:
        peer = self._peers.get(peer_id)
        return peer is not None and (peer.wanted or peer.linked)

    def connects_wanted(self) -> list[tuple[bytes, Address]]:
        wanted, self._connects = list(self._connects.items()), {}
        return wanted

    def take_banned(self) -> list[bytes]:
        banned = self._banned + self.server.take_banned()
        self._banned = []
        return banned

    def dht_actions(self) -> list[tuple[str, bytes]]:
        actions, self._dht = self._dht, []
        if self._announce_at is None or self._announce_at <= self._now:
            self._announce_at = None
            while self._announce and len(self._announcing) < _MAX_ANNOUNCING:
                key = self._announce.popleft()
                if key in self._provided and key not in self._announcing:
                    self._announcing.add(key)
                    actions.append(("provide", key))
        return actions

    def output_peers(self) -> list[bytes]:
        has_work = self.server.has_work
        return [peer_id for peer_id, peer in self._peers.items()
                if peer.linked and (peer.control or peer.refusals or has_work(peer_id))]

    def pop_output(self, peer_id: bytes) -> bytes | None:
        peer = self._peers.get(peer_id)
        if peer is None or not peer.linked:
            return None
        if peer.control:
            return peer.control.popleft()
        if peer.refusals:
            return peer.refusals.popleft()
        return self.server.next_message(peer_id)

    def push_back(self, peer_id: bytes, data: bytes) -> None:
        peer = self._peers.get(peer_id)
        if peer is not None:
            queue = peer.refusals if data[:1] == _REFUSE else peer.control
            queue.appendleft(data)

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    def get_timer(self) -> float | None:
        timers = [t for r in self._retrievals.values() if (t := r.get_timer()) is not None]
        if self._announce_at is not None:
            timers.append(self._announce_at)
        return min(timers) if timers else None

    def handle_timer(self, *, now: float) -> None:
        self._now = max(self._now, now)
        for retrieval in list(self._retrievals.values()):
            if retrieval.state not in (DONE, FAILED):
                retrieval.handle_timer(now)

    def retrievals(self) -> list[Retrieval]:
        return list(self._retrievals.values())


class _StoreRange:
    """A range of content the store has complete: the retrieval is done at once."""

    def __init__(self, store: Any, content_id: bytes) -> None:
        self.store = store
        self.content_id = content_id
        self.length = store.length(content_id)

    def have(self, index: int) -> bool:
        return True

    def read_chunk(self, index: int) -> bytes | None:
        return self.store.read_chunk(self.content_id, index)

    @property
    def done_bytes(self) -> int:
        return self.length
