"""The OverlayHost and its session pool in the simulator: real endpoints, handshakes,
DHT frames. One session per peer, bounded queues, idle close, unreachable peers,
and a node with another seed that can neither join nor read anything."""

from __future__ import annotations

import random

from stt_proto.config import EndpointConfig
from stt_proto.dht.config import DhtConfig
from stt_proto.dht.node import DhtNode
from stt_proto.endpoint import Endpoint
from stt_proto.events import DhtMessageReceived, DhtQueryCompleted, SessionEstablished
from stt_proto.identity import Identity
from stt_proto.overlay import OverlayHost
from stt_proto.pool import SessionPool
from stt_proto.testing import Link, Network

SEED = b"overlay test network seed"


def add_member(net: Network, rng: random.Random, *, seed: bytes = SEED, pool=None, **config):
    identity = Identity.generate(rng.randbytes)
    endpoint = Endpoint(EndpointConfig(identity=identity, shared_seed=seed, rng=rng.randbytes,
                                       connect_timeout=2.0))
    host = OverlayHost(endpoint, pool=pool(endpoint) if pool else None)
    dht = DhtNode(identity.node_id, DhtConfig(initial_rtt=0.05, **config), identity=identity,
                  rng=rng.randbytes)
    host.attach_dht(dht)
    node = net.add_endpoint(host)
    dht.address = node.address
    return node, host, dht


def mesh(net: Network, nodes, link: Link | None = None) -> None:
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            net.connect_nodes(a, b, link.copy() if link else Link(latency=0.01))


def run_query(net: Network, node, dht: DhtNode, start) -> object:
    query = node.call(lambda host, now: start(dht, now))
    done = [e for e in node.events if isinstance(e, DhtQueryCompleted)
            and e.query_id == query]
    net.run(until=net.now + 60, stop=lambda: done or [
        e for e in node.events if isinstance(e, DhtQueryCompleted) and e.query_id == query])
    found = [e for e in node.events if isinstance(e, DhtQueryCompleted) and e.query_id == query]
    assert found, "the query did not end"
    return found[0].result


def build(count: int, seed: int = 1, **kwargs):
    net = Network(seed)
    rng = random.Random(seed)
    members = [add_member(net, rng, **kwargs) for _ in range(count)]
    mesh(net, [m[0] for m in members])
    first = members[0]
    for node, _, dht in members[1:]:
        run_query(net, node, dht, lambda d, now: d.bootstrap(
            [(first[2].own_id, first[0].address)], now=now))
    return net, members


def test_lookups_run_over_sessions_and_dht_frames_never_reach_the_application():
    net, members = build(6)
    node, host, dht = members[2]
    target = members[5][2].own_id
    result = run_query(net, node, dht, lambda d, now: d.find_node(target, now=now, exact=True))
    assert target in [peer for peer, _ in result]
    for member_node, _, _ in members:
        assert not any(isinstance(e, DhtMessageReceived) for e in member_node.events)
    assert members[5][1].stats["dht_messages_unrouted"] == 0


def test_one_session_per_peer_and_values_across_the_network():
    net, members = build(5)
    node, host, dht = members[1]
    report = run_query(net, node, dht, lambda d, now: d.put(b"over sessions", now=now)[0])
    assert report.stored >= 4
    for a_node, a_host, _ in members:
        for b_node, _, b_dht in members:
            if a_node is b_node:
                continue
            sessions = [e for e in a_node.events if isinstance(e, SessionEstablished)
                        and e.peer_id == b_dht.own_id]
            assert len(sessions) <= 2  # at most one each way if both opened at once
            if sessions:
                assert a_host.pool.session_of(b_dht.own_id) is not None


def test_pool_closes_its_idle_sessions():
    net, members = build(4, pool=lambda ep: SessionPool(ep, idle_close=5.0))
    host = members[3][1]
    assert host.pool.owns(host.pool.session_of(members[0][2].own_id))  # it dialled the first
    before = host.pool.stats["pool_idle_closed"]
    net.run(until=net.now + 30)
    assert host.pool.stats["pool_idle_closed"] > before
    assert host.pool.session_of(members[0][2].own_id) is None


def test_pool_evicts_the_least_recently_used_session_at_its_limit():
    net, members = build(8, pool=lambda ep: SessionPool(ep, max_sessions=3))
    for _, host, _ in members:
        assert len(host.pool._own) <= 3  # the sessions the pool opened itself
    evicted = sum(host.pool.stats["pool_evicted"] for _, host, _ in members)
    assert evicted > 0


def test_queue_to_a_peer_being_connected_is_bounded():
    net = Network(3)
    rng = random.Random(3)
    node, host, dht = add_member(net, rng, pool=lambda ep: SessionPool(ep, max_queued_per_peer=4))
    silent = Identity.generate(rng.randbytes).node_id
    for i in range(20):
        host.pool.send_dht(silent, ("10.9.9.9", 4000), b"x%d" % i, now=net.now)
    # The first message rides in the handshake; 4 of the other 19 stay queued.
    assert host.pool.stats["pool_queue_dropped"] == 15
    assert host.pool.stats["pool_connects"] == 1


def test_an_unreachable_peer_fails_its_requests_when_the_connect_fails():
    net = Network(4)
    rng = random.Random(4)
    node, host, dht = add_member(net, rng, rpc_attempts=10, max_rpc_timeout=30.0)
    ghost = Identity.generate(rng.randbytes).node_id  # nobody at that address
    started = net.now
    result = run_query(net, node, dht, lambda d, now: d.bootstrap(
        [(ghost, ("10.99.0.1", 4000))], now=now))
    assert result == []
    assert net.now - started < 2  # the stalled request did not hold the lookup
    assert len(dht.rpc) == 1      # ... though it is still being retried
    net.run(until=started + 3)
    # The failed connect (2 s), not ten retransmissions, ended the request.
    assert dht.statistics()["peers_unreachable"] == 1
    assert len(dht.rpc) == 0


def test_a_node_with_another_seed_can_neither_join_nor_read_anything():
    net = Network(5)
    rng = random.Random(5)
    members = [add_member(net, rng) for _ in range(3)]
    outsider = add_member(net, rng, seed=b"some other network seed")
    mesh(net, [m[0] for m in members] + [outsider[0]])
    first = members[0]
    for node, _, dht in members[1:]:
        run_query(net, node, dht, lambda d, now: d.bootstrap(
            [(first[2].own_id, first[0].address)], now=now))
    run_query(net, members[1][0], members[1][2], lambda d, now: d.put(b"members only",
                                                                      now=now)[0])
    node, host, dht = outsider
    result = run_query(net, node, dht, lambda d, now: d.bootstrap(
        [(first[2].own_id, first[0].address)], now=now))
    assert result == []
    assert len(dht.table) == 0
    assert dht.statistics()["messages_received"] == 0  # not one DHT message reached it
    assert not any(isinstance(e, SessionEstablished) for e in node.events)


def test_pool_bounds_the_connects_it_runs():
    net = Network(6)
    rng = random.Random(6)
    node, host, dht = add_member(net, rng, pool=lambda ep: SessionPool(ep, max_sessions=2))
    ghosts = [Identity.generate(rng.randbytes).node_id for _ in range(40)]
    sent = [host.pool.send_dht(g, ("10.8.0.1", 4000), b"x", now=net.now) for g in ghosts]
    assert sent.count(True) == 2 and sent.count(False) == 38
    assert host.pool.stats["pool_refused_full"] == 38
    assert len(host.pool._peers) == 2  # refused peers leave nothing behind
