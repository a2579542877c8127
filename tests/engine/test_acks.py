"""When a session owes its peer an ACK (``stt_proto.acks``, docs/protocol.md 8.1)."""

from __future__ import annotations

from stt_proto import _wire as wire
from stt_proto.acks import AckTracker


def tracker(**kwargs) -> AckTracker:
    return AckTracker(**{"max_ranges": 256, "max_ack_delay": 0.025, **kwargs})


def test_every_second_eliciting_packet_is_acknowledged_at_once_then_every_tenth():
    acks = tracker()
    acks.on_packet(0, 1.0, eliciting=True, packets_received=1)
    assert not acks.owed(1.0) and acks.deadline == 1.025
    assert acks.owed(1.025)                      # the delayed ACK falls due
    acks.on_packet(1, 1.001, eliciting=True, packets_received=2)
    assert acks.owed(1.001)                      # the second one: at once
    acks.on_sent()
    assert not acks.owed(1.001) and acks.deadline is None
    for pn in range(2, 11):                      # past 100 packets: every tenth
        acks.on_packet(pn, 2.0, eliciting=True, packets_received=100 + pn)
        assert not acks.owed(2.0)
    acks.on_packet(11, 2.0, eliciting=True, packets_received=111)
    assert acks.owed(2.0)


def test_gaps_and_reordering_are_acknowledged_at_once_ack_only_packets_never():
    acks = tracker()
    acks.on_packet(0, 1.0, eliciting=False, packets_received=1)
    acks.on_packet(1, 1.0, eliciting=False, packets_received=2)
    assert not acks.owed(5.0) and acks.deadline is None
    acks.on_packet(3, 1.0, eliciting=True, packets_received=3)   # 2 is missing
    assert acks.owed(1.0)
    acks.on_sent()
    acks.on_packet(2, 1.1, eliciting=True, packets_received=4)   # 2 arrives late
    assert acks.owed(1.1)


def test_the_ack_frame_and_its_delay():
    acks = tracker()
    w = wire.Writer(100)
    assert not acks.write(w, 0.0, True)          # nothing received: no ACK
    for pn in (0, 1, 2, 5):
        acks.on_packet(pn, 1.0, eliciting=True, packets_received=pn + 1)
    assert acks.write(w, 1.004, acks.owed(1.004))
    (frame,) = wire.decode_frames_untrusted(w.getvalue())
    assert frame.ranges == ((5, 5), (0, 2)) and frame.delay == 4000
    acks.on_sent()
    w = wire.Writer(100)
    assert not acks.write(w, 2.0, False)         # nothing to ride along for


def test_at_most_max_ranges_are_kept():
    acks = tracker(max_ranges=4)
    forgotten = sum(acks.on_packet(pn, 1.0, eliciting=False, packets_received=pn)
                    for pn in range(0, 20, 2))
    assert len(acks.received) == 4 and forgotten == 6
    assert acks.received.lowest() == 12
