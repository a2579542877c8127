"""Bad input to ``stt``: one ``stt: ...`` line on stderr and a non-zero exit,
never a traceback (and never exit 0).

A bad value on the command line (or in ``STT_SEED``) exits 2, as argparse's
usage errors do; a key file that does not load exits 1.
"""

from __future__ import annotations

import os

import pytest

from ..helpers.cli import BACKENDS, run

PEER = ["--to", "127.0.0.1:9", "--peer", "ab" * 32]


def one_line(result, status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("stt: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.fixture
def malformed_key(tmp_path):
    path = tmp_path / "bad.key"
    path.write_text("not an identity file\n")
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("args", "named"), [
    (["ping", "--seed", "short", *PEER], "--seed"),
    (["listen", "--seed", "fifteen bytes!!", "--port", "0"], "--seed"),
    (["ping", "-c", "0", *PEER], "--count"),
    (["ping", "-c", "-3", *PEER], "--count"),
    (["ping", "--timeout", "0", *PEER], "--timeout"),
    (["send", "--timeout", "-1", "FILE", *PEER], "--timeout"),
    (["ping", "--timeout", "nan", *PEER], "--timeout"),
    (["ping", "--to", "127.0.0.1:70000", "--peer", "ab" * 32], "--to"),
    (["ping", "--to", "127.0.0.1:0", "--peer", "ab" * 32], "--to"),
    (["ping", "--to", "127.0.0.1", "--peer", "ab" * 32], "--to"),
    (["ping", "--to", "127.0.0.1:9", "--peer", "abc"], "--peer"),
    (["listen", "--port", "65536"], "--port"),
    (["listen", "--port", "-1"], "--port"),
    (["demo", "--mib", "0"], "--mib"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_bad_value_is_a_usage_error(backend, args, named):
    line = one_line(run(*args, "--backend", backend, timeout=20), 2)
    assert named in line
    if named == "--timeout":
        assert "--peer" not in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_short_seed_in_the_environment_is_a_usage_error(backend):
    env = dict(os.environ, STT_SEED="too short")
    line = one_line(run("ping", *PEER, "--backend", backend, env=env, timeout=20), 2)
    assert "STT_SEED" in line and "16 bytes" in line


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("command", [["listen", "--port", "0"], ["ping", *PEER]])
def test_a_malformed_identity_file_is_one_line(backend, command, malformed_key):
    line = one_line(run(*command, "--identity", malformed_key, "--backend", backend,
                        timeout=20), 1)
    assert f"--identity: {malformed_key}: line 1: expected 'STT-IDENTITY-V1'" in line


def test_id_of_a_malformed_or_missing_file_is_one_line(malformed_key, tmp_path):
    line = one_line(run("id", malformed_key), 1)
    assert f"{malformed_key}: line 1" in line
    missing = str(tmp_path / "missing.key")
    line = one_line(run("id", missing), 1)
    assert f"{missing}: no such file or directory" in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_listen_refuses_a_missing_save_dir(backend, tmp_path):
    missing = tmp_path / "nonexistent" / "dir"
    line = one_line(run("listen", "--port", "0", "--save-dir", str(missing),
                        "--backend", backend, timeout=20), 2)
    assert line == f"stt: --save-dir {missing}: no such directory\n"


def test_send_of_a_missing_file_is_one_line(tmp_path):
    missing = str(tmp_path / "missing.bin")
    line = one_line(run("send", missing, *PEER, timeout=20), 1)
    assert line == f"stt: {missing}: no such file\n"
