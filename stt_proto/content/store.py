"""Where content lives: complete entries to serve, partial entries being retrieved.

Theory of operation
-------------------
A store holds two kinds of entry, both keyed by the 32-byte content id:

* a **complete** entry, whose bytes are either *owned* (given to
  :meth:`ContentStore.add_bytes` or retrieved into the store) or a file
  referenced *in place* (:meth:`ContentStore.add_file`, or a retrieval written
  to a file of the caller's choosing). Every complete entry keeps its leaf
  hashes; its :class:`~stt_proto.content.tree.HashTree` is rebuilt from them
  when needed and kept in a small LRU (``max_cached_trees``), so a directory of
  many contents does not hold every tree in memory;
* a **partial** entry (:class:`Partial`), a retrieval under way: the chunks
  written so far and their leaf hashes, recorded after the data, so that a
  retrieval interrupted at any point resumes from the chunks it had verified.

What is trusted, and when
~~~~~~~~~~~~~~~~~~~~~~~~~
* A file referenced in place can be changed by anyone at any time. Its size and
  ``mtime_ns`` are remembered, and every chunk read from it is hashed again and
  compared with the stored leaf. On any difference the entry is dropped
  (``store_entries_dropped``) and the read answers ``None``: a provider must
  never serve a chunk that fails its proof.
* Owned data is written by the store only, so reading it is not hashed again
  (serving a GiB would otherwise cost a second of hashing per pass). The one
  exception is **resume**: the chunks a partial recorded before a kill are hashed
  again, because the kill may have torn the write of the last one, and a machine
  crash may have lost data the log claims. A chunk whose data no longer matches
  its recorded leaf is fetched again, never trusted.
* The leaves of a complete entry are checked against its id whenever its tree is
  rebuilt; leaves that do not give the id drop the entry.

Bounds
~~~~~~
``max_bytes`` bounds :attr:`ContentStore.used_bytes`: the owned content bytes
(an owned partial is charged its full length when it begins, so a retrieval
never runs out of room half-way) plus 32 bytes per chunk of every entry kept
in place (its leaves are all the store keeps of it). ``max_entries`` bounds
complete and partial entries together. Going over either raises
:class:`~stt_proto.errors.StoreFullError` and counts ``store_refused_full``;
nothing held is evicted to make room.

:class:`MemoryStore` keeps everything in dicts (tests, short-lived nodes);
:class:`DirectoryStore` keeps it in a directory and survives a restart. The store
does synchronous file I/O of one chunk at a time, the engine's only I/O, which
keeps the engine a plain object driven by calls.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import IO, Any, Union

try:
    import fcntl
except ImportError:  # no advisory locks (Windows): the store is not locked there
    fcntl = None  # type: ignore[assignment]

from ..errors import ContentError, LocalProtocolError, ProofError, StoreFullError, StoreInUseError
from .tree import CHUNK_SIZE, HashTree, TreeBuilder, chunk_count, chunk_span, leaf_hash

__all__ = [
    "ContentStore",
    "MemoryStore",
    "DirectoryStore",
    "Partial",
    "HashedFile",
    "hash_file",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "MAX_CACHED_TREES",
]

StrPath = Union[str, "os.PathLike[str]"]

#: Default bound of :attr:`ContentStore.used_bytes` (256 MiB).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
#: Default bound of complete plus partial entries.
DEFAULT_MAX_ENTRIES = 100_000
#: Default number of rebuilt trees kept (about 2n hashes each: 256 KiB per GiB).
MAX_CACHED_TREES = 64

_ID_SIZE = 32
_LEAF_SIZE = 32
#: One record of a partial's log: the chunk index, then its leaf hash.
_RECORD = struct.Struct(">I32s")

_STAT_NAMES = (
    "store_refused_full",  # add/begin refused by max_bytes or max_entries
    "store_chunks_read",  # chunks handed out by read_chunk (complete and partial)
    "store_chunks_written",  # chunks written by Partial.write
    "store_entries_dropped",  # an in-place file changed or vanished, or stored leaves were bad
    "store_files_ignored",  # DirectoryStore: unknown, corrupt or orphaned files at open
    "store_resume_chunks_kept",  # recorded chunks that hashed right on resume
    "store_resume_chunks_discarded",  # recorded chunks that did not (torn write, corruption)
    "store_trees_built",  # trees rebuilt from stored leaves (LRU misses)
)


def _key(content_id: object) -> bytes | None:
    """A content id usable as a dict key, or ``None`` for anything that is not one
    (lookups with a wrong id just miss, they never raise)."""
    if isinstance(content_id, (bytes, bytearray, memoryview)):
        key = bytes(content_id)
        if len(key) == _ID_SIZE:
            return key
    return None


def _split_leaves(blob: bytes) -> list[bytes]:
    return [blob[i : i + _LEAF_SIZE] for i in range(0, len(blob), _LEAF_SIZE)]


def _charge(length: int, path: str | None) -> int:
    """What an entry counts against ``max_bytes``: its data if owned, its leaves if in place."""
    return length if path is None else _LEAF_SIZE * chunk_count(length)


def _read_file_at(path: str, offset: int, size: int) -> bytes | None:
    """``size`` bytes at ``offset`` of a file, or ``None`` if the file cannot give them."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
    except OSError:
        return None
    return data if len(data) == size else None


def _write_file_at(path: str, offset: int, data: bytes | bytearray | memoryview) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _ensure_file(path: str, length: int) -> None:
    """Create the file at ``path`` if missing and make it exactly ``length`` bytes
    (a sparse extension: nothing is written)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != length:
            os.ftruncate(fd, length)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class HashedFile:
    """A file hashed by :func:`hash_file`: its tree, and the size and ``mtime_ns``
    it had while hashed (:meth:`ContentStore.add_file` checks they still hold)."""

    path: str  #: absolute
    tree: HashTree
    size: int
    mtime_ns: int


def hash_file(path: StrPath) -> HashedFile:
    """Hash the regular file at ``path`` streaming, ``CHUNK_SIZE`` at a time (never
    the whole file in memory). Touches no store, so a caller may run it in a worker
    thread and hand the result to :meth:`ContentStore.add_file`.

    Raises:
        ValueError: not a regular file, or longer than a content may be.
        ContentError: the file changed while it was hashed.
        OSError: the file cannot be read.
    """
    path = os.path.abspath(os.fspath(path))
    # Checked before opening: opening a FIFO would block, a device never ends.
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"{path} is not a regular file")
    builder = TreeBuilder()
    view = memoryview(bytearray(CHUNK_SIZE))
    with open(path, "rb", buffering=0) as f:
        before = os.fstat(f.fileno())
        if not stat.S_ISREG(before.st_mode):
            raise ValueError(f"{path} is not a regular file")
        chunk_count(before.st_size)  # a file too long for one content: ValueError now
        # Read no more than the size at the start: a file that keeps growing (a
        # log being written) must not keep us hashing; the change is caught below.
        left = before.st_size
        while left:
            n = f.readinto(view[: min(CHUNK_SIZE, left)])
            if not n:
                break
            builder.update(view[:n])
            left -= n
        after = os.fstat(f.fileno())
    if ((before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
            or builder.length != after.st_size):
        raise ContentError(f"{path} changed while it was hashed; add it again")
    return HashedFile(path, builder.finish(), after.st_size, after.st_mtime_ns)


@dataclass(slots=True)
class _Entry:
    """What a store remembers of a complete entry besides its leaves."""

    content_id: bytes
    length: int
    path: str | None  # None: owned by the store; else the file referenced in place
    size: int | None = None  # in place: the file's size and mtime_ns when referenced
    mtime_ns: int | None = None


class Partial:
    """A retrieval under way: which chunks are written and verified, and their leaves.

    Get one from :meth:`ContentStore.begin`. Write each chunk once it has been
    verified against the content id (:func:`~stt_proto.content.tree.verify_chunk`
    gives its leaf), then :meth:`complete` once :meth:`missing` is empty.

    Attributes:
        content_id: the content being retrieved.
        length: its length in bytes.
        count: its number of chunks.
        path: the file the chunks are written to in place, or ``None`` when the
            store owns the data.
    """

    __slots__ = ("content_id", "length", "count", "path", "_store", "_leaves", "_done_bytes",
                 "_tree", "_closed")

    def __init__(self, store: ContentStore, content_id: bytes, length: int,
                 path: str | None, *, tree: HashTree | None = None) -> None:
        self.content_id = content_id
        self.length = length
        self.count = chunk_count(length)
        self.path = path
        self._store = store
        self._leaves: dict[int, bytes] = {}
        self._done_bytes = 0
        # Set once the content is complete (at once when begin found it complete).
        self._tree = tree
        self._closed = False  # abandoned, or superseded by complete content

    @property
    def done_bytes(self) -> int:
        """Bytes of the content written and verified so far."""
        return self.length if self._tree is not None else self._done_bytes

    @property
    def is_complete(self) -> bool:
        """Whether :meth:`complete` has succeeded (or the content was complete at begin)."""
        return self._tree is not None

    def have(self, index: int) -> bool:
        """Whether chunk ``index`` is written and verified."""
        if self._tree is not None:
            return 0 <= index < self.count
        return index in self._leaves

    def missing(self) -> list[int]:
        """The chunks still to fetch, ascending (empty once complete)."""
        if self._tree is not None:
            return []
        return [i for i in range(self.count) if i not in self._leaves]

    def write(self, index: int, data: bytes | bytearray | memoryview, leaf: bytes) -> None:
        """Write chunk ``index``, already verified by the caller against the content
        id, with its leaf hash. A chunk already held is left as it is (an endgame
        duplicate).

        The data is written first and the ``(index, leaf)`` record after it, so a
        kill between the two loses at most this chunk, and resume hashes every
        recorded chunk again anyway.

        Raises:
            ValueError: ``index`` is outside the content, ``data`` is not that
                chunk's size, or ``leaf`` is not 32 bytes.
            LocalProtocolError: the partial was abandoned or completed.
        """
        self._check_open()
        try:
            offset, size = chunk_span(self.length, index)
        except IndexError:
            raise ValueError(f"chunk {index} is outside a content of {self.count} chunks") from None
        if len(data) != size:
            raise ValueError(f"chunk {index} is {size} bytes, not {len(data)}")
        leaf = bytes(leaf)
        if len(leaf) != _LEAF_SIZE:
            raise ValueError(f"a leaf hash is {_LEAF_SIZE} bytes, not {len(leaf)}")
        if index in self._leaves:
            return
        self._store._write_partial_data(self, offset, data)
        self._store._record(self, index, leaf)
        self._leaves[index] = leaf
        self._done_bytes += size
        self._store.stats["store_chunks_written"] += 1

    def read_chunk(self, index: int) -> bytes | None:
        """A chunk this partial holds, or ``None``. A chunk of a file in place that no
        longer hashes to its leaf is forgotten (it will be fetched again)."""
        if self._tree is not None:
            return self._store.read_chunk(self.content_id, index)
        leaf = self._leaves.get(index) if not self._closed else None
        if leaf is None:
            return None
        offset, size = chunk_span(self.length, index)
        data = self._store._read_partial_data(self, offset, size)
        if data is None or (self.path is not None and leaf_hash(data) != leaf):
            del self._leaves[index]
            self._done_bytes -= size
            return None
        self._store.stats["store_chunks_read"] += 1
        return data

    def complete(self) -> HashTree:
        """Turn the partial into a complete entry (owned, or in place at :attr:`path`)
        and return its tree. Calling it again returns the same tree.

        Raises:
            LocalProtocolError: chunks are missing, or the partial was abandoned.
            ProofError: the recorded leaves do not give the content id (cannot
                happen with verified chunks; checked all the same).
        """
        if self._tree is not None:
            return self._tree
        self._check_open()
        if len(self._leaves) != self.count:
            raise LocalProtocolError(
                f"{self.count - len(self._leaves)} of {self.count} chunks are still missing")
        tree = HashTree(self.length, [self._leaves[i] for i in range(self.count)])
        if tree.content_id != self.content_id:
            raise ProofError(f"the chunks written give content {tree.content_id.hex()}, "
                             f"not {self.content_id.hex()}")
        self._tree = self._store._finish_partial(self, tree)
        return self._tree

    def abandon(self) -> None:
        """Forget the partial: owned data is deleted, a file at :attr:`path` is left
        as it is. Does nothing to a complete content."""
        if self._tree is None and not self._closed:
            self._store._drop_partial(self)

    def _check_open(self) -> None:
        if self._closed:
            raise LocalProtocolError("this partial was abandoned (or its content was added "
                                     "whole meanwhile); begin again")
        if self._tree is not None:
            raise LocalProtocolError("this content is complete already")

    def __repr__(self) -> str:
        return (f"<Partial {self.content_id.hex()} {len(self._leaves)}/{self.count} chunks"
                f"{' in ' + self.path if self.path else ''}>")


class ContentStore(ABC):
    """The bookkeeping, bounds and checks shared by :class:`MemoryStore` and
    :class:`DirectoryStore`; those two only say where bytes and records live.

    Attributes:
        max_bytes: the bound of :attr:`used_bytes`.
        max_entries: the bound of complete plus partial entries.
        max_cached_trees: how many rebuilt trees are kept.
        used_bytes: owned content bytes (owned partials at their full length)
            plus 32 bytes per chunk of every entry kept in place.
        stats: counters (see the module docstring); ``statistics()`` copies them.
    """

    def __init__(self, *, max_bytes: int, max_entries: int, max_cached_trees: int) -> None:
        for name, value in (("max_bytes", max_bytes), ("max_entries", max_entries),
                            ("max_cached_trees", max_cached_trees)):
            if type(value) is not int or value < (0 if name == "max_bytes" else 1):
                raise ValueError(f"{name} must be an int of at least "
                                 f"{0 if name == 'max_bytes' else 1}, not {value!r}")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_cached_trees = max_cached_trees
        self.used_bytes = 0
        self.stats: dict[str, int] = dict.fromkeys(_STAT_NAMES, 0)
        self._entries: dict[bytes, _Entry] = {}
        self._partials: dict[bytes, Partial] = {}
        self._trees: OrderedDict[bytes, HashTree] = OrderedDict()

    # -- complete entries ------------------------------------------------------

    def add_bytes(self, data: bytes | bytearray | memoryview, *,
                  tree: HashTree | None = None) -> HashTree:
        """Hash ``data`` and keep a copy the store owns.

        Adding content the store has already is a no-op returning its tree. A
        partial of the same content is abandoned (the content is now whole).

        Args:
            data: the content.
            tree: ``HashTree.of_bytes(data)`` if the caller computed it already (in a
                worker thread, say, so an event loop is not blocked for the hashing).
                It is not hashed again (that is what it saves), only its length checked.

        Raises:
            ValueError: ``tree`` is not of ``len(data)`` bytes.
            StoreFullError: no room for ``len(data)`` bytes or one more entry.
        """
        if tree is None:
            tree = HashTree.of_bytes(data)
        elif tree.length != len(memoryview(data).cast("B")):
            raise ValueError(f"the tree given is of {tree.length} bytes, the data of {len(data)}")
        return self._add_complete(_Entry(tree.content_id, tree.length, None), tree, data)

    def add_file(self, path: StrPath, *, hashed: HashedFile | None = None) -> HashTree:
        """Reference the regular file at ``path`` in place: the store keeps its path,
        size, ``mtime_ns`` and leaves, never a copy, and charges only the leaves
        against ``max_bytes``. The file is hashed streaming by :func:`hash_file`.

        Adding content the store has already is a no-op returning its tree.

        Args:
            path: the file.
            hashed: what :func:`hash_file` gave for this path, if the caller hashed
                it already (in a worker thread, say); used if the file's size and
                ``mtime_ns`` are still the ones it saw.

        Raises:
            ValueError: not a regular file, longer than a content may be, or
                ``hashed`` is of another file.
            ContentError: the file changed while it was hashed, or since ``hashed``.
            StoreFullError: no room for its leaves or one more entry.
            OSError: the file cannot be read.
        """
        path = os.path.abspath(os.fspath(path))
        if hashed is None:
            hashed = hash_file(path)
        else:
            if hashed.path != path:
                raise ValueError(f"{path} was not the file hashed ({hashed.path})")
            st = os.stat(path)
            if (st.st_size, st.st_mtime_ns) != (hashed.size, hashed.mtime_ns):
                raise ContentError(f"{path} changed since it was hashed; hash it again")
        tree = hashed.tree
        entry = _Entry(tree.content_id, tree.length, path, hashed.size, hashed.mtime_ns)
        return self._add_complete(entry, tree, None)

    def _add_complete(self, entry: _Entry, tree: HashTree,
                      data: bytes | bytearray | memoryview | None) -> HashTree:
        """Keep a new complete entry, unless the store holds that content already
        (then its tree is returned and nothing changes)."""
        cid = entry.content_id
        existing = self._entries.get(cid)
        if existing is not None and self._still_valid(existing):
            kept = self.tree(cid)
            if kept is not None:
                return kept
        self._make_room(_charge(entry.length, entry.path), cid)
        self._save_entry(entry, b"".join(tree.leaves), data)
        self._add_entry(entry, tree)
        return tree

    def has(self, content_id: bytes) -> bool:
        """Whether the store holds the complete content (a file in place is checked
        only when read)."""
        return _key(content_id) in self._entries

    def length(self, content_id: bytes) -> int | None:
        """The length of a complete content, or ``None``."""
        entry = self._entries.get(_key(content_id))  # type: ignore[arg-type]
        return None if entry is None else entry.length

    def path_of(self, content_id: bytes) -> str | None:
        """The file a complete content is served from in place, or ``None`` (owned
        data, or unknown)."""
        entry = self._entries.get(_key(content_id))  # type: ignore[arg-type]
        return None if entry is None else entry.path

    def entries(self) -> list[bytes]:
        """The ids of the complete contents."""
        return list(self._entries)

    def tree(self, content_id: bytes) -> HashTree | None:
        """The tree of a complete content (rebuilt from its leaves on an LRU miss), or
        ``None``. Leaves that do not give the id drop the entry."""
        key = _key(content_id)
        entry = self._entries.get(key) if key is not None else None
        if entry is None:
            return None
        tree = self._trees.get(entry.content_id)
        if tree is not None:
            self._trees.move_to_end(entry.content_id)
            return tree
        blob = self._load_leaves(entry)
        tree = None
        if blob is not None and len(blob) == _LEAF_SIZE * chunk_count(entry.length):
            tree = HashTree(entry.length, _split_leaves(blob))
            self.stats["store_trees_built"] += 1
        if tree is None or tree.content_id != entry.content_id:
            self._drop_entry(entry)
            return None
        self._cache_tree(tree)
        return tree

    def read_chunk(self, content_id: bytes, index: int) -> bytes | None:
        """The data of chunk ``index`` of a complete content, or ``None`` if the content
        is unknown or has no such chunk (both can come from a peer: never raises).

        A file in place whose size or ``mtime_ns`` changed, that vanished, or whose
        chunk no longer hashes to the stored leaf is dropped from the store
        (``store_entries_dropped``) and ``None`` returned. Owned data is not
        hashed again (the module docstring says why).
        """
        key = _key(content_id)
        entry = self._entries.get(key) if key is not None else None
        if entry is None or type(index) is not int:
            return None
        try:
            offset, size = chunk_span(entry.length, index)
        except IndexError:
            return None
        if entry.path is None:
            data = self._read_owned(entry, offset, size)
        else:
            tree = self.tree(entry.content_id)
            if tree is None:
                return None
            data = self._read_in_place(entry, offset, size)
            if data is not None and leaf_hash(data) != tree.leaves[index]:
                data = None
        if data is None:
            self._drop_entry(entry)
            return None
        self.stats["store_chunks_read"] += 1
        return data

    def read(self, content_id: bytes, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes (default: to the end) at ``offset`` of a complete content,
        read chunk by chunk through :meth:`read_chunk` (so a file in place is checked).

        Raises:
            KeyError: the content is not in the store (or was dropped while read).
            ValueError: the range is not inside the content.
        """
        total = self.length(content_id)
        if total is None:
            raise KeyError(f"content {bytes(content_id).hex()} is not in the store")
        if length is None:
            length = total - offset
        if not (0 <= offset <= total and 0 <= length <= total - offset):
            raise ValueError(f"bytes {offset}..{offset + length} are not inside a content "
                             f"of {total} bytes")
        out = bytearray()
        end = offset + length
        for index in range(offset // CHUNK_SIZE, -(-end // CHUNK_SIZE)):
            chunk = self.read_chunk(content_id, index)
            if chunk is None:
                raise KeyError(f"content {bytes(content_id).hex()} is no longer in the store "
                               "(its file changed or vanished)")
            start = index * CHUNK_SIZE
            out += memoryview(chunk)[max(offset - start, 0) : end - start]
        return bytes(out)

    def remove(self, content_id: bytes) -> bool:
        """Forget a content, complete or partial: owned data is deleted, files in place
        are never deleted. Returns whether there was anything to forget."""
        key = _key(content_id)
        if key is None:
            return False
        removed = False
        entry = self._entries.get(key)
        if entry is not None:
            self._forget_entry(entry)
            removed = True
        partial = self._partials.get(key)
        if partial is not None:
            self._drop_partial(partial)
            removed = True
        return removed

    def statistics(self) -> dict[str, int]:
        """A copy of the counters, with the entries and bytes in use."""
        return {**self.stats, "store_entries": len(self._entries),
                "store_partials": len(self._partials), "store_used_bytes": self.used_bytes}

    # -- partial entries -------------------------------------------------------

    def begin(self, content_id: bytes, length: int, *, path: StrPath | None = None) -> Partial:
        """Start, or resume, the retrieval of a content.

        Args:
            content_id: the content's id (its length must be the one committed by it).
            length: the content's length in bytes.
            path: ``None`` for data owned by the store (charged ``length`` against
                ``max_bytes`` now); else the file the chunks are written to in place
                (created or resized to ``length``; only its leaves are charged).

        Returns:
            A :class:`Partial`. If the content is complete already (owned, or in place
            at ``path``), one that is complete at once. If a partial of this content
            at the same ``path`` exists (in this process, or on disk from before a
            restart), it is resumed: every chunk it recorded is hashed again and only
            those that still match their leaf are kept. A partial at another path is
            abandoned and a new one begins.

        Raises:
            ValueError: ``content_id`` is not 32 bytes, ``length`` is out of range, or
                differs from the length of the partial or entry already held.
            StoreFullError: no room for a new partial.
            OSError: the file at ``path`` cannot be created.
        """
        key = _key(content_id)
        if key is None:
            raise ValueError("a content id is 32 bytes")
        count = chunk_count(length)  # ValueError for a length no content may have
        if path is not None:
            path = os.path.abspath(os.fspath(path))
        entry = self._entries.get(key)
        if entry is not None and entry.length != length:
            raise ValueError(f"content {key.hex()} is {entry.length} bytes, not {length}")
        if entry is not None and (path is None or path == entry.path) and self._still_valid(entry):
            tree = self.tree(key)
            if tree is not None:
                return Partial(self, key, length, path, tree=tree)
        partial = self._partials.get(key)
        if partial is not None:
            if partial.length != length:
                raise ValueError(f"a retrieval of content {key.hex()} has {partial.length} "
                                 f"bytes, not {length}")
            if partial.path == path:
                self._resume(partial)
                return partial
            self._drop_partial(partial)
        self._make_room(_LEAF_SIZE * count if path is not None else length, None)
        partial = Partial(self, key, length, path)
        if path is not None:
            _ensure_file(path, length)
        self._create_partial(partial)
        self._partials[key] = partial
        self.used_bytes += _charge(length, path)
        return partial

    def partial_length(self, content_id: bytes) -> int | None:
        """The length of the partial entry of ``content_id`` (one left by an
        interrupted retrieval, which ``begin`` resumes), or ``None``."""
        partial = self._partials.get(_key(content_id))  # type: ignore[arg-type]
        return None if partial is None else partial.length

    def partials(self) -> list[bytes]:
        """The ids of the partial entries (``begin`` resumes one)."""
        return list(self._partials)

    def _resume(self, partial: Partial) -> None:
        """Keep only the recorded chunks whose data still hashes to their leaf."""
        if partial.path is not None:
            _ensure_file(partial.path, partial.length)
        records = self._load_records(partial)
        kept: dict[int, bytes] = {}
        done = 0
        for index in sorted(records):
            offset, size = chunk_span(partial.length, index)
            data = self._read_partial_data(partial, offset, size)
            if data is not None and leaf_hash(data) == records[index]:
                kept[index] = records[index]
                done += size
        self.stats["store_resume_chunks_kept"] += len(kept)
        self.stats["store_resume_chunks_discarded"] += len(records) - len(kept)
        partial._leaves = kept
        partial._done_bytes = done
        self._rewrite_records(partial)

    def _finish_partial(self, partial: Partial, tree: HashTree) -> HashTree:
        key = partial.content_id
        existing = self._entries.get(key)
        if existing is not None and self._still_valid(existing):
            # Completed meanwhile at another path (begin with a new path while the
            # store held it): keep that entry, forget this bookkeeping.
            self._drop_partial(partial)
            return self.tree(key) or tree
        entry = _Entry(key, partial.length, partial.path)
        if partial.path is not None:
            st = os.stat(partial.path)
            entry.size, entry.mtime_ns = st.st_size, st.st_mtime_ns
        self._commit_partial(partial, entry, b"".join(tree.leaves))
        # The charge moves from the partial to the entry unchanged (same data, same place).
        del self._partials[key]
        self._entries[key] = entry
        self._cache_tree(tree)
        return tree

    def _drop_partial(self, partial: Partial) -> None:
        self._delete_partial(partial)
        if self._partials.get(partial.content_id) is partial:
            del self._partials[partial.content_id]
            self.used_bytes -= _charge(partial.length, partial.path)
        partial._closed = True

    def _write_partial_data(self, partial: Partial, offset: int,
                            data: bytes | bytearray | memoryview) -> None:
        if partial.path is not None:
            _write_file_at(partial.path, offset, data)
        else:
            self._write_owned_partial(partial, offset, data)

    def _read_partial_data(self, partial: Partial, offset: int, size: int) -> bytes | None:
        if partial.path is not None:
            return _read_file_at(partial.path, offset, size)
        return self._read_owned_partial(partial, offset, size)

    # -- bookkeeping -----------------------------------------------------------

    def _make_room(self, nbytes: int, replacing: bytes | None) -> None:
        """Raise StoreFullError unless ``nbytes`` more and one more entry fit; then
        abandon the partial of ``replacing`` (its content is being added whole),
        whose room counts as free."""
        partial = self._partials.get(replacing) if replacing is not None else None
        freed_bytes = _charge(partial.length, partial.path) if partial is not None else 0
        freed_entries = 1 if partial is not None else 0
        if self.used_bytes - freed_bytes + nbytes > self.max_bytes:
            self.stats["store_refused_full"] += 1
            raise StoreFullError(
                f"content store full: {nbytes} more bytes would exceed max_bytes="
                f"{self.max_bytes} ({self.used_bytes} in use); remove content or raise the bound")
        if len(self._entries) + len(self._partials) - freed_entries >= self.max_entries:
            self.stats["store_refused_full"] += 1
            raise StoreFullError(
                f"content store full: it holds max_entries={self.max_entries} entries "
                "(complete and partial); remove content or raise the bound")
        if partial is not None:
            self._drop_partial(partial)

    def _add_entry(self, entry: _Entry, tree: HashTree) -> None:
        self._entries[entry.content_id] = entry
        self.used_bytes += _charge(entry.length, entry.path)
        self._cache_tree(tree)

    def _cache_tree(self, tree: HashTree) -> None:
        self._trees[tree.content_id] = tree
        self._trees.move_to_end(tree.content_id)
        while len(self._trees) > self.max_cached_trees:
            self._trees.popitem(last=False)

    def _still_valid(self, entry: _Entry) -> bool:
        """False (and the entry dropped) for a file in place that changed or vanished."""
        if entry.path is None:
            return True
        try:
            st = os.stat(entry.path)
        except OSError:
            st = None
        if st is None or (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
            self._drop_entry(entry)
            return False
        return True

    def _read_in_place(self, entry: _Entry, offset: int, size: int) -> bytes | None:
        # fstat on the descriptor read from, so the check and the read see one file.
        assert entry.path is not None
        try:
            with open(entry.path, "rb") as f:
                st = os.fstat(f.fileno())
                if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
                    return None
                f.seek(offset)
                data = f.read(size)
        except OSError:
            return None
        return data if len(data) == size else None

    def _drop_entry(self, entry: _Entry) -> None:
        self.stats["store_entries_dropped"] += 1
        self._forget_entry(entry)

    def _forget_entry(self, entry: _Entry) -> None:
        if self._entries.get(entry.content_id) is not entry:
            return
        self._delete_entry(entry)
        del self._entries[entry.content_id]
        self._trees.pop(entry.content_id, None)
        self.used_bytes -= _charge(entry.length, entry.path)

    # -- where the bytes live (MemoryStore, DirectoryStore) ---------------------

    @abstractmethod
    def _save_entry(self, entry: _Entry, leaves: bytes,
                    data: bytes | bytearray | memoryview | None) -> None:
        """Keep a new complete entry: its owned ``data`` (None when in place), leaves, meta."""

    @abstractmethod
    def _load_leaves(self, entry: _Entry) -> bytes | None:
        """The stored leaves of a complete entry, or None if they are gone."""

    @abstractmethod
    def _read_owned(self, entry: _Entry, offset: int, size: int) -> bytes | None:
        """Owned data of a complete entry, or None if it is gone or short."""

    @abstractmethod
    def _delete_entry(self, entry: _Entry) -> None:
        """Delete what the store keeps of a complete entry (never a file in place)."""

    @abstractmethod
    def _create_partial(self, partial: Partial) -> None:
        """Make room for an owned partial's data (a file in place exists already),
        and persist the partial with an empty record log."""

    @abstractmethod
    def _write_owned_partial(self, partial: Partial, offset: int,
                             data: bytes | bytearray | memoryview) -> None:
        """Write owned data of a partial."""

    @abstractmethod
    def _read_owned_partial(self, partial: Partial, offset: int, size: int) -> bytes | None:
        """Owned data of a partial, or None if it is gone or short."""

    @abstractmethod
    def _record(self, partial: Partial, index: int, leaf: bytes) -> None:
        """Durably record that chunk ``index`` (already written) has ``leaf``."""

    @abstractmethod
    def _load_records(self, partial: Partial) -> dict[int, bytes]:
        """The chunks a partial recorded, index to leaf."""

    @abstractmethod
    def _rewrite_records(self, partial: Partial) -> None:
        """Make the record log hold exactly ``partial._leaves`` (after a resume)."""

    @abstractmethod
    def _commit_partial(self, partial: Partial, entry: _Entry, leaves: bytes) -> None:
        """Turn a finished partial into the complete ``entry`` and drop its log."""

    @abstractmethod
    def _delete_partial(self, partial: Partial) -> None:
        """Delete a partial's log and owned data (never a file in place)."""


class MemoryStore(ContentStore):
    """A store in dicts, for tests and nodes that keep nothing across a restart.
    Files in place are still referenced by path, never copied."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES,
                 *, max_cached_trees: int = MAX_CACHED_TREES) -> None:
        super().__init__(max_bytes=max_bytes, max_entries=max_entries,
                         max_cached_trees=max_cached_trees)
        self._data: dict[bytes, bytes | bytearray] = {}  # owned data of complete entries
        self._leaf_blobs: dict[bytes, bytes] = {}  # leaves of complete entries
        self._partial_data: dict[bytes, bytearray] = {}  # owned data of partials

    def _save_entry(self, entry: _Entry, leaves: bytes,
                    data: bytes | bytearray | memoryview | None) -> None:
        if data is not None:
            self._data[entry.content_id] = bytes(data)
        self._leaf_blobs[entry.content_id] = leaves

    def _load_leaves(self, entry: _Entry) -> bytes | None:
        return self._leaf_blobs.get(entry.content_id)

    def _read_owned(self, entry: _Entry, offset: int, size: int) -> bytes | None:
        data = self._data.get(entry.content_id)
        return None if data is None else bytes(memoryview(data)[offset : offset + size])

    def _delete_entry(self, entry: _Entry) -> None:
        self._data.pop(entry.content_id, None)
        self._leaf_blobs.pop(entry.content_id, None)

    def _create_partial(self, partial: Partial) -> None:
        if partial.path is None:
            self._partial_data[partial.content_id] = bytearray(partial.length)

    def _write_owned_partial(self, partial: Partial, offset: int,
                             data: bytes | bytearray | memoryview) -> None:
        self._partial_data[partial.content_id][offset : offset + len(data)] = data

    def _read_owned_partial(self, partial: Partial, offset: int, size: int) -> bytes | None:
        buffer = self._partial_data.get(partial.content_id)
        return None if buffer is None else bytes(memoryview(buffer)[offset : offset + size])

    # The partial's own dict of leaves is its record: nothing outlives the process.
    def _record(self, partial: Partial, index: int, leaf: bytes) -> None:
        pass

    def _load_records(self, partial: Partial) -> dict[int, bytes]:
        return dict(partial._leaves)

    def _rewrite_records(self, partial: Partial) -> None:
        pass

    def _commit_partial(self, partial: Partial, entry: _Entry, leaves: bytes) -> None:
        buffer = self._partial_data.pop(partial.content_id, None)
        if buffer is not None:
            # The buffer becomes the entry's data as it is: no second copy of a content.
            self._data[entry.content_id] = buffer
        self._leaf_blobs[entry.content_id] = leaves

    def _delete_partial(self, partial: Partial) -> None:
        if partial.path is None:
            self._partial_data.pop(partial.content_id, None)


# Every file the store makes is named by the hex of a 32-byte id and a suffix; a
# ".tmp" one is an atomic write a kill interrupted.
_NAME = re.compile(r"([0-9a-f]{64})\.(json|leaves|data|partial|pjson)(\.tmp)?")
_MAX_META_SIZE = 64 * 1024  # a meta file holds a length and a path; more is not ours


class DirectoryStore(ContentStore):
    """A store in a directory that survives a restart.

    Layout, in ``<path>/objects/``, every name the hex of a content id:

    * ``<hex>.json``: a complete entry's meta (``v``, ``length``, ``path``,
      ``size``, ``mtime_ns``), written last, so its presence commits the entry;
    * ``<hex>.leaves``: its leaf hashes, 32 bytes per chunk;
    * ``<hex>.data``: owned data, of a complete entry or of an owned partial;
    * ``<hex>.pjson``: a partial's meta (``v``, ``length``, ``path``);
    * ``<hex>.partial``: a partial's append-only log of 36-byte records (u32
      chunk index, 32-byte leaf); a torn last record is ignored.

    One store object at a time has the directory open: it holds an exclusive
    lock on ``<path>/lock`` (``flock``) until :meth:`close` (or until it is
    collected, or its process ends), and another that tries to open the
    directory meanwhile gets :class:`~stt_proto.errors.StoreInUseError`. Two
    stores on one directory would each miss what the other added, and each
    clears the other's temporary files on opening.

    Meta and leaves are written atomically (a ``.tmp`` file, then ``os.replace``).
    Opening reads every meta file (never leaves or data) and skips, counting
    ``store_files_ignored``, anything unknown, corrupt or orphaned; it never
    deletes a file but the ``.tmp`` leftovers of its own writes. Nothing is fsynced:
    a resume hashes every recorded chunk again, so what a machine crash loses is
    fetched again, never trusted.
    """

    def __init__(self, path: StrPath, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_entries: int = DEFAULT_MAX_ENTRIES, *,
                 max_cached_trees: int = MAX_CACHED_TREES) -> None:
        super().__init__(max_bytes=max_bytes, max_entries=max_entries,
                         max_cached_trees=max_cached_trees)
        self.path = os.path.abspath(os.fspath(path))
        self._objects = os.path.join(self.path, "objects")
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        os.makedirs(self._objects, mode=0o700, exist_ok=True)
        self._lock: IO[str] | None = _lock_directory(self.path)
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Let the directory go (another store may open it then); this object is
        not to be used afterwards. Calling it again does nothing."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()   # closing the file releases the flock

    def __del__(self) -> None:
        if getattr(self, "_lock", None) is not None:
            self.close()

    def __enter__(self) -> DirectoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _file(self, content_id: bytes, suffix: str) -> str:
        # The only way a path inside the store is made: from the hex of an id.
        if len(content_id) != _ID_SIZE:
            raise ValueError("a content id is 32 bytes")
        return os.path.join(self._objects, f"{content_id.hex()}.{suffix}")

    # -- opening ---------------------------------------------------------------

    def _load(self) -> None:
        files: dict[str, set[str]] = {}
        for name in os.listdir(self._objects):
            match = _NAME.fullmatch(name)
            if match is None:
                self.stats["store_files_ignored"] += 1
            elif match.group(3):
                self._unlink(os.path.join(self._objects, name))
            else:
                files.setdefault(match.group(1), set()).add(match.group(2))
        for hexid, suffixes in files.items():
            key = bytes.fromhex(hexid)
            used: set[str] = set()
            if "json" in suffixes and self._load_entry(key, suffixes):
                used |= {"json", "leaves"}
                if self._entries[key].path is None:
                    used.add("data")
            if "pjson" in suffixes:
                used |= self._load_partial(key, suffixes)
            self.stats["store_files_ignored"] += len(suffixes - used)

    def _room_at_open(self) -> bool:
        # A directory may hold more than a lowered max_entries allows: the rest is
        # skipped (and counted), so memory stays bounded by the configuration.
        return len(self._entries) + len(self._partials) < self.max_entries

    def _load_entry(self, key: bytes, suffixes: set[str]) -> bool:
        meta = self._read_meta(self._file(key, "json"), ("v", "length", "path", "size", "mtime_ns"))
        if meta is None or "leaves" not in suffixes or not self._room_at_open():
            return False
        length, path = meta["length"], meta["path"]
        if path is None:
            if meta["size"] is not None or meta["mtime_ns"] is not None:
                return False
            if "data" not in suffixes or self._size(self._file(key, "data")) != length:
                return False
        elif not (_is_count(meta["size"]) and _is_count(meta["mtime_ns"])):
            return False
        if self._size(self._file(key, "leaves")) != _LEAF_SIZE * chunk_count(length):
            return False
        entry = _Entry(key, length, path, meta["size"], meta["mtime_ns"])
        self._entries[key] = entry
        self.used_bytes += _charge(length, path)
        return True

    def _load_partial(self, key: bytes, suffixes: set[str]) -> set[str]:
        """Load a partial's meta; returns the suffixes it accounts for."""
        meta = self._read_meta(self._file(key, "pjson"), ("v", "length", "path"))
        if meta is None:
            return set()
        path = meta["path"]
        entry = self._entries.get(key)
        if entry is not None and path == entry.path:
            # A kill between committing the entry and deleting the log: finish the job.
            self._unlink(self._file(key, "pjson"))
            self._unlink(self._file(key, "partial"))
            return {"pjson", "partial"}
        if not self._room_at_open():
            return set()
        partial = Partial(self, key, meta["length"], path)
        self._partials[key] = partial
        self.used_bytes += _charge(partial.length, path)
        return {"pjson", "partial"} | ({"data"} if path is None else set())

    def _read_meta(self, file: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        """A meta file's fields, or None (and the file counted) if it is not one of ours."""
        try:
            with open(file, "rb") as f:
                raw = f.read(_MAX_META_SIZE + 1)
            meta = json.loads(raw) if len(raw) <= _MAX_META_SIZE else None
        except (OSError, ValueError, RecursionError):
            meta = None
        ok = (isinstance(meta, dict) and set(meta) == set(keys) and type(meta["v"]) is int
              and meta["v"] == 1 and _is_count(meta["length"]))
        if ok:
            try:
                chunk_count(meta["length"])
            except ValueError:
                ok = False
        path = meta.get("path") if ok else None
        if ok and path is not None and not (isinstance(path, str) and os.path.isabs(path)
                                            and "\x00" not in path):
            ok = False
        if not ok:
            self.stats["store_files_ignored"] += 1
            return None
        return meta

    @staticmethod
    def _size(file: str) -> int | None:
        try:
            return os.stat(file).st_size
        except OSError:
            return None

    @staticmethod
    def _unlink(file: str) -> None:
        try:
            os.unlink(file)
        except FileNotFoundError:
            pass

    @staticmethod
    def _write_atomic(file: str, data: bytes | bytearray | memoryview) -> None:
        tmp = file + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, file)

    def _write_meta(self, file: str, meta: dict[str, Any]) -> None:
        self._write_atomic(file, json.dumps(meta, sort_keys=True).encode())

    # -- complete entries ------------------------------------------------------

    def _save_entry(self, entry: _Entry, leaves: bytes,
                    data: bytes | bytearray | memoryview | None) -> None:
        key = entry.content_id
        if data is not None:
            self._write_atomic(self._file(key, "data"), data)
        self._write_atomic(self._file(key, "leaves"), leaves)
        self._write_meta(self._file(key, "json"), {
            "v": 1, "length": entry.length, "path": entry.path,
            "size": entry.size, "mtime_ns": entry.mtime_ns})

    def _load_leaves(self, entry: _Entry) -> bytes | None:
        try:
            with open(self._file(entry.content_id, "leaves"), "rb") as f:
                return f.read(_LEAF_SIZE * chunk_count(entry.length) + 1)
        except OSError:
            return None

    def _read_owned(self, entry: _Entry, offset: int, size: int) -> bytes | None:
        return _read_file_at(self._file(entry.content_id, "data"), offset, size)

    def _delete_entry(self, entry: _Entry) -> None:
        key = entry.content_id
        self._unlink(self._file(key, "json"))  # first: without it the rest is not an entry
        self._unlink(self._file(key, "leaves"))
        if entry.path is None:
            self._unlink(self._file(key, "data"))

    # -- partial entries -------------------------------------------------------

    def _create_partial(self, partial: Partial) -> None:
        key = partial.content_id
        if partial.path is None:
            _ensure_file(self._file(key, "data"), partial.length)
        self._write_atomic(self._file(key, "partial"), b"")
        self._write_meta(self._file(key, "pjson"),
                         {"v": 1, "length": partial.length, "path": partial.path})

    def _write_owned_partial(self, partial: Partial, offset: int,
                             data: bytes | bytearray | memoryview) -> None:
        _write_file_at(self._file(partial.content_id, "data"), offset, data)

    def _read_owned_partial(self, partial: Partial, offset: int, size: int) -> bytes | None:
        return _read_file_at(self._file(partial.content_id, "data"), offset, size)

    def _record(self, partial: Partial, index: int, leaf: bytes) -> None:
        # Closing the file flushes the record to the OS: enough for a killed
        # process; a machine crash is covered by the re-hash on resume.
        with open(self._file(partial.content_id, "partial"), "ab") as f:
            f.write(_RECORD.pack(index, leaf))

    def _load_records(self, partial: Partial) -> dict[int, bytes]:
        if partial.path is None:
            _ensure_file(self._file(partial.content_id, "data"), partial.length)
        try:
            with open(self._file(partial.content_id, "partial"), "rb") as f:
                # A log holds at most one record per chunk (plus a torn one): a
                # bigger file is not ours to read whole.
                raw = f.read(_RECORD.size * (partial.count + 1))
        except OSError:
            return {}
        records: dict[int, bytes] = {}
        # A torn last record (len not a multiple of 36) is left out by the range.
        for pos in range(0, len(raw) - _RECORD.size + 1, _RECORD.size):
            index, leaf = _RECORD.unpack_from(raw, pos)
            if index < partial.count:
                records[index] = leaf
        return records

    def _rewrite_records(self, partial: Partial) -> None:
        # Rewritten whole after a resume: a torn tail left in place would shift
        # every record appended after it.
        records = sorted(partial._leaves.items())
        self._write_atomic(self._file(partial.content_id, "partial"),
                           b"".join(_RECORD.pack(index, leaf) for index, leaf in records))

    def _commit_partial(self, partial: Partial, entry: _Entry, leaves: bytes) -> None:
        self._save_entry(entry, leaves, None)  # owned data is in <hex>.data already
        self._unlink(self._file(partial.content_id, "pjson"))
        self._unlink(self._file(partial.content_id, "partial"))

    def _delete_partial(self, partial: Partial) -> None:
        key = partial.content_id
        self._unlink(self._file(key, "pjson"))
        self._unlink(self._file(key, "partial"))
        if partial.path is None:
            self._unlink(self._file(key, "data"))


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def _lock_directory(path: str) -> IO[str] | None:
    """Hold ``<path>/lock`` exclusively (with this process's id in it), or
    raise StoreInUseError naming the process that holds it."""
    if fcntl is None:
        return None
    lock = open(os.path.join(path, "lock"), "a+", encoding="ascii")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read(32).strip() or "unknown"
        lock.close()
        raise StoreInUseError(f"content store {path} is open in another store object "
                              f"(process {holder}); one at a time may open it") from None
    except BaseException:
        lock.close()
        raise
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock
