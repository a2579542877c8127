"""A session's life cycle: the tables in ``stt_proto.state`` and the endpoint's
sessions moving through them.

The expected tables below are written from ``docs/protocol.md`` (sections 6.3,
7.8) independently of ``state.py``; every (state, input) pair must transition as
they say or be refused.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stt_proto.constants import PacketKind
from stt_proto.crypto import KeyLimits, KeyRing
from stt_proto.events import SessionClosed, SessionEstablished
from stt_proto.handshake import TransportParameters
from stt_proto.sessions import Session
from stt_proto.state import (
    REKEY_ALLOWED,
    RekeyInput,
    RekeyState,
    SessionInput,
    SessionState,
    rekey_transition,
    session_transition,
)

from ..helpers.endpoints import A_ADDR, B_ADDR, Net, connect, make_endpoint

S, I = SessionState, SessionInput
EXPECTED_SESSION = {
    (S.HANDSHAKING, I.CONFIRMED): S.ESTABLISHED,
    (S.HANDSHAKING, I.EXPIRED): S.FORGOTTEN,
    (S.HANDSHAKING, I.CLOSE): S.CLOSED,
    (S.ESTABLISHED, I.FLUSH): S.CLOSING,
    (S.ESTABLISHED, I.CLOSE): S.CLOSED,
    (S.CLOSING, I.FLUSH): S.CLOSING,
    (S.CLOSING, I.CLOSE): S.CLOSED,
    (S.CLOSED, I.LINGER_OVER): S.FORGOTTEN,
}
EXPECTED_REKEY = {
    (RekeyState.IDLE, RekeyInput.START): RekeyState.RUNNING,
    (RekeyState.RUNNING, RekeyInput.COMPLETED): RekeyState.IDLE,
    (RekeyState.RUNNING, RekeyInput.ABANDONED): RekeyState.IDLE,
}


def _session(state: SessionState) -> Session:
    session = Session(bytes(16), bytes(32), A_ADDR, False, KeyRing(limits=KeyLimits()),
                      TransportParameters(), now=0.0)
    session.state = state
    return session


# --- the tables ------------------------------------------------------------------


@given(st.sampled_from(SessionState), st.sampled_from(SessionInput))
def test_each_session_pair_transitions_or_is_refused_as_the_table_says(state, event):
    expected = EXPECTED_SESSION.get((state, event))
    assert session_transition(state, event) is expected
    session = _session(state)
    if expected is None:
        with pytest.raises(RuntimeError):
            session.advance(event)
        assert session.state is state  # a refusal changes nothing
    else:
        session.advance(event)
        assert session.state is expected


@given(st.sampled_from(SessionState), st.sampled_from(RekeyState),
       st.sampled_from(RekeyInput))
def test_each_rekey_triple_transitions_or_is_refused_as_the_table_says(state, rekey, event):
    expected = EXPECTED_REKEY.get((rekey, event))
    # A rekey starts and completes only on a usable session; it can always be
    # abandoned (a closing session drops it).
    if event is not RekeyInput.ABANDONED and state not in REKEY_ALLOWED:
        expected = None
    assert rekey_transition(state, rekey, event) is expected
    session = _session(state)
    session.rekey_state = rekey
    if expected is None:
        with pytest.raises(RuntimeError):
            session.advance_rekey(event)
        assert session.rekey_state is rekey
    else:
        session.advance_rekey(event)
        assert session.rekey_state is expected


def test_rekeys_run_only_on_established_or_closing_sessions():
    assert REKEY_ALLOWED == {S.ESTABLISHED, S.CLOSING}


def test_every_state_is_reachable_and_every_session_is_eventually_forgotten():
    def reachable(start):
        seen, todo = {start}, [start]
        while todo:
            state = todo.pop()
            for event in SessionInput:
                nxt = session_transition(state, event)
                if nxt is not None and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert reachable(S.HANDSHAKING) == set(SessionState)
    for state in SessionState:
        assert S.FORGOTTEN in reachable(state)
    assert all(session_transition(S.FORGOTTEN, event) is None for event in SessionInput)


def test_the_table_lets_only_closed_sessions_record_where_they_closed_from():
    session = _session(S.ESTABLISHED)
    session.advance(I.FLUSH)
    assert session.closed_from is None
    session.advance(I.CLOSE)
    assert session.closed_from is S.CLOSING and session.closed and not session.established


# --- the endpoint's sessions go through the states ----------------------------------


def _state(endpoint, session_id):
    return endpoint._sessions[session_id].state


def test_sessions_go_from_handshaking_to_established_to_closing_to_closed_to_forgotten():
    a, b = make_endpoint(1), make_endpoint(2)
    net = Net((a, A_ADDR), (b, B_ADDR))
    sid_a = a.connect(B_ADDR, b.node_id, now=0.0)
    net.deliver(net.collect())  # the INITIATION
    (sid_b,) = b._sessions
    assert b.session_info(sid_b)["state"] == "handshaking"
    assert not b.session_info(sid_b)["established"]
    net.deliver(net.collect())  # the RESPONSE: the initiator is established at once
    assert a.session_info(sid_a)["state"] == "established"
    assert b.session_info(sid_b)["state"] == "handshaking"
    net.deliver(net.collect())  # the initiator's first DATA packet confirms (6.3)
    assert b.session_info(sid_b)["state"] == "established"
    assert [e.session_id for e in net.of(b, SessionEstablished)] == [sid_b]

    # A graceful close with data unacknowledged drains first (7.8).
    stream = a.open_stream(sid_a, now=net.now)
    a.send_message(sid_a, stream, b"x" * 50_000, now=net.now)
    a.close(sid_a, now=net.now)
    assert a.session_info(sid_a)["state"] == "closing"
    a.close(sid_a, now=net.now)  # a second graceful close changes nothing
    assert a.session_info(sid_a)["state"] == "closing"
    session_a = a._sessions[sid_a]
    net.run(net.now + 1.0)
    assert session_a.state is SessionState.CLOSED
    assert _state(b, sid_b) is SessionState.CLOSED
    with pytest.raises(KeyError):
        a.session_info(sid_a)
    assert [e.reason for e in net.of(a, SessionClosed)] == ["graceful"]
    net.run(net.now + a._config.close_linger + 1.0)
    assert session_a.state is SessionState.FORGOTTEN
    assert sid_a not in a._sessions and sid_b not in b._sessions
    assert a.statistics()["indices"] == 0 and b.statistics()["indices"] == 0


def test_an_unconfirmed_half_open_session_is_forgotten_without_closing():
    a, b = make_endpoint(1), make_endpoint(2)
    net = Net((a, A_ADDR), (b, B_ADDR))
    a.connect(B_ADDR, b.node_id, now=0.0)
    net.deliver(net.collect())  # the INITIATION; the RESPONSE is lost
    net.collect()
    (session,) = b._sessions.values()
    assert session.state is SessionState.HANDSHAKING
    b.handle_timer(b._config.half_open_timeout + 0.1)
    assert session.state is SessionState.FORGOTTEN and session.closed_from is None
    assert b.statistics()["half_open"] == 0 and b.statistics()["handshakes_unconfirmed"] == 1
    assert b.next_event() is None  # the application never heard of it


_SHORT_KEYS = KeyLimits(rekey_after_time=2.0, reject_after_time=20.0, previous_key_grace=1.0)


def test_a_rekey_is_reported_while_it_runs():
    a = make_endpoint(1, key_limits=_SHORT_KEYS)
    b = make_endpoint(2, key_limits=_SHORT_KEYS)
    net = Net((a, A_ADDR), (b, B_ADDR))
    sid_a, _ = connect(a, b, net)
    assert not a.session_info(sid_a)["rekeying"]
    a.handle_timer(2.5)  # the keys are due: the INITIATION leaves, unanswered yet
    assert a.session_info(sid_a)["rekeying"]
    assert a.session_info(sid_a)["state"] == "established"
    net.now = 2.5
    net.run(3.0)
    assert not a.session_info(sid_a)["rekeying"]
    assert a.statistics()["rekeys_completed"] == 1


def test_a_rekey_due_with_its_closing_session_sends_nothing_and_leaks_no_index():
    """Regression: when a late ``handle_timer`` found a session's idle timeout
    and its rekey's retry both due, the session closed first and the retry still
    sent an INITIATION for it, leaving that attempt's index routed for ever."""
    a = make_endpoint(1, key_limits=_SHORT_KEYS, idle_timeout=5.0, keep_alive_interval=1.0)
    b = make_endpoint(2, key_limits=_SHORT_KEYS)
    net = Net((a, A_ADDR), (b, B_ADDR))
    connect(a, b, net)
    # The peer goes silent; the adapter wakes up one second late every time.
    now, closed, initiations_after_close = net.now, False, 0
    while (at := a.get_timer()) is not None and at < 40.0:
        now = max(now, at + 1.0)
        a.handle_timer(now)
        out = a.datagrams_to_send(now)
        while (event := a.next_event()) is not None:
            closed = closed or isinstance(event, SessionClosed)
        if closed:
            initiations_after_close += sum(1 for data, _ in out
                                           if data[0] == PacketKind.INITIATION)
    assert closed
    assert initiations_after_close == 0
    stats = a.statistics()
    assert stats["sessions"] == 0 and stats["indices"] == 0 and stats["pending_connects"] == 0


def test_keys_expiring_under_an_unanswered_rekey_close_the_session_and_end_the_rekey():
    # The rekey's deadline is the keys' expiry, so the session's timer and the
    # rekey's come due together: whichever runs first, both must end cleanly.
    keys = KeyLimits(rekey_after_time=2.0, reject_after_time=4.0, previous_key_grace=1.0)
    a = make_endpoint(1, key_limits=keys)
    b = make_endpoint(2, key_limits=keys)
    net = Net((a, A_ADDR), (b, B_ADDR))
    sid_a, _ = connect(a, b, net)
    net.run(10.0, drop=lambda data, src, dst: True)  # the peer went away
    (closed,) = net.of(a, SessionClosed)
    assert closed.session_id == sid_a and closed.reason == "timeout"
    assert closed.message == "keys expired before a rekey completed"
    stats = a.statistics()
    assert stats["sessions"] == 0 and stats["indices"] == 0 and stats["timer_entries"] <= 2
