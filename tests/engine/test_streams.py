"""Streams and sessions end to end, in the simulator (seeded, simulated time).

Each test builds two real endpoints joined by a simulated link
(``stt_proto.testing``), drives them through their public commands and checks
what the applications see: messages whole, in order and exactly once; stream
ids; ``max_frame_size``; the byte-stream view; FIN, RESET and STOP; flow
control; loss recovery; keep-alives, idle timeouts and closes; datagrams next
to streams. No sockets and no clock: a failure replays from its seed.
"""

from __future__ import annotations

import random

import pytest

from stt_proto.constants import ErrorCode
from stt_proto.endpoint import Endpoint
from stt_proto.errors import (
    LocalProtocolError,
    MessageTooLargeError,
    SendBufferFullError,
    StreamClosedError,
    StreamIdUsedError,
)
from stt_proto.events import (
    DatagramReceived,
    MessageReceived,
    SessionClosed,
    SessionEstablished,
    StreamClosed,
    StreamDataReceived,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamStopped,
    StreamWritable,
)
from stt_proto.testing import Link, Network

MiB = 1024 * 1024

#: A clean, fast path: 20 ms round trip, 100 Mbit/s each way.
CLEAN = dict(latency=0.010, bandwidth=100e6)


# --- helpers ----------------------------------------------------------------------


class Pair:
    """Two nodes ``a`` (the initiator) and ``b`` with an established session.

    Every event is logged with the simulated time it was pulled at
    (``log["a"]``, ``log["b"]``); ``on["a"]``/``on["b"]`` are extra handlers
    called after logging, so tests can react (pump, consume) at the same instant.
    """

    def __init__(self, seed: int = 1, link: Link | None = None, link_ba: Link | None = None,
                 *, a: dict | None = None, b: dict | None = None, **common) -> None:
        self.net = net = Network(seed)
        self.a = net.add_node("a", **{**common, **(a or {})})
        self.b = net.add_node("b", **{**common, **(b or {})})
        self.log: dict[str, list] = {"a": [], "b": []}
        self.on: dict[str, list] = {"a": [], "b": []}
        for node in (self.a, self.b):
            node.on_event = self._record
        self.ab, self.ba = net.connect_nodes(self.a, self.b, link or Link(**CLEAN), link_ba)
        self.sa = self.a.connect(self.b)
        net.run(until=net.now + 120.0, stop=lambda: self.a.events_of(SessionEstablished)
                and self.b.events_of(SessionEstablished))
        (established,) = self.b.events_of(SessionEstablished)
        assert self.a.events_of(SessionEstablished), f"seed {seed}: no session"
        self.sb = established.session_id
        self.sid = {"a": self.sa, "b": self.sb}

    def _record(self, node, event) -> None:
        self.log[node.name].append((self.net.now, event))
        for handler in self.on[node.name]:
            handler(node, event)

    # -- commands, by side name
    def node(self, side: str):
        return self.a if side == "a" else self.b

    def ep(self, side: str) -> Endpoint:
        return self.node(side).endpoint

    def call(self, side: str, fn, *args, **kwargs):
        return self.node(side).call(fn, self.sid[side], *args, **kwargs)

    def open(self, side: str, stream_id: int | None = None, **kwargs) -> int:
        kwargs.setdefault("now", self.net.now)
        return self.ep(side).open_stream(self.sid[side], stream_id, **kwargs)

    def send(self, side: str, stream_id: int, data: bytes, **kwargs) -> None:
        self.call(side, Endpoint.send_message, stream_id, data, **kwargs)

    def stats(self, side: str) -> dict:
        return self.ep(side).session_statistics(self.sid[side])

    def run(self, seconds: float, stop=None) -> bool:
        return self.net.run(until=self.net.now + seconds, stop=stop)

    # -- what arrived
    def events(self, side: str, *types, stream_id: int | None = None) -> list:
        types = types or (object,)
        return [e for _, e in self.log[side] if isinstance(e, types)
                and (stream_id is None or getattr(e, "stream_id", None) == stream_id)]

    def timed(self, side: str, *types, stream_id: int | None = None) -> list:
        types = types or (object,)
        return [(t, e) for t, e in self.log[side] if isinstance(e, types)
                and (stream_id is None or getattr(e, "stream_id", None) == stream_id)]

    def messages(self, side: str, stream_id: int) -> list[bytes]:
        return [e.data for e in self.events(side, MessageReceived, stream_id=stream_id)]


def payloads(seed: int, sizes) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(size) for size in sizes]


class Pump:
    """Sends ``messages`` on a stream as fast as the engine accepts them,
    resuming on ``StreamWritable``; ``sent`` is what was accepted."""

    def __init__(self, p: Pair, side: str, stream_id: int, messages: list[bytes]) -> None:
        self.p, self.side, self.stream_id = p, side, stream_id
        self.queue = list(messages)
        self.sent: list[bytes] = []
        self.refused = 0
        p.on[side].append(self._on_event)
        self.pump()

    def _on_event(self, node, event) -> None:
        if isinstance(event, StreamWritable) and event.stream_id == self.stream_id:
            self.pump()

    def pump(self) -> None:
        while self.queue:
            try:
                self.p.send(self.side, self.stream_id, self.queue[0])
            except SendBufferFullError:
                self.refused += 1
                return
            self.sent.append(self.queue.pop(0))


# --- 1. message semantics -----------------------------------------------------------


def test_each_message_arrives_once_whole_and_in_order():
    p = Pair(seed=11)
    rng = random.Random(11)
    sent = payloads(11, [rng.choice([0, 1, 7, 300, 1400, 5000, 70_000]) for _ in range(120)])
    stream = p.open("a")
    for message in sent:
        p.send("a", stream, message)
    p.call("a", Endpoint.end_stream, stream)
    p.run(20.0, stop=lambda: p.events("b", StreamEnded))
    assert p.messages("b", stream) == sent
    # The end comes after the last message, and nothing else shows up on b.
    kinds = [type(e) for e in p.events("b", MessageReceived, StreamEnded, stream_id=stream)]
    assert kinds == [MessageReceived] * len(sent) + [StreamEnded]
    assert p.stats("b")["messages_received"] == len(sent)
    assert p.stats("a")["messages_sent"] == len(sent)


def test_zero_byte_messages_are_messages():
    p = Pair(seed=12)
    stream = p.open("a")
    for message in (b"", b"", b"x", b"", b""):
        p.send("a", stream, message)
    p.send("a", stream, b"", end_stream=True)
    p.run(5.0, stop=lambda: p.events("b", StreamEnded))
    assert p.messages("b", stream) == [b"", b"", b"x", b"", b"", b""]
    # Every message accounts for its framing in flow control, even an empty one.
    assert all(e.flow_controlled_length >= 1 for e in p.events("b", MessageReceived))


def test_many_small_messages_are_packed_into_few_packets():
    p = Pair(seed=13)
    rng = random.Random(13)
    sent = [rng.randbytes(rng.randint(1, 20)) for _ in range(5000)]
    stream = p.open("a")
    for message in sent:
        p.send("a", stream, message)
    p.run(10.0, stop=lambda: len(p.events("b", MessageReceived)) == len(sent))
    assert p.messages("b", stream) == sent
    # About 80 messages fit in a packet: nowhere near one packet per message.
    assert p.stats("a")["packets_sent"] < len(sent) // 10


def test_a_4_mib_message_with_default_windows_does_not_deadlock():
    # 4 MiB is 16 default stream windows and 4 default session windows.
    p = Pair(seed=14)
    (big,) = payloads(14, [4 * MiB])
    stream = p.open("a")
    # The 4 MiB message fills the default send buffer: the next one waits for
    # StreamWritable.
    pump = Pump(p, "a", stream, [big, b"after"])
    assert pump.sent == [big] and pump.refused == 1
    assert p.run(30.0, stop=lambda: len(p.events("b", MessageReceived)) == 2)
    assert p.messages("b", stream) == [big, b"after"]
    assert p.events("a", StreamWritable, stream_id=stream)
    # A 100 Mbit/s path moves 4 MiB in a third of a second: allow a few times that.
    assert p.net.now < 3.0


def test_the_session_send_buffer_bounds_all_streams_together():
    # Each stream's own buffer (4 MiB) is far above what it sends; the
    # session-wide limit is what refuses, and StreamWritable resumes every
    # refused stream once acknowledgements free room.
    limit, size = 100_000, 30_000
    p = Pair(seed=16, a={"max_session_send_buffer": limit})
    streams = [p.open("a") for _ in range(4)]
    queued = {s: payloads(s, [size] * 15) for s in streams}
    peak = []

    def watch(node, event) -> None:
        peak.append(p.stats("a")["send_held"])

    p.on["a"].append(watch)
    pumps = [Pump(p, "a", s, queued[s]) for s in streams]
    # The first sends fill the session: later streams are refused at once.
    assert p.stats("a")["send_held"] >= limit
    assert not p.ep("a").stream_writable(p.sa, streams[-1])
    assert p.run(30.0, stop=lambda: len(p.events("b", MessageReceived)) == 60)
    for s in streams:
        assert p.messages("b", s) == queued[s]
    assert all(pump.refused for pump in pumps)
    p.run(1.0)  # the last acknowledgements
    stats = p.stats("a")
    assert stats["sends_refused_session_buffer"] >= 4
    # Refused at the limit; the send that crossed it may overshoot by one message.
    assert max(peak) < limit + size + 16
    assert stats["send_held"] == stats["send_buffered"] == 0


def test_a_send_opening_a_stream_refused_for_the_session_buffer_is_woken_up():
    # The refused send opened nothing, but the id still gets its StreamWritable
    # (an adapter waits for exactly that before trying again).
    p = Pair(seed=17, a={"max_session_send_buffer": 20_000})
    p.send("a", p.open("a"), bytes(30_000))
    new_id = 101
    with pytest.raises(SendBufferFullError):
        p.send("a", new_id, b"hello")
    assert new_id not in p.ep("a").stream_ids(p.sa)
    assert p.run(10.0, stop=lambda: p.events("a", StreamWritable, stream_id=new_id))
    p.send("a", new_id, b"hello")
    assert p.run(10.0, stop=lambda: p.messages("b", new_id) == [b"hello"])


@pytest.mark.parametrize("auto_credit", [True, False])
def test_messages_larger_than_the_session_window_get_through(auto_credit):
    # Windows that cannot grow, far below the messages; two streams at once.
    small = dict(stream_window=4096, max_stream_window=4096, session_window=8192,
                 max_session_window=8192)
    p = Pair(seed=15, **small, b={"auto_credit": auto_credit})
    if not auto_credit:
        p.on["b"].append(lambda node, e: isinstance(e, (MessageReceived, StreamEnded))
                         and p.call("b", Endpoint.stream_consumed, e.stream_id,
                                    e.flow_controlled_length))
    big1, big2, tail = payloads(15, [1 * MiB, 600_000, 10])
    s1, s2 = p.open("a"), p.open("a")
    p.send("a", s1, big1)
    p.send("a", s2, big2)
    p.send("a", s2, tail)
    assert p.run(60.0, stop=lambda: len(p.events("b", MessageReceived)) == 3)
    assert p.messages("b", s1) == [big1]
    assert p.messages("b", s2) == [big2, tail]
    assert p.events("a", SessionClosed) == p.events("b", SessionClosed) == []


def test_streams_are_interleaved_so_a_small_message_is_not_stuck_behind_a_big_one():
    p = Pair(16, Link(latency=0.010, bandwidth=50e6))
    (big,) = payloads(16, [4 * MiB])
    s_big, s_small = p.open("a"), p.open("a")
    start = p.net.now
    p.send("a", s_big, big)
    p.run(0.1)  # the big transfer is well under way
    small_sent = p.net.now
    p.send("a", s_small, b"urgent")
    p.run(30.0, stop=lambda: len(p.events("b", MessageReceived)) == 2)
    ((t_small, small),) = p.timed("b", MessageReceived, stream_id=s_small)
    ((t_big, got_big),) = p.timed("b", MessageReceived, stream_id=s_big)
    assert small.data == b"urgent" and got_big.data == big
    # At 50 Mbit/s the big message needs at least 0.67 s; the small one must not
    # wait for it, only for its share of the packets in the path's queue.
    assert t_big - start > 0.6
    assert t_small - small_sent < 0.1
    assert t_small < t_big - 0.3


# --- 2. stream ids ---------------------------------------------------------------------


def test_allocated_ids_are_odd_on_the_initiator_and_even_on_the_responder():
    p = Pair(seed=21)
    a_ids = [p.open("a") for _ in range(5)]
    b_ids = [p.open("b") for _ in range(5)]
    assert all(i % 2 == 1 for i in a_ids) and all(i % 2 == 0 for i in b_ids)
    assert len(set(a_ids) | set(b_ids)) == 10
    # The allocator skips ids the application chose, and ids the peer opened.
    chosen = a_ids[-1] + 2
    assert p.open("a", chosen) == chosen
    p.send("b", chosen + 2, b"b opens an odd id")
    p.run(1.0, stop=lambda: p.events("a", MessageReceived))
    nxt = p.open("a")
    assert nxt % 2 == 1 and nxt not in (chosen, chosen + 2) and nxt not in a_ids
    # Messages on every one of them reach the other side on the same id.
    for i in a_ids:
        p.send("a", i, b"from a %d" % i)
    for i in b_ids:
        p.send("b", i, b"from b %d" % i)
    p.run(2.0)
    for i in a_ids:
        assert p.messages("b", i) == [b"from a %d" % i]
    for i in b_ids:
        assert p.messages("a", i) == [b"from b %d" % i]


def test_either_side_may_send_first_on_any_id_and_the_peer_sees_it_opened_first():
    p = Pair(seed=22)
    # The responder on an odd id, the initiator on an even one, a large id too.
    p.send("b", 41, b"b first")
    p.send("a", 40, b"a first")
    p.send("a", 2**62 - 1, b"largest id")
    p.run(1.0)
    for side, sid, data in (("a", 41, b"b first"), ("b", 40, b"a first"),
                            ("b", 2**62 - 1, b"largest id")):
        kinds = [type(e) for e in p.events(side, StreamOpened, MessageReceived, stream_id=sid)]
        assert kinds == [StreamOpened, MessageReceived], (side, sid)
        assert p.messages(side, sid) == [data]
        assert p.ep(side).stream_info(p.sid[side], sid)["opened_by_peer"] is True
    # The side that sent first did not hear of its own stream.
    assert p.events("b", StreamOpened, stream_id=41) == []
    # Both opening the same id at once is one stream, not two.
    p.send("a", 77, b"a on 77")
    p.send("b", 77, b"b on 77")
    p.run(1.0)
    assert p.messages("a", 77) == [b"b on 77"] and p.messages("b", 77) == [b"a on 77"]
    assert p.events("a", StreamOpened, stream_id=77) == []
    assert p.events("b", StreamOpened, stream_id=77) == []


def test_open_stream_on_an_existing_id_returns_it_and_updates_max_frame_size():
    p = Pair(seed=23)
    s = p.open("a", 7, max_frame_size=100)
    assert s == 7 and p.ep("a").stream_info(p.sa, 7)["max_frame_size"] == 100
    assert p.open("a", 7, max_frame_size=5000) == 7
    assert p.ep("a").stream_info(p.sa, 7)["max_frame_size"] == 5000
    assert p.open("a", 7) == 7  # without max_frame_size: unchanged
    assert p.ep("a").stream_info(p.sa, 7)["max_frame_size"] == 5000
    assert p.ep("a").stream_ids(p.sa) == [7]
    # The peer gets hold of a stream the other side opened the same way.
    p.send("a", 7, b"hello")
    p.run(1.0)
    assert p.open("b", 7, max_frame_size=10) == 7
    info = p.ep("b").stream_info(p.sb, 7)
    assert info["opened_by_peer"] is True and info["max_frame_size"] == 10


@pytest.mark.parametrize("kwargs", [
    dict(stream_id=-1), dict(stream_id=2**62), dict(stream_id=True), dict(stream_id=1.0),
    dict(stream_id=3, max_frame_size=-1), dict(stream_id=3, max_frame_size=True),
])
def test_open_stream_argument_checks(kwargs):
    p = Pair(seed=24)
    with pytest.raises(ValueError):
        p.ep("a").open_stream(p.sa, **kwargs)
    assert p.ep("a").stream_ids(p.sa) == []
    with pytest.raises(KeyError):
        p.ep("a").open_stream(b"\0" * 16)


# --- 3. max_frame_size -------------------------------------------------------------------


def test_a_send_larger_than_max_frame_size_raises_and_queues_nothing():
    p = Pair(seed=31)
    s = p.open("a", max_frame_size=1000)
    sent_before = p.stats("a")["packets_sent"]
    with pytest.raises(MessageTooLargeError):
        p.send("a", s, bytes(1001))
    assert p.ep("a").stream_info(p.sa, s)["send_buffered"] == 0
    assert p.stats("a")["packets_sent"] == sent_before
    p.send("a", s, bytes(1000))  # the limit itself is fine
    p.run(1.0)
    assert p.messages("b", s) == [bytes(1000)]
    # Bytes are not messages: the limit does not apply to a byte stream.
    s2 = p.open("a", max_frame_size=10)
    p.call("a", Endpoint.send_stream_data, s2, bytes(100))


def test_a_refused_send_on_a_new_id_opens_no_stream():
    p = Pair(seed=34, max_frame_size=1000)
    with pytest.raises(MessageTooLargeError):
        p.send("a", 99, bytes(1001))
    assert p.ep("a").stream_ids(p.sa) == []
    assert p.stats("a")["streams_open"] == 0


def test_an_oversized_incoming_message_resets_only_its_stream():
    p = Pair(seed=32, b={"max_frame_size": 64 * 1024})
    big, = payloads(32, [100_000])
    s, other = p.open("a"), p.open("a")
    p.send("a", s, b"first")
    p.send("a", s, big)
    p.send("a", s, b"never")
    p.send("a", other, b"other stream")
    p.run(2.0)
    assert p.messages("b", s) == [b"first"]
    (reset,) = p.events("b", StreamReset, stream_id=s)
    assert reset.error_code == ErrorCode.MESSAGE_TOO_LARGE
    (stopped,) = p.events("a", StreamStopped, stream_id=s)
    assert stopped.error_code == ErrorCode.MESSAGE_TOO_LARGE
    with pytest.raises(StreamClosedError):
        p.send("a", s, b"more")
    # The session and the other streams carry on.
    assert p.messages("b", other) == [b"other stream"]
    p.send("a", other, b"still working")
    p.send("b", other, b"both ways")
    p.run(1.0)
    assert p.messages("b", other) == [b"other stream", b"still working"]
    assert p.messages("a", other) == [b"both ways"]
    assert p.events("a", SessionClosed) == p.events("b", SessionClosed) == []
    # Once b ends its side the refused stream closes on both sides.
    p.call("b", Endpoint.end_stream, s)
    p.run(1.0)
    assert p.events("a", StreamClosed, stream_id=s) and p.events("b", StreamClosed, stream_id=s)
    assert s not in p.ep("a").stream_ids(p.sa) and s not in p.ep("b").stream_ids(p.sb)


def test_the_receivers_per_stream_max_frame_size_applies():
    p = Pair(seed=33)
    p.open("b", 9, max_frame_size=50)
    p.send("a", 9, bytes(50))
    p.send("a", 9, bytes(51))
    p.run(1.0)
    assert p.messages("b", 9) == [bytes(50)]
    (reset,) = p.events("b", StreamReset, stream_id=9)
    assert reset.error_code == ErrorCode.MESSAGE_TOO_LARGE
    assert p.events("b", StreamOpened, stream_id=9) == []  # b opened it itself


# --- 4. byte streams ---------------------------------------------------------------------


def test_byte_stream_chunks_concatenate_to_what_was_sent():
    p = Pair(41, Link(latency=0.01, bandwidth=50e6, loss=0.03, reorder=0.05))
    rng = random.Random(41)
    chunks = [rng.randbytes(rng.choice([0, 1, 10, 999, 20_000, 200_000])) for _ in range(60)]
    s = p.open("a")
    for chunk in chunks[:-1]:
        p.call("a", Endpoint.send_stream_data, s, chunk)
    p.call("a", Endpoint.send_stream_data, s, chunks[-1], end_stream=True)
    assert p.run(60.0, stop=lambda: p.events("b", StreamEnded))
    got = p.events("b", StreamDataReceived, StreamEnded, MessageReceived, stream_id=s)
    assert isinstance(got[-1], StreamEnded)
    assert all(type(e) is StreamDataReceived and e.data for e in got[:-1])
    assert b"".join(e.data for e in got[:-1]) == b"".join(chunks)


def test_mixing_messages_and_bytes_on_one_side_raises():
    p = Pair(seed=42)
    s1, s2 = p.open("a"), p.open("a")
    p.send("a", s1, b"message")
    with pytest.raises(LocalProtocolError):
        p.call("a", Endpoint.send_stream_data, s1, b"bytes")
    p.call("a", Endpoint.send_stream_data, s2, b"bytes")
    with pytest.raises(LocalProtocolError):
        p.send("a", s2, b"message")
    # Refused sends changed nothing; each side of a stream picks its own mode.
    p.send("a", s1, b"second message")
    p.run(1.0)
    p.call("b", Endpoint.send_stream_data, s1, b"b answers in bytes")
    p.run(1.0)
    assert p.messages("b", s1) == [b"message", b"second message"]
    assert [e.data for e in p.events("b", StreamDataReceived, stream_id=s2)] == [b"bytes"]
    assert [e.data for e in p.events("a", StreamDataReceived, stream_id=s1)] == \
        [b"b answers in bytes"]


# --- 5. FIN, RESET, STOP -------------------------------------------------------------------


def test_a_stream_with_no_data_opens_ends_and_closes():
    p = Pair(seed=50)
    s = p.open("a")
    p.call("a", Endpoint.end_stream, s)
    p.run(0.5)
    kinds = [type(e) for e in p.events("b", stream_id=s)]
    assert kinds == [StreamOpened, StreamEnded]
    p.call("b", Endpoint.end_stream, s)
    p.run(0.5)
    assert [type(e) for e in p.events("a", stream_id=s)] == [StreamEnded, StreamClosed]
    assert p.events("b", StreamClosed, stream_id=s)
    assert p.ep("a").stream_ids(p.sa) == p.ep("b").stream_ids(p.sb) == []


def test_end_stream_then_both_sides_done_closes_the_stream_everywhere():
    p = Pair(seed=51)
    s = p.open("a")
    p.send("a", s, b"request")
    p.call("a", Endpoint.end_stream, s)
    with pytest.raises(StreamClosedError):
        p.send("a", s, b"after the end")
    p.run(1.0)
    kinds = [type(e) for e in p.events("b", StreamOpened, MessageReceived, StreamEnded,
                                       stream_id=s)]
    assert kinds == [StreamOpened, MessageReceived, StreamEnded]
    # Half-closed: b still answers, and the stream is open until it ends too.
    assert p.events("a", StreamClosed) == p.events("b", StreamClosed) == []
    p.send("b", s, b"response", end_stream=True)
    p.run(1.0)
    assert p.messages("a", s) == [b"response"] and p.events("a", StreamEnded, stream_id=s)
    for side in ("a", "b"):
        assert [e.stream_id for e in p.events(side, StreamClosed)] == [s]
        assert p.ep(side).stream_ids(p.sid[side]) == []
        assert p.stats(side)["streams_open"] == 0
    # Ending (or resetting) a stream that closed already does nothing.
    p.call("a", Endpoint.end_stream, s)
    p.call("a", Endpoint.reset_stream, s, 1)
    p.call("a", Endpoint.stop_stream, s, 1)


def test_reset_stream_reports_the_code_and_drops_what_was_not_delivered():
    p = Pair(52, Link(latency=0.05, bandwidth=10e6))
    s = p.open("a")
    p.send("a", s, b"delivered")
    p.run(0.5)
    big, = payloads(52, [2 * MiB])
    p.send("a", s, big)
    p.send("a", s, b"queued after it")
    p.call("a", Endpoint.reset_stream, s, 42)
    with pytest.raises(StreamClosedError):
        p.send("a", s, b"after the reset")
    p.run(5.0)
    assert p.messages("b", s) == [b"delivered"]
    (reset,) = p.events("b", StreamReset, stream_id=s)
    assert reset.error_code == 42
    # Far less than the abandoned message crossed the path.
    assert p.stats("a")["stream_bytes_sent"] < MiB
    p.call("b", Endpoint.end_stream, s)
    p.run(2.0)
    for side in ("a", "b"):
        assert p.events(side, StreamClosed, stream_id=s)
        assert p.ep(side).stream_ids(p.sid[side]) == []
        assert p.stats(side)["send_buffered"] == p.stats(side)["recv_buffered"] == 0


def test_stop_stream_stops_the_sender():
    p = Pair(seed=53)
    s = p.open("a")
    p.send("a", s, b"one")
    p.run(0.5)
    p.call("b", Endpoint.stop_stream, s, 9)
    p.run(0.5)
    (stopped,) = p.events("a", StreamStopped, stream_id=s)
    assert stopped.error_code == 9
    with pytest.raises(StreamClosedError):
        p.send("a", s, b"two")
    assert p.messages("b", s) == [b"one"]
    assert p.events("a", StreamClosed) == []  # b's side is still open
    p.call("b", Endpoint.send_message, s, b"b's last word", end_stream=True)
    p.run(1.0)
    assert p.messages("a", s) == [b"b's last word"]
    for side in ("a", "b"):
        assert [e.stream_id for e in p.events(side, StreamClosed)] == [s]
        assert p.ep(side).stream_ids(p.sid[side]) == []


def test_a_used_id_never_opens_again_in_the_session():
    # docs/protocol.md 7.5: once used (opened by either side), an id never
    # opens again in the session, however long after its stream closed.
    p = Pair(seed=54)
    s = p.open("a")
    p.send("a", s, b"x", end_stream=True)
    p.send("b", s, b"y", end_stream=True)
    p.run(0.5)
    assert p.events("a", StreamClosed, stream_id=s) and p.events("b", StreamClosed, stream_id=s)
    p.send("b", 40, b"b's own", end_stream=True)   # an id b chose, b opened first
    p.run(0.5)
    p.send("a", 40, b"a's answer", end_stream=True)
    p.run(0.5)
    assert p.events("a", StreamClosed, stream_id=40) and p.events("b", StreamClosed, stream_id=40)
    p.run(120.0)                                   # long past any idle timeout
    for side in ("a", "b"):
        for used in (s, 40):
            with pytest.raises(StreamIdUsedError, match="already used"):
                p.open(side, used)
            with pytest.raises(StreamIdUsedError):
                p.send(side, used, b"late")
            # Ending, resetting or stopping a stream that closed does nothing.
            p.call(side, Endpoint.end_stream, used)
            p.call(side, Endpoint.reset_stream, used, 1)
            p.call(side, Endpoint.stop_stream, used, 1)
    # The allocator never hands out a used id; ids stay monotonic.
    assert p.open("a") == s + 2
    assert p.stats("a")["used_stream_ranges"] == 2   # {1, 3} and {40}
    p.run(1.0)
    # (b sent on the first id at once: both sides opened it locally.)
    assert [e.stream_id for e in p.events("a", StreamOpened)] == [40]
    assert p.events("b", StreamOpened) == []
    assert p.events("a", SessionClosed) == p.events("b", SessionClosed) == []


def test_a_send_refused_before_opening_leaves_the_id_unused():
    # A send that would open an id and is refused (here: too large) queued
    # nothing, so the id was never used: it can still be opened.
    p = Pair(seed=57, a={"max_frame_size": 1000})
    with pytest.raises(MessageTooLargeError):
        p.send("a", 9, bytes(1001))
    assert p.stats("a")["used_stream_ids"] == 0
    p.send("a", 9, b"fits", end_stream=True)
    p.run(0.5)
    assert p.messages("b", 9) == [b"fits"]


def test_late_and_repeated_frames_for_closed_streams_are_absorbed():
    # Reordering beyond the loss threshold makes retransmissions spurious: the
    # original and its copy both arrive, one of them after the stream closed.
    link = Link(latency=0.01, bandwidth=20e6, reorder=0.2, reorder_delay=0.08,
                duplicate=0.2, loss=0.02)
    p = Pair(56, link)
    sent = {}
    for round_ in range(8):
        for _ in range(6):
            s = p.open("a")
            sent[s] = payloads(s, [1 + 97 * s % 3000, 10])
            for m in sent[s]:
                p.send("a", s, m)
            p.call("a", Endpoint.end_stream, s)
        p.on["b"] = [lambda node, e: isinstance(e, StreamEnded)
                     and p.call("b", Endpoint.end_stream, e.stream_id)]
        p.run(0.15)
    p.run(20.0, stop=lambda: all(len(p.events(side, StreamClosed)) == len(sent)
                                 for side in ("a", "b")))
    for s, messages in sent.items():
        assert p.messages("b", s) == messages
        assert len(p.events("b", StreamOpened, stream_id=s)) == 1
        assert len(p.events("b", StreamEnded, stream_id=s)) == 1
    p.run(5.0)
    assert len(p.events("b", StreamOpened)) == len(sent)
    assert p.events("a", StreamOpened) == []
    # Late frames are absorbed quietly: nobody reset or stopped anything.
    for side in ("a", "b"):
        assert p.events(side, StreamReset, StreamStopped) == [], side
    assert p.events("a", SessionClosed) == p.events("b", SessionClosed) == []
    assert p.ep("a").stream_ids(p.sa) == p.ep("b").stream_ids(p.sb) == []
    # The scenario did exercise late frames for closed streams.
    assert p.stats("b")["spurious_frames_absorbed"] > 0
    assert p.stats("a")["bytes_retransmitted"] > 0


# --- 6. flow control ---------------------------------------------------------------------


def test_a_reader_that_does_not_consume_stops_the_sender():
    window = 32 * 1024
    send_buffer = 128 * 1024
    message = 10_000
    framed = message + 2  # a 2-byte length prefix
    p = Pair(61, stream_window=window, max_stream_window=1 * MiB,
             session_window=64 * 1024, max_session_window=4 * MiB,
             max_send_buffer=send_buffer, b={"auto_credit": False})
    s = p.open("a")
    pump = Pump(p, "a", s, payloads(61, [message] * 60))
    # One message is accepted while the buffer is below the limit, then no more.
    assert pump.refused == 1
    assert send_buffer <= 1 + len(pump.sent) * framed < send_buffer + framed

    def check_bounded() -> None:
        a_stats, b_stats = p.stats("a"), p.stats("b")
        a_info = p.ep("a").stream_info(p.sa, s)
        b_info = p.ep("b").stream_info(p.sb, s)
        # Nothing beyond the first window (plus the message that straddles it).
        assert a_stats["stream_bytes_sent"] <= window + framed
        assert a_stats["stream_bytes_in_flight"] <= window + framed
        assert b_stats["stream_bytes_received"] <= window + framed
        assert b_info["recv_buffered"] <= window + framed
        assert a_info["send_buffered"] <= send_buffer + framed
        assert b_info["recv_window"] == window  # no consumption, no growth

    # Acknowledgements of the first window free some send buffer (StreamWritable
    # refills it); after that the sender is stuck on credit alone.
    p.run(2.0)
    check_bounded()
    writable = len(p.events("a", StreamWritable))
    sent = len(pump.sent)
    assert not p.ep("a").stream_writable(p.sa, s)
    for _ in range(20):
        p.run(1.0)
        check_bounded()
    assert len(p.events("a", StreamWritable)) == writable and len(pump.sent) == sent
    delivered = p.events("b", MessageReceived)
    assert 0 < len(delivered) < len(pump.sent)
    assert p.events("a", SessionClosed) == []

    # The reader consumes what it was given and all that follows.
    def consume(node, event) -> None:
        if isinstance(event, (MessageReceived, StreamEnded)):
            p.call("b", Endpoint.stream_consumed, event.stream_id, event.flow_controlled_length)

    p.on["b"].append(consume)
    for event in delivered:
        p.call("b", Endpoint.stream_consumed, s, event.flow_controlled_length)
    assert p.run(30.0, stop=lambda: not pump.queue
                 and len(p.events("b", MessageReceived)) == len(pump.sent))
    assert p.messages("b", s) == pump.sent and len(pump.sent) == 60
    assert len(p.events("a", StreamWritable, stream_id=s)) > writable


@pytest.mark.parametrize("auto_credit", [True, False])
def test_resets_and_stops_return_all_session_credit(auto_credit):
    # A small session window that cannot grow: any credit lost to a reset or a
    # stopped stream would soon starve the session.
    small = dict(stream_window=4096, max_stream_window=4096, session_window=16384,
                 max_session_window=16384)
    p = Pair(63, Link(latency=0.01, bandwidth=20e6, loss=0.05, reorder=0.05), **small,
             b={"auto_credit": auto_credit})
    rng = random.Random(63)
    to_stop: set[int] = set()

    def on_b(node, e) -> None:
        if not auto_credit and isinstance(e, (MessageReceived, StreamEnded)):
            p.call("b", Endpoint.stream_consumed, e.stream_id, e.flow_controlled_length)
        if isinstance(e, (StreamEnded, StreamReset)):
            p.call("b", Endpoint.end_stream, e.stream_id)
        if isinstance(e, MessageReceived) and e.stream_id in to_stop:
            to_stop.discard(e.stream_id)
            p.call("b", Endpoint.stop_stream, e.stream_id, 3)
            p.call("b", Endpoint.end_stream, e.stream_id)

    p.on["b"].append(on_b)
    endings = []
    for _ in range(30):
        s = p.open("a")
        ending = rng.choice(["fin", "reset", "stop"])
        endings.append(ending)
        p.send("a", s, rng.randbytes(rng.randint(100, 3000)))
        p.send("a", s, rng.randbytes(rng.randint(5000, 60000)))
        if ending == "reset":
            p.run(rng.uniform(0.0, 0.05))
            p.call("a", Endpoint.reset_stream, s, 1)
        elif ending == "stop":
            to_stop.add(s)
        else:
            p.call("a", Endpoint.end_stream, s)
        p.run(rng.uniform(0.0, 0.05))
    p.run(30.0)
    assert {"fin", "reset", "stop"} <= set(endings)
    a, b = p.stats("a"), p.stats("b")
    assert a["streams_open"] == b["streams_open"] == 0
    # Both sides agree on the credit left, and it is at least a whole window.
    assert a["send_credit"] == b["recv_credit"] >= small["session_window"]
    last = p.open("a")
    (big,) = payloads(63, [MiB])
    p.send("a", last, big)
    assert p.run(30.0, stop=lambda: p.messages("b", last) == [big])
    assert p.events("a", SessionClosed) == p.events("b", SessionClosed) == []


def test_streams_beyond_max_streams_are_refused_and_the_session_survives():
    p = Pair(64, b={"max_streams": 4})
    ids = [p.open("a") for _ in range(6)]
    for i in ids:
        p.send("a", i, b"hello %d" % i)
    p.run(1.0)
    assert [e.stream_id for e in p.events("b", StreamOpened)] == ids[:4]
    assert [(e.stream_id, e.error_code) for e in p.events("a", StreamStopped)] == \
        [(i, ErrorCode.STREAM_LIMIT_ERROR) for i in ids[4:]]
    assert p.stats("b")["streams_refused"] == 2
    for i in ids[4:]:
        with pytest.raises(StreamClosedError):
            p.send("a", i, b"again")
    # Closing accepted streams makes room for new ones.
    for i in ids[:4]:
        p.call("a", Endpoint.end_stream, i)
        p.call("b", Endpoint.end_stream, i)
    p.run(1.0)
    fresh = p.open("a")
    p.send("a", fresh, b"room again")
    p.run(1.0)
    assert p.messages("b", fresh) == [b"room again"]
    assert p.events("a", SessionClosed) == p.events("b", SessionClosed) == []


def test_a_refused_stream_is_always_reported_to_its_opener():
    p = Pair(65, b={"max_streams": 1})
    first, refused = p.open("a"), p.open("a")
    p.send("a", first, b"accepted")
    # Small enough to be acknowledged in the very packet that refuses it.
    p.send("a", refused, b"refused", end_stream=True)
    p.run(5.0)
    assert p.stats("b")["streams_refused"] == 1
    assert p.messages("b", refused) == []
    assert [e.error_code for e in p.events("a", StreamStopped, stream_id=refused)] == \
        [ErrorCode.STREAM_LIMIT_ERROR]
    # And the refused stream does not linger on the opening side.
    assert refused not in p.ep("a").stream_ids(p.sa)


def test_windows_grow_on_a_long_fat_path():
    # 100 ms round trip at 200 Mbit/s: a bandwidth-delay product of 2.5 MB,
    # ten default stream windows.
    p = Pair(62, Link(latency=0.05, bandwidth=200e6))
    s = p.open("a")
    chunks = payloads(62, [MiB] * 24)
    start = p.net.now
    Pump(p, "a", s, chunks)
    assert p.run(30.0, stop=lambda: len(p.events("b", MessageReceived)) == len(chunks))
    elapsed = p.net.now - start
    assert p.messages("b", s) == chunks
    info = p.ep("b").stream_info(p.sb, s)
    assert info["recv_window"] > 256 * 1024
    assert p.stats("b")["session_window"] > 1 * MiB
    # With the initial windows alone 24 MiB would take 24 MiB / 256 KiB
    # round trips (about 10 s); grown windows fill a good part of the path.
    assert elapsed < 4.0, elapsed


# --- 7. loss recovery ----------------------------------------------------------------------


def test_everything_arrives_through_ten_percent_loss():
    p = Pair(71, Link(latency=0.02, bandwidth=20e6, loss=0.10))
    rng = random.Random(71)
    sent = {}
    for side in ("a", "b"):
        for _ in range(3):
            s = p.open(side)
            sent[(side, s)] = [rng.randbytes(rng.choice([0, 50, 1500, 30_000, 150_000]))
                               for _ in range(15)]
            for m in sent[(side, s)]:
                p.send(side, s, m)
            p.call(side, Endpoint.end_stream, s)
    total = sum(len(v) for v in sent.values())
    assert p.run(120.0, stop=lambda: len(p.events("a", MessageReceived))
                 + len(p.events("b", MessageReceived)) == total
                 and len(p.events("a", StreamEnded)) + len(p.events("b", StreamEnded)) == 6)
    for (side, s), messages in sent.items():
        assert p.messages("b" if side == "a" else "a", s) == messages
    for side in ("a", "b"):
        stats = p.stats(side)
        assert stats["packets_lost"] > 0 and stats["bytes_retransmitted"] > 0
    # Every datagram the link lost was either recovered or did not matter;
    # losses detected are of the order of the link's 10 %.
    a = p.stats("a")
    assert 0.03 < a["packets_lost"] / a["packets_sent"] < 0.3


def test_rtt_estimate_matches_a_clean_path():
    # 30 ms there, 50 ms back: an 80 ms round trip.
    p = Pair(72, Link(latency=0.03, bandwidth=100e6), Link(latency=0.05, bandwidth=100e6))
    s = p.open("a")
    for _ in range(20):
        p.send("a", s, bytes(2000))
        p.run(0.2)
    stats = p.stats("a")
    assert stats["rtt_min"] == pytest.approx(0.08, abs=0.002)
    assert 0.08 - 0.002 <= stats["rtt_smoothed"] <= 0.08 + 0.03
    assert stats["packets_lost"] == 0 and stats["bytes_retransmitted"] == 0


# --- 8. liveness and closing ---------------------------------------------------------------


@pytest.mark.parametrize("loss", [0.0, 0.3])
def test_an_idle_session_stays_open_on_keep_alives(loss):
    p = Pair(81, Link(latency=0.02, loss=loss), keep_alive_interval=10.0, idle_timeout=30.0,
             connect_timeout=60.0)
    p.run(120.0)
    assert p.events("a", SessionClosed) == p.events("b", SessionClosed) == []
    if loss == 0.0:
        # Keep-alives are all that was sent: a handful, not a flood.
        assert p.stats("a")["packets_sent"] < 40
    s = p.open("a")
    p.send("a", s, b"still here")
    p.run(1.0)
    assert p.messages("b", s) == [b"still here"]


def _last_heard(p: Pair) -> dict:
    """Record, per node, when its endpoint last received a datagram."""
    heard = {"a": None, "b": None}
    for side in ("a", "b"):
        endpoint = p.ep(side)
        receive = endpoint.receive_datagram

        def wrapped(data, addr, now, _side=side, _receive=receive):
            heard[_side] = now
            _receive(data, addr, now)

        endpoint.receive_datagram = wrapped
    return heard


@pytest.mark.parametrize("cut", ["loss", "unroute", "one_way"])
@pytest.mark.parametrize("busy", [False, True])
def test_a_vanished_peer_times_out(cut, busy):
    idle, keep_alive = 30.0, 10.0
    p = Pair(82, Link(latency=0.02, bandwidth=10e6), keep_alive_interval=keep_alive,
             idle_timeout=idle)
    heard = _last_heard(p)
    s = p.open("a")
    if busy:
        # Data in flight when the path dies: probes back off, nothing spins.
        big, = payloads(82, [4 * MiB])
        p.send("a", s, big)
    p.run(15.0 if not busy else 0.5)
    cut_at = p.net.now
    if cut == "loss":
        p.ab.update(loss=1.0)
        p.ba.update(loss=1.0)
    elif cut == "unroute":
        p.net.disconnect_nodes(p.a, p.b)
    else:
        p.net.unroute(p.b, p.a)  # a hears nothing; b still hears a
    p.run(2 * idle + 3 * keep_alive)
    for side in ("a", "b"):
        ((closed_at, closed),) = p.timed(side, SessionClosed)
        assert closed.reason == "timeout", (side, closed)
        assert heard[side] is not None
        silent = closed_at - heard[side]
        assert idle - 0.001 <= silent <= idle + keep_alive, (side, silent)
    if cut != "one_way":
        # What was queued in the link before the cut still drains.
        for side in ("a", "b"):
            assert heard[side] <= cut_at + (1.0 if busy else 0.1)
    with pytest.raises(KeyError):
        p.send("a", s, b"after the close")


@pytest.mark.parametrize("closer", ["a", "b"])
@pytest.mark.parametrize("loss", [0.0, 0.3])
def test_close_is_graceful_on_both_sides(closer, loss):
    p = Pair(83, Link(latency=0.02, loss=loss))
    closed_at = p.net.now
    p.node(closer).close(p.sid[closer])
    p.run(30.0)
    for side in ("a", "b"):
        (closed,) = p.events(side, SessionClosed)
        assert closed.reason == "graceful" and closed.error_code == 0, (side, closed)
    if loss == 0.0:
        ((t_peer, _),) = p.timed("b" if closer == "a" else "a", SessionClosed)
        assert t_peer - closed_at < 0.1


def test_both_sides_closing_at_once_is_graceful_for_both():
    p = Pair(87, Link(latency=0.02))
    p.node("a").close(p.sa)
    p.node("b").close(p.sb)
    p.run(10.0)
    for side in ("a", "b"):
        assert [(e.reason, e.error_code) for e in p.events(side, SessionClosed)] == \
            [("graceful", 0)]


def test_a_graceful_close_gives_up_flushing_after_close_flush_timeout():
    # b never consumes, so a's queued data can never all be delivered.
    p = Pair(88, stream_window=16 * 1024, max_stream_window=16 * 1024,
             close_flush_timeout=2.0, b={"auto_credit": False})
    s = p.open("a")
    for message in payloads(88, [20_000] * 5):
        p.send("a", s, message)
    p.run(1.0)
    started = p.net.now
    p.node("a").close(p.sa)
    p.run(10.0)
    ((t_a, closed_a),) = p.timed("a", SessionClosed)
    assert t_a - started == pytest.approx(2.0, abs=0.05)
    assert (closed_a.reason, closed_a.error_code) == ("graceful", 0)
    assert [e.reason for e in p.events("b", SessionClosed)] == ["graceful"]
    assert len(p.events("b", MessageReceived)) < 5


def test_close_with_an_error_code():
    p = Pair(seed=84)
    p.node("a").close(p.sa, error_code=5, reason="bye")
    ((t, closed_a),) = p.timed("a", SessionClosed)
    assert t == p.net.now  # at once, locally
    p.run(1.0)
    (closed_b,) = p.events("b", SessionClosed)
    assert (closed_a.reason, closed_a.error_code) == ("error", 5)
    assert (closed_b.reason, closed_b.error_code) == ("error", 5)
    assert "bye" in closed_b.message


def test_graceful_close_flushes_what_was_queued():
    p = Pair(85, Link(latency=0.02, bandwidth=20e6, loss=0.02))
    big, = payloads(85, [2 * MiB])
    s1, s2 = p.open("a"), p.open("a")
    p.send("a", s1, b"first")
    p.send("a", s1, big)
    p.send("a", s2, b"other stream", end_stream=True)
    p.node("a").close(p.sa)
    assert p.events("a", SessionClosed) == []  # still delivering
    with pytest.raises(StreamClosedError):
        p.send("a", s1, b"refused while closing")
    p.run(20.0, stop=lambda: p.events("a", SessionClosed) and p.events("b", SessionClosed))
    assert p.messages("b", s1) == [b"first", big]
    assert p.messages("b", s2) == [b"other stream"]
    for side in ("a", "b"):
        (closed,) = p.events(side, SessionClosed)
        assert closed.reason == "graceful", (side, closed)
    # Everything was delivered before the peer heard of the close.
    b_log = [e for _, e in p.log["b"]]
    assert b_log.index(p.events("b", SessionClosed)[0]) > max(
        b_log.index(e) for e in p.events("b", MessageReceived))


def test_close_without_flush_is_immediate():
    p = Pair(86, Link(latency=0.02, bandwidth=20e6))
    s = p.open("a")
    big, = payloads(86, [2 * MiB])
    p.send("a", s, big)
    p.call("a", lambda ep, sid, now: ep.close(sid, now=now, flush=False))
    assert [e.reason for e in p.events("a", SessionClosed)] == ["graceful"]
    p.run(5.0)
    assert p.messages("b", s) == []
    assert [e.reason for e in p.events("b", SessionClosed)] == ["graceful"]


@pytest.mark.parametrize("error_code", [0, 5])
@pytest.mark.parametrize("flush", [False, True])
def test_nothing_follows_session_closed(error_code, flush):
    # Both sides busy on streams and datagrams when a closes.
    p = Pair(89, Link(latency=0.02, bandwidth=20e6))
    for side in ("a", "b"):
        s = p.open(side)
        for message in payloads(89, [300_000] * 3):
            p.send(side, s, message)
        p.node(side).send_datagram(p.sid[side], b"datagram")
    p.run(0.15)
    p.call("a", lambda ep, sid, now: ep.close(sid, now=now, error_code=error_code, flush=flush))
    p.run(30.0)
    reason = "graceful" if error_code == 0 else "error"
    for side in ("a", "b"):
        assert [(e.reason, e.error_code) for e in p.events(side, SessionClosed)] == \
            [(reason, error_code)], side
        assert isinstance(p.log[side][-1][1], SessionClosed), side


# --- 9. datagrams next to streams ------------------------------------------------------------


def test_datagrams_flow_alongside_a_bulk_stream():
    p = Pair(91, Link(latency=0.01, bandwidth=50e6))
    big, = payloads(91, [4 * MiB])
    s = p.open("a")
    p.send("a", s, big)
    limit = p.ep("a").max_datagram_payload(p.sa)
    with pytest.raises(ValueError):
        p.node("a").send_datagram(p.sa, bytes(limit + 1))
    sent = []
    for i in range(20):
        p.run(0.02)
        data = b"dgram %d " % i + bytes(limit - 10 if i == 0 else 10)
        p.node("a").send_datagram(p.sa, data)
        sent.append((p.net.now, data))
        p.node("b").send_datagram(p.sb, b"back %d" % i)
    p.run(10.0, stop=lambda: p.events("b", MessageReceived))
    got = p.timed("b", DatagramReceived)
    assert [e.data for _, e in got] == [d for _, d in sent]
    ((t_big, _),) = p.timed("b", MessageReceived)
    # Datagrams jump the stream's queue: each arrives promptly, mid-transfer.
    for (t_sent, _), (t_got, _) in zip(sent, got):
        assert t_got - t_sent < 0.1
        assert t_got < t_big
    assert len(p.events("a", DatagramReceived)) == 20
    assert p.messages("b", s) == [big]
