"""``stt publish FILE`` and ``stt fetch CONTENT_ID -o FILE``: content from the shell.

Both run a DHT member with a :class:`~stt_io.asyncio.ContentDistribution` on a
content store directory (``--store``, default :func:`default_store_dir`) and
join the network through ``--bootstrap HOST:PORT/NODE_ID``.

``stt publish`` hashes FILE (streaming: any size), records it in the store as
content served in place (the file is referenced, never copied: keep it
unchanged), announces this member as its provider, prints the 64-hex content
id on stdout, and serves it until Ctrl-C (status 130). With ``--exit`` it
stops once the announcement is stored; the content then stays in the store,
and a ``stt node --store`` on the same directory, started afterwards, serves it.
One process at a time may have a store directory open (a lock in it says
which): a command given a store that a running node holds stops with a
clear error.

``stt fetch`` retrieves a content to ``-o FILE`` from every provider at once,
each chunk checked against the id as it arrives, with a progress display on
stderr (the bytes, the providers in use and the rate) and a summary line at
the end. The store records which chunks are verified, so the same command run
again after an interruption resumes from them. The file is then kept in the
store as content a ``stt node --store`` on it serves, unless ``--no-provide``.
The fetching process itself never announces it: it exits at once, and a
provider record naming a member that is gone would only send others to a
dead address.

Status lines go to stderr, so stdout holds only the content id (``publish``).
Exit status: 0 done, 1 nothing found, a time limit passed or the store in use
by another process, 2 a bad command line, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from stt_proto.content.tree import CHUNK_SIZE, chunk_count
from stt_proto.errors import ContentNotFoundError, StoreInUseError

from . import args as cli_args
from .args import CommandError, stderr_line
from .backends import Backend
from .dht import bootstrap_entry
from .progress import PLAIN_INTERVAL, Progress
# The same joining and naming as pub/sub's commands, which wrote them first.
from .pubsub import _identity, _join, _plural, _shown_address

__all__ = ["add_parsers", "content_id", "default_store_dir", "store_option",
           "content_class", "open_content", "FetchProgress", "JOIN_TIMEOUT",
           "MIN_HASH_RATE"]

#: Seconds ``stt fetch`` waits for the bootstrap when ``--timeout`` is not
#: given (the retrieval itself then has no limit: a large file takes its time).
JOIN_TIMEOUT = 30.0
#: Bytes per second ``stt publish`` counts on hashing FILE at, at the least:
#: ``--timeout`` is lengthened by the file's size at this rate, so that it
#: bounds the announcement and never cuts the hashing of a large file short
#: (BLAKE2b runs near 1 GB/s; a slow disk is the limit).
MIN_HASH_RATE = 20e6


def default_store_dir() -> str:
    """Where ``--store`` points by default: ``stt/content`` in the user's data
    directory (``$XDG_DATA_HOME``, else ``~/.local/share``; ``%LOCALAPPDATA%``
    on Windows; ``~/Library/Application Support`` on macOS)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME", "")
        if not os.path.isabs(base):  # the XDG rule: a relative value is ignored
            base = os.path.expanduser("~/.local/share")
    return os.path.join(base, "stt", "content")


def content_id(text: str) -> bytes:
    """A content id: 64 hex characters."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32 or len(text) != 64:
        raise argparse.ArgumentTypeError(
            f"a content id is 64 hex characters (got {text!r})")
    return value


def store_option(parser: argparse.ArgumentParser, *, optional_value: bool = False) -> None:
    """Add ``--store DIR``. With ``optional_value`` (``stt node``) the option is
    off unless given, and given without DIR it means the default directory."""
    where = default_store_dir()
    if optional_value:
        parser.add_argument("--store", nargs="?", const=where, metavar="DIR",
                            help="serve the content of this store directory (what 'stt "
                                 f"publish' and 'stt fetch' keep there); --store alone: "
                                 f"{where} (default: no content service)")
    else:
        parser.add_argument("--store", default=where, metavar="DIR",
                            help="content store directory, created if missing: it records "
                                 "what is published and the verified chunks of a fetch")


def content_class(io: Backend) -> type:
    """The backend's ``ContentDistribution`` (it lives next to its ``KademliaDHT``)."""
    return importlib.import_module(io.KademliaDHT.__module__).ContentDistribution


def open_content(io: Backend, dht: Any, store: str, **kwargs: Any) -> Any:
    """A ``ContentDistribution`` on the store directory ``store``.

    Raises:
        CommandError: the directory cannot be made or read, or another process
            has it open (a ``stt node --store`` on it, say).
    """
    try:
        return content_class(io)(dht=dht, store=store, **kwargs)
    except OSError as exc:
        raise CommandError(f"--store {store}: {exc.strerror or exc}") from None
    except StoreInUseError as exc:
        raise CommandError(f"--store {store}: {exc}; give this command another --store, "
                           "or stop that process first") from None


def _common(parser: argparse.ArgumentParser, *, bootstrap_required: bool,
            timeout_help: str, timeout_default: float | None) -> None:
    cli_args.seed_options(parser)
    cli_args.identity_option(parser)
    store_option(parser)
    # No list default: the help would show it after saying what "none" means.
    parser.add_argument("--bootstrap", type=bootstrap_entry, action="append",
                        required=bootstrap_required, metavar="HOST:PORT/NODE_ID",
                        help="a member to join through; repeat for more"
                             + (" (required)" if bootstrap_required else
                                " (default: none, this is the first member of a network)"))
    parser.add_argument("--timeout", type=cli_args.seconds, default=timeout_default,
                        metavar="SECONDS", help=timeout_help)
    cli_args.backend_option(parser)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    publish = sub.add_parser(
        "publish", help="publish a file; prints its content id",
        description="Record FILE in the content store (served in place, never copied), "
                    "announce this member as its provider, print the content id and "
                    "serve it until Ctrl-C.")
    publish.add_argument("file", metavar="FILE", help="the file to publish (keep it "
                                                      "unchanged while it is served)")
    _common(publish, bootstrap_required=False, timeout_default=30.0,
            timeout_help="longest wait for the bootstrap and for the announcement "
                         f"(plus a second per {MIN_HASH_RATE / 1e6:g} MB of FILE for "
                         "hashing it)")
    publish.add_argument("--exit", action="store_true",
                         help="exit once the announcement is stored instead of serving; "
                              "then nobody serves the file unless a 'stt node' with the "
                              "same --store is started afterwards")
    publish.add_argument("--host", default="0.0.0.0", help="address to bind")
    publish.add_argument("--port", type=cli_args.listen_port, default=0,
                         help="UDP port to bind; 0 picks a free one")
    publish.set_defaults(command=publish_command)

    fetch = sub.add_parser(
        "fetch", help="retrieve a content to a file from every provider at once",
        description="Find the providers of CONTENT_ID, retrieve it to FILE from several "
                    "at once (every chunk verified) with progress on stderr. Run again "
                    "after an interruption, with the same -o and --store, it resumes.")
    fetch.add_argument("content", type=content_id, metavar="CONTENT_ID",
                       help="64 hex digits, as 'stt publish' prints")
    fetch.add_argument("-o", "--output", required=True, metavar="FILE",
                       help="where the content goes, written as chunks arrive (required)")
    _common(fetch, bootstrap_required=True, timeout_default=None,
            timeout_help="longest wait for the bootstrap and for the whole retrieval "
                         f"(default: {JOIN_TIMEOUT:g} s to join, no limit on the "
                         "retrieval)")
    fetch.add_argument("--no-provide", action="store_true",
                       help="do not keep the file in the store as content that 'stt node "
                            "--store' serves (the file itself stays)")
    fetch.add_argument("--overwrite", action="store_true",
                       help="replace FILE if it exists and is not a fetch of this "
                            "content to resume")
    fetch.set_defaults(command=fetch_command)


# ---------------------------------------------------------------------------- stt publish


async def publish_command(args: argparse.Namespace, io: Backend) -> int:
    seed = cli_args.network_seed(args)
    identity = _identity(args)
    path = os.path.abspath(args.file)
    if not os.path.isfile(path):  # before joining: nothing is announced
        why = "no such file" if not os.path.exists(path) else "not a regular file"
        raise CommandError(f"{args.file}: {why}")
    dht = io.KademliaDHT(identity=identity, shared_seed=seed, host=args.host, port=args.port)
    async with dht:
        await _join(dht, args, io, args.timeout)
        # Only FILE is announced, not the rest of the store: with --exit this
        # process is gone soon after (see the module docstring).
        content = open_content(io, dht, args.store, serve_store=False)
        try:
            stored = await _publish(content, path, args, io)
            size = content.store.length(stored)
            print(stored.hex(), flush=True)
            if args.exit:
                stderr_line(f"published {args.file} ({size:,} bytes) in {args.store}")
                return 0
            stderr_line(f"serving {args.file} ({size:,} bytes) as "
                        f"{_shown_address(dht)}/{dht.node_id.hex()} until Ctrl-C")
            await io.wait_forever()
        finally:
            await content.stop()
    return 0


async def _publish(content: Any, path: str, args: argparse.Namespace, io: Backend) -> bytes:
    """Publish ``path``; its content id, once the announcement is stored (by
    nobody when this is the first member: then it waits for nothing)."""
    limit = args.timeout + os.path.getsize(path) / MIN_HASH_RATE
    try:
        return await io.within(limit, content.publish_content(path), "announcement stored")
    except OSError as exc:
        raise CommandError(f"{args.file}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------- stt fetch


class FetchProgress(Progress):
    """The progress of a fetch: the bytes verified of the total, the providers
    in use and the rate (of the bytes fetched by this run: chunks a resumed
    fetch had already do not count). A live bar on a terminal, a plain line
    every few seconds otherwise (see :mod:`.progress`).

    Args:
        label: the name shown (the output file's).
        resumed_bytes: called at the first report, the bytes the store had
            verified before this run (the length is known only then).
        out, interactive, interval, clock: as :class:`~.progress.Progress`.
    """

    def __init__(self, label: str, *, resumed_bytes: Callable[[int], int] = lambda total: 0,
                 out: TextIO | None = None, interactive: bool | None = None,
                 interval: float = PLAIN_INTERVAL,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(0, label, out=out, interactive=interactive, interval=interval,
                         clock=clock)
        self._resumed_bytes = resumed_bytes
        self.resumed: int | None = None
        self.providers = 0
        #: The most providers in use at once.
        self.peak_providers = 0
        self._shown_providers = -1

    def report(self, done: int, total: int, providers: int) -> None:
        """The retrieval's progress callback: ``done`` of ``total`` bytes, with
        ``providers`` in use (``total`` is 0 until the first chunk arrived)."""
        if total <= 0:
            return
        if self.resumed is None:
            self.resumed = min(self._resumed_bytes(total), done)
        self.total = total
        self.providers = providers
        self.peak_providers = max(self.peak_providers, providers)
        self._done = done
        now = self._clock()
        percent = self._percent(done)
        rate = self._rate(done - self.resumed, now)
        if self.interactive:
            if percent == self._shown and providers == self._shown_providers:
                return
            self._shown, self._shown_providers = percent, providers
            bar = "#" * (percent * 25 // 100)
            self.out.write(f"\r{self.label} [{bar:.<25}] {percent:3d}% "
                           f"{_mib(done)}/{_mib(total)} MiB, "
                           f"{_plural(providers, 'provider')}, {rate:.1f} MB/s\x1b[K")
            self.out.flush()
        elif now >= self._next_line:
            self._next_line = now + self.interval
            self.out.write(f"{self.label}: {percent}% ({done:,} of {total:,} bytes) from "
                           f"{_plural(providers, 'provider')}, {rate:.1f} MB/s\n")
            self.out.flush()

    def finish(self) -> float:
        """End the live bar (the summary is the command's); the seconds since the start."""
        if self.interactive and self._shown >= 0:
            self.out.write("\n")
            self.out.flush()
        return self._clock() - self.start


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f}"


def _check_output(path: str, content: Any, content_id_: bytes, overwrite: bool) -> None:
    """Refuse an output that is a directory, in a missing directory, or an
    existing file that the store does not know as this content's (complete, or
    partly fetched: resuming reuses it) unless ``overwrite``."""
    parent = os.path.dirname(path)
    if os.path.isdir(path):
        raise CommandError(f"-o {path}: is a directory")
    if not os.path.isdir(parent):
        raise CommandError(f"-o {path}: no such directory {parent}")
    if overwrite or not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    store = content.store
    if store.has(content_id_) or store.partial_length(content_id_) is not None:
        return
    raise CommandError(f"-o {path}: the file exists (use --overwrite to replace it)")


async def fetch_command(args: argparse.Namespace, io: Backend) -> int:
    seed = cli_args.network_seed(args)
    identity = _identity(args)
    path = os.path.abspath(args.output)
    hex_id = args.content.hex()
    join_timeout = args.timeout if args.timeout is not None else JOIN_TIMEOUT
    dht = io.KademliaDHT(identity=identity, shared_seed=seed, host="0.0.0.0", port=0)
    async with dht:
        # Nothing is announced from here: this process exits once the file is
        # there (see the module docstring); a node on the store serves it.
        content = open_content(io, dht, args.store, serve_store=False, announce=False)
        _check_output(path, content, args.content, args.overwrite)
        await _join(dht, args, io, join_timeout)
        before = content.statistics()

        def resumed_bytes(total: int) -> int:
            # The store hashed the chunks recorded by an earlier run again when
            # the retrieval began; those that matched are not fetched again.
            kept = content.statistics().get("store_resume_chunks_kept", 0) \
                - before.get("store_resume_chunks_kept", 0)
            return min(kept * CHUNK_SIZE, total)

        progress = FetchProgress(os.path.basename(path), resumed_bytes=resumed_bytes)
        try:
            length = await content.retrieve_to_file(
                args.content, path, progress=progress.report, timeout=args.timeout,
                provide=not args.no_provide)
        except ContentNotFoundError:
            progress.abort()
            raise CommandError(f"content {hex_id} not found: no provider of it could be "
                               "found or reached") from None
        except TimeoutError:
            progress.abort()
            raise CommandError(f"content {hex_id} not retrieved within {args.timeout:g} s "
                               "(--timeout); the same command again resumes") from None
        except BaseException:
            progress.abort()
            raise
        finally:
            after = content.statistics()
            await content.stop()
        elapsed = progress.finish()
    stderr_line(_summary(args.output, length, elapsed, progress, before, after))
    return 0


def _summary(name: str, length: int, elapsed: float, progress: FetchProgress,
             before: dict[str, int], after: dict[str, int]) -> str:
    def delta(key: str) -> int:
        return after.get(key, 0) - before.get(key, 0)

    resumed = delta("store_resume_chunks_kept")
    if delta("chunks_received") == 0:  # complete in the store at that path already
        return f"{name}: all {length:,} bytes were in the store already; nothing fetched"
    resumed_bytes = min(resumed * CHUNK_SIZE, length)
    fetched = length - resumed_bytes
    rate = fetched / max(elapsed, 1e-9) / 1e6
    line = (f"fetched {name}: {length:,} bytes in {elapsed:.2f} s, {rate:.1f} MB/s, "
            f"from {_plural(progress.peak_providers, 'provider')}, "
            f"{_plural(delta('bad_chunks'), 'bad provider')} dropped")
    if resumed:
        line += (f"; resumed: {resumed} of {_plural(chunk_count(length), 'chunk')} "
                 f"were verified already")
    return line
