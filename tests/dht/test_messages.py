"""The DHT message codec, ``stt_proto.dht.messages``.

The byte-exact vectors live in ``docs/dht-wire.md`` and are read from there, so
the document and the codec cannot drift apart. Hypothesis covers round trips of
every message type, decoding arbitrary bytes and mutated valid messages (only
``DecodeError``, and whatever decodes re-encodes to the same bytes).
"""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stt_proto.dht import messages as m
from stt_proto.dht.messages import (
    MAX_CONTACTS,
    MAX_MESSAGE_BYTES,
    MAX_SALT_BYTES,
    MAX_VALUE_BYTES,
    RESPONSE_TYPES,
    AddProvider,
    Contact,
    Error,
    ErrorCode,
    FindNode,
    FindValue,
    GetProviders,
    ImmutableValue,
    Message,
    MutableValue,
    Nodes,
    Ping,
    Pong,
    Providers,
    Store,
    StoreResult,
    StoreStatus,
    UnsupportedVersionError,
    ValueFound,
    decode,
    encode,
    immutable_key,
    is_request,
    mutable_key,
    mutable_signed_bytes,
)
from stt_proto.errors import DecodeError, EncodeError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "dht-wire.md"
FUZZ = ROOT / "fuzz"

ALL_TYPES = (Ping, Pong, FindNode, Nodes, FindValue, ValueFound, Store, StoreResult,
             AddProvider, GetProviders, Providers, Error)

# -- the vectors of docs/dht-wire.md ------------------------------------------------------

_VECTOR = re.compile(r"^#### `([a-z0-9_]+)`\n\n```hex\n(.*?)^```", re.M | re.S)


def doc_vectors() -> dict[str, bytes]:
    """Every ``#### `name``` + hex block of the document; ``#`` starts a comment."""
    vectors = {}
    for name, body in _VECTOR.findall(DOC.read_text(encoding="utf-8")):
        assert name not in vectors, f"vector {name} appears twice"
        hex_text = "".join(line.split("#", 1)[0] for line in body.splitlines())
        vectors[name] = bytes.fromhex(hex_text)
    return vectors


VECTORS = doc_vectors()

TXID = bytes.fromhex("0123456789abcdef")
KEY_HELLO = immutable_key(b"hello")
C1 = Contact(node_id=b"\x11" * 32, address=("198.51.100.7", 9337))
C2 = Contact(node_id=b"\x22" * 32, address=("2001:db8::2", 9338))
IMMUTABLE = ImmutableValue(value=b"hello")
MUTABLE = MutableValue(signing_public_key=b"\x44" * 32, salt=b"profile", seq=7, value=b"v1",
                       signature=b"\x55" * 64)

VALID = {
    "ping": Ping(txid=TXID),
    "pong_ipv4": Pong(txid=TXID, observed_address=("198.51.100.7", 4000)),
    "pong_ipv6": Pong(txid=TXID, observed_address=("2001:db8::7", 9337)),
    "find_node": FindNode(txid=TXID, target=b"\x33" * 32),
    "nodes_empty": Nodes(txid=TXID, contacts=()),
    "nodes": Nodes(txid=TXID, contacts=[C1, C2]),
    "find_value": FindValue(txid=TXID, key=KEY_HELLO),
    "value_found_none": ValueFound(txid=TXID, record=None, contacts=[C1]),
    "value_found_immutable": ValueFound(txid=TXID, record=IMMUTABLE, contacts=()),
    "value_found_mutable": ValueFound(txid=TXID, record=MUTABLE, contacts=[C2]),
    "store_immutable": Store(txid=TXID, record=IMMUTABLE, cas=None),
    "store_mutable_cas": Store(txid=TXID, record=MUTABLE, cas=6),
    "store_result": StoreResult(txid=TXID, status=StoreStatus.REFUSED_ROLLBACK),
    "add_provider": AddProvider(txid=TXID, key=KEY_HELLO),
    "get_providers": GetProviders(txid=TXID, key=KEY_HELLO, count=20),
    "providers": Providers(txid=TXID, providers=[C1], contacts=[C2]),
    "error": Error(txid=TXID, code=ErrorCode.RATE_LIMITED, retry_after_ms=1000),
}

HELPERS = {
    "immutable_key_hello": lambda: immutable_key(b"hello"),
    "mutable_key_profile": lambda: mutable_key(b"\x11" * 32, b"profile"),
    "mutable_signed_bytes_profile": lambda: mutable_signed_bytes(b"profile", 7, b"v1"),
}

#: Each rejected vector of the document, and the reason the decoder must give.
REJECTED = {
    "reject_empty": "empty",
    "reject_short_header": "shorter than its header",
    "reject_trailing_byte": "1 trailing bytes",
    "reject_truncated": "truncated",
    "reject_unknown_type": "unknown DHT message type 0x07",
    "reject_version_2": "version 2",
    "reject_version_0": "version 0",
    "reject_unknown_family": "unknown address family 5",
    "reject_mapped_ipv4": "IPv4-mapped",
    "reject_unspecified_address": "unspecified",
    "reject_port_zero": "port 0",
    "reject_duplicate_contact": "appears twice",
    "reject_too_many_contacts": "33 contacts, at most 32",
    "reject_store_without_record": "where a record is required",
    "reject_unknown_record_kind": "unknown record kind 3",
    "reject_cas_flag_2": "must be 0 or 1, not 2",
    "reject_salt_too_long": "salt of 65 bytes",
    "reject_value_too_long": "value of 3073 bytes",
    "reject_unknown_store_status": "unknown store status 6",
    "reject_unknown_error_code": "unknown error code 0",
    "reject_get_providers_zero": "0 providers",
}


def test_document_holds_exactly_the_known_vectors():
    assert set(VECTORS) == set(VALID) | set(HELPERS) | set(REJECTED)
    assert {type(msg) for msg in VALID.values()} == set(ALL_TYPES)


@pytest.mark.parametrize("name", sorted(VALID))
def test_vector_encodes_and_decodes_byte_for_byte(name):
    assert encode(VALID[name]) == VECTORS[name]
    assert decode(VECTORS[name]) == VALID[name]


@pytest.mark.parametrize("name", sorted(HELPERS))
def test_helper_vector(name):
    assert HELPERS[name]() == VECTORS[name]


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_vector(name):
    with pytest.raises(DecodeError, match=REJECTED[name]):
        decode(VECTORS[name])


def test_unknown_version_carries_what_an_error_answer_needs():
    with pytest.raises(UnsupportedVersionError) as info:
        decode(VECTORS["reject_version_2"])
    assert (info.value.version, info.value.txid, info.value.is_request) == (2, TXID, True)
    with pytest.raises(UnsupportedVersionError) as info:
        decode(VECTORS["reject_version_0"])
    assert (info.value.version, info.value.txid, info.value.is_request) == (0, TXID, False)
    # Too short for a transaction id or even a type: nothing to answer with.
    with pytest.raises(UnsupportedVersionError) as info:
        decode(b"\x07\x01\x00")
    assert (info.value.version, info.value.txid, info.value.is_request) == (7, None, True)
    with pytest.raises(UnsupportedVersionError) as info:
        decode(b"\x07")
    assert (info.value.txid, info.value.is_request) == (None, False)
    assert isinstance(info.value, ValueError)


# -- strategies ------------------------------------------------------------------------------

ids = st.binary(min_size=32, max_size=32)
txids = st.binary(min_size=8, max_size=8)


def _host(ip) -> str:
    return str(ip)


hosts = st.one_of(
    st.ip_addresses(v=4).filter(lambda ip: not ip.is_unspecified).map(_host),
    st.ip_addresses(v=6).filter(lambda ip: not ip.is_unspecified and ip.ipv4_mapped is None
                                and not (ip.ipv4_mapped or ip).is_unspecified).map(_host),
)
addresses = st.tuples(hosts, st.integers(1, 65535))
contacts = st.builds(Contact, node_id=ids, address=addresses)
contact_lists = st.lists(contacts, max_size=MAX_CONTACTS, unique_by=lambda c: c.node_id)
# Mostly short values keep the run fast; the boundary has its own test.
values = st.one_of(st.binary(max_size=64), st.binary(min_size=MAX_VALUE_BYTES - 2,
                                                     max_size=MAX_VALUE_BYTES))
immutables = st.builds(ImmutableValue, value=values)
mutables = st.builds(MutableValue, signing_public_key=ids,
                     salt=st.binary(max_size=MAX_SALT_BYTES),
                     seq=st.integers(0, 2**64 - 1), value=values,
                     signature=st.binary(min_size=64, max_size=64))
records = st.one_of(immutables, mutables)

messages = st.one_of(
    st.builds(Ping, txid=txids),
    st.builds(Pong, txid=txids, observed_address=addresses),
    st.builds(FindNode, txid=txids, target=ids),
    st.builds(Nodes, txid=txids, contacts=contact_lists),
    st.builds(FindValue, txid=txids, key=ids),
    st.builds(ValueFound, txid=txids, record=st.none() | records,
              contacts=st.lists(contacts, max_size=8, unique_by=lambda c: c.node_id)),
    st.builds(Store, txid=txids, record=records, cas=st.none() | st.integers(0, 2**64 - 1)),
    st.builds(StoreResult, txid=txids, status=st.sampled_from(StoreStatus)),
    st.builds(AddProvider, txid=txids, key=ids),
    st.builds(GetProviders, txid=txids, key=ids, count=st.integers(1, 255)),
    st.builds(Providers, txid=txids, providers=contact_lists, contacts=contact_lists),
    st.builds(Error, txid=txids, code=st.sampled_from(ErrorCode),
              retry_after_ms=st.integers(0, 2**32 - 1)),
)


def _encode_or_none(message: Message) -> bytes | None:
    try:
        return encode(message)
    except EncodeError as exc:  # only a record plus contacts beyond a frame may not fit
        assert "more than a DHT frame holds" in str(exc)
        return None


def _check_decode(data: bytes) -> None:
    """decode raises only DecodeError, and what it accepts is canonical."""
    try:
        message = decode(data)
    except DecodeError:
        return
    assert encode(message) == data


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_round_trip(message):
    data = _encode_or_none(message)
    assume(data is not None)
    assert len(data) <= MAX_MESSAGE_BYTES
    decoded = decode(data)
    assert decoded == message
    assert type(decoded) is type(message)
    assert decode(bytearray(data)) == decode(memoryview(data)) == message


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_decode_error(data):
    _check_decode(data)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(set(ALL_TYPES), key=lambda c: c.TYPE)), st.binary(max_size=120))
def test_arbitrary_bodies_behind_a_valid_header(cls, body):
    # Random bytes rarely get past the header; here every type sees random bodies.
    _check_decode(bytes((1, cls.TYPE)) + TXID + body)


@st.composite
def mutated(draw):
    message = draw(messages)
    data = _encode_or_none(message)
    assume(data is not None)
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "overwrite"]))
        pos = draw(st.integers(0, len(out)))
        if kind == "flip" and pos < len(out):
            out[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            out[pos:pos + 2] = draw(st.binary(min_size=2, max_size=2))
    return bytes(out)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_only_decode_error(data):
    _check_decode(data)


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_truncation_and_bit_flip_of_the_vectors(name):
    data = VECTORS[name]
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            _check_decode(bytes(flipped))


# -- limits and boundaries ---------------------------------------------------------------------


def test_largest_fields_fit_and_one_more_does_not():
    value = ImmutableValue(value=bytes(MAX_VALUE_BYTES))
    assert decode(encode(Store(txid=TXID, record=value, cas=None))).record == value
    with pytest.raises(EncodeError, match="at most 3072"):
        ImmutableValue(value=bytes(MAX_VALUE_BYTES + 1))
    full = [Contact(node_id=bytes([i]) * 32, address=("2001:db8::1", 1 + i))
            for i in range(MAX_CONTACTS)]
    both = Providers(txid=TXID, providers=full, contacts=full)
    assert decode(encode(both)) == both
    with pytest.raises(EncodeError, match="at most 32"):
        Nodes(txid=TXID, contacts=[*full, Contact(node_id=b"\xff" * 32, address=("::1", 1))])


def test_largest_record_with_the_contacts_that_fit():
    record = MutableValue(signing_public_key=bytes(32), salt=bytes(MAX_SALT_BYTES),
                          seq=2**64 - 1, value=bytes(MAX_VALUE_BYTES), signature=bytes(64))
    ipv6 = [Contact(node_id=bytes([i]) * 32, address=("2001:db8::1", 1 + i))
            for i in range(MAX_CONTACTS)]
    # 3,255 bytes of header, record and count leave room for 16 IPv6 contacts of 51 bytes.
    most = (MAX_MESSAGE_BYTES - (10 + 1 + 32 + 1 + MAX_SALT_BYTES + 8 + 2 + MAX_VALUE_BYTES
                                 + 64 + 1)) // 51
    assert most == 16
    found = ValueFound(txid=TXID, record=record, contacts=ipv6[:most])
    data = encode(found)
    assert len(data) == MAX_MESSAGE_BYTES - (MAX_MESSAGE_BYTES - 3255) % 51
    assert decode(data) == found
    with pytest.raises(EncodeError, match="more than a DHT frame holds"):
        encode(ValueFound(txid=TXID, record=record, contacts=ipv6[:most + 1]))


def test_input_over_the_frame_limit_is_refused_before_parsing():
    with pytest.raises(DecodeError, match="at most 4096"):
        decode(VECTORS["ping"] + bytes(MAX_MESSAGE_BYTES))


def test_host_caches_are_bounded_against_a_peer_sending_fresh_addresses():
    # Every decoded contact goes through the cache of packed -> text; a hostile
    # peer sending ever new addresses only evicts, it never grows the cache.
    before = m._format_host.cache_info()
    for i in range(m.HOST_CACHE_SIZE + 300):
        address = (str(ipaddress.IPv6Address((0x20010DB8 << 96) + i)), 1)
        decode(encode(Pong(txid=TXID, observed_address=address)))
    info = m._format_host.cache_info()
    assert info.currsize <= m.HOST_CACHE_SIZE == info.maxsize
    assert info.misses - before.misses >= m.HOST_CACHE_SIZE
    assert m._parse_host.cache_info().currsize <= m.HOST_CACHE_SIZE


# -- constructors -------------------------------------------------------------------------------


@pytest.mark.parametrize("host,canonical", [
    ("::ffff:10.0.0.1", "10.0.0.1"),
    ("2001:DB8:0:0::1", "2001:db8::1"),
    ("198.51.100.7", "198.51.100.7"),
])
def test_addresses_are_canonicalised(host, canonical):
    contact = Contact(node_id=bytes(32), address=(host, 7))
    assert contact.address == (canonical, 7)
    assert decode(encode(Nodes(txid=TXID, contacts=[contact]))).contacts == (contact,)
    assert Pong(txid=TXID, observed_address=(host, 7)).observed_address == (canonical, 7)


@pytest.mark.parametrize("address", [
    ("localhost", 1), ("example.org", 80), ("fe80::1%eth0", 1), ("0.0.0.0", 1), ("::", 1),
    ("::ffff:0.0.0.0", 1), ("010.0.0.1", 1), (" 10.0.0.1", 1), (b"10.0.0.1", 1),
    ("10.0.0.1", 0), ("10.0.0.1", 65536), ("10.0.0.1", True), ("10.0.0.1", "80"),
    ["10.0.0.1", 80], ("10.0.0.1",), ("10.0.0.1", 80, 0, 0), "10.0.0.1:80", None,
])
def test_bad_addresses_are_refused(address):
    with pytest.raises(EncodeError):
        Contact(node_id=bytes(32), address=address)
    with pytest.raises(EncodeError):
        Pong(txid=TXID, observed_address=address)


def test_contact_lists_refuse_duplicates_and_strangers():
    twin = Contact(node_id=C1.node_id, address=("10.0.0.9", 9))
    with pytest.raises(EncodeError, match="appears twice"):
        Nodes(txid=TXID, contacts=[C1, twin])
    with pytest.raises(EncodeError, match="appears twice"):
        Providers(txid=TXID, providers=[C1, C1], contacts=[])
    with pytest.raises(EncodeError, match="Contact objects"):
        Nodes(txid=TXID, contacts=[(C1.node_id, C1.address)])
    with pytest.raises(EncodeError, match="iterable"):
        Nodes(txid=TXID, contacts=b"\x00" * 32)
    # A node may be both a provider and a closer contact.
    both = Providers(txid=TXID, providers=[C1], contacts=[C1])
    assert decode(encode(both)) == both
    assert Nodes(txid=TXID, contacts=iter([C1, C2])).contacts == (C1, C2)


@pytest.mark.parametrize("make", [
    lambda: Ping(txid=bytes(7)),
    lambda: Ping(txid="01234567"),
    lambda: FindNode(txid=TXID, target=bytes(31)),
    lambda: FindValue(txid=TXID, key=bytes(33)),
    lambda: AddProvider(txid=TXID, key=None),
    lambda: Contact(node_id=bytes(31), address=("10.0.0.1", 1)),
    lambda: GetProviders(txid=TXID, key=bytes(32), count=0),
    lambda: GetProviders(txid=TXID, key=bytes(32), count=256),
    lambda: Store(txid=TXID, record=None, cas=None),
    lambda: Store(txid=TXID, record=b"value", cas=None),
    lambda: Store(txid=TXID, record=IMMUTABLE, cas=-1),
    lambda: Store(txid=TXID, record=IMMUTABLE, cas=2**64),
    lambda: Store(txid=TXID, record=IMMUTABLE, cas=True),
    lambda: StoreResult(txid=TXID, status=6),
    lambda: StoreResult(txid=TXID, status="OK"),
    lambda: Error(txid=TXID, code=0, retry_after_ms=0),
    lambda: Error(txid=TXID, code=ErrorCode.BUSY, retry_after_ms=2**32),
    lambda: Error(txid=TXID, code=ErrorCode.BUSY, retry_after_ms=1.5),
    lambda: ImmutableValue(value="text"),
    lambda: MutableValue(signing_public_key=bytes(32), salt=bytes(MAX_SALT_BYTES + 1), seq=0,
                         value=b"", signature=bytes(64)),
    lambda: MutableValue(signing_public_key=bytes(32), salt=b"", seq=2**64, value=b"",
                         signature=bytes(64)),
    lambda: MutableValue(signing_public_key=bytes(32), salt=b"", seq=-1, value=b"",
                         signature=bytes(64)),
    lambda: MutableValue(signing_public_key=bytes(32), salt=b"", seq=0, value=b"",
                         signature=bytes(63)),
    lambda: MutableValue(signing_public_key=bytes(33), salt=b"", seq=0, value=b"",
                         signature=bytes(64)),
])
def test_constructors_refuse_what_cannot_be_sent(make):
    with pytest.raises(EncodeError):
        make()


def test_constructors_normalise_bytes_and_enums():
    ping = Ping(txid=bytearray(TXID))
    assert type(ping.txid) is bytes and ping == Ping(txid=TXID)
    result = StoreResult(txid=memoryview(TXID), status=3)
    assert result.status is StoreStatus.REFUSED_CAS
    assert Error(txid=TXID, code=4, retry_after_ms=0).code is ErrorCode.UNSUPPORTED_VERSION
    assert hash(VALID["providers"]) == hash(decode(VECTORS["providers"]))


def test_messages_are_frozen_slotted_and_keyword_only():
    with pytest.raises(AttributeError):
        VALID["ping"].txid = bytes(8)
    assert not hasattr(VALID["nodes"], "__dict__")
    with pytest.raises(TypeError):
        Ping(TXID)
    with pytest.raises(TypeError, match="not a DHT message type"):
        Message(txid=TXID)


def test_encode_refuses_what_is_not_a_message():
    with pytest.raises(EncodeError):
        encode(C1)
    with pytest.raises(EncodeError):
        encode(b"\x01\x01" + TXID)


def test_decode_refuses_what_is_not_bytes():
    with pytest.raises(TypeError):
        decode(10)  # bytes(10) would be ten zero bytes
    with pytest.raises(TypeError):
        decode("0101")


# -- requests and answers ---------------------------------------------------------------------


def test_requests_and_their_answers():
    requests = {cls for cls in ALL_TYPES if cls.is_request}
    assert requests == {Ping, FindNode, FindValue, Store, AddProvider, GetProviders}
    assert set(RESPONSE_TYPES) == requests
    for cls in ALL_TYPES:
        # The high bit of the type byte says the same, in every version.
        assert cls.is_request == (not cls.TYPE & 0x80)
    assert len({cls.TYPE for cls in ALL_TYPES}) == len(ALL_TYPES)
    for message in VALID.values():
        assert is_request(message) == message.is_request
        for answer in VALID.values():
            expected = message.is_request and type(answer) in RESPONSE_TYPES[type(message)]
            assert message.accepts(answer) == expected
        if message.is_request:
            assert message.accepts(Error(txid=TXID, code=ErrorCode.BUSY, retry_after_ms=0))
    assert VALID["store_immutable"].accepts(VALID["store_result"])
    assert VALID["add_provider"].accepts(VALID["store_result"])
    assert not VALID["find_value"].accepts(VALID["nodes"])


# -- key helpers --------------------------------------------------------------------------------


def test_key_helpers_are_domain_separated_and_unambiguous():
    author = b"\x11" * 32
    assert len(mutable_key(author, b"")) == 32
    assert mutable_key(author, b"a") != mutable_key(author, b"b")
    assert mutable_key(author, b"") != mutable_key(b"\x12" + author[1:], b"")
    assert mutable_key(author, b"") != immutable_key(author)
    # The salt length is part of the signed bytes: salt and value cannot trade bytes.
    assert mutable_signed_bytes(b"ab", 1, b"c") != mutable_signed_bytes(b"a", 1, b"bc")
    assert mutable_signed_bytes(b"", 0, b"").startswith(m.MUTABLE_SIGNATURE_LABEL)
    assert immutable_key(memoryview(b"hello")) == KEY_HELLO


@pytest.mark.parametrize("call", [
    lambda: mutable_key(bytes(31), b""),
    lambda: mutable_key(bytes(32), bytes(MAX_SALT_BYTES + 1)),
    lambda: mutable_signed_bytes(bytes(MAX_SALT_BYTES + 1), 0, b""),
    lambda: mutable_signed_bytes(b"", 2**64, b""),
    lambda: mutable_signed_bytes(b"", -1, b""),
    lambda: mutable_signed_bytes(b"", True, b""),
    lambda: mutable_signed_bytes(b"", 0, bytes(MAX_VALUE_BYTES + 1)),
])
def test_key_helpers_refuse_out_of_range_fields(call):
    with pytest.raises(ValueError):
        call()


# -- the fuzz harness ---------------------------------------------------------------------------


def test_fuzz_harness_over_its_seeds():
    """Every seed of ``fuzz/corpus/dht_codec`` through the harness's own checks
    (as ``tests/engine/test_fuzz_regressions.py`` replays findings); the seeds
    are what ``fuzz/make_dht_seeds.py`` writes today."""
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed for this interpreter")
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    harness = importlib.import_module("fuzz_dht_codec")
    seeds_module = importlib.import_module("make_dht_seeds")
    corpus = FUZZ / "corpus" / "dht_codec"
    on_disk = {path.name: path.read_bytes() for path in corpus.iterdir()}
    assert on_disk == seeds_module.dht_codec_seeds()
    for data in on_disk.values():
        harness.test_one_input(data)
    # The seeds that decode as they are do decode: they start the fuzzer on valid ground.
    for name, data in on_disk.items():
        if not data[0] & 1:
            assert encode(decode(data[1:])) == data[1:], name
