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

from ..helpers.cli import ENV, Listener, finish, run, start


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_sends_and_verifies_a_file(backend):
    result = run("demo", "--mib", "4", "--backend", backend)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backend {backend} (stt_io.{backend})\n")
    assert "hash verified by the receiver" in result.stdout
    assert "packets sent / received" in result.stdout
    assert "session closed: graceful" in result.stdout
    assert result.stdout.rstrip().endswith("demo OK")
    # stderr is a pipe here, not a terminal: plain progress lines, no bar.
    assert "sending 4 MiB: 100% (4,194,304 bytes) in " in result.stderr
    assert "\r" not in result.stderr
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


def test_id_takes_the_file_as_an_argument(tmp_path):
    path = tmp_path / "me.key"
    node_id = run("keygen", "--out", str(path)).stdout.strip()
    result = run("id", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == node_id


def test_keygen_without_out_says_where_it_wrote(tmp_path):
    result = run("keygen", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "stt-identity.key"
    assert written.exists()
    assert result.stderr == f"stt: wrote {written} (mode 0600)\n"
    assert run("id", cwd=tmp_path).stdout == result.stdout  # id reads the same default


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
    assert result.stderr.startswith(
        "stt: --backend trio needs trio (pip install 'seigr-toolset-transmissions[trio]')")


# Each backend serves the other and is served by it; asyncio-asyncio is the
# original test. Both backends in both roles, so trio-trio adds nothing.
@pytest.mark.parametrize(("backend", "client"), [
    ("asyncio", "asyncio"),
    ("trio", "asyncio"),
    ("asyncio", "trio"),
], ids=["asyncio-asyncio", "trio-asyncio", "asyncio-trio"])
def test_send_and_ping_against_a_listener(backend, client, tmp_path):
    save_dir = tmp_path / "save"
    save_dir.mkdir()
    source = tmp_path / "payload.bin"
    data = os.urandom(3 * 1024 * 1024 + 123)
    source.write_bytes(data)
    with Listener(backend, save_dir) as listener:
        address, node_id = listener.address, listener.node_id
        # Three clients at once, each in its own process and session. The last
        # is a node that is not the listener's id: it gets no answer, a clear
        # timeout (and takes --backend before the subcommand, which works too).
        send = start("send", "--backend", client, str(source), "--to", address,
                     "--peer", node_id, "--timeout", "10")
        ping = start("ping", "--backend", client, "--to", address, "--peer", node_id,
                     "-c", "3", "--timeout", "10")
        wrong = start("--backend", client, "ping", "--to", address,
                      "--peer", hashlib.blake2s(b"x").hexdigest(), "--timeout", "0.5")
        code, stdout, stderr = finish(send)
        assert code == 0, stderr
        assert "verified by the receiver" in stdout
        assert (save_dir / "payload.bin").read_bytes() == data
        code, stdout, stderr = finish(ping)
        assert code == 0, stderr
        assert stdout.count("reply") == 3 and "min/avg/max" in stdout
        code, stdout, stderr = finish(wrong)
        assert code == 1 and "ConnectionTimeoutError" in stderr
        assert "Traceback" not in stderr
    # The listener says where the file landed.
    assert f"saved as {save_dir / 'payload.bin'}" in listener.stdout
