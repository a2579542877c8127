"""The hash tree over a content's chunks, and its content id (``docs/protocol.md`` 11.1).

A content is cut into chunks of :data:`CHUNK_SIZE` bytes (the last one may be
shorter; an empty content is one empty chunk). Each chunk has a leaf hash, the
leaves are joined pairwise into a binary tree, and the content id commits to
the tree's top hash and the content's length. With the id and the length, any
chunk can be checked on its own, whichever provider sent it, given the
``log2(n)`` sibling hashes on its path to the top (its *proof*).

Theory of operation
-------------------
**Shape.** The tree is RFC 6962's (Certificate Transparency): a run of ``n``
leaves is the leaf itself when ``n == 1``, and otherwise a parent whose left
child is the full tree of the first ``k`` leaves, ``k`` the largest power of
two below ``n``, and whose right child is the tree of the rest. Every
left-hand subtree is perfect, so any chunk count works without padding leaves,
and the shape depends on ``n`` alone. Built bottom-up it is the same tree:
each level pairs its nodes left to right and carries a last unpaired node up
unchanged (:class:`HashTree` builds it that way; the tests check it against
the recursive definition). A proof is the sibling of each node on the leaf's
path that has one, bottom-up; a carried-up node has none, so in a tree of
``n`` leaves some proofs are shorter than ``ceil(log2(n))`` (with 5 leaves,
the last leaf's proof is one hash).

**Domain separation.** H is SHA-256. Leaves hash ``0x00 || chunk``, parents
``0x01 || left || right``, and the content id ``0x02 || b"stt-content-v1" ||
length (u64) || top``. A leaf can therefore never pass for a parent (the
second-preimage attack on plain Merkle trees, where a 64-byte chunk equal to
two child hashes would verify as an interior node), and neither can stand for
an id. The label makes the id name this version of the tree (its hash,
chunk size and layout) and costs nothing: the id's input is 55 bytes, still
one SHA-256 block. A later version gets its own label, so none of its ids can
be taken for one of these, even for a content whose tree comes out the same
(a one-chunk content, under a larger chunk size).

**Why the id commits to the length.** From the length follow the chunk count,
hence the tree's shape, every chunk's size, and how many hashes each proof
holds and on which side each hangs. A retriever needs the length before it
can plan anything (which chunks to ask for, how big the file is), and it can
only learn it from a provider; because the id commits to it, a lie about the
length fails the check of the very first chunk, from whichever provider, and
the verifier never has to guess between shapes: a proof of the wrong length
is refused before any hashing, and no chunk can be taken for a full one when
it is the short last one or the other way round. ``CHUNK`` messages carry
the length, so this costs 8 bytes per chunk and nothing to look up.

**Why SHA-256.** A retriever verifies every chunk on the core that receives
it, so the hash's speed caps a retrieval: receiving at ``B`` and hashing at
``H`` on one core give at most ``1 / (1/B + 1/H)``. Measured with hashlib on
one core of the reference machine (a Xeon with SHA extensions; 256 KiB
inputs, best of 7 rounds of 50 MiB), the cap taken against the 631 MB/s of
the bulk stream in a run of ``bench/bench_content.py`` (where content reached
279 MB/s, the hash being one cost among several):

======================================  =========  ==================
hash                                    rate       cap on a retrieval
======================================  =========  ==================
SHA-256, with the SHA extensions        2.02 GB/s  0.76 of bulk
BLAKE2b-256 (needs no special opcodes)  1.10 GB/s  0.64 of bulk
SHA-256, without them                   0.57 GB/s  0.47 of bulk
======================================  =========  ==================

The last row tells OpenSSL not to use them (``OPENSSL_ia32cap=":~0x20000000"``),
as on a CPU that lacks them. x86 CPUs have them since AMD Zen (2017) and
Intel Goldmont (2016) and Ice Lake (2019), and most ARMv8 cores do (the
cryptography extension is optional there: a Raspberry Pi 4 lacks it). So
SHA-256 is the faster hash where STT will mostly run, and an older CPU pays
(0.57 against 1.10 GB/s): that is the trade taken. hashlib's SHA-256 is
OpenSSL's, which finds the extensions by itself.

**Why 256 KiB chunks.** The chunk is the unit of requesting, verifying,
storing and resuming, and each such unit costs a fixed amount of work in the
engine's Python path (a request, a reply message, a proof check, a store
write, bookkeeping): at 256 KiB a gigabyte is 4,096 chunks, so that fixed
cost is spread over enough bytes to disappear behind hashing and the
transport, where 16 KiB chunks would multiply it by 16. A proof is
``ceil(log2(n))`` 32-byte hashes per chunk: 384 bytes for a 1 GiB content
(0.15 % of a chunk) and at most 1,024 bytes at :data:`MAX_CHUNKS` (0.4 %).
Smaller chunks win elsewhere, so the size is a compromise: a killed
retriever re-fetches at most the one chunk it had in flight per provider
(a chunk is verified and written whole or not at all), and a retrieval can spread work
over several providers only once the content has several chunks (a 1 MiB
content has 4, enough for four providers at once). Larger chunks would make
both coarser and raise the retriever's memory per outstanding request.

Nothing here does I/O or keeps more than one chunk: :class:`TreeBuilder`
hashes a stream of any split into leaves as it goes.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Sequence

from stt_proto.errors import ProofError

__all__ = [
    "CHUNK_SIZE",
    "HASH_SIZE",
    "MAX_CHUNKS",
    "MAX_LENGTH",
    "chunk_count",
    "chunk_span",
    "leaf_hash",
    "parent_hash",
    "content_id_of",
    "proof_size",
    "verify_chunk",
    "HashTree",
    "TreeBuilder",
]

#: Bytes in each chunk but the last (a protocol constant: it fixes every content id).
CHUNK_SIZE = 262_144
#: Bytes in every hash: leaf, parent, top and content id.
HASH_SIZE = 32
#: The most chunks a content may have; a proof then holds at most 32 hashes.
MAX_CHUNKS = 2**32
#: The longest content, in bytes (1 PiB).
MAX_LENGTH = MAX_CHUNKS * CHUNK_SIZE

#: What the content id commits to besides the length and the top: this
#: version of the tree (the module docstring, "Domain separation").
_ID_LABEL = b"stt-content-v1"

# Hashers with their prefix already fed, to copy: ``copy()`` is cheaper than
# building a new object and feeding the prefix, for the 2n hashes of a big tree.
_LEAF = hashlib.sha256(b"\x00")
_PARENT = hashlib.sha256(b"\x01")
_ID = hashlib.sha256(b"\x02" + _ID_LABEL)


def _check_length(length: int) -> int:
    length = operator.index(length)
    if not 0 <= length <= MAX_LENGTH:
        raise ValueError(f"a content length must be in 0..{MAX_LENGTH}, not {length}")
    return length


def chunk_count(length: int) -> int:
    """How many chunks a content of ``length`` bytes has: at least one (an empty
    content is one empty chunk).

    Raises:
        ValueError: ``length`` is negative or above :data:`MAX_LENGTH`.
    """
    length = _check_length(length)
    return max(1, -(-length // CHUNK_SIZE))


def chunk_span(length: int, index: int) -> tuple[int, int]:
    """Where chunk ``index`` of a content of ``length`` bytes lies.

    Returns:
        ``(offset, size)`` in bytes; ``size`` is :data:`CHUNK_SIZE` but for the
        last chunk.

    Raises:
        ValueError: ``length`` is out of range.
        IndexError: ``index`` is not in ``0..chunk_count(length) - 1``.
    """
    count = chunk_count(length)
    index = operator.index(index)
    if not 0 <= index < count:
        raise IndexError(f"chunk {index} of a content of {count} chunks")
    offset = index * CHUNK_SIZE
    return offset, min(CHUNK_SIZE, length - offset)


def leaf_hash(chunk: bytes | bytearray | memoryview) -> bytes:
    """The leaf hash of one chunk: ``H(0x00 || chunk)``."""
    h = _LEAF.copy()
    h.update(chunk)
    return h.digest()


def parent_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: ``H(0x01 || left || right)``."""
    h = _PARENT.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def content_id_of(length: int, top: bytes) -> bytes:
    """The content id: ``H(0x02 || "stt-content-v1" || length as u64 big-endian || top)``.

    Raises:
        ValueError: ``length`` is out of range or ``top`` is not 32 bytes.
    """
    length = _check_length(length)
    if len(top) != HASH_SIZE:
        raise ValueError(f"a top hash is {HASH_SIZE} bytes, not {len(top)}")
    h = _ID.copy()
    h.update(length.to_bytes(8, "big"))
    h.update(top)
    return h.digest()


def _path(count: int, index: int) -> list[bool]:
    """For each level of a tree of ``count`` leaves, bottom-up, whether the node
    on ``index``'s path has a sibling there; only those levels give a proof hash.

    A level of ``size`` nodes pairs them left to right and carries an odd last
    one up alone, so the node ``i`` has a sibling ``i ^ 1`` when that is below
    ``size``, and the next level has ``ceil(size / 2)`` nodes.
    """
    levels = []
    while count > 1:
        levels.append(index ^ 1 < count)
        index >>= 1
        count = (count + 1) >> 1
    return levels


def proof_size(length: int, index: int) -> int:
    """How many hashes the proof of chunk ``index`` has (0 for a one-chunk content).

    Raises:
        ValueError: ``length`` is out of range.
        IndexError: ``index`` is not a chunk of that content.
    """
    chunk_span(length, index)
    return sum(_path(chunk_count(length), index))


def verify_chunk(
    content_id: bytes, length: int, index: int, data: bytes | bytearray | memoryview,
    proof: Sequence[bytes],
) -> bytes:
    """Check one chunk, as received from anyone, against the content id.

    ``length`` is the content's length as claimed with the chunk: the id
    commits to it, so a wrong one fails like a wrong chunk.

    Args:
        content_id: the 32-byte content id.
        length: the content's length in bytes.
        index: which chunk ``data`` claims to be.
        data: the chunk (bytes-like).
        proof: its sibling hashes, bottom-up, as :meth:`HashTree.proof` gives them.

    Returns:
        The chunk's leaf hash (worth keeping: a store rebuilds trees from leaves).

    Raises:
        ProofError: for every way the input can be wrong, and nothing else:
            length or index out of range, a chunk of the wrong size, a proof of
            the wrong number of hashes or with a hash not 32 bytes, or a
            computed content id that is not ``content_id``.
    """
    try:
        return _verify_chunk_untrusted(content_id, length, index, data, proof)
    except ProofError:
        raise
    except (TypeError, ValueError, IndexError, BufferError, OverflowError) as exc:
        # Values that are not even the right kind of thing (a str for a hash,
        # a non-contiguous buffer) come from the same untrusted message as the
        # wrong ones, and the caller handles both the same way.
        raise ProofError(f"malformed chunk or proof: {exc}") from None


def _verify_chunk_untrusted(
    content_id: bytes, length: int, index: int, data: bytes | bytearray | memoryview,
    proof: Sequence[bytes],
) -> bytes:
    length = operator.index(length)
    index = operator.index(index)
    if not 0 <= length <= MAX_LENGTH:
        raise ProofError(f"content length {length} out of range")
    count = chunk_count(length)
    if not 0 <= index < count:
        raise ProofError(f"chunk {index} of a content of {count} chunks")
    offset = index * CHUNK_SIZE
    size = min(CHUNK_SIZE, length - offset)
    view = memoryview(data)
    if view.nbytes != size:
        raise ProofError(f"chunk {index} is {size} bytes, not {view.nbytes}")
    levels = _path(count, index)
    hashes = list(proof)
    if len(hashes) != sum(levels):
        raise ProofError(f"the proof of chunk {index} has {sum(levels)} hashes, not {len(hashes)}")
    leaf = node = leaf_hash(view)
    proof_hashes = iter(hashes)
    position = index
    for has_sibling in levels:
        if has_sibling:
            sibling = memoryview(next(proof_hashes))
            if sibling.nbytes != HASH_SIZE:
                raise ProofError(f"a proof hash is {HASH_SIZE} bytes, not {sibling.nbytes}")
            node = parent_hash(sibling, node) if position & 1 else parent_hash(node, sibling)
        position >>= 1
    # bytes(memoryview(...)): a content id of the wrong kind raises TypeError
    # here instead of, for an int, allocating that many zero bytes.
    if bytes(memoryview(content_id)) != content_id_of(length, node):
        raise ProofError(f"chunk {index} does not match the content id")
    return leaf


class HashTree:
    """The whole tree of one content: every interior hash, computed once.

    Built from the content's length and its leaf hashes (a store keeps the
    leaves and rebuilds the tree), or from bytes with :meth:`of_bytes`, or by
    streaming with :class:`TreeBuilder`. Building costs ``n - 1`` parent
    hashes and keeps about ``2n`` hashes (8,192 for a GiB of content, well
    under a megabyte); :meth:`proof` then costs ``O(log n)``.

    Attributes:
        length: the content's length in bytes.
        leaves: the leaf hashes, one per chunk (a tuple of 32-byte ``bytes``).
        top: the root of the tree.
        content_id: :func:`content_id_of` ``(length, top)``.
    """

    __slots__ = ("length", "leaves", "top", "content_id", "_levels")

    def __init__(self, length: int, leaves: Sequence[bytes]) -> None:
        """
        Raises:
            ValueError: ``length`` is out of range, the number of leaves is not
                :func:`chunk_count` ``(length)``, or a leaf is not 32 bytes.
        """
        self.length = _check_length(length)
        count = chunk_count(self.length)
        leaves = tuple(bytes(leaf) for leaf in leaves)
        if len(leaves) != count:
            raise ValueError(f"a content of {self.length} bytes has {count} chunks, "
                             f"not {len(leaves)} leaves")
        for leaf in leaves:
            if len(leaf) != HASH_SIZE:
                raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(leaf)}")
        self.leaves = leaves
        # Bottom-up levels; each pairs the one below left to right and carries
        # an odd last node up as it is (the module docstring: RFC 6962's shape).
        levels = [leaves]
        level: Sequence[bytes] = leaves
        while len(level) > 1:
            upper = [parent_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) & 1:
                upper.append(level[-1])
            level = tuple(upper)
            levels.append(level)
        self._levels = tuple(levels)
        self.top = level[0]
        self.content_id = content_id_of(self.length, self.top)

    @classmethod
    def of_bytes(cls, data: bytes | bytearray | memoryview) -> HashTree:
        """The tree of a content held in memory."""
        builder = TreeBuilder()
        builder.update(data)
        return builder.finish()

    def proof(self, index: int) -> list[bytes]:
        """The proof of chunk ``index``: its sibling hashes from the leaf's level
        up to the top, as :func:`verify_chunk` takes them.

        Raises:
            IndexError: ``index`` is not a chunk of this content.
        """
        index = operator.index(index)
        if not 0 <= index < len(self.leaves):
            raise IndexError(f"chunk {index} of a content of {len(self.leaves)} chunks")
        hashes = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                hashes.append(level[sibling])
            index >>= 1
        return hashes

    def __repr__(self) -> str:
        return f"<HashTree {self.content_id.hex()} length={self.length} chunks={len(self.leaves)}>"


class TreeBuilder:
    """Hash a content as it streams by, in pieces of any size.

    ``update`` feeds the current chunk's hasher directly from the caller's
    buffer, so the builder holds no content bytes at all, only one leaf hash
    per finished chunk (128 KiB per GiB).

    Attributes:
        length: the bytes fed so far.
    """

    __slots__ = ("length", "_leaves", "_hasher", "_filled", "_finished")

    def __init__(self) -> None:
        self.length = 0
        self._leaves: list[bytes] = []
        self._hasher = _LEAF.copy()
        self._filled = 0  # bytes of the current chunk fed to _hasher
        self._finished = False

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes of the content; any split gives the same tree.

        Raises:
            ValueError: the content would exceed :data:`MAX_LENGTH` (nothing of
                ``data`` is taken then).
            RuntimeError: :meth:`finish` was already called.
        """
        if self._finished:
            raise RuntimeError("the tree is already finished")
        view = memoryview(data).cast("B")
        if self.length + len(view) > MAX_LENGTH:
            raise ValueError(f"a content may have at most {MAX_LENGTH} bytes")
        self.length += len(view)
        while view:
            take = min(CHUNK_SIZE - self._filled, len(view))
            self._hasher.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == CHUNK_SIZE:
                self._leaves.append(self._hasher.digest())
                self._hasher = _LEAF.copy()
                self._filled = 0

    def finish(self) -> HashTree:
        """The tree of everything fed so far (of the empty content if nothing was).

        Raises:
            RuntimeError: called twice.
        """
        if self._finished:
            raise RuntimeError("the tree is already finished")
        self._finished = True
        # A last partial chunk, or the one empty chunk of an empty content; a
        # length that is a whole number of chunks ends on a full leaf already.
        if self._filled or not self._leaves:
            self._leaves.append(self._hasher.digest())
        return HashTree(self.length, self._leaves)
