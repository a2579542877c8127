"""RangeSet: the sorted set of half-open ranges behind ACKs, reassembly and loss.

Every test runs against both builds of ``stt_proto._rangeset`` (the ``rangeset``
fixture). The Hypothesis tests check the set against a model (a plain ``set`` of
ints over a small universe) and check that the compiled and pure builds agree on
arbitrary operation sequences, invalid arguments included, down to the exception
type.
"""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.constants import MAX_ACK_RANGES, VARINT_MAX

#: The largest ``stop`` a range may have: one past the largest varint.
END = VARINT_MAX + 1


def _ranges(members) -> list:
    """The model's view: maximal runs of consecutive ints as ``(start, stop)``."""
    out: list = []
    for v in sorted(members):
        if out and out[-1][1] == v:
            out[-1][1] = v + 1
        else:
            out.append([v, v + 1])
    return [(a, b) for a, b in out]


# ---------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------


def test_exported(rangeset, wire):
    assert "RangeSet" in rangeset.__all__
    assert rangeset.RangeSet.__module__ == rangeset.__name__
    # The wire codec no longer carries its own copy: one class, one module.
    assert "RangeSet" not in wire.__all__ and not hasattr(wire, "RangeSet")


def test_empty(rangeset):
    rs = rangeset.RangeSet()
    assert not rs
    assert len(rs) == 0
    assert list(rs) == []
    assert rs.covered() == 0
    assert repr(rs) == "RangeSet([])"
    assert 0 not in rs
    assert rs.missing(3, 7) == [(3, 7)]
    assert rs.contiguous_end(5) == 5
    assert rs.ack_ranges(10) == ()
    for method in (rs.lowest, rs.highest, rs.shift):
        with pytest.raises(IndexError):
            method()
    assert rs.trim_lowest(0) == 0
    rs.discard(0, 10)
    assert rs == rangeset.RangeSet()


def test_constructor_merges_in_any_order(rangeset):
    rs = rangeset.RangeSet([(7, 9), (0, 3), (3, 5), (8, 12), (20, 20)])
    assert list(rs) == [(0, 5), (7, 12)]
    assert repr(rs) == "RangeSet([(0, 5), (7, 12)])"
    assert rs.covered() == 10
    assert len(rs) == 2 and rs
    assert (rs.lowest(), rs.highest()) == (0, 11)


def test_add_returns_newly_covered(rangeset):
    rs = rangeset.RangeSet()
    assert rs.add(10, 20) == 10
    assert rs.add(10, 20) == 0  # duplicate
    assert rs.add(15, 25) == 5  # extends the top range
    assert rs.add(25, 26) == 1  # touches it: merged
    assert rs.add(30, 31) == 1  # new top range
    assert rs.add(0, 2) == 2  # below everything
    assert rs.add(5, 5) == 0  # empty
    assert list(rs) == [(0, 2), (10, 26), (30, 31)]
    assert rs.add(1, 40) == 40 - 1 - (1 + 16 + 1)  # swallows everything above 1
    assert list(rs) == [(0, 40)]
    assert rs.covered() == 40


def test_add_fills_a_gap_exactly(rangeset):
    rs = rangeset.RangeSet([(0, 5), (10, 15), (20, 25)])
    assert rs.add(5, 10) == 5
    assert list(rs) == [(0, 15), (20, 25)]
    assert rs.add(16, 19) == 3
    assert list(rs) == [(0, 15), (16, 19), (20, 25)]


def test_discard(rangeset):
    rs = rangeset.RangeSet([(0, 10), (20, 30), (40, 50)])
    rs.discard(3, 6)  # splits one range
    assert list(rs) == [(0, 3), (6, 10), (20, 30), (40, 50)]
    rs.discard(8, 45)  # trims both ends, drops the middle
    assert list(rs) == [(0, 3), (6, 8), (45, 50)]
    rs.discard(10, 40)  # in a gap
    rs.discard(50, 60)  # above
    rs.discard(0, 0)  # empty
    assert list(rs) == [(0, 3), (6, 8), (45, 50)]
    rs.discard(0, 3)  # a whole range from the front
    assert list(rs) == [(6, 8), (45, 50)]
    assert rs.covered() == 7
    rs.discard(0, END)
    assert not rs and rs.covered() == 0


def test_shift_and_trim_lowest(rangeset):
    rs = rangeset.RangeSet([(0, 2), (4, 6), (8, 10), (12, 14)])
    assert rs.shift() == (0, 2)
    assert rs.trim_lowest(5) == 0
    assert rs.trim_lowest(1) == 2
    assert list(rs) == [(12, 14)]
    assert rs.covered() == 2
    assert rs.trim_lowest(0) == 1
    assert not rs


def test_contiguous_end_and_missing(rangeset):
    rs = rangeset.RangeSet([(10, 20), (30, 40)])
    assert rs.contiguous_end(10) == 20
    assert rs.contiguous_end(15) == 20
    assert rs.contiguous_end(20) == 20  # stop is exclusive
    assert rs.contiguous_end(25) == 25
    assert rs.missing(0, 50) == [(0, 10), (20, 30), (40, 50)]
    assert rs.missing(12, 35) == [(20, 30)]
    assert rs.missing(12, 18) == []
    assert rs.missing(20, 30) == [(20, 30)]
    assert rs.missing(25, 25) == []


def test_membership_rejects_non_members_quietly(rangeset):
    rs = rangeset.RangeSet([(0, 10)])
    assert 0 in rs and 9 in rs
    for value in (10, -1, END, 2**80, 1.0, "1", None, True):
        assert value not in rs


def test_bounds_limits(rangeset):
    rs = rangeset.RangeSet()
    assert rs.add(VARINT_MAX, END) == 1
    assert VARINT_MAX in rs
    assert rs.highest() == VARINT_MAX
    assert rs.ack_ranges(1) == ((VARINT_MAX, VARINT_MAX),)
    assert rs.contiguous_end(VARINT_MAX) == END
    assert rs.add(0, END) == VARINT_MAX
    assert rs.covered() == END


@pytest.mark.parametrize(
    "args, error",
    [
        ((5, 4), ValueError),
        ((-1, 4), ValueError),
        ((0, END + 1), ValueError),
        ((2**64, 2**65), ValueError),
        ((0, 2**70), ValueError),
        ((0.0, 4), TypeError),
        ((0, "4"), TypeError),
        ((False, 4), TypeError),
        ((None, None), TypeError),
    ],
)
def test_invalid_ranges_raise_and_change_nothing(rangeset, args, error):
    rs = rangeset.RangeSet([(0, 3)])
    for method in (rs.add, rs.discard, rs.missing):
        with pytest.raises(error):
            method(*args)
    with pytest.raises(error):
        rangeset.RangeSet([args])
    assert list(rs) == [(0, 3)] and rs.covered() == 3


@pytest.mark.parametrize(
    "value, error",
    [(-1, ValueError), (END + 1, ValueError), (2**64, ValueError), (1.0, TypeError),
     (True, TypeError), (None, TypeError)],
)
def test_invalid_contiguous_end(rangeset, value, error):
    with pytest.raises(error):
        rangeset.RangeSet([(0, 3)]).contiguous_end(value)


def test_invalid_limits(rangeset):
    rs = rangeset.RangeSet([(0, 3), (5, 6)])
    for method in (rs.trim_lowest, rs.ack_ranges):
        with pytest.raises(ValueError):
            method(-1)
        with pytest.raises(TypeError):
            method(1.0)
    assert rs.trim_lowest(2**80) == 0
    assert rs.ack_ranges(2**80) == ((5, 5), (0, 2))


def test_equality_copy_and_pickle(rangeset):
    rs = rangeset.RangeSet([(0, 3), (5, 6)])
    assert rs == rangeset.RangeSet([(5, 6), (0, 3)])
    assert rs != rangeset.RangeSet([(0, 3)])
    assert rs != [(0, 3), (5, 6)]
    with pytest.raises(TypeError):
        hash(rs)
    for twin in (rs.copy(), copy.copy(rs), copy.deepcopy(rs), pickle.loads(pickle.dumps(rs))):
        assert twin == rs and twin.covered() == rs.covered()
        twin.add(10, 20)
        twin.shift()
        assert list(rs) == [(0, 3), (5, 6)]


def test_iteration_is_a_snapshot(rangeset):
    rs = rangeset.RangeSet([(0, 1), (2, 3), (4, 5)])
    seen = []
    for pair in rs:
        seen.append(pair)
        rs.add(10, 11)
        rs.shift()
    assert seen == [(0, 1), (2, 3), (4, 5)]


def test_long_queue_through_front_compaction(rangeset):
    """Many shifts move the head far enough to cut the stale front slots off,
    and re-adding below the lowest range reuses those slots."""
    rs = rangeset.RangeSet()
    expected = []
    for i in range(0, 400, 2):
        rs.add(i, i + 1)
        expected.append((i, i + 1))
        if i % 6 == 0:
            assert rs.shift() == expected.pop(0)
        if i % 10 == 0 and expected:
            # put the lowest back after taking it: the send path of a stream
            first = rs.shift()
            assert rs.add(*first) == 1
        assert list(rs) == expected
        assert rs.covered() == len(expected)
        if expected:
            assert rs.lowest() == expected[0][0]
    while rs:
        assert rs.shift() == expected.pop(0)
        assert list(rs) == expected
        assert rs.covered() == len(expected)
        if len(expected) % 7 == 0:  # a re-insertion below the lowest range
            rs.add(0, 1)
            assert rs.shift() == (0, 1)
    assert expected == [] and rs.covered() == 0
    assert rs.add(5, 6) == 1 and list(rs) == [(5, 6)]


def test_in_order_packets_make_one_range(rangeset):
    rs = rangeset.RangeSet()
    for pn in range(1000):
        assert rs.add(pn, pn + 1) == 1
    assert list(rs) == [(0, 1000)]
    assert rs.ack_ranges(4) == ((0, 999),)


# ---------------------------------------------------------------------------
# ack_ranges feeds AckFrame
# ---------------------------------------------------------------------------


def test_ack_ranges_shape(rangeset):
    rs = rangeset.RangeSet([(0, 3), (5, 6), (8, 12)])
    assert rs.ack_ranges(10) == ((8, 11), (5, 5), (0, 2))
    assert rs.ack_ranges(2) == ((8, 11), (5, 5))
    assert rs.ack_ranges(0) == ()


packet_numbers = st.one_of(
    st.integers(0, 300), st.integers(VARINT_MAX - 300, VARINT_MAX), st.integers(0, VARINT_MAX)
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(packet_numbers, st.integers(1, 40)), min_size=1, max_size=40),
    st.integers(1, MAX_ACK_RANGES + 1),
    st.integers(0, 2**20),
)
def test_ack_ranges_round_trip_through_ack_frame(rangeset, wire, adds, limit, delay):
    rs = rangeset.RangeSet()
    for start, length in adds:
        rs.add(start, min(start + length, END))
    ranges = rs.ack_ranges(limit)
    assert len(ranges) == min(limit, len(rs))
    frame = wire.AckFrame(ranges, delay)
    (decoded,) = wire.decode_frames_untrusted(wire.encode_frames([frame]))
    assert decoded == frame
    top = list(rs)[-len(ranges):]
    assert rangeset.RangeSet((lo, hi + 1) for lo, hi in decoded.ranges) == rangeset.RangeSet(top)


def test_ack_ranges_at_the_frame_limit_encode(rangeset, wire):
    rs = rangeset.RangeSet((2 * i, 2 * i + 1) for i in range(MAX_ACK_RANGES + 10))
    ranges = rs.ack_ranges(MAX_ACK_RANGES + 1)
    assert len(ranges) == MAX_ACK_RANGES + 1
    wire.encode_frames([wire.AckFrame(ranges, 0)])


# ---------------------------------------------------------------------------
# Model-based: against a set of ints
# ---------------------------------------------------------------------------

UNIVERSE = 24
_bound = st.integers(0, UNIVERSE)
_pair = st.tuples(_bound, _bound).map(sorted).map(tuple)
model_ops = st.one_of(
    st.tuples(st.just("add"), _pair),
    st.tuples(st.just("discard"), _pair),
    st.tuples(st.just("shift"), st.just(None)),
    st.tuples(st.just("trim_lowest"), st.integers(0, 4)),
)


def _check_against_model(rs, members: set, query: tuple) -> None:
    expected = _ranges(members)
    assert list(rs) == expected
    assert len(rs) == len(expected)
    assert bool(rs) == bool(members)
    assert rs.covered() == len(members)
    for v in range(-1, UNIVERSE + 2):
        assert (v in rs) == (v in members)
    for v in range(UNIVERSE + 2):
        end = v
        while end in members:
            end += 1
        assert rs.contiguous_end(v) == end
    a, b = query
    assert rs.missing(a, b) == _ranges(set(range(a, b)) - members)
    assert rs.missing(0, UNIVERSE + 1) == _ranges(set(range(UNIVERSE + 1)) - members)
    for limit in (0, 1, 2, len(expected) + 1):
        top = expected[max(0, len(expected) - limit):] if limit else []
        assert rs.ack_ranges(limit) == tuple((s, e - 1) for s, e in reversed(top))
    if members:
        assert (rs.lowest(), rs.highest()) == (min(members), max(members))
    assert rs == rs.copy()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(model_ops, _pair), max_size=100))
def test_matches_a_set_of_ints(rangeset, steps):
    rs = rangeset.RangeSet()
    members: set = set()
    for (op, arg), query in steps:
        if op == "add":
            new = set(range(*arg)) - members
            assert rs.add(*arg) == len(new)
            members |= new
        elif op == "discard":
            rs.discard(*arg)
            members -= set(range(*arg))
        elif op == "shift":
            if members:
                first = _ranges(members)[0]
                assert rs.shift() == first
                members -= set(range(*first))
            else:
                with pytest.raises(IndexError):
                    rs.shift()
        else:
            expected = _ranges(members)
            drop = max(0, len(expected) - arg)
            assert rs.trim_lowest(arg) == drop
            for first in expected[:drop]:
                members -= set(range(*first))
        _check_against_model(rs, members, query)


# ---------------------------------------------------------------------------
# Differential: both builds, also with invalid arguments
# ---------------------------------------------------------------------------

_any_bound = st.one_of(
    st.integers(-3, 40),
    st.sampled_from([END - 1, END, END + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]),
    st.sampled_from([1.0, True, None, "3", b"3"]),
)
diff_ops = st.one_of(
    st.tuples(st.sampled_from(["add", "discard", "missing"]), st.tuples(_any_bound, _any_bound)),
    st.tuples(st.sampled_from(["contiguous_end", "contains"]), st.tuples(_any_bound)),
    st.tuples(st.sampled_from(["trim_lowest", "ack_ranges"]), st.tuples(_any_bound)),
    st.tuples(st.sampled_from(["shift", "lowest", "highest", "covered", "len"]), st.just(())),
)


def _apply(rs, op: str, args: tuple):
    try:
        if op == "contains":
            return ("ok", args[0] in rs)
        if op == "len":
            return ("ok", len(rs))
        return ("ok", getattr(rs, op)(*args))
    except Exception as exc:  # the type is what is compared
        return ("error", type(exc))


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.lists(st.tuples(_any_bound, _any_bound), max_size=4),
        st.sampled_from([None, [(1, 2, 3)], [1], [(1,)]]),
    ),
    st.lists(diff_ops, max_size=60),
)
def test_builds_agree(both_rangeset_builds, initial, steps):
    pure, compiled = both_rangeset_builds
    sets = []
    outcomes = []
    for module in (pure, compiled):
        try:
            sets.append(module.RangeSet(initial))
            outcomes.append("ok")
        except Exception as exc:
            sets.append(module.RangeSet())
            outcomes.append(type(exc))
    assert outcomes[0] == outcomes[1]
    a, b = sets
    for op, args in steps:
        assert _apply(a, op, args) == _apply(b, op, args), (op, args)
        assert list(a) == list(b)
        assert repr(a) == repr(b)
        assert a.covered() == b.covered()


def test_the_builds_are_really_different_modules(both_rangeset_builds):
    pure, compiled = both_rangeset_builds
    assert pure.COMPILED is False
    assert compiled.COMPILED is True
    assert pure.RangeSet is not compiled.RangeSet
    assert compiled.RangeSet.__module__ == "stt_proto._rangeset_c"
