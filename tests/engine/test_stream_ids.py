"""Which stream ids may open (``stt_proto.stream_ids``, docs/protocol.md 7.2 and
7.5): the used ids, compact for allocated ids and bounded for scattered ones,
and the admission of the peer's opens."""

from __future__ import annotations

import random

import pytest

from stt_proto.config import EndpointConfig
from stt_proto.constants import ErrorCode
from stt_proto.errors import LocalProtocolError, ProtocolError, StreamIdUsedError
from stt_proto.identity import Identity
from stt_proto.stream_ids import LATE, OPEN, REFUSED, StreamAdmission, UsedStreamIds

TOP = (1 << 62) - 1


def test_both_sides_allocations_take_one_range_each():
    used = UsedStreamIds(limit=4)
    for i in range(1000):
        used.add(2 * i + 1)        # the initiator's ids
        used.add(2 * i)            # the responder's ids
    assert len(used) == 2 and used.count() == 2000
    assert 1999 in used and 1998 in used and 2000 not in used and 2001 not in used


def test_allocations_arriving_out_of_order_merge():
    used = UsedStreamIds(limit=1000)
    ids = [2 * i + 1 for i in range(500)]
    random.Random(5).shuffle(ids)
    for stream_id in ids:
        assert used.has_room_for(stream_id)
        used.add(stream_id)
    assert len(used) == 1 and used.count() == 500


def test_next_unused_skips_used_ids_of_the_same_parity():
    used = UsedStreamIds(limit=8)
    assert used.next_unused(1) == 1 and used.next_unused(0) == 0
    for stream_id in (1, 3, 5, 9, 4):
        used.add(stream_id)
    assert used.next_unused(1) == 7
    assert used.next_unused(9) == 11
    assert used.next_unused(0) == 0
    assert used.next_unused(4) == 6


def test_the_highest_ids_and_exhaustion():
    used = UsedStreamIds(limit=8)
    used.add(TOP)              # the highest odd id
    used.add(TOP - 1)          # the highest even id
    assert TOP in used and TOP - 1 in used and len(used) == 2
    assert used.next_unused(TOP) is None
    assert used.next_unused(TOP - 1) is None
    assert used.next_unused(TOP - 2) == TOP - 2
    # The highest even id and the lowest odd one are stored side by side (one
    # range), but allocation never crosses from one parity into the other.
    used.add(0)
    used.add(1)
    assert len(used) == 3 and used.next_unused(0) == 2 and used.next_unused(1) == 3


def test_the_limit_counts_only_ranges_that_would_be_new():
    used = UsedStreamIds(limit=3)
    for stream_id in (1, 9, 17):        # three isolated odd ids: three ranges
        assert used.has_room_for(stream_id)
        used.add(stream_id)
    assert len(used) == 3
    assert not used.has_room_for(25)    # isolated: a fourth range
    assert not used.has_room_for(0)     # the even ids have no range yet
    for stream_id in (1, 3, 7, 11, 15, 19):   # used, or touching a range
        assert used.has_room_for(stream_id)
    for stream_id in (3, 5, 7):          # fill the gap from 1 up to 9
        used.add(stream_id)
    assert len(used) == 2 and used.next_unused(1) == 11


def admission(**config) -> StreamAdmission:
    identity = Identity.generate(random.Random(1).randbytes)
    config = EndpointConfig(identity=identity, shared_seed=b"a seed of sixteen bytes", **config)
    return StreamAdmission(config, initiator=True)


def test_peer_opens_beyond_the_limit_are_refused_and_used_ids_are_late():
    adm = admission(max_streams=2, max_stream_open_rate=1000.0)
    assert [adm.admit_peer(sid, 0.0) for sid in (0, 2, 4)] == [OPEN, OPEN, REFUSED]
    assert list(adm.refusals) == [4] and adm.stats["streams_refused"] == 1
    assert adm.admit_peer(4, 0.1) == REFUSED           # reminded
    assert list(adm.refusals) == [4, 4]
    assert adm.refused_bytes(4, 100) == 100 and adm.refused_bytes(4, 50) == 0
    adm.closed(remote=True)
    assert adm.admit_peer(0, 0.2) == LATE              # closed, used: never again
    assert adm.admit_peer(6, 0.2) == OPEN


def test_local_opens_and_allocation():
    adm = admission(max_streams=2)
    adm.open_local(3)
    adm.mark_used(3)
    assert adm.allocate() == 1 and adm.allocate() == 5    # 3 was taken
    with pytest.raises(StreamIdUsedError):
        adm.open_local(3)
    adm.open_local(7)
    with pytest.raises(LocalProtocolError, match="streams are open"):
        adm.open_local(9)


def test_a_peer_scattering_ids_overflows_into_a_protocol_error():
    adm = admission(max_used_stream_ranges=2, max_stream_open_rate=1e6)
    assert adm.admit_peer(0, 0.0) == OPEN and adm.admit_peer(8, 0.0) == OPEN
    assert adm.admit_peer(2, 0.0) == OPEN                 # extends a range: fine
    with pytest.raises(ProtocolError) as info:
        adm.admit_peer(20, 0.0)
    assert info.value.error_code == ErrorCode.STREAM_LIMIT_ERROR
