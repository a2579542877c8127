"""Start-up shared by the examples: options, the network seed, running ``main``.

Every example takes ``--seed TEXT``; without it the seed comes from
``STT_SEED``, and without that a random seed is made up for the run (both
nodes of an example live in one process, or in a child it starts, so they
still share it). A seed shorter than 16 bytes is refused with one line.

Usage in an example::

    parser = argument_parser(__doc__)
    parser.add_argument("--count", type=int, default=50, help="...")
    run(main, parser)          # main(args) is a coroutine function; args.seed is bytes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

from stt_proto.identity import MIN_SEED_BYTES


def _seed(text: str) -> bytes:
    seed = text.encode()
    if len(seed) < MIN_SEED_BYTES:
        raise argparse.ArgumentTypeError(
            f"a network seed must be at least {MIN_SEED_BYTES} bytes (got {len(seed)})")
    return seed


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc``, with ``--seed``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seed", type=_seed, metavar="TEXT",
                        help="network seed (text, at least 16 bytes); "
                             "default: STT_SEED, or a random seed for this run")
    return parser


def network_seed(parser: argparse.ArgumentParser, given: bytes | None) -> bytes:
    """``given``, else ``STT_SEED``, else a random seed (announced on stdout)."""
    if given is not None:
        return given
    text = os.environ.get("STT_SEED")
    if text:
        try:
            return _seed(text)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"STT_SEED: {exc}")
    print("no --seed or STT_SEED given: using a random seed for this run")
    return secrets.token_hex(16).encode()


def run(main: Callable[[argparse.Namespace], Awaitable[int]],
        parser: argparse.ArgumentParser) -> NoReturn:
    """Parse the command line, settle ``args.seed`` (bytes), run
    ``asyncio.run(main(args))`` and exit with its result."""
    args = parser.parse_args()
    args.seed = network_seed(parser, args.seed)
    sys.exit(asyncio.run(main(args)))
