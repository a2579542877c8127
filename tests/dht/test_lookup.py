"""The lookup state machine, step by step: window, stalls, end condition, disjoint paths."""

from __future__ import annotations

import random

import pytest

from stt_proto.dht.lookup import Lookup

TARGET = bytes(32)


def node(distance: int) -> bytes:
    """The id at ``distance`` from TARGET (all zeros)."""
    return distance.to_bytes(32, "big")


def addr(distance: int) -> tuple[str, int]:
    return ("10.0.0.1", 1000 + distance)


def seeds(*distances: int) -> list[tuple[bytes, tuple[str, int]]]:
    return [(node(d), addr(d)) for d in distances]


def test_window_holds_alpha_requests_closest_first():
    lookup = Lookup(TARGET, seeds(50, 10, 40, 30, 20), k=3, alpha=2)
    first = lookup.next_requests()
    assert [n for n, _ in first] == [node(10), node(20)]
    assert lookup.next_requests() == []  # the window is full
    lookup.answered(node(10), seeds(5))
    assert [n for n, _ in lookup.next_requests()] == [node(5)]


def test_answer_lets_the_next_candidate_go_at_once_not_after_a_round():
    lookup = Lookup(TARGET, seeds(10, 20, 30, 40), k=4, alpha=2)
    lookup.next_requests()
    lookup.answered(node(10))
    # One slot freed: one new request, while node 20 is still outstanding.
    assert [n for n, _ in lookup.next_requests()] == [node(30)]


def test_a_stalled_node_frees_its_slot_and_does_not_hold_the_end():
    lookup = Lookup(TARGET, seeds(10, 20, 30), k=2, alpha=1)
    assert [n for n, _ in lookup.next_requests()] == [node(10)]
    lookup.stalled(node(10))
    assert [n for n, _ in lookup.next_requests()] == [node(20)]
    lookup.answered(node(20))
    assert [n for n, _ in lookup.next_requests()] == [node(30)]
    lookup.answered(node(30))
    assert lookup.finished  # node 10 still stalled: passed over
    assert [n for n, _ in lookup.closest()] == [node(20), node(30)]


def test_a_stalled_node_that_answers_in_time_joins_the_result():
    lookup = Lookup(TARGET, seeds(10, 20, 30), k=2, alpha=1)
    lookup.next_requests()
    lookup.stalled(node(10))
    lookup.next_requests()
    lookup.answered(node(10))
    lookup.answered(node(20))
    assert lookup.finished
    assert [n for n, _ in lookup.closest()] == [node(10), node(20)]


def test_ends_only_when_the_k_closest_live_candidates_answered():
    lookup = Lookup(TARGET, seeds(10, 20, 30), k=3, alpha=3)
    lookup.next_requests()
    lookup.answered(node(30), seeds(5))
    assert not lookup.finished
    lookup.failed(node(10))
    lookup.answered(node(20))
    assert not lookup.finished  # node 5 is closer and was not asked yet
    assert [n for n, _ in lookup.next_requests()] == [node(5)]
    lookup.answered(node(5))
    assert lookup.finished
    assert [n for n, _ in lookup.closest()] == [node(5), node(20), node(30)]


def test_answers_nobody_asked_for_are_ignored():
    lookup = Lookup(TARGET, seeds(10, 20, 30), k=2, alpha=3)
    lookup.next_requests()  # only the k closest are asked
    lookup.answered(node(30), seeds(5))
    assert not lookup.is_candidate(node(5))


def test_rounds_count_the_longest_referral_chain():
    lookup = Lookup(TARGET, seeds(100), k=1, alpha=1)
    lookup.next_requests()
    lookup.answered(node(100), seeds(50))
    lookup.next_requests()
    lookup.answered(node(50), seeds(10))
    lookup.next_requests()
    lookup.answered(node(10))
    assert lookup.finished
    assert lookup.rounds == 3


def test_own_id_and_duplicates_are_never_queried():
    lookup = Lookup(TARGET, seeds(10, 20), k=5, alpha=5, exclude=[node(20)])
    asked = [n for n, _ in lookup.next_requests()]
    assert asked == [node(10)]
    lookup.answered(node(10), seeds(10, 20, 20, 30))
    assert [n for n, _ in lookup.next_requests()] == [node(30)]


def test_unsend_puts_the_candidate_back():
    lookup = Lookup(TARGET, seeds(10), k=1, alpha=1)
    (peer, _), = lookup.next_requests()
    lookup.unsend(peer)
    assert lookup.pending == 0
    assert [n for n, _ in lookup.next_requests()] == [node(10)]


def test_stop_ends_a_lookup_at_once():
    lookup = Lookup(TARGET, seeds(10, 20), k=2, alpha=1)
    lookup.next_requests()
    lookup.stop()
    assert lookup.finished and lookup.next_requests() == []


def test_disjoint_paths_never_share_a_node():
    rng = random.Random(3)
    lookup = Lookup(TARGET, seeds(*range(1, 9)), k=4, alpha=2, paths=4)
    owner: dict[bytes, int] = {}
    for _ in range(30):
        for peer, _ in lookup.next_requests():
            path = lookup._by_id[peer].path
            # Every answer names nodes some other path also heard of.
            shared = seeds(*rng.sample(range(1, 400), 6))
            lookup.answered(peer, shared)
            owner.setdefault(peer, path)
    paths_of = {}
    for candidate in lookup._by_id.values():
        paths_of.setdefault(candidate.node_id, set()).add(candidate.path)
    assert all(len(p) == 1 for p in paths_of.values())
    assert len({c.path for c in lookup._by_id.values()}) == 4


def test_rejects_bad_parameters():
    with pytest.raises(ValueError):
        Lookup(b"short", [], k=1)
    with pytest.raises(ValueError):
        Lookup(TARGET, [], k=0)
