"""``stt send`` against ``stt listen`` when things go wrong: the receiver
cannot save, a file of that name exists, the peer never answers.

Every case runs with the listener and the sender on different backends (and
both on asyncio), and with ``--timeout`` so that nothing can hang.
"""

from __future__ import annotations

import os
import time

import pytest

from ..helpers.cli import Listener, MutePeer, finish, run, start

PAIRS = pytest.mark.parametrize(("backend", "client"), [
    ("asyncio", "asyncio"),
    ("trio", "asyncio"),
    ("asyncio", "trio"),
], ids=["asyncio-asyncio", "trio-asyncio", "asyncio-trio"])


def send(client: str, path, listener, *extra: str, timeout: str = "5"):
    return run("send", "--backend", client, str(path), "--to", listener.address,
               "--peer", listener.node_id, "--timeout", timeout, *extra, timeout=30)


@pytest.fixture
def dirs(tmp_path):
    save_dir, source_dir = tmp_path / "save", tmp_path / "source"
    save_dir.mkdir()
    source_dir.mkdir()
    return save_dir, source_dir


def leftovers(save_dir) -> list[str]:
    return [p.name for p in save_dir.iterdir() if p.name.endswith(".stt-part")]


@PAIRS
def test_the_sender_prints_why_the_receiver_cannot_save(backend, client, dirs):
    save_dir, source_dir = dirs
    source = source_dir / "payload.bin"
    source.write_bytes(os.urandom(2 * 1024 * 1024))
    with Listener(backend, save_dir) as listener:
        save_dir.rmdir()  # the save directory goes away under the listener
        started = time.monotonic()
        result = send(client, source, listener)
        took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "stt: the receiver refused payload.bin: cannot write the file on the receiver: "
        "No such file or directory (storage)")
    assert "Traceback" not in result.stderr
    assert took < 5  # told at once, not after the timeout
    assert "refused payload.bin: cannot write the file" in listener.stdout


@PAIRS
def test_a_file_of_the_same_name_is_not_overwritten(backend, client, dirs):
    save_dir, source_dir = dirs
    source = source_dir / "report.txt"
    source.write_bytes(b"first version\n" * 1000)
    with Listener(backend, save_dir) as listener:
        first = send(client, source, listener)
        assert first.returncode == 0, first.stderr
        source.write_bytes(b"second version\n" * 1000)
        second = send(client, source, listener)
    assert second.returncode == 1
    assert second.stderr.splitlines()[-1] == (
        "stt: the receiver refused report.txt: report.txt already exists on the receiver "
        "(its listener can run with --overwrite) (exists)")
    assert (save_dir / "report.txt").read_bytes() == b"first version\n" * 1000
    assert leftovers(save_dir) == []
    assert "received report.txt: 14,000 bytes" in listener.stdout
    assert f"saved as {save_dir / 'report.txt'}" in listener.stdout
    assert "refused report.txt: report.txt already exists" in listener.stdout


@PAIRS
def test_overwrite_lets_a_file_replace_another(backend, client, dirs):
    save_dir, source_dir = dirs
    source = source_dir / "report.txt"
    (save_dir / "report.txt").write_bytes(b"old")
    source.write_bytes(b"new version\n" * 1000)
    with Listener(backend, save_dir, "--overwrite") as listener:
        result = send(client, source, listener)
    assert result.returncode == 0, result.stderr
    assert (save_dir / "report.txt").read_bytes() == b"new version\n" * 1000
    assert leftovers(save_dir) == []


@pytest.mark.parametrize("client", ["asyncio", "trio"])
def test_timeout_bounds_the_wait_for_the_answer(client, tmp_path):
    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(100_000))
    with MutePeer() as peer:
        started = time.monotonic()
        result = send(client, source, peer, timeout="1")
        took = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == \
        "stt: no answer from the receiver within 1 s (--timeout)"
    assert took < 10


@pytest.mark.parametrize("client", ["asyncio", "trio"])
def test_timeout_bounds_each_ping_reply(client):
    with MutePeer() as peer:
        result = run("ping", "--backend", client, "--to", peer.address, "--peer", peer.node_id,
                     "--timeout", "1", "-c", "3", timeout=30)
    assert result.returncode == 1
    assert result.stdout.startswith("connected in ")
    assert result.stderr == "stt: no reply to ping 0 within 1 s (--timeout)\n"


@pytest.mark.parametrize("client", ["asyncio", "trio"])
def test_progress_goes_to_a_log_as_plain_lines(client, dirs):
    save_dir, source_dir = dirs
    source = source_dir / "payload.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024))
    with Listener("asyncio", save_dir) as listener:
        result = send(client, source, listener)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert result.stderr.startswith("payload.bin: 100% (3,145,728 bytes) in ")
    assert result.stderr.endswith(" MB/s\n") and result.stderr.count("\n") == 1


def test_progress_bar_on_a_terminal(dirs):
    pty = pytest.importorskip("pty")
    save_dir, source_dir = dirs
    source = source_dir / "payload.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024))
    with Listener("asyncio", save_dir) as listener:
        master, slave = pty.openpty()
        proc = start("send", str(source), "--to", listener.address,
                     "--peer", listener.node_id, "--timeout", "5", stderr=slave)
        os.close(slave)
        terminal = b""
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            terminal += data
        os.close(master)
        code, stdout, _ = finish(proc)
    assert code == 0
    assert "verified by the receiver" in stdout
    assert b"\rpayload.bin [#########################] 100%" in terminal
