"""One random session scenario in the simulator: build it from a seed, run it, check it.

Used by the property test (``engine/test_session_properties.py``) and by the
regression tests that replay seeds which once failed.
"""

from __future__ import annotations

import random

from stt_proto.events import SessionClosed
from stt_proto.testing import Network

from .sim_streams import Workload, connect, draw_size, make_message, random_link

CONFIG = dict(
    connect_timeout=120.0,
    handshake_retry_max=2.0,
    stream_window=32 * 1024,
    max_stream_window=1024 * 1024,
    session_window=128 * 1024,
    max_session_window=4 * 1024 * 1024,
    max_send_buffer=256 * 1024,
    max_frame_size=4 * 1024 * 1024,
    idle_timeout=60.0,
    keep_alive_interval=5.0,
)
#: Budget of message bytes per scenario (all streams), to keep runs quick.
BYTES_BUDGET = 6 * 1024 * 1024


def build(seed: int) -> tuple[Network, Workload, random.Random]:
    rng = random.Random(seed)
    net = Network(seed)
    a = net.add_node("a", **CONFIG)
    b = net.add_node("b", **CONFIG)
    link = random_link(rng)
    net.connect_nodes(a, b, link, link.copy() if rng.random() < 0.7 else random_link(rng))
    sid_a, sid_b = connect(net, a, b)
    work = Workload(net, a, b, sid_a, sid_b)
    budget = BYTES_BUDGET
    for stream_id in rng.sample(range(1, 40), rng.randint(1, 4)):
        senders = rng.choice([["a"], ["b"], ["a", "b"]])
        for side in senders:
            messages = []
            for _ in range(rng.choice([0, 1, 2, 3, 5, 8])):
                size = draw_size(rng, budget)
                budget -= size
                messages.append(make_message(rng, size))
            ending = rng.choices(["fin", "reset", "stop"], weights=[8, 1, 1])[0]
            work.add(side, stream_id, messages, ending=ending,
                     after=rng.randint(0, max(0, len(messages))))
    return net, work, rng


def check_limits(net: Network, work: Workload) -> None:
    n = len(work.streams)
    for side in ("a", "b"):
        node = work.nodes[side]
        sid = work.sids[side]
        if sid not in node.endpoint._sessions:
            continue
        stats = node.endpoint.session_statistics(sid)
        recv_cap = CONFIG["max_session_window"] + n * CONFIG["max_frame_size"]
        send_cap = n * (CONFIG["max_send_buffer"] + CONFIG["max_frame_size"] + 16)
        assert stats["recv_buffered"] <= recv_cap, f"seed {net.seed}: {side} holds too much"
        assert stats["send_buffered"] <= send_cap, f"seed {net.seed}: {side} queues too much"
        assert stats["ack_ranges"] <= 256


def run_scenario(seed: int) -> None:
    net, work, rng = build(seed)
    label = f"seed {seed}"

    def watch() -> None:
        check_limits(net, work)
        if not work.finished():
            net.call_at(net.now + 0.25, watch)

    work.start()
    net.call_at(net.now + 0.25, watch)
    net.run(until=net.now + 900.0, stop=work.finished, max_steps=5_000_000)
    assert work.finished(), (f"{label}: deadlock or not finished at t={net.now:.1f}: "
                             f"closed a={sorted(work.closed['a'])} b={sorted(work.closed['b'])} "
                             f"of {sorted(work.streams)}")
    work.check(label)
    # Let the last acknowledgements land, then both sides must be clean.
    net.run(until=net.now + 5.0)
    for side in ("a", "b"):
        stats = work.nodes[side].endpoint.session_statistics(work.sids[side])
        assert stats["streams_open"] == 0, f"{label}: {side} has streams open"
        assert stats["send_buffered"] == stats["recv_buffered"] == 0, f"{label}: {side}"
        assert stats["stream_bytes_in_flight"] == 0, f"{label}: {side} has data in flight"
    # A graceful close by either side is seen as graceful by both.
    closer = rng.choice(["a", "b"])
    for side in ("a", "b"):
        work.nodes[side].record_events = True
    work.nodes[closer].close(work.sids[closer])
    net.run(until=net.now + 60.0)
    for side in ("a", "b"):
        reasons = [e.reason for e in work.nodes[side].events_of(SessionClosed)]
        assert reasons == ["graceful"], f"{label}: {side} closed with {reasons}"
