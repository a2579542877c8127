"""Content distribution: publish once, retrieve from many providers, every chunk verified.

Seven DHT members on this machine. One publishes a file (hashed streaming and
served in place); four retrieve it one after another and, having it, provide it
too; one of them has a disk that flips a bit in every chunk it serves. Then a
late member retrieves the file to disk from every provider at once: it drops
the corrupt provider on its first bad chunk and completes from the others.

Run: python examples/content_distribution.py [--size-mib N] [--seed TEXT]
The network seed comes from --seed or STT_SEED; without either, a random seed is
generated for this run (every member lives in this process).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from _common import argument_parser, run
from seigr_toolset_transmissions.dht import ContentDistribution, KademliaDHT

import stt
from stt_proto.content.store import MemoryStore


class FlakyDisk(MemoryStore):
    """A store whose disk flips one bit of every chunk it reads."""

    def read_chunk(self, content_id: bytes, index: int) -> bytes | None:
        data = super().read_chunk(content_id, index)
        if not data:
            return data
        spoiled = bytearray(data)
        spoiled[0] ^= 1
        return bytes(spoiled)


def member(seed: bytes) -> KademliaDHT:
    return KademliaDHT(identity=stt.Identity.generate(), shared_seed=seed, host="127.0.0.1",
                       port=0)


async def main(args: argparse.Namespace) -> int:
    dhts = [member(args.seed) for _ in range(7)]
    for dht in dhts:
        await dht.start()
    first = dhts[0]
    for dht in dhts[1:]:
        await dht.bootstrap([(first.node.address, first.node_id)])
    print(f"{len(dhts)} DHT members up")
    stores = [None, None, None, FlakyDisk(), None, None, None]
    cds = [ContentDistribution(dht=dht, store=store) for dht, store in zip(dhts, stores)]

    work = tempfile.mkdtemp(prefix="stt-content-")
    source = os.path.join(work, "original.bin")
    with open(source, "wb") as f:
        f.write(os.urandom(args.size_mib * 1024 * 1024))
    content_id = await cds[0].publish_content(source)
    print(f"published {args.size_mib} MiB, content id {content_id.hex()[:16]}...")

    for cd in cds[1:5]:
        data = await cd.retrieve_content(content_id)
        print(f"  member retrieved {len(data)} bytes and now provides them"
              + (" (through a disk that flips bits)" if isinstance(cd.store, FlakyDisk) else ""))

    late = cds[6]
    used = []
    target = os.path.join(work, "copy.bin")
    started = time.perf_counter()
    length = await late.retrieve_to_file(
        content_id, target, progress=lambda done, total, providers: used.append(providers))
    elapsed = time.perf_counter() - started
    stats = late.statistics()
    with open(source, "rb") as a, open(target, "rb") as b:
        same = a.read() == b.read()
    print(f"late member: {length} bytes to disk in {elapsed * 1000:.0f} ms from up to "
          f"{max(used)} providers at once; bad chunks caught {stats['bad_chunks']}")
    print(f"copy identical to the original: {same}")

    for cd in cds:
        await cd.stop()
    for dht in dhts:
        await dht.stop()
    if not same:
        print("FAILED: the copy differs")
        return 1
    print("content distribution OK")
    return 0


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--size-mib", type=int, default=8, help="size of the file published")
    run(main, parser)
