"""What a session reports about itself: its statistics and one stream's state.

Read by :meth:`Endpoint.session_statistics
<stt_proto.endpoint.Endpoint.session_statistics>` and :meth:`Endpoint.stream_info
<stt_proto.endpoint.Endpoint.stream_info>` from a
:class:`~stt_proto.session.SessionCore` (``core``): figures gathered from its
parts on demand, never on the per-packet path.
"""

from __future__ import annotations

from typing import Any

from .assembly import F_STREAM

__all__ = ["session_statistics", "stream_info"]


def session_statistics(core: Any) -> dict:
    """RTT, congestion state, counters and stream figures of the session."""
    recovery = core.recovery
    rtt, cc = recovery.rtt, recovery.cc
    stats: dict = dict(core._stats)
    stats.update(recovery.stats)
    stats.update(core.admission.stats)
    send_buffered = recv_buffered = 0
    for stream in core._streams.values():
        send_buffered += stream.send.buffered
        recv_buffered += stream.recv.buffered
    stats.update(
        rtt_latest=rtt.latest_rtt,
        rtt_smoothed=rtt.smoothed_rtt,
        rtt_variance=rtt.rttvar,
        rtt_min=rtt.min_rtt if rtt.has_sample else None,
        congestion_control=cc.name,
        congestion_window=cc.congestion_window,
        bytes_in_flight=recovery.bytes_in_flight,
        packets_in_flight=recovery.packets_in_flight,
        stream_bytes_in_flight=sum(r[3] - r[2] for frames in recovery.frames_in_flight()
                                   for r in frames if r[0] == F_STREAM),
        pacing_rate=cc.pacing_rate(rtt),
        streams_open=len(core._streams),
        streams_opened_by_peer=core.admission.peer_streams,
        used_stream_ids=core._used.count(),
        used_stream_ranges=len(core._used),
        refused_streams_remembered=len(core.admission.refused),
        send_buffered=send_buffered,
        send_held=core._send_held,
        recv_buffered=recv_buffered,
        send_credit=core.credit.available,
        recv_credit=core.credit.local_max_data - core.credit.received + core.credit.skipped,
        session_window=core.credit.window,
        ack_ranges=len(core.acks.received),
        recv_fragments=core._fragments,
        events_waiting=core.events_waiting,
        recv_in_use=core.credit.in_use,
        queued_datagrams=core.assembly.queued_datagrams,
    )
    return stats


def stream_info(core: Any, stream_id: int) -> dict:
    """One stream's state, buffers, credit and priority (``KeyError``: no such
    open stream)."""
    stream = core._streams.get(stream_id)
    if stream is None:
        raise KeyError(f"no open stream {stream_id}")
    send, recv = stream.send, stream.recv
    return {
        "stream_id": stream_id,
        "opened_by_peer": stream.remote,
        "send_state": send.state.value,
        "recv_state": recv.state.value,
        "send_buffered": send.buffered,
        "send_credit": send.max_data - send.sent_end,
        "recv_buffered": recv.buffered,
        "recv_window": recv.window,
        "max_frame_size": send.max_frame_size,
        "priority": stream.urgency,
        "incremental": stream.incremental,
        "interactive": stream.interactive,
    }
