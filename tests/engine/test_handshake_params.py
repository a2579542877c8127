"""The handshake as docs/protocol.md section 6 specifies it for a second implementation.

Covers the points an implementation written from the text alone has to get
right: the size of the derived MAC and cookie keys (6), which transport
parameters are required (6.4), what each side does when the peer's parameters
are missing or out of range (6.4: silence and ``initiations_failed`` on the
responder; a failed connect and ``responses_bad_parameters`` on the initiator)
and the configuration defaults the text quotes (6.5, 6.6).

The peer whose parameters are wrong is played by hand with the public Noise and
packet-layout API, so it can put any bytes in its encrypted payload; the other
side is a real :class:`~stt_proto.endpoint.Endpoint`. Simulated time and seeded
randomness only.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from stt_proto._wire import encode_varint
from stt_proto.config import EndpointConfig
from stt_proto.constants import ErrorCode, PacketKind
from stt_proto.crypto import KeyLimits
from stt_proto.errors import DecodeError
from stt_proto.events import SessionClosed, SessionEstablished
from stt_proto.handshake import (
    MIN_INITIATION_SIZE,
    PROLOGUE,
    SUITES,
    TransportParameters,
    cookie_key,
    encode_initiation,
    encode_response,
    mac1_key,
    parse_initiation_untrusted,
)
from stt_proto.identity import Identity, derive_psk
from stt_proto.noise import HandshakeState

from ..helpers.endpoints import A_ADDR, B_ADDR, SEED, make_endpoint, seeded_rng

#: The five parameters of version 1, by id, with valid values (docs/protocol.md 6.4).
REQUIRED = {
    0x01: ("idle_timeout_ms", 30_000),
    0x02: ("max_datagram_size", 1452),
    0x03: ("initial_max_data", 1 << 20),
    0x04: ("initial_max_stream_data", 1 << 18),
    0x05: ("initial_max_streams", 1024),
}
PADDING = 0x3F


def params(values: dict[int, int], *, extra: bytes = b"", pad_to: int = 0) -> bytes:
    """Encode ``{id: value}`` as ``(id, length, value)`` triples, then ``extra``,
    then a PADDING parameter up to ``pad_to`` bytes if that is more."""
    out = b"".join(
        encode_varint(pid) + encode_varint(len(encode_varint(v))) + encode_varint(v)
        for pid, v in values.items()
    ) + extra
    if len(out) + 3 <= pad_to:
        zeros = pad_to - len(out) - 3  # id (1 byte) + 2-byte length
        out += bytes([PADDING]) + (0x4000 | zeros).to_bytes(2, "big") + bytes(zeros)
    return out


def valid(**changes: int) -> dict[int, int]:
    ids = {name: pid for pid, (name, _) in REQUIRED.items()}
    values = {pid: value for pid, (_, value) in REQUIRED.items()}
    for name, value in changes.items():
        values[ids[name]] = value
    return values


def without(name: str) -> dict[int, int]:
    return {pid: v for pid, v in valid().items() if REQUIRED[pid][0] != name}


#: Payload size that makes an INITIATION exactly MIN_INITIATION_SIZE bytes.
INIT_PAYLOAD = MIN_INITIATION_SIZE - (1 + 1 + 4 + 32 + 48 + 16 + 2 * 16)


# ---------------------------------------------------------------------------
# Section 6: the derived keys
# ---------------------------------------------------------------------------


def test_mac1_and_cookie_keys_are_unkeyed_32_byte_blake2s():
    public = Identity.generate(seeded_rng(1)).node_id
    assert mac1_key(public) == hashlib.blake2s(b"stt-mac1--------" + public).digest()
    assert cookie_key(public) == hashlib.blake2s(b"stt-cookie------" + public).digest()
    assert len(mac1_key(public)) == len(cookie_key(public)) == 32
    # The cookie key is a whole ChaCha20-Poly1305 key, as 6.6 uses it.
    ChaCha20Poly1305(cookie_key(public)).encrypt(bytes(12), bytes(16), b"")


# ---------------------------------------------------------------------------
# Section 6.4: decoding
# ---------------------------------------------------------------------------


def test_all_five_parameters_decode():
    decoded = TransportParameters.decode_untrusted(params(valid(), pad_to=120))
    assert decoded == TransportParameters(**{name: v for name, v in REQUIRED.values()})
    assert decoded.rekey_index is None


def test_a_payload_of_padding_only_is_refused():
    with pytest.raises(DecodeError, match="missing transport parameter"):
        TransportParameters.decode_untrusted(params({}, pad_to=120))
    with pytest.raises(DecodeError, match="missing transport parameter"):
        TransportParameters.decode_untrusted(b"")


@pytest.mark.parametrize("name", [name for name, _ in REQUIRED.values()])
def test_each_parameter_is_required(name):
    with pytest.raises(DecodeError, match=name):
        TransportParameters.decode_untrusted(params(without(name)))


def test_optional_and_unknown_parameters():
    # rekey_index is optional; an unknown id is skipped whatever its bytes; the
    # content of PADDING is not looked at.
    extra = b"\x06\x01\x07" + b"\x20\x03abc" + b"\x3f\x02\xff\xff"
    decoded = TransportParameters.decode_untrusted(params(valid(), extra=extra))
    assert decoded.rekey_index == 7


@pytest.mark.parametrize(("name", "value"), [
    ("max_datagram_size", 1199),
    ("max_datagram_size", 65528),
])
def test_out_of_range_values_are_refused(name, value):
    with pytest.raises(DecodeError, match=name):
        TransportParameters.decode_untrusted(params(valid(**{name: value})))


def test_rekey_index_beyond_32_bits_is_refused():
    with pytest.raises(DecodeError, match="rekey_index"):
        TransportParameters.decode_untrusted(params({**valid(), 0x06: 1 << 32}))


# ---------------------------------------------------------------------------
# Section 6.4: a responder given bad parameters stays silent
# ---------------------------------------------------------------------------


def _initiation(responder_id: bytes, payload: bytes, seed: int = 7) -> bytes:
    """An INITIATION to ``responder_id`` whose encrypted payload is ``payload``."""
    rng = seeded_rng(seed)
    me = Identity.generate(rng)
    hs = HandshakeState(SUITES[0x01], initiator=True, prologue=PROLOGUE, s=me.private_key,
                        rs=responder_id, psks=[derive_psk(SEED)], rng=rng)
    packet, _ = encode_initiation(0x01, 0x1234, hs.write_message(payload), responder_id, None)
    assert len(packet) >= MIN_INITIATION_SIZE
    return packet


def _responder_answer(payload: bytes) -> tuple[list, dict]:
    b = make_endpoint(2)
    b.receive_datagram(_initiation(b.node_id, payload), A_ADDR, 0.0)
    out = b.datagrams_to_send(0.0)
    assert b.next_event() is None
    return out, b.statistics()


def test_responder_answers_complete_parameters():
    out, stats = _responder_answer(params(valid(), pad_to=INIT_PAYLOAD))
    assert [data[0] for data, _ in out] == [PacketKind.RESPONSE]
    assert stats["half_open"] == 1 and stats["initiations_failed"] == 0


@pytest.mark.parametrize("payload", [
    pytest.param(params({}, pad_to=INIT_PAYLOAD), id="padding-only"),
    pytest.param(params(without("initial_max_data"), pad_to=INIT_PAYLOAD), id="one-missing"),
    pytest.param(params(valid(max_datagram_size=1199), pad_to=INIT_PAYLOAD), id="mds-1199"),
    pytest.param(params({**valid(), 0x01: 5}, extra=b"\x01\x01\x05", pad_to=INIT_PAYLOAD),
                 id="duplicate"),
])
def test_responder_drops_bad_parameters_silently(payload):
    out, stats = _responder_answer(payload)
    # Nothing on the wire, no state (not even the replay-cache entry), one count.
    assert out == []
    assert stats["initiations_failed"] == 1
    assert (stats["half_open"], stats["sessions"], stats["replay_cache"]) == (0, 0, 0)


# ---------------------------------------------------------------------------
# Section 6.4: an initiator given bad parameters fails the connect at once
# ---------------------------------------------------------------------------


class _HandResponder:
    """Plays the responder at B_ADDR with the public API, so its RESPONSE can
    carry any payload."""

    def __init__(self) -> None:
        self.rng = seeded_rng(2)
        self.identity = Identity.generate(self.rng)
        self.node_id = self.identity.node_id

    def answer(self, initiation: bytes, payload: bytes) -> bytes:
        msg = parse_initiation_untrusted(initiation)
        hs = HandshakeState(SUITES[msg.suite], initiator=False, prologue=PROLOGUE,
                            s=self.identity.private_key, psks=[derive_psk(SEED)], rng=self.rng)
        hs.read_message(msg.noise)
        return encode_response(0x5678, msg.sender_index, hs.write_message(payload),
                               hs.remote_static)


def _connect_to_hand(payload: bytes, **config):
    a = make_endpoint(1, **config)
    b = _HandResponder()
    sid = a.connect(B_ADDR, b.node_id, now=0.0)
    ((initiation, dst),) = a.datagrams_to_send(0.0)
    assert dst == B_ADDR
    a.receive_datagram(b.answer(initiation, payload), B_ADDR, 0.01)
    events = []
    while (event := a.next_event()) is not None:
        events.append(event)
    return a, b, sid, events


def test_initiator_accepts_complete_parameters():
    a, _, sid, events = _connect_to_hand(params(valid()))
    assert [type(e) for e in events] == [SessionEstablished]
    assert a.statistics()["responses_bad_parameters"] == 0


@pytest.mark.parametrize("payload", [
    pytest.param(b"", id="empty"),
    pytest.param(params(without("initial_max_streams")), id="one-missing"),
    pytest.param(params(valid(max_datagram_size=1199)), id="mds-1199"),
])
def test_initiator_fails_the_connect_on_bad_parameters(payload):
    a, _, sid, events = _connect_to_hand(payload)
    assert len(events) == 1 and isinstance(events[0], SessionClosed)
    closed = events[0]
    assert (closed.session_id, closed.reason, closed.error_code) == (
        sid, "error", int(ErrorCode.PROTOCOL_VIOLATION))
    stats = a.statistics()
    assert stats["responses_bad_parameters"] == 1
    assert (stats["sessions"], stats["pending_connects"], stats["indices"]) == (0, 0, 0)
    # Nothing is sent to the responder: its half-open session expires (6.3).
    assert a.datagrams_to_send(0.01) == []
    assert a.get_timer() is None


def test_a_rekey_response_with_bad_parameters_is_counted_and_the_session_lives_on():
    limits = KeyLimits(rekey_after_time=1.0)
    a, b, sid, events = _connect_to_hand(params(valid()), key_limits=limits)
    assert [type(e) for e in events] == [SessionEstablished]
    a.datagrams_to_send(0.01)  # the confirming PING; the hand responder ignores it
    now = 0.01
    rekey = None
    while rekey is None:
        now = a.get_timer()
        assert now is not None and now < 5.0
        a.handle_timer(now)
        for data, _ in a.datagrams_to_send(now):
            if data[0] == PacketKind.INITIATION:
                rekey = data
    a.receive_datagram(b.answer(rekey, params(valid(max_datagram_size=1199))), B_ADDR, now)
    assert a.next_event() is None
    stats = a.statistics()
    assert stats["responses_bad_parameters"] == 1
    assert stats["rekeys_completed"] == 0 and stats["sessions"] == 1
    # The rekey is retried as after a lost RESPONSE, and a good answer completes it.
    retry = None
    while retry is None:
        now = a.get_timer()
        assert now is not None and now < 10.0
        a.handle_timer(now)
        retry = next((d for d, _ in a.datagrams_to_send(now)
                      if d[0] == PacketKind.INITIATION), None)
    a.receive_datagram(b.answer(retry, params(valid())), B_ADDR, now)
    assert a.statistics()["rekeys_completed"] == 1


# ---------------------------------------------------------------------------
# Sections 6.5 and 6.6: the defaults the text quotes
# ---------------------------------------------------------------------------


def test_default_ciphers_and_cookie_threshold():
    config = EndpointConfig(identity=Identity.generate(seeded_rng(3)), shared_seed=SEED)
    assert config.cipher == "AESGCM"
    assert config.accepted_ciphers == frozenset({"AESGCM", "ChaChaPoly"})
    assert config.handshakes_per_second_before_cookies == 500
    assert config.max_half_open == 1024
    assert config.cookie_secret_lifetime == 120
