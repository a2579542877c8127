"""``stt listen``: accept sessions, save the files sent to it, echo other streams.

A stream whose first message is a file header (:data:`~.transfer.FILE_MAGIC`)
is a file transfer (see :mod:`stt_io.cli.transfer`); any other stream is
echoed message by message. Each event is one line on stdout (sessions opened
and closed, files saved or refused, with where each file landed).

With ``--verbose`` the listener also logs, at debug level, the handshakes its
engine refused: it reads the endpoint's ``statistics()`` every
:data:`REFUSAL_REPORT_INTERVAL` seconds and reports what changed (see
:data:`REFUSAL_COUNTERS`).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

from .._core import NodeBase, Session, Stream
from ..errors import STTError
from . import args as cli_args
from .args import UsageError
from .backends import Backend, spawn
from .transfer import FILE_MAGIC, receive_file

__all__ = ["add_parser", "serve_session", "REFUSAL_COUNTERS", "REFUSAL_REPORT_INTERVAL"]

logger = logging.getLogger("stt.cli")

#: Seconds between two looks at the refusal counters.
REFUSAL_REPORT_INTERVAL = 1.0

#: Endpoint counters of refused handshakes, and what each means to an operator.
#: A peer with another network seed gets through the first handshake message
#: (Noise IKpsk2 mixes the seed in at the second), so the listener sees it only
#: as an unconfirmed handshake, ``half_open_timeout`` (10 s) later.
REFUSAL_COUNTERS = {
    "initiations_bad_mac": "for another node id (the peer dialled a wrong --peer)",
    "handshakes_unconfirmed": "never confirmed (a peer with another network seed, "
                              "or a lost confirmation)",
    "initiations_failed": "undecryptable or with a cipher not accepted",
    "initiations_replayed": "replayed",
    "initiations_rejected_limit": "over the session limits",
    "cookie_replies_sent": "answered with a cookie (under load)",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    listen = sub.add_parser("listen", help="accept sessions: receive files, echo streams",
                            description="Accept sessions: save the files 'stt send' sends, "
                                        "echo any other stream.")
    cli_args.seed_options(listen)
    cli_args.identity_option(listen)
    listen.add_argument("--host", default="127.0.0.1", help="address to bind")
    listen.add_argument("--port", type=cli_args.listen_port, default=4000,
                        help="UDP port to bind; 0 picks a free one")
    listen.add_argument("--save-dir", default=".", metavar="DIR",
                        help="existing directory where received files go")
    listen.add_argument("--overwrite", action="store_true",
                        help="let a received file replace an existing file of the same name "
                             "(without it such a transfer is refused)")
    listen.add_argument("-v", "--verbose", action="store_true",
                        help="log debug details on stderr, such as refused handshakes")
    cli_args.backend_option(listen)
    listen.set_defaults(command=listen_command)


def check_save_dir(path: str) -> Path:
    save_dir = Path(path)
    if not save_dir.is_dir():
        problem = "not a directory" if save_dir.exists() else "no such directory"
        raise UsageError(f"--save-dir {path}: {problem}")
    if not os.access(save_dir, os.W_OK | os.X_OK):
        raise UsageError(f"--save-dir {path}: not writable")
    return save_dir


async def listen_command(args: argparse.Namespace, io: Backend) -> int:
    save_dir = check_save_dir(args.save_dir)
    seed = cli_args.network_seed(args)
    identity = cli_args.identity(args.identity)
    async with io.Node(identity, seed, args.host, args.port) as node:
        host, port = node.address
        print(f"listening on {host}:{port}", flush=True)
        print(f"node id {node.node_id.hex()}", flush=True)
        print(f"backend {io.name}", flush=True)
        say = _say

        @node.on_session
        async def handle(session: Session) -> None:
            say(f"session from {session.peer_address[0]}:{session.peer_address[1]} "
                f"peer {session.peer_id.hex()[:16]}...")
            await serve_session(session, save_dir, overwrite=args.overwrite, log=say)

        node.on_session_closed(lambda sid, reason: say(f"session closed: {reason}"))
        if logger.isEnabledFor(logging.DEBUG):
            await _report_refusals(node, io)
        else:
            await io.wait_forever()
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


async def _report_refusals(node: NodeBase, io: Backend) -> None:
    """Log (debug) the handshakes refused since the last look, with totals."""
    start = node.statistics()
    last = dict(start)
    while True:
        await io.sleep(REFUSAL_REPORT_INTERVAL)
        stats = node.statistics()
        new = {k: stats.get(k, 0) - last.get(k, 0) for k in REFUSAL_COUNTERS}
        last = stats
        if any(new.values()):
            logger.debug("refused handshakes: %s; since start: %s",
                         _describe_counts(new),
                         _describe_counts({k: stats.get(k, 0) - start.get(k, 0)
                                           for k in REFUSAL_COUNTERS}))


def _describe_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {REFUSAL_COUNTERS[k]}" for k, n in counts.items() if n) or "none"


async def serve_session(session: Session, save_dir: Path | None, *, overwrite: bool = False,
                        log: Callable[[str], object] = _say) -> None:
    """Handle a listener's session: save files, echo everything else.

    Args:
        session: an inbound session.
        save_dir: where files go; ``None`` verifies them and keeps nothing.
        overwrite: let a file replace one of the same name.
        log: called with one line per file saved or refused, or stream failed.
    """
    while True:
        try:
            stream = await session.accept_stream()
        except STTError:
            return
        spawn(session, _serve_stream(stream, save_dir, overwrite, log), "an stt stream handler")


async def _serve_stream(stream: Stream, save_dir: Path | None, overwrite: bool,
                        log: Callable[[str], object]) -> None:
    try:
        first = await stream.receive()
    except STTError:  # ended or reset before its first message: nothing to do
        return
    try:
        if first.startswith(FILE_MAGIC):
            await receive_file(stream, first, save_dir, overwrite=overwrite, log=log)
        else:
            await stream.send(first)
            async for message in stream:
                await stream.send(message)
            await stream.close()
    except STTError as exc:
        log(f"stream {stream.stream_id}: {type(exc).__name__}: {exc}")
