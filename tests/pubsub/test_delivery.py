"""Per-publisher order, exactly once, baselines and gaps (``stt_proto.pubsub.delivery``)
and the repair history, without peers or wire."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from stt_proto.pubsub.delivery import Budget, Gap, Ordering
from stt_proto.pubsub.history import History

TOPIC = b"t" * 32
P, Q = b"p" * 32, b"q" * 32


#: subscribed_at of ``ordering()`` by default, in wall-clock milliseconds
NOW_MS = 1_000_000


@dataclass(frozen=True)
class Msg:
    publisher: bytes
    epoch: int
    seq: int
    data: bytes = b"x"
    topic: bytes = TOPIC
    published_ms: int = NOW_MS + 10_000   # after the subscription unless told


def stats() -> dict[str, int]:
    from collections import defaultdict
    return defaultdict(int)


def ordering(subscribed_at=NOW_MS, *, budget=1 << 20, max_buffered=64, max_publishers=8,
             counters=None):
    return Ordering(subscribed_at=subscribed_at, tolerance_ms=2000,
                    max_publishers=max_publishers, max_buffered=max_buffered,
                    budget=Budget(budget), stats=counters if counters is not None else stats())


def seqs(items):
    return [i.seq if isinstance(i, Msg) else ("gap", i.first, i.last) for i in items]


def test_in_order_messages_are_delivered_at_once_and_duplicates_dropped():
    o = ordering()
    new = NOW_MS + 1  # an epoch begun after the subscription: owed from 1
    assert seqs(o.offer(Msg(P, new, 1), 0.0)) == [1]
    assert seqs(o.offer(Msg(P, new, 2), 0.0)) == [2]
    assert o.offer(Msg(P, new, 2), 0.0) == []
    assert o.offer(Msg(P, new, 1), 0.0) == []
    assert o.stats["messages_duplicate"] == 2
    assert not o.is_new(Msg(P, new, 2)) and o.is_new(Msg(P, new, 3))


def test_out_of_order_messages_wait_for_the_hole_and_come_out_in_order():
    o = ordering()
    new = NOW_MS + 1
    o.offer(Msg(P, new, 1), 0.0)
    assert o.offer(Msg(P, new, 4), 0.1) == []
    assert o.offer(Msg(P, new, 3), 0.2) == []
    assert o.missing() == [(P, new, 2, 2)]
    assert seqs(o.offer(Msg(P, new, 2), 0.3)) == [2, 3, 4]
    assert o.missing() == []


def test_a_new_epoch_after_subscribing_is_owed_from_its_first_message():
    o = ordering(subscribed_at=1_000_000)
    epoch = 1_000_500  # the publisher started after we subscribed
    assert o.offer(Msg(P, epoch, 3), 0.0) == []
    assert o.missing() == [(P, epoch, 1, 2)]
    assert seqs(o.offer(Msg(P, epoch, 1), 0.1)) == [1]
    assert seqs(o.offer(Msg(P, epoch, 2), 0.2)) == [2, 3]


OLD = 500_000  # an epoch begun long before the subscription


def test_an_older_publisher_starts_at_its_first_message_stamped_after_we_subscribed():
    o = ordering()
    # Message 7 is stamped after the subscription: owed, but are 6, 5, ...? The
    # subscriber looks just below it before delivering anything.
    assert o.offer(Msg(P, OLD, 7), 0.0) == []
    assert o.missing() == [(P, OLD, 6, 6)]
    assert o.offer(Msg(P, OLD, 6), 0.1) == []           # owed too: look further down
    assert o.missing() == [(P, OLD, 4, 5)]
    items = o.offer(Msg(P, OLD, 5, published_ms=NOW_MS - 60_000), 0.2)
    assert seqs(items) == [6, 7]                          # 5 is from before our time
    assert o.stats["messages_before_subscription"] == 1
    assert o.missing() == []


def test_a_message_from_before_the_subscription_is_not_delivered_and_settles_at_once():
    o = ordering()
    assert o.offer(Msg(P, OLD, 40, published_ms=NOW_MS - 5_000), 0.0) == []
    assert seqs(o.offer(Msg(P, OLD, 41), 0.1)) == [41]
    # Clocks may differ by the tolerance: a stamp a second early is still owed.
    assert seqs(o.offer(Msg(P, OLD, 42, published_ms=NOW_MS - 1_000), 0.2)) == [42]


def test_the_slow_path_race_a_later_message_or_summary_first_loses_nothing():
    # Published just after we subscribed, message 11 takes a slow path; 12 and
    # a summary saying 12 arrive first. 11 is still delivered, first.
    o = ordering()
    assert o.summary_heard(P, OLD, 12, now=0.0) == (12, 12)  # look at the top first
    assert o.offer(Msg(P, OLD, 12), 0.1) == []
    assert o.missing() == [(P, OLD, 10, 11)]
    assert o.offer(Msg(P, OLD, 10, published_ms=NOW_MS - 9_000), 0.2) == []
    assert seqs(o.offer(Msg(P, OLD, 11), 0.3)) == [11, 12]


def test_a_summary_of_messages_all_from_before_costs_one_message():
    o = ordering()
    assert o.summary_heard(P, OLD, 30, now=0.0) == (30, 30)
    assert o.offer(Msg(P, OLD, 30, published_ms=NOW_MS - 3_000), 0.1) == []
    assert o.missing() == []
    assert seqs(o.offer(Msg(P, OLD, 31), 0.2)) == [31]


def test_settling_below_what_peers_still_hold_takes_the_rest_as_before_our_time():
    o = ordering()
    o.offer(Msg(P, OLD, 9), 0.0)
    assert o.missing() == [(P, OLD, 8, 8)]
    assert seqs(o.gone(P, OLD, 8)) == [9]
    o2 = ordering()
    o2.offer(Msg(Q, OLD, 9), 0.0)
    # Nobody answers at all: after the window it starts at the lowest owed one.
    assert seqs(o2.expire(now=31.0, window=30.0)) == [9]
    assert o2.stats["starts_unsettled"] == 1


E = NOW_MS + 5  # an epoch begun after the subscription


def test_a_hole_nobody_fills_is_reported_once_with_its_size_and_skipped():
    o = ordering()
    o.offer(Msg(P, E, 1), 0.0)
    o.offer(Msg(P, E, 5), 1.0)
    assert o.expire(now=10.0, window=30.0) == []
    items = o.expire(now=31.0, window=30.0)
    assert seqs(items) == [("gap", 2, 4), 5]
    assert items[0].count == 3
    assert o.stats["messages_lost"] == 3 and o.stats["gaps_reported"] == 1
    assert o.expire(now=100.0, window=30.0) == []


def test_a_hole_every_peer_says_is_gone_is_reported_without_waiting():
    o = ordering()
    o.offer(Msg(P, E, 1), 0.0)
    o.offer(Msg(P, E, 6), 0.0)
    assert o.gone(P, E, 3) == []
    assert seqs(o.expire(now=0.5, window=30.0)) == [("gap", 2, 3)]
    assert o.missing() == [(P, E, 4, 5)]


def test_a_new_epoch_replaces_the_old_and_an_old_epoch_is_stale():
    o = ordering(subscribed_at=1_000_000)
    o.offer(Msg(P, 2_000_000, 1), 0.0)
    o.offer(Msg(P, 2_000_000, 3), 0.0)      # waits for 2
    assert seqs(o.offer(Msg(P, 2_000_100, 1), 0.1)) == [1]   # restarted publisher
    assert o.offer(Msg(P, 2_000_000, 2), 0.2) == []
    assert o.stats["messages_stale_epoch"] == 1


def test_buffers_are_bounded_per_publisher_and_in_bytes():
    o = ordering(max_buffered=4)
    o.offer(Msg(P, E, 1), 0.0)
    for seq in range(3, 20):
        o.offer(Msg(P, E, seq), 0.0)
    assert o.stats["messages_buffer_full"] == 13
    o2 = ordering(budget=10)
    o2.offer(Msg(Q, E, 1), 0.0)
    o2.offer(Msg(Q, E, 3, data=b"y" * 8), 0.0)
    o2.offer(Msg(Q, E, 4, data=b"y" * 8), 0.0)
    assert o2.stats["messages_buffer_full"] == 1 and o2.budget.used == 8
    # What was dropped is asked for again once the hole fills: it arrives later.
    assert seqs(o2.offer(Msg(Q, E, 2), 0.1)) == [2, 3]
    assert o2.budget.used == 0


def test_publishers_tracked_are_bounded():
    counters = stats()
    o = ordering(max_publishers=3, counters=counters)
    for i in range(10):
        o.offer(Msg(bytes([i]) * 32, E, 1), 0.0)
    assert len(o.summary()) == 3 and counters["publishers_forgotten"] == 7


@pytest.mark.parametrize("seed", range(20))
def test_any_arrival_order_with_duplicates_delivers_each_once_in_order(seed):
    rng = random.Random(seed)
    o = ordering()
    arrivals = [s for s in range(1, 60) for _ in range(rng.randint(1, 3))]
    rng.shuffle(arrivals)
    out = []
    for seq in arrivals:
        out += seqs(o.offer(Msg(P, E, seq), 0.0))
    assert out == list(range(1, 60))


def test_history_is_bounded_in_bytes_and_time_and_summarises_per_publisher():
    counters = stats()
    h = History(window=10.0, max_bytes=100, stats=counters)
    for seq in range(1, 6):
        h.add(Msg(P, 1, seq, data=b"z" * 30), now=float(seq))
    assert h.bytes <= 100 and counters["history_evicted"] == 2
    assert h.get(TOPIC, P, 1, 1) is None and h.get(TOPIC, P, 1, 5) is not None
    assert h.summary(TOPIC) == [(P, 1, 5)]
    h.expire(now=14.5)
    assert h.get(TOPIC, P, 1, 4) is None and h.get(TOPIC, P, 1, 5) is not None
    h.expire(now=16.0)
    assert len(h) == 0 and h.summary(TOPIC) == [] and h.bytes == 0
