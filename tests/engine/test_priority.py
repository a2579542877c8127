"""Stream priorities (``stt_proto.priority``): urgency order, turns within an
urgency, the share every waiting urgency is guaranteed, interactive streams,
and the issue's case: a 100-byte message at urgency 0 overtakes a 100 MB
transfer at urgency 7 within one round trip and one packet's serialisation.

The scheduler's own rules are checked on the scheduler with plain stand-in
streams (many frames, no network); the rest runs two real endpoints in the
simulator over a link of stated rate and latency, in simulated time.
"""

from __future__ import annotations

import random

import pytest

from stt_proto.config import EndpointConfig
from stt_proto.endpoint import Endpoint
from stt_proto.errors import SendBufferFullError
from stt_proto.events import MessageReceived, StreamDataReceived, StreamOpened, StreamWritable
from stt_proto.priority import DEFAULT_URGENCY, LOWEST_URGENCY, StreamScheduler
from stt_proto.testing import Link, Network
from tests.helpers.sim_streams import connect

MiB = 1024 * 1024


# --- the scheduler on its own ------------------------------------------------------


class _Stream:
    """What the scheduler reads of a stream."""

    def __init__(self, stream_id: int, urgency: int = DEFAULT_URGENCY,
                 incremental: bool = False, interactive: bool = False) -> None:
        self.stream_id = stream_id
        self.urgency = urgency
        self.incremental = incremental
        self.interactive = interactive


def _serve(scheduler: StreamScheduler, frames: int, size=lambda: 1400,
           keep=lambda stream: True) -> list[tuple[int, int]]:
    """Take ``frames`` turns; returns ``(stream_id, bytes)`` per turn."""
    out = []
    for _ in range(frames):
        if not scheduler:
            break
        stream = scheduler.head()
        n = size()
        out.append((stream.stream_id, n))
        scheduler.served(stream, n, keep(stream))
    return out


def test_one_stream_or_one_urgency_keeps_no_charges():
    scheduler = StreamScheduler(1400)
    a, b = _Stream(1), _Stream(2)
    scheduler.push(a)
    scheduler.push(b)
    _serve(scheduler, 10)
    assert all(level.charge == 0 for level in scheduler._levels if level is not None)


def test_non_incremental_streams_of_one_urgency_go_one_after_another():
    scheduler = StreamScheduler(1400)
    streams = [_Stream(sid) for sid in (9, 3, 5)]   # the order they became ready
    for stream in streams:
        scheduler.push(stream)
    left = {9: 3, 3: 2, 5: 4}

    def keep(stream) -> bool:
        left[stream.stream_id] -= 1
        return left[stream.stream_id] > 0

    order = [sid for sid, _ in _serve(scheduler, 20, keep=keep)]
    assert order == [9, 9, 9, 3, 3, 5, 5, 5, 5]


def test_incremental_streams_of_one_urgency_take_turns():
    scheduler = StreamScheduler(1400)
    for sid in (1, 2, 3):
        scheduler.push(_Stream(sid, incremental=True))
    order = [sid for sid, _ in _serve(scheduler, 9)]
    assert order == [1, 2, 3] * 3


def test_a_more_urgent_stream_that_wakes_goes_next():
    scheduler = StreamScheduler(1400)
    scheduler.push(_Stream(1, urgency=7))
    scheduler.push(_Stream(2, urgency=5))
    _serve(scheduler, 500)
    scheduler.push(_Stream(3, urgency=0))
    assert scheduler.head().stream_id == 3


@pytest.mark.parametrize("seed", range(4))
def test_every_waiting_urgency_gets_its_guaranteed_share(seed):
    # Urgency u, while it has data, gets at least 2**(7-u)/255 of the bytes
    # (short of two frames per level): more than 1/2**(u+1), whatever the
    # other levels do. Here other streams come and go at random (at every
    # urgency, the watched one's too) and frames have random sizes; each
    # level is checked over a stretch it never runs dry.
    rng = random.Random(seed)
    frame = 1400
    for u in range(LOWEST_URGENCY + 1):
        scheduler = StreamScheduler(frame)
        watched = _Stream(100, urgency=u, incremental=rng.random() < 0.5)
        others = [_Stream(sid, urgency=sid % 8) for sid in range(16)]
        scheduler.push(watched)
        sent = {True: 0, False: 0}
        for _ in range(40_000):
            for other in others:
                if rng.random() < 0.02:
                    if other.stream_id in scheduler:
                        scheduler.pop(other.stream_id)
                    else:
                        scheduler.push(other)
            stream = scheduler.head()
            n = rng.randint(1, frame)
            sent[stream.urgency == u] += n
            scheduler.served(stream, n, True)
        total = sent[True] + sent[False]
        assert sent[True] >= total * 2 ** (7 - u) / 255 - 2 * 8 * frame, (seed, u)
        assert sent[True] / total >= 1 / 2 ** (u + 1), (seed, u)


def test_an_urgency_against_one_other_gets_its_weight():
    # Weights 2**(7-u): urgency 7 next to urgency 0 gets 1/129 of the bytes,
    # urgency 4 next to urgency 3 a third.
    for high, low, share in ((0, 7, 1 / 129), (3, 4, 1 / 3)):
        scheduler = StreamScheduler(1400)
        scheduler.push(_Stream(1, urgency=high))
        scheduler.push(_Stream(2, urgency=low))
        turns = _serve(scheduler, 129 * 30)
        got = sum(n for sid, n in turns if sid == 2) / sum(n for _, n in turns)
        assert abs(got - share) < 0.01 * share + 1 / len(turns)


def test_interactive_streams_go_first_but_leave_the_bulk_every_other_frame():
    scheduler = StreamScheduler(1400)
    bulk = _Stream(1)
    chat = _Stream(2, interactive=True)
    scheduler.push(bulk)
    scheduler.push(chat)
    order = [sid for sid, _ in _serve(scheduler, 6)]
    assert order == [2, 1, 2, 1, 2, 1]


def test_a_priority_change_moves_a_waiting_stream():
    scheduler = StreamScheduler(1400)
    a, b = _Stream(1), _Stream(2)
    scheduler.push(a)
    scheduler.push(b)
    scheduler.set_priority(b, 1, True)
    assert (b.urgency, b.incremental) == (1, True)
    assert scheduler.head() is b
    scheduler.pop(2)
    assert scheduler.head() is a and len(scheduler) == 1


# --- end to end, in the simulator ------------------------------------------------------


class Sim:
    """Two nodes with a session over ``link`` (both directions alike); the
    receiver's stream events are logged with their simulated time."""

    def __init__(self, seed: int, link: Link, **config) -> None:
        self.net = Network(seed)
        self.a = self.net.add_node("a", **config)
        self.b = self.net.add_node("b", **config)
        self.net.connect_nodes(self.a, self.b, link)
        self.sa, self.sb = connect(self.net, self.a, self.b)
        self.arrivals: list[tuple[float, object]] = []
        self.writable: list = []
        self.a.record_events = self.b.record_events = False
        self.b.on_event = lambda node, event: self.arrivals.append((self.net.now, event))
        self.a.on_event = lambda node, event: [w(event) for w in self.writable]

    @property
    def ep(self) -> Endpoint:
        return self.a.endpoint

    def open(self, **kwargs) -> int:
        return self.ep.open_stream(self.sa, now=self.net.now, **kwargs)

    def queue(self, stream_id: int, data: bytes) -> None:
        """Queue bytes without sending yet (call :meth:`flush` after)."""
        self.ep.send_stream_data(self.sa, stream_id, data, now=self.net.now)

    def flush(self) -> None:
        self.a.flush()

    def run(self, seconds: float, stop=None) -> bool:
        return self.net.run(until=self.net.now + seconds, stop=stop)

    def received(self, stream_id: int) -> list[tuple[float, int]]:
        """``(time, bytes)`` of each piece of the stream that arrived."""
        return [(t, len(e.data)) for t, e in self.arrivals
                if isinstance(e, StreamDataReceived) and e.stream_id == stream_id]

    def bulk(self, stream_id: int, total: int, chunk: int = 256 * 1024) -> list[int]:
        """Send ``total`` bytes on the stream as fast as the send buffer takes
        them; the returned list holds how many were accepted."""
        accepted = [0]

        def pump(event=None) -> None:
            if event is not None and not (isinstance(event, StreamWritable)
                                          and event.stream_id == stream_id):
                return
            while accepted[0] < total:
                n = min(chunk, total - accepted[0])
                try:
                    self.a.call(Endpoint.send_stream_data, self.sa, stream_id, bytes(n))
                except SendBufferFullError:
                    return
                accepted[0] += n

        self.writable.append(pump)
        pump()
        return accepted


def _spans(sim: Sim, streams) -> dict[int, tuple[float, float]]:
    """First and last arrival time of each stream's data."""
    spans = {}
    for sid in streams:
        times = [t for t, _ in sim.received(sid)]
        spans[sid] = (times[0], times[-1])
    return spans


#: Windows above what the tests send: a stream then waits for its turn only,
#: never for credit (a stream out of credit leaves its turn to others).
WIDE = dict(stream_window=4 * MiB, session_window=16 * MiB)


def test_urgency_orders_streams_and_the_less_urgent_still_progresses():
    sim = Sim(1, Link(latency=0.010, bandwidth=50e6), **WIDE)
    low = sim.open(priority=6)
    high = sim.open(priority=1)
    sim.queue(low, bytes(1 * MiB))
    sim.queue(high, bytes(1 * MiB))
    sim.flush()
    assert sim.run(10.0, stop=lambda: sum(n for _, n in sim.received(low)) == MiB)
    done_high = sim.received(high)[-1][0]
    assert sum(n for _, n in sim.received(high)) == MiB
    # Urgency 6 weighs 2 against 32 for urgency 1: about 1/17 of the bytes
    # while both wait, and never nothing.
    low_meanwhile = sum(n for t, n in sim.received(low) if t <= done_high)
    assert 0 < low_meanwhile
    share = low_meanwhile / (low_meanwhile + MiB)
    assert share >= 1 / 2 ** (6 + 1)
    assert share < 1 / 17 + 0.01


def test_non_incremental_streams_of_one_urgency_arrive_one_after_another():
    sim = Sim(2, Link(latency=0.010, bandwidth=50e6), **WIDE)
    streams = [sim.open(priority=2) for _ in range(3)]
    for sid in streams:
        sim.queue(sid, bytes(300_000))
    sim.flush()
    assert sim.run(10.0, stop=lambda: sum(n for _, n in sim.received(streams[-1])) == 300_000)
    spans = _spans(sim, streams)
    for first, second in zip(streams, streams[1:]):
        assert spans[first][1] <= spans[second][0]


def test_incremental_streams_of_one_urgency_arrive_interleaved():
    sim = Sim(3, Link(latency=0.010, bandwidth=50e6), **WIDE)
    streams = [sim.open(priority=2, incremental=True) for _ in range(3)]
    for sid in streams:
        sim.queue(sid, bytes(300_000))
    sim.flush()
    assert sim.run(10.0, stop=lambda: all(sum(n for _, n in sim.received(s)) == 300_000
                                          for s in streams))
    spans = _spans(sim, streams)
    end = min(last for _, last in spans.values())
    # Each is still arriving when another ends: they shared the path, and
    # each had most of its bytes before the first one was complete.
    for sid in streams:
        assert sum(n for t, n in sim.received(sid) if t <= end) > 0.8 * 300_000


def test_a_priority_change_reorders_what_is_queued():
    sim = Sim(4, Link(latency=0.010, bandwidth=50e6), **WIDE)
    first, second = sim.open(), sim.open()
    sim.queue(first, bytes(500_000))
    sim.queue(second, bytes(500_000))
    sim.ep.set_stream_priority(sim.sa, second, 0)
    sim.flush()
    assert sim.run(10.0, stop=lambda: sum(n for _, n in sim.received(first)) == 500_000)
    spans = _spans(sim, [first, second])
    assert spans[second][1] < spans[first][1]
    info = sim.ep.stream_info(sim.sa, second)
    assert (info["priority"], info["incremental"]) == (0, False)
    # The peer knows nothing of it: its streams have the default urgency.
    peer = sim.b.endpoint
    (opened, *_) = [e for _, e in sim.arrivals if isinstance(e, StreamOpened)]
    assert peer.stream_info(sim.sb, opened.stream_id)["priority"] == DEFAULT_URGENCY


@pytest.mark.parametrize("kwargs, error", [
    (dict(priority=8), ValueError), (dict(priority=-1), ValueError),
    (dict(priority=True), TypeError), (dict(priority=1.0), TypeError),
    (dict(priority="0"), TypeError), (dict(incremental=1), TypeError),
    (dict(priority=2, incremental="yes"), TypeError),
])
def test_bad_priorities_raise_and_open_nothing(kwargs, error):
    sim = Sim(5, Link(latency=0.005))
    before = sim.ep.stream_ids(sim.sa)
    with pytest.raises(error):
        sim.open(**kwargs)
    assert sim.ep.stream_ids(sim.sa) == before
    sid = sim.open()
    with pytest.raises(error):
        sim.ep.set_stream_priority(sim.sa, sid, kwargs.get("priority", 3),
                                   kwargs.get("incremental"))
    assert sim.ep.stream_info(sim.sa, sid)["priority"] == DEFAULT_URGENCY
    with pytest.raises(KeyError):
        sim.ep.set_stream_priority(sim.sa, 999, 1)


def test_a_chat_stream_is_interactive_until_it_sends_bulk():
    # Chat and bulk at the same urgency (the default, nobody set one): the
    # chat's small messages, one at a time, go ahead of the bulk transfer.
    rate, latency = 50e6, 0.010
    sim = Sim(6, Link(latency=latency, bandwidth=rate))
    bulk, chat = sim.open(), sim.open()
    sim.bulk(bulk, 50 * MiB)
    sim.run(0.5)  # the transfer fills the path
    packet = 8 * EndpointConfig.max_datagram_size / rate
    sent_at = []
    for _ in range(20):
        sent_at.append(sim.net.now)
        sim.a.call(Endpoint.send_message, sim.sa, chat, bytes(100))
        assert sim.ep.stream_info(sim.sa, chat)["interactive"]
        sim.run(0.05)
    arrived = [t for t, e in sim.arrivals
               if isinstance(e, MessageReceived) and e.stream_id == chat]
    assert len(arrived) == 20
    delays = [t - s for t, s in zip(arrived, sent_at)]
    # One way is 10 ms; the rest is the bulk's packets already in the link's
    # queue. Behind the bulk stream it would have waited for 50 MB (8 s).
    assert max(delays) < 2 * latency + packet, delays
    # A stream that starts sending bulk is interactive no more.
    sim.a.call(Endpoint.send_message, sim.sa, chat, bytes(200_000))
    assert not sim.ep.stream_info(sim.sa, chat)["interactive"]


def test_a_100_byte_urgent_message_overtakes_a_100_mb_transfer():
    # The test (msquic#1716): a 100 MB transfer at urgency 7
    # saturates the session; a 100-byte message at urgency 0 must be
    # delivered within one round trip plus one packet's serialisation,
    # measured from the send to the MessageReceived event, in simulated time.
    # The path: 100 Mbit/s each way, 10 ms one way (RTT 20 ms), a bottleneck
    # queue of 1 MB (deep enough that the bulk's congestion control never
    # overflows it: a message whose packet is dropped waits a loss recovery
    # more, which no scheduler helps). The message goes at 30 moments spread
    # over the congestion controller's probing cycles.
    rate, latency = 100e6, 0.010
    rtt = 2 * latency
    packet = 8 * EndpointConfig.max_datagram_size / rate  # the largest datagram's
    sim = Sim(7, Link(latency=latency, bandwidth=rate, queue_bytes=1_000_000))
    bulk = sim.open(priority=7)
    urgent = sim.open(priority=0)
    accepted = sim.bulk(bulk, 100 * 1000 * 1000)
    sim.run(1.0)
    # Saturated: the last 200 ms moved the link's rate.
    recent = sum(n for t, n in sim.received(bulk) if t > sim.net.now - 0.2)
    assert recent * 8 / 0.2 > 0.9 * rate

    def delivered() -> list[float]:
        return [t for t, e in sim.arrivals if isinstance(e, MessageReceived)]

    drops = sum(link.statistics()["queue_drops"] for link in sim.net.links)
    delays = []
    for k in range(30):
        sim.run(0.0123 + 0.00037 * k)  # moments that do not repeat the cycles' phase
        count = len(delivered())
        sent = sim.net.now
        sim.a.call(Endpoint.send_message, sim.sa, urgent, bytes(100))
        assert sim.run(1.0, stop=lambda: len(delivered()) > count)
        delays.append(delivered()[-1] - sent)
    assert [e.data for _, e in sim.arrivals if isinstance(e, MessageReceived)] == [bytes(100)] * 30
    assert sum(link.statistics()["queue_drops"] for link in sim.net.links) == drops
    assert accepted[0] < 100 * 1000 * 1000  # the transfer was never done
    print(f"100 B at urgency 0 behind 100 MB at urgency 7: delivered in "
          f"{min(delays) * 1e3:.2f} to {max(delays) * 1e3:.2f} ms "
          f"(median {sorted(delays)[15] * 1e3:.2f}); bound {(rtt + packet) * 1e3:.3f} ms "
          f"(RTT {rtt * 1e3:.0f} ms + {packet * 1e6:.0f} us)")
    assert max(delays) <= rtt + packet
