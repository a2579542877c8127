"""``ContentDistribution``: the manual's content facade, written once for both adapters.

It attaches a :class:`~stt_proto.content.node.ContentNode` to the node behind a
started :class:`KademliaDHT` and turns its events into awaitable calls. The
engine does the protocol; this module does what needs the event loop:
hashing a large input in a worker thread (the loop keeps serving meanwhile),
waiting for a retrieval's end, and calling the progress callback.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from stt_proto import events as ev
from stt_proto.content.config import ContentConfig
from stt_proto.content.node import ContentNode
from stt_proto.content.store import ContentStore, DirectoryStore, MemoryStore, hash_file
from stt_proto.content.tree import CHUNK_SIZE, HashTree
from stt_proto.errors import ContentError, ContentNotFoundError, StoreFullError

from ._dht import _check_key
from ._overlay_facade import OverlayFacade
from .errors import NodeStoppedError

__all__ = ["ContentDistributionBase"]

#: Inputs at least this long are hashed in a worker thread.
_THREAD_THRESHOLD = 4 * CHUNK_SIZE
#: Default bound of a memory store.
_MEMORY_STORE_BYTES = 1 << 30
#: Default bound of a directory store.
_DIRECTORY_STORE_BYTES = 16 << 30


class _Wait:
    __slots__ = ("signal", "end", "progress")

    def __init__(self, signal: Any, progress: Callable[..., Any] | None) -> None:
        self.signal = signal
        self.end: Any = None
        self.progress = progress


class ContentDistributionBase(OverlayFacade):
    """Publish content and retrieve it from every provider at once, over a started
    :class:`KademliaDHT` (the manual's ``ContentDistribution(dht=dht, node_id=...)``).

    A content's id is the 32-byte root of a hash tree over its 256 KiB chunks:
    every chunk is checked against the id as it arrives, from whichever provider
    sent it, and a provider that sends one bad chunk is dropped.

    :param dht: the DHT (started before the first call).
    :param node_id: if given, must be the DHT's node id (bytes or hex).
    :param store: where content lives: a directory path (it survives restarts),
        a :class:`~stt_proto.content.store.ContentStore`, or None for memory.
    :param max_store_bytes: the store's bound when this object makes it
        (default 1 GiB in memory, 16 GiB in a directory).
    :param provide: whether a node provides what it retrieved (default True;
        each retrieve call may say otherwise).
    :param serve_store: whether the content the store holds when this object
        starts is provided too (default True), or only what it publishes and
        retrieves itself.
    :param announce: whether what it provides is announced in the DHT (default
        True). A short-lived process that fills a store another node serves
        passes False: a provider record naming a process that is gone only
        sends others to a dead address. Peers that ask are served either way.
    :param content_config: any :class:`stt_proto.content.config.ContentConfig` field.
    """

    _slot = "content"
    _not_started = "start the DHT before publishing or retrieving content"
    _taken_error = ContentError
    _taken_message = "another ContentDistribution is attached to this node"

    def __init__(self, dht: Any, node_id: bytes | str | None = None, store: Any = None, *,
                 max_store_bytes: int | None = None, provide: bool = True,
                 serve_store: bool = True, announce: bool = True,
                 **content_config: Any) -> None:
        super().__init__(dht)
        if node_id is not None and _check_key(node_id, "node_id") != dht.node_id:
            raise ValueError("node_id must be the DHT's node id")
        if store is None:
            store = MemoryStore(max_bytes=max_store_bytes or _MEMORY_STORE_BYTES)
        elif isinstance(store, (str, os.PathLike)):
            store = DirectoryStore(store, max_bytes=max_store_bytes or _DIRECTORY_STORE_BYTES)
        elif not isinstance(store, ContentStore):
            raise TypeError("store must be a directory path, a ContentStore or None")
        self._config = ContentConfig(**content_config)
        self._store = store
        self._provide = bool(provide)
        self._serve_store = bool(serve_store)
        self._announce = bool(announce)
        self._waits: dict[int, _Wait] = {}
        # Calls retrieving each content into the store now: one that does not
        # provide it removes it only when it is the last (the others read it).
        self._retrieving: dict[bytes, int] = {}
        self._counters = dict.fromkeys(("published", "retrieved", "retrievals_failed"), 0)

    # -- life cycle --------------------------------------------------------------------

    @property
    def store(self) -> ContentStore:
        return self._store

    @property
    def engine(self) -> ContentNode:
        if self._engine is None:
            raise NodeStoppedError("content distribution is not started")
        return self._engine

    async def start(self) -> None:
        """Attach to the DHT's node now (the first call does it otherwise) and
        provide every complete content of the store (unless ``serve_store=False``).

        Raises:
            NodeStoppedError: the DHT is not started.
            ContentError: another ContentDistribution is attached to the node.
        """
        self._ensure()

    async def stop(self) -> None:
        """Detach from the node: retrievals under way fail with
        ``NodeStoppedError`` (what they verified stays in the store), and the
        node stops serving. The store is kept."""
        self._detach("content distribution stopped")

    def _new_engine(self, node: Any) -> ContentNode:
        return ContentNode(self._dht.node_id, self._store, self._config, now=node._now(),
                           announce=self._announce)

    def _event_handlers(self) -> dict[type, Callable[[Any], None]]:
        return dict.fromkeys((ev.ContentProgress, ev.ContentRetrieved,
                              ev.ContentRetrievalFailed, ev.ContentProviderDropped),
                             self._on_event)

    def _attached(self, engine: ContentNode) -> None:
        if self._serve_store:
            for content_id in self._store.entries():
                engine.publish(content_id)
        self._dht.node._flush()

    def _detached(self, error: NodeStoppedError) -> None:
        for wait in self._waits.values():
            wait.end = error
            wait.signal.set()

    # -- events ----------------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        wait = self._waits.get(event.retrieval_id)
        if wait is None:
            return
        kind = type(event)
        if kind is ev.ContentProgress:
            if wait.progress is not None:
                self._call(wait.progress, event.done_bytes, event.total_bytes, event.providers)
        elif kind in (ev.ContentRetrieved, ev.ContentRetrievalFailed):
            wait.end = event
            wait.signal.set()

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        result = fn(*args)
        if inspect.isawaitable(result):
            self._dht.node._spawn(result, "a content progress callback")

    # -- publishing ------------------------------------------------------------------------

    async def publish_content(self, data_or_path: Any) -> bytes:
        """Store ``data_or_path`` (bytes, or the path of a file, which is hashed
        streaming and served in place: keep it unchanged) and provide it;
        returns its 32-byte content id once the DHT holds the announcement (or
        the DHT's lookup for where to put it ended; at once with ``announce=False``).

        Raises:
            TypeError: neither bytes-like nor a path.
            StoreFullError: the store has no room for it.
            OSError, ValueError: the file cannot be read, or is not a regular file.
            NodeStoppedError: the DHT is not started.
        """
        self._ensure()
        if isinstance(data_or_path, (bytes, bytearray, memoryview)):
            data = bytes(data_or_path)
            if len(data) >= _THREAD_THRESHOLD:
                tree = await self._in_thread(HashTree.of_bytes, data)
            else:
                tree = HashTree.of_bytes(data)
            tree = self._store.add_bytes(data, tree=tree)
        elif isinstance(data_or_path, (str, os.PathLike)):
            hashed = await self._in_thread(hash_file, data_or_path)
            tree = self._store.add_file(data_or_path, hashed=hashed)
        else:
            raise TypeError("publish bytes or the path of a file, not "
                            f"{type(data_or_path).__name__}")
        engine = self._ensure()
        content_id = tree.content_id
        engine.publish(content_id)
        self._counters["published"] += 1
        node = self._dht.node
        node._flush()
        if self._announce:
            try:
                await self._wait_until(lambda: engine.announced(content_id), None)
            except NodeStoppedError:
                pass  # stopped meanwhile: the content is stored, its id is still the answer
        return content_id

    async def unpublish(self, content_id: bytes | str) -> bool:
        """Stop providing ``content_id`` and drop it from the store (a published
        file itself is never deleted); False if it was not there."""
        content_id = _check_key(content_id, "content_id")
        engine = self._ensure()
        stopped = engine.unpublish(content_id)
        removed = self._store.remove(content_id)
        self._dht.node._flush()
        return stopped or removed

    def published(self) -> list[bytes]:
        """The ids of the content this node provides."""
        return self._engine.published() if self._engine is not None else []

    # -- retrieving ------------------------------------------------------------------------

    async def retrieve_content(self, content_id: bytes | str, *, provide: bool | None = None,
                               timeout: float | None = None) -> bytes:
        """The content, verified chunk by chunk, fetched from every provider at once
        (or read from the store if it is there). It stays in the store and is
        provided afterwards unless ``provide=False``.

        Raises:
            ContentNotFoundError: no provider could be found or serve it.
            StoreFullError: no room for it in the store.
            TimeoutError: ``timeout`` seconds passed (what was verified is kept:
                retrieving again resumes).
        """
        content_id = _check_key(content_id, "content_id")
        keep = self._store.has(content_id)
        self._retrieving[content_id] = self._retrieving.get(content_id, 0) + 1
        try:
            await self._retrieve(content_id, timeout=timeout, provide=provide)
            data = self._store.read(content_id)
        finally:
            last = self._last_retrieving(content_id)
        if not keep and not self._wants_provide(provide) and last:
            self._store.remove(content_id)
        return data

    async def retrieve_to_file(self, content_id: bytes | str, path: Any, *,
                               progress: Callable[..., Any] | None = None,
                               provide: bool | None = None,
                               timeout: float | None = None) -> int:
        """Retrieve into the file at ``path``, written as chunks arrive (memory
        stays bounded whatever the size); an interrupted retrieval to the same
        path resumes from the chunks it verified. ``progress(done_bytes,
        total_bytes, providers)`` is called as it goes (an ``async def`` runs as
        a task). Returns the content's length. The file is then served in place
        unless ``provide=False``.

        Raises: as :meth:`retrieve_content`.
        """
        content_id = _check_key(content_id, "content_id")
        path = os.path.abspath(os.fspath(path))
        length = self._store.length(content_id) if self._store.has(content_id) else None
        if length is not None and await self._in_thread(self._copy_out, content_id, length,
                                                        path):
            # The store had it: copied, not fetched again.
            if progress is not None:
                self._call(progress, length, length, 0)
            return length
        self._retrieving[content_id] = self._retrieving.get(content_id, 0) + 1
        try:
            end = await self._retrieve(content_id, timeout=timeout, provide=provide, path=path,
                                       progress=progress)
        finally:
            last = self._last_retrieving(content_id)
        if not self._wants_provide(provide) and last:
            self._forget_file(content_id, path)
        return end.length

    async def retrieve_range(self, content_id: bytes | str, offset: int, length: int, *,
                             timeout: float | None = None) -> bytes:
        """``length`` bytes of the content from ``offset`` (fewer past its end),
        fetching only the chunks that hold them; nothing is stored.

        Raises: as :meth:`retrieve_content`; ValueError for a negative range.
        """
        content_id = _check_key(content_id, "content_id")
        for name, value in (("offset", offset), ("length", length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0")
        if self._store.has(content_id):
            return self._store.read(content_id, offset, length)
        if length == 0:
            return b""
        retrieval = await self._retrieve(content_id, timeout=timeout, provide=False,
                                         whole=False, first=offset, last=offset + length,
                                         want_retrieval=True)
        total = retrieval.length
        end = min(offset + length, total)
        if offset >= end:
            return b""
        parts = []
        for index in range(offset // CHUNK_SIZE, (end - 1) // CHUNK_SIZE + 1):
            chunk = retrieval.sink.read_chunk(index)
            base = index * CHUNK_SIZE
            parts.append(chunk[max(offset - base, 0):end - base])
        return b"".join(parts)

    def _copy_out(self, content_id: bytes, length: int, path: str) -> bool:
        """Write a content the store holds to ``path``, a chunk at a time; False
        if the store lost it meanwhile (a file served in place changed). A file
        at ``path`` that is that content already is left alone."""
        tree = self._store.tree(content_id)
        if tree is None:
            return False
        source = self._store.path_of(content_id)
        if source is not None and os.path.exists(path) and os.path.samefile(path, source):
            return True
        with open(path, "wb") as f:
            for index in range(len(tree.leaves)):
                data = self._store.read_chunk(content_id, index)
                if data is None:
                    return False
                f.write(data)
        return True

    def _last_retrieving(self, content_id: bytes) -> bool:
        """One call retrieving ``content_id`` is over: whether it was the last
        one and nobody provides the content (so a call that does not provide it
        may drop it from the store)."""
        count = self._retrieving.pop(content_id) - 1
        if count:
            self._retrieving[content_id] = count
            return False
        return self._engine is None or content_id not in self._engine.published()

    def _wants_provide(self, provide: bool | None) -> bool:
        return self._provide if provide is None else bool(provide)

    def _forget_file(self, content_id: bytes, path: str) -> None:
        """A file retrieved without providing it: the store forgets it, the file stays."""
        self._store.remove(content_id)

    async def _retrieve(self, content_id: bytes, *, timeout: float | None,
                        provide: bool | None, path: str | None = None,
                        progress: Callable[..., Any] | None = None, whole: bool = True,
                        first: int = 0, last: int | None = None,
                        want_retrieval: bool = False) -> Any:
        if timeout is not None and not timeout >= 0:
            raise ValueError("timeout must be >= 0 (or None: no limit)")
        node = self._dht.node
        await node._cancel_point()
        engine = self._ensure()
        if len(engine.retrievals()) >= self._config.max_retrievals:
            raise StoreFullError(f"{self._config.max_retrievals} retrievals are running "
                                 "already (max_retrievals)")
        retrieval = engine.retrieve(content_id, now=node._now(), path=path,
                                    provide=self._wants_provide(provide), whole=whole,
                                    first=first, last=last)
        # Registered before the flush that dispatches the engine's events: a
        # content the store has ends inside ``retrieve`` already.
        wait = self._waits[retrieval.id] = _Wait(node._new_signal(), progress)
        expired = []
        if timeout is not None:
            async def expire() -> None:
                await self._sleep(timeout)
                expired.append(True)
                wait.signal.set()
            node._spawn(expire(), "a retrieval's time limit")
        try:
            node._flush()
            while wait.end is None and not expired:
                wait.signal.clear()
                await wait.signal.wait()
        finally:
            self._waits.pop(retrieval.id, None)
            if wait.end is None and self._engine is engine:
                engine.cancel(retrieval.id, now=node._now())
                node._flush()
        end = wait.end
        if end is None:
            raise TimeoutError(f"content {content_id.hex()} not retrieved within {timeout} s "
                               "(retrieving again resumes)")
        if isinstance(end, BaseException):
            raise end
        if type(end) is ev.ContentRetrievalFailed:
            self._counters["retrievals_failed"] += 1
            reason = end.reason
            if reason == "store_full":
                raise StoreFullError(f"no room in the store for content {content_id.hex()}")
            if reason == "store_error":
                raise ContentError(f"content {content_id.hex()}: the store could not open "
                                   f"{path or 'its entry'} for writing")
            raise ContentNotFoundError(f"content {content_id.hex()}: {reason.replace('_', ' ')}")
        self._counters["retrieved"] += 1
        return retrieval if want_retrieval else end

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    # -- figures ---------------------------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        """The engine's counters (serving, retrieving, refusals), the store's,
        and this facade's."""
        stats = dict(self._counters)
        if self._engine is not None:
            stats.update(self._engine.stats)
        stats.update(self._store.statistics())
        return stats
