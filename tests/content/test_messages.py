"""The content message codec, ``stt_proto.content.messages``.

The byte-exact vectors live in ``docs/content-wire.md`` and are read from there,
so the document and the codec cannot drift apart. Hypothesis covers round trips
of every message type and decoding arbitrary and edited bytes (only
``DecodeError``, and whatever decodes re-encodes to the same bytes); every cut
and every single-byte change of each vector is tried exhaustively. A CHUNK's
data is checked to be a view of its input (no copy) when decoded from a view.
"""

from __future__ import annotations

import array
import dataclasses
import hashlib
import importlib
import importlib.util
import re
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stt_proto.content import messages as m
from stt_proto.content.messages import (Cancel, Chunk, Refuse, RefuseReason, Request, decode,
                                        encode_chunk_header)
from stt_proto.content.tree import CHUNK_SIZE, HASH_SIZE, verify_chunk
from stt_proto.errors import DecodeError, EncodeError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "content-wire.md"
FUZZ = ROOT / "fuzz"
if str(FUZZ) not in sys.path:
    sys.path.insert(0, str(FUZZ))

from _harness import Ops  # noqa: E402  (fuzz/, which needs no atheris)

ALL_TYPES = (Request, Chunk, Refuse, Cancel)

# -- the vectors of docs/content-wire.md -----------------------------------------------------

_BLOCK = re.compile(r"^#### `(\w+)`\n\n(?:[^`#\n][^\n]*\n\n)?```hex\n(.*?)^```", re.M | re.S)


def read_vectors(text: str) -> dict[str, bytes]:
    """Name -> bytes of every named hex block (a one-paragraph note may sit
    between the name and the block); ``#`` comments run to the end of the line."""
    pairs = [(name, bytes.fromhex(re.sub(r"#.*", "", body))) for name, body in _BLOCK.findall(text)]
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), f"a vector name appears twice in {names}"
    return dict(pairs)


DOC_TEXT = DOC.read_text(encoding="utf-8")
VECTORS = read_vectors(DOC_TEXT)

#: The vectors' content (docs/content-wire.md section 6): four chunks, the last "hello".
CONTENT = bytes(3 * CHUNK_SIZE) + b"hello"
REQUEST_ID = 70000


def _h(data: bytes) -> bytes:
    """The content hash as docs/protocol.md 11.1 defines it, written out here so
    that the vectors are checked independently of ``tree.py``."""
    return hashlib.sha256(data).digest()


ZERO_LEAF = _h(b"\x00" + bytes(CHUNK_SIZE))
HELLO_LEAF = _h(b"\x00hello")
LEFT = _h(b"\x01" + ZERO_LEAF + ZERO_LEAF)
TOP = _h(b"\x01" + LEFT + _h(b"\x01" + ZERO_LEAF + HELLO_LEAF))
CONTENT_ID = _h(b"\x02stt-content-v1" + len(CONTENT).to_bytes(8, "big") + TOP)
PROOF = (ZERO_LEAF, LEFT)

VALID = {
    "request": Request(request_id=REQUEST_ID, content_id=CONTENT_ID, index=3),
    "chunk": Chunk(request_id=REQUEST_ID, length=len(CONTENT), index=3, proof=PROOF,
                   data=b"hello"),
    "chunk_empty": Chunk(request_id=0, length=0, index=0, proof=(), data=b""),
    "refuse": Refuse(request_id=REQUEST_ID, reason=RefuseReason.BUSY, retry_after_ms=1500),
    "cancel": Cancel(request_id=REQUEST_ID),
}

#: Each rejected vector of the document, and the reason the decoder must give.
REJECTED = {
    "reject_empty": "empty content message",
    "reject_type_0": "unknown content message type 0x00",
    "reject_type_5": "unknown content message type 0x05",
    "reject_request_truncated": "content message truncated",
    "reject_request_trailing_byte": "1 trailing bytes",
    "reject_chunk_proof_count_33": "proof of 33 hashes, at most 32",
    "reject_chunk_proof_short": "content message truncated",
    "reject_chunk_header_truncated": "content message truncated",
    "reject_refuse_reason_0": "unknown refusal reason 0",
    "reject_refuse_reason_5": "unknown refusal reason 5",
    "reject_refuse_truncated": "content message truncated",
    "reject_cancel_trailing_byte": "1 trailing bytes",
}


def test_document_holds_exactly_the_known_vectors():
    assert sorted(VECTORS) == sorted([*VALID, *REJECTED])
    assert {type(msg) for msg in VALID.values()} == set(ALL_TYPES)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector(name):
    """Each vector of the document: a message, both ways byte for byte (from
    bytes and from a view), or a rejection, for its reason."""
    data = VECTORS[name]
    if name in VALID:
        assert VALID[name].encode() == data
        assert decode(data) == decode(memoryview(data)) == decode(bytearray(data)) == VALID[name]
    else:
        with pytest.raises(DecodeError, match=REJECTED[name]):
            decode(data)
        with pytest.raises(DecodeError, match=REJECTED[name]):
            decode(memoryview(data))


def test_the_chunk_vector_is_genuine():
    # The document's content id and proof are the content's, by the hash as
    # specified, and tree.verify_chunk agrees.
    request, chunk = decode(VECTORS["request"]), decode(VECTORS["chunk"])
    assert request.content_id == CONTENT_ID and chunk.proof == PROOF
    assert verify_chunk(request.content_id, chunk.length, chunk.index, chunk.data,
                        chunk.proof) == HELLO_LEAF
    assert chunk.length == len(CONTENT) and chunk.data == CONTENT[3 * CHUNK_SIZE:]


def test_chunk_header_is_the_encoding_up_to_the_data():
    chunk = VALID["chunk"]
    header = encode_chunk_header(REQUEST_ID, len(CONTENT), 3, list(PROOF))
    assert header == chunk.header() == VECTORS["chunk"][:-5]
    assert len(header) == m.CHUNK_HEADER_SIZE + 2 * HASH_SIZE
    assert encode_chunk_header(0, 0, 0, ()) == VECTORS["chunk_empty"]


def test_sizes():
    assert (m.REQUEST_SIZE, m.REFUSE_SIZE, m.CANCEL_SIZE, m.CHUNK_HEADER_SIZE) == (41, 10, 5, 18)
    assert [len(VECTORS[n]) for n in ("request", "refuse", "cancel", "chunk_empty")] == [
        m.REQUEST_SIZE, m.REFUSE_SIZE, m.CANCEL_SIZE, m.CHUNK_HEADER_SIZE]
    assert m.MAX_MESSAGE_SIZE == 1 + 4 + 8 + 4 + 1 + 32 * 32 + CHUNK_SIZE == 263_186
    assert "263,186 bytes" in DOC_TEXT


def test_refuse_reasons():
    assert {r.name: int(r) for r in RefuseReason} == {
        "NOT_FOUND": 1, "BUSY": 2, "OUT_OF_RANGE": 3, "STOPPING": 4}
    for reason in RefuseReason:
        refusal = decode(bytes((3,)) + bytes(4) + bytes((reason,)) + bytes(4))
        assert refusal.reason is reason and type(refusal.reason) is RefuseReason


# -- strategies ------------------------------------------------------------------------------

u32s = st.integers(0, 2**32 - 1)
hashes = st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE)

messages = st.one_of(
    st.builds(Request, request_id=u32s, content_id=hashes, index=u32s),
    st.builds(Chunk, request_id=u32s, length=st.integers(0, 2**64 - 1), index=u32s,
              proof=st.lists(hashes, max_size=m.MAX_PROOF_HASHES),
              data=st.binary(max_size=600)),
    st.builds(Refuse, request_id=u32s, reason=st.sampled_from(RefuseReason),
              retry_after_ms=u32s),
    st.builds(Cancel, request_id=u32s),
)


def decodes_canonically_or_not_at_all(data: bytes) -> m.ContentMessage | None:
    """decode raises only DecodeError (from bytes and from a view alike), and
    what it accepts re-encodes to ``data`` and has the type its first byte names."""
    try:
        message = decode(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            decode(memoryview(bytearray(data)))
        return None
    assert (message.encode(), message.TYPE) == (data, data[0])
    assert decode(memoryview(bytearray(data))) == message
    return message


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_round_trip(message):
    data = message.encode()
    decoded = decode(data)
    assert decoded == message and type(decoded) is type(message)
    assert decode(bytearray(data)) == decode(memoryview(data)) == message
    assert hash(decoded) == hash(message)


#: Random bytes rarely start with a valid type: half the inputs are random
#: bodies behind a type byte, so every type's parser sees them.
arbitrary_inputs = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda code, body: bytes((code,)) + body, st.integers(0, 5), st.binary(max_size=200)),
)


@settings(max_examples=1000, deadline=None)
@given(arbitrary_inputs)
def test_arbitrary_input_only_decode_error(data):
    decodes_canonically_or_not_at_all(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.binary(max_size=64))
def test_edited_messages_only_decode_error(message, ops):
    """One to four edits (flips, cuts, insertions, overwrites) as the fuzz
    harness makes them, driven by hypothesis."""
    decodes_canonically_or_not_at_all(Ops(ops).mutate(message.encode(), insert=16, overwrite=8))


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_truncation_of_the_vectors_is_refused(name):
    """Every cut short of the whole message is refused; for a CHUNK, every cut
    before its data (the data is the rest of the message, so a cut inside it is
    a shorter chunk: see the next test)."""
    original = VECTORS[name]
    message = VALID[name]
    end = len(original) - len(message.data) if type(message) is Chunk else len(original)
    for size in range(end):
        with pytest.raises(DecodeError):
            decode(original[:size])
        with pytest.raises(DecodeError):
            decode(memoryview(original)[:size])


def test_a_chunk_cut_inside_its_data_is_another_chunk_that_does_not_verify():
    original = VECTORS["chunk"]
    for size in range(len(original) - 5, len(original)):
        chunk = decode(original[:size])
        assert chunk.data == b"hello"[:size - len(original) + 5] and chunk != VALID["chunk"]
        with pytest.raises(ValueError):
            verify_chunk(CONTENT_ID, chunk.length, chunk.index, chunk.data, chunk.proof)


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_single_byte_change_of_the_vectors(name):
    """Every position, every other value: refused, or a different message that
    re-encodes to exactly the changed bytes. Never the same message, never
    another exception."""
    original = VECTORS[name]
    decoded = 0
    for pos in range(len(original)):
        changed = bytearray(original)
        for value in range(256):
            if value == original[pos]:
                continue
            changed[pos] = value
            message = decodes_canonically_or_not_at_all(bytes(changed))
            if message is not None:
                assert message != VALID[name]
                decoded += 1
    # Most changes land in a field of any value and still decode: the test saw them.
    assert decoded > 0


@pytest.mark.parametrize("name", ["request", "refuse", "cancel"])
def test_trailing_bytes_refused(name):
    for extra in (b"\x00", b"\x01" * 7, VECTORS[name]):
        with pytest.raises(DecodeError, match="trailing bytes"):
            decode(VECTORS[name] + extra)


def test_after_a_chunk_trailing_bytes_are_data_and_after_a_whole_chunk_refused():
    # A CHUNK's data is the rest of the message: a byte more is another chunk,
    # which verify_chunk refuses (it is not the chunk's size)...
    longer = decode(VECTORS["chunk"] + b"!")
    assert longer.data == b"hello!" and longer != VALID["chunk"]
    # ...until the data would exceed a chunk.
    whole = Chunk(request_id=1, length=CHUNK_SIZE, index=0, proof=(), data=bytes(CHUNK_SIZE))
    assert decode(whole.encode()) == whole
    too_long = f"chunk data of {CHUNK_SIZE + 1} bytes, at most {CHUNK_SIZE}"
    with pytest.raises(DecodeError, match=too_long):
        decode(whole.encode() + b"\x00")


def test_a_lower_proof_count_turns_hashes_into_data():
    # Well-formed (the codec checks sizes), but not the chunk: verify_chunk refuses it.
    data = bytearray(VECTORS["chunk"])
    data[17] = 1
    chunk = decode(bytes(data))
    assert chunk.proof == PROOF[:1] and chunk.data == PROOF[1] + b"hello"
    with pytest.raises(ValueError):
        verify_chunk(CONTENT_ID, chunk.length, chunk.index, chunk.data, chunk.proof)


# -- limits ----------------------------------------------------------------------------------


def _largest() -> Chunk:
    return Chunk(request_id=2**32 - 1, length=2**64 - 1, index=2**32 - 1,
                 proof=[bytes([i]) * 32 for i in range(m.MAX_PROOF_HASHES)],
                 data=bytes(range(256)) * (CHUNK_SIZE // 256))


def test_the_largest_message_fits_and_nothing_longer_is_parsed():
    largest = _largest()
    wire = largest.encode()
    assert len(wire) == m.MAX_MESSAGE_SIZE
    assert decode(wire) == decode(memoryview(wire)) == largest
    with pytest.raises(DecodeError, match=f"at most {m.MAX_MESSAGE_SIZE}"):
        decode(wire + b"\x00")
    # One hash fewer by its count: the 32nd hash joins the data, over CHUNK_SIZE.
    fewer = bytearray(wire)
    fewer[17] = m.MAX_PROOF_HASHES - 1
    with pytest.raises(DecodeError, match="chunk data of 262176 bytes"):
        decode(bytes(fewer))


def test_proof_count_over_the_limit_is_refused_whatever_follows():
    header = bytes((2,)) + bytes(4 + 8 + 4)
    for count in (33, 64, 255):
        for rest in (b"", bytes(count * HASH_SIZE)):
            with pytest.raises(DecodeError, match=f"proof of {count} hashes, at most 32"):
                decode(header + bytes((count,)) + rest)


def test_hostile_counts_claim_nothing_that_is_not_there():
    # A count of 32 hashes with one behind it is truncated, not a shorter proof.
    with pytest.raises(DecodeError, match="truncated"):
        decode(bytes((2,)) + bytes(16) + bytes((32,)) + bytes(HASH_SIZE))


# -- copies ----------------------------------------------------------------------------------


def test_decoding_a_view_keeps_the_data_in_its_buffer():
    buffer = bytearray(_largest().encode())
    chunk = decode(memoryview(buffer))
    assert type(chunk.data) is memoryview and chunk.data.readonly
    assert chunk.data.obj is buffer and len(chunk.data) == CHUNK_SIZE
    with pytest.raises(TypeError):
        chunk.data[0] = 1  # read-only, though the buffer is not
    # The data is the buffer's memory: the caller must not reuse it meanwhile.
    buffer[-1] ^= 0xFF
    assert chunk.data[-1] == buffer[-1]
    # Hashing does not read the data (a view of a bytearray cannot be hashed).
    assert hash(chunk) == hash(_largest())


def test_decoding_bytes_or_a_bytearray_gives_bytes():
    for wire in (VECTORS["chunk"], bytearray(VECTORS["chunk"])):
        chunk = decode(wire)
        assert type(chunk.data) is bytes and chunk.data == b"hello"
    assert type(decode(memoryview(VECTORS["chunk"])).data) is memoryview


def test_views_of_other_shapes_decode_by_their_bytes():
    wire = VECTORS["chunk"]
    # Not contiguous: read from a copy.
    spread = bytearray(2 * len(wire))
    spread[::2] = wire
    chunk = decode(memoryview(spread)[::2])
    assert chunk == VALID["chunk"] and type(chunk.data) is bytes
    # Items other than unsigned bytes: read as bytes, still without a copy.
    signed = memoryview(bytearray(wire)).cast("b")
    assert decode(signed) == decode(memoryview(wire).cast("c")) == VALID["chunk"]
    assert decode(signed).data.obj is signed.obj
    words = array.array("I", bytes(VECTORS["cancel"] + bytes(3)))
    with pytest.raises(DecodeError, match="3 trailing bytes"):
        decode(memoryview(words))
    grid = memoryview(VECTORS["request"] + bytes(1)).cast("B", shape=[6, 7])
    with pytest.raises(DecodeError, match="1 trailing bytes"):
        decode(grid)


def _peak_allocation(call) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = call()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    del result
    return peak


def test_encoding_copies_the_data_once_and_decoding_a_view_not_at_all():
    largest = _largest()
    wire = largest.encode()
    assert _peak_allocation(largest.encode) < CHUNK_SIZE + 16_384
    assert _peak_allocation(lambda: decode(memoryview(wire))) < 16_384
    assert _peak_allocation(lambda: decode(wire)) < CHUNK_SIZE + 16_384


def test_constructor_keeps_bytes_and_views_and_copies_bytearrays():
    data = b"x" * 1000
    assert Chunk(request_id=0, length=1000, index=0, proof=(), data=data).data is data
    buffer = bytearray(data)
    kept = Chunk(request_id=0, length=1000, index=0, proof=(), data=memoryview(buffer)).data
    assert type(kept) is memoryview and kept.readonly and kept.obj is buffer
    copied = Chunk(request_id=0, length=1000, index=0, proof=(), data=buffer).data
    assert type(copied) is bytes and copied == data
    # A view's items are counted as bytes.
    words = Chunk(request_id=0, length=8, index=0, proof=(),
                  data=memoryview(array.array("I", [1, 2]))).data
    assert len(words) == 8
    chunk = Chunk(request_id=0, length=1000, index=0, proof=[bytearray(32)], data=data)
    assert chunk.proof == (bytes(32),) and type(chunk.proof[0]) is bytes
    assert "xxxx" not in repr(chunk) and "data=" not in repr(chunk)


# -- constructors ----------------------------------------------------------------------------


def _chunk(**changes):
    fields = dict(request_id=0, length=0, index=0, proof=(), data=b"")
    return Chunk(**{**fields, **changes})


@pytest.mark.parametrize("make", [
    lambda: Request(request_id=-1, content_id=CONTENT_ID, index=0),
    lambda: Request(request_id=2**32, content_id=CONTENT_ID, index=0),
    lambda: Request(request_id=True, content_id=CONTENT_ID, index=0),
    lambda: Request(request_id=1.0, content_id=CONTENT_ID, index=0),
    lambda: Request(request_id=0, content_id=CONTENT_ID[:31], index=0),
    lambda: Request(request_id=0, content_id=CONTENT_ID.hex(), index=0),
    lambda: Request(request_id=0, content_id=CONTENT_ID, index=2**32),
    lambda: _chunk(request_id=None),
    lambda: _chunk(length=2**64),
    lambda: _chunk(length=-1),
    lambda: _chunk(index=-1),
    lambda: _chunk(proof=[bytes(32)] * 33),
    lambda: _chunk(proof=[bytes(31)]),
    lambda: _chunk(proof=[bytes(32), "h" * 32]),
    lambda: _chunk(proof=bytes(32)),
    lambda: _chunk(proof=None),
    lambda: _chunk(data="hello"),
    lambda: _chunk(data=None),
    lambda: _chunk(data=bytes(CHUNK_SIZE + 1)),
    lambda: _chunk(data=memoryview(bytes(CHUNK_SIZE + 1))),
    lambda: Refuse(request_id=0, reason=0, retry_after_ms=0),
    lambda: Refuse(request_id=0, reason=5, retry_after_ms=0),
    lambda: Refuse(request_id=0, reason="BUSY", retry_after_ms=0),
    lambda: Refuse(request_id=0, reason=RefuseReason.BUSY, retry_after_ms=2**32),
    lambda: Refuse(request_id=0, reason=RefuseReason.BUSY, retry_after_ms=-1),
    lambda: Cancel(request_id=2**32),
])
def test_constructors_refuse_what_cannot_be_sent(make):
    with pytest.raises(EncodeError):
        make()


@pytest.mark.parametrize("args", [
    (2**32, 0, 0, ()),
    (0, 2**64, 0, ()),
    (0, 0, -1, ()),
    (0, 0, 0, [bytes(32)] * 33),
    (0, 0, 0, [bytes(33)]),
    (0, 0, 0, b"\x00" * 32),
])
def test_encode_chunk_header_refuses_what_cannot_be_sent(args):
    with pytest.raises(ValueError):
        encode_chunk_header(*args)


def test_constructors_normalise():
    request = Request(request_id=REQUEST_ID, content_id=bytearray(CONTENT_ID), index=3)
    assert type(request.content_id) is bytes and request == VALID["request"]
    assert Refuse(request_id=REQUEST_ID, reason=2, retry_after_ms=1500) == VALID["refuse"]
    assert Chunk(request_id=REQUEST_ID, length=len(CONTENT), index=3, proof=iter(PROOF),
                 data=memoryview(b"hello")) == VALID["chunk"]


def test_request_refusal():
    refusal = VALID["request"].refusal(RefuseReason.BUSY, retry_after_ms=1500)
    assert refusal == VALID["refuse"]
    assert VALID["request"].refusal(3) == Refuse(request_id=REQUEST_ID,
                                                 reason=RefuseReason.OUT_OF_RANGE,
                                                 retry_after_ms=0)
    with pytest.raises(EncodeError):
        VALID["request"].refusal(9)


@pytest.mark.parametrize("name", sorted(VALID))
def test_messages_are_frozen_slotted_and_keyword_only(name):
    message = VALID[name]
    assert not hasattr(message, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.request_id = 1  # type: ignore[misc]
    fields = dataclasses.fields(message)
    assert all(f.kw_only for f in fields)
    assert type(message)(**{f.name: getattr(message, f.name) for f in fields}) == message


def test_only_the_four_types_are_messages():
    assert len({cls.TYPE for cls in ALL_TYPES}) == len(ALL_TYPES) == len(m.MessageType)
    with pytest.raises(TypeError, match="not a content message type"):
        m.Message(request_id=0)


def test_decode_refuses_what_is_not_bytes():
    with pytest.raises(TypeError):
        decode(5)  # bytes(5) would be five zero bytes
    with pytest.raises(TypeError):
        decode(VECTORS["cancel"].hex())
    with pytest.raises(TypeError):
        decode(None)


# -- the fuzz harness ------------------------------------------------------------------------


def test_fuzz_harness_over_its_seeds():
    """Every seed of ``fuzz/corpus/content_codec`` through the harness's own
    checks; the seeds are what ``fuzz/make_content_seeds.py`` writes today."""
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed for this interpreter")
    harness = importlib.import_module("fuzz_content_codec")
    seeds_module = importlib.import_module("make_content_seeds")
    seeds = seeds_module.content_codec_seeds()
    corpus = {p.name: p.read_bytes() for p in (FUZZ / "corpus" / "content_codec").iterdir()}
    assert corpus == seeds
    for data in corpus.values():
        harness.test_one_input(data)
    decoded = [decode(data[1:]) for data in corpus.values() if not data[0] & seeds_module.MUTATE]
    assert {type(message) for message in decoded} == set(ALL_TYPES)
    assert {msg.reason for msg in decoded if type(msg) is Refuse} == set(RefuseReason)
    # The harness's genuine messages are the document's.
    genuine = {msg.encode() for msg in seeds_module.genuine_messages()}
    assert {VECTORS[name] for name in VALID} <= genuine
