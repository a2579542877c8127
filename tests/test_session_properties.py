"""Property test of sessions in the simulator: random links, random streams.

Each scenario draws a link (latency, jitter, bandwidth, queue, loss 0-30 %,
reordering, duplication, corruption), a set of streams with messages from 0 bytes
to 4 MiB in one or both directions, and how each direction ends (FIN, a reset by
the sender, a stop by the receiver). It checks that every message the engine
accepted arrives exactly once, in order and byte-identical (a prefix of them on a
reset or stopped direction); that nothing deadlocks; that both sides end with no
stream open, nothing buffered and nothing in flight; and that buffered bytes stay
within the configured limits throughout.

``SCENARIOS`` scenarios run per test run (``STT_SCENARIOS`` overrides it); the
``slow`` variant (``--run-slow``) runs ten times as many. A failure names its seed:
rerun one with ``STT_SCENARIO_SEED=<seed>``.
"""

from __future__ import annotations

import os
import random

import pytest

from stt_proto.events import SessionClosed
from stt_proto.testing import Network

from .sim_streams import Workload, connect, draw_size, make_message, random_link

SCENARIOS = int(os.environ.get("STT_SCENARIOS", "1000"))
CHUNKS = 20

CONFIG = dict(
    connect_timeout=120.0,
    handshake_retry_max=2.0,
    stream_window=32 * 1024,
    max_stream_window=1024 * 1024,
    session_window=128 * 1024,
    max_session_window=4 * 1024 * 1024,
    max_send_buffer=256 * 1024,
    max_frame_size=4 * 1024 * 1024,
    closed_stream_linger=1.0,
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


def _seeds(chunk: int, total: int) -> range:
    per = -(-total // CHUNKS)
    return range(chunk * per, min(total, (chunk + 1) * per))


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_scenarios(chunk: int) -> None:
    only = os.environ.get("STT_SCENARIO_SEED")
    seeds = [int(only)] if only is not None else _seeds(chunk, SCENARIOS)
    if only is not None and chunk:
        pytest.skip("single seed runs in chunk 0")
    for seed in seeds:
        _run_named(seed)


def _run_named(seed: int) -> None:
    try:
        run_scenario(seed)
    except BaseException as exc:
        exc.add_note(f"scenario seed {seed}: rerun it alone with STT_SCENARIO_SEED={seed}")
        raise


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_scenarios_nightly(chunk: int) -> None:
    for seed in _seeds(chunk, SCENARIOS * 10):
        _run_named(100_000 + seed)
