"""File transfer: a generated file of N MiB sent in 1 MiB messages, hash verified.

The sender writes a header message (name and size), then the file in 1 MiB
messages, then closes the stream. The receiver hashes what it gets and answers
with the SHA-256 on a second stream, so the sender can confirm the file arrived
intact. ``send`` waits while the receiver's credit is used up, so memory stays
bounded however large the file is.

Run: python examples/file_transfer.py [--size-mib N] [--seed TEXT]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time

import stt
from _common import argument_parser, run

CHUNK = 1024 * 1024


def progress(done: int, total: int, width: int = 30) -> None:
    filled = width * done // total if total else width
    end = "\n" if done >= total else ("\r" if sys.stdout.isatty() else "\n")
    print(f"  [{'#' * filled}{'.' * (width - filled)}] {done / CHUNK:6.1f} / "
          f"{total / CHUNK:.1f} MiB", end=end, flush=True)


async def receive_file(session: stt.Session) -> None:
    stream = await session.accept_stream()
    name, size = (await stream.receive()).decode().rsplit(" ", 1)
    digest, received = hashlib.sha256(), 0
    async for chunk in stream:
        digest.update(chunk)
        received += len(chunk)
    reply = session.open_stream()
    await reply.send(f"{name} {received} {digest.hexdigest()}".encode())
    await reply.close()


async def main(args: argparse.Namespace) -> int:
    seed = args.seed
    total = int(args.size_mib * CHUNK)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "payload.bin")
        expected = hashlib.sha256()
        with open(path, "wb") as f:  # random content: nothing to compress or guess
            for offset in range(0, total, CHUNK):
                block = os.urandom(min(CHUNK, total - offset))
                expected.update(block)
                f.write(block)
        print(f"generated {path} ({args.size_mib} MiB), sha256 {expected.hexdigest()[:16]}...")

        async with stt.Node(shared_seed=seed) as server, stt.Node(shared_seed=seed) as client:
            server.on_session(receive_file)
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            started = time.perf_counter()
            await stream.send(f"payload.bin {total}".encode())
            sent = 0
            with open(path, "rb") as f:
                while block := f.read(CHUNK):
                    await stream.send(block)  # waits while the receiver is behind
                    sent += len(block)
                    progress(sent, total)
            await stream.close()
            if total == 0:
                progress(0, 0)
            reply = await session.accept_stream()
            name, size, digest = (await reply.receive()).decode().split()
            elapsed = time.perf_counter() - started
            stats = session.statistics()

    print(f"receiver got {name}: {size} bytes, sha256 {digest[:16]}...")
    print(f"sent {total / CHUNK:.1f} MiB in {elapsed:.2f} s = "
          f"{total / CHUNK / elapsed:.1f} MiB/s ({total * 8 / elapsed / 1e6:.0f} Mbit/s)")
    print(f"congestion control {stats['congestion_control']}, smoothed RTT "
          f"{stats['rtt_smoothed'] * 1000:.2f} ms, packets lost {stats['packets_lost']}, "
          f"bytes retransmitted {stats['bytes_retransmitted']}")
    if int(size) != total or digest != expected.hexdigest():
        print("FAILED: hash mismatch")
        return 1
    print("hash OK")
    return 0


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--size-mib", type=float, default=16, help="size of the file (MiB)")
    run(main, parser)
