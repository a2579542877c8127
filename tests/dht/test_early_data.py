"""A DHT request inside the handshake (docs/protocol.md 6.9): the INITIATION carries
it, the RESPONSE carries the answer. Only a member can read the answer, a RESPONSE
never outgrows its INITIATION, a replayed INITIATION gets no second answer, the
asker enters no routing table before its session is confirmed, and a DHT
retransmission during the handshake retries the handshake."""

from __future__ import annotations

import random

import pytest

import stt_proto.handshaking as handshaking
from stt_proto.config import EndpointConfig
from stt_proto.dht.config import DhtConfig
from stt_proto.dht.messages import FindNode, Nodes, Store, ImmutableValue, decode, encode
from stt_proto.dht.node import DhtNode
from stt_proto.endpoint import Endpoint
from stt_proto.events import DhtMessageReceived, SessionClosed, SessionEstablished
from stt_proto.handshake import MAX_HANDSHAKE_SIZE, TransportParameters
from stt_proto.identity import Identity
from stt_proto.overlay import OverlayHost

SEED = b"early data test network seed"
A, B = ("10.0.0.1", 4000), ("10.0.0.2", 4000)


def endpoint(rng: random.Random, seed: bytes = SEED) -> Endpoint:
    return Endpoint(EndpointConfig(identity=Identity.generate(rng.randbytes), shared_seed=seed,
                                   rng=rng.randbytes))


def events(ep) -> list:
    out = []
    while (event := ep.next_event()) is not None:
        out.append(event)
    return out


def deliver(src, src_address, dst, now: float) -> list[bytes]:
    """Everything ``src`` has to send, handed to ``dst``; returns the datagrams."""
    sent = [data for data, _ in src.datagrams_to_send(now)]
    for data in sent:
        dst.receive_datagram(data, src_address, now)
    return sent


class Handler:
    """An early-DHT handler that records its calls and answers with ``reply``."""

    def __init__(self, reply=lambda request, max_bytes: b"answer to " + request) -> None:
        self.calls: list[tuple[bytes, bytes, int]] = []
        self.reply = reply

    def __call__(self, peer_id, address, request, max_bytes, now):
        self.calls.append((peer_id, request, max_bytes))
        return self.reply(request, max_bytes)


def test_the_answer_comes_back_in_the_response_one_round_trip_after_connect():
    rng = random.Random(1)
    a, b = endpoint(rng), endpoint(rng)
    handler = Handler()
    b.set_early_dht_handler(handler)
    session = a.connect(B, b.node_id, now=0.0, early_dht=b"find me")
    (initiation,) = deliver(a, A, b, 0.0)
    assert len(initiation) == MAX_HANDSHAKE_SIZE  # padded: room for the answer
    assert handler.calls == [(a.node_id, b"find me", handler.calls[0][2])]
    (response,) = deliver(b, B, a, 0.05)
    assert len(response) <= len(initiation)
    got = events(a)
    assert [type(e) for e in got] == [SessionEstablished, DhtMessageReceived]
    assert got[1].session_id == session and got[1].data == b"answer to find me"
    assert a.statistics()["early_dht_answers_received"] == 1
    assert b.statistics()["early_dht_answered"] == 1
    # Nothing was resent: the session carries only the confirmation.
    deliver(a, A, b, 0.1)
    assert not [e for e in events(b) if isinstance(e, DhtMessageReceived)]


def test_without_an_answer_the_request_goes_over_the_session():
    rng = random.Random(2)
    a, b = endpoint(rng), endpoint(rng)  # b answers nothing early
    a.connect(B, b.node_id, now=0.0, early_dht=b"find me")
    deliver(a, A, b, 0.0)
    deliver(b, B, a, 0.05)
    assert [type(e) for e in events(a)] == [SessionEstablished]
    assert a.statistics()["early_dht_resent"] == 1
    deliver(a, A, b, 0.1)
    received = [e.data for e in events(b) if isinstance(e, DhtMessageReceived)]
    assert received == [b"find me"]


def test_a_request_too_large_to_carry_is_sent_after_the_handshake():
    rng = random.Random(3)
    a, b = endpoint(rng), endpoint(rng)
    handler = Handler()
    b.set_early_dht_handler(handler)
    big = bytes(handshaking.MAX_EARLY_DHT_REQUEST + 1)
    a.connect(B, b.node_id, now=0.0, early_dht=big)
    (initiation,) = deliver(a, A, b, 0.0)
    assert len(initiation) < MAX_HANDSHAKE_SIZE and handler.calls == []
    deliver(b, B, a, 0.05)
    events(a)
    deliver(a, A, b, 0.1)
    assert [e.data for e in events(b) if isinstance(e, DhtMessageReceived)] == [big]


def test_a_non_member_cannot_read_the_answer():
    """The INITIATION is not authenticated by the network's PSK, so the responder
    may compute an answer for a non-member; the RESPONSE seals it with keys that
    mix the PSK: the outsider can neither read it nor complete the handshake."""
    rng = random.Random(4)
    outsider, b = endpoint(rng, seed=b"another network's seed"), endpoint(rng)
    secret = b"contacts only members may see " * 3
    b.set_early_dht_handler(Handler(lambda request, max_bytes: secret))
    outsider.connect(B, b.node_id, now=0.0, early_dht=b"find me")
    deliver(outsider, A, b, 0.0)
    (response,) = deliver(b, B, outsider, 0.05)
    assert secret not in response and secret[:16] not in response
    got = events(outsider)
    assert not [e for e in got if isinstance(e, DhtMessageReceived)]
    assert [e.reason for e in got if isinstance(e, SessionClosed)] == ["auth_failure"]
    assert outsider.statistics()["early_dht_answers_received"] == 0


def test_the_response_never_outgrows_its_initiation(monkeypatch):
    """A handler given max_bytes and answering exactly that fills the RESPONSE to
    at most the INITIATION's size; one answering more is left out. An INITIATION
    padded less (a hostile or older sender) gets a proportionally smaller budget."""
    for pad_size in (MAX_HANDSHAKE_SIZE, 400):
        rng = random.Random(pad_size)
        a, b = endpoint(rng), endpoint(rng)
        handler = Handler(lambda request, max_bytes: bytes(max_bytes))
        b.set_early_dht_handler(handler)
        monkeypatch.setattr(handshaking, "MAX_HANDSHAKE_SIZE", pad_size)
        a.connect(B, b.node_id, now=0.0, early_dht=b"find me")
        (initiation,) = [data for data, _ in a.datagrams_to_send(0.0)]
        monkeypatch.undo()
        assert len(initiation) == pad_size
        b.receive_datagram(initiation, A, 0.0)
        (response,) = deliver(b, B, a, 0.0)
        assert len(response) <= len(initiation)
        assert len(response) >= len(initiation) - 4  # the budget is used, not wasted
        assert b.statistics()["amplification_refused"] == 0
        assert [e.data for e in events(a) if isinstance(e, DhtMessageReceived)] == \
            [bytes(handler.calls[0][2])]
    rng = random.Random(5)
    a, b = endpoint(rng), endpoint(rng)
    b.set_early_dht_handler(Handler(lambda request, max_bytes: bytes(max_bytes + 1)))
    a.connect(B, b.node_id, now=0.0, early_dht=b"find me")
    (initiation,) = deliver(a, A, b, 0.0)
    (response,) = deliver(b, B, a, 0.0)
    assert len(response) < len(initiation) // 2
    assert b.statistics()["early_dht_unanswered"] == 1
    assert a.statistics()["early_dht_resent"] == 1


def test_a_replayed_initiation_gets_no_second_answer():
    rng = random.Random(6)
    a, b = endpoint(rng), endpoint(rng)
    handler = Handler()
    b.set_early_dht_handler(handler)
    a.connect(B, b.node_id, now=0.0, early_dht=b"find me")
    (initiation,) = [data for data, _ in a.datagrams_to_send(0.0)]
    b.receive_datagram(initiation, A, 0.0)
    first = b.datagrams_to_send(0.0)
    b.receive_datagram(initiation, A, 0.5)            # a replay, from the same address
    b.receive_datagram(initiation, ("10.9.9.9", 1), 0.6)  # and from elsewhere
    assert len(first) == 1 and b.datagrams_to_send(0.6) == []
    assert len(handler.calls) == 1
    assert b.statistics()["initiations_replayed"] == 2
    assert b.statistics()["early_dht_answered"] == 1


def test_transport_parameters_carry_early_bytes_and_old_decoders_skip_them():
    params = TransportParameters(early_dht=b"\x00\x01 any bytes")
    assert TransportParameters.decode_untrusted(params.encode()).early_dht == b"\x00\x01 any bytes"
    assert TransportParameters.decode_untrusted(TransportParameters().encode()).early_dht is None
    assert TransportParameters.decode_untrusted(
        TransportParameters(early_dht=b"").encode()).early_dht == b""


# -- the DHT's side --------------------------------------------------------------------------

def dht_node(rng: random.Random, **config) -> DhtNode:
    return DhtNode(Identity.generate(rng.randbytes).node_id, DhtConfig(**config),
                   rng=rng.randbytes)


def test_the_dht_answers_lookups_early_but_keeps_the_asker_out_of_its_table():
    rng = random.Random(7)
    node = dht_node(rng)
    for _ in range(30):
        node.table.seen(rng.randbytes(32), ("10.1.%d.1" % rng.randrange(250), 4000), now=0.0)
    asker = rng.randbytes(32)
    answer = node.answer_early(asker, A, encode(FindNode(txid=b"12345678", target=asker)),
                               max_bytes=300, now=1.0)
    message = decode(answer)
    assert isinstance(message, Nodes) and message.txid == b"12345678"
    assert len(answer) <= 300 and 0 < len(message.contacts) < 20  # trimmed to fit
    assert asker not in [c.node_id for c in node.table.contacts()]
    node.peer_confirmed(rng.randbytes(32), B, now=1.1)   # never answered: nothing
    assert len(node.table) == 30
    node.peer_confirmed(asker, A, now=1.2)
    assert asker in [c.node_id for c in node.table.contacts()]
    assert node.stats["requests_answered_early"] == 1


def test_the_dht_answers_nothing_early_that_would_change_its_state():
    rng = random.Random(8)
    node = dht_node(rng, requests_per_second=2.0)
    asker = rng.randbytes(32)
    store = encode(Store(txid=b"abcdefgh", record=ImmutableValue(value=b"v"), cas=None))
    assert node.answer_early(asker, A, store, max_bytes=1000, now=0.0) is None
    assert node.answer_early(asker, A, b"\xff garbage", max_bytes=1000, now=0.0) is None
    assert node.values.get(bytes(32), now=0.0) is None
    find = encode(FindNode(txid=b"abcdefgh", target=asker))
    answers = [node.answer_early(asker, A, find, max_bytes=1000, now=0.0) for _ in range(6)]
    assert sum(a is not None for a in answers) == 4  # the token bucket: 2 * rate
    assert node.stats["messages_received"] == 0


def test_early_answers_remember_a_bounded_number_of_askers():
    rng = random.Random(9)
    node = dht_node(rng, max_rate_tracked_peers=5)
    askers = [rng.randbytes(32) for _ in range(8)]
    for asker in askers:
        assert node.answer_early(asker, A, encode(FindNode(txid=b"t" * 8, target=asker)),
                                 max_bytes=1000, now=0.0) is not None
    assert len(node._early_peers) == 5
    node.peer_confirmed(askers[0], A, now=0.1)  # forgotten: not added on its word
    assert askers[0] not in [c.node_id for c in node.table.contacts()]


def test_a_retransmission_during_the_handshake_retries_it_and_is_not_queued_twice():
    rng = random.Random(10)
    ep = endpoint(rng)
    host = OverlayHost(ep)
    peer = Identity.generate(rng.randbytes).node_id
    host.pool.send_dht(peer, B, b"request", now=0.0)
    assert len(ep.datagrams_to_send(0.0)) == 1
    host.pool.send_dht(peer, B, b"other", now=0.01)       # queued, no new INITIATION
    assert ep.datagrams_to_send(0.01) == []
    host.pool.send_dht(peer, B, b"request", now=0.2)      # the DHT's retransmission
    host.pool.send_dht(peer, B, b"other", now=0.3)
    assert len(ep.datagrams_to_send(0.3)) == 2
    assert host.pool.stats["pool_connect_retries"] == 2
    assert host.pool._peers[peer].queue == [b"other"]


@pytest.mark.parametrize("early", [True, False])
def test_detaching_the_dht_stops_early_answers(early):
    rng = random.Random(11)
    ep = endpoint(rng)
    host = OverlayHost(ep)
    dht = DhtNode(ep.node_id, DhtConfig(), rng=rng.randbytes)
    host.attach_dht(dht)
    if not early:
        host.detach_dht()
    a = endpoint(rng)
    a.connect(B, ep.node_id, now=0.0, early_dht=encode(FindNode(txid=b"t" * 8, target=bytes(32))))
    deliver(a, A, host, 0.0)
    deliver(host, B, a, 0.0)
    got = [e for e in events(a) if isinstance(e, DhtMessageReceived)]
    assert bool(got) is early
