"""The set of stream ids a session has used (``stt_proto.stream_ids``,
docs/protocol.md 7.5): compact for allocated ids, bounded for scattered ones."""

from __future__ import annotations

import random

from stt_proto.stream_ids import UsedStreamIds

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
