"""Content distribution over real UDP between processes on 127.0.0.1, asyncio and trio.

Every member runs in a program of its own (``tests/helpers/content_members.py``):
two providers, one on each adapter, publish one large file in place, and a
retriever process fetches it from both at once. Issue 16 asks two things of a
real network that the simulator cannot show:

* **Bounded memory.** A file far larger than the memory bound is retrieved to
  disk with the retriever's peak resident memory (``VmHWM``, read by the
  retriever itself at the end) under 100 MB. The copy is checked by computing
  its content id from the file on disk, independently of the library's store,
  and comparing it with the published id. The file is the 1 GiB the issue
  names: on a 2-core machine the whole test takes 15-27 s, the retrieval itself
  7-14 s (80-160 MB/s, depending on what else runs; the figures are printed),
  so it runs in the default suite rather than behind ``--run-slow``.
* **Resume.** A retriever with a directory store is killed with SIGKILL once
  its progress callback says 40 % is done, then started again on the same store
  and path: it completes, the copy's content id is right, and it re-fetches at
  most one chunk per provider. "Re-fetched" is measured on disk: a chunk of the
  copy that already held the right bytes at the kill, but that the store did
  not keep on resume, was fetched twice. The store's resume counters
  (``store_resume_chunks_kept`` / ``_discarded``) must account for every record
  of the partial's log, and the second run must receive exactly the chunks that
  were not kept: no chunk is accepted twice.

Every wait is bounded, and the processes are killed whatever happens.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from stt_proto.content.tree import CHUNK_SIZE, chunk_count, leaf_hash
from tests.helpers.content_members import (
    ContentProcess,
    Member,
    content_id_of_file,
    start_content_members,
    tree_of_file,
    write_random_file,
)

SEED = "content processes test network seed"
MiB = 1 << 20
#: the file retrieved in bounded memory
LARGE_SIZE = 1024 * MiB
#: the file of the resume test (its figures do not grow with the size)
RESUME_SIZE = 256 * MiB
#: the retriever's peak resident memory may not reach this
MEMORY_BOUND = 100 * 1000 * 1000
#: when the retriever of the resume test is killed
KILL_AT = 0.4
COMMAND_TIMEOUT = 20.0
STEP = COMMAND_TIMEOUT + 10.0
#: the longest one retrieval may take (1 GiB takes 7-14 s here)
RETRIEVAL_TIMEOUT = 300.0


class Providers:
    """Two provider programs (asyncio, trio) that published ``file`` in place."""

    def __init__(self, processes: list[ContentProcess], file: Path, content_id: bytes) -> None:
        self.processes = processes
        self.file = file
        self.content_id = content_id

    @property
    def bootstrap(self) -> str:
        return self.processes[0].bootstrap


def _providers(tmp_path: Path, size: int, processes: list[ContentProcess]) -> Providers:
    source = tmp_path / "source.bin"
    write_random_file(source, size)
    providers = start_content_members(
        [Member("provider-0", backend="asyncio"), Member("provider-1", backend="trio")],
        processes, seed=SEED, step=STEP, logs=tmp_path)
    # Both hash the file (a second or so per GiB) at once.
    for provider in providers:
        provider.send({"op": "publish_file", "path": str(source)})
    ids = {provider.receive(STEP + size / (200 * MiB))["content_id"] for provider in providers}
    assert len(ids) == 1
    return Providers(providers, source, bytes.fromhex(ids.pop()))


def test_1_gib_retrieved_to_disk_from_two_providers_in_bounded_memory(tmp_path):
    processes: list[ContentProcess] = []
    try:
        began = time.monotonic()
        providers = _providers(tmp_path, LARGE_SIZE, processes)
        published = time.monotonic()
        (retriever,) = start_content_members(
            [Member("retriever", backend="asyncio", timeout=RETRIEVAL_TIMEOUT)], processes,
            seed=SEED, step=STEP, logs=tmp_path, bootstrap=providers.bootstrap)
        copy = tmp_path / "copy.bin"
        answer = retriever.request({"op": "retrieve_to_file",
                                    "content_id": providers.content_id.hex(),
                                    "path": str(copy), "provide": False},
                                   RETRIEVAL_TIMEOUT + 10)
        assert answer["length"] == LARGE_SIZE == copy.stat().st_size
        assert answer["providers"] == 2, answer
        statistics = answer["statistics"]
        assert statistics["chunks_received"] == chunk_count(LARGE_SIZE), statistics
        assert statistics["bad_chunks"] == 0
        hashed = time.monotonic()
        assert content_id_of_file(copy) == providers.content_id
        hashed = time.monotonic() - hashed
        # Both providers did their share.
        served = [p.request({"op": "statistics"}, STEP)["statistics"]["bytes_served"]
                  for p in providers.processes]
        assert all(served) and sum(served) >= LARGE_SIZE, served
        seconds, peak = answer["seconds"], answer["memory"]["vm_hwm"] * 1024
        print(f"{LARGE_SIZE // MiB} MiB from 2 providers in {seconds:.1f} s "
              f"({LARGE_SIZE / seconds / 1e6:.0f} MB/s; they served "
              f"{' and '.join(f'{s / 1e6:.0f}' for s in served)} MB), retriever VmHWM "
              f"{peak / 1e6:.1f} MB; file written and published in {published - began:.1f} s, "
              f"copy hashed in {hashed:.1f} s, {statistics['chunks_late']} endgame copies "
              f"came late")
        assert peak < MEMORY_BOUND
    finally:
        for process in processes:
            process.kill()


def _verified_on_disk(path: Path, leaves: tuple[bytes, ...]) -> set[int]:
    """The chunks of the file at ``path`` that hold the right bytes already."""
    right = set()
    with open(path, "rb") as f:
        for index, leaf in enumerate(leaves):
            if leaf_hash(f.read(CHUNK_SIZE)) == leaf:
                right.add(index)
    return right


def _log_records(store: Path, content_id: bytes) -> set[int]:
    """The chunk indexes the partial's log of a ``DirectoryStore`` records
    (36-byte records: u32 index, 32-byte leaf; a torn last one is left out)."""
    raw = (store / "objects" / f"{content_id.hex()}.partial").read_bytes()
    return {int.from_bytes(raw[pos:pos + 4], "big") for pos in range(0, len(raw) - 35, 36)}


def test_a_retrieval_killed_at_40_percent_resumes_refetching_at_most_a_chunk_per_provider(
        tmp_path):
    processes: list[ContentProcess] = []
    try:
        providers = _providers(tmp_path, RESUME_SIZE, processes)
        leaves = tree_of_file(providers.file).leaves
        count = len(leaves)
        store, copy = tmp_path / "retriever-store", tmp_path / "copy.bin"
        # Progress every 20 ms, not 250: the kill lands close to 40 % whatever the speed.
        retriever = Member("retriever", backend="trio", store=store, timeout=RETRIEVAL_TIMEOUT,
                           config={"progress_interval": 0.02})
        command = {"op": "retrieve_to_file", "content_id": providers.content_id.hex(),
                   "path": str(copy), "report_at": KILL_AT}

        (first,) = start_content_members([retriever], processes, seed=SEED, step=STEP,
                                         logs=tmp_path, bootstrap=providers.bootstrap)
        first.send(command)
        began = time.monotonic()
        report = first.wait_progress(RETRIEVAL_TIMEOUT)
        first.kill()
        killed = time.monotonic()
        assert first.process.returncode == -signal.SIGKILL
        assert report["total"] == RESUME_SIZE and report["progress"] >= KILL_AT * RESUME_SIZE
        records = _log_records(store, providers.content_id)
        on_disk = _verified_on_disk(copy, leaves)
        # It was killed mid-way: part of the file is there, not all of it.
        assert KILL_AT * count <= len(records) < count, len(records)

        (second,) = start_content_members([retriever], processes, seed=SEED, step=STEP,
                                          logs=tmp_path, bootstrap=providers.bootstrap)
        restarted = time.monotonic()
        answer = second.request({**command, "report_at": None}, RETRIEVAL_TIMEOUT + 10)
        assert answer["length"] == RESUME_SIZE
        assert content_id_of_file(copy) == providers.content_id
        statistics = answer["statistics"]
        kept = statistics["store_resume_chunks_kept"]
        discarded = statistics["store_resume_chunks_discarded"]
        # Every record of the log was hashed again: kept, or discarded (a torn write).
        assert kept + discarded == len(records), (kept, discarded, len(records))
        assert discarded <= len(providers.processes), discarded
        # Only what the store did not keep was received, each chunk once.
        assert statistics["chunks_received"] == count - kept, (statistics, kept)
        assert statistics["bad_chunks"] == 0
        # Fetched twice: chunks that held the right bytes at the kill but were not kept.
        refetched = len(on_disk) - kept
        assert 0 <= refetched <= len(providers.processes), (len(on_disk), kept)
        print(f"killed at {report['progress'] / RESUME_SIZE:.0%} reported "
              f"({killed - began:.1f} s in), with {len(records)} of {count} chunks recorded "
              f"and {len(on_disk)} right on disk; resumed: {kept} kept, {discarded} "
              f"discarded, {statistics['chunks_received']} received, {refetched} fetched "
              f"twice, {statistics['chunks_late']} endgame copies late; the rest took "
              f"{answer['seconds']:.1f} s ({time.monotonic() - restarted:.1f} s with the start)")
    finally:
        for process in processes:
            process.kill()
