"""Endpoints in memory: handshakes, protected packets, failures and DoS defences.

No sockets and no clock: datagrams are handed from one endpoint to the other by
the ``Net`` helper, and time only moves when a test moves it.
"""

from __future__ import annotations

import random

import pytest

from stt_proto import handshake as hs
from stt_proto.config import EndpointConfig
from stt_proto.constants import DATA_HEADER_SIZE
from stt_proto.crypto import KeyLimits
from stt_proto.events import DatagramReceived, SessionClosed, SessionEstablished
from stt_proto.identity import Identity

from ..helpers.endpoints import (
    A_ADDR,
    B_ADDR,
    SEED,
    Net,
    connect,
    exchange,
    make_endpoint,
    seeded_rng,
)


@pytest.fixture
def pair():
    a, b = make_endpoint(1), make_endpoint(2)
    return a, b, Net((a, A_ADDR), (b, B_ADDR))


# --- handshake and protected packets ----------------------------------------------


def test_handshake_and_datagrams_both_ways(pair):
    a, b, net = pair
    sid_a, sid_b = connect(a, b, net)
    exchange(a, b, net, sid_a, sid_b, b"hello")
    assert a.statistics()["handshakes_completed"] == 1
    assert b.statistics()["handshakes_completed"] == 1
    assert a.session_info(sid_a)["peer_id"] == b.node_id


def test_one_round_trip_handshake_sizes_cannot_amplify(pair):
    a, b, net = pair
    a.connect(B_ADDR, b.node_id, now=0.0)
    (initiation,) = net.collect()
    assert len(initiation[0]) >= hs.MIN_INITIATION_SIZE
    net.deliver([initiation])
    (response,) = net.collect()
    assert response[0][0] == 0x02
    assert len(response[0]) < len(initiation[0])
    stats = b.statistics()
    assert stats["handshake_bytes_sent_unvalidated"] <= stats["handshake_bytes_received_unvalidated"]
    # The responder sends nothing else and reports nothing until confirmed.
    assert net.of(b) == []


def test_damaged_and_replayed_packets_are_dropped_and_counted(pair):
    a, b, net = pair
    sid_a, sid_b = connect(a, b, net)
    a.send_datagram(sid_a, b"genuine", now=net.now)
    ((genuine, src, dst),) = net.collect()
    rng = random.Random(7)
    bad = [genuine[:k] for k in (0, 1, 5, DATA_HEADER_SIZE, len(genuine) - 1)]
    for i in range(len(genuine)):
        flipped = bytearray(genuine)
        flipped[i] ^= 1 << rng.randrange(8)
        bad.append(bytes(flipped))
    bad.append(genuine[:DATA_HEADER_SIZE] + rng.randbytes(40))  # forged body, real header
    bad.append(bytes([4]) + rng.randbytes(60))  # forged, random index
    net.deliver([(p, src, dst) for p in bad])
    assert net.of(b, DatagramReceived) == []
    net.deliver([(genuine, src, dst)])
    net.deliver([(genuine, src, dst)])  # replayed
    assert net.of(b, DatagramReceived) == [DatagramReceived(session_id=sid_b, data=b"genuine")]
    stats = b.statistics()
    dropped = stats["dropped_undecodable"] + stats["dropped_unauthenticated"] + \
        stats["dropped_unknown_index"]
    assert dropped == len(bad) + 1
    assert net.of(b, SessionClosed) == []
    exchange(a, b, net, sid_a, sid_b, b"still alive")


def test_reordered_beyond_the_replay_window_is_dropped(pair):
    a, b, net = pair
    sid_a, sid_b = connect(a, b, net)
    a.send_datagram(sid_a, b"old", now=net.now)
    (old,) = net.collect()
    for i in range(5000):  # more packets than the replay window
        a.send_datagram(sid_a, b"%d" % i, now=net.now)
        net.run(net.now + 0.001)
    assert a.session_info(sid_a)["packets_sent"] > 4096 + 1
    received = len(net.of(b, DatagramReceived))
    net.deliver([old])
    assert len(net.of(b, DatagramReceived)) == received
    assert b.session_info(sid_b)["too_old"] + b.session_info(sid_b).get("replayed", 0) >= 1


def test_reordered_within_the_window_is_delivered_once(pair):
    a, b, net = pair
    sid_a, sid_b = connect(a, b, net)
    for i in range(50):
        a.send_datagram(sid_a, b"%d" % i, now=net.now)
    packets = net.collect()
    random.Random(3).shuffle(packets)
    net.deliver(packets + packets[:10])
    got = sorted(int(e.data) for e in net.of(b, DatagramReceived))
    assert got == list(range(50))


# --- failures the application must see --------------------------------------------------


def test_different_seed_fails_with_auth_failure_within_one_round_trip():
    a = make_endpoint(1)
    b = make_endpoint(2, shared_seed=b"another network's seed")
    net = Net((a, A_ADDR), (b, B_ADDR))
    sid = a.connect(B_ADDR, b.node_id, now=0.0, timeout=10.0)
    net.deliver(net.collect())  # initiation
    net.deliver(net.collect())  # response
    net.collect()
    (closed,) = net.of(a, SessionClosed)
    assert closed.session_id == sid and closed.reason == "auth_failure"
    assert a.statistics()["auth_failures"] == 1
    assert net.of(b) == []
    net.run(60.0)
    assert b.statistics()["handshakes_unconfirmed"] == 1
    assert b.statistics()["sessions"] == 0 and b.statistics()["half_open"] == 0


def test_wrong_peer_id_gets_silence_and_a_timeout(pair):
    a, b, net = pair
    wrong = Identity.generate(seeded_rng(99)).node_id
    sid = a.connect(B_ADDR, wrong, now=0.0, timeout=5.0)
    sent_by_b = []
    for _ in range(20):
        packets = net.collect()
        sent_by_b += [p for p in packets if p[1] == B_ADDR]
        net.deliver(packets)
        t = a.get_timer()
        if t is None:
            break
        net.now = t
        a.handle_timer(net.now)
    net.collect()
    assert sent_by_b == []
    (closed,) = net.of(a, SessionClosed)
    assert closed.session_id == sid and closed.reason == "timeout"
    assert net.now == pytest.approx(5.0)
    assert b.statistics()["initiations_bad_mac"] >= 3  # 0 s, 1 s, 3 s retransmissions
    assert b.statistics()["sessions"] == 0


def test_initiation_is_retransmitted_with_backoff(pair):
    a, b, net = pair
    sent_at = []

    def drop(data, src, dst):
        if data[0] == 0x01:
            sent_at.append(net.now)
            return len(sent_at) <= 3  # lose the first three initiations
        return False

    a.connect(B_ADDR, b.node_id, now=0.0, timeout=20.0)
    net.run(20.0, drop=drop)
    assert sent_at[:4] == [0.0, 1.0, 3.0, 7.0]
    assert len(net.of(a, SessionEstablished)) == 1


def test_late_response_to_an_earlier_attempt_still_connects(pair):
    a, b, net = pair
    a.connect(B_ADDR, b.node_id, now=0.0, timeout=20.0)
    (first,) = net.collect()
    net.now = 1.0
    a.handle_timer(1.0)  # retransmission; the first attempt stays valid
    second = net.collect()
    assert len(second) == 1
    net.deliver([first])
    net.run(2.0)
    assert len(net.of(a, SessionEstablished)) == 1


def test_close_is_seen_by_both_sides_as_graceful(pair):
    a, b, net = pair
    sid_a, sid_b = connect(a, b, net)
    a.close(sid_a, now=net.now)
    net.run(net.now + 0.1)
    assert [e.reason for e in net.of(a, SessionClosed)] == ["graceful"]
    assert [e.reason for e in net.of(b, SessionClosed)] == ["graceful"]
    with pytest.raises(KeyError):
        a.send_datagram(sid_a, b"x", now=net.now)


def test_idle_peer_times_out_and_keep_alive_keeps_sessions_open(pair):
    a, b, net = pair
    sid_a, sid_b = connect(a, b, net)
    net.run(net.now + 100.0)  # keep-alives flow both ways: nobody times out
    assert net.of(a, SessionClosed) == [] and net.of(b, SessionClosed) == []
    start = net.now
    net.run(start + 100.0, drop=lambda d, s, t: s == B_ADDR)  # b vanishes
    closed = net.of(a, SessionClosed)
    assert [c.reason for c in closed] == ["timeout"]


# --- keys ------------------------------------------------------------------------------------


def test_rekey_under_continuous_traffic_loses_and_duplicates_nothing():
    limits = KeyLimits(rekey_after_time=2.0, reject_after_time=4.0, rekey_after_packets=150,
                       reject_after_packets=400, previous_key_grace=1.0)
    a = make_endpoint(1, key_limits=limits)
    b = make_endpoint(2, key_limits=limits)
    net = Net((a, A_ADDR), (b, B_ADDR))
    sid_a, sid_b = connect(a, b, net)
    in_flight: list = []
    sent = 0
    # 20 s of traffic, a datagram each way every 10 ms, every packet delayed by
    # one step (so packets sealed under old keys arrive after the switch).
    for step in range(2000):
        net.now += 0.01
        for ep in (a, b):
            t = ep.get_timer()
            if t is not None and t <= net.now:
                ep.handle_timer(net.now)
        a.send_datagram(sid_a, b"%d" % step, now=net.now)
        b.send_datagram(sid_b, b"%d" % step, now=net.now)
        sent += 1
        net.deliver(in_flight)
        in_flight = net.collect()
    net.deliver(in_flight)
    net.run(net.now + 0.5)
    got_b = [int(e.data) for e in net.of(b, DatagramReceived)]
    got_a = [int(e.data) for e in net.of(a, DatagramReceived)]
    assert got_b == list(range(sent)) and got_a == list(range(sent))
    assert a.statistics()["rekeys_completed"] + b.statistics()["rekeys_completed"] >= 8
    assert net.of(a, SessionClosed) == [] and net.of(b, SessionClosed) == []


# --- denial of service ------------------------------------------------------------------------


def test_flood_of_forged_initiations_stays_within_limits_and_cookies_let_a_peer_in():
    b = make_endpoint(2, max_half_open=64, replay_cache_size=256,
                      handshakes_per_second_before_cookies=50.0)
    a = make_endpoint(1)
    net = Net((a, A_ADDR), (b, B_ADDR))
    rng = random.Random(5)
    # One genuine initiation, captured, to replay.
    a_probe = make_endpoint(3)
    a_probe.connect(B_ADDR, b.node_id, now=0.0)
    ((genuine, _),) = a_probe.datagrams_to_send(0.0)
    received = sent = 0
    for i in range(100_000):
        kind = i % 3
        src = (f"192.0.2.{rng.randrange(256)}", rng.randrange(1, 65536))  # spoofed
        if kind == 0:  # random garbage with a wrong mac1
            data = bytes([1, 1]) + rng.randbytes(hs.MIN_INITIATION_SIZE - 2)
        elif kind == 1:  # replay of a genuine initiation
            data = genuine
        else:  # knows our node id: valid mac1 around garbage
            body = bytes([1, 1]) + rng.randbytes(hs.MIN_INITIATION_SIZE - 2 - 32)
            m1 = hs.mac(hs.mac1_key(b.node_id), body)
            data = body + m1 + bytes(16)
        net.now = i * 1e-5  # 100,000 packets in one second
        b.receive_datagram(data, src, net.now)
        received += len(data)
        for out, _ in b.datagrams_to_send(net.now):
            sent += len(out)
            assert len(out) <= len(data)
    stats = b.statistics()
    assert sent <= received
    assert stats["half_open"] <= 64 and stats["replay_cache"] <= 256
    assert stats["sessions"] <= 64
    assert stats["initiations_bad_mac"] >= 33_000
    assert stats["cookie_replies_sent"] > 0
    # A legitimate initiator still gets through, via a cookie, while the load lasts.
    sid = a.connect(B_ADDR, b.node_id, now=net.now, timeout=5.0)
    before = b.statistics()["cookie_replies_sent"]
    net.run(net.now + 2.0)
    assert [e.session_id for e in net.of(a, SessionEstablished)] == [sid]
    assert a.statistics()["cookie_replies_received"] >= 1
    assert b.statistics()["cookie_replies_sent"] > before


def test_half_open_and_session_limits_are_counted():
    b = make_endpoint(2, max_half_open=4, handshakes_per_second_before_cookies=1e9)
    net_eps = [(b, B_ADDR)]
    initiators = [make_endpoint(10 + i) for i in range(8)]
    for i, ep in enumerate(initiators):
        net_eps.append((ep, ("10.0.1.%d" % i, 1000)))
    net = Net(*net_eps)
    for ep in initiators:
        ep.connect(B_ADDR, b.node_id, now=0.0)
    # Nobody confirms (DATA packets are lost), so everything stays half-open.
    # Half-way to the limit the responder demands cookies; the initiators echo
    # them, and past the limit their initiations are refused and counted.
    net.run(0.5, drop=lambda data, src, dst: data[0] == 0x04)
    stats = b.statistics()
    assert stats["half_open"] == 4
    assert stats["cookie_replies_sent"] >= 4
    assert stats["initiations_rejected_limit"] >= 4
    assert net.of(b) == []


def test_config_validation():
    ident = Identity.generate(seeded_rng(1))
    with pytest.raises(ValueError):
        EndpointConfig(identity=ident, shared_seed=b"short")
    with pytest.raises(ValueError):
        EndpointConfig(identity=ident, shared_seed=SEED, cipher="DES")
    with pytest.raises(ValueError):
        EndpointConfig(identity=ident, shared_seed=SEED, idle_timeout=5, keep_alive_interval=10)
    assert "network seed" not in repr(EndpointConfig(identity=ident, shared_seed=SEED))


def test_connect_argument_checks(pair):
    a, b, net = pair
    with pytest.raises(ValueError):
        a.connect(B_ADDR, b"short", now=0.0)
    with pytest.raises(ValueError):
        a.connect(B_ADDR, a.node_id, now=0.0)


@pytest.mark.parametrize("cipher", ["AESGCM", "ChaChaPoly"])
def test_both_cipher_suites(cipher):
    a = make_endpoint(1, cipher=cipher)
    b = make_endpoint(2)
    net = Net((a, A_ADDR), (b, B_ADDR))
    sid_a, sid_b = connect(a, b, net)
    exchange(a, b, net, sid_a, sid_b, cipher.encode())


def test_responder_refuses_a_cipher_it_does_not_accept():
    a = make_endpoint(1, cipher="ChaChaPoly")
    b = make_endpoint(2, accepted_ciphers=frozenset({"AESGCM"}))
    net = Net((a, A_ADDR), (b, B_ADDR))
    a.connect(B_ADDR, b.node_id, now=0.0, timeout=2.0)
    net.run(3.0)
    assert [e.reason for e in net.of(a, SessionClosed)] == ["timeout"]
    assert b.statistics()["initiations_failed"] >= 1


def test_an_unreachable_address_fails_pending_connects_only(pair):
    a, b, net = pair
    sid_a, sid_b = connect(a, b, net)
    c_addr = ("10.0.0.3", 3000)
    pending = a.connect(c_addr, make_endpoint(3).node_id, now=net.now)
    other = a.connect(("10.0.0.4", 4000), make_endpoint(4).node_id, now=net.now)
    assert a.address_unreachable(c_addr, now=net.now, reason="port unreachable") == [pending]
    closed = [e for e in _drain(a) if isinstance(e, SessionClosed)]
    assert [(e.session_id, e.reason, e.message) for e in closed] == [
        (pending, "error", "port unreachable")]
    # An ICMP message is not authenticated: established sessions never close on
    # one, and other connects go on.
    assert a.address_unreachable(B_ADDR, now=net.now) == []
    assert [e for e in _drain(a) if isinstance(e, SessionClosed)] == []
    assert a.statistics()["pending_connects"] == 1 and other != pending
    exchange(a, b, net, sid_a, sid_b, b"still fine")


def _drain(ep):
    out = []
    while (event := ep.next_event()) is not None:
        out.append(event)
    return out
