"""Live audio and video: frames that would arrive too late are dropped, not queued.

A camera sends video frames (30 a second) and audio packets (50 a second) on two
streams of one session, each message with a deadline: a frame is worth showing
within 150 ms of its capture, an audio packet within 100 ms. Halfway through,
the player's video decoder stalls for a moment. On a reliable stream the
backlog would then play out late, frame after stale frame; here the frames that
could not be delivered in time are abandoned by the sender, the player's stream
skips them (``stream.messages_skipped``) and goes on with fresh frames, and the
audio never stops. Frames the player got but could not show in time (they
waited in its own queue during the stall) it drops itself.

Run: python examples/live_av.py [--seconds S] [--frame-kib K] [--stall S] [--seed TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import time

import stt
from _common import argument_parser, run

HEADER = struct.Struct("!Id")  # frame number, capture time (one process, one clock)
VIDEO_DEADLINE = 0.15
AUDIO_DEADLINE = 0.10


async def camera(stream: stt.Stream, rate: float, size: int, seconds: float) -> int:
    """Send ``rate`` messages a second for ``seconds`` (numbered from 1: 0
    opened the stream); returns how many."""
    count = int(rate * seconds)
    start = time.perf_counter()
    for n in range(1, count + 1):
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        await stream.send(HEADER.pack(n, time.perf_counter()) + bytes(size))
    stream.deadline = None  # the end of the stream must arrive
    await stream.close()
    return count


async def player(stream: stt.Stream, deadline: float, stall_at: float | None,
                 stall: float, report: dict) -> None:
    shown, stale, last = 0, 0, -1
    stalled = stall_at is None
    async for message in stream:
        number, captured = HEADER.unpack_from(message)
        assert number > last, "frames out of order"
        last = number
        if not stalled and time.perf_counter() >= stall_at:
            stalled = True
            await asyncio.sleep(stall)  # the decoder hangs
        if time.perf_counter() - captured > deadline:
            stale += 1  # it waited in our own queue: too late to show
        else:
            shown += 1
    report.update(shown=shown, stale=stale, skipped=stream.messages_skipped)


async def main(args: argparse.Namespace) -> int:
    seed = args.seed
    video_report: dict = {}
    audio_report: dict = {}
    done = asyncio.get_running_loop().create_future()

    async def serve(session: stt.Session) -> None:
        video, audio = await session.accept_stream(), await session.accept_stream()
        start = time.perf_counter()
        await asyncio.gather(
            player(video, VIDEO_DEADLINE, start + args.seconds / 2, args.stall, video_report),
            player(audio, AUDIO_DEADLINE, None, 0.0, audio_report))
        done.set_result(None)

    async with stt.Node(shared_seed=seed) as server, stt.Node(shared_seed=seed) as client:
        server.on_session(serve)
        session = await client.connect(server.address, server.node_id)
        frame = args.frame_kib * 1024
        video = session.open_stream(max_frame_size=frame + HEADER.size,
                                    deadline=VIDEO_DEADLINE)
        audio = session.open_stream(max_frame_size=1024, deadline=AUDIO_DEADLINE)
        await video.send(HEADER.pack(0, time.perf_counter()))   # open both streams
        await audio.send(HEADER.pack(0, time.perf_counter()))   # in a known order
        frames, packets = await asyncio.gather(
            camera(video, 30, frame, args.seconds), camera(audio, 50, 160, args.seconds))
        await asyncio.wait_for(done, 30)

    ok = True
    for name, sent, report in (("video", frames + 1, video_report),
                               ("audio", packets + 1, audio_report)):
        accounted = report["shown"] + report["stale"] + report["skipped"]
        print(f"{name}: {sent} sent, {report['shown']} shown in time, "
              f"{report['skipped']} skipped by the transport, "
              f"{report['stale']} dropped by the player")
        ok = ok and accounted == sent
    if args.stall and not video_report["skipped"]:
        print("the stall cost no frame: make --stall longer or the frames larger")
        ok = False
    print("live audio/video OK" if ok else "live audio/video FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the stream")
    parser.add_argument("--frame-kib", type=int, default=48, help="video frame size, KiB")
    parser.add_argument("--stall", type=float, default=1.0,
                        help="how long the video decoder hangs halfway, seconds")
    run(main, parser)
