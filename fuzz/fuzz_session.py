"""Fuzz harness for an established session fed authenticated frames (atheris).

The harness plays the initiator itself with the public handshake API, so it holds
the session's real sending keys: every packet it sends authenticates, and the
fuzzer chooses what is inside (raw payload bytes, or frame sequences built with
the wire encoders from fuzzer-chosen fields), the packet numbers (gaps, replays),
the responder application's commands and how time advances.

Invariant, for any input:

* no exception ever leaves the engine: a peer's violation closes the session
  with a ``SessionClosed`` event of reason ``error`` and a protocol error code
  (or, when the peer sent CLOSE itself, with the peer's code);
* a session that closed produces no event afterwards (no stream events, no
  second ``SessionClosed``), however many packets still arrive;
* memory stays bounded: buffered received bytes within the session's flow-control
  window, peer streams within ``max_streams``, remembered refused streams within
  ``max_refused_streams``, used stream ids within ``max_used_stream_ranges``
  ranges, ACK ranges within ``MAX_ACK_RANGES``, queued datagrams
  within ``max_queued_datagrams``, and every endpoint table within its limit.

Run: ``python fuzz/fuzz_session.py [corpus dirs] [libFuzzer flags]``, or ``fuzz/run``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from _harness import A_ADDR, PROTOCOL_ERROR_CODES, ManualInitiator, Ops, check_tables
    from _harness import make_endpoint
    from stt_proto import _wire_py as frames
    from stt_proto.constants import MAX_ACK_RANGES
    from stt_proto.errors import DecodeError, EncodeError, LocalProtocolError
    from stt_proto.events import SessionClosed, SessionEstablished

#: Small limits, so the fuzzer reaches them.
LIMITS = dict(
    stream_window=1024, max_stream_window=4096, session_window=2048,
    max_session_window=8192, max_streams=4, max_refused_streams=8, max_used_stream_ranges=8,
    max_frame_size=600,
    max_queued_datagrams=4, max_events=64, max_send_buffer=4096,
)
MAX_OPS = 48
#: Time never reaches the idle timeout (30 s): a close is always the peer's doing.
MAX_TIME = 25.0


def build_frame(ops: Ops, largest_acked: int):
    """One frame from fuzzer-chosen fields (may be invalid for the session)."""
    kind = ops.byte() % 16
    small = ops.byte()
    sid = small % 8 if small < 0xF0 else ops.u64() >> 2
    if kind == 0:
        fin = bool(small & 0x80)
        return frames.StreamFrame(sid, ops.u16() if small & 0x40 else ops.u64() >> 2,
                                  ops.take(ops.byte()), fin)
    if kind == 1:
        return frames.ResetStreamFrame(sid, ops.byte(), ops.u16())
    if kind == 2:
        return frames.StopSendingFrame(sid, ops.byte())
    if kind == 3:
        return frames.MaxDataFrame(ops.u64() >> 2)
    if kind == 4:
        return frames.MaxStreamDataFrame(sid, ops.u16())
    if kind == 5:
        return frames.StopSendingFrame(sid, 0x04)  # a refusal (STREAM_LIMIT_ERROR)
    if kind == 6:
        return frames.DataBlockedFrame(ops.u16())
    if kind == 7:
        return frames.StreamDataBlockedFrame(sid, ops.u16())
    if kind == 8:
        return frames.PingFrame()
    if kind == 9:
        # Mostly packet numbers the responder really sent, sometimes beyond.
        top = max(0, largest_acked) + (ops.byte() % 3 if small & 1 else 0)
        ranges, hi = [], top
        for _ in range(1 + ops.byte() % 4):
            lo = max(0, hi - ops.byte() % 4)
            ranges.append((lo, hi))
            hi = lo - 2 - ops.byte() % 3
            if hi < 0:
                break
        return frames.AckFrame(tuple(ranges), ops.byte())
    if kind == 10:
        return frames.DatagramFrame(ops.take(ops.byte()))
    if kind == 11:
        return frames.DhtFrame(ops.take(ops.byte()))
    if kind == 12:
        return frames.PathChallengeFrame(ops.take(8).ljust(8, b"\0"))
    if kind == 13:
        return frames.PaddingFrame(1 + ops.byte() % 16)
    if kind == 14:
        offset = ops.u16() if small & 0x40 else ops.u64() >> 3
        return frames.StreamSkipFrame(sid, offset, 1 + ops.u16(), ops.byte())
    return frames.CloseFrame(ops.byte(), ops.take(ops.byte() % 32).decode("latin-1"))


class Run:
    """One responder endpoint, its established session and the harness's keys."""

    def __init__(self, auto_credit: bool) -> None:
        self.b = make_endpoint(2, auto_credit=auto_credit, **LIMITS)
        self.config = self.b._config
        self.peer = ManualInitiator(self.b)
        self.now = 0.0
        self.pn = 0
        self.sent: list[bytes] = []
        self.largest_b_pn = -1
        self.session_id: bytes | None = None
        self.closed = False
        self.peer_closes: set[int] = set()
        self.b.receive_datagram(self.peer.initiation, A_ADDR, self.now)
        (response, _), = self.b.datagrams_to_send(self.now)
        self.peer.complete(response)
        self.send_payload(frames.encode_frames([frames.PingFrame()]))
        if self.session_id is None:
            raise AssertionError("the session was not established")

    def send_payload(self, payload: bytes) -> None:
        try:
            decoded = frames.decode_frames_untrusted(payload)
        except DecodeError:
            decoded = []
        for frame in decoded:
            if type(frame) is frames.CloseFrame:
                self.peer_closes.add(frame.error_code)
        datagram = self.peer.seal(self.pn, payload)
        self.pn += 1
        self.deliver(datagram)

    def deliver(self, datagram: bytes) -> None:
        self.sent.append(datagram)
        self.b.receive_datagram(datagram, A_ADDR, self.now)
        self.drain()

    def drain(self) -> None:
        b = self.b
        for datagram, address in b.datagrams_to_send(self.now):
            if address != A_ADDR:
                raise AssertionError(f"session packet sent to {address!r}")
            self.largest_b_pn = max(self.largest_b_pn, int.from_bytes(datagram[5:13], "big"))
        while (event := b.next_event()) is not None:
            self.check_event(event)
        check_tables(b)
        if not self.closed:
            self.check_bounds()

    def check_event(self, event) -> None:
        if isinstance(event, SessionEstablished):
            if self.session_id is not None:
                raise AssertionError("a second session appeared")
            self.session_id = event.session_id
            return
        if getattr(event, "session_id", None) != self.session_id:
            raise AssertionError(f"event for another session: {event!r}")
        if self.closed:
            raise AssertionError(f"event after SessionClosed: {event!r}")
        if isinstance(event, SessionClosed):
            self.closed = True
            if event.reason == "graceful":
                ok = 0 in self.peer_closes
            elif event.reason == "error":
                ok = (event.error_code in PROTOCOL_ERROR_CODES
                      or event.error_code in self.peer_closes)
            else:
                ok = False
            if not ok:
                raise AssertionError(f"undocumented close: {event!r}")

    def check_bounds(self) -> None:
        config = self.config
        stats = self.b.session_statistics(self.session_id)
        if stats["recv_credit"] < 0 or stats["recv_buffered"] > stats["session_window"]:
            raise AssertionError(f"received bytes beyond the window: {stats!r}")
        if not stats["session_window"] <= config.max_session_window:
            raise AssertionError("session window above max_session_window")
        if stats["streams_opened_by_peer"] > config.max_streams:
            raise AssertionError(f"{stats['streams_opened_by_peer']} peer streams")
        if stats["refused_streams_remembered"] > config.max_refused_streams:
            raise AssertionError("refused stream ids beyond max_refused_streams")
        if stats["used_stream_ranges"] > config.max_used_stream_ranges:
            raise AssertionError("used stream ids beyond max_used_stream_ranges")
        if stats["ack_ranges"] > MAX_ACK_RANGES:
            raise AssertionError("ACK ranges beyond MAX_ACK_RANGES")
        if stats["queued_datagrams"] > config.max_queued_datagrams:
            raise AssertionError("queued datagrams beyond max_queued_datagrams")
        for stream_id in self.b.stream_ids(self.session_id):
            info = self.b.stream_info(self.session_id, stream_id)
            if info["recv_buffered"] > max(info["recv_window"], config.max_stream_window):
                raise AssertionError(f"stream {stream_id} buffers beyond its window: {info!r}")

    def advance(self, dt: float) -> None:
        target = min(self.now + dt, MAX_TIME)
        for _ in range(10_000):
            at = self.b.get_timer()
            if at is None or at > target:
                self.now = max(self.now, target)
                return
            self.now = max(self.now, at)
            self.b.handle_timer(self.now)
            self.drain()
        raise AssertionError("timer keeps firing without time moving on")

    def app_command(self, ops: Ops) -> None:
        """Something the responder's application does (local misuse may raise
        its documented exceptions, which the harness accepts)."""
        b, sid, now = self.b, self.session_id, self.now
        stream = ops.byte() % 8
        what = ops.byte() % 6
        try:
            if what == 0:
                b.send_message(sid, stream, ops.take(ops.byte()), now=now,
                               end_stream=bool(stream & 1))
            elif what == 1:
                b.send_stream_data(sid, stream, ops.take(ops.u16() % 3000), now=now)
            elif what == 2:
                b.end_stream(sid, stream, now=now)
            elif what == 3:
                b.reset_stream(sid, stream, ops.byte(), now=now)
            elif what == 4:
                b.stop_stream(sid, stream, ops.byte(), now=now)
            else:
                b.stream_consumed(sid, stream, ops.u16(), now=now)
        except (KeyError, ValueError, LocalProtocolError):
            pass
        self.drain()


def test_one_input(data: bytes) -> None:
    ops = Ops(data)
    run = Run(auto_credit=not ops.byte() & 1)
    for _ in range(MAX_OPS):
        if not ops.more():
            break
        op = ops.byte() % 7
        if op == 0:
            run.send_payload(ops.blob())
        elif op in (1, 2):
            built = []
            for _ in range(1 + ops.byte() % 4):
                frame = build_frame(ops, run.largest_b_pn)
                try:
                    frames.encode_frames([frame])
                except EncodeError:
                    continue  # fields the encoder refuses cannot reach the wire
                built.append(frame)
            if built:
                run.send_payload(frames.encode_frames(built))
        elif op == 3:
            run.advance(ops.byte() / 32)
        elif op == 4:
            run.pn += ops.byte() % 40  # a gap: packets "lost" on the way
        elif op == 5 and run.sent:
            run.deliver(run.sent[ops.byte() % len(run.sent)])  # a replay
        elif op == 6 and not run.closed:
            run.app_command(ops)
    run.advance(MAX_TIME)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
