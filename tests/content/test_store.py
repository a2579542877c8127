"""The content stores: complete entries (owned and in place), partial entries and their
resume, bounds, and a directory store that survives restarts and hostile files.

Every test taking ``stores`` runs against both :class:`MemoryStore` and
:class:`DirectoryStore`; for the memory store "reopening" is keeping the same object.
Contents are a few chunks long (random bytes from a seeded generator).
"""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys

import pytest

from stt_proto.content import store as store_mod
from stt_proto.content.store import DirectoryStore, MemoryStore, Partial
from stt_proto.content.tree import CHUNK_SIZE, HashTree, chunk_count, chunk_span, leaf_hash
from stt_proto.errors import (
    ContentError, LocalProtocolError, ProofError, StoreFullError, StoreInUseError,
)


def content(n_bytes: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n_bytes)


def restart(store: DirectoryStore, root, **kwargs) -> DirectoryStore:
    """The store's process ends (its lock goes) and a new one opens ``root``."""
    store.close()
    return DirectoryStore(root, **kwargs)


class Stores:
    """Makes a store of one kind, and reopens it as a restart would."""

    def __init__(self, kind: str, tmp_path) -> None:
        self.kind = kind
        self.root = tmp_path / "store"

    def make(self, **kwargs):
        if self.kind == "memory":
            return MemoryStore(**kwargs)
        return DirectoryStore(self.root, **kwargs)

    def reopen(self, store, **kwargs):
        if self.kind == "memory":
            return store
        return restart(store, self.root, **kwargs)

    def objects(self) -> list[str]:
        return sorted(os.listdir(self.root / "objects")) if self.kind == "directory" else []


@pytest.fixture(params=["memory", "directory"])
def stores(request, tmp_path) -> Stores:
    return Stores(request.param, tmp_path)


def fill(partial: Partial, data: bytes, indexes) -> None:
    for index in indexes:
        offset, size = chunk_span(len(data), index)
        chunk = data[offset : offset + size]
        partial.write(index, memoryview(chunk), leaf_hash(chunk))


# -- complete entries ---------------------------------------------------------


def test_add_bytes_read_remove(stores):
    store = stores.make()
    data = content(2 * CHUNK_SIZE + 1000)
    tree = store.add_bytes(data)
    cid = tree.content_id
    assert tree.content_id == HashTree.of_bytes(data).content_id
    assert store.has(cid) and store.entries() == [cid]
    assert store.length(cid) == len(data)
    assert store.used_bytes == len(data)
    assert store.tree(cid).leaves == tree.leaves
    for index in range(3):
        offset, size = chunk_span(len(data), index)
        assert store.read_chunk(cid, index) == data[offset : offset + size]
    assert store.read(cid) == data
    # A range across a chunk boundary, and empty ranges at both ends.
    assert store.read(cid, CHUNK_SIZE - 10, 30) == data[CHUNK_SIZE - 10 : CHUNK_SIZE + 20]
    assert store.read(cid, 0, 0) == b"" and store.read(cid, len(data)) == b""
    with pytest.raises(ValueError):
        store.read(cid, len(data) - 5, 6)
    # Adding it again is a no-op.
    assert store.add_bytes(bytearray(data)).content_id == cid
    assert store.used_bytes == len(data) and len(store.entries()) == 1

    assert store.remove(cid) is True
    assert not store.has(cid) and store.used_bytes == 0 and store.entries() == []
    assert store.read_chunk(cid, 0) is None and store.tree(cid) is None
    with pytest.raises(KeyError):
        store.read(cid)
    assert store.remove(cid) is False
    assert stores.objects() == []  # owned data, leaves and meta deleted


def test_empty_content_is_one_empty_chunk(stores):
    store = stores.make()
    cid = store.add_bytes(b"").content_id
    assert store.length(cid) == 0
    assert store.read_chunk(cid, 0) == b"" and store.read(cid) == b""
    assert store.read_chunk(cid, 1) is None


def test_lookups_with_hostile_ids_and_indexes_never_raise(stores):
    store = stores.make()
    cid = store.add_bytes(content(CHUNK_SIZE + 1)).content_id
    for bad in (b"", b"\x00" * 31, b"\x00" * 33, "text", None, 7):
        assert store.has(bad) is False
        assert store.tree(bad) is None and store.length(bad) is None
        assert store.read_chunk(bad, 0) is None
        assert store.remove(bad) is False
    for index in (-1, 2, 2**40, 1.0, None):
        assert store.read_chunk(cid, index) is None
    assert store.read_chunk(bytearray(cid), 1) is not None
    with pytest.raises(ValueError):
        store.begin(b"short", 10)


def test_add_file_is_referenced_in_place_and_hashed_streaming(stores, tmp_path, monkeypatch):
    data = content(3 * CHUNK_SIZE + 500)
    path = tmp_path / "published.bin"
    path.write_bytes(data)
    fed: list[int] = []

    class RecordingBuilder(store_mod.TreeBuilder):
        def update(self, piece):
            fed.append(len(piece))
            super().update(piece)

    monkeypatch.setattr(store_mod, "TreeBuilder", RecordingBuilder)
    store = stores.make()
    tree = store.add_file(path)
    # Streamed: never more than one chunk at a time, never the whole file.
    assert sum(fed) == len(data) and len(fed) >= 4 and max(fed) <= CHUNK_SIZE
    assert tree.content_id == HashTree.of_bytes(data).content_id
    # Only the leaves count against the bound, and nothing was copied.
    assert store.used_bytes == 32 * 4
    assert not any(name.endswith(".data") for name in stores.objects())
    assert store.read(tree.content_id) == data
    assert store.add_file(str(path)).content_id == tree.content_id
    assert store.used_bytes == 32 * 4
    # Removing forgets the entry and never deletes the file.
    assert store.remove(tree.content_id)
    assert path.read_bytes() == data and store.used_bytes == 0


def test_add_file_refuses_what_is_not_a_regular_file(stores, tmp_path):
    store = stores.make()
    with pytest.raises(ValueError):
        store.add_file(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ValueError):
            store.add_file("/dev/zero")  # would never end
    with pytest.raises(OSError):
        store.add_file(tmp_path / "missing")


@pytest.mark.parametrize("change", ["rewritten", "same_size_and_mtime", "vanished", "truncated"])
def test_file_changed_after_add_is_dropped(stores, tmp_path, change):
    data = content(3 * CHUNK_SIZE)
    path = tmp_path / "published.bin"
    path.write_bytes(data)
    store = stores.make()
    cid = store.add_file(path).content_id
    before = os.stat(path)
    if change == "rewritten":
        path.write_bytes(content(3 * CHUNK_SIZE, seed=2))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    elif change == "same_size_and_mtime":
        # Size and mtime put back: only hashing the chunk again can notice.
        with open(path, "r+b") as f:
            f.seek(CHUNK_SIZE + 7)
            f.write(b"\xff")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    elif change == "vanished":
        path.unlink()
    else:
        os.truncate(path, CHUNK_SIZE)
    assert store.read_chunk(cid, 1) is None
    assert store.stats["store_entries_dropped"] == 1
    assert not store.has(cid) and store.used_bytes == 0
    with pytest.raises(KeyError):
        store.read(cid)
    if change != "vanished":
        assert path.exists()  # dropped from the store, never deleted


def test_add_bytes_replaces_an_in_place_entry_whose_file_changed(stores, tmp_path):
    data = content(CHUNK_SIZE + 3)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    store = stores.make()
    cid = store.add_file(path).content_id
    path.unlink()
    assert store.add_bytes(data).content_id == cid
    assert store.stats["store_entries_dropped"] == 1
    assert store.used_bytes == len(data) and store.read(cid) == data


def test_trees_are_rebuilt_from_leaves_through_a_bounded_cache(stores):
    store = stores.make(max_cached_trees=2)
    ids = [store.add_bytes(content(CHUNK_SIZE * 2 + i, seed=i)).content_id for i in range(3)]
    assert store.stats["store_trees_built"] == 0  # trees made by add are cached
    store = stores.reopen(store, max_cached_trees=2)
    built = store.stats["store_trees_built"]
    for cid in ids + ids:
        assert store.tree(cid).content_id == cid
    # Three trees through a cache of two, in a cycle: every access misses.
    assert store.stats["store_trees_built"] - built == 6
    assert len(store._trees) <= 2


# -- partial entries ----------------------------------------------------------


def test_begin_write_complete_owned(stores):
    data = content(3 * CHUNK_SIZE + 10)
    cid = HashTree.of_bytes(data).content_id
    store = stores.make()
    partial = store.begin(cid, len(data))
    assert partial.count == 4 and partial.path is None
    assert store.used_bytes == len(data)  # charged in full at begin
    assert store.partials() == [cid] and not store.has(cid)
    fill(partial, data, [3, 1])
    assert partial.have(1) and partial.have(3) and not partial.have(0)
    assert partial.missing() == [0, 2]
    assert partial.done_bytes == CHUNK_SIZE + 10
    assert partial.read_chunk(1) == data[CHUNK_SIZE : 2 * CHUNK_SIZE]
    assert partial.read_chunk(0) is None
    fill(partial, data, [1])  # an endgame duplicate is ignored
    assert store.stats["store_chunks_written"] == 2
    with pytest.raises(LocalProtocolError):
        partial.complete()
    with pytest.raises(ValueError):
        partial.write(0, b"short", leaf_hash(b"short"))
    with pytest.raises(ValueError):
        partial.write(4, b"", leaf_hash(b""))
    with pytest.raises(ValueError):
        partial.write(0, data[:CHUNK_SIZE], b"\x00" * 31)
    fill(partial, data, [0, 2])
    tree = partial.complete()
    assert tree.content_id == cid and partial.complete() is tree
    assert partial.missing() == [] and partial.is_complete
    assert store.has(cid) and store.partials() == [] and store.read(cid) == data
    assert store.used_bytes == len(data)
    with pytest.raises(LocalProtocolError):
        fill(partial, data, [0])
    if stores.kind == "directory":
        assert stores.objects() == sorted(f"{cid.hex()}.{s}" for s in ("data", "json", "leaves"))


def test_begin_write_complete_in_place(stores, tmp_path):
    data = content(2 * CHUNK_SIZE + 77)
    cid = HashTree.of_bytes(data).content_id
    target = tmp_path / "out" / "retrieved.bin"
    target.parent.mkdir()
    store = stores.make()
    partial = store.begin(cid, len(data), path=target)
    assert partial.path == str(target)
    assert target.stat().st_size == len(data)  # created at full length
    assert store.used_bytes == 32 * 3
    fill(partial, data, range(3))
    partial.complete()
    assert target.read_bytes() == data
    assert store.read(cid) == data and store.used_bytes == 32 * 3
    # The completed file is an in-place entry: changing it drops the entry.
    target.write_bytes(b"x")
    assert store.read_chunk(cid, 0) is None and not store.has(cid)


def test_begin_of_complete_content_is_complete_at_once(stores):
    data = content(CHUNK_SIZE + 5)
    store = stores.make()
    cid = store.add_bytes(data).content_id
    partial = store.begin(cid, len(data))
    assert partial.is_complete and partial.missing() == [] and partial.have(1)
    assert partial.done_bytes == len(data)
    assert partial.complete().content_id == cid
    assert partial.read_chunk(1) == data[CHUNK_SIZE:]
    partial.abandon()  # must not touch the complete content
    assert store.read(cid) == data and store.partials() == []
    with pytest.raises(ValueError):
        store.begin(cid, len(data) + 1)


def test_complete_refuses_leaves_that_do_not_give_the_id(stores):
    data = content(2 * CHUNK_SIZE)
    cid = HashTree.of_bytes(data).content_id
    store = stores.make()
    partial = store.begin(cid, len(data))
    fill(partial, content(2 * CHUNK_SIZE, seed=9), range(2))
    with pytest.raises(ProofError):
        partial.complete()
    assert not store.has(cid)
    partial.abandon()
    assert store.used_bytes == 0 and store.partials() == []


def test_abandon_deletes_owned_data_and_leaves_a_file_in_place(stores, tmp_path):
    data = content(2 * CHUNK_SIZE)
    cid = HashTree.of_bytes(data).content_id
    store = stores.make()
    owned = store.begin(cid, len(data))
    fill(owned, data, [0])
    owned.abandon()
    assert store.used_bytes == 0 and store.partials() == [] and stores.objects() == []
    with pytest.raises(LocalProtocolError):
        fill(owned, data, [1])
    target = tmp_path / "keep.bin"
    in_place = store.begin(cid, len(data), path=target)
    fill(in_place, data, [0])
    in_place.abandon()
    assert target.read_bytes()[:CHUNK_SIZE] == data[:CHUNK_SIZE]
    assert stores.objects() == [] and store.used_bytes == 0


def test_add_bytes_supersedes_a_partial_of_the_same_content(stores):
    data = content(2 * CHUNK_SIZE)
    store = stores.make(max_bytes=len(data))
    cid = HashTree.of_bytes(data).content_id
    partial = store.begin(cid, len(data))
    fill(partial, data, [0])
    # The partial's room counts as free: the whole content fits the bound.
    assert store.add_bytes(data).content_id == cid
    assert store.partials() == [] and store.used_bytes == len(data)
    with pytest.raises(LocalProtocolError):
        partial.complete()
    assert store.read(cid) == data


@pytest.mark.parametrize("in_place", [False, True])
def test_resume_keeps_recorded_chunks(stores, tmp_path, in_place):
    data = content(4 * CHUNK_SIZE + 1)
    cid = HashTree.of_bytes(data).content_id
    target = tmp_path / "r.bin" if in_place else None
    store = stores.make()
    fill(store.begin(cid, len(data), path=target), data, [0, 2, 4])
    store = stores.reopen(store)
    assert store.partials() == [cid]
    assert store.used_bytes == (32 * 5 if in_place else len(data))
    partial = store.begin(cid, len(data), path=target)
    assert [partial.have(i) for i in range(5)] == [True, False, True, False, True]
    assert partial.done_bytes == 2 * CHUNK_SIZE + 1
    assert store.stats["store_resume_chunks_kept"] == 3
    fill(partial, data, partial.missing())
    partial.complete()
    store = stores.reopen(store)
    assert store.partials() == [] and store.read(cid) == data


@pytest.mark.parametrize("in_place", [False, True])
def test_resume_discards_a_chunk_corrupted_after_it_was_recorded(stores, tmp_path, in_place):
    data = content(3 * CHUNK_SIZE)
    cid = HashTree.of_bytes(data).content_id
    target = tmp_path / "r.bin" if in_place else None
    store = stores.make()
    fill(store.begin(cid, len(data), path=target), data, [0, 1, 2])
    if in_place:
        data_file = target
    elif stores.kind == "directory":
        data_file = stores.root / "objects" / f"{cid.hex()}.data"
    else:
        # The memory store's own buffer: a stand-in for a torn write.
        store._partial_data[cid][CHUNK_SIZE + 100] ^= 0x01
        data_file = None
    if data_file is not None:
        with open(data_file, "r+b") as f:
            f.seek(CHUNK_SIZE + 100)
            byte = f.read(1)
            f.seek(CHUNK_SIZE + 100)
            f.write(bytes([byte[0] ^ 0x01]))
    store = stores.reopen(store)
    partial = store.begin(cid, len(data), path=target)
    assert partial.missing() == [1]
    assert store.stats["store_resume_chunks_discarded"] == 1
    fill(partial, data, [1])
    assert partial.complete().content_id == cid and store.read(cid) == data


def test_partial_in_place_forgets_a_chunk_changed_under_it(stores, tmp_path):
    data = content(2 * CHUNK_SIZE)
    cid = HashTree.of_bytes(data).content_id
    target = tmp_path / "r.bin"
    store = stores.make()
    partial = store.begin(cid, len(data), path=target)
    fill(partial, data, [0, 1])
    with open(target, "r+b") as f:
        f.write(b"\x00\x00")
    assert partial.read_chunk(0) is None and partial.missing() == [0]
    assert partial.read_chunk(1) == data[CHUNK_SIZE:]


def test_begin_at_another_path_starts_afresh(stores, tmp_path):
    data = content(2 * CHUNK_SIZE)
    cid = HashTree.of_bytes(data).content_id
    store = stores.make()
    fill(store.begin(cid, len(data), path=tmp_path / "a.bin"), data, [0])
    store = stores.reopen(store)
    with pytest.raises(ValueError):
        store.begin(cid, len(data) - 1, path=tmp_path / "a.bin")
    partial = store.begin(cid, len(data), path=tmp_path / "b.bin")
    assert partial.missing() == [0, 1] and store.partials() == [cid]
    assert store.used_bytes == 64
    assert (tmp_path / "a.bin").exists()


def test_partial_at_another_path_of_held_content_keeps_the_held_entry(stores, tmp_path):
    data = content(CHUNK_SIZE + 1)
    store = stores.make()
    cid = store.add_bytes(data).content_id
    target = tmp_path / "copy.bin"
    partial = store.begin(cid, len(data), path=target)
    assert not partial.is_complete  # the caller fills it, from the store itself say
    for index in partial.missing():
        chunk = store.read_chunk(cid, index)
        partial.write(index, chunk, leaf_hash(chunk))
    assert partial.complete().content_id == cid
    assert target.read_bytes() == data
    assert store.entries() == [cid] and store.partials() == []
    assert store.used_bytes == len(data)


# -- bounds -------------------------------------------------------------------


def test_store_full(stores, tmp_path):
    store = stores.make(max_bytes=2 * CHUNK_SIZE, max_entries=3)
    big = content(2 * CHUNK_SIZE + 1)
    with pytest.raises(StoreFullError, match="max_bytes"):
        store.add_bytes(big)
    assert store.stats["store_refused_full"] == 1
    with pytest.raises(StoreFullError):
        store.begin(HashTree.of_bytes(big).content_id, len(big))
    assert store.stats["store_refused_full"] == 2
    assert store.used_bytes == 0 and store.entries() == [] and store.partials() == []
    # A file in place is charged its leaves only: 3 chunks need 96 bytes.
    path = tmp_path / "f.bin"
    path.write_bytes(big)
    store.add_file(path)
    store.add_bytes(b"one")
    store.begin(HashTree.of_bytes(b"two").content_id, 3)
    with pytest.raises(StoreFullError, match="max_entries"):
        store.add_bytes(b"three")
    assert store.stats["store_refused_full"] == 3
    assert len(store.entries()) == 2 and len(store.partials()) == 1
    assert store.used_bytes == 96 + 3 + 3


def test_bounds_are_validated(stores):
    with pytest.raises(ValueError):
        stores.make(max_entries=0)
    with pytest.raises(ValueError):
        stores.make(max_bytes=-1)


# -- the directory store: restarts and hostile files ---------------------------


def test_directory_survives_a_restart(tmp_path):
    root = tmp_path / "s"
    store = DirectoryStore(root)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    data = content(2 * CHUNK_SIZE + 3)
    path = tmp_path / "f.bin"
    path.write_bytes(content(CHUNK_SIZE, seed=5))
    owned = store.add_bytes(data).content_id
    in_place = store.add_file(path).content_id
    store = restart(store, root)
    assert sorted(store.entries()) == sorted([owned, in_place])
    assert store.used_bytes == len(data) + 32
    assert store.read(owned) == data and store.read(in_place) == path.read_bytes()
    assert store.stats["store_files_ignored"] == 0


def interrupted(tmp_path, n_bytes: int):
    """A directory store left with an owned partial holding chunk 0, as by a kill;
    returns its root, the content, its id and the partial's log file."""
    root = tmp_path / "s"
    data = content(n_bytes)
    cid = HashTree.of_bytes(data).content_id
    with DirectoryStore(root) as store:
        fill(store.begin(cid, len(data)), data, [0])
    return root, data, cid, root / "objects" / f"{cid.hex()}.partial"


def test_directory_torn_log_record_is_ignored(tmp_path):
    root, data, cid, log = interrupted(tmp_path, 3 * CHUNK_SIZE)
    assert log.stat().st_size == 36
    with open(log, "ab") as f:
        f.write(b"\x00\x00\x00\x01" + b"\xaa" * 10)  # a kill in the middle of a record
    store = DirectoryStore(root)
    partial = store.begin(cid, len(data))
    assert partial.missing() == [1, 2]
    # Records appended after the resume stay aligned: the torn tail is gone.
    fill(partial, data, [2])
    assert log.stat().st_size == 72
    partial = restart(store, root).begin(cid, len(data))
    assert partial.missing() == [1]


def test_directory_log_record_of_an_unwritten_chunk_is_not_trusted(tmp_path):
    # The log says chunk 1 is there, the data file never got it (or a hostile
    # record names a chunk): the re-hash on resume catches it.
    root, data, cid, log = interrupted(tmp_path, 2 * CHUNK_SIZE)
    with open(log, "ab") as f:
        f.write((1).to_bytes(4, "big") + leaf_hash(data[CHUNK_SIZE:]))
        f.write((99).to_bytes(4, "big") + b"\x00" * 32)  # outside the content
    partial = DirectoryStore(root).begin(cid, len(data))
    assert partial.missing() == [1]


def test_directory_skips_corrupt_and_unknown_files(tmp_path):
    root = tmp_path / "s"
    store = DirectoryStore(root)
    good = content(CHUNK_SIZE + 9, seed=1)
    good_id = store.add_bytes(good).content_id
    bad_ids = [store.add_bytes(content(100, seed=s)).content_id for s in range(2, 9)]
    objects = root / "objects"
    meta = lambda cid: objects / f"{cid.hex()}.json"  # noqa: E731
    meta(bad_ids[0]).write_bytes(b"\xff\xfe not json")
    meta(bad_ids[1]).write_text("[" * 100_000 + "]" * 100_000)  # nesting too deep to parse
    meta(bad_ids[2]).write_text(json.dumps({"v": 1, "length": -1, "path": None,
                                            "size": None, "mtime_ns": None}))
    meta(bad_ids[3]).write_text(json.dumps({"v": 1, "length": 100, "path": "rel/path",
                                            "size": 100, "mtime_ns": 1}))
    (objects / f"{bad_ids[4].hex()}.leaves").write_bytes(b"\x00" * 31)  # wrong size
    (objects / f"{bad_ids[5].hex()}.data").unlink()
    meta(bad_ids[6]).write_bytes(b" " * (store_mod._MAX_META_SIZE + 10))
    (objects / "notes.txt").write_text("hello")
    (objects / ("ab" * 32 + ".pjson")).write_text('{"v": true, "length": 1, "path": null}')
    (objects / ("cd" * 32 + ".json.tmp")).write_text("left by a kill")
    (objects / "subdir").mkdir()
    store = restart(store, root)
    assert store.entries() == [good_id] and store.partials() == []
    assert store.read(good_id) == good
    assert store.used_bytes == len(good)
    assert store.stats["store_files_ignored"] >= 10
    assert not (objects / ("cd" * 32 + ".json.tmp")).exists()


def test_directory_leaves_that_do_not_give_the_id_drop_the_entry(tmp_path):
    root = tmp_path / "s"
    data = content(2 * CHUNK_SIZE)
    with DirectoryStore(root) as store:
        cid = store.add_bytes(data).content_id
    (root / "objects" / f"{cid.hex()}.leaves").write_bytes(b"\x11" * 64)
    store = DirectoryStore(root)
    assert store.has(cid)  # opening reads meta only
    assert store.tree(cid) is None and store.read_chunk(cid, 0) is None
    assert not store.has(cid) and store.stats["store_entries_dropped"] == 1
    assert store.used_bytes == 0


def test_directory_open_is_bounded_by_max_entries(tmp_path):
    root = tmp_path / "s"
    store = DirectoryStore(root)
    for seed in range(5):
        store.add_bytes(content(10, seed=seed))
    store = restart(store, root, max_entries=3)
    assert len(store.entries()) == 3
    assert store.stats["store_files_ignored"] > 0


def test_directory_commit_interrupted_before_the_log_was_removed(tmp_path):
    root = tmp_path / "s"
    data = content(CHUNK_SIZE + 1)
    cid = HashTree.of_bytes(data).content_id
    store = DirectoryStore(root)
    partial = store.begin(cid, len(data))
    fill(partial, data, range(2))
    objects = root / "objects"
    saved = {name: (objects / name).read_bytes()
             for name in (f"{cid.hex()}.pjson", f"{cid.hex()}.partial")}
    partial.complete()
    for name, raw in saved.items():  # as if killed just after the meta was written
        (objects / name).write_bytes(raw)
    store = restart(store, root)
    assert store.entries() == [cid] and store.partials() == []
    assert store.read(cid) == data
    names = sorted(f"{cid.hex()}.{suffix}" for suffix in ("data", "json", "leaves"))
    assert sorted(os.listdir(objects)) == names
    assert chunk_count(len(data)) == 2


def test_add_file_changed_while_hashed_is_refused(stores, tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(content(2 * CHUNK_SIZE))

    class GrowingBuilder(store_mod.TreeBuilder):
        def update(self, piece):
            super().update(piece)
            with open(path, "ab") as f:
                f.write(b"more")

    monkeypatch.setattr(store_mod, "TreeBuilder", GrowingBuilder)
    store = stores.make()
    with pytest.raises(ContentError, match="changed while"):
        store.add_file(path)
    assert store.entries() == [] and store.used_bytes == 0


def test_add_bytes_with_a_tree_computed_elsewhere(stores):
    data = content(CHUNK_SIZE + 8)
    tree = HashTree.of_bytes(data)
    store = stores.make()
    with pytest.raises(ValueError):
        store.add_bytes(data[:-1], tree=tree)
    assert store.entries() == []
    assert store.add_bytes(data, tree=tree) is tree
    assert store.read(tree.content_id) == data


def test_add_file_with_a_file_hashed_elsewhere(stores, tmp_path):
    path = tmp_path / "f.bin"
    data = content(2 * CHUNK_SIZE + 1)
    path.write_bytes(data)
    hashed = store_mod.hash_file(path)  # what an adapter runs in a worker thread
    assert hashed.path == str(path) and hashed.size == len(data)
    assert hashed.tree.content_id == HashTree.of_bytes(data).content_id
    store = stores.make()
    other = tmp_path / "g.bin"
    other.write_bytes(data)
    with pytest.raises(ValueError):
        store.add_file(other, hashed=hashed)
    os.utime(path, ns=(hashed.mtime_ns, hashed.mtime_ns + 1))
    with pytest.raises(ContentError, match="since it was hashed"):
        store.add_file(path, hashed=hashed)
    assert store.entries() == []
    hashed = store_mod.hash_file(path)
    assert store.add_file(path, hashed=hashed) is hashed.tree
    assert store.read(hashed.tree.content_id) == data


def test_partial_length_names_an_interrupted_retrieval(stores):
    data = content(CHUNK_SIZE + 2)
    cid = HashTree.of_bytes(data).content_id
    store = stores.make()
    assert store.partial_length(cid) is None and store.partial_length(b"x") is None
    fill(store.begin(cid, len(data)), data, [1])
    store = stores.reopen(store)
    assert store.partial_length(cid) == len(data)
    assert store.begin(cid, store.partial_length(cid)).missing() == [0]


def test_directory_is_open_in_one_store_at_a_time(tmp_path):
    root = tmp_path / "s"
    store = DirectoryStore(root)
    with pytest.raises(StoreInUseError, match=f"process {os.getpid()}"):
        DirectoryStore(root)
    store.close()
    store.close()  # again: nothing
    with DirectoryStore(root) as again:
        assert again.entries() == []
    DirectoryStore(root).close()


def test_directory_held_by_another_process_is_refused_until_it_ends(tmp_path):
    root = tmp_path / "s"
    with subprocess.Popen(
            [sys.executable, "-c", "import sys; from stt_proto.content.store import "
             "DirectoryStore; s = DirectoryStore(sys.argv[1]); print('open', flush=True); "
             "sys.stdin.read()", str(root)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline() == "open\n"
            with pytest.raises(StoreInUseError, match=f"process {holder.pid}"):
                DirectoryStore(root)
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
    DirectoryStore(root).close()   # the holder is gone, and its lock with it
