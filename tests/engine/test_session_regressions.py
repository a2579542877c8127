"""Regression tests for session bugs found by the scenario runs and by review.

Each test names the bug it pins down. They run in the simulator (seeded,
simulated time)."""

from __future__ import annotations

import pytest

from stt_proto.constants import ErrorCode
from stt_proto.endpoint import Endpoint
from stt_proto.events import MessageReceived, StreamOpened, StreamStopped
from stt_proto.testing import Link, Network

from ..helpers.scenarios import run_scenario
from ..helpers.sim_streams import connect


def test_refused_streams_do_not_leak_session_credit() -> None:
    # Bytes sent on streams refused for the stream limit count against the
    # sender's session credit; the receiver must count them too and give the
    # credit back, or the session stalls for good.
    net = Network(seed=3)
    a = net.add_node("a")
    b = net.add_node("b", max_streams=1)
    net.connect_nodes(a, b, Link(latency=0.1, bandwidth=1e9))
    sa, sb = connect(net, a, b)
    a.call(Endpoint.send_message, sa, 1, b"w" * 100_000)
    net.run(until=net.now + 2)
    refused = list(range(3, 27, 2))
    for sid in refused:
        a.call(Endpoint.send_message, sa, sid, b"r" * 300_000)
    net.run(until=net.now + 3)
    stopped = {e.stream_id for e in a.events_of(StreamStopped)
               if e.error_code == ErrorCode.STREAM_LIMIT_ERROR}
    assert stopped == set(refused)
    sta = a.endpoint.session_statistics(sa)
    stb = b.endpoint.session_statistics(sb)
    assert sta["send_credit"] == stb["recv_credit"]
    # The refused streams closed on the opener's side as well.
    assert a.endpoint.stream_ids(sa) == [1]
    before = len(b.events_of(MessageReceived))
    a.call(Endpoint.send_message, sa, 1, b"after" * 200_000)
    net.run(until=net.now + 5)
    assert len(b.events_of(MessageReceived)) == before + 1


@pytest.mark.parametrize("seed", range(8))
def test_stopped_stream_counts_the_peers_final_size(seed: int) -> None:
    # After stop_stream the stream used to close as soon as our STOP_SENDING was
    # acknowledged; the peer's RESET_STREAM then hit the closed id and the bytes
    # up to its final size were never counted (session credit leaked).
    net = Network(seed=seed)
    a = net.add_node("a")
    b = net.add_node("b")
    net.connect_nodes(a, b, Link(latency=0.05, bandwidth=1e9, loss=0.05),
                      Link(latency=0.05, bandwidth=1e9))
    sa, sb = connect(net, a, b)

    def on(node, event):
        if isinstance(event, StreamOpened) and event.stream_id == 3:
            node.call(Endpoint.end_stream, event.session_id, 3)
            node.call(Endpoint.stop_stream, event.session_id, 3, 99)

    b.on_event = on
    a.call(Endpoint.send_stream_data, sa, 3, b"r" * 250_000)
    net.run(until=net.now + 5)
    sta = a.endpoint.session_statistics(sa)
    stb = b.endpoint.session_statistics(sb)
    assert sta["send_credit"] == stb["recv_credit"]
    assert 3 not in a.endpoint.stream_ids(sa) and 3 not in b.endpoint.stream_ids(sb)


def test_error_codes_are_checked_when_called() -> None:
    net = Network(seed=1)
    a = net.add_node("a")
    b = net.add_node("b")
    net.connect_nodes(a, b, Link(latency=0.01))
    sa, _ = connect(net, a, b)
    a.call(Endpoint.send_message, sa, 1, b"x")
    for bad in (-1, 1 << 62, True, 1.5):
        with pytest.raises(ValueError):
            a.call(Endpoint.reset_stream, sa, 1, bad)
        with pytest.raises(ValueError):
            a.call(Endpoint.stop_stream, sa, 1, bad)
        with pytest.raises(ValueError):
            a.call(lambda ep, now: ep.close(sa, now=now, error_code=bad))
    # The session is untouched by the refused calls.
    a.call(Endpoint.send_message, sa, 1, b"y")
    net.run(until=net.now + 1)
    assert [e.data for e in b.events_of(MessageReceived)] == [b"x", b"y"]


def test_keep_alive_behind_a_full_window_does_not_spin() -> None:
    # Nightly seed 100754: a keep-alive PING queued while the congestion window
    # was full kept its deadline in the past, and the endpoint's timer fired
    # forever at the same instant. Keep-alives now bypass the window.
    net = Network(seed=100754)
    a = net.add_node("a", keep_alive_interval=1.0, idle_timeout=30.0)
    b = net.add_node("b", keep_alive_interval=1.0, idle_timeout=30.0)
    link_ab, link_ba = net.connect_nodes(a, b, Link(latency=0.02, bandwidth=10e6))
    sa, _ = connect(net, a, b)
    a.call(Endpoint.send_message, sa, 1, b"z" * 2_000_000)
    net.run(until=net.now + 0.3)
    link_ba.update(loss=1.0)  # no ACKs: the window fills and stays full
    net.run(until=net.now + 5.0)  # raises RuntimeError if the timer spins
    assert a.endpoint.session_statistics(sa)["probe_timeouts"] > 0


@pytest.mark.parametrize("seed", [
    100469,  # a CLOSE lost five times: the idle peer timed out instead of closing
    100754,  # a keep-alive behind a full window: the timer spun at one instant
    100774,  # a RESET_STREAM resent (spuriously) after the peer forgot the id
])
def test_nightly_scenarios_that_once_failed(seed: int) -> None:
    run_scenario(seed)
