"""The network simulator (``stt_proto.testing``): the link model on its own, then
real endpoints end to end under simulated time.

Link tests use ``Sink`` nodes that record what arrives and when, so every
property of the model (latency, serialization, queue, loss, duplication,
corruption, reordering) is observed directly. No sockets, no clock.
"""

from __future__ import annotations

import random

import pytest

from stt_proto.config import EndpointConfig
from stt_proto.endpoint import Endpoint
from stt_proto.events import DatagramReceived, SessionClosed, SessionEstablished
from stt_proto.identity import Identity
from stt_proto.testing import MAX_TIMER_REFIRES, Link, Network

# --- helpers ----------------------------------------------------------------------


class Sink:
    """The smallest sans-I/O endpoint: records arrivals, sends what it is told."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes, tuple]] = []
        self.outgoing: list[tuple[bytes, tuple]] = []

    def receive_datagram(self, data, addr, now):
        self.received.append((now, data, addr))

    def datagrams_to_send(self, now):
        out, self.outgoing = self.outgoing, []
        return out

    def get_timer(self):
        return None

    def handle_timer(self, now):
        pass

    def next_event(self):
        return None


def sinks(seed: int = 0, count: int = 2) -> tuple[Network, list]:
    net = Network(seed)
    return net, [net.add_endpoint(Sink(), name=f"s{i}") for i in range(count)]


def send(src, dst, *payloads: bytes) -> None:
    """Have the sink node ``src`` send ``payloads`` to ``dst`` now."""

    def queue(ep, *, now):
        ep.outgoing.extend((p, dst.address) for p in payloads)

    src.call(queue)


def arrivals(node) -> list[tuple[float, bytes]]:
    return [(now, data) for now, data, _ in node.endpoint.received]


def numbered(n: int, size: int = 100) -> list[bytes]:
    return [i.to_bytes(4, "big") + bytes(size - 4) for i in range(n)]


def index_of(data: bytes) -> int:
    return int.from_bytes(data[:4], "big")


# --- the link model ---------------------------------------------------------------


def test_latency_is_exact_and_the_clock_jumps_to_arrivals():
    net, (a, b) = sinks()
    net.route(a, b, Link(latency=0.05))
    send(a, b, b"x", b"y")
    assert net.in_flight == 2
    assert net.step()
    assert net.now == 0.05
    net.run(until=1.0)
    assert arrivals(b) == [(0.05, b"x"), (0.05, b"y")]
    assert b.endpoint.received[0][2] == a.address  # the source address is the sender's
    assert net.now == 1.0  # run(until) moves the clock even when idle
    send(a, b, b"z")
    net.run(until=2.0)
    assert arrivals(b)[-1] == (1.05, b"z")
    assert not net.step()  # nothing left


def test_bandwidth_serializes_datagrams_one_after_the_other():
    net, (a, b) = sinks()
    link = net.route(a, b, Link(bandwidth=1e6, latency=0.01))
    send(a, b, *numbered(10, 1250))  # 10 kbit each: 10 ms on the wire
    net.run(until=1.0)
    times = [t for t, _ in arrivals(b)]
    assert times == pytest.approx([0.01 + 0.01 * (i + 1) for i in range(10)])
    assert times[-1] - 0.01 == pytest.approx(0.100)
    # The wire is free again: the next datagram only pays its own serialization.
    send(a, b, bytes(1250))
    net.run(until=2.0)
    assert arrivals(b)[-1][0] == pytest.approx(1.0 + 0.01 + 0.01)
    assert link.statistics()["bytes_delivered"] == 11 * 1250


def test_queue_drops_the_tail_and_admits_again_once_drained():
    net, (a, b) = sinks()
    link = net.route(a, b, Link(bandwidth=1e6, queue_bytes=5000))
    send(a, b, *numbered(10, 1250))
    net.run(until=0.025)
    # One datagram on the wire and four (5000 bytes) waiting; the rest dropped.
    stats = link.statistics()
    assert stats["queue_drops"] == 5 and stats["queue_peak_bytes"] == 5000
    net.run(until=1.0)
    assert [index_of(d) for _, d in arrivals(b)] == [0, 1, 2, 3, 4]
    send(a, b, *numbered(3, 1250))
    net.run(until=2.0)
    stats = link.statistics()
    assert stats["sent"] == 13 and stats["delivered"] == 8 and stats["queue_drops"] == 5


def test_a_shared_link_is_a_shared_bottleneck():
    net, (a, b, c) = sinks(count=3)
    shared = Link(bandwidth=1e6, queue_bytes=25_000)
    net.route(a, c, shared)
    net.route(b, c, shared)
    send(a, c, *numbered(10, 1250))
    send(b, c, *numbered(10, 1250))
    net.run(until=1.0)
    # Twenty datagrams of 10 ms each through one wire take 200 ms, in FIFO order.
    got = arrivals(c)
    assert len(got) == 20 and got[-1][0] == pytest.approx(0.200)
    senders = [addr for _, _, addr in c.endpoint.received]
    assert senders == [a.address] * 10 + [b.address] * 10
    # The flows compete for the queue as well: b finds it full.
    shared.update(queue_bytes=12_500)
    send(a, c, *numbered(10, 1250))
    send(b, c, *numbered(10, 1250))
    net.run(until=2.0)
    senders = [addr for _, _, addr in c.endpoint.received][20:]
    assert senders == [a.address] * 10 + [b.address]  # 1 on the wire + 10 waiting
    assert shared.statistics()["queue_drops"] == 9
    # Two independent links to c do not slow each other down.
    net2, (a2, b2, c2) = sinks(count=3)
    net2.route(a2, c2, Link(bandwidth=1e6))
    net2.route(b2, c2, Link(bandwidth=1e6))
    send(a2, c2, *numbered(10, 1250))
    send(b2, c2, *numbered(10, 1250))
    net2.run(until=1.0)
    assert arrivals(c2)[-1][0] == pytest.approx(0.100)


def test_loss_rate_matches_and_is_reproducible():
    def run(seed):
        net, (a, b) = sinks(seed)
        link = net.route(a, b, Link(loss=0.2, latency=0.001))
        send(a, b, *numbered(5000, 8))
        net.run()
        return link.statistics(), [index_of(d) for _, d in arrivals(b)]

    stats, got = run(1)
    assert stats["lost"] + stats["delivered"] == stats["sent"] == 5000
    assert 0.17 < stats["lost"] / 5000 < 0.23
    assert got == sorted(got) and len(got) == stats["delivered"]
    assert run(1) == (stats, got)
    assert run(2)[1] != got


def test_duplicates_arrive_twice_and_are_counted():
    net, (a, b) = sinks(3)
    link = net.route(a, b, Link(duplicate=0.5, latency=0.01))
    send(a, b, *numbered(400, 8))
    net.run()
    stats = link.statistics()
    got = [index_of(d) for _, d in arrivals(b)]
    assert len(got) == stats["delivered"] == 400 + stats["duplicated"]
    assert 150 < stats["duplicated"] < 250
    assert sorted(set(got)) == list(range(400))
    assert sum(got.count(i) == 2 for i in range(400)) == stats["duplicated"]


@pytest.mark.parametrize("bits", [1, 5])
def test_corruption_flips_between_one_and_n_bits(bits):
    net, (a, b) = sinks(4)
    link = net.route(a, b, Link(corrupt=1.0, corrupt_bits=bits))
    sent = [bytes([i]) * 64 for i in range(50)]
    send(a, b, *sent)
    net.run()
    flipped = [
        sum(bin(x ^ y).count("1") for x, y in zip(original, got))
        for original, (_, got) in zip(sent, arrivals(b))
    ]
    assert link.statistics()["corrupted"] == 50
    assert all(1 <= n <= bits for n in flipped)
    if bits > 1:
        assert len(set(flipped)) > 1  # the count varies
    # Partial corruption leaves the rest intact.
    net, (a, b) = sinks(4)
    link = net.route(a, b, Link(corrupt=0.3))
    send(a, b, *sent)
    net.run()
    damaged = sum(got != original for original, (_, got) in zip(sent, arrivals(b)))
    assert damaged == link.statistics()["corrupted"] and 0 < damaged < 50


def test_reordering_lets_later_datagrams_overtake():
    net, (a, b) = sinks(5)
    link = net.route(a, b, Link(latency=0.01, reorder=0.2, reorder_delay=0.005))
    for i in range(200):  # one datagram per millisecond
        net.call_at(i / 1000, send, a, b, i.to_bytes(4, "big"))
    net.run()
    got = [index_of(d) for _, d in arrivals(b)]
    assert sorted(got) == list(range(200))
    assert got != sorted(got)
    # Only held-back datagrams arrive after a later one.
    late = sum(1 for i, x in enumerate(got) if any(y > x for y in got[:i]))
    assert 0 < late <= link.statistics()["reordered"]
    assert 20 < link.statistics()["reordered"] < 60


def test_jitter_without_reordering_keeps_fifo():
    net, (a, b) = sinks(6)
    net.route(a, b, Link(latency=0.010, jitter=0.050))
    for i in range(300):
        net.call_at(i / 1000, send, a, b, i.to_bytes(4, "big"))
    net.run()
    got = arrivals(b)
    assert [index_of(d) for _, d in got] == list(range(300))
    times = [t for t, _ in got]
    assert times == sorted(times)
    delays = [t - i / 1000 for i, t in enumerate(times)]
    assert min(delays) >= 0.010 and max(delays) < 0.060
    assert len({round(d, 6) for d in delays}) > 100  # jitter really varies the delay


def test_mtu_and_missing_routes_drop_and_count():
    net, (a, b, c) = sinks(count=3)
    link = net.route(a, b, Link(mtu=1200))
    send(a, b, bytes(1200), bytes(1201))
    send(a, c, b"nowhere")  # no route a -> c
    net.run()
    assert [len(d) for _, d in arrivals(b)] == [1200]
    assert link.statistics()["mtu_drops"] == 1
    assert net.statistics()["no_route"] == 1
    # Datagrams in flight when a route goes away still arrive; later ones do not.
    net.route(a, b, Link(latency=1.0))
    send(a, b, b"in flight")
    net.unroute(a, b)
    send(a, b, b"too late")
    net.run()
    assert arrivals(b)[-1][1] == b"in flight"
    assert net.statistics()["no_route"] == 2


def test_statistics_balance_and_link_update():
    net, (a, b) = sinks(7)
    link = net.route(a, b, Link(loss=0.1, duplicate=0.1, mtu=500, latency=0.01))
    send(a, b, *numbered(300, 100), *numbered(10, 600))
    net.run()
    s = link.statistics()
    dropped = s["lost"] + s["queue_drops"] + s["mtu_drops"]
    assert s["delivered"] == s["sent"] - dropped + s["duplicated"]
    assert s["mtu_drops"] == 10
    link.update(loss=1.0)  # cut the link
    before = s["delivered"]
    send(a, b, *numbered(20))
    net.run()
    assert link.statistics()["delivered"] == before
    with pytest.raises(ValueError, match="loss"):
        link.update(loss=2.0)
    assert link.loss == 1.0  # a rejected update changes nothing
    with pytest.raises(TypeError, match="unknown"):
        link.update(lossy=0.5)
    assert link.copy().parameters() == link.parameters()
    assert "loss=1.0" in repr(link)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"latency": -1}, "latency"),
        ({"jitter": float("nan")}, "jitter"),
        ({"bandwidth": 0}, "bandwidth"),
        ({"bandwidth": float("inf")}, "bandwidth"),
        ({"queue_bytes": 1000}, "needs a bandwidth"),
        ({"bandwidth": 1e6, "queue_bytes": 0}, "queue_bytes"),
        ({"loss": 1.5}, "loss"),
        ({"reorder": -0.1}, "reorder"),
        ({"reorder_delay": -0.1}, "reorder_delay"),
        ({"duplicate": 2}, "duplicate"),
        ({"corrupt": 1.01}, "corrupt"),
        ({"corrupt_bits": 0}, "corrupt_bits"),
        ({"mtu": 0}, "mtu"),
    ],
)
def test_link_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Link(**kwargs)


def test_link_type_and_network_checks():
    with pytest.raises(TypeError, match="latency"):
        Link(latency="1")
    with pytest.raises(TypeError, match="mtu"):
        Link(mtu=1500.0)
    net, (a, b) = sinks()
    link = net.route(a, b)
    other, (c, d) = sinks()
    with pytest.raises(ValueError, match="another Network"):
        other.route(c, d, link)
    with pytest.raises(ValueError, match="itself"):
        net.route(a, a)
    with pytest.raises(ValueError, match="already used"):
        net.add_endpoint(Sink(), a.address)
    with pytest.raises(ValueError, match="already exists"):
        net.add_endpoint(Sink(), name=a.name)
    assert net.node(a.name) is a and net.node(b.address) is b
    with pytest.raises(ValueError, match="past"):
        net.call_at(-1.0, print)


# --- driving the loop -------------------------------------------------------------


def test_call_at_runs_in_time_order_and_run_stops_on_request():
    net, (a, b) = sinks()
    net.route(a, b, Link(latency=0.1))
    log = []
    net.call_at(0.3, log.append, "c")
    net.call_at(0.1, log.append, "a")
    net.call_at(0.1, log.append, "b")  # same instant: scheduling order
    net.call_at(0.2, send, a, b, b"x")
    assert net.run(stop=lambda: len(log) == 2) is True
    assert log == ["a", "b"] and net.now == 0.1
    assert net.run(until_idle=True) is True  # nothing in flight yet
    assert net.run() is False
    assert log == ["a", "b", "c"] and arrivals(b) == [(pytest.approx(0.3), b"x")]
    with pytest.raises(ValueError, match="past"):
        net.run(until=0.0)


def test_runaway_runs_raise():
    net = Network(0)
    a = net.add_node("a", idle_timeout=5.0, keep_alive_interval=1.0)
    b = net.add_node("b", idle_timeout=5.0, keep_alive_interval=1.0)
    net.connect_nodes(a, b, Link(latency=0.01))
    a.connect(b)
    # Keep-alives go on forever: without until= or stop= the step budget ends it.
    with pytest.raises(RuntimeError, match="max_steps"):
        net.run(max_steps=200)
    assert a.events_of(SessionEstablished) and b.events_of(SessionEstablished)

    class BusyLoop(Sink):
        def get_timer(self):
            return 0.0  # always overdue: a busy loop

    net2 = Network(0)
    net2.add_endpoint(BusyLoop(), name="busy")
    with pytest.raises(RuntimeError, match="busy-loops"):
        net2.run(until=1.0)
    assert net2.statistics()["steps"] == MAX_TIMER_REFIRES + 1


def test_run_is_not_reentrant():
    net, (a, b) = sinks()
    net.call_at(0.0, net.run)
    with pytest.raises(RuntimeError, match="reentrant"):
        net.run()


# --- real endpoints end to end ----------------------------------------------------


def echo(node, event) -> None:
    if isinstance(event, DatagramReceived):
        node.send_datagram(event.session_id, b"echo " + event.data)


def lossy_echo_scenario(seed: int, loss: float = 0.2):
    """A client connects over a lossy, jittery path and pings an echo server."""
    net = Network(seed)
    client = net.add_node("client", connect_timeout=30.0)
    server = net.add_node("server", on_event=echo)
    net.connect_nodes(client, server, Link(latency=0.02, jitter=0.01, loss=loss,
                                           bandwidth=5e6, queue_bytes=30_000))
    sid = client.connect(server)
    net.run(until=30.0, stop=lambda: client.events_of(SessionEstablished, SessionClosed))
    if client.events_of(SessionEstablished):
        for i in range(100):
            net.call_at(net.now + i * 0.01, client.send_datagram, sid, b"%d" % i)
        net.run(until=net.now + 2.0)
    return net, client, server, sid


@pytest.mark.parametrize("seed", range(6))
def test_handshake_and_echo_over_a_lossy_link(seed):
    net, client, server, sid = lossy_echo_scenario(seed)
    (established,) = client.events_of(SessionEstablished)
    assert established.session_id == sid and established.peer_id == server.node_id
    (server_established,) = server.events_of(SessionEstablished)
    assert server_established.peer_id == client.node_id
    assert server_established.peer_address == client.address
    pings = [e.data for e in server.events_of(DatagramReceived)]
    echoes = [e.data for e in client.events_of(DatagramReceived)]
    # Each direction loses a fifth: about 80 pings and 64 echoes arrive.
    assert 65 <= len(pings) <= 95 and 45 <= len(echoes) <= 80
    assert set(echoes) <= {b"echo " + p for p in pings}
    assert net.statistics()["lost"] > 0
    assert not client.events_of(SessionClosed) and not server.events_of(SessionClosed)


def test_same_seed_same_run_and_different_seeds_differ():
    def fingerprint(seed):
        net, client, server, _ = lossy_echo_scenario(seed)
        return (client.events, server.events, net.statistics(), client.statistics(),
                server.statistics())

    first = fingerprint(11)
    assert fingerprint(11) == first
    other = fingerprint(12)
    assert other[0] != first[0]  # other session ids, other losses
    assert other[2] != first[2]


def test_wrong_shared_seed_fails_with_auth_failure():
    net = Network(1)
    client = net.add_node("client", shared_seed=b"one network seed, 32 bytes long")
    server = net.add_node("server", shared_seed=b"another seed entirely, 32 bytes")
    net.connect_nodes(client, server, Link(latency=0.03))
    sid = client.connect(server)
    net.run(until=5.0)
    (closed,) = client.events_of(SessionClosed)
    assert closed.session_id == sid and closed.reason == "auth_failure"
    assert client.events_of(SessionEstablished) == []
    assert server.events_of(SessionEstablished) == []
    assert client.statistics()["auth_failures"] == 1


def test_idle_timeout_when_the_path_is_cut():
    net = Network(2)
    config = {"idle_timeout": 6.0, "keep_alive_interval": 2.0}
    client = net.add_node("client", **config)
    server = net.add_node("server", **config)
    ab, ba = net.connect_nodes(client, server, Link(latency=0.01))
    sid = client.connect(server)
    net.run(until=1.0)
    client.send_datagram(sid, b"confirm")
    # Keep-alives hold an idle session open well past the idle timeout.
    net.run(until=20.0)
    assert client.events_of(SessionClosed) == [] and server.events_of(SessionClosed) == []
    closed_at = {}
    for node in (client, server):
        node.on_event = lambda node, event: closed_at.setdefault(node.name, net.now)
    cut = net.now
    ab.update(loss=1.0)  # client -> server: every datagram lost
    net.unroute(server, client)  # server -> client: no route at all
    net.run(until=40.0)
    for node in (client, server):
        (closed,) = node.events_of(SessionClosed)
        assert closed.reason == "timeout"
        # The last packet was heard at most a keep-alive interval before the cut.
        assert cut + 6.0 - 2.0 - 0.1 <= closed_at[node.name] <= cut + 6.0
    assert net.statistics()["no_route"] > 0 and ab.statistics()["lost"] > 0
    with pytest.raises(KeyError):
        client.send_datagram(sid, b"after close")


def test_connect_without_a_route_times_out():
    net = Network(3)
    client = net.add_node("client", connect_timeout=4.0)
    server = net.add_node("server")
    sid = client.connect(server)  # no route at all
    net.run(until=10.0)
    (closed,) = client.events_of(SessionClosed)
    assert closed.session_id == sid and closed.reason == "timeout"
    # INITIATIONs at 0, 1, 3 s (backoff): each dropped for lack of a route.
    assert net.statistics()["no_route"] == 3


def test_duplicated_and_corrupted_packets_never_reach_the_application():
    net = Network(4)
    client = net.add_node("client")
    server = net.add_node("server")
    net.connect_nodes(client, server, Link(latency=0.01, duplicate=1.0))
    sid = client.connect(server)
    net.run(until=1.0)
    for i in range(50):
        client.send_datagram(sid, b"%d" % i)
    net.run(until=2.0)
    got = [e.data for e in server.events_of(DatagramReceived)]
    assert got == [b"%d" % i for i in range(50)]  # each once, in order
    assert net.statistics()["duplicated"] >= 52
    # Corrupt every packet: the handshake cannot succeed and nothing is accepted.
    net = Network(5)
    client = net.add_node("client", connect_timeout=3.0)
    server = net.add_node("server")
    net.connect_nodes(client, server, Link(latency=0.01, corrupt=1.0))
    client.connect(server)
    net.run(until=5.0)
    assert [e.reason for e in client.events_of(SessionClosed)] == ["timeout"]
    assert server.events == []
    stats = server.statistics()
    dropped = sum(stats[k] for k in ("initiations_bad_mac", "initiations_failed",
                                     "dropped_undecodable", "dropped_unknown_index"))
    assert dropped == stats["datagrams_received"] == client.statistics()["datagrams_sent"] == 2


def test_commands_from_callbacks_and_existing_endpoints():
    net = Network(6)
    server = net.add_node("server")
    # An endpoint built elsewhere joins as a node.
    rng = random.Random(99).randbytes
    ep = Endpoint(EndpointConfig(identity=Identity.generate(rng), shared_seed=net.shared_seed,
                                 rng=rng))
    client = net.add_endpoint(ep, ("192.0.2.7", 9999), name="client")
    net.connect_nodes(client, server, Link(latency=0.005))

    def reply_then_close(node, event):
        if isinstance(event, DatagramReceived):
            node.send_datagram(event.session_id, event.data.upper())
            node.close(event.session_id)

    server.on_event = reply_then_close
    sid = client.connect(server)
    net.run(until=0.5)
    client.send_datagram(sid, b"hello")
    net.run(until=1.0)
    assert [e.data for e in client.events_of(DatagramReceived)] == [b"HELLO"]
    assert [e.reason for e in client.events_of(SessionClosed)] == ["graceful"]
    assert [type(e).__name__ for e in server.events] == [
        "SessionEstablished", "DatagramReceived", "SessionClosed"]
    assert server.events[0].peer_address == ("192.0.2.7", 9999)
    # The raw endpoint can be driven directly too, then flushed.
    assert client.call(lambda ep, *, now: now) == net.now
