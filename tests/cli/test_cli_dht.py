"""``stt node`` and ``stt dht put|get|find|providers`` in subprocesses, on both backends."""

from __future__ import annotations

import hashlib
import signal
import subprocess

import pytest

from ..helpers.cli import BACKENDS, finish, run, start


class Member:
    """``stt node`` on a free port of 127.0.0.1; :attr:`bootstrap` is its HOST:PORT/ID."""

    def __init__(self, backend: str, *extra: str) -> None:
        self.proc = start("node", "--backend", backend, "--port", "0",
                          "--status-interval", "1", *extra)
        lines = [self.proc.stdout.readline() for _ in range(3)]
        if not lines[0].startswith("node listening on "):
            self.proc.kill()
            raise AssertionError(f"node did not start: {lines}{self.proc.stderr.read()}")
        self.node_id = lines[1].split()[-1]
        assert lines[2].startswith("bootstrap string ")
        self.bootstrap = lines[2].split()[-1]
        assert self.bootstrap.endswith("/" + self.node_id)

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return finish(self.proc, timeout=10)

    def __enter__(self) -> Member:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.mark.parametrize("backend", BACKENDS)
def test_put_get_find_providers_through_a_node(backend, tmp_path):
    other = BACKENDS[1 - BACKENDS.index(backend)]
    with Member(backend) as first, \
            Member(other, "--bootstrap", first.bootstrap) as second:
        join = ["--bootstrap", first.bootstrap, "--backend", backend]
        put = run("dht", "put", "hello from the cli", *join)
        assert put.returncode == 0, put.stderr
        key = put.stdout.strip()
        assert key == hashlib.blake2b(b"hello from the cli", digest_size=32).hexdigest()
        got = run("dht", "get", key, "--bootstrap", first.bootstrap, "--backend", other)
        assert got.returncode == 0 and got.stdout == "hello from the cli\n", got.stderr
        found = run("dht", "find", first.node_id, *join)
        assert found.returncode == 0 and found.stdout.strip() == first.bootstrap
        provided = run("dht", "providers", key, "--provide", *join)
        assert provided.returncode == 0, provided.stderr
        assert len(provided.stdout.splitlines()) == 1
        data = tmp_path / "value.bin"
        data.write_bytes(b"\x00\x01binary")
        put_file = run("dht", "put", "--file", str(data), *join)
        assert put_file.returncode == 0
        assert put_file.stdout.strip() == hashlib.blake2b(b"\x00\x01binary",
                                                          digest_size=32).hexdigest()
        status, out, _ = first.stop()
        assert "status:" in out
        second.stop()


def test_node_joins_through_bootstrap_and_reports_contacts():
    with Member("asyncio") as first:
        with Member("trio", "--bootstrap", first.bootstrap) as joined:
            line = joined.proc.stdout.readline()
            assert line.startswith("joined: ") and int(line.split()[1]) >= 1


def test_nothing_found_is_one_line_and_status_1():
    with Member("asyncio") as first:
        join = ["--bootstrap", first.bootstrap]
        missing = run("dht", "get", "ab" * 32, *join)
        assert missing.returncode == 1
        assert missing.stderr.startswith("stt: no value under")
        nobody = run("dht", "find", "cd" * 32, *join, "--timeout", "5")
        assert nobody.returncode == 1 and nobody.stderr.startswith("stt: no member")
        none = run("dht", "providers", "ef" * 32, *join)
        assert none.returncode == 1 and none.stderr.startswith("stt: no provider")


def test_bad_arguments_are_usage_errors():
    bad_key = run("dht", "get", "nothex", "--bootstrap", "127.0.0.1:9/" + "ab" * 32)
    assert bad_key.returncode == 2 and "KEY" in bad_key.stderr
    bad_bootstrap = run("dht", "get", "ab" * 32, "--bootstrap", "127.0.0.1:9")
    assert bad_bootstrap.returncode == 2 and "HOST:PORT/NODE_ID" in bad_bootstrap.stderr
    no_bootstrap = run("dht", "get", "ab" * 32)
    assert no_bootstrap.returncode == 2 and "--bootstrap" in no_bootstrap.stderr
    both = run("dht", "put", "v", "--file", "x", "--bootstrap", "127.0.0.1:9/" + "ab" * 32)
    assert both.returncode == 2


def test_unreachable_bootstrap_fails_within_the_timeout():
    silent = run("dht", "get", "ab" * 32, "--bootstrap", "127.0.0.1:9/" + "ab" * 32,
                 "--timeout", "2", timeout=20)
    assert silent.returncode == 1
    assert silent.stderr.startswith("stt: ")
    assert "bootstrap" in silent.stderr


def test_state_file_is_written_on_exit(tmp_path):
    state = tmp_path / "state.json"
    with Member("asyncio") as first:
        member = Member("asyncio", "--bootstrap", first.bootstrap, "--state-file", str(state))
        assert member.proc.stdout.readline().startswith("joined: ")
        member.stop()
        assert state.exists() and '"contacts"' in state.read_text()


def test_node_serves_files_into_its_save_dir(tmp_path):
    save = tmp_path / "in"
    save.mkdir()
    sent = tmp_path / "file.bin"
    sent.write_bytes(b"\x05" * 5000)
    with Member("asyncio", "--save-dir", str(save)) as member:
        address = member.bootstrap.split("/")[0]
        done = run("send", str(sent), "--to", address, "--peer", member.node_id)
        assert done.returncode == 0, done.stderr
        assert (save / "file.bin").read_bytes() == sent.read_bytes()
    missing = run("node", "--port", "0", "--save-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "--save-dir" in missing.stderr
