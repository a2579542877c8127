"""Sessions that follow their peer to a new address (path validation,
``docs/protocol.md`` 7.11), in the simulator: a client whose address changes in
the middle of a transfer, in either direction; both peers at once; and an
attacker who races a copy of a genuine packet from its own address.

Every transfer must end with every byte delivered, in order, with no stream
reset; the session must move only after the peer answered a PATH_CHALLENGE at
the new address; and after a move the receiver must be fed again within one
round trip plus one probe timeout.
"""

from __future__ import annotations

import random

import pytest

from stt_proto.congestion import CONGESTION_CONTROLLERS, Pacer, create_congestion_controller
from stt_proto.congestion.base import initial_window
from stt_proto.endpoint import Endpoint
from stt_proto.events import (
    MessageReceived,
    SessionClosed,
    SessionMigrated,
    SessionResumed,
    SessionSuspended,
    StreamReset,
)
from stt_proto.recovery import K_INITIAL_RTT, PacketRecovery
from stt_proto.testing import Link, Network
from tests.helpers.sim_streams import Workload, connect

RTT = 0.05
MESSAGES = 120
SIZE = 16 * 1024


def setup(seed: int, *, bandwidth: float = 10e6):
    net = Network(seed, default_link=Link(latency=RTT / 2, bandwidth=bandwidth,
                                          queue_bytes=200_000))
    client, server = net.add_node("client"), net.add_node("server")
    sid_c, sid_s = connect(net, client, server)
    work = Workload(net, client, server, sid_c, sid_s)
    return net, client, server, work


def deliveries(node, work, side: str) -> list[float]:
    """Record when each message arrives at ``node`` (wrapping the workload's handler)."""
    times: list[float] = []
    handler = node.on_event

    def on_event(n, event):
        if type(event) is MessageReceived:
            times.append(n.network.now)
        handler(n, event)
    node.on_event = on_event
    return times


def watch(node, *kinds) -> list:
    seen: list = []
    handler = node.on_event

    def on_event(n, event):
        if type(event) in kinds:
            seen.append(event)
        handler(n, event)
    node.on_event = on_event
    return seen


def longest_gap_after(times: list[float], moment: float) -> float:
    before = [t for t in times if t <= moment]
    after = [t for t in times if t > moment]
    assert after, "nothing arrived after the move"
    points = ([before[-1]] if before else [moment]) + after
    return max(b - a for a, b in zip(points, points[1:]))


def bound(node, sid) -> float:
    """One RTT plus one probe timeout of ``node``'s session as it stands (call
    it at the move, on the side whose probe timeout finds out), plus the time
    two messages take on the link (the gap is measured between whole messages)."""
    rtt = node.endpoint._table.get(sid).core.recovery.rtt
    return rtt.smoothed_rtt + rtt.pto_interval(node.endpoint._config.max_ack_delay) \
        + 2 * SIZE / 10e6


def transfer(work, sender: str, seed: int) -> None:
    rng = random.Random(seed)
    work.add(sender, 4, [rng.randbytes(SIZE) for _ in range(MESSAGES)])


@pytest.mark.parametrize("seed", [1, 2])
def test_client_moves_while_sending(seed):
    net, client, server, work = setup(seed)
    transfer(work, "a", seed)
    arrived = deliveries(server, work, "b")
    moved = watch(server, SessionMigrated, StreamReset)
    work.start()
    net.run(until=net.now + 0.3)
    old, moment = client.address, net.now
    # The sender finds out by its probe timeout: its ACKs go to the old address.
    limit = bound(client, work.sids["a"])
    new = net.move(client)           # a NAT rebinding: the old address is gone
    net.run(until=net.now + 60, stop=work.finished)
    work.check(f"seed {seed}")
    assert [type(e) for e in moved] == [SessionMigrated]
    assert (moved[0].old_address, moved[0].peer_address) == (old, new)
    assert server.endpoint.session_info(work.sids["b"])["peer_address"] == new
    assert longest_gap_after(arrived, moment) <= limit
    assert server.endpoint.statistics()["paths_validated"] == 1


@pytest.mark.parametrize("seed", [1, 2])
def test_client_moves_while_receiving(seed):
    net, client, server, work = setup(seed)
    transfer(work, "b", seed)
    arrived = deliveries(client, work, "a")
    moved = watch(server, SessionMigrated)
    resets = watch(client, StreamReset)
    work.start()
    net.run(until=net.now + 0.3)
    moment = net.now
    limit = bound(server, work.sids["b"])
    net.move(client)
    # The client knows (it rebound its socket): it speaks first from there.
    assert client.call(lambda ep, now: ep.address_changed(now=now)) == 1
    net.run(until=net.now + 60, stop=work.finished)
    work.check(f"seed {seed}")
    assert len(moved) == 1 and resets == []
    assert longest_gap_after(arrived, moment) <= limit


def test_both_peers_move_at_once():
    """A handover on both sides: each keeps its old link a while, as a phone
    on Wi-Fi and LTE does; both sessions move, every byte arrives both ways."""
    net, client, server, work = setup(3)
    rng = random.Random(3)
    work.add("a", 4, [rng.randbytes(SIZE) for _ in range(MESSAGES // 2)])
    work.add("b", 8, [rng.randbytes(SIZE) for _ in range(MESSAGES // 2)])
    moved = {"client": watch(client, SessionMigrated), "server": watch(server, SessionMigrated)}
    work.start()
    net.run(until=net.now + 0.2)
    new_client = net.move(client, keep_old=True)
    new_server = net.move(server, keep_old=True)
    for node in (client, server):
        node.call(lambda ep, now: ep.address_changed(now=now))
    net.run(until=net.now + 60, stop=work.finished)
    work.check("both moved")
    assert [e.peer_address for e in moved["server"]] == [new_client]
    assert [e.peer_address for e in moved["client"]] == [new_server]


def test_a_copy_raced_from_another_address_moves_nothing():
    """An attacker copies a genuine packet and gets its copy in first, from its
    own address: the server probes that address with no more bytes than the
    copy had, gets no answer (the attacker has no keys), gives up, and never
    sends the session's traffic there. The genuine packet, arriving second, is
    a duplicate and changes nothing either."""
    net, client, server, work = setup(4)
    transfer(work, "a", 4)
    attacker = ("6.6.6.6", 666)
    endpoint = server.endpoint
    receive, send = endpoint.receive_datagram, endpoint.datagrams_to_send
    raced, to_attacker = [], []

    def receive_datagram(data, address, now):
        if not raced and net.now > 0.25:
            raced.append(len(data))
            receive(data, attacker, now)       # the copy, first
        receive(data, address, now)

    def datagrams_to_send(now):
        out = send(now)
        to_attacker.extend(len(d) for d, a in out if a == attacker)
        return out

    endpoint.receive_datagram = receive_datagram
    endpoint.datagrams_to_send = datagrams_to_send
    moved = watch(server, SessionMigrated)
    work.start()
    net.run(until=net.now + 60, stop=work.finished)
    net.run(until=net.now + 2)
    work.check("raced copy")
    stats = endpoint.statistics()
    assert raced and moved == []
    assert stats["path_probes_started"] == 1 and stats["path_validations_failed"] == 1
    assert 0 < sum(to_attacker) <= raced[0]
    assert stats["path_challenges_sent"] == len(to_attacker)
    assert endpoint.session_info(work.sids["b"])["peer_address"] == client.address


def test_replayed_and_forged_packets_from_elsewhere_start_nothing():
    net, client, server, work = setup(5)
    transfer(work, "a", 5)
    endpoint = server.endpoint
    receive = endpoint.receive_datagram
    kept: list[bytes] = []

    def receive_datagram(data, address, now):
        receive(data, address, now)
        if len(kept) < 3:
            kept.append(data)

    endpoint.receive_datagram = receive_datagram
    work.start()
    net.run(until=net.now + 60, stop=work.finished)
    for i, data in enumerate(kept):       # replays, later, from elsewhere
        server.call(lambda ep, now, d=data, i=i: ep.receive_datagram(d, ("7.7.7.7", i), now))
        forged = bytearray(data)
        forged[-1] ^= 1
        server.call(lambda ep, now, d=bytes(forged): ep.receive_datagram(d, ("8.8.8.8", 1), now))
    stats = endpoint.statistics()
    assert stats["path_probes_started"] == 0 and stats["path_challenges_sent"] == 0
    assert endpoint.session_info(work.sids["b"])["peer_address"] == client.address


def test_address_changed_pings_established_sessions_only():
    net, client, server, work = setup(6)
    assert client.call(lambda ep, now: ep.address_changed(now=now)) == 1
    net.run(until=net.now + 1)
    # Same address: nothing to validate, nothing moved.
    assert server.endpoint.statistics()["path_probes_started"] == 0
    assert isinstance(Endpoint.address_changed.__doc__, str)


# -- outages: suspension instead of closing (docs/protocol.md 7.7) ----------------------

def outage_setup(seed: int, **config):
    net = Network(seed)
    client = net.add_node("client", **config)
    server = net.add_node("server", **config)
    there, back = Link(latency=RTT / 2, bandwidth=10e6), Link(latency=RTT / 2, bandwidth=10e6)
    net.connect_nodes(client, server, there, back)
    sid_c, sid_s = connect(net, client, server)
    work = Workload(net, client, server, sid_c, sid_s)
    return net, client, server, work, (there, back)


OUTAGE = dict(suspend_after=2.0, max_outage=60.0, keep_alive_interval=1.0)


@pytest.mark.parametrize("sender", ["a", "b"])
def test_a_30_second_outage_is_waited_out_and_every_byte_arrives(sender):
    net, client, server, work, links = outage_setup(7, **OUTAGE)
    transfer(work, sender, 7)
    seen = {"client": watch(client, SessionSuspended, SessionResumed, SessionClosed),
            "server": watch(server, SessionSuspended, SessionResumed, SessionClosed)}
    work.start()
    net.run(until=net.now + 0.2)
    for link in links:
        link.update(loss=1.0)        # the network goes away ...
    cut = net.now
    net.run(until=cut + 30.0)
    for link in links:
        link.update(loss=0.0)        # ... and comes back
    net.run(until=net.now + 60, stop=work.finished)
    work.check("outage")
    for name, events in seen.items():
        kinds = [type(e) for e in events]
        assert kinds == [SessionSuspended, SessionResumed], (name, events)
        assert 29.0 < events[1].outage < 40.0
    stats = server.endpoint.statistics()
    assert stats["sessions_suspended"] == 1 and stats["sessions_resumed"] == 1


def test_an_outage_past_max_outage_closes_with_timeout():
    net, client, server, work, links = outage_setup(8, suspend_after=1.0, max_outage=5.0,
                                                    keep_alive_interval=0.5)
    closed = watch(client, SessionClosed)
    suspended = watch(client, SessionSuspended)
    for link in links:
        link.update(loss=1.0)
    cut = net.now
    net.run(until=cut + 20)
    assert len(suspended) == 1 and len(closed) == 1
    assert closed[0].reason == "timeout" and "max_outage" in closed[0].message
    assert net.now - cut >= 4.9


def test_without_suspend_after_a_silent_session_closes_at_the_idle_timeout():
    net, client, server, work, links = outage_setup(9, idle_timeout=3.0,
                                                    keep_alive_interval=1.0)
    closed = watch(client, SessionClosed)
    suspended = watch(client, SessionSuspended)
    for link in links:
        link.update(loss=1.0)
    net.run(until=net.now + 10)
    assert suspended == [] and [e.reason for e in closed] == ["timeout"]


def test_suspend_after_is_checked():
    from stt_proto.config import EndpointConfig
    from stt_proto.identity import Identity
    from stt_proto.testing import DEFAULT_SHARED_SEED
    for bad in (dict(suspend_after=5.0, max_outage=5.0), dict(suspend_after=0.5)):
        with pytest.raises(ValueError, match="suspend_after"):
            EndpointConfig(identity=Identity.generate(), shared_seed=DEFAULT_SHARED_SEED, **bad)


# -- the path's estimates after a move (RFC 9000 section 9.4) ----------------------------

def estimates(node, sid) -> dict:
    recovery = node.endpoint._table.get(sid).core.recovery
    return {"sampled": recovery.rtt.has_sample, "srtt": recovery.rtt.smoothed_rtt,
            "cwnd": recovery.cc.congestion_window,
            "initial_cwnd": initial_window(recovery.cc.max_datagram_size),
            "resets": recovery.stats["path_estimates_reset"]}


def move_during_transfer(seed: int, new_address):
    """The server sends; the client moves to ``new_address(client)``. Returns the
    server's estimates just before the move, at the moment the session followed
    (taken in the SessionMigrated handler) and at the end."""
    net, client, server, work = setup(seed)
    transfer(work, "b", seed)
    sid = work.sids["b"]
    at_move = []
    handler = server.on_event

    def on_event(n, event):
        if type(event) is SessionMigrated:
            at_move.append(estimates(server, sid))
        handler(n, event)
    server.on_event = on_event
    work.start()
    net.run(until=net.now + 1.0)
    before = estimates(server, sid)
    net.move(client, new_address(client))
    client.call(lambda ep, now: ep.address_changed(now=now))
    net.run(until=net.now + 60, stop=work.finished)
    work.check(f"seed {seed}")
    assert len(at_move) == 1
    return before, at_move[0], estimates(server, sid)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_move_to_another_host_restarts_the_congestion_and_rtt_estimates(seed):
    before, moved, after = move_during_transfer(seed, lambda node: None)  # a new IP
    assert before["sampled"] and before["cwnd"] > before["initial_cwnd"]
    assert not moved["sampled"] and moved["srtt"] == K_INITIAL_RTT
    assert moved["cwnd"] == moved["initial_cwnd"]
    assert moved["resets"] == after["resets"] == 1
    assert after["sampled"]  # measured again on the new path


@pytest.mark.parametrize("seed", [1, 2])
def test_a_new_port_of_the_same_host_keeps_the_estimates(seed):
    before, moved, after = move_during_transfer(
        seed, lambda node: (node.address[0], node.address[1] + 1))  # a NAT rebinding
    assert moved["sampled"] and moved["srtt"] < K_INITIAL_RTT
    assert moved["cwnd"] > moved["initial_cwnd"]
    assert moved["resets"] == after["resets"] == 0


@pytest.mark.parametrize("name", sorted(CONGESTION_CONTROLLERS))
def test_new_path_restarts_the_estimates_and_keeps_the_accounting(name):
    mds = 1200
    recovery = PacketRecovery(cc=create_congestion_controller(name, max_datagram_size=mds),
                              pacer=Pacer(max_datagram_size=mds), max_ack_delay=0.025)
    now = 0.0
    for pn in range(40):  # a path with 50 ms of RTT that carried a lot
        recovery.on_packet_sent(pn, now, mds, [("frames of", pn)], ack_eliciting=True)
        now += 0.001
        if pn >= 2:
            recovery.on_ack(((0, pn - 2),), 0.0, now + 0.05)
    now += 0.05
    assert recovery.rtt.has_sample and recovery.packets_in_flight == 2
    kind = type(recovery.cc)
    requeue = recovery.new_path(now)
    assert sorted(requeue) == [[("frames of", 38)], [("frames of", 39)]]
    assert recovery.bytes_in_flight == 0 and recovery.packets_in_flight == 0
    assert not recovery.rtt.has_sample and recovery.rtt.smoothed_rtt == K_INITIAL_RTT
    assert type(recovery.cc) is kind
    assert recovery.cc.congestion_window == initial_window(mds)
    assert recovery.stats["path_estimates_reset"] == 1
    # Packet numbers go on; a late ACK of the old path's packets settles their
    # frames without an RTT sample from the old path.
    recovery.on_packet_sent(40, now, mds, [("frames of", 40)], ack_eliciting=True)
    settled, lost = recovery.on_ack(((38, 39),), 0.0, now + 2.0)
    assert settled == [[("frames of", 38)], [("frames of", 39)]] and not lost
    assert not recovery.rtt.has_sample and recovery.bytes_in_flight == mds
    settled, _ = recovery.on_ack(((38, 40),), 0.0, now + 0.2)
    assert settled == [[("frames of", 40)]] and recovery.bytes_in_flight == 0
    assert recovery.rtt.has_sample and abs(recovery.rtt.smoothed_rtt - 0.2) < 1e-9
