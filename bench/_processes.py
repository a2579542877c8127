"""A benchmark's server and client as two processes of their own.

The convention the two-process benchmarks share (``bench_transport.py``,
``bench_priority.py``): the server prints one JSON line on stdout once it is
up (where it listens, and whatever a client needs to reach it) and serves until
SIGTERM; the client measures, prints its results as one JSON document on
stdout and exits. :func:`serving` runs the server for the length of a ``with``
block and :func:`run_client` runs a client to the end.

The server's stderr goes to a temporary file, not a pipe: a server that writes
more than a pipe holds (64 KiB on Linux) while nobody reads would block in the
middle of a measurement, and the file still gives the tail for an error message.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

#: how much of a failed process's stderr an error message quotes
ERROR_TAIL = 800


@contextlib.contextmanager
def serving(command: list[str], start_timeout: float = 20.0) -> Iterator[dict]:
    """Start the server ``command``, yield the JSON line it prints once it is up,
    and stop it (SIGTERM, then SIGKILL after 10 s) when the block is left.

    Raises:
        RuntimeError: the server printed nothing within ``start_timeout`` seconds
            (the message ends with the tail of its stderr).
    """
    with tempfile.TemporaryFile("w+") as errors:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            line = _readline(server, start_timeout)
            if not line:
                _stop(server)
                errors.seek(0)
                raise RuntimeError("server did not start: " + errors.read()[-ERROR_TAIL:])
            yield json.loads(line)
        finally:
            _stop(server)
            server.stdout.close()


def run_client(command: list[str], timeout: float) -> Any:
    """Run the client ``command`` to the end and return the JSON it printed.

    Raises:
        RuntimeError: it exited with an error (the message ends with the tail of
            its stderr).
        subprocess.TimeoutExpired: it ran longer than ``timeout`` seconds (it is
            killed).
    """
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError("client failed: " + done.stderr.strip()[-ERROR_TAIL:])
    return json.loads(done.stdout)


def run_in_build(command: list[str], *, pure: bool) -> Any:
    """Run ``command`` (a benchmark's child) in the pure build (``STT_NO_EXTENSIONS=1``)
    or the compiled one, and return the JSON it printed: a result, or a list of
    results, each with ``"compiled"`` saying which build it ran on.

    Raises:
        SystemExit: the child failed (its stderr is written out first), or the
            build loaded is not the one asked for (the compiled engine is not
            built: ``pip install -e .`` with a C compiler).
    """
    env = dict(os.environ)
    env.pop("STT_NO_EXTENSIONS", None)
    if pure:
        env["STT_NO_EXTENSIONS"] = "1"
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    label = "pure" if pure else "compiled"
    if done.returncode:
        raise SystemExit(f"the {label} run failed:\n{done.stderr.strip()[-ERROR_TAIL:]}")
    results = json.loads(done.stdout)
    if any(r["compiled"] == pure for r in (results if isinstance(results, list) else [results])):
        raise SystemExit(f"the {label} run loaded the other build: is the compiled engine "
                         "built? (`pip install -e .` with a C compiler)")
    return results


def _readline(process: subprocess.Popen, timeout: float) -> str:
    """The first line ``process`` prints, or "" if none comes within ``timeout`` s."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
