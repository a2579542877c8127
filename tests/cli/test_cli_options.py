"""``stt`` options: help texts with defaults, and the listener's debug log of
refused handshakes."""

from __future__ import annotations

import argparse
import hashlib
import re
import time

import pytest

from ..helpers.cli import Listener, run


def subcommands() -> dict[str, argparse.ArgumentParser]:
    from stt_io.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"": parser, **sub.choices}


def test_every_option_has_help_that_shows_its_default():
    for name, parser in subcommands().items():
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            where = f"stt {name} {action.option_strings or action.dest}"
            assert action.help, where
            if isinstance(action.default, bool) or not action.option_strings:
                continue  # an on/off flag (off unless given), or a positional argument
            if action.required:
                assert "(required)" in action.help, where
            elif action.default in (None, argparse.SUPPRESS):
                assert "(default: " in action.help, where  # says what happens without it
            else:
                assert f"(default: {action.default})" in text, where


def test_help_shows_the_defaults():
    result = run("listen", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "UDP port to bind; 0 picks a free one (default: 4000)" in text
    assert "(default: 127.0.0.1)" in text


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_listener_logs_refused_handshakes(backend, tmp_path):
    with Listener(backend, tmp_path, "--verbose") as listener:
        wrong = run("ping", "--to", listener.address, "--peer", hashlib.blake2s(b"x").hexdigest(),
                    "--timeout", "0.3")
        assert wrong.returncode == 1
        time.sleep(1.5)  # the listener looks at its counters every second
    assert re.search(r"stt: DEBUG: refused handshakes: \d+ for another node id "
                     r"\(the peer dialled a wrong --peer\); since start: \d+ for another",
                     listener.stderr), listener.stderr


def test_the_listener_is_quiet_without_verbose(tmp_path):
    with Listener("asyncio", tmp_path) as listener:
        wrong = run("ping", "--to", listener.address, "--peer", hashlib.blake2s(b"x").hexdigest(),
                    "--timeout", "0.3")
        assert wrong.returncode == 1
        time.sleep(1.2)
    assert "refused handshakes" not in listener.stderr
