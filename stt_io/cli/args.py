"""Parsing and checking the ``stt`` command line.

Every bad input ends the command with one line on stderr that starts with
``stt:`` and names the option at fault, and a non-zero exit status:

* ``2`` for a bad value on the command line or in ``STT_SEED`` (argparse's
  usage-error status): the value types below reject it while parsing, so no
  node starts and nothing is sent;
* ``1`` for a failure once the command runs (a key file that will not load, a
  peer that does not answer, a transfer the receiver refused): see
  :class:`CommandError`.

The option tables live here too, so that every subcommand gets the same
``--seed``/``--identity``/``--timeout`` options with the same checks, and
every option's help shows its default (:class:`HelpFormatter`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, NoReturn

from stt_proto.identity import MIN_SEED_BYTES, Identity, parse_node_id, validate_seed

from ..keys import load_identity, load_seed

__all__ = [
    "BACKENDS",
    "CommandError",
    "UsageError",
    "ArgumentParser",
    "HelpFormatter",
    "seconds",
    "positive_int",
    "listen_port",
    "peer_address",
    "node_id",
    "seed_text",
    "backend_option",
    "seed_options",
    "identity_option",
    "peer_options",
    "network_seed",
    "identity",
    "stderr_line",
]

#: The event loops ``--backend`` offers; the first is the default.
BACKENDS = ("asyncio", "trio")

#: Exit status of a usage error (argparse's own).
USAGE_EXIT = 2


class CommandError(Exception):
    """A command failed for a reason the user can act on. ``main`` prints
    ``stt: <message>`` (one line, no traceback) and exits with :attr:`status`."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        #: The process's exit status.
        self.status = status


class UsageError(CommandError):
    """A bad value that argparse could not check while parsing (``STT_SEED``,
    or two options that contradict each other): exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, USAGE_EXIT)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with errors on one ``stt: ...`` line instead of a usage block
    followed by an error line (``stt SUBCOMMAND --help`` shows the usage), and
    :class:`HelpFormatter` for itself and its subcommands' parsers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT, f"stt: {message} (see: {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: ...)`` to the help of every option that has a default
    value. Options whose default is "none" (``None``) say in their own help
    text what happens without them; on/off flags are off by default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


# ---------------------------------------------------------------------------- value types
# argparse calls these with the text given; a ValueError or ArgumentTypeError
# becomes "argument --x: <message>".


def seconds(text: str) -> float:
    """A positive, finite number of seconds (``--timeout``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1 (``--count``, ``--mib``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _port(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not low <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in {low}-65535, got {text!r}")
    return value


def listen_port(text: str) -> int:
    """A port to bind: 0 (any free port) to 65535."""
    return _port(text, 0)


def peer_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address), port 1-65535."""
    host, sep, port = text.rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, _port(port, 1)


def node_id(text: str) -> bytes:
    """A node id: 64 hex characters."""
    try:
        return parse_node_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seed_text(text: str) -> bytes:
    """A network seed given as text: its UTF-8 bytes, at least 16 of them."""
    try:
        return validate_seed(text.encode())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a network seed must be at least {MIN_SEED_BYTES} bytes "
            f"(got {len(text.encode())})") from None


# ---------------------------------------------------------------------------- option groups


def backend_option(parser: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    """Add ``--backend`` to ``parser``. The main parser gives the default; a
    subcommand's option has none, so that it leaves a value given before the
    subcommand (``stt --backend trio listen``) in place."""
    parser.add_argument("--backend", choices=BACKENDS, default=default,
                        help="event loop to run on; trio needs the [trio] extra"
                             + ("" if default is not argparse.SUPPRESS else
                                f" (default: {BACKENDS[0]}, or as given before the "
                                f"subcommand)"))


def seed_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=seed_text, metavar="TEXT",
                        help="network seed as text, at least 16 bytes (default: $STT_SEED)")
    parser.add_argument("--seed-file", metavar="FILE",
                        help="file holding the network seed, mode 0600 "
                             "(default: use --seed or $STT_SEED)")


def identity_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--identity", metavar="FILE",
                        help="identity file from 'stt keygen' (default: a new identity "
                             "for this run)")


def peer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, type=peer_address, metavar="HOST:PORT",
                        help="where the listener is (required)")
    parser.add_argument("--peer", required=True, type=node_id, metavar="NODE_ID",
                        help="the listener's node id, 64 hex digits (required)")
    identity_option(parser)
    parser.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS",
                        help="longest wait for the connection, and for each reply, "
                             "acknowledgement or send that makes no progress")


# ---------------------------------------------------------------------------- loading


def network_seed(args: argparse.Namespace) -> bytes:
    """The seed from ``--seed-file``, ``--seed`` or ``STT_SEED``, in that order.

    Raises:
        UsageError: none given, or ``STT_SEED`` is too short.
        CommandError: the seed file cannot be read or is unsafe.
    """
    if args.seed_file:
        try:
            return load_seed(args.seed_file)
        except (OSError, ValueError) as exc:
            raise CommandError(f"--seed-file: {_describe(exc, args.seed_file)}") from None
    if args.seed is not None:
        return args.seed
    text = os.environ.get("STT_SEED")
    if not text:
        raise UsageError("no network seed: use --seed, --seed-file or STT_SEED")
    try:
        return validate_seed(text.encode())
    except ValueError:
        raise UsageError(f"STT_SEED: a network seed must be at least {MIN_SEED_BYTES} bytes "
                         f"(got {len(text.encode())})") from None


def identity(path: str | None, option: str = "--identity") -> Identity | None:
    """The identity in ``path`` (``None`` when no path is given).

    Raises:
        CommandError: the file is missing, unsafe or malformed (the message
            names the file and line, never key material).
    """
    if path is None:
        return None
    try:
        return load_identity(path)
    except (OSError, ValueError) as exc:
        raise CommandError(f"{option}: {_describe(exc, path)}") from None


def _describe(exc: BaseException, path: str) -> str:
    """One line for a key-file error, naming ``path`` once."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{path}: {exc.strerror.lower()}"
    text = str(exc)
    return text if path in text else f"{path}: {text}"


def stderr_line(message: str) -> None:
    """Print ``stt: <message>`` on stderr, as one line."""
    print(f"stt: {' '.join(message.split())}", file=sys.stderr, flush=True)
