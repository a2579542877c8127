"""``PubSubManager``: the pub/sub facade both adapters share.

The pub/sub itself is the sans-I/O :class:`stt_proto.pubsub.node.PubSubNode`,
attached to the node's :class:`stt_proto.overlay.OverlayHost` next to the DHT
(which it needs: subscribers meet as providers of the topic's key). This
module turns topic names into keys and back, waits where the engine says
"not now", and hands what the engine delivers to the application. The asyncio
and trio modules subclass it with their own ``sleep``; nothing else differs.

Theory of operation
-------------------
* **Attaching.** The engine is attached on the first call that needs it, or
  by :meth:`PubSubManagerBase.start`; the DHT must be started by then. The
  engine's epoch (what orders a restarted publisher's messages after its
  earlier ones) is the wall-clock time of attaching.
* **Waiting.** The node calls the manager after every flush (its
  ``_flush_callbacks``) while some call waits; each waiting call has a
  condition on the engine's state, and its signal is set only once the
  condition holds, so a publisher held back by full queues is not woken on
  every acknowledgement.
* **Delivery.** The engine emits ``PubSubMessage`` and ``PubSubGap`` events in
  the node's event dispatch. Plain handlers run right there, one after the
  other; an async handler has its own task and a bounded :class:`_Inbox`, so it
  sees one message at a time, in order; a pull :class:`Subscription` reads its
  own inbox. A slow consumer never holds up the node or another consumer:
  what does not fit its inbox is counted and reported to it as a :class:`TopicGap`
  with ``reason="overflow"`` at the place in the sequence where it was lost.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stt_proto import events as ev
from stt_proto.errors import MessageTooLargeError, PubSubError
from stt_proto.pubsub.config import PubSubConfig
from stt_proto.pubsub.messages import topic_key
from stt_proto.pubsub.node import PubSubNode

from ._arguments import check_handler
from ._dht import DHTNode
from ._overlay_facade import OverlayFacade
from .errors import NodeStoppedError

__all__ = ["PubSubManagerBase", "TopicMessage", "TopicGap", "Subscription"]

logger = logging.getLogger("stt.pubsub")

#: Seconds ``subscribe`` waits by default for the topic's mesh (never an error).
JOIN_TIMEOUT = 5.0
#: Messages an async handler or a pull subscription holds by default.
MAX_QUEUE = 1024
#: The address of a publisher the node has no address for.
NO_ADDRESS = ("", 0)


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """A message of a subscribed topic. ``publisher`` is the verified author
    (its signature was checked), not the peer that forwarded it; ``seq``
    counts that publisher's messages on the topic from 1 within its ``epoch``."""

    topic: str
    data: bytes
    publisher: DHTNode
    message_id: bytes
    seq: int
    epoch: int


@dataclass(frozen=True, slots=True)
class TopicGap:
    """``count`` messages of ``publisher`` on ``topic`` that this consumer will not see.

    ``reason`` is ``"lost"`` when the network lost them for good (nobody could
    repair them within the repair window) and ``"overflow"`` when they arrived
    but the consumer's queue (``max_queue``) was full. Either way delivery goes
    on after them, in order.
    """

    topic: str
    publisher: DHTNode
    count: int
    reason: str


class _Inbox:
    """A consumer's bounded queue of :class:`TopicMessage` and :class:`TopicGap` items.

    At most ``limit`` messages wait. A message that finds it full is counted
    per publisher instead; those counts become :class:`TopicGap` items placed before
    the next message that fits, or handed out when the queue runs empty, so
    they surface exactly where the messages went missing. Gaps reported by the
    engine while the queue is full are merged the same way. Gap items never
    outnumber the messages behind them (plus one per publisher at the end).
    """

    __slots__ = ("items", "limit", "queued", "pending", "signal", "error", "closed", "missed")

    def __init__(self, limit: int, signal: Any) -> None:
        self.items: deque[Any] = deque()
        self.limit = limit
        self.queued = 0          # messages (not gaps) in ``items``
        self.pending: dict[tuple[bytes, str], list[Any]] = {}  # (publisher, reason) -> [node, n]
        self.signal = signal
        self.error: BaseException | None = None
        self.closed = False
        self.missed = 0          # messages dropped because the queue was full

    def put(self, message: TopicMessage) -> bool:
        if self.closed:
            return False
        if self.queued >= self.limit:
            self._hold(message.topic, message.publisher, 1, "overflow")
            self.missed += 1
            return False
        self._release()
        self.items.append(message)
        self.queued += 1
        self.signal.set()
        return True

    def put_gap(self, gap: TopicGap) -> None:
        if self.closed:
            return
        if self.queued >= self.limit or self.pending:
            self._hold(gap.topic, gap.publisher, gap.count, gap.reason)
        else:
            self.items.append(gap)
            self.signal.set()

    def _hold(self, topic: str, publisher: DHTNode, count: int, reason: str) -> None:
        entry = self.pending.get((publisher.node_id, reason))
        if entry is None:
            self.pending[(publisher.node_id, reason)] = [topic, publisher, count]
        else:
            entry[2] += count

    def _release(self) -> None:
        for (_, reason), (topic, publisher, count) in self.pending.items():
            self.items.append(TopicGap(topic, publisher, count, reason))
        self.pending.clear()

    def take(self) -> Any:
        """The next item, or ``None`` if there is none now."""
        if not self.items and self.pending:
            self._release()
        if not self.items:
            return None
        item = self.items.popleft()
        if type(item) is TopicMessage:
            self.queued -= 1
        return item

    def fail(self, error: BaseException) -> None:
        """No more items come: once the queued ones are taken, ``error`` is raised."""
        self.error = error
        self.signal.set()

    def close(self) -> None:
        """The consumer left: drop what waits and end its reading."""
        self.closed = True
        self.items.clear()
        self.pending.clear()
        self.queued = 0
        self.signal.set()

    async def get(self) -> Any:
        """The next item; ``None`` once closed. Raises the error given to :meth:`fail`."""
        while True:
            if self.closed:
                return None
            item = self.take()
            if item is not None:
                return item
            if self.error is not None:
                raise self.error
            self.signal.clear()
            await self.signal.wait()


class Subscription:
    """A pull subscription (from :meth:`PubSubManagerBase.subscription`):
    ``async for item in sub`` yields :class:`TopicMessage` items in each publisher's
    order, and a :class:`TopicGap` where messages will not come (check
    ``isinstance(item, TopicGap)``; a gap never hides silently). :attr:`missed`
    counts the messages dropped because nobody read and the queue was full.

    Iteration ends when the ``async with`` block is left; when the node or the
    manager stops it raises :class:`~stt_io.errors.NodeStoppedError` once the
    messages already queued were read.
    """

    def __init__(self, topic: str, inbox: _Inbox) -> None:
        self.topic = topic
        self._inbox = inbox

    @property
    def missed(self) -> int:
        return self._inbox.missed

    @property
    def queued(self) -> int:
        """Messages waiting to be read."""
        return self._inbox.queued

    async def receive(self) -> TopicMessage | TopicGap:
        """The next item (see the class docstring).

        Raises:
            StopAsyncIteration: the subscription was left.
            NodeStoppedError: the node or the manager stopped.
        """
        item = await self._inbox.get()
        if item is None:
            raise StopAsyncIteration
        return item

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> TopicMessage | TopicGap:
        return await self.receive()


class _Handler:
    __slots__ = ("fn", "on_gap", "inbox")

    def __init__(self, fn: Callable[..., Any], on_gap: Callable[..., Any] | None,
                 inbox: _Inbox | None) -> None:
        self.fn = fn
        self.on_gap = on_gap
        self.inbox = inbox   # async handlers only: their task reads it


class _Topic:
    __slots__ = ("name", "key", "handlers", "subscriptions")

    def __init__(self, name: str, key: bytes) -> None:
        self.name = name
        self.key = key
        self.handlers: list[_Handler] = []
        self.subscriptions: list[Subscription] = []


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or \
        inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


class _SubscriptionContext:
    def __init__(self, manager: PubSubManagerBase, topic: str, max_queue: int,
                 timeout: float | None) -> None:
        self._args = (manager, topic, max_queue, timeout)
        self._entered: tuple[bytes, Subscription] | None = None

    async def __aenter__(self) -> Subscription:
        manager, topic, max_queue, timeout = self._args
        self._entered = await manager._open_subscription(topic, max_queue, timeout)
        return self._entered[1]

    async def __aexit__(self, *exc_info: object) -> None:
        manager = self._args[0]
        key, sub = self._entered
        manager._close_subscription(key, sub)


class PubSubManagerBase(OverlayFacade):
    """Publish and subscribe over a started :class:`KademliaDHT` (the manual's
    ``PubSubManager(dht=dht)``).

    Topics are names (``str``, 1 to 255 bytes of UTF-8). Every subscriber gets
    each message published while it is subscribed once, and each publisher's
    messages in the order they were published; what is lost for good is
    reported as a :class:`TopicGap`, never skipped in silence.

    :param dht: the DHT (started before the first call; it may be started after
        the manager is made).
    :param mesh_degree: mesh peers per topic (``mesh_low`` and ``mesh_high``
        default to ``min(4, mesh_degree)`` and ``max(12, mesh_degree)``).
    :param max_message_size: largest message; ``publish`` refuses more with
        ``MessageTooLargeError``.
    :param max_queue: messages an async handler or a pull subscription holds
        before further ones count as an overflow :class:`TopicGap` (default 1024).
    :param join_timeout: how long ``subscribe`` waits, at most, for the topic's
        mesh by default (5 s).
    :param pubsub_config: any other :class:`stt_proto.pubsub.config.PubSubConfig`
        field (``heartbeat``, ``repair_window``, ``max_queued_bytes_per_peer``, ...).
    """

    _slot = "pubsub"
    _not_started = "start the DHT before publishing or subscribing"
    _taken_error = PubSubError
    _taken_message = "another PubSubManager is attached to this node"

    def __init__(self, dht: Any, *, mesh_degree: int = 6, max_message_size: int = 1 << 20,
                 max_queue: int = MAX_QUEUE, join_timeout: float | None = JOIN_TIMEOUT,
                 **pubsub_config: Any) -> None:
        super().__init__(dht)
        if isinstance(mesh_degree, int) and not isinstance(mesh_degree, bool):
            pubsub_config.setdefault("mesh_low", min(4, mesh_degree))
            pubsub_config.setdefault("mesh_high", max(12, mesh_degree))
        self._config = PubSubConfig(mesh_degree=mesh_degree, max_message_size=max_message_size,
                                    **pubsub_config)
        self._max_queue = _check_queue(max_queue)
        if join_timeout is not None and not join_timeout >= 0:
            raise ValueError("join_timeout must be >= 0 (or None: no limit)")
        self._join_timeout = join_timeout
        self._engine_stats: dict[str, int] = {}
        self._topics: dict[bytes, _Topic] = {}
        self._counters = dict.fromkeys((
            "handler_calls", "handler_errors", "handler_overflow", "gaps_lost",
            "messages_lost", "messages_unclaimed", "publish_waits"), 0)

    # -- life cycle --------------------------------------------------------------------

    @property
    def engine(self) -> PubSubNode:
        """The sans-I/O engine (attached by :meth:`start` or the first call)."""
        if self._engine is None:
            raise NodeStoppedError("the pub/sub manager is not started")
        return self._engine

    async def start(self) -> None:
        """Attach to the DHT's node now (the first call does it otherwise).

        Raises:
            NodeStoppedError: the DHT is not started.
            PubSubError: another pub/sub engine is attached to the node.
        """
        self._ensure()

    async def stop(self) -> None:
        """Leave every topic (its DHT announcements are withdrawn), detach from the
        node. Waiting calls and pull subscriptions fail with ``NodeStoppedError``.
        A later call attaches again, with a new epoch."""
        engine, node = self._engine, self._dht.node
        if engine is not None and node._running:
            now = node._now()
            for key in list(self._topics):
                engine.unsubscribe(key, now=now)
            node._flush()
        self._detach("the pub/sub manager stopped")

    def _new_engine(self, node: Any) -> PubSubNode:
        now = node._now()
        return PubSubNode(node.identity, self._config, wall_offset=time.time() - now,
                          rng=node._config.rng, now=now)

    def _event_handlers(self) -> dict[type, Callable[[Any], None]]:
        return {ev.PubSubMessage: self._on_message, ev.PubSubGap: self._on_gap}

    def _attached(self, engine: PubSubNode) -> None:
        self._engine_stats = engine.stats

    def _detached(self, error: NodeStoppedError) -> None:
        for state in self._topics.values():
            for entry in state.handlers:
                if entry.inbox is not None:
                    entry.inbox.close()
            for sub in state.subscriptions:
                sub._inbox.fail(error)
        self._topics.clear()

    # -- publishing ----------------------------------------------------------------------

    async def flush(self, *, timeout: float | None = None) -> bool:
        """Wait until everything this node published or forwarded has been
        acknowledged by the peers it went to (a node that stops closes its
        sessions without sending what they still hold). False if ``timeout``
        seconds passed first.

        Raises:
            NodeStoppedError: the node or the manager stopped meanwhile.
        """
        self._ensure()
        host = self._dht.node._engine
        return await self._wait_until(lambda: not host.pubsub_unsettled(), timeout)

    async def publish(self, topic: str, data: bytes, *, timeout: float | None = None) -> bytes:
        """Sign ``data`` as this node's next message on ``topic`` and hand it to
        the topic's mesh (when subscribed) or to a few subscribers found in the
        DHT (the fan-out); returns its 32-byte message id.

        Waits while every peer it would go to has a full queue (backpressure:
        nothing is dropped), and, the first time, until the DHT lookup for the
        topic's subscribers ends. If the lookup finds none, the message reaches
        nobody: pub/sub keeps nothing for later subscribers. This node's own
        handlers of the topic do not get it.

        :param timeout: seconds to wait for room, at most; the message is not
            sent if it passes. The first lookup itself is bounded by the DHT.

        Raises:
            MessageTooLargeError: ``data`` exceeds ``max_message_size``
                (checked before anything else happens).
            TypeError: ``data`` is not bytes-like, or ``topic`` not a ``str``.
            ValueError: an empty or too long topic name.
            TimeoutError: no room within ``timeout`` seconds.
            NodeStoppedError: the DHT is not started, or the node stopped.
            PubSubError: ``max_topics`` topics are in use.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        size = memoryview(data).nbytes
        if size > self._config.max_message_size:
            raise MessageTooLargeError(
                f"a message of {size} bytes exceeds max_message_size "
                f"({self._config.max_message_size})")
        key = topic_key(topic)
        node = self._dht.node
        await node._cancel_point()
        engine = self._ensure()
        if not engine.publish_ready(key):
            self._counters["publish_waits"] += 1
            if not await self._wait_until(lambda: engine.publish_ready(key), timeout):
                raise TimeoutError(f"no room to publish on {topic!r} within {timeout} s")
            engine = self._ensure()
        else:
            await node._schedule_point()
        message = engine.publish(key, bytes(data), now=node._now())
        node._flush()
        # The first messages on a topic wait in the engine for the lookup of its
        # subscribers; "handed over" means out of that wait.
        await self._wait_until(lambda: not engine.holds_unsent(key, message), None)
        return message.message_id

    # -- subscribing -------------------------------------------------------------------

    async def subscribe(self, topic: str, handler: Callable[..., Any], *,
                        on_gap: Callable[..., Any] | None = None,
                        timeout: Any = ...) -> None:
        """Call ``handler(topic, data, publisher)`` for every message of ``topic``
        (``publisher`` is a :class:`DHTNode`, the verified author).

        A plain function is called inline as the node dispatches the message
        (keep it short; it may start tasks). An ``async def`` handler gets a
        task of its own and a queue of ``max_queue`` messages: it handles one
        message at a time, in order; what does not fit while it is behind is
        reported as an overflow gap. ``on_gap(topic, publisher, count)``
        (plain or async) hears of messages that will not come; without it gaps
        are logged (logger ``stt.pubsub``) and counted in :meth:`statistics`.
        A handler's exception is logged and counted, nothing more. The same
        handler given twice for a topic is one handler.

        Returns once this node knows the topic's other subscribers and has mesh
        peers among them (or knows there are none), so messages published after
        it returns are owed to it; after ``timeout`` (default ``join_timeout``)
        it returns anyway and the mesh forms in the background.

        Raises:
            TypeError: ``handler`` or ``on_gap`` is not callable, ``topic`` not a ``str``.
            NodeStoppedError: the DHT is not started, or the node stopped.
            PubSubError: ``max_topics`` topics are in use.
        """
        check_handler(handler, "the handler")
        if on_gap is not None:
            check_handler(on_gap, "on_gap")
        key = topic_key(topic)
        await self._dht.node._cancel_point()
        state = self._join(topic, key)
        if not any(entry.fn == handler for entry in state.handlers):
            inbox = None
            if _is_async(handler):
                inbox = _Inbox(self._max_queue, self._dht.node._new_signal())
            entry = _Handler(handler, on_gap, inbox)
            state.handlers.append(entry)
            if inbox is not None:
                self._dht.node._spawn(self._run_handler(state.name, entry),
                                      "a pub/sub handler")
        await self._wait_joined(key, self._join_timeout if timeout is ... else timeout)

    async def unsubscribe(self, topic: str, handler: Callable[..., Any] | None = None) -> None:
        """Stop calling ``handler`` for ``topic`` (``None``: every handler of it;
        pull subscriptions end with their ``async with``). Messages an async
        handler had not taken yet are dropped. When nothing is left listening,
        the node leaves the topic and withdraws its DHT announcement."""
        key = topic_key(topic)
        node = self._dht.node
        await node._cancel_point()
        state = self._topics.get(key)
        if state is not None:
            keep = [] if handler is None else [e for e in state.handlers if e.fn != handler]
            for entry in state.handlers:
                if entry not in keep and entry.inbox is not None:
                    entry.inbox.close()
            state.handlers = keep
            self._leave_if_unused(state)
        await node._schedule_point()

    def subscription(self, topic: str, *, max_queue: int | None = None,
                     timeout: Any = ...) -> Any:
        """``async with pubsub.subscription(topic) as sub:`` subscribes (waiting as
        :meth:`subscribe` does) and yields a :class:`Subscription` to iterate;
        leaving the block unsubscribes it. ``max_queue`` defaults to the
        manager's."""
        topic_key(topic)  # a bad name fails here, not at ``async with``
        return _SubscriptionContext(self, topic, _check_queue(self._max_queue if max_queue is None else max_queue),
                                    self._join_timeout if timeout is ... else timeout)

    async def _open_subscription(self, topic: str, max_queue: int,
                                 timeout: float | None) -> tuple[bytes, Subscription]:
        key = topic_key(topic)
        node = self._dht.node
        await node._cancel_point()
        state = self._join(topic, key)
        sub = Subscription(state.name, _Inbox(max_queue, node._new_signal()))
        state.subscriptions.append(sub)
        try:
            await self._wait_joined(key, timeout)
        except BaseException:
            self._close_subscription(key, sub)
            raise
        return key, sub

    def _close_subscription(self, key: bytes, sub: Subscription) -> None:
        sub._inbox.close()
        state = self._topics.get(key)
        if state is not None and sub in state.subscriptions:
            state.subscriptions.remove(sub)
            self._leave_if_unused(state)

    def _join(self, name: str, key: bytes) -> _Topic:
        engine = self._ensure()
        state = self._topics.get(key)
        if state is None:
            node = self._dht.node
            engine.subscribe(key, now=node._now())
            state = self._topics[key] = _Topic(name, key)
            node._flush()
        return state

    def _leave_if_unused(self, state: _Topic) -> None:
        if state.handlers or state.subscriptions or self._topics.get(state.key) is not state:
            return
        del self._topics[state.key]
        engine, node = self._engine, self._dht.node
        if engine is not None and node._running:
            engine.unsubscribe(state.key, now=node._now())
            node._flush()

    async def _wait_joined(self, key: bytes, timeout: float | None) -> None:
        engine = self._engine

        if not await self._wait_until(lambda: engine.joined(key), timeout):
            logger.debug("subscribe: the mesh of topic %s is still forming", key.hex()[:16])

    # -- delivery ------------------------------------------------------------------------

    def _node_of(self, node_id: bytes) -> DHTNode:
        """The publisher with the address the routing table (or a session) has for it."""
        dht_engine = self._dht._engine
        if dht_engine is not None:
            contact = dht_engine.table.get(node_id)
            if contact is not None:
                return DHTNode(node_id, tuple(contact.address))
        pool = self._dht.node._engine.pool
        session_id = pool.session_of(node_id)
        known = pool.peer_of(session_id) if session_id is not None else None
        if known is not None and known[1] is not None:
            return DHTNode(node_id, tuple(known[1]))
        return DHTNode(node_id, NO_ADDRESS)

    def _on_message(self, event: ev.PubSubMessage) -> None:
        state = self._topics.get(event.topic)
        if state is None:  # left meanwhile: the engine delivered what it had
            self._counters["messages_unclaimed"] += 1
            return
        message = TopicMessage(state.name, event.data, self._node_of(event.publisher),
                          event.message_id, event.seq, event.epoch)
        for entry in list(state.handlers):
            if entry.inbox is None:
                self._call(entry.fn, (state.name, message.data, message.publisher))
            elif not entry.inbox.put(message):
                self._counters["handler_overflow"] += 1
        for sub in state.subscriptions:
            if not sub._inbox.put(message):
                self._counters["handler_overflow"] += 1

    def _on_gap(self, event: ev.PubSubGap) -> None:
        state = self._topics.get(event.topic)
        self._counters["gaps_lost"] += 1
        self._counters["messages_lost"] += event.count
        if state is None:
            return
        gap = TopicGap(state.name, self._node_of(event.publisher), event.count, "lost")
        for entry in list(state.handlers):
            if entry.inbox is None:
                self._report_gap(entry, gap)
            else:
                entry.inbox.put_gap(gap)
        for sub in state.subscriptions:
            sub._inbox.put_gap(gap)

    def _call(self, fn: Callable[..., Any], args: tuple) -> None:
        """Run a plain callback inline; an awaitable it returns runs as a task."""
        self._counters["handler_calls"] += 1
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                self._dht.node._spawn(self._guard(result), "a pub/sub handler")
        except Exception:  # an application bug must not break the node
            self._counters["handler_errors"] += 1
            logger.exception("pub/sub handler %r failed", fn)

    async def _guard(self, awaitable: Any) -> None:
        try:
            await awaitable
        except Exception:
            self._counters["handler_errors"] += 1
            logger.exception("pub/sub handler failed")

    def _report_gap(self, entry: _Handler, gap: TopicGap) -> None:
        if entry.on_gap is not None:
            self._call(entry.on_gap, (gap.topic, gap.publisher, gap.count))
        else:
            logger.warning("pub/sub topic %r: %d message(s) of %s will not be delivered (%s)",
                           gap.topic, gap.count, gap.publisher.node_id.hex()[:16], gap.reason)

    async def _run_handler(self, topic: str, entry: _Handler) -> None:
        """An async handler's task: one item at a time, until it is removed."""
        inbox = entry.inbox
        while (item := await inbox.get()) is not None:
            if type(item) is TopicGap:
                if entry.on_gap is not None and _is_async(entry.on_gap):
                    self._counters["handler_calls"] += 1
                    await self._guard(entry.on_gap(item.topic, item.publisher, item.count))
                else:
                    self._report_gap(entry, item)
                continue
            self._counters["handler_calls"] += 1
            await self._guard(entry.fn(topic, item.data, item.publisher))

    # -- figures -------------------------------------------------------------------------

    def topics(self) -> list[str]:
        """The topics this node subscribes to."""
        return [state.name for state in self._topics.values()]

    def peers(self, topic: str) -> list[DHTNode]:
        """The topic's mesh peers (for a topic this node only publishes on, its
        fan-out: the subscribers it sends to)."""
        key = topic_key(topic)
        engine = self._engine
        if engine is None:
            return []
        if key in self._topics:
            ids = engine.mesh_peers(key)
        else:
            ids = engine.fanout_peers(key)
        return [self._node_of(node_id) for node_id in ids]

    def statistics(self) -> dict[str, int]:
        """The engine's counters (``messages_published``, ``messages_delivered``,
        ``mesh_grafted``, ...; none before the first attach) and the manager's:
        ``handler_calls``, ``handler_errors``, ``handler_overflow`` (messages
        an async handler or a pull subscription had no room for),
        ``gaps_lost`` and ``messages_lost`` (reported lost by the engine),
        ``messages_unclaimed`` (delivered after the topic was left),
        ``publish_waits`` (publishes that waited for room or a lookup),
        ``topics`` and ``mesh_peers`` (now)."""
        stats = dict(self._engine_stats)
        stats.update(self._counters)
        stats["topics"] = len(self._topics)
        engine = self._engine
        stats["mesh_peers"] = sum(len(engine.mesh_peers(k)) for k in self._topics) \
            if engine is not None else 0
        return stats


def _check_queue(max_queue: Any) -> int:
    if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
        raise ValueError("max_queue must be a positive int")
    return max_queue
