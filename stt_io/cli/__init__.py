"""The ``stt`` command.

* ``stt demo`` starts two nodes on loopback, connects them, sends a generated
  file with a progress display, verifies its hash and prints the session's
  statistics.
* ``stt keygen`` writes an identity file; ``stt id [FILE]`` prints a node id.
* ``stt listen`` accepts sessions: streams that start with a file header are
  saved (and verified by hash), any other stream is echoed.
* ``stt send FILE --to HOST:PORT --peer NODE_ID`` sends a file to a listener.
* ``stt ping --to HOST:PORT --peer NODE_ID`` measures round trips.
* ``stt selfcheck`` checks the installed engine's builds.
* ``stt node`` runs a DHT member (and the listener's echo/file service);
  ``stt dht put|get|find|providers`` does one DHT operation.
* ``stt pub TOPIC [MESSAGE|-]`` publishes a message (or each line of stdin);
  ``stt sub TOPIC`` prints a topic's messages with their publisher.
* ``stt publish FILE`` publishes a file and serves it; ``stt fetch CONTENT_ID
  -o FILE`` retrieves one from every provider at once (``stt node --store``
  serves a content store).

The network seed comes from ``--seed``, ``--seed-file`` or the ``STT_SEED``
environment variable; there is no default. ``--backend trio`` (before or after
the subcommand) runs the networking commands on the trio adapter instead of the
asyncio one; it needs the optional dependency (``pip install 'seigr-toolset-transmissions[trio]'``).

Modules: :mod:`.args` (parsing, checking, the one-line errors),
:mod:`.backends` (asyncio or trio), :mod:`.transfer` (the file-transfer
exchange), :mod:`.progress`, and one module per group of commands
(:mod:`.listen`, :mod:`.client` for ``send`` and ``ping``, :mod:`.dht`,
:mod:`.pubsub` for ``pub`` and ``sub``, :mod:`.content` for ``publish``
and ``fetch``, :mod:`.demo`,
:mod:`.local` for ``keygen``, ``id`` and ``selfcheck``).

Exit status: 0 on success, 1 when a command fails (one ``stt: ...`` line on
stderr says why), 2 for a bad command line, 130 on Ctrl-C.
"""

from __future__ import annotations

import inspect
import logging

from ..errors import STTError
from . import client, content, demo, dht, listen, local, pubsub
from .args import BACKENDS, ArgumentParser, CommandError, backend_option, stderr_line
from .backends import load_backend

__all__ = ["main", "build_parser"]


def build_parser() -> ArgumentParser:
    """The ``stt`` argument parser, with every subcommand."""
    parser = ArgumentParser(prog="stt", description="STT secure transport")
    backend_option(parser, default=BACKENDS[0])
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    demo.add_parser(sub)
    local.add_parsers(sub)
    listen.add_parser(sub)
    client.add_parsers(sub)
    dht.add_parsers(sub)
    pubsub.add_parsers(sub)
    content.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``stt`` with ``argv`` (default: the process's arguments).

    Returns:
        The exit status (see the module docstring).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="stt: %(levelname)s: %(message)s")
    if getattr(args, "verbose", False):
        logging.getLogger("stt").setLevel(logging.DEBUG)
    try:
        if inspect.iscoroutinefunction(args.command):  # it runs a node
            io = load_backend(args.backend)
            return io.run(args.command, args, io)
        return args.command(args)
    except CommandError as exc:
        stderr_line(str(exc))
        return exc.status
    except (STTError, OSError) as exc:
        stderr_line(f"{type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
