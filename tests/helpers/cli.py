"""Running the real ``stt`` command in subprocesses, for ``tests/cli``.

Every helper bounds its waits (``timeout``) so that a command that hangs
fails its test instead of the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

STT = [sys.executable, "-m", "stt_io.cli"]
SEED = "cli test network seed, long enough"
#: The checkout under test comes first on the path, whatever the working
#: directory of a command (some tests run it elsewhere).
ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, STT_SEED=SEED,
           PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
BACKENDS = ["asyncio", "trio"]
#: The longest any single command may take in these tests (seconds).
LIMIT = 30.0
MUTE_PEER = Path(__file__).resolve().parent / "mute_peer.py"


def run(*args: str, timeout: float = LIMIT, env=ENV, **kwargs) -> subprocess.CompletedProcess:
    """Run ``stt ARGS`` to completion; stdout and stderr as text."""
    return subprocess.run([*STT, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, **kwargs)


def start(*args: str, env=ENV, stderr=subprocess.PIPE) -> subprocess.Popen:
    """Start ``stt ARGS``; stdout and (unless given) stderr piped as text."""
    return subprocess.Popen([*STT, *args], stdout=subprocess.PIPE, stderr=stderr,
                            text=True, env=env)


def finish(proc: subprocess.Popen, timeout: float = LIMIT) -> tuple[int, str, str]:
    """Wait for ``proc``; its exit status, stdout and stderr."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        raise AssertionError(f"still running after {timeout} s:\n{stdout}\n{stderr}") from None
    return proc.returncode, stdout, stderr


class Listener:
    """``stt listen`` in a subprocess, on a free port of 127.0.0.1.

    Use as a context manager; :attr:`address` and :attr:`node_id` are read
    from its first lines, :attr:`stdout` and :attr:`stderr` hold the rest once
    it has been stopped.
    """

    def __init__(self, backend: str, save_dir: Path, *extra: str) -> None:
        self.proc = start("listen", "--backend", backend, "--port", "0",
                          "--save-dir", str(save_dir), *extra)
        first = self.proc.stdout.readline()
        if not first.startswith("listening on "):
            self.stop()
            raise AssertionError(f"listener did not start: {first}{self.stderr}")
        self.address = first.split()[-1]
        self.node_id = self.proc.stdout.readline().split()[-1]
        assert self.proc.stdout.readline() == f"backend {backend}\n"
        self.stdout = self.stderr = ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean exit, output flushed
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.stdout += out
        self.stderr += err

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class MutePeer:
    """A node that accepts sessions and reads every stream to its end, but
    never answers (``mute_peer.py``): what a stuck listener looks like."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(MUTE_PEER), SEED],
                                     stdout=subprocess.PIPE, text=True)
        port, self.node_id = self.proc.stdout.readline().split()
        self.address = f"127.0.0.1:{port}"

    def __enter__(self) -> MutePeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.proc.kill()
        self.proc.communicate()
