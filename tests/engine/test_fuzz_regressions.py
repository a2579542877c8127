"""Findings of the fuzz harnesses (``fuzz/``), each kept as a regression test.

Every finding has two tests: the scenario it revealed, written out with the
in-memory endpoint helpers (no atheris needed), and the fuzzer's own input fed
through the harness that found it, so the very same checks run again (skipped
when atheris is not installed). The engine picks its wire codec at import, so
the pure build is covered by running the suite with ``STT_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

from stt_proto.crypto import KeyLimits
from stt_proto.events import DatagramReceived, SessionClosed

from ..helpers.endpoints import A_ADDR, B_ADDR, Net, connect, make_endpoint

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"


def replay_through_harness(harness: str, data: bytes) -> None:
    """Run one input through ``fuzz/fuzz_<harness>.py``'s ``test_one_input``."""
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed for this interpreter")
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    module = importlib.import_module(f"fuzz_{harness}")
    module.test_one_input(data)


# --- endpoint: a rekey refused by the session limits --------------------------------------
#
# Found by fuzz_endpoint: once A's host had max_sessions_per_address sessions
# with B, B refused every rekey INITIATION of those sessions (the session limits
# were checked before the Noise message could tell a rekey from a new session),
# so A's sessions closed with "keys expired before a rekey completed" at the
# keys' hard time limit. Fixed in Endpoint._receive_initiation: the limits apply
# to new sessions only.

_SHORT_KEYS = KeyLimits(rekey_after_time=2.0, reject_after_time=4.0, previous_key_grace=1.0)


@pytest.mark.parametrize("limit", [
    {"max_sessions": 1},
    {"max_sessions_per_address": 1},
])
def test_rekey_is_not_refused_by_session_limits(limit):
    a = make_endpoint(1, key_limits=_SHORT_KEYS)
    b = make_endpoint(2, key_limits=_SHORT_KEYS, **limit)
    net = Net((a, A_ADDR), (b, B_ADDR))
    sid_a, sid_b = connect(a, b, net)
    # The table is full: a second session is refused, as it must be.
    a.connect(B_ADDR, b.node_id, now=net.now, timeout=1.0)
    net.run(net.now + 1.5)
    assert b.statistics()["sessions"] == 1
    assert [e.reason for e in net.of(a, SessionClosed)] == ["timeout"]
    # Three key lifetimes later the first session is still there: its rekeys
    # went through although the table stayed full.
    for step in range(12):
        a.send_datagram(sid_a, b"%d" % step, now=net.now)
        net.run(net.now + 1.0)
    assert a.statistics()["rekeys_completed"] >= 3
    assert b.statistics()["initiations_rejected_limit"] == 1
    assert [int(e.data) for e in net.of(b, DatagramReceived)] == list(range(12))
    assert len(net.of(a, SessionClosed)) == 1 and net.of(b, SessionClosed) == []
    assert b.session_info(sid_b)["established"]


def test_rekey_is_not_refused_when_half_open_table_is_full():
    a = make_endpoint(1, key_limits=_SHORT_KEYS)
    b = make_endpoint(2, key_limits=_SHORT_KEYS, max_half_open=1, half_open_timeout=60.0)
    c = make_endpoint(3)
    net = Net((a, A_ADDR), (b, B_ADDR))
    sid_a, _ = connect(a, b, net)
    # C's handshake is never confirmed (its RESPONSE is lost): B keeps it half-open.
    c.connect(B_ADDR, b.node_id, now=net.now)
    ((initiation, _),) = c.datagrams_to_send(net.now)
    b.receive_datagram(initiation, ("10.0.0.3", 3000), net.now)
    b.datagrams_to_send(net.now)
    assert b.statistics()["half_open"] == 1
    for step in range(12):
        a.send_datagram(sid_a, b"%d" % step, now=net.now)
        net.run(net.now + 1.0)
    # Under load, each rekey first went through a cookie round trip.
    assert a.statistics()["rekeys_completed"] >= 3
    assert a.statistics()["cookie_replies_received"] >= 3
    assert [int(e.data) for e in net.of(b, DatagramReceived)] == list(range(12))
    assert net.of(a, SessionClosed) == [] and net.of(b, SessionClosed) == []


_REKEY_REFUSED_INPUT = base64.b64decode(
    "AZoAAAB6enp6enoaenp6enopOQAAAAAAAHp6QXp6enp6enp6enqvr6+vr6+vr6+vr6+vr6+vr6+vr6+vr6+vr6+v"
    "r6+vr6+vr6+vr6+vr6+vr6+vr6+vr6+vr6+vr6+vr6+vr6+vr6+venp6enp6enr6enp6enoFAHo/enp6enp6enp6"
    "enp6enp6enoAAAAAAAAAAAAAAAAAenp2enp6enp6enp6enJ6egAAAAUBBQAAzwQBBAAAAAAAAgAA1QAAAHp6enp6"
    "BIAHAADPBAEEAAA="
)


def test_fuzz_endpoint_rekey_refused_input():
    replay_through_harness("endpoint", _REKEY_REFUSED_INPUT)
