"""Session-wide credit (``stt_proto.flow``, docs/protocol.md 7.6)."""

from __future__ import annotations

import pytest

from stt_proto.constants import ErrorCode
from stt_proto.errors import ProtocolError
from stt_proto.flow import SessionCredit


def test_received_bytes_beyond_the_credit_are_a_flow_control_error():
    credit = SessionCredit(peer_max_data=0, window=1000, max_window=4000)
    credit.on_received(600)
    credit.on_received(400)                    # exactly the limit
    with pytest.raises(ProtocolError) as info:
        credit.on_received(1)
    assert info.value.error_code == ErrorCode.FLOW_CONTROL_ERROR


def test_max_data_is_owed_after_a_quarter_window_and_the_window_grows_when_frequent():
    credit = SessionCredit(peer_max_data=0, window=1000, max_window=4000)
    credit.on_consumed(249)
    credit.update(now=1.0, smoothed_rtt=0.1)
    assert not credit.update_pending           # less than a quarter of the window
    credit.on_consumed(1)
    credit.update(now=1.0, smoothed_rtt=0.1)
    assert credit.update_pending and credit.local_max_data == 1250 and credit.window == 1000
    credit.update_pending = False
    credit.on_consumed(250)
    credit.update(now=1.1, smoothed_rtt=0.1)   # within two RTTs of the last update
    assert credit.window == 2000 and credit.local_max_data == 500 + 2000
    credit.on_consumed(-5)                     # ignored
    assert credit.consumed == 500


def test_a_forced_update_resends_an_unchanged_limit():
    credit = SessionCredit(peer_max_data=0, window=1000, max_window=1000)
    credit.update(now=0.0, smoothed_rtt=0.1, force=True)
    assert credit.update_pending and credit.local_max_data == 1000


def test_sending_takes_credit_and_reports_blocked_once_per_limit():
    credit = SessionCredit(peer_max_data=100, window=1000, max_window=1000)
    credit.on_sent(100)
    assert credit.available == 0
    credit.blocked()
    assert credit.blocked_pending and credit.blocked_at == 100
    credit.blocked_pending = False
    credit.blocked()
    assert not credit.blocked_pending          # same limit: once
    assert not credit.on_max_data(50)          # limits only grow
    assert credit.on_max_data(300) and credit.available == 200
