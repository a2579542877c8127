"""Deadline delivery (``docs/protocol.md`` 7.12) between real endpoints in the
simulator: messages sent with a deadline over a lossy link arrive on time or
are skipped, in order, and no byte of a message is sent after its deadline.

The wire tap wraps the function the packet assembler writes every STREAM frame
with, so the test sees each frame as it leaves (stream, offset, length, time)
without touching the protocol.
"""

from __future__ import annotations

import struct

import pytest

from stt_proto import assembly
from stt_proto.endpoint import Endpoint
from stt_proto.events import MessageReceived, MessagesSkipped, StreamClosed, StreamEnded
from stt_proto.testing import Link, Network
from tests.helpers.sim_streams import connect

RTT = 0.05
DEADLINE = 0.1
PERIOD = 0.02        # 50 frames a second, as a video stream
SIZE = 1000          # one frame fits one packet
COUNT = 1500         # 30 s of it


def stream_offsets(count: int, size: int) -> list[tuple[int, int]]:
    """Where each message lies on the stream: the mode byte, then per message a
    varint length and the bytes (the first message's range holds the mode byte)."""
    header = 1 if size < 64 else 2 if size < 16384 else 4
    spans, offset = [], 1
    for k in range(count):
        start = 0 if k == 0 else offset
        offset += header + size
        spans.append((start, offset))
    return spans


@pytest.fixture
def wire_tap(monkeypatch):
    """Every STREAM frame written, as ``(time, stream_id, offset, length)``."""
    frames: list[tuple[float, int, int, int]] = []
    clock: list[Network] = []
    push = assembly._push_stream_frame

    def tapped(w, stream_id, offset, data, fin):
        frames.append((clock[0].now, stream_id, offset, len(data)))
        push(w, stream_id, offset, data, fin)

    monkeypatch.setattr(assembly, "_push_stream_frame", tapped)
    return frames, clock


def live_stream(seed: int, wire_tap, *, loss: float = 0.05, count: int = COUNT,
                deadline: float = DEADLINE, size: int = SIZE):
    frames, clock = wire_tap
    net = Network(seed, default_link=Link(latency=RTT / 2, bandwidth=20e6))
    clock.append(net)
    sender, receiver = net.add_node("sender"), net.add_node("receiver")
    sid_s, sid_r = connect(net, sender, receiver)
    for link in net.links:
        link.update(loss=loss)
    stream_id = sender.call(Endpoint.open_stream, sid_s)
    sent_at: list[float] = []
    arrived: list[tuple[int, float]] = []
    skipped: list[tuple[int, float]] = []

    def on_event(node, event):
        if type(event) is MessageReceived:
            arrived.append((struct.unpack_from("!I", event.data)[0], node.network.now))
        elif type(event) is MessagesSkipped:
            skipped.append((event.count, node.network.now))
    receiver.on_event = on_event

    def send(k: int) -> None:
        sent_at.append(net.now)
        data = struct.pack("!I", k) + bytes(size - 4)
        sender.call(Endpoint.send_message, sid_s, stream_id, data, deadline=deadline,
                    end_stream=k == count - 1)

    start = net.now + 0.01
    for k in range(count):
        net.call_at(start + k * PERIOD, send, k)
    net.run(until=start + count * PERIOD + 5.0)
    return net, sender, receiver, sid_s, stream_id, sent_at, arrived, skipped, frames


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_live_stream_at_5_percent_loss_arrives_on_time_in_order(seed, wire_tap):
    (net, sender, receiver, sid_s, stream_id, sent_at, arrived, skipped,
     frames) = live_stream(seed, wire_tap)
    numbers = [k for k, _ in arrived]
    assert numbers == sorted(set(numbers)), "delivered out of order or twice"
    on_time = sum(1 for k, t in arrived if t <= sent_at[k] + DEADLINE)
    assert on_time >= 0.95 * COUNT, f"seed {seed}: {on_time}/{COUNT} on time"
    # Every message is accounted for: delivered or reported skipped.
    assert len(arrived) + sum(c for c, _ in skipped) == COUNT
    assert receiver.events_of(StreamEnded)
    stats = sender.endpoint.session_statistics(sid_s)
    assert stats["messages_abandoned"] > 0, "the loss never cost a message: no test"
    assert net.statistics()["lost"] > 0.03 * COUNT


@pytest.mark.parametrize("seed", [4, 5])
def test_no_byte_of_a_message_leaves_after_its_deadline(seed, wire_tap):
    (net, sender, receiver, sid_s, stream_id, sent_at, arrived, skipped,
     frames) = live_stream(seed, wire_tap, loss=0.1, count=400)
    spans = stream_offsets(400, SIZE)
    late = []
    checked = 0
    for when, sid, offset, length in frames:
        if sid != stream_id or not length:
            continue
        for k, (a, b) in enumerate(spans):
            if a < offset + length and offset < b:
                checked += 1
                if when > sent_at[k] + DEADLINE:
                    late.append((k, when - sent_at[k]))
    assert checked >= 400
    assert not late, f"bytes sent after the deadline: {late[:5]}"
    assert sender.endpoint.session_statistics(sid_s)["bytes_retransmitted"] > 0


def test_messages_never_sent_are_skipped_and_the_stream_closes(wire_tap):
    """A sender far over its link's capacity: what cannot leave before its
    deadline never leaves, its bytes still count for flow control on both
    sides, and the stream still ends and closes on both sides."""
    frames, clock = wire_tap
    net = Network(7, default_link=Link(latency=RTT / 2, bandwidth=2e6, queue_bytes=50_000))
    clock.append(net)
    sender, receiver = net.add_node("sender"), net.add_node("receiver")
    sid_s, sid_r = connect(net, sender, receiver)
    stream_id = sender.call(Endpoint.open_stream, sid_s)
    # 400 messages of 10 kB at once: 4 MB against 250 kB/s and a 0.3 s deadline.
    for k in range(400):
        sender.call(Endpoint.send_message, sid_s, stream_id,
                    struct.pack("!I", k) + bytes(10_000 - 4), deadline=0.3,
                    end_stream=k == 399)
    net.run(until=net.now + 10.0)
    got = [struct.unpack_from("!I", e.data)[0] for e in receiver.events_of(MessageReceived)]
    skipped = sum(e.count for e in receiver.events_of(MessagesSkipped))
    assert got == sorted(got) and len(got) < 100
    assert len(got) + skipped == 400
    sent_offsets = max(o + n for _, sid, o, n in frames if sid == stream_id and n)
    assert sent_offsets < 400 * 10_000 / 2, "messages past their deadline were sent"
    assert receiver.events_of(StreamEnded)
    stats_s = sender.endpoint.session_statistics(sid_s)
    stats_r = receiver.endpoint.session_statistics(sid_r)
    assert stats_s["messages_abandoned"] >= 300
    assert stats_r["messages_skipped"] == skipped
    # The stream closes on both sides: nothing is owed, nothing held.
    receiver.call(Endpoint.end_stream, sid_r, stream_id)
    net.run(until=net.now + 2.0)
    assert [e for e in sender.events_of(StreamClosed) if e.stream_id == stream_id]
    assert [e for e in receiver.events_of(StreamClosed) if e.stream_id == stream_id]


# -- the receiving half, frame by frame (what a hostile peer can send) ------------------

from stt_proto import _wire as wire  # noqa: E402
from stt_proto.errors import ProtocolError  # noqa: E402
from stt_proto.stream import MODE_BYTES, MODE_MESSAGES, RecvStream, SendStream  # noqa: E402


def framed(*messages: bytes, first: bool = True) -> bytes:
    out = bytearray([MODE_MESSAGES] if first else [])
    for m in messages:
        out += wire.encode_varint(len(m)) + m
    return bytes(out)


def recv_stream(window: int = 1 << 20) -> RecvStream:
    return RecvStream(1, window=window, max_window=window, max_frame_size=1 << 20)


def test_a_skip_waits_for_the_bytes_before_it_then_drops_what_it_covers():
    recv = recv_stream()
    data = framed(b"a" * 10, b"b" * 10, b"c" * 10, b"d" * 10)
    # messages: [0, 12) with the mode byte, [12, 23), [23, 34), [34, 45)
    out: list = []
    recv.receive(15, data[15:40], False, out)        # parts of b, c and d, early
    recv.receive_skip(12, 22, 3, out)                 # b and c abandoned
    assert out == [] and recv.fragments == 2          # a piece of d, and the skip
    recv.receive(0, data[:12], False, out)            # a arrives: all of it goes
    recv.receive(40, data[40:], True, out)
    assert [kind for kind, _, _ in out] == ["message", "skipped", "message", "end"]
    assert out[0][1] == b"a" * 10 and out[1][1] == 2 and out[2][1] == b"d" * 10
    assert sum(span for _, _, span in out) == len(data)  # every byte's credit returns
    assert recv.fragments == 0 and recv.out_of_order_bytes == 0


def test_a_skip_inside_a_message_received_in_part_resumes_at_its_end():
    recv = recv_stream()
    data = framed(b"a" * 10, b"b" * 10, b"c" * 10)
    out: list = []
    recv.receive(0, data[:18], False, out)            # a, and half of b
    recv.receive_skip(12, 11, 2, out)                 # b abandoned
    recv.receive(23, data[23:], True, out)
    assert [(k, d) for k, d, _ in out] == [("message", b"a" * 10), ("skipped", 1),
                                           ("message", b"c" * 10), ("end", b"")]


def test_a_skip_for_bytes_already_delivered_changes_nothing_and_copies_are_idempotent():
    recv = recv_stream()
    data = framed(b"a" * 10, b"b" * 10)
    out: list = []
    recv.receive(0, data, False, out)
    assert recv.receive_skip(12, 11, 2, out) == 0     # its ack was late: no skip
    assert [k for k, _, _ in out] == ["message", "message"]
    recv.receive_skip(40, 5, 4, out)
    recv.receive_skip(40, 5, 4, out)                  # a copy
    assert recv.fragments == 1


@pytest.mark.parametrize("case", ["byte stream", "beyond final size", "overlap",
                                  "index below delivered"])
def test_a_hostile_skip_closes_with_a_protocol_error(case):
    recv = recv_stream()
    out: list = []
    if case == "byte stream":
        recv.receive(0, bytes([MODE_BYTES]) + b"xyz", False, out)
        skip = (4, 4, 1)
    elif case == "beyond final size":
        recv.receive(0, framed(b"a"), True, out)
        skip = (3, 1, 2)
    elif case == "overlap":
        recv.receive_skip(50, 10, 5, out)
        skip = (55, 10, 6)
    else:
        recv.receive(0, framed(b"a", b"b", b"c"), False, out)
        skip = (7, 2, 1)  # claims the message after the skip is number 1
    with pytest.raises(ProtocolError):
        recv.receive_skip(*skip, out)


def test_skips_are_bounded_like_pieces_and_take_no_memory_for_their_span():
    recv = recv_stream(window=1000)
    out: list = []
    # Far beyond any credit: a skip names bytes, it never holds them.
    assert recv.receive_skip(10, (1 << 61), 7, out) == (1 << 61) + 10
    assert recv.out_of_order_bytes == 0
    assert recv.receive_skip((1 << 61) + 100, 5, 9, out, fragment_room=0) == -1


def test_the_sender_jumps_over_abandoned_bytes_and_owes_one_skip_per_message():
    send = SendStream(1, max_data=100, max_buffer=1 << 20, max_frame_size=1 << 20)
    for k in range(5):
        send.write(bytes(30), mode=MODE_MESSAGES, deadline=1.0 + k)
    # messages: [0, 32) with the mode byte, [32, 63), [63, 94), [94, 125), [125, 156)
    frame = send.next_frame(40, 1000)                 # message 0 and a part of 1 go
    assert frame[0] == 0 and send.sent_end == 36
    finished, jumped = send.abandon(now=2.0, margin=0.0)   # 0 and 1 are due
    assert not finished
    assert jumped == 63 - 36 and send.sent_end == 63  # the rest of 1 never goes
    assert send.deadlines.abandoned == 2
    assert list(send.deadlines.skips) == [(0, 32, 1), (32, 63, 2)]
    # Lost bytes of an abandoned message are never sent again.
    send.on_lost(0, 36, False)
    assert not send.lost
    offset, data, fin, new = send.next_frame(1000, 1000)
    assert offset == 63 and len(data) == 100 - 63 and new == len(data)
    # Half a round trip before message 2's deadline, with a part of it in flight
    # and lost, it is abandoned too: nothing of it is sent again.
    send.on_lost(63, 80, False)
    send.abandon(now=2.9, margin=0.1)
    assert not send.lost and send.deadlines.abandoned == 3
