"""Multiplexing: video, audio and chat streams side by side on one session.

Each stream gets its own ``max_frame_size`` (large video frames, small audio
packets, tiny chat messages) and its own ordering: a message waits only for
earlier messages of *its* stream. While the video stream pushes megabytes of
frames as fast as flow control allows, the small chat messages still arrive
within milliseconds instead of queueing behind the video backlog, as they would
on a single TCP connection.

Run: python examples/multiplexed.py [--frames N] [--frame-kib K] [--seed TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import time

import stt
from _common import argument_parser, run

HEADER = struct.Struct("!4sd")  # kind, send time (both nodes share this process's clock)


async def consume(stream: stt.Stream, log: list) -> None:
    async for message in stream:
        kind, sent_at = HEADER.unpack_from(message)
        log.append((kind.decode(), time.perf_counter() - sent_at, message[HEADER.size:]))


async def produce(stream: stt.Stream, kind: bytes, payloads: list[bytes], pause: float) -> None:
    for payload in payloads:
        await stream.send(HEADER.pack(kind, time.perf_counter()) + payload)
        if pause:
            await asyncio.sleep(pause)
    await stream.close()


async def main(args: argparse.Namespace) -> int:
    seed = args.seed
    log: list = []  # (kind, latency, payload) in arrival order, all streams together
    served = asyncio.get_running_loop().create_future()

    async def serve(session: stt.Session) -> None:
        streams = [await session.accept_stream() for _ in range(3)]
        await asyncio.gather(*(consume(s, log) for s in streams))
        served.set_result(None)

    async with stt.Node(shared_seed=seed) as server, stt.Node(shared_seed=seed) as client:
        server.on_session(serve)
        session = await client.connect(server.address, server.node_id)
        frame = args.frame_kib * 1024
        video = session.open_stream(max_frame_size=frame + HEADER.size)
        audio = session.open_stream(max_frame_size=1024)
        chat = session.open_stream(max_frame_size=256)
        try:
            await chat.send(b"x" * 1000)
        except stt.MessageTooLargeError as exc:
            print(f"chat refuses a 1000-byte message locally: {exc}")

        chat_lines = [b"hi!", b"can you see me?", b"the video looks great", b"bye"]
        await asyncio.gather(
            produce(video, b"vid ", [os.urandom(frame)] * args.frames, 0),
            produce(audio, b"aud ", [bytes(960)] * 25, 0.004),
            produce(chat, b"chat", chat_lines, 0.02),
        )
        await asyncio.wait_for(served, 30)

    video_total = sum(1 for kind, *_ in log if kind == "vid ")
    video_seen = 0
    worst_chat = 0.0
    chat_before_video_end = 0
    for kind, latency, payload in log:
        if kind == "vid ":
            video_seen += 1
        elif kind == "chat":
            worst_chat = max(worst_chat, latency)
            chat_before_video_end += video_seen < video_total
            print(f"  chat {payload.decode()!r:25} {latency * 1000:6.2f} ms "
                  f"(video frames received so far: {video_seen}/{video_total})")
    video_ms = statistics.median(l for k, l, _ in log if k == "vid ") * 1000
    audio_ms = max(l for k, l, _ in log if k == "aud ") * 1000
    print(f"video: {video_total} frames of {args.frame_kib} KiB, median latency {video_ms:.1f} ms")
    print(f"audio: worst latency {audio_ms:.1f} ms; chat: worst latency {worst_chat * 1000:.1f} ms")
    # Chat sent while video was flowing arrived ahead of it, and no chat message
    # took as long as a typical video frame: it never queued behind video.
    if chat_before_video_end >= 1 and worst_chat * 1000 < video_ms:
        print("multiplexing OK: chat was not stuck behind video")
        return 0
    print("FAILED: chat waited for video")
    return 1


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--frames", type=int, default=200, help="video frames to send")
    parser.add_argument("--frame-kib", type=int, default=64, help="size of a video frame (KiB)")
    run(main, parser)
