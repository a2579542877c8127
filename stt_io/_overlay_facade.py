"""``OverlayFacade``: what the pub/sub and content facades share with the node.

Both attach a sans-I/O overlay engine to the :class:`~stt_proto.overlay.OverlayHost`
of the node behind a started :class:`KademliaDHT`, take the engine's events
from the node's dispatch, let go of it when the node or the DHT stops, and
make calls wait for a condition on the engine's state. Getting that hand-over
right (nothing left registered on the node after a detach, every waiting call
woken with the reason) is the same work for every overlay, so it lives here
once; a facade says only how to make its engine and what to do around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import NodeStoppedError

__all__ = ["OverlayFacade"]


class _Waiter:
    __slots__ = ("ready", "signal", "error", "expired")

    def __init__(self, ready: Callable[[], bool], signal: Any) -> None:
        self.ready = ready
        self.signal = signal
        self.error: BaseException | None = None
        self.expired = False


class OverlayFacade:
    """An overlay engine attached to the node behind a DHT, for an adapter facade.

    A subclass sets the class attributes and implements :meth:`_new_engine`
    and :meth:`_event_handlers`; :meth:`_attached` and :meth:`_detached` are
    its hooks around the hand-over.

    Waiting calls use :meth:`_wait_until`: the node calls :meth:`_on_flush`
    after every flush while some call waits, and a waiting call's signal is
    set only once its condition holds, so a call is not woken by every event
    that leaves its condition false.
    """

    #: The engine's slot on the OverlayHost: ``host.<slot>``,
    #: ``host.attach_<slot>(engine)``, ``host.detach_<slot>()``.
    _slot: str
    #: The NodeStoppedError message of a call made before the DHT started.
    _not_started: str
    #: What is raised when another facade's engine holds the slot already.
    _taken_error: type[Exception]
    _taken_message: str

    def __init__(self, dht: Any) -> None:
        if not hasattr(dht, "node") or not hasattr(dht, "_started"):
            raise TypeError(f"dht must be a KademliaDHT, not {type(dht).__name__}")
        self._dht = dht
        self._engine: Any = None
        self._waiters: set[_Waiter] = set()

    @property
    def dht(self) -> Any:
        return self._dht

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- the hand-over -----------------------------------------------------------------

    def _new_engine(self, node: Any) -> Any:
        """A new engine for ``node`` (the adapter node, started)."""
        raise NotImplementedError

    def _event_handlers(self) -> dict[type, Callable[[Any], None]]:
        """The engine's event types and the methods that take them from the node."""
        raise NotImplementedError

    def _attached(self, engine: Any) -> None:
        """Called once ``engine`` is attached and registered."""

    def _detached(self, error: NodeStoppedError) -> None:
        """Called once the engine is let go of; ``error`` is what the calls
        waiting on it raise."""

    def _ensure(self) -> Any:
        """The attached engine, attaching it first if needed."""
        dht, node = self._dht, self._dht.node
        if self._engine is not None:
            if dht._started and node._running:
                return self._engine
            self._detach("the DHT stopped")
        if not dht._started or dht._engine is None or not node._running:
            raise NodeStoppedError(self._not_started)
        host = node._engine
        if getattr(host, self._slot) is not None:
            raise self._taken_error(self._taken_message)
        engine = self._new_engine(node)
        getattr(host, f"attach_{self._slot}")(engine)
        for kind, handler in self._event_handlers().items():
            node._overlay_handlers[kind] = handler
        node._stop_callbacks.append(self._on_node_stop)
        self._engine = engine
        self._attached(engine)
        return engine

    def _on_node_stop(self) -> None:
        self._detach("the node stopped")

    def _detach(self, why: str) -> None:
        """Let go of the engine and take back all this facade registered on the
        node; every waiting call fails with ``NodeStoppedError(why)``."""
        engine = self._engine
        if engine is None:
            return
        self._engine = None
        node = self._dht.node
        host = node._engine
        if getattr(host, self._slot) is engine:
            getattr(host, f"detach_{self._slot}")()
        for kind, handler in self._event_handlers().items():
            if node._overlay_handlers.get(kind) == handler:
                del node._overlay_handlers[kind]
        if self._on_node_stop in node._stop_callbacks:
            node._stop_callbacks.remove(self._on_node_stop)
        if self._on_flush in node._flush_callbacks:
            node._flush_callbacks.remove(self._on_flush)
        error = NodeStoppedError(why)
        for waiter in self._waiters:
            waiter.error = error
            waiter.signal.set()
        self._detached(error)

    # -- waiting -----------------------------------------------------------------------

    def _on_flush(self) -> None:
        for waiter in list(self._waiters):
            if waiter.error is None and waiter.ready():
                waiter.signal.set()

    async def _wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``ready()``; False if ``timeout`` seconds passed first.

        Raises:
            NodeStoppedError: the node or the facade stopped meanwhile.
        """
        if ready():
            return True
        node = self._dht.node
        waiter = _Waiter(ready, node._new_signal())
        if not self._waiters:
            node._flush_callbacks.append(self._on_flush)
        self._waiters.add(waiter)
        if timeout is not None:
            node._spawn(self._expire(waiter, timeout),
                        f"a {type(self).__name__} call's time limit")
        try:
            while True:
                if waiter.error is not None:
                    raise waiter.error
                if ready():
                    return True
                if waiter.expired:
                    return False
                waiter.signal.clear()
                await waiter.signal.wait()
        finally:
            self._waiters.discard(waiter)
            if not self._waiters and self._on_flush in node._flush_callbacks:
                node._flush_callbacks.remove(self._on_flush)

    async def _expire(self, waiter: _Waiter, seconds: float) -> None:
        await self._sleep(seconds)
        waiter.expired = True
        waiter.signal.set()

    async def _sleep(self, seconds: float) -> None:
        await self._dht.node._sleep(seconds)
