"""The pub/sub message codec, ``stt_proto.pubsub.messages``.

The byte-exact vectors live in ``docs/pubsub-wire.md`` and are read from there,
so the document and the codec cannot drift apart. Hypothesis covers round trips
of every message type, decoding arbitrary bytes and mutated valid messages
(only ``DecodeError``, and whatever decodes re-encodes to the same bytes), and
the signatures: no change to a signed PUBLISH keeps it valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stt_proto.dht.messages import Contact
from stt_proto.errors import DecodeError, EncodeError, MissingSigningKeyError
from stt_proto.identity import Identity
from stt_proto.pubsub import messages as m
from stt_proto.pubsub.messages import (Gone, Graft, IHave, IHaveEntry, IWant, Prune, Publish,
                                       Subscribe, Unsubscribe, decode, encode, message_id,
                                       publish_signed_bytes, sign_publish, topic_key,
                                       verify_publish)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "pubsub-wire.md"
FUZZ = ROOT / "fuzz"

ALL_TYPES = (Subscribe, Unsubscribe, Graft, Prune, Publish, IHave, IWant, Gone)

# -- the vectors of docs/pubsub-wire.md ---------------------------------------------------

_BLOCK = re.compile(r"^#### `(\w+)`\n\n```hex\n(.*?)^```", re.M | re.S)


def read_vectors(text: str) -> dict[str, bytes]:
    """Name -> bytes of every named hex block; ``#`` comments run to the end of the line."""
    pairs = [(name, bytes.fromhex(re.sub(r"#.*", "", body))) for name, body in _BLOCK.findall(text)]
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), f"a vector name appears twice in {names}"
    return dict(pairs)


VECTORS = read_vectors(DOC.read_text(encoding="utf-8"))

PUBLISHER = Identity.from_signing_seed(b"\x07" * 32)
OTHER = Identity.from_signing_seed(b"\x08" * 32)
EPOCH = 1733390000000
#: When the vectors' message was published: 123 ms into its epoch.
PUBLISHED = EPOCH + 123
TOPIC = topic_key("sensor_data")
C1 = Contact(node_id=b"\x11" * 32, address=("198.51.100.7", 9337))
C2 = Contact(node_id=b"\x22" * 32, address=("2001:db8::2", 9338))
P1, P2 = b"\x11" * 32, b"\x22" * 32

VALID = {
    "subscribe": Subscribe(topic=TOPIC),
    "unsubscribe": Unsubscribe(topic=TOPIC),
    "graft": Graft(topic=TOPIC),
    "prune_empty": Prune(topic=TOPIC, backoff_ms=60_000, peers=()),
    "prune": Prune(topic=TOPIC, backoff_ms=60_000, peers=[C1, C2]),
    "publish": sign_publish(PUBLISHER, TOPIC, EPOCH, 1, b"hello", published_ms=PUBLISHED),
    "ihave_empty": IHave(topic=TOPIC, entries=()),
    "ihave": IHave(topic=TOPIC, entries=[IHaveEntry(publisher=P1, epoch=5, high=0),
                                         IHaveEntry(publisher=P1, epoch=6, high=9),
                                         IHaveEntry(publisher=P2, epoch=1, high=1024)]),
    "iwant": IWant(topic=TOPIC, publisher=P1, epoch=6, first=4, last=9),
    "gone": Gone(topic=TOPIC, publisher=P1, epoch=6, first=1, last=1024),
}

HELPERS = {
    "topic_key_sensor_data": lambda: topic_key("sensor_data"),
    "publish_signed_bytes_hello": lambda: publish_signed_bytes(TOPIC, PUBLISHER.node_id, EPOCH,
                                                               1, PUBLISHED, b"hello"),
    "message_id_hello": lambda: message_id(TOPIC, PUBLISHER.node_id, EPOCH, 1),
}

#: Each rejected vector of the document, and the reason the decoder must give.
REJECTED = {
    "reject_empty": "empty pub/sub message",
    "reject_short_header": "shorter than its header",
    "reject_version_2": "unsupported pub/sub message version 2",
    "reject_version_0": "unsupported pub/sub message version 0",
    "reject_unknown_type": "unknown pub/sub message type 0x09",
    "reject_type_0": "unknown pub/sub message type 0x00",
    "reject_truncated_topic": "pub/sub message truncated",
    "reject_trailing_byte": "1 trailing bytes",
    "reject_prune_too_many_peers": "17 contacts, at most 16",
    "reject_prune_duplicate_peer": "appears twice",
    "reject_prune_port_zero": "port 0",
    "reject_publish_seq_zero": "seq must be an int within 1..",
    "reject_publish_data_too_long": "data of 16777217 bytes, at most 16777216",
    "reject_publish_truncated": "pub/sub message truncated",
    "reject_ihave_too_many": "IHAVE of 257 entries, at most 256",
    "reject_ihave_out_of_order": "sorted by \\(publisher, epoch\\) without repeats",
    "reject_ihave_repeated": "sorted by \\(publisher, epoch\\) without repeats",
    "reject_iwant_first_zero": "first must be an int within 1..",
    "reject_iwant_first_after_last": "range 9..4 is empty",
    "reject_iwant_range_too_long": "range of 1025 messages, at most 1024",
    "reject_gone_range_too_long": "range of 1025 messages, at most 1024",
}


def test_document_holds_exactly_the_known_vectors():
    assert sorted(VECTORS) == sorted([*VALID, *HELPERS, *REJECTED])
    assert {type(msg) for msg in VALID.values()} == set(ALL_TYPES)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector(name):
    """Each vector of the document: a message, both ways byte for byte; a helper's
    output; or a rejection, for its reason."""
    data = VECTORS[name]
    if name in VALID:
        assert (encode(VALID[name]), decode(data)) == (data, VALID[name])
    elif name in HELPERS:
        assert HELPERS[name]() == data
    else:
        with pytest.raises(DecodeError, match=REJECTED[name]):
            decode(data)


def test_the_published_vector_is_genuinely_signed():
    message = decode(VECTORS["publish"])
    assert verify_publish(message)
    assert message.publisher == PUBLISHER.node_id
    assert message.signing_public_key == PUBLISHER.signing_public_key
    assert message.published_ms == PUBLISHED
    assert message.message_id == VECTORS["message_id_hello"]


# -- strategies ------------------------------------------------------------------------------

ids = st.binary(min_size=32, max_size=32)
u64s = st.integers(0, 2**64 - 1)
hosts = st.one_of(
    st.ip_addresses(v=4).filter(lambda ip: not ip.is_unspecified),
    st.ip_addresses(v=6).filter(lambda ip: not ip.is_unspecified and ip.ipv4_mapped is None),
).map(str)
addresses = st.tuples(hosts, st.integers(1, 65535))
peer_lists = st.lists(st.builds(Contact, node_id=ids, address=addresses),
                      max_size=m.MAX_PEER_EXCHANGE, unique_by=lambda c: c.node_id)
entry_lists = st.lists(st.builds(IHaveEntry, publisher=ids, epoch=u64s, high=u64s),
                       max_size=40, unique_by=lambda e: (e.publisher, e.epoch)).map(
    lambda entries: sorted(entries, key=lambda e: (e.publisher, e.epoch)))


@st.composite
def ranges(draw, cls):
    first = draw(st.integers(1, 2**64 - 1))
    last = draw(st.integers(first, min(first + m.MAX_RANGE - 1, 2**64 - 1)))
    return cls(topic=draw(ids), publisher=draw(ids), epoch=draw(u64s), first=first, last=last)


messages = st.one_of(
    st.builds(Subscribe, topic=ids),
    st.builds(Unsubscribe, topic=ids),
    st.builds(Graft, topic=ids),
    st.builds(Prune, topic=ids, backoff_ms=st.integers(0, 2**32 - 1), peers=peer_lists),
    st.builds(Publish, topic=ids, publisher=ids, signing_public_key=ids, epoch=u64s,
              seq=st.integers(1, 2**64 - 1), published_ms=u64s, data=st.binary(max_size=300),
              signature=st.binary(min_size=64, max_size=64)),
    st.builds(IHave, topic=ids, entries=entry_lists),
    ranges(IWant),
    ranges(Gone),
)


def decodes_canonically_or_not_at_all(data: bytes) -> None:
    """decode raises only DecodeError, and what it accepts re-encodes to ``data``
    and agrees with the header it came with."""
    with contextlib.suppress(DecodeError):
        message = decode(data)
        assert (encode(message), message.TYPE, message.topic) == (data, data[1], data[2:34])


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_round_trip(message):
    data = encode(message)
    decoded = decode(data)
    assert decoded == message and type(decoded) is type(message)
    assert decode(bytearray(data)) == decode(memoryview(data)) == message


#: Random bytes rarely get past version, type and topic: half the inputs are
#: random bodies behind a valid header, so every type's parser sees them.
arbitrary_inputs = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda cls, body: bytes((1, cls.TYPE)) + TOPIC + body,
              st.sampled_from(ALL_TYPES), st.binary(max_size=160)),
)


@settings(max_examples=1000, deadline=None)
@given(arbitrary_inputs)
def test_arbitrary_input_only_decode_error(data):
    decodes_canonically_or_not_at_all(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.data())
def test_edited_messages_only_decode_error(message, data):
    out = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(out)))
        edit = data.draw(st.sampled_from(("xor", "truncate", "splice")))
        if edit == "xor" and pos < len(out):
            out[pos] ^= data.draw(st.integers(1, 255))
        elif edit == "truncate":
            out = out[:pos]
        elif edit == "splice":
            out[pos:pos + data.draw(st.integers(0, 8))] = data.draw(st.binary(max_size=8))
    decodes_canonically_or_not_at_all(bytes(out))


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_cut_and_bit_flip_of_the_vectors(name):
    original = VECTORS[name]
    for size in range(len(original)):
        pytest.raises(DecodeError, decode, original[:size])
    as_int = int.from_bytes(original, "big")
    for bit in range(8 * len(original)):
        decodes_canonically_or_not_at_all((as_int ^ (1 << bit)).to_bytes(len(original), "big"))


# -- limits and boundaries ---------------------------------------------------------------------


def test_publish_overhead_is_everything_but_the_data():
    assert m.PUBLISH_OVERHEAD == 190
    message = sign_publish(PUBLISHER, TOPIC, EPOCH, 1, b"", published_ms=PUBLISHED)
    assert len(encode(message)) == m.PUBLISH_OVERHEAD
    for size in (1, 1000):
        message = dataclasses.replace(message, data=bytes(size))
        assert len(encode(message)) == m.PUBLISH_OVERHEAD + size
    assert m.MAX_MESSAGE_BYTES == m.PUBLISH_OVERHEAD + m.MAX_DATA_BYTES


def test_largest_publish_fits_and_one_byte_more_does_not():
    data = bytes(m.MAX_DATA_BYTES)
    message = Publish(topic=TOPIC, publisher=P1, signing_public_key=P2, epoch=0, seq=1,
                      published_ms=2**64 - 1, data=data, signature=bytes(64))
    wire = encode(message)
    assert len(wire) == m.MAX_MESSAGE_BYTES
    assert decode(wire) == message
    with pytest.raises(EncodeError, match="at most 16777216"):
        dataclasses.replace(message, data=bytes(m.MAX_DATA_BYTES + 1))
    # One byte over the largest message is refused before it is parsed.
    with pytest.raises(DecodeError, match=f"at most {m.MAX_MESSAGE_BYTES}"):
        decode(wire + b"\x00")


def test_publish_keeps_its_bytes_without_copying():
    data = b"x" * 100_000
    message = Publish(topic=TOPIC, publisher=P1, signing_public_key=P2, epoch=0, seq=1,
                      published_ms=2**64 - 1, data=data, signature=bytes(64))
    assert message.data is data
    assert type(Publish(topic=TOPIC, publisher=P1, signing_public_key=P2, epoch=0, seq=1,
                        published_ms=0, data=memoryview(data), signature=bytes(64)).data) is bytes
    decoded = decode(encode(message))
    assert type(decoded.data) is bytes and decoded.data == data
    assert "data=" not in repr(message) and "xxxx" not in repr(message)


def test_limits_of_lists_and_ranges():
    peers = [Contact(node_id=bytes([i]) * 32, address=("2001:db8::1", 1 + i))
             for i in range(m.MAX_PEER_EXCHANGE + 1)]
    full = Prune(topic=TOPIC, backoff_ms=2**32 - 1, peers=peers[:-1])
    assert decode(encode(full)) == full
    with pytest.raises(EncodeError, match="17 contacts, at most 16"):
        Prune(topic=TOPIC, backoff_ms=0, peers=peers)
    entries = [IHaveEntry(publisher=i.to_bytes(32, "big"), epoch=2**64 - 1, high=2**64 - 1)
               for i in range(m.MAX_IHAVE_ENTRIES + 1)]
    most = IHave(topic=TOPIC, entries=entries[:-1])
    assert decode(encode(most)) == most
    with pytest.raises(EncodeError, match="257 entries, at most 256"):
        IHave(topic=TOPIC, entries=entries)
    for first, last in ((1, m.MAX_RANGE), (2**64 - m.MAX_RANGE, 2**64 - 1), (7, 7)):
        for cls in (IWant, Gone):
            message = cls(topic=TOPIC, publisher=P1, epoch=0, first=first, last=last)
            assert decode(encode(message)) == message
            assert message.count == last - first + 1


def test_hostile_counts_claim_nothing_that_is_not_there():
    # A count of 256 entries or 16 peers with no bytes behind it is only truncated:
    # nothing is allocated by what the count claims.
    with pytest.raises(DecodeError, match="truncated"):
        decode(bytes((1, m.MessageType.IHAVE)) + TOPIC + b"\x01\x00")
    with pytest.raises(DecodeError, match="truncated"):
        decode(bytes((1, m.MessageType.PRUNE)) + TOPIC + bytes(4) + b"\x10")
    with pytest.raises(DecodeError, match="truncated"):
        decode(bytes((1, m.MessageType.PUBLISH)) + TOPIC + bytes(88) + b"\x01\x00\x00\x00")


# -- constructors -------------------------------------------------------------------------------


def _publish(**changes):
    fields = dict(topic=TOPIC, publisher=P1, signing_public_key=P2, epoch=0, seq=1,
                  published_ms=0, data=b"", signature=bytes(64))
    return Publish(**{**fields, **changes})


@pytest.mark.parametrize("make", [
    lambda: Subscribe(topic=bytes(31)),
    lambda: Graft(topic="sensor_data"),
    lambda: Unsubscribe(topic=None),
    lambda: Prune(topic=TOPIC, backoff_ms=-1, peers=()),
    lambda: Prune(topic=TOPIC, backoff_ms=2**32, peers=()),
    lambda: Prune(topic=TOPIC, backoff_ms=True, peers=()),
    lambda: Prune(topic=TOPIC, backoff_ms=0, peers=[C1, C1]),
    lambda: Prune(topic=TOPIC, backoff_ms=0, peers=[(C1.node_id, C1.address)]),
    lambda: Prune(topic=TOPIC, backoff_ms=0, peers=b"peers"),
    lambda: _publish(seq=0),
    lambda: _publish(seq=2**64),
    lambda: _publish(epoch=-1),
    lambda: _publish(epoch=1.0),
    lambda: _publish(published_ms=-1),
    lambda: _publish(published_ms=2**64),
    lambda: _publish(published_ms=None),
    lambda: _publish(publisher=bytes(33)),
    lambda: _publish(signing_public_key=None),
    lambda: _publish(signature=bytes(63)),
    lambda: _publish(data="text"),
    lambda: IHave(topic=TOPIC, entries=[IHaveEntry(publisher=P2, epoch=0, high=0),
                                        IHaveEntry(publisher=P1, epoch=0, high=0)]),
    lambda: IHave(topic=TOPIC, entries=[IHaveEntry(publisher=P1, epoch=1, high=0),
                                        IHaveEntry(publisher=P1, epoch=0, high=0)]),
    lambda: IHave(topic=TOPIC, entries=[IHaveEntry(publisher=P1, epoch=1, high=0),
                                        IHaveEntry(publisher=P1, epoch=1, high=2)]),
    lambda: IHave(topic=TOPIC, entries=[(P1, 1, 0)]),
    lambda: IHave(topic=TOPIC, entries=None),
    lambda: IHaveEntry(publisher=P1, epoch=0, high=-1),
    lambda: IHaveEntry(publisher=P1[:31], epoch=0, high=0),
    lambda: IWant(topic=TOPIC, publisher=P1, epoch=0, first=0, last=0),
    lambda: IWant(topic=TOPIC, publisher=P1, epoch=0, first=5, last=4),
    lambda: Gone(topic=TOPIC, publisher=P1, epoch=0, first=1, last=m.MAX_RANGE + 1),
    lambda: Gone(topic=TOPIC, publisher=P1, epoch=2**64, first=1, last=1),
])
def test_constructors_refuse_what_cannot_be_sent(make):
    with pytest.raises(EncodeError):
        make()


def test_constructors_normalise_bytes_and_accept_iterables():
    graft = Graft(topic=bytearray(TOPIC))
    assert type(graft.topic) is bytes and graft == VALID["graft"]
    assert Prune(topic=TOPIC, backoff_ms=60_000, peers=iter([C1, C2])) == VALID["prune"]
    assert IHave(topic=TOPIC, entries=iter(VALID["ihave"].entries)) == VALID["ihave"]
    assert hash(VALID["ihave"]) == hash(decode(VECTORS["ihave"]))


@pytest.mark.parametrize("name", sorted(VALID))
def test_messages_are_frozen_slotted_and_keyword_only(name):
    message = VALID[name]
    assert not hasattr(message, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.topic = bytes(32)  # type: ignore[misc]
    fields = dataclasses.fields(message)
    assert all(f.kw_only for f in fields)
    assert type(message)(**{f.name: getattr(message, f.name) for f in fields}) == message


def test_only_the_eight_types_are_messages():
    assert len({cls.TYPE for cls in ALL_TYPES}) == len(ALL_TYPES) == len(m.MessageType)
    with pytest.raises(TypeError, match="not a pub/sub message type"):
        m.Message(topic=TOPIC)
    with pytest.raises(TypeError, match="not a pub/sub message type"):
        m._Range(topic=TOPIC, publisher=P1, epoch=0, first=1, last=1)


def test_encode_refuses_what_is_not_a_message():
    with pytest.raises(EncodeError):
        encode(C1)
    with pytest.raises(EncodeError):
        encode(VECTORS["subscribe"])


def test_decode_refuses_what_is_not_bytes():
    with pytest.raises(TypeError):
        decode(34)  # bytes(34) would be 34 zero bytes
    with pytest.raises(TypeError):
        decode(VECTORS["subscribe"].hex())


# -- topic keys, signed bytes and ids ------------------------------------------------------------


def test_topic_names():
    assert topic_key("a" * 255) != topic_key("a" * 254)
    assert topic_key("é" * 127) == topic_key("é" * 127)  # 254 bytes of UTF-8
    for name in ("", "a" * 256, "é" * 128):
        with pytest.raises(ValueError, match="1..255 bytes"):
            topic_key(name)
    with pytest.raises(ValueError, match="UTF-8"):
        topic_key("bad \udc80 name")
    for name in (b"sensor_data", None, 7):
        with pytest.raises(TypeError):
            topic_key(name)
    # The label keeps a topic key apart from a DHT immutable key of the same text.
    from stt_proto.dht.messages import immutable_key
    assert topic_key("sensor_data") != immutable_key(b"sensor_data")


def test_signed_bytes_and_ids_depend_on_every_field():
    base = (TOPIC, P1, 5, 7)
    variants = [(P2, P1, 5, 7), (TOPIC, P2, 5, 7), (TOPIC, P1, 6, 7), (TOPIC, P1, 5, 8)]
    assert len({message_id(*v) for v in [base, *variants]}) == 5
    assert len({publish_signed_bytes(*v, 9, b"d") for v in [base, *variants]}) == 5
    assert publish_signed_bytes(*base, 9, b"d") != publish_signed_bytes(*base, 9, b"e")
    assert publish_signed_bytes(*base, 9, b"d") != publish_signed_bytes(*base, 10, b"d")
    assert publish_signed_bytes(*base, 9, b"").startswith(m.PUBLISH_SIGNATURE_LABEL)
    # The id names the slot, not the copy: the publishing time is not part of it.
    assert message_id(*base) == _publish(publisher=P1, epoch=5, seq=7).message_id
    assert message_id(*base) == _publish(publisher=P1, epoch=5, seq=7,
                                         published_ms=2**64 - 1).message_id


@pytest.mark.parametrize("call", [
    lambda: publish_signed_bytes(bytes(31), P1, 0, 1, 0, b""),
    lambda: publish_signed_bytes(TOPIC, P1, 0, 0, 0, b""),
    lambda: publish_signed_bytes(TOPIC, P1, 2**64, 1, 0, b""),
    lambda: publish_signed_bytes(TOPIC, P1, 0, 1, 2**64, b""),
    lambda: publish_signed_bytes(TOPIC, P1, 0, 1, -1, b""),
    lambda: publish_signed_bytes(TOPIC, P1, 0, 1, 0, "text"),
    lambda: message_id(TOPIC, P1[:8], 0, 1),
    lambda: message_id(TOPIC, P1, -1, 1),
])
def test_helpers_refuse_out_of_range_fields(call):
    with pytest.raises(ValueError):
        call()


# -- signatures ---------------------------------------------------------------------------------


def test_sign_and_verify():
    message = sign_publish(PUBLISHER, TOPIC, EPOCH, 3, bytearray(b"reading"),
                           published_ms=PUBLISHED)
    assert type(message.data) is bytes and message.published_ms == PUBLISHED
    assert verify_publish(message)
    assert verify_publish(decode(encode(message)))


@pytest.mark.parametrize("change", [
    {"data": b"readinG"},
    {"data": b""},
    {"seq": 4},
    {"epoch": EPOCH + 1},
    {"published_ms": PUBLISHED + 1},
    {"published_ms": 0},
    {"topic": topic_key("other")},
    {"publisher": OTHER.node_id},
    {"signing_public_key": OTHER.signing_public_key},
    {"signature": bytes(64)},
])
def test_any_change_breaks_the_signature(change):
    message = sign_publish(PUBLISHER, TOPIC, EPOCH, 3, b"reading", published_ms=PUBLISHED)
    assert not verify_publish(dataclasses.replace(message, **change))


def test_the_other_sign_of_the_signing_key_does_not_verify():
    # -A maps to the same node id as A (identity.py); a signature by A is not one by -A.
    message = sign_publish(PUBLISHER, TOPIC, EPOCH, 3, b"reading", published_ms=PUBLISHED)
    negated = bytearray(message.signing_public_key)
    negated[31] ^= 0x80
    assert not verify_publish(dataclasses.replace(message, signing_public_key=bytes(negated)))


def test_a_signature_by_another_identity_fails():
    # OTHER signs in PUBLISHER's name, with its own key or with PUBLISHER's.
    signed = OTHER.sign(publish_signed_bytes(TOPIC, PUBLISHER.node_id, EPOCH, 1, PUBLISHED,
                                             b"forged"))
    for key in (OTHER.signing_public_key, PUBLISHER.signing_public_key):
        forged = Publish(topic=TOPIC, publisher=PUBLISHER.node_id, signing_public_key=key,
                         epoch=EPOCH, seq=1, published_ms=PUBLISHED, data=b"forged",
                         signature=signed)
        assert not verify_publish(forged)
    # A genuine message of OTHER relabelled as PUBLISHER's.
    genuine = sign_publish(OTHER, TOPIC, EPOCH, 1, b"mine", published_ms=PUBLISHED)
    assert verify_publish(genuine)
    assert not verify_publish(dataclasses.replace(genuine, publisher=PUBLISHER.node_id))


def test_verify_publish_is_false_for_anything_odd():
    message = sign_publish(PUBLISHER, TOPIC, EPOCH, 3, b"reading", published_ms=PUBLISHED)
    assert not verify_publish(None)
    assert not verify_publish(encode(message))
    assert not verify_publish(Subscribe(topic=TOPIC))
    broken = dataclasses.replace(message)
    object.__setattr__(broken, "seq", "3")
    assert not verify_publish(broken)
    object.__setattr__(broken, "seq", 3)
    object.__setattr__(broken, "published_ms", -1)
    assert not verify_publish(broken)
    object.__setattr__(broken, "data", None)
    assert not verify_publish(broken)


def test_signing_needs_a_signing_identity_and_valid_fields():
    legacy = Identity.from_private_bytes(bytes(range(32)))
    with pytest.raises(MissingSigningKeyError):
        sign_publish(legacy, TOPIC, EPOCH, 1, b"data", published_ms=PUBLISHED)
    with pytest.raises(ValueError):
        sign_publish(PUBLISHER, TOPIC, EPOCH, 0, b"data", published_ms=PUBLISHED)
    with pytest.raises(ValueError):
        sign_publish(PUBLISHER, b"sensor_data", EPOCH, 1, b"data", published_ms=PUBLISHED)
    with pytest.raises(ValueError):
        sign_publish(PUBLISHER, TOPIC, EPOCH, 1, bytes(m.MAX_DATA_BYTES + 1),
                     published_ms=PUBLISHED)
    with pytest.raises(ValueError):
        sign_publish(PUBLISHER, TOPIC, EPOCH, 1, b"data", published_ms=2**64)
    # The publishing time is signed, so it has no default: a caller must read its clock.
    with pytest.raises(TypeError):
        sign_publish(PUBLISHER, TOPIC, EPOCH, 1, b"data")
    with pytest.raises(TypeError):
        sign_publish(PUBLISHER, TOPIC, EPOCH, 1, b"data", PUBLISHED)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=64), st.integers(1, 2**64 - 1), u64s, st.data())
def test_no_single_byte_change_of_a_signed_publish_verifies(data, seq, published_ms, draw):
    wire = bytearray(encode(sign_publish(PUBLISHER, TOPIC, EPOCH, seq, data,
                                         published_ms=published_ms)))
    pos = draw.draw(st.integers(2, len(wire) - 1))
    wire[pos] ^= draw.draw(st.integers(1, 255))
    try:
        changed = decode(bytes(wire))
    except DecodeError:
        return
    assert not verify_publish(changed)


# -- the fuzz harness ---------------------------------------------------------------------------


def test_fuzz_harness_over_its_seeds():
    """Every seed of ``fuzz/corpus/pubsub_codec`` through the harness's own checks;
    the seeds are what ``fuzz/make_pubsub_seeds.py`` writes today."""
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed for this interpreter")
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    harness = importlib.import_module("fuzz_pubsub_codec")
    seeds = importlib.import_module("make_pubsub_seeds").pubsub_codec_seeds()
    corpus = {path.name: path.read_bytes() for path in (FUZZ / "corpus" / "pubsub_codec").iterdir()}
    assert corpus == seeds
    for data in corpus.values():
        harness.test_one_input(data)
    decoded = [decode(data[1:]) for data in corpus.values() if not data[0] & 1]
    assert {type(message) for message in decoded} == set(ALL_TYPES)
    assert all(verify_publish(msg) for msg in decoded if type(msg) is Publish)
