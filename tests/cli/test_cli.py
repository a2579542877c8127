"""The ``stt`` command, run as a real process over loopback.

The networking commands run on both adapters (``--backend asyncio`` and
``--backend trio``), and a listener on one backend serves clients on the other.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

STT = [sys.executable, "-m", "stt_io.cli"]
ENV = dict(os.environ, STT_SEED="cli test network seed, long enough")
BACKENDS = ["asyncio", "trio"]


def run(*args: str, timeout: float = 60, env=ENV) -> subprocess.CompletedProcess:
    return subprocess.run([*STT, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_sends_and_verifies_a_file(backend):
    result = run("demo", "--mib", "4", "--backend", backend)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backend {backend} (stt_io.{backend})\n")
    assert "hash verified by the receiver" in result.stdout
    assert "packets sent / received" in result.stdout
    assert "session closed: graceful" in result.stdout
    assert result.stdout.rstrip().endswith("demo OK")
    assert "sending 4 MiB [#########################] 100%" in result.stderr
    assert "Traceback" not in result.stderr


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


def test_backend_trio_without_trio_is_a_one_line_error():
    # The child hides trio as if it were not installed: None in sys.modules
    # makes "import trio" fail.
    code = "import sys; sys.modules['trio'] = None; from stt_io.cli import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", code, "demo", "--backend", "trio"],
                            capture_output=True, text=True, timeout=60, env=ENV)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("stt: --backend trio needs trio (pip install 'stt[trio]')")


@pytest.fixture
def listener(request, tmp_path):
    backend = request.param
    proc = subprocess.Popen([*STT, "listen", "--backend", backend, "--port", "0",
                             "--save-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        first = proc.stdout.readline()
        assert first.startswith("listening on "), proc.stderr.read()
        address = first.split()[-1]
        node_id = proc.stdout.readline().split()[-1]
        assert proc.stdout.readline() == f"backend {backend}\n"
        yield address, node_id, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def _stt(*args: str) -> subprocess.Popen:
    return subprocess.Popen([*STT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=60)
    return proc.returncode, stdout, stderr


# Each backend serves the other and is served by it; asyncio-asyncio is the
# original test. Both backends in both roles, so trio-trio adds nothing.
@pytest.mark.parametrize(("listener", "client"), [
    ("asyncio", "asyncio"),
    ("trio", "asyncio"),
    ("asyncio", "trio"),
], indirect=["listener"], ids=["asyncio-asyncio", "trio-asyncio", "asyncio-trio"])
def test_send_and_ping_against_a_listener(listener, client, tmp_path_factory):
    address, node_id, save_dir = listener
    source = tmp_path_factory.mktemp("src") / "payload.bin"
    data = os.urandom(3 * 1024 * 1024 + 123)
    source.write_bytes(data)
    # Three clients at once, each in its own process and session. The last is
    # a node that is not the listener's id: it gets no answer, a clear timeout
    # (and takes --backend before the subcommand, which works too).
    send = _stt("send", "--backend", client, str(source), "--to", address, "--peer", node_id)
    ping = _stt("ping", "--backend", client, "--to", address, "--peer", node_id, "-c", "3")
    wrong = _stt("--backend", client, "ping", "--to", address,
                 "--peer", hashlib.blake2s(b"x").hexdigest(), "--timeout", "0.5")
    code, stdout, stderr = _finish(send)
    assert code == 0, stderr
    assert "verified by the receiver" in stdout
    assert (save_dir / "payload.bin").read_bytes() == data
    code, stdout, stderr = _finish(ping)
    assert code == 0, stderr
    assert stdout.count("reply") == 3 and "min/avg/max" in stdout
    code, stdout, stderr = _finish(wrong)
    assert code == 1 and "ConnectionTimeoutError" in stderr
    assert "Traceback" not in stderr
