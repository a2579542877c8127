"""The program and the checks of ``fuzz_content_engine.py``, without atheris, so that
``tests/content/test_fuzz_engine_smoke.py`` replays the corpus and any finding
through the very same code.

A fuzz input is read (with ``_harness.Ops``) as one configuration byte and then
up to :data:`MAX_OPS` operations on one :class:`~stt_proto.content.node.ContentNode`
with small limits, a :class:`~stt_proto.content.store.MemoryStore` that holds one
or two small contents at the start, and a handful of peers (:data:`PEERS`)
whose sessions come and go. Every message comes over an authenticated session,
so a peer may send anything, but under its own id. The world's contents
(:data:`CONTENTS`) are genuine: their chunks and proofs are computed at import
time, so every CHUNK the program sends is either exactly right or edited in a
known way. The operation byte, modulo :data:`OP_COUNT`, picks:

``OP_RAW``       a peer sends raw fuzzer bytes;
``OP_REQUEST``   a peer asks the node for chunks (its contents, others, unknown
                 ids, indexes past the end), one to four REQUESTs;
``OP_CONTROL``   a peer sends a CANCEL, or a REFUSE of one of the node's requests
                 to it (any reason, any wait), or of a request id it never got;
``OP_ANSWER``    a peer answers one REQUEST the node sent (popped from its
                 output): the genuine chunk and proof, or one edited (a bit flipped
                 in the data or a proof hash, the wrong length or index, a proof
                 cut short or with a hash too many, data cut or grown, another
                 content's chunk), sent by the peer asked or by another one; also
                 late (after a CANCEL) and twice;
``OP_UNSOLICITED`` a peer sends a genuine chunk under a request id never asked;
``OP_MUTATED``   a peer sends a valid message with byte edits;
``OP_TIME``      time advances (or jumps to ``get_timer()``) and the timer fires;
``OP_APP``       the application retrieves (whole or a range, of any content,
                 an unknown one, an id of the wrong size), cancels a retrieval,
                 publishes or unpublishes;
``OP_PROVIDERS`` the DHT answers a ``find_providers`` (or nobody asked): peers,
                 the node itself, duplicates, banned peers, strangers, nobody;
``OP_LINK``      a session comes up or ends (or could not be opened);
``OP_HOST``      the host pops output (and pushes some back), connects the peers
                 asked for, runs the DHT actions, takes the banned peers;
``OP_BURST``     a peer sends one REQUEST many times (hammering, the bans);
``OP_HONEST``    a peer answers every REQUEST the node sent it, genuinely.

Invariants, checked after every operation (:func:`check`) and at the end
(:func:`drain`):

* ``receive``, ``handle_timer`` and the host's calls never raise; ``retrieve``
  raises only ``StoreFullError`` (``max_retrievals`` running) or ``ValueError``
  (an id not 32 bytes), and exactly then;
* a ``ContentRetrieved`` only when the store (whole) or the range's sink holds
  exactly the genuine bytes, for a retrieval that was running, once;
* nothing that failed its proof is ever written: every chunk of every partial
  entry and range sink is the genuine one (its leaf and its data); every
  complete entry is a genuine content;
* a provider that answered a live request with anything but the chunk asked
  for (a chunk that fails its proof, or another index) is in the retrieval's
  ``bad`` set, and never gets a REQUEST of that retrieval again; only such a
  provider is dropped for ``bad_chunk``;
* no REQUEST goes to a peer the node banned (its answers would be dropped unread);
* every output decodes; a CHUNK the node serves is the genuine chunk asked for;
* per peer, the server's queue holds at most ``max_requests_per_peer`` requests
  and at most ``max_queued_refusals`` refusals wait for it;
* ``get_timer()`` is ``None`` or a finite float; after ``handle_timer(now)`` and the
  host's round, ``None`` or later than ``now``;
* liveness: once the program is over and every peer answers honestly, every
  retrieval ends (retrieved or failed) within a bounded time.
"""

from __future__ import annotations

import math
import random

from _harness import Ops
from stt_proto.content.config import ContentConfig
from stt_proto.content.messages import (
    Cancel, Chunk, MessageType, Refuse, RefuseReason, Request, decode,
)
from stt_proto.content.node import ContentNode
from stt_proto.content.retrieval import RangeSink
from stt_proto.content.store import MemoryStore
from stt_proto.content.tree import CHUNK_SIZE, HashTree, verify_chunk
from stt_proto.errors import DecodeError, ProofError, StoreFullError
from stt_proto.events import (
    ContentProgress,
    ContentProviderDropped,
    ContentRetrievalFailed,
    ContentRetrieved,
)

OP_RAW, OP_REQUEST, OP_CONTROL, OP_ANSWER, OP_UNSOLICITED, OP_MUTATED, OP_TIME, OP_APP, \
    OP_PROVIDERS, OP_LINK, OP_HOST, OP_BURST, OP_HONEST = range(13)
OP_COUNT = 13
MAX_OPS = 64

#: Small limits, so that a short input reaches every one of them.
TIGHT = ContentConfig(
    max_requests_per_peer=3, max_requests_per_second=8.0, max_refusals=5, ban_time=6.0,
    max_serving_peers=2, max_stream_buffered=4 * CHUNK_SIZE, retry_after=0.5,
    max_retrievals=3, max_providers=2, initial_depth=2, max_depth=3, endgame_copies=2,
    endgame_patience=0.5, stall_timeout=3.0, provider_lookups=2, lookup_backoff=1.0,
    max_busy_wait=5.0, max_busy_rests=3, progress_interval=0.25, max_unsolicited=3)
#: Roomier limits: retrievals that the tight ones would cut short.
LOOSE = ContentConfig(
    max_requests_per_peer=8, max_requests_per_second=50.0, max_refusals=16, ban_time=10.0,
    max_serving_peers=8, max_stream_buffered=4 * CHUNK_SIZE, retry_after=0.5,
    max_retrievals=6, max_providers=4, initial_depth=4, max_depth=8, endgame_copies=2,
    endgame_patience=0.5, stall_timeout=4.0, provider_lookups=3, lookup_backoff=1.0,
    progress_interval=0.25, max_unsolicited=8)


def _id(n: int) -> bytes:
    return random.Random(n).randbytes(32)


OWN_ID = _id(1)
#: The peers whose sessions the program opens and closes.
PEER_IDS = [_id(100 + i) for i in range(4)]
ADDRESSES = [("10.0.0.1", 4001), ("10.0.0.2", 4002), ("203.0.113.3", 4003),
             ("2001:db8::4", 4004, 0, 0)]
#: Ids known only from the DHT: connects to them succeed or fail as the host says.
STRANGERS = [_id(200 + i) for i in range(2)]
STRANGER_ADDRESSES = [("198.51.100.7", 4100), ("198.51.100.8", 4101)]
#: An id nobody has content for.
UNKNOWN_ID = _id(300)


class Content:
    """One genuine content: its bytes, tree, chunks and proofs."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.tree = HashTree.of_bytes(data)
        self.id = self.tree.content_id
        self.length = len(data)
        self.chunks = [data[i:i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)] or [b""]
        self.proofs = [tuple(self.tree.proof(i)) for i in range(len(self.chunks))]

    def chunk(self, request_id: int, index: int) -> Chunk:
        return Chunk(request_id=request_id, length=self.length, index=index,
                     proof=self.proofs[index], data=self.chunks[index])


def _bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


#: The world's contents: three chunks, exactly two, one small chunk, empty (the
#: peers hold them), and two the node holds at the start (by the flags).
CONTENTS = [Content(_bytes(11, 2 * CHUNK_SIZE + 1000)), Content(_bytes(12, 2 * CHUNK_SIZE)),
            Content(_bytes(13, 700)), Content(b""),
            Content(_bytes(14, CHUNK_SIZE + 333)), Content(_bytes(15, 100))]
LOCAL = (4, 5)
BY_ID = {c.id: c for c in CONTENTS}
#: Ids a request or a retrieval names: every content, and one nobody has.
IDS = [c.id for c in CONTENTS] + [UNKNOWN_ID]
#: Indexes a request names: every real one, and some past any end.
INDEXES = (0, 1, 2, 3, 7, 0xFFFFFFFF)
#: Byte ranges a range retrieval asks for (first, last), within and past the end.
RANGES = ((0, 1), (0, 700), (5, CHUNK_SIZE + 10), (CHUNK_SIZE, CHUNK_SIZE + 1),
          (2 * CHUNK_SIZE - 1, 2 * CHUNK_SIZE + 2), (CHUNK_SIZE + 5, None), (10 * CHUNK_SIZE, None),
          (0, None), (3 * CHUNK_SIZE, 3 * CHUNK_SIZE + 5))

#: What this harness found and the engine does not fix yet; a run that is not
#: strict lets exactly these through (narrowly), so the fuzzer goes on to other
#: paths (``tests/content/test_fuzz_engine_smoke.py`` replays each, strictly).
KNOWN_FINDINGS: dict[str, str] = {}


class Run:
    """One input's program against one node, with the bookkeeping the checks need."""

    def __init__(self, data: bytes, *, strict: bool = False) -> None:
        self.ops = Ops(data[1:])
        self.strict = strict
        flags = data[0] if data else 0
        self.now = 0.0
        self.config = LOOSE if flags & 1 else TIGHT
        # The drain's DHT knows one holder of each content (the first peer), or all.
        self.one_holder = bool(flags & 16)
        local = [CONTENTS[LOCAL[0]]] + ([CONTENTS[LOCAL[1]]] if flags & 2 else [])
        held = sum(c.length for c in local)
        # Roomy: every content fits; tight: the largest remote content does not.
        room = 16 * CHUNK_SIZE if not flags & 4 else held + CHUNK_SIZE + 2_000
        self.store = MemoryStore(max_bytes=room)
        for content in local:
            self.store.add_bytes(content.data)
        self.node = ContentNode(OWN_ID, self.store, self.config, now=0.0)
        if flags & 8:
            self.node.publish(local[0].id)
        # retrieval id -> (retrieval, whole, first, last); the ended ones.
        self.retrievals: dict[int, tuple] = {}
        self.ended: set[int] = set()
        # (peer, request id) -> (content id, index) of the REQUESTs the node sent
        # and the host wrote (only those can be answered), oldest first.
        self.asked: dict[tuple[bytes, int], tuple[bytes, int]] = {}
        # (peer, request id) -> every (content id, index) the peer asked of the
        # node under that id (a peer may reuse an id while the first is queued).
        self.requested: dict[tuple[bytes, int], set[tuple[bytes, int]]] = {}
        # retrieval id -> peers that answered one of its live requests with a bad chunk.
        self.liars: dict[int, set[bytes]] = {}
        self.finding_keys: set[bytes] = set()      # find_providers asked
        # Connects the host took and has not finished yet (the pool links the
        # peer or finds it unreachable, in the end: the drain does it).
        self.connecting: dict[bytes, object] = {}
        self.entries_checked: set[bytes] = set()
        self.retrieved = 0
        self.retrieved_ranges = 0
        self.dropped_bad = 0
        check(self)

    # -- findings ------------------------------------------------------------------------

    def fail(self, name: str, message: str) -> None:
        if self.strict or name not in KNOWN_FINDINGS:
            raise AssertionError(f"{name}: {message}")

    # -- fuzzer-chosen pieces ------------------------------------------------------------

    def peer(self) -> tuple[bytes, object]:
        i = self.ops.byte() % len(PEER_IDS)
        return PEER_IDS[i], ADDRESSES[i]

    def content_id(self) -> bytes:
        return IDS[self.ops.byte() % len(IDS)]

    # -- the program ---------------------------------------------------------------------

    def receive(self, peer_id: bytes, address, data: bytes) -> None:
        self.link_sender(peer_id, address)
        try:
            message = decode(data)
        except DecodeError:
            message = None
        if type(message) is Request:
            self.requested.setdefault((peer_id, message.request_id), set()).add(
                (message.content_id, message.index))
        elif type(message) is Chunk:
            self.judge(peer_id, message)   # raw or edited bytes may make a CHUNK too
        self.node.receive(peer_id, address, data, now=self.now)

    def judge(self, peer_id: bytes, chunk: Chunk):
        """The retrieval whose live request ``chunk`` answers (None if none),
        and whether it is the genuine chunk; a sender of a bad answer is a liar."""
        node = self.node
        entry = node._requests.get(chunk.request_id)
        # A banned peer's messages are dropped unread.
        if entry is None or entry[1] != peer_id or node.server.is_banned(peer_id, self.now):
            return None, True
        retrieval, _, index = entry
        try:
            if chunk.index != index:
                raise ProofError("another chunk than the one asked for")
            verify_chunk(retrieval.content_id, chunk.length, chunk.index, chunk.data,
                         list(chunk.proof))
        except ProofError:
            self.liars.setdefault(retrieval.id, set()).add(peer_id)
            return retrieval, False
        return retrieval, True

    def link_sender(self, peer_id: bytes, address) -> None:
        # The channel links a peer that writes first before it hands over its
        # message (which may start the requests of a retrieval that waited for it).
        peer = self.node._peers.get(peer_id)
        if peer is None or not peer.linked:
            self.node.peer_linked(peer_id, address, now=self.now)

    def send_chunk(self, peer_id: bytes, address, chunk: Chunk) -> None:
        """Send a CHUNK and check what the node did with it: a bad answer to a
        live request marks its sender bad, a genuine one never does."""
        node = self.node
        self.link_sender(peer_id, address)
        retrieval, genuine = self.judge(peer_id, chunk)
        live = retrieval is not None
        bad_before = node.stats["bad_chunks"]
        self.receive(peer_id, address, chunk.encode())
        if not live:
            return
        if genuine and node.stats["bad_chunks"] != bad_before:
            raise AssertionError(f"a genuine chunk {chunk.index} dropped its provider as bad")
        if not genuine and peer_id not in retrieval.bad:
            self.fail("bad_chunk_kept", f"a chunk {chunk.index} that is not the one asked "
                      f"by request {chunk.request_id} left its provider out of bad")

    def answer(self, peer_id: bytes, address, request_id: int, content_id: bytes, index: int,
               how: int) -> None:
        """Answer a request genuinely (``how`` 0) or with one edit."""
        content = BY_ID.get(content_id)
        ops = self.ops
        if content is None or index >= len(content.chunks):
            # Nobody has it: a provider can only make something up.
            data = ops.take(ops.byte())
            self.send_chunk(peer_id, address, Chunk(
                request_id=request_id, length=len(data), index=index, proof=(), data=data))
            return
        chunk = content.chunk(request_id, index)
        proof, data, length = list(chunk.proof), chunk.data, chunk.length
        b = ops.byte() if how else 0
        if how == 1:
            if data:
                flipped = bytearray(data)
                flipped[(b * 7919) % len(flipped)] ^= 1 << (b % 8)
                data = bytes(flipped)
            else:
                data = b"\x00"
        elif how == 2:
            if proof:
                h = bytearray(proof[b % len(proof)])
                h[b % 32] ^= 1 << (b % 8)
                proof[b % len(proof)] = bytes(h)
            else:
                proof = [bytes(32)]
        elif how == 3:
            length = (length + 1, max(0, length - 1), 0, CHUNK_SIZE * 3,
                      CONTENTS[b % len(CONTENTS)].length)[b % 5]
        elif how == 4:
            other = (index + 1 + b % 3) % (len(content.chunks) + 1)
            if other < len(content.chunks) and b & 0x80:
                chunk = content.chunk(request_id, other)
                proof, data = list(chunk.proof), chunk.data
            index = other
        elif how == 5:
            proof = proof[:-1] if proof else [bytes(32)]
        elif how == 6:
            proof = proof + [content.proofs[-1][0] if content.proofs[-1] else bytes(32)]
        elif how == 7:
            data = data[:-1] if data and (b & 1 or len(data) == CHUNK_SIZE) else data + b"!"
        elif how == 8:
            other = CONTENTS[b % len(CONTENTS)]
            i = b % len(other.chunks)
            proof, data, length, index = list(other.proofs[i]), other.chunks[i], other.length, i
        self.send_chunk(peer_id, address, Chunk(
            request_id=request_id, length=length, index=index, proof=tuple(proof[:32]),
            data=data))

    def step(self) -> None:
        ops, node = self.ops, self.node
        op = ops.byte() % OP_COUNT
        if op == OP_RAW:
            peer_id, address = self.peer()
            self.receive(peer_id, address, ops.blob())
        elif op == OP_REQUEST:
            peer_id, address = self.peer()
            for _ in range(1 + ops.byte() % 4):
                request = Request(request_id=ops.byte(), content_id=self.content_id(),
                                  index=INDEXES[ops.byte() % len(INDEXES)])
                self.receive(peer_id, address, request.encode())
        elif op == OP_CONTROL:
            peer_id, address = self.peer()
            b = ops.byte()
            mine = [rid for (p, rid) in self.asked if p == peer_id]
            rid = mine[ops.byte() % len(mine)] if mine and b & 1 else ops.byte()
            if b & 2:
                self.receive(peer_id, address, Cancel(request_id=rid).encode())
            else:
                reason = RefuseReason(1 + (b >> 2) % 4)
                wait = (0, 1, 500, 3_000, 0xFFFFFFFF)[(b >> 4) % 5]
                self.receive(peer_id, address, Refuse(request_id=rid, reason=reason,
                                                      retry_after_ms=wait).encode())
        elif op == OP_ANSWER:
            if not self.asked:
                return
            keys = list(self.asked)
            to, rid = keys[ops.byte() % len(keys)]
            content_id, index = self.asked[(to, rid)]
            b = ops.byte()
            sender = to if b < 0xE0 else PEER_IDS[b % len(PEER_IDS)]
            address = ADDRESSES[PEER_IDS.index(sender)] if sender in PEER_IDS else None
            how = 0 if b < 0x60 else b % 9
            for _ in range(1 + (b >= 0xD0)):   # now and then twice
                self.answer(sender, address, rid, content_id, index, how)
        elif op == OP_UNSOLICITED:
            peer_id, address = self.peer()
            content = CONTENTS[ops.byte() % len(CONTENTS)]
            rid = ops.byte() << 16 | ops.byte()
            # (A small id may be one the node has out: a guess, checked as an answer.)
            self.send_chunk(peer_id, address, content.chunk(rid, ops.byte() % len(content.chunks)))
        elif op == OP_MUTATED:
            peer_id, address = self.peer()
            b = ops.byte()
            content = CONTENTS[(2, 3, 5)[b % 3]]   # small chunks: edits reach their data
            original = (Request(request_id=b, content_id=self.content_id(), index=b % 3),
                        content.chunk(b, 0), Cancel(request_id=b),
                        Refuse(request_id=b, reason=RefuseReason.BUSY, retry_after_ms=9))[
                (b >> 2) % 4].encode()
            self.receive(peer_id, address, ops.mutate(original, insert=40, overwrite=8))
        elif op == OP_TIME:
            b = ops.byte()
            timer = node.get_timer()
            if b < 0x60 and timer is not None:
                self.now = max(self.now, timer)
            else:
                self.now += (0.0, 0.01, 0.2, 0.5, 1.0, 2.0, 3.5, 7.0, 31.0)[b % 9]
            self.handle_timer()
        elif op == OP_APP:
            self.app()
        elif op == OP_PROVIDERS:
            keys = sorted(self.finding_keys)
            b = ops.byte()
            key = keys[b % len(keys)] if keys and b < 0xF0 else self.content_id()
            self.finding_keys.discard(key)
            node.providers_found(key, self.providers(), now=self.now)
        elif op == OP_LINK:
            b = ops.byte()
            everyone = PEER_IDS + STRANGERS
            peer_id = everyone[b % len(everyone)]
            address = (ADDRESSES + STRANGER_ADDRESSES)[b % len(everyone)]
            kind = (b >> 3) % 3
            self.connecting.pop(peer_id, None)
            if kind == 0:
                node.peer_linked(peer_id, address, now=self.now)
            else:
                node.peer_unlinked(peer_id, now=self.now, unreachable=kind == 2)
        elif op == OP_HOST:
            self.host()
        elif op == OP_BURST:
            peer_id, address = self.peer()
            request = Request(request_id=ops.byte(), content_id=self.content_id(),
                              index=ops.byte() % 3)
            for _ in range(ops.byte() % 40):
                self.receive(peer_id, address, request.encode())
        else:
            peer_id, address = self.peer()
            for (to, rid), (content_id, index) in list(self.asked.items()):
                if to == peer_id and rid in node._requests:
                    self.answer(peer_id, address, rid, content_id, index, 0)

    def providers(self) -> list[tuple[bytes, object]]:
        out = []
        for _ in range(self.ops.byte() % 6):
            b = self.ops.byte()
            kind = b % 4
            if kind <= 1:
                i = (b >> 2) % len(PEER_IDS)
                out.append((PEER_IDS[i], ADDRESSES[i]))
            elif kind == 2:
                i = (b >> 2) % len(STRANGERS)
                out.append((STRANGERS[i], STRANGER_ADDRESSES[i]))
            else:
                out.append((OWN_ID, ("127.0.0.1", 1)))
        return out

    def handle_timer(self) -> None:
        self.node.handle_timer(now=self.now)
        # The host's round after a timer runs the DHT actions (an announcement
        # waiting for its retry is due from them, not from the timer).
        self.dht_round(answer=False)
        timer = self.node.get_timer()
        if timer is not None and not timer > self.now:
            raise AssertionError(f"get_timer() = {timer} after handle_timer(now={self.now})")

    def dht_round(self, *, answer: bool, stored: bool = True) -> None:
        for action, key in self.node.dht_actions():
            if action not in ("provide", "stop_providing", "find_providers"):
                raise AssertionError(f"DHT action {action}")
            if action == "find_providers":
                if key not in {r.content_id for r, *_ in self.retrievals.values()}:
                    raise AssertionError(f"find_providers for {key.hex()[:8]}, never retrieved")
                self.finding_keys.add(key)
            elif action == "provide":
                if not self.store.has(key):
                    raise AssertionError(f"announces {key.hex()[:8]}, which it does not have")
                if answer:
                    self.node.provided(key, now=self.now, stored=stored)

    def app(self) -> None:
        ops, node = self.ops, self.node
        b = ops.byte()
        kind = b % 6
        if kind <= 2:
            content_id = self.content_id()
            if b & 0x80:
                content_id = content_id[:31]
            whole = kind != 2
            first, last = RANGES[ops.byte() % len(RANGES)] if not whole else (0, None)
            full = len(node._retrievals) >= self.config.max_retrievals
            try:
                retrieval = node.retrieve(content_id, now=self.now, provide=bool(b & 0x40),
                                          whole=whole, first=first, last=last)
            except ValueError:
                if len(content_id) == 32:
                    raise
                return
            except StoreFullError:
                if not full:
                    raise
                return
            if len(content_id) != 32 or full:
                raise AssertionError(f"retrieve of {len(content_id)} bytes (full: {full}) "
                                     "did not raise")
            self.retrievals[retrieval.id] = (retrieval, whole, first, last)
        elif kind == 3:
            ids = sorted(self.retrievals)
            if ids:
                node.cancel(ids[ops.byte() % len(ids)], now=self.now)
            node.cancel(12345, now=self.now)
        elif kind == 4:
            content_id = self.content_id()
            try:
                node.publish(content_id)
            except KeyError:
                if self.store.has(content_id):
                    raise
        else:
            node.unpublish(self.content_id())

    def host(self) -> None:
        ops, node = self.ops, self.node
        kind = ops.byte() % 6
        if kind == 0:
            peer_id, _ = self.peer()
            data = node.pop_output(peer_id)
            if data is not None:
                self.check_output(peer_id, data)
                if ops.byte() & 1:
                    node.push_back(peer_id, data)
                    self.forget_output(peer_id, data)
        elif kind == 1:
            for peer_id in node.output_peers():
                while (data := node.pop_output(peer_id)) is not None:
                    self.check_output(peer_id, data)
        elif kind == 2:
            for peer_id, address in node.connects_wanted():
                if peer_id == OWN_ID:
                    raise AssertionError("asked to connect to itself")
                b = ops.byte()
                if b % 3 == 0:
                    node.peer_linked(peer_id, address, now=self.now)
                elif b % 3 == 1:
                    node.peer_unlinked(peer_id, now=self.now, unreachable=True)
                else:
                    self.connecting[peer_id] = address
        elif kind == 3:
            self.dht_round(answer=True, stored=bool(ops.byte() & 1))
        elif kind == 4:
            banned = node.take_banned()
            # Anyone who sent something may be banned: a stranger found by a
            # lookup answers requests too.
            if not set(banned) <= set(PEER_IDS + STRANGERS):
                raise AssertionError(f"take_banned gave {[p.hex()[:8] for p in banned]}")
        else:
            # A lookup's answer nobody asked for (late, or for another key).
            node.providers_found(self.content_id(), self.providers(), now=self.now)

    def check_output(self, peer_id: bytes, data: bytes) -> None:
        message = decode(data)   # raises on anything the node should never have sent
        node = self.node
        kind = type(message)
        if kind is Request:
            entry = node._requests.get(message.request_id)
            if entry is not None:
                retrieval, to, index = entry
                if to != peer_id or index != message.index:
                    raise AssertionError("a REQUEST went out other than it was recorded")
                if peer_id in retrieval.bad:
                    self.fail("request_to_bad", f"REQUEST {message.request_id} to a provider "
                              f"retrieval {retrieval.id} found bad")
                if node.server.is_banned(peer_id, self.now):
                    self.fail("request_to_banned", f"REQUEST {message.request_id} to a peer "
                              "the node banned (its answers are dropped unread)")
            self.asked[(peer_id, message.request_id)] = (message.content_id, message.index)
            if len(self.asked) > 512:
                del self.asked[next(iter(self.asked))]
        elif kind is Chunk:
            asked = self.requested.get((peer_id, message.request_id), ())
            for content_id, index in asked:
                if index != message.index:
                    continue
                try:
                    verify_chunk(content_id, message.length, index, message.data,
                                 list(message.proof))
                except ProofError:
                    continue
                return
            raise AssertionError(f"served a CHUNK that is not the genuine chunk asked for: "
                                 f"{message!r}")

    def forget_output(self, peer_id: bytes, data: bytes) -> None:
        """A message pushed back was not written after all."""
        message = decode(data)
        if type(message) is Request:
            self.asked.pop((peer_id, message.request_id), None)

    def run(self) -> None:
        for _ in range(MAX_OPS):
            if not self.ops.more():
                break
            self.step()
            check(self)
        drain(self)


# -- checks ------------------------------------------------------------------------------------


def check_events(run: Run) -> None:
    node, store = run.node, run.store
    while (event := node.next_event()) is not None:
        kind = type(event)
        info = run.retrievals.get(event.retrieval_id)
        if info is None:
            raise AssertionError(f"event of a retrieval never started: {event!r}")
        retrieval, whole, first, last = info
        if event.retrieval_id in run.ended:
            raise AssertionError(f"event after the retrieval ended: {event!r}")
        if event.content_id != retrieval.content_id:
            raise AssertionError(f"event of another content: {event!r}")
        content = BY_ID.get(event.content_id)
        if kind is ContentProgress:
            if not 0 <= event.done_bytes <= max(event.total_bytes, 0) and event.total_bytes:
                raise AssertionError(f"progress past the end: {event!r}")
        elif kind is ContentProviderDropped:
            if event.reason == "bad_chunk":
                if event.provider not in run.liars.get(event.retrieval_id, ()):
                    raise AssertionError(f"an honest provider dropped as bad: {event!r}")
                run.dropped_bad += 1
        elif kind is ContentRetrieved:
            run.ended.add(event.retrieval_id)
            if content is None:
                raise AssertionError(f"retrieved content nobody has: {event!r}")
            if event.length != content.length:
                raise AssertionError(f"retrieved with length {event.length}: {event!r}")
            if whole:
                if not store.has(content.id) or store.read(content.id) != content.data:
                    raise AssertionError(f"retrieved, and the store does not hold it: {event!r}")
                run.retrieved += 1
            else:
                end = content.length if last is None else min(last, content.length)
                for index in range(first // CHUNK_SIZE, (end - 1) // CHUNK_SIZE + 1) \
                        if first < end else ():
                    if retrieval.sink.read_chunk(index) != content.chunks[index]:
                        raise AssertionError(f"range retrieved, chunk {index} is not the "
                                             f"genuine one: {event!r}")
                run.retrieved_ranges += 1
        elif kind is ContentRetrievalFailed:
            run.ended.add(event.retrieval_id)
            if event.reason not in ("no_providers", "store_full", "cancelled"):
                raise AssertionError(f"failed for an unknown reason: {event!r}")
        else:
            raise AssertionError(f"unexpected event {event!r}")


def check_store(run: Run) -> None:
    store = run.store
    for content_id, partial in store._partials.items():
        content = BY_ID.get(content_id)
        if content is None:
            raise AssertionError(f"a partial of content nobody has: {content_id.hex()[:8]}")
        for index, leaf in partial._leaves.items():
            if leaf != content.tree.leaves[index]:
                raise AssertionError(f"partial chunk {index} recorded with a wrong leaf")
            offset = index * CHUNK_SIZE
            data = store._read_partial_data(partial, offset, len(content.chunks[index]))
            if data != content.chunks[index]:
                raise AssertionError(f"partial chunk {index} holds bytes that are not genuine")
    for content_id in store.entries():
        if content_id in run.entries_checked:
            continue
        content = BY_ID.get(content_id)
        if content is None or store.read(content_id) != content.data:
            raise AssertionError(f"the store holds content {content_id.hex()[:8]} wrongly")
        run.entries_checked.add(content_id)
    for retrieval in run.node.retrievals():
        if isinstance(retrieval.sink, RangeSink):
            content = BY_ID.get(retrieval.content_id)
            for index, data in retrieval.sink._chunks.items():
                if content is None or data != content.chunks[index]:
                    raise AssertionError(f"a range sink holds a chunk {index} not genuine")


def check_node(run: Run) -> None:
    node, config = run.node, run.config
    for name, value in node.stats.items():
        if value < 0:
            raise AssertionError(f"statistic {name} = {value}")
    timer = node.get_timer()
    if timer is not None and not (isinstance(timer, float) and math.isfinite(timer)):
        raise AssertionError(f"get_timer() = {timer!r}")
    if len(node._retrievals) > config.max_retrievals:
        raise AssertionError(f"{len(node._retrievals)} retrievals running")
    for peer_id, requester in node.server._peers.items():
        if len(requester.queue) > config.max_requests_per_peer:
            raise AssertionError(f"{len(requester.queue)} requests queued for one peer")
    if node.server.serving_peers() > config.max_serving_peers:
        raise AssertionError(f"{node.server.serving_peers()} serving peers")
    for peer_id, peer in node._peers.items():
        if any(data[0] == MessageType.REFUSE for data in peer.control) or \
                len(peer.refusals) > config.max_queued_refusals:
            raise AssertionError(f"{len(peer.refusals)} refusals queued for one peer "
                                 f"(max_queued_refusals {config.max_queued_refusals})")
    for retrieval in node.retrievals():
        for peer_id in retrieval.providers:
            if peer_id in retrieval.bad:
                run.fail("request_to_bad", f"retrieval {retrieval.id} uses a bad provider")
        if any(peer_id in retrieval.bad for peer_id, _ in retrieval.spares):
            raise AssertionError("a bad provider waits as a spare")
        if OWN_ID in retrieval.providers or any(p == OWN_ID for p, _ in retrieval.spares):
            raise AssertionError("the node is a provider of its own retrieval")
    for request_id, (retrieval, peer_id, _) in node._requests.items():
        if peer_id in retrieval.bad:
            run.fail("request_to_bad", f"request {request_id} open at a bad provider")


def check(run: Run) -> None:
    check_events(run)
    check_store(run)
    check_node(run)


def drain(run: Run) -> None:
    """The program is over and every peer answers honestly: the host writes
    everything, answers every lookup with every peer (or the first only), connects everyone and
    every REQUEST gets its genuine chunk (or NOT_FOUND). Every retrieval must
    end within a bounded time."""
    node, config = run.node, run.config
    deadline = run.now + 4 * config.provider_lookups * (
        config.stall_timeout + config.lookup_backoff * 2 ** config.provider_lookups) \
        + config.max_busy_wait + 30.0
    for _ in range(2_000):
        moved = False
        run.dht_round(answer=True)
        for key in sorted(run.finding_keys):
            run.finding_keys.discard(key)
            holders = list(zip(PEER_IDS, ADDRESSES))[:1 if run.one_holder else None] \
                if key in BY_ID else []
            node.providers_found(key, holders, now=run.now)
            moved = True
        wanted = list(run.connecting.items()) + node.connects_wanted()
        run.connecting.clear()
        for peer_id, address in wanted:
            node.peer_linked(peer_id, address, now=run.now)
            moved = True
        for peer_id in node.output_peers():
            while (data := node.pop_output(peer_id)) is not None:
                run.check_output(peer_id, data)
                moved = True
                message = decode(data)
                if type(message) is not Request or peer_id not in PEER_IDS:
                    continue
                address = ADDRESSES[PEER_IDS.index(peer_id)]
                content = BY_ID.get(message.content_id)
                if content is None or message.index >= len(content.chunks):
                    run.receive(peer_id, address, message.refusal(
                        RefuseReason.NOT_FOUND).encode())
                else:
                    run.send_chunk(peer_id, address, content.chunk(message.request_id,
                                                                   message.index))
        check(run)
        if not node.retrievals():
            return
        if moved:
            continue
        timer = node.get_timer()
        if timer is None:
            stuck = node.retrievals()
            name = "retrieval_hangs"
            run.fail(name, f"{len(stuck)} retrievals wait for nothing: no timer, no output, "
                     "no lookup")
            return
        if timer > deadline:
            raise AssertionError(f"a retrieval still runs at {timer:.1f} s")
        run.now = max(run.now, timer)
        run.handle_timer()
        check(run)
    raise AssertionError("the drain keeps moving")


def run_input(data: bytes, *, strict: bool = False) -> None:
    """The whole invariant for one fuzz input; raises AssertionError (or the
    engine's own exception) on a violation. ``strict`` lets no known finding
    through (:data:`KNOWN_FINDINGS`)."""
    if not data:
        return
    Run(data, strict=strict).run()
