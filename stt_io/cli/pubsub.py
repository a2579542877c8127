"""``stt pub TOPIC [MESSAGE|-]`` and ``stt sub TOPIC``: pub/sub from the shell.

Both run a short-lived DHT member with a :class:`~stt_io.asyncio.PubSubManager`
and join the network through ``--bootstrap HOST:PORT/NODE_ID``, as ``stt dht``
does (``stt sub`` may also be the first member: others then join through the
bootstrap string it prints).

``stt pub`` publishes MESSAGE (its UTF-8 text), or reads stdin when MESSAGE is
``-`` or missing: one message per line, published as each line arrives, so
``tail -f log | stt pub logs`` streams. The newline (and a ``\\r`` before it)
is not part of the message and empty lines are skipped; ``--whole`` publishes
all of stdin as one message instead (bytes as they are). It exits once every
peer it sent to has acknowledged everything, so a message is not lost with the
process; status 1 when no subscriber was found for any message. ``--timeout``
bounds each network wait (the bootstrap, each publish, the final
acknowledgements), never the wait for stdin: a pipe may be quiet for hours.

``stt sub`` prints one line per message on stdout::

    <first 16 hex digits of the publisher's id> <seq> <data>

where ``data`` is the text when the message is printable UTF-8 (no newline or
other control character) and ``hex:`` followed by its hex digits otherwise
(also for printable text that itself starts with ``hex:``, so the two never
mix up). ``--raw`` writes only each message's data, followed by a newline
unless it ends with one (the rule of ``stt dht get``), so lines published from
a file come out as the same lines. Messages that will not come (a gap) are one
``stt: ...`` line on stderr with their count, never a silent skip. It stops
after ``--count`` messages (status 0), at Ctrl-C (130), or when ``--timeout``
passes without the next message (status 1).

Status lines (subscribed, published) go to stderr, so stdout holds only data.
"""

from __future__ import annotations

import argparse
import importlib
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

from stt_proto.pubsub.messages import topic_key

from .._pubsub import TopicGap
from ..errors import BootstrapError, MessageTooLargeError
from . import args as cli_args
from .args import CommandError, UsageError, stderr_line
from .backends import Backend
from .dht import bootstrap_entry

__all__ = ["add_parsers", "topic_name", "format_message", "MAX_MESSAGE_SIZE",
           "JOIN_TIMEOUT", "READ_AHEAD_LINES"]

#: Largest message ``stt pub`` sends (the library's default ``max_message_size``).
MAX_MESSAGE_SIZE = 1 << 20
#: Seconds ``stt sub`` waits for the bootstrap and the topic's mesh when
#: ``--timeout`` is not given (it then waits for messages without a limit).
JOIN_TIMEOUT = 30.0
#: Lines of stdin ``stt pub`` reads ahead of what it has published: the reading
#: thread blocks past it, so a fast producer is held back by the network
#: (publish's backpressure) instead of filling memory.
READ_AHEAD_LINES = 16
#: Hex digits of the publisher's id in ``stt sub`` lines (enough to tell
#: publishers apart by eye; ``stt id`` prints the whole id).
PUBLISHER_DIGITS = 16
#: Bytes read at a time while counting an over-long line or stdin.
CHUNK = 1 << 16


def topic_name(text: str) -> str:
    """A topic name: 1 to 255 bytes of UTF-8 (checked as the library checks it)."""
    try:
        topic_key(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _common(parser: argparse.ArgumentParser, *, timeout_help: str,
            timeout_default: float | None) -> None:
    parser.add_argument("topic", type=topic_name, metavar="TOPIC",
                        help="the topic's name, 1 to 255 bytes of UTF-8")
    cli_args.seed_options(parser)
    cli_args.identity_option(parser)
    # No list default: the help would show it after saying what "none" means.
    parser.add_argument("--bootstrap", type=bootstrap_entry, action="append",
                        metavar="HOST:PORT/NODE_ID",
                        help="a member to join through; repeat for more (default: none, "
                             "this is the first member of a network)")
    parser.add_argument("--timeout", type=cli_args.seconds, default=timeout_default,
                        metavar="SECONDS", help=timeout_help)
    cli_args.backend_option(parser)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    pub = sub.add_parser(
        "pub", help="publish messages on a topic",
        description="Join the network, publish MESSAGE (or each line of stdin) on "
                    "TOPIC, and exit once the subscribers it sent to have it.")
    _common(pub, timeout_default=30.0,
            timeout_help="longest wait for the bootstrap, for each publish (room in the "
                         "queues, finding subscribers) and for the final acknowledgements")
    pub.add_argument("message", nargs="?", default="-", metavar="MESSAGE|-",
                     help="the message as text; - (the default) reads stdin, one "
                          "message per line (empty lines skipped)")
    pub.add_argument("--whole", action="store_true",
                     help="with -, publish all of stdin as one message (bytes as they are) "
                          "instead of one per line")
    pub.set_defaults(command=pub_command)

    sub_ = sub.add_parser(
        "sub", help="print the messages of a topic",
        description="Join the network, subscribe to TOPIC and print each message as "
                    "'PUBLISHER SEQ DATA' until Ctrl-C, --count or --timeout.")
    _common(sub_, timeout_default=None,
            timeout_help="longest wait for the bootstrap and the topic's mesh, and for "
                         f"each next message (default: {JOIN_TIMEOUT:g} s to join, "
                         "no limit on messages)")
    sub_.add_argument("--count", type=cli_args.positive_int, metavar="N",
                      help="exit (status 0) after N messages (default: run until "
                           "interrupted)")
    sub_.add_argument("--raw", action="store_true",
                      help="write only each message's data (and a newline unless it "
                           "ends with one)")
    sub_.add_argument("--host", default="0.0.0.0", help="address to bind")
    sub_.add_argument("--port", type=cli_args.listen_port, default=0,
                      help="UDP port to bind; 0 picks a free one")
    sub_.set_defaults(command=sub_command)


# ---------------------------------------------------------------------------- shared


def _manager_class(io: Backend) -> type:
    """The backend's ``PubSubManager`` (it lives next to its ``KademliaDHT``)."""
    return importlib.import_module(io.KademliaDHT.__module__).PubSubManager


def _identity(args: argparse.Namespace) -> Any:
    identity = cli_args.identity(args.identity)
    if identity is None:
        from stt_proto.identity import Identity
        identity = Identity.generate()
    return identity


async def _join(dht: Any, args: argparse.Namespace, io: Backend, timeout: float) -> None:
    if not args.bootstrap:
        return
    try:
        await io.within(timeout, dht.bootstrap(args.bootstrap, timeout=timeout),
                        "answer from --bootstrap")
    except BootstrapError as exc:
        raise CommandError(f"--bootstrap: {exc}") from None


def _shown_address(dht: Any) -> str:
    host, port = dht.node.address
    if host in ("0.0.0.0", "::"):  # bound to every address: loopback reaches it here
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# ---------------------------------------------------------------------------- stt pub


async def pub_command(args: argparse.Namespace, io: Backend) -> int:
    seed = cli_args.network_seed(args)
    identity = _identity(args)
    if args.message != "-":
        if args.whole:
            raise UsageError("--whole reads stdin: give - (or no MESSAGE) with it")
        messages = None
        whole: bytes | None = args.message.encode("utf-8", "surrogateescape")
        _check_size(len(whole))  # before joining: nothing is sent
    else:
        messages = _StdinMessages(_StdinReader(0, MAX_MESSAGE_SIZE),  # fd 0: stdin
                                  args.whole, io)
        # All of stdin is read (and its size checked) before joining.
        whole = await messages.next() if args.whole else None
    dht = io.KademliaDHT(identity=identity, shared_seed=seed, host="0.0.0.0", port=0)
    async with dht:
        await _join(dht, args, io, args.timeout)
        pubsub = _manager_class(io)(dht=dht, max_message_size=MAX_MESSAGE_SIZE)
        publisher = _Publisher(pubsub, args.topic, args.timeout, io)
        try:
            if whole is not None:
                await publisher.publish(whole)
            elif messages is not None:
                while (line := await messages.next()) is not None:
                    if line:
                        await publisher.publish(line)
            if publisher.published:
                await io.within(args.timeout, pubsub.flush(),
                                "acknowledgement of every message")
        finally:
            await pubsub.stop()
    return publisher.report(identity.node_id.hex())


class _Publisher:
    """Publishes one message after the other and counts who got them."""

    def __init__(self, pubsub: Any, topic: str, timeout: float, io: Backend) -> None:
        self.pubsub, self.topic, self.timeout, self.io = pubsub, topic, timeout, io
        self.published = 0
        self.unheard = 0      # published while no subscriber was in sight

    async def publish(self, data: bytes) -> None:
        # Counted by the engine when it hands the message over, not by looking
        # at the peers afterwards: a subscriber that got it may be gone by then.
        before = self.pubsub.statistics().get("messages_published_to_nobody", 0)
        try:
            await self.io.within(self.timeout,
                                 self.pubsub.publish(self.topic, data, timeout=self.timeout),
                                 "room to publish")
        except TimeoutError:  # publish's own limit: every queue stayed full
            raise CommandError(f"no room to publish within {self.timeout:g} s "
                               f"(--timeout)") from None
        self.published += 1
        if self.pubsub.statistics()["messages_published_to_nobody"] > before:
            self.unheard += 1

    def report(self, node_id: str) -> int:
        topic = self.topic
        if self.published == 0:
            stderr_line(f"nothing to publish on {topic!r} (stdin had no non-empty line)")
            return 0
        if self.unheard == self.published:
            raise CommandError(f"no subscriber of {topic!r} was found: "
                               f"{_plural(self.published, 'message')} reached nobody")
        line = f"published {_plural(self.published, 'message')} on {topic!r} as {node_id}"
        if self.unheard:
            line += f" ({self.unheard} while no subscriber was found)"
        stderr_line(line)
        return 0


def _check_size(size: int, limit: int = MAX_MESSAGE_SIZE) -> None:
    """Raise what ``PubSubManager.publish`` raises for a message of ``size``
    bytes (the same words), before the message is read whole or sent."""
    if size > limit:
        raise MessageTooLargeError(f"a message of {size} bytes exceeds max_message_size "
                                   f"({limit})")


class _StdinReader:
    """Stdin as messages: its lines (without the line ending), or all of it as
    one. Reads the file descriptor with ``os.read``, never through
    ``sys.stdin``: the reading thread may be blocked in a read when the process
    exits, and a thread blocked inside ``sys.stdin.buffer`` holds its lock,
    which the interpreter's shutdown then waits for and aborts on.

    Holds at most ``limit`` bytes and a chunk: past that, a line (or stdin) is
    only counted, to name its size in the error.
    """

    def __init__(self, fd: int, limit: int) -> None:
        self._fd = fd
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False

    def _fill(self) -> bool:
        """Read one more chunk; ``False`` at the end of stdin."""
        if not self._eof:
            chunk = os.read(self._fd, CHUNK)
            self._buffer += chunk
            self._eof = not chunk
        return not self._eof

    def read_all(self) -> bytes:
        """All of stdin.

        Raises:
            MessageTooLargeError: more than ``limit`` bytes.
        """
        size = 0
        while self._fill():
            if len(self._buffer) > self._limit:  # count the rest, keep none of it
                size += len(self._buffer)
                self._buffer.clear()
        if size:
            _check_size(size + len(self._buffer), self._limit)
        data, self._buffer = bytes(self._buffer), bytearray()
        return data

    def read_line(self) -> bytes | None:
        """The next line without ``\n`` or ``\r\n``; the last one may have no
        newline; ``None`` at the end of stdin.

        Raises:
            MessageTooLargeError: the line is longer than ``limit``.
        """
        buffer, limit = self._buffer, self._limit
        skipped = 0   # bytes of an over-long line counted and dropped
        while (end := buffer.find(b"\n")) < 0:
            if len(buffer) > limit + 1:   # + 1: it may end in "\r"
                skipped += len(buffer)
                buffer.clear()
            if not self._fill():  # the last line, without a newline
                if not buffer and not skipped:
                    return None
                line = bytes(buffer)
                buffer.clear()
                _check_size(skipped + len(line), self._limit)
                return line
        line = bytes(buffer[:end]).removesuffix(b"\r")
        del buffer[:end + 1]
        _check_size(skipped + len(line), self._limit)
        return line


class _StdinMessages:
    """What ``stt pub -`` publishes, read from stdin by a daemon thread so the
    event loop never blocks on a terminal or a slow pipe (and Ctrl-C is not
    held up by a blocked read, as it would be by an executor thread, which the
    loop joins at exit).

    The thread stops reading while :data:`READ_AHEAD_LINES` messages wait; it
    hands each over through a queue and wakes the loop with a call the backend
    makes thread-safe.
    """

    def __init__(self, reader: _StdinReader, whole: bool, io: Backend) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD_LINES)
        self._ready = _LoopEvent(io)
        read = reader.read_all if whole else reader.read_line
        thread = threading.Thread(target=self._run, args=(read, whole),
                                  name="stt pub stdin", daemon=True)
        thread.start()

    def _run(self, read: Callable[[], bytes | None], whole: bool) -> None:
        while True:
            try:
                item: Any = read()
            except (MessageTooLargeError, OSError) as exc:
                item = exc
            self._queue.put(item)
            done = item is None or isinstance(item, BaseException)
            if whole and not done:
                self._queue.put(None)
                done = True
            if not self._ready.set_threadsafe() or done:
                return

    async def next(self) -> bytes | None:
        """The next message (``b""`` for an empty line); ``None`` at the end.

        Raises:
            MessageTooLargeError: a line (or stdin) over the size limit.
            OSError: stdin could not be read.
        """
        while True:
            self._ready.clear()  # before looking: a message queued after it sets it again
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                await self._ready.wait()
                continue
            if isinstance(item, BaseException):
                raise item
            return item


class _LoopEvent:
    """An event that a thread may set (asyncio's or trio's own)."""

    def __init__(self, io: Backend) -> None:
        if io.name == "trio":
            import trio

            class _Event:  # trio's Event cannot be cleared: a new one each time
                def __init__(self) -> None:
                    self.event = trio.Event()

                def set(self) -> None:
                    self.event.set()

                def clear(self) -> None:
                    if self.event.is_set():
                        self.event = trio.Event()

                async def wait(self) -> None:
                    await self.event.wait()

            self._event: Any = _Event()
            self._call_soon: Callable[..., Any] = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            import asyncio

            self._event = asyncio.Event()
            self._call_soon = asyncio.get_running_loop().call_soon_threadsafe

    def set_threadsafe(self) -> bool:
        """Set the event from another thread; ``False`` once the loop is gone."""
        try:
            self._call_soon(self._event.set)
        except RuntimeError:  # the loop closed (asyncio), or trio's RunFinishedError
            return False
        return True

    def clear(self) -> None:
        self._event.clear()

    async def wait(self) -> None:
        await self._event.wait()


# ---------------------------------------------------------------------------- stt sub


def format_message(publisher_id: bytes, seq: int, data: bytes) -> str:
    """One ``stt sub`` line (without its newline): see the module docstring."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or not text.isprintable() or text.startswith("hex:"):
        text = "hex:" + data.hex()
    return " ".join(filter(None, (publisher_id.hex()[:PUBLISHER_DIGITS], str(seq), text)))


async def sub_command(args: argparse.Namespace, io: Backend) -> int:
    seed = cli_args.network_seed(args)
    identity = _identity(args)
    join_timeout = args.timeout if args.timeout is not None else JOIN_TIMEOUT
    dht = io.KademliaDHT(identity=identity, shared_seed=seed, host=args.host, port=args.port)
    async with dht:
        await _join(dht, args, io, join_timeout)
        pubsub = _manager_class(io)(dht=dht, max_message_size=MAX_MESSAGE_SIZE)
        try:
            async with pubsub.subscription(args.topic, timeout=join_timeout) as sub:
                joined = pubsub.engine.joined(topic_key(args.topic))
                stderr_line(f"subscribed to {args.topic!r} as "
                            f"{_shown_address(dht)}/{dht.node_id.hex()} "
                            + (f"({_plural(len(pubsub.peers(args.topic)), 'mesh peer')})"
                               if joined else "(still joining: the mesh forms meanwhile)"))
                return await _print_messages(sub, args, io)
        finally:
            await pubsub.stop()


async def _print_messages(sub: Any, args: argparse.Namespace, io: Backend) -> int:
    received = 0
    out = sys.stdout.buffer
    while args.count is None or received < args.count:
        if args.timeout is None:
            item = await sub.receive()
        else:
            try:
                item = await io.within(args.timeout, sub.receive(), "message")
            except CommandError as exc:
                if args.count is not None:
                    raise CommandError(f"{exc}; {received} of {args.count} received") \
                        from None
                raise
        if isinstance(item, TopicGap):
            stderr_line(f"gap: {_plural(item.count, 'message')} of "
                        f"{item.publisher.node_id.hex()[:PUBLISHER_DIGITS]} will not come "
                        f"({item.reason})")
            continue
        received += 1
        if args.raw:
            line = item.data if item.data.endswith(b"\n") else item.data + b"\n"
        else:
            line = format_message(item.publisher.node_id, item.seq, item.data).encode(
                "utf-8", "surrogateescape") + b"\n"
        try:
            out.write(line)
            out.flush()
        except BrokenPipeError:
            # The reader went away (``stt sub T | head -1``): stop quietly, and
            # keep the interpreter's last flush at exit from failing again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
            return 0
    return 0
