"""Content distribution across hosts: 8 network namespaces on a bridge, one member process each.

Each host of a ``NetnsBed`` runs one member with content distribution
(``tests/helpers/content_members.py``) bound to the host's own address, asyncio
and trio alternating, all joined through host 0. Issue 16's pattern, across
hosts: host 0 runs the original manual's lines as written (publish, retrieve
its own content, compare); six hosts then retrieve that content at once, each
checking what it got against the bytes the test knows, and provide it from then
on; last, one more host retrieves it to a file from every provider at once. Its
copy is checked by its content id, computed from the file on disk, and the
providers' own counters must show that most of them served it chunks: the
fetch really fanned in across the bridge, rather than coming from one host.

Root only (network namespaces); skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import time

import pytest

from stt_proto.content.tree import CHUNK_SIZE, HashTree, chunk_count
from tests.helpers.content_members import (
    ContentProcess,
    Member,
    content_id_of_file,
    pattern_bytes,
    start_content_members,
)
from tests.helpers.netns import NetnsBed, netns_available

_available, _reason = netns_available()
pytestmark = pytest.mark.skipif(not _available, reason=_reason)

SEED = "content hosts test network seed"
HOSTS = 8
BACKENDS = ("asyncio", "trio")
PUBLISHER = 0
RETRIEVERS = tuple(range(1, HOSTS - 1))
LATE = HOSTS - 1
#: the content: 32 chunks, so the late host has work for every provider
SIZE = 32 * CHUNK_SIZE - 1000
PATTERN_SEED = 16
#: of the seven providers, at least this many must serve the late host chunks
MIN_SERVING = 4
COMMAND_TIMEOUT = 30.0
STEP = COMMAND_TIMEOUT + 10.0


def _served(processes: list[ContentProcess], hosts: tuple[int, ...]) -> dict[int, int]:
    for index in hosts:
        processes[index].send({"op": "statistics"})
    return {index: processes[index].receive(STEP)["statistics"]["bytes_served"]
            for index in hosts}


def test_a_content_published_on_one_host_spreads_and_is_fetched_from_many(tmp_path):
    began = time.monotonic()
    processes: list[ContentProcess] = []
    data = pattern_bytes(SIZE, PATTERN_SEED)
    expected_id = HashTree.of_bytes(data).content_id
    with NetnsBed(hosts=HOSTS) as bed:
        built = time.monotonic()
        try:
            start_content_members(
                [Member(f"host-{host.index}", backend=BACKENDS[host.index % len(BACKENDS)],
                        host=host.address, popen=host.popen, timeout=COMMAND_TIMEOUT)
                 for host in bed.hosts],
                processes, seed=SEED, step=STEP, logs=tmp_path)
            # Each member is bound to its own host's address.
            assert [p.members[0][1][0] for p in processes] == bed.addresses
            joined = time.monotonic()

            content_id = bytes.fromhex(processes[PUBLISHER].request(
                {"op": "publish_bytes", "size": SIZE, "seed": PATTERN_SEED}, STEP)["content_id"])
            assert content_id == expected_id
            published = time.monotonic()

            for index in RETRIEVERS:
                processes[index].send({"op": "retrieve", "content_id": content_id.hex()})
            digest = hashlib.blake2b(data, digest_size=32).hexdigest()
            for index in RETRIEVERS:
                answer = processes[index].receive(STEP)
                assert answer["length"] == SIZE and answer["blake2b"] == digest, index
            spread = time.monotonic()

            providers = (PUBLISHER, *RETRIEVERS)
            before = _served(processes, providers)
            copy = tmp_path / "late.bin"
            answer = processes[LATE].request(
                {"op": "retrieve_to_file", "content_id": content_id.hex(), "path": str(copy)},
                STEP)
            assert answer["length"] == SIZE
            assert content_id_of_file(copy) == content_id
            statistics = answer["statistics"]
            assert statistics["chunks_received"] == chunk_count(SIZE)
            assert statistics["bad_chunks"] == 0
            after = _served(processes, providers)
            serving = [i for i in providers if after[i] > before[i]]
            assert len(serving) >= MIN_SERVING, (before, after)
            assert sum(after[i] - before[i] for i in providers) >= SIZE
            ended = time.monotonic()
            print(f"bed built {built - began:.1f} s, joined {joined - built:.1f} s, manual's "
                  f"pattern {published - joined:.1f} s, {len(RETRIEVERS)} hosts retrieved "
                  f"{SIZE / 1e6:.1f} MB at once in {spread - published:.1f} s, the late host "
                  f"in {answer['seconds']:.2f} s with up to {answer['providers']} providers "
                  f"at once, {len(serving)} of {len(providers)} serving it; total "
                  f"{ended - began:.1f} s")
        finally:
            for process in processes:
                process.kill()
