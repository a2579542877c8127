"""Packet assembly (``stt_proto.assembly``, docs/protocol.md 7 and 8): the order
of frames in a packet and what happens to the frames of a packet that cannot
be sealed."""

from __future__ import annotations

import random

from stt_proto import _wire as wire
from stt_proto.acks import AckTracker
from stt_proto.assembly import F_MAX_DATA, PacketAssembler
from stt_proto.config import EndpointConfig
from stt_proto.congestion import Pacer, create_congestion_controller
from stt_proto.crypto import KeyExhaustedError
from stt_proto.flow import SessionCredit
from stt_proto.identity import Identity
from stt_proto.recovery import PacketRecovery
from stt_proto.stream_ids import StreamAdmission


def _assembler() -> PacketAssembler:
    config = EndpointConfig(identity=Identity.generate(random.Random(1).randbytes),
                            shared_seed=b"a seed of sixteen bytes")
    size = 1452
    recovery = PacketRecovery(cc=create_congestion_controller("newreno", max_datagram_size=size),
                              pacer=Pacer(max_datagram_size=size), max_ack_delay=0.025)
    credit = SessionCredit(peer_max_data=0, window=1000, max_window=1000)
    return PacketAssembler(
        max_payload=1400, recovery=recovery, acks=AckTracker(max_ranges=16, max_ack_delay=0.025),
        credit=credit, admission=StreamAdmission(config, initiator=True),
        stats=dict.fromkeys(("packets_sent", "bytes_sent", "acks_sent", "datagrams_dropped",
                             "stream_bytes_sent", "bytes_retransmitted"), 0),
        streams={}, max_queued_datagrams=2)


def _seal(payload: bytes, *, now: float) -> tuple[int, bytes]:
    return 0, bytes(payload)


def test_control_frames_come_before_datagrams_and_the_ping():
    assembly = _assembler()
    assert not assembly.has_eliciting_work()
    assembly.ping_pending = True
    for data in (b"one", b"two", b"three"):
        assembly.queue_datagram(data)          # the oldest is dropped beyond 2
    assembly.queue_path_response(b"12345678")
    assembly._credit.update(now=0.0, smoothed_rtt=0.1, force=True)
    assert assembly.has_eliciting_work() and assembly.queued_datagrams == 2
    [packet] = assembly.transmit(0.0, _seal)
    frames = wire.decode_frames_untrusted(packet)
    assert [type(f) for f in frames] == [wire.MaxDataFrame, wire.PathResponseFrame,
                                         wire.DatagramFrame, wire.DatagramFrame,
                                         wire.PingFrame]
    assert [f.data for f in frames[2:4]] == [b"two", b"three"]
    assert assembly._stats["datagrams_dropped"] == 1
    assert not assembly.has_eliciting_work()
    assert assembly.transmit(0.0, _seal) == []


def test_the_frames_of_a_packet_that_cannot_be_sealed_are_queued_again():
    assembly = _assembler()
    assembly._credit.update(now=0.0, smoothed_rtt=0.1, force=True)

    def exhausted(payload: bytes, *, now: float) -> tuple[int, bytes]:
        raise KeyExhaustedError("no more packets under this key")

    assert assembly.transmit(0.0, exhausted) == []
    assert assembly._stats["packets_sent"] == 0
    [packet] = assembly.transmit(0.0, _seal)       # the MAX_DATA is owed still
    assert [type(f) for f in wire.decode_frames_untrusted(packet)] == [wire.MaxDataFrame]


def test_a_lost_max_data_is_sent_again_with_the_current_limit():
    assembly = _assembler()
    credit = assembly._credit
    credit.update(now=0.0, smoothed_rtt=0.1, force=True)
    assembly.transmit(0.0, _seal)
    assert not credit.update_pending
    credit.on_consumed(500)
    credit.update(now=10.0, smoothed_rtt=0.1)
    credit.update_pending = False              # as if that update went out too
    assembly.requeue([(F_MAX_DATA,)])          # the first one was lost
    [packet] = assembly.transmit(1.0, _seal)
    [frame] = wire.decode_frames_untrusted(packet)
    assert frame.maximum == credit.local_max_data == 1500
