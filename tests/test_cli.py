"""The ``stt`` command, run as a real process over loopback."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

STT = [sys.executable, "-m", "stt_io.cli"]
ENV = dict(os.environ, STT_SEED="cli test network seed, long enough")


def run(*args: str, timeout: float = 60, env=ENV) -> subprocess.CompletedProcess:
    return subprocess.run([*STT, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_demo_sends_and_verifies_a_file():
    result = run("demo", "--mib", "4")
    assert result.returncode == 0, result.stderr
    assert "hash verified by the receiver" in result.stdout
    assert "session closed: graceful" in result.stdout
    assert result.stdout.rstrip().endswith("demo OK")


def test_keygen_and_id(tmp_path):
    path = tmp_path / "me.key"
    made = run("keygen", "--out", str(path))
    assert made.returncode == 0
    node_id = made.stdout.strip()
    assert len(bytes.fromhex(node_id)) == 32
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert run("id", "--identity", str(path)).stdout.strip() == node_id
    again = run("keygen", "--out", str(path))
    assert again.returncode == 1 and "exists" in again.stderr


def test_a_seed_is_required():
    env = {k: v for k, v in os.environ.items() if k != "STT_SEED"}
    result = run("ping", "--to", "127.0.0.1:9", "--peer", "00" * 32, env=env)
    assert result.returncode != 0 and "no network seed" in result.stderr


@pytest.fixture
def listener(tmp_path):
    proc = subprocess.Popen([*STT, "listen", "--port", "0", "--save-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        address = proc.stdout.readline().split()[-1]
        node_id = proc.stdout.readline().split()[-1]
        yield address, node_id, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_send_and_ping_against_a_listener(listener, tmp_path_factory):
    address, node_id, save_dir = listener
    source = tmp_path_factory.mktemp("src") / "payload.bin"
    data = os.urandom(3 * 1024 * 1024 + 123)
    source.write_bytes(data)
    sent = run("send", str(source), "--to", address, "--peer", node_id)
    assert sent.returncode == 0, sent.stderr
    assert "verified by the receiver" in sent.stdout
    assert (save_dir / "payload.bin").read_bytes() == data
    pinged = run("ping", "--to", address, "--peer", node_id, "-c", "3")
    assert pinged.returncode == 0, pinged.stderr
    assert pinged.stdout.count("reply") == 3 and "min/avg/max" in pinged.stdout
    # A node that is not the listener's id gets no answer: a clear timeout.
    wrong = run("ping", "--to", address, "--peer", hashlib.blake2s(b"x").hexdigest(),
                "--timeout", "1")
    assert wrong.returncode == 1 and "ConnectionTimeoutError" in wrong.stderr
