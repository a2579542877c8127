"""The event loops ``stt`` runs on: what differs between asyncio and trio.

Each command is written once, against the API both adapters share, and runs
on the adapter ``--backend`` picks (:mod:`stt_io.asyncio` by default, or
:mod:`stt_io.trio`). What little differs between the event loops (running the
command, sleeping, waiting forever, bounding a wait) goes through a
:class:`Backend`.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._core import NodeBase, Session
from .args import CommandError

__all__ = ["Backend", "load_backend", "spawn"]

T = TypeVar("T")


class _Expired(Exception):
    """A :meth:`Backend.within` limit passed."""


class Backend(abc.ABC):
    """What a command needs from its event loop, beyond the adapter's API.

    Tasks are not part of it: a command hands them to its node (see
    :func:`spawn`), so they end with the node on either backend.
    """

    name: str
    #: The adapter's node class (``stt_io.asyncio.Node`` or ``stt_io.trio.Node``).
    Node: type[NodeBase]
    #: The adapter's DHT class (``KademliaDHT`` of the same module).
    KademliaDHT: type

    @abc.abstractmethod
    def run(self, command: Callable[..., Awaitable[int]], *args: Any) -> int:
        """Run ``await command(*args)`` in a new event loop; return its result."""

    @abc.abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Sleep on the backend's clock."""

    @abc.abstractmethod
    async def wait_forever(self) -> None:
        """Block until cancelled (by Ctrl-C or a signal)."""

    @abc.abstractmethod
    async def _wait_for(self, awaitable: Awaitable[T], seconds: float) -> T:
        """``await awaitable``, cancelled after ``seconds``; raises :class:`_Expired`
        then (not ``TimeoutError``, which the awaitable may raise itself:
        ``ConnectionTimeoutError`` is one)."""

    async def within(self, seconds: float, awaitable: Awaitable[T], what: str) -> T:
        """``await awaitable``, for at most ``seconds``.

        Args:
            seconds: the limit (the command's ``--timeout``).
            awaitable: what to wait for; it is cancelled at the limit.
            what: what is awaited, for the message (``"reply"``).

        Returns:
            The awaitable's result.

        Raises:
            CommandError: the limit passed first ("no reply within 5 s").
        """
        try:
            return await self._wait_for(awaitable, seconds)
        except _Expired:
            raise CommandError(f"no {what} within {seconds:g} s (--timeout)") from None


class _AsyncioBackend(Backend):
    name = "asyncio"

    def __init__(self) -> None:
        from ..asyncio import KademliaDHT, Node

        self.Node = Node
        self.KademliaDHT = KademliaDHT

    def run(self, command: Callable[..., Awaitable[int]], *args: Any) -> int:
        return asyncio.run(command(*args))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_forever(self) -> None:
        await asyncio.Event().wait()

    async def _wait_for(self, awaitable: Awaitable[T], seconds: float) -> T:
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError as exc:  # not TimeoutError itself before 3.11
            if type(exc) is not asyncio.TimeoutError:  # the awaitable's own
                raise
            raise _Expired from None


class _TrioBackend(Backend):
    name = "trio"

    def __init__(self, trio: Any) -> None:
        from ..trio import KademliaDHT, Node

        self._trio = trio
        self.Node = Node
        self.KademliaDHT = KademliaDHT

    def run(self, command: Callable[..., Awaitable[int]], *args: Any) -> int:
        return self._trio.run(command, *args)

    async def sleep(self, seconds: float) -> None:
        await self._trio.sleep(seconds)

    async def wait_forever(self) -> None:
        await self._trio.sleep_forever()

    async def _wait_for(self, awaitable: Awaitable[T], seconds: float) -> T:
        try:
            with self._trio.fail_after(seconds):
                return await awaitable
        except self._trio.TooSlowError:
            raise _Expired from None


def load_backend(name: str) -> Backend:
    """The :class:`Backend` called ``name``.

    Raises:
        CommandError: ``trio`` without trio installed (an optional dependency,
            ``pip install 'seigr-toolset-transmissions[trio]'``).
        ValueError: an unknown name.
    """
    if name == "trio":
        try:
            import trio
        except ImportError as exc:
            raise CommandError("--backend trio needs trio (pip install "
                               f"'seigr-toolset-transmissions[trio]'): {exc}") from None
        return _TrioBackend(trio)
    if name == "asyncio":
        return _AsyncioBackend()
    raise ValueError(f"unknown backend {name!r}")


def spawn(session: Session, coro: Awaitable[Any], what: str) -> None:
    """Run ``coro`` as a task of the session's node, on whichever backend: the
    node cancels it when it stops, and logs (never raises) its exception."""
    session._node._spawn(coro, what)
