"""The content hash tree, ``stt_proto.content.tree``.

The byte-exact vectors live in ``docs/protocol.md`` section 11.1 and are read
from there, so the document and the code cannot drift apart. An independent,
recursive implementation of the tree written here from the specification
(RFC 6962's definition, straight ``hashlib`` calls) must agree with the
module's bottom-up one on every root and proof. Every chunk of contents of
many sizes verifies with its proof, and every kind of damage is refused with
``ProofError``: flipped bits in the chunk, the proof and the id, a wrong index
or length, and proofs and chunks cut short or padded.
"""

from __future__ import annotations

import array
import hashlib
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.content import tree
from stt_proto.content.tree import (CHUNK_SIZE, HASH_SIZE, MAX_CHUNKS, MAX_LENGTH, HashTree,
                                    TreeBuilder, chunk_count, chunk_span, content_id_of,
                                    leaf_hash, parent_hash, proof_size, verify_chunk)
from stt_proto.errors import ContentError, ProofError

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

# -- the reference implementation -------------------------------------------------------


def ref_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = ref_split(len(leaves))
    return ref_hash(b"\x01" + ref_root(leaves[:k]) + ref_root(leaves[k:]))


def ref_proof(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962's PATH: the sibling subtrees' roots, deepest first."""
    if len(leaves) == 1:
        return []
    k = ref_split(len(leaves))
    if index < k:
        return ref_proof(index, leaves[:k]) + [ref_root(leaves[k:])]
    return ref_proof(index - k, leaves[k:]) + [ref_root(leaves[:k])]


def ref_content_id(length: int, leaves: list[bytes]) -> bytes:
    return ref_hash(b"\x02" + b"stt-content-v1" + length.to_bytes(8, "big") + ref_root(leaves))


def ref_tree_of_bytes(data: bytes) -> tuple[list[bytes], bytes]:
    chunks = [data[i:i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)] or [b""]
    leaves = [ref_hash(b"\x00" + chunk) for chunk in chunks]
    return leaves, ref_content_id(len(data), leaves)


def fake_leaves(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(32) for _ in range(n)]


# -- the vectors of docs/protocol.md 11.1 -------------------------------------------------

_SECTION = re.compile(r"^### 11\.1 The hash tree and content id\n(.*?)(?=^##? |^### |\Z)",
                      re.M | re.S)
_BLOCK = re.compile(r"^#### `(\w+)`\n\n```hex\n(.*?)^```", re.M | re.S)


def read_vectors(text: str) -> dict[str, list[bytes]]:
    """Name -> the hashes of each named hex block of section 11.1, one per line;
    ``#`` comments run to the end of the line."""
    sections = _SECTION.findall(text)
    assert len(sections) == 1, "docs/protocol.md must have exactly one section 11.1"
    vectors: dict[str, list[bytes]] = {}
    for name, body in _BLOCK.findall(sections[0]):
        assert name not in vectors, f"vector {name} appears twice"
        lines = [re.sub(r"#.*", "", line).strip() for line in body.splitlines()]
        vectors[name] = [bytes.fromhex(line) for line in lines if line]
    return vectors


VECTORS = read_vectors(DOC.read_text(encoding="utf-8"))
PATTERN = bytes(i % 251 for i in range(2 * CHUNK_SIZE + 5))


def one(name: str) -> bytes:
    (value,) = VECTORS[name]
    return value


def test_the_section_holds_exactly_the_known_vectors():
    assert set(VECTORS) == {"empty_leaf", "empty_content_id", "abc_leaf", "abc_content_id",
                            "pattern_leaves", "pattern_parent_01", "pattern_top",
                            "pattern_content_id", "pattern_proof_1"}
    assert all(len(h) == HASH_SIZE for hashes in VECTORS.values() for h in hashes)


def test_vectors_of_the_empty_content():
    empty = HashTree.of_bytes(b"")
    assert empty.leaves == (one("empty_leaf"),)
    assert empty.top == one("empty_leaf")
    assert empty.content_id == one("empty_content_id")
    assert empty.content_id == ref_tree_of_bytes(b"")[1]
    assert TreeBuilder().finish().content_id == one("empty_content_id")


def test_vectors_of_abc():
    abc = HashTree.of_bytes(b"abc")
    assert abc.leaves == (one("abc_leaf"),) and abc.top == one("abc_leaf")
    assert abc.content_id == one("abc_content_id")
    assert verify_chunk(one("abc_content_id"), 3, 0, b"abc", []) == one("abc_leaf")


def test_vectors_of_three_chunks():
    t = HashTree.of_bytes(PATTERN)
    assert list(t.leaves) == VECTORS["pattern_leaves"]
    assert parent_hash(t.leaves[0], t.leaves[1]) == one("pattern_parent_01")
    assert parent_hash(one("pattern_parent_01"), t.leaves[2]) == one("pattern_top")
    assert t.top == one("pattern_top")
    assert t.content_id == one("pattern_content_id")
    assert t.proof(1) == VECTORS["pattern_proof_1"]
    chunk1 = PATTERN[CHUNK_SIZE:2 * CHUNK_SIZE]
    assert verify_chunk(one("pattern_content_id"), len(PATTERN), 1, chunk1,
                        VECTORS["pattern_proof_1"]) == VECTORS["pattern_leaves"][1]
    # The document's vectors hold against the reference implementation too.
    leaves, content_id = ref_tree_of_bytes(PATTERN)
    assert leaves == VECTORS["pattern_leaves"] and content_id == one("pattern_content_id")
    assert ref_proof(1, leaves) == VECTORS["pattern_proof_1"]


# -- agreement with the reference ---------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 41))
def test_roots_and_proofs_agree_with_the_recursive_definition(n):
    leaves = fake_leaves(n, seed=n)
    t = HashTree(n * CHUNK_SIZE, leaves)
    assert t.top == ref_root(leaves)
    assert t.content_id == ref_content_id(n * CHUNK_SIZE, leaves)
    for i in range(n):
        assert t.proof(i) == ref_proof(i, leaves), (n, i)
        assert proof_size(n * CHUNK_SIZE, i) == len(ref_proof(i, leaves))


def fold(index: int, count: int, leaf: bytes, proof: list[bytes]) -> bytes:
    """The top a proof leads to, walking the recursive shape from the top down
    to find on which side each sibling hangs."""
    sides = []
    lo, hi = 0, count
    while hi - lo > 1:
        k = ref_split(hi - lo)
        sides.append(index < lo + k)  # True: we are the left child
        lo, hi = (lo, lo + k) if index < lo + k else (lo + k, hi)
    assert len(sides) == len(proof)
    node = leaf
    for we_are_left, sibling in zip(reversed(sides), proof):
        node = ref_hash(b"\x01" + node + sibling if we_are_left else b"\x01" + sibling + node)
    return node


def test_a_gigabyte_tree_hashes_each_parent_once_and_proofs_hash_nothing(monkeypatch):
    n = 4097  # 1 GiB and one chunk more: the deepest proof is 13 hashes, the last is 1
    leaves = fake_leaves(n, seed=7)
    calls = 0
    real_parent_hash = tree.parent_hash

    def counting(left, right):
        nonlocal calls
        calls += 1
        return real_parent_hash(left, right)

    monkeypatch.setattr(tree, "parent_hash", counting)
    t = HashTree(n * CHUNK_SIZE, leaves)
    assert calls == n - 1
    calls = 0
    proofs = {i: t.proof(i) for i in (0, 1, 2047, 2048, 4095, 4096)}
    assert calls == 0
    assert len(proofs[0]) == 13 and proofs[4096] == [ref_root(leaves[:4096])]
    for i, proof in proofs.items():
        assert fold(i, n, leaves[i], proof) == t.top


# -- round trips --------------------------------------------------------------------------

SIZES = [0, 1, 5, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE,
         3 * CHUNK_SIZE - 7, 4 * CHUNK_SIZE, 5 * CHUNK_SIZE, 7 * CHUNK_SIZE - 1,
         13 * CHUNK_SIZE - 100]


@pytest.mark.parametrize("size", SIZES)
def test_every_chunk_verifies_with_its_proof(size):
    data = random.Random(size).randbytes(size)
    t = HashTree.of_bytes(data)
    leaves, content_id = ref_tree_of_bytes(data)
    assert list(t.leaves) == leaves and t.content_id == content_id
    assert t.length == size and len(t.leaves) == chunk_count(size)
    for i in range(chunk_count(size)):
        offset, n = chunk_span(size, i)
        chunk = data[offset:offset + n]
        assert len(t.proof(i)) == proof_size(size, i)
        assert verify_chunk(t.content_id, size, i, chunk, t.proof(i)) == t.leaves[i]
        # Any bytes-like chunk and proof, including views into a bigger buffer.
        assert verify_chunk(bytearray(t.content_id), size, i, memoryview(data)[offset:offset + n],
                            [bytearray(h) for h in t.proof(i)]) == t.leaves[i]
    # The tree rebuilt from its leaves alone, as a store does, is the same tree.
    again = HashTree(size, t.leaves)
    assert again.content_id == t.content_id
    indices = range(len(t.leaves))
    assert [again.proof(i) for i in indices] == [t.proof(i) for i in indices]


def test_chunk_geometry():
    assert chunk_count(0) == 1 and chunk_span(0, 0) == (0, 0)
    assert chunk_count(1) == 1 and chunk_span(1, 0) == (0, 1)
    assert chunk_count(CHUNK_SIZE) == 1 and chunk_span(CHUNK_SIZE, 0) == (0, CHUNK_SIZE)
    assert chunk_count(CHUNK_SIZE + 1) == 2 and chunk_span(CHUNK_SIZE + 1, 1) == (CHUNK_SIZE, 1)
    assert chunk_count(MAX_LENGTH) == MAX_CHUNKS
    assert chunk_span(MAX_LENGTH, MAX_CHUNKS - 1) == (MAX_LENGTH - CHUNK_SIZE, CHUNK_SIZE)
    assert proof_size(MAX_LENGTH, 0) == 32 and proof_size(MAX_LENGTH, MAX_CHUNKS - 1) == 32
    assert proof_size(0, 0) == 0 and proof_size(5 * CHUNK_SIZE, 4) == 1
    for bad in (-1, MAX_LENGTH + 1):
        with pytest.raises(ValueError):
            chunk_count(bad)
        with pytest.raises(ValueError):
            content_id_of(bad, bytes(32))
        with pytest.raises(ValueError):
            HashTree(bad, [bytes(32)])
    for length, index in ((0, 1), (0, -1), (CHUNK_SIZE, 1), (CHUNK_SIZE + 1, 2)):
        with pytest.raises(IndexError):
            chunk_span(length, index)
        with pytest.raises(IndexError):
            proof_size(length, index)
    with pytest.raises(IndexError):
        HashTree.of_bytes(b"x").proof(1)
    with pytest.raises(IndexError):
        HashTree.of_bytes(b"x").proof(-1)
    with pytest.raises(ValueError):
        content_id_of(0, bytes(31))


def test_a_tree_must_have_one_32_byte_leaf_per_chunk():
    with pytest.raises(ValueError):
        HashTree(0, [])
    with pytest.raises(ValueError):
        HashTree(CHUNK_SIZE + 1, [bytes(32)])
    with pytest.raises(ValueError):
        HashTree(CHUNK_SIZE, [bytes(32), bytes(32)])
    with pytest.raises(ValueError):
        HashTree(1, [bytes(33)])
    t = HashTree(2 * CHUNK_SIZE, [bytearray(32), memoryview(bytes(range(32)))])
    assert t.leaves == (bytes(32), bytes(range(32))) and all(type(x) is bytes for x in t.leaves)


def test_leaf_hash_takes_any_bytes_like():
    numbers = array.array("i", range(100))
    assert leaf_hash(numbers) == leaf_hash(numbers.tobytes()) == leaf_hash(bytearray(numbers))
    assert leaf_hash(memoryview(numbers)) == ref_hash(b"\x00" + numbers.tobytes())


# -- the streaming builder ----------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(length=st.sampled_from([0, 1, 100, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1,
                               2 * CHUNK_SIZE, 3 * CHUNK_SIZE + 17]),
       cuts=st.lists(st.integers(min_value=0, max_value=3 * CHUNK_SIZE + 17), max_size=12),
       seed=st.integers(min_value=0, max_value=2**32))
def test_any_split_gives_the_same_tree(length, cuts, seed):
    data = random.Random(seed).randbytes(length)
    bounds = sorted({0, length, *(c for c in cuts if c <= length)})
    builder = TreeBuilder()
    for kind, (a, b) in enumerate(zip(bounds, bounds[1:])):
        piece = data[a:b]
        builder.update((bytes, bytearray, memoryview)[kind % 3](piece))
        builder.update(b"")  # empty updates change nothing
        assert builder.length == b
    built = builder.finish()
    whole = HashTree.of_bytes(data)
    assert built.content_id == whole.content_id and built.leaves == whole.leaves
    assert built.length == length


def test_builder_keeps_no_view_of_its_input_and_finishes_once():
    buffer = bytearray(random.Random(3).randbytes(3 * CHUNK_SIZE + 7))
    expected = HashTree.of_bytes(bytes(buffer))
    builder = TreeBuilder()
    builder.update(buffer)
    # A bytearray cannot be resized while a view of it is alive: the builder
    # holds none, so it has not kept any chunk of the input around.
    buffer.extend(b"more")
    assert builder.finish().content_id == expected.content_id
    with pytest.raises(RuntimeError):
        builder.finish()
    with pytest.raises(RuntimeError):
        builder.update(b"x")


def test_builder_refuses_more_than_the_largest_content():
    builder = TreeBuilder()
    builder.length = MAX_LENGTH - 1  # as if a petabyte less one had been fed
    with pytest.raises(ValueError):
        builder.update(b"ab")
    assert builder.length == MAX_LENGTH - 1


# -- damage is refused --------------------------------------------------------------------


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


FIVE = random.Random(5).randbytes(4 * CHUNK_SIZE + 1000)  # 5 chunks, the last 1,000 bytes
FIVE_TREE = HashTree.of_bytes(FIVE)


def five_chunk(i: int) -> bytes:
    offset, size = chunk_span(len(FIVE), i)
    return FIVE[offset:offset + size]


def refused(content_id, length, index, data, proof) -> bool:
    with pytest.raises(ProofError):
        verify_chunk(content_id, length, index, data, proof)
    return True


@pytest.mark.parametrize("index", range(5))
def test_every_flipped_bit_of_a_proof_is_caught(index):
    proof = FIVE_TREE.proof(index)
    chunk = five_chunk(index)
    for k, h in enumerate(proof):
        for bit in range(8 * HASH_SIZE):
            damaged = proof[:k] + [flip(h, bit)] + proof[k + 1:]
            assert refused(FIVE_TREE.content_id, len(FIVE), index, chunk, damaged)


def test_every_flipped_bit_of_the_content_id_is_caught():
    chunk, proof = five_chunk(4), FIVE_TREE.proof(4)
    for bit in range(8 * HASH_SIZE):
        assert refused(flip(FIVE_TREE.content_id, bit), len(FIVE), 4, chunk, proof)


@pytest.mark.parametrize("index", range(5))
def test_flipped_bits_of_a_chunk_are_caught(index):
    chunk, proof = five_chunk(index), FIVE_TREE.proof(index)
    rng = random.Random(index)
    bits = {0, 7, 8 * len(chunk) - 1, *(rng.randrange(8 * len(chunk)) for _ in range(40))}
    for bit in sorted(bits):
        assert refused(FIVE_TREE.content_id, len(FIVE), index, flip(chunk, bit), proof)


def test_a_wrong_index_is_caught():
    for index in range(5):
        for other in range(-1, 6):
            if other != index:
                assert refused(FIVE_TREE.content_id, len(FIVE), other, five_chunk(index),
                               FIVE_TREE.proof(index))
    # Equal chunks at two places are both what the content holds there.
    same = bytes(2 * CHUNK_SIZE)
    t = HashTree.of_bytes(same)
    for index in (0, 1):
        assert verify_chunk(t.content_id, len(same), index, same[:CHUNK_SIZE], t.proof(index))


def test_a_wrong_length_is_caught():
    chunk0, proof0 = five_chunk(0), FIVE_TREE.proof(0)
    # Lengths that keep chunk 0's size and proof shape: only the id can tell.
    for length in (len(FIVE) - 1, len(FIVE) + 1, 4 * CHUNK_SIZE + 1, 5 * CHUNK_SIZE,
                   6 * CHUNK_SIZE, 8 * CHUNK_SIZE):
        assert proof_size(length, 0) == len(proof0)
        assert refused(FIVE_TREE.content_id, length, 0, chunk0, proof0)
    # The last chunk's size follows from the length.
    for length in (len(FIVE) - 1, len(FIVE) + 1):
        assert refused(FIVE_TREE.content_id, length, 4, five_chunk(4), FIVE_TREE.proof(4))
    for length in (-1, -len(FIVE), MAX_LENGTH + 1, 2**64, 2**200):
        assert refused(FIVE_TREE.content_id, length, 0, chunk0, proof0)


def test_cut_or_padded_proofs_and_chunks_are_caught():
    for index in range(5):
        chunk, proof = five_chunk(index), FIVE_TREE.proof(index)
        cid = FIVE_TREE.content_id
        assert refused(cid, len(FIVE), index, chunk, proof[:-1])
        assert refused(cid, len(FIVE), index, chunk, proof[1:])
        assert refused(cid, len(FIVE), index, chunk, proof + [bytes(32)])
        assert refused(cid, len(FIVE), index, chunk, [bytes(32)] + proof)
        assert refused(cid, len(FIVE), index, chunk, [])
        assert refused(cid, len(FIVE), index, chunk, [h[:-1] for h in proof])
        assert refused(cid, len(FIVE), index, chunk, [h + b"\x00" for h in proof])
        assert refused(cid, len(FIVE), index, chunk[:-1], proof)
        assert refused(cid, len(FIVE), index, chunk + b"\x00", proof)
        assert refused(cid, len(FIVE), index, b"", proof)
    # A one-chunk content takes no proof at all.
    abc = HashTree.of_bytes(b"abc")
    assert refused(abc.content_id, 3, 0, b"abc", [abc.top])
    assert refused(abc.content_id, 3, 0, b"ab", [])


def test_a_leaf_cannot_pass_for_a_parent():
    # A 64-byte "content" made of two child hashes has the parent's bytes as
    # its chunk, but a leaf hash, so it gets a different top and id.
    leaves = fake_leaves(2)
    two = HashTree(2 * CHUNK_SIZE, leaves)
    fake = HashTree.of_bytes(leaves[0] + leaves[1])
    assert fake.top != two.top and fake.content_id != two.content_id
    assert refused(two.content_id, 2 * CHUNK_SIZE, 0, leaves[0] + leaves[1], [])
    assert refused(two.content_id, 64, 0, leaves[0] + leaves[1], [])


@pytest.mark.parametrize("args", [
    ("not bytes", 3, 0, b"abc", []),
    (None, 3, 0, b"abc", []),
    (10**12, 3, 0, b"abc", []),
    (bytes(32), "3", 0, b"abc", []),
    (bytes(32), 3.0, 0, b"abc", []),
    (bytes(32), 3, None, b"abc", []),
    (bytes(32), 3, 0, "abc", []),
    (bytes(32), 3, 0, None, []),
    (bytes(32), 3, 0, memoryview(b"aabbcc")[::2], []),
    (bytes(32), 2 * CHUNK_SIZE, 0, bytes(CHUNK_SIZE), None),
    (bytes(32), 2 * CHUNK_SIZE, 0, bytes(CHUNK_SIZE), 5),
    (bytes(32), 2 * CHUNK_SIZE, 0, bytes(CHUNK_SIZE), ["x" * 32]),
    (bytes(32), 2 * CHUNK_SIZE, 0, bytes(CHUNK_SIZE), [None]),
    (bytes(32), 2 * CHUNK_SIZE, 0, bytes(CHUNK_SIZE), [32]),
])
def test_the_wrong_kind_of_value_is_a_proof_error_too(args):
    with pytest.raises(ProofError):
        verify_chunk(*args)


@settings(max_examples=300, deadline=None)
@given(content_id=st.binary(max_size=40),
       length=st.one_of(st.integers(min_value=-5, max_value=5 * CHUNK_SIZE),
                        st.integers(min_value=-2**70, max_value=2**70)),
       index=st.one_of(st.integers(min_value=-2, max_value=6), st.integers()),
       data=st.one_of(st.binary(max_size=64), st.integers(0, 3).map(lambda k: bytes(k * 4096))),
       proof=st.lists(st.binary(min_size=30, max_size=34), max_size=40))
def test_verify_raises_nothing_but_proof_error(content_id, length, index, data, proof):
    try:
        leaf = verify_chunk(content_id, length, index, data, proof)
    except ProofError as exc:
        assert isinstance(exc, ContentError) and isinstance(exc, ValueError)
    else:  # only a real chunk of that id gets through
        assert leaf == leaf_hash(data)
        assert content_id == HashTree.of_bytes(data).content_id and length == len(data)


def test_verify_of_hashes_that_happen_to_fit():
    # Random inputs almost never reach the final comparison: these do, with
    # everything the right size, and fail there.
    assert refused(bytes(32), 2 * CHUNK_SIZE + 1, 2, b"\x01", [bytes(32)])
    assert refused(bytes(32), 0, 0, b"", [])
