"""``stt publish``, ``stt fetch`` and ``stt node --store`` in subprocesses over 127.0.0.1."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from stt_io.cli.content import FetchProgress, default_store_dir
from stt_proto.content.store import DirectoryStore
from stt_proto.content.tree import CHUNK_SIZE, HashTree

from ..helpers.cli import BACKENDS, finish, run, start
from .test_cli_dht import Member

#: The summary line of a fetch (the bytes, seconds, rate, providers, bad ones).
SUMMARY = re.compile(r"stt: fetched (?P<name>\S+): (?P<bytes>[\d,]+) bytes in [\d.]+ s, "
                     r"[\d.]+ MB/s, from (?P<providers>\d+) providers?, "
                     r"(?P<bad>\d+) bad providers? dropped(?P<resumed>; resumed: "
                     r"(?P<kept>\d+) of (?P<count>\d+) chunks were verified already)?\n")


def make_file(path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


class Publisher:
    """``stt publish FILE ARGS`` serving in the background; :attr:`content_id`
    is what it printed, once it announced the file."""

    def __init__(self, path, *args: str) -> None:
        self.proc = start("publish", str(path), *args)
        self.content_id = self.proc.stdout.readline().strip()
        if not re.fullmatch(r"[0-9a-f]{64}", self.content_id):
            self.proc.kill()
            raise AssertionError(f"publish did not start: {self.content_id}"
                                 f"{self.proc.communicate()}")
        self.ready = self.proc.stderr.readline()
        assert self.ready.startswith(f"stt: serving {path} ("), self.ready
        assert self.ready.rstrip().endswith(" until Ctrl-C")

    def interrupt(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGINT)
        return finish(self.proc, timeout=10)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def one_line(result: subprocess.CompletedProcess, status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("stt: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def summary(stderr: str) -> re.Match:
    match = SUMMARY.fullmatch(stderr.splitlines(keepends=True)[-1])
    assert match, stderr
    return match


@pytest.mark.parametrize("backend", BACKENDS)
def test_publish_then_fetch_a_multi_chunk_file(backend, tmp_path):
    other = BACKENDS[1 - BACKENDS.index(backend)]
    original = tmp_path / "original.bin"
    data = make_file(original, 3 * 1024 * 1024 + 12_345)   # 13 chunks, the last one short
    content_id = HashTree.of_bytes(data).content_id.hex()
    with Member(backend, "--store", str(tmp_path / "node-store")) as node:
        assert node.proc.stdout.readline() == \
            f"serving 0 contents of the store {tmp_path / 'node-store'}\n"
        with Publisher(original, "--store", str(tmp_path / "pub-store"), "--bootstrap",
                       node.bootstrap, "--backend", other) as publisher:
            assert publisher.content_id == content_id
            out = tmp_path / "fetched.bin"
            fetched = run("fetch", content_id, "-o", str(out), "--bootstrap", node.bootstrap,
                          "--store", str(tmp_path / "fetch-store"), "--backend", backend)
            assert fetched.returncode == 0, fetched.stderr
            assert fetched.stdout == "" and "Traceback" not in fetched.stderr
            assert out.read_bytes() == data
            done = summary(fetched.stderr)
            assert done["name"] == str(out) and done["bytes"] == f"{len(data):,}"
            assert done["providers"] == "1" and done["bad"] == "0" and not done["resumed"]
            # Again: the store knows that file holds the content; nothing is fetched.
            again = run("fetch", content_id, "-o", str(out), "--bootstrap", node.bootstrap,
                        "--store", str(tmp_path / "fetch-store"), "--backend", backend)
            assert one_line(again, 0) == \
                f"stt: {out}: all {len(data):,} bytes were in the store already; nothing fetched\n"
            # To another file: copied from the store, still not fetched.
            copy = tmp_path / "copy.bin"
            copied = run("fetch", content_id, "-o", str(copy), "--bootstrap", node.bootstrap,
                         "--store", str(tmp_path / "fetch-store"), "--backend", backend)
            assert "nothing fetched" in one_line(copied, 0)
            assert copy.read_bytes() == data
            status, out_text, err = publisher.interrupt()
        assert status == 130 and "Traceback" not in err, err
    # Published in place: the store has the file's leaves, no copy of its data.
    published = DirectoryStore(tmp_path / "pub-store")
    assert published.entries() == [bytes.fromhex(content_id)]
    assert not any(name.endswith(".data") for name in
                   os.listdir(tmp_path / "pub-store" / "objects"))
    # The fetch kept its file in its store (a node on it would serve it).
    assert DirectoryStore(tmp_path / "fetch-store").has(bytes.fromhex(content_id))


def test_a_node_serves_what_publish_exit_left_in_its_store(tmp_path):
    original = tmp_path / "original.bin"
    data = make_file(original, 2 * CHUNK_SIZE + 1)
    store = tmp_path / "store"
    with Member("asyncio") as first:
        published = run("publish", str(original), "--store", str(store), "--exit",
                        "--bootstrap", first.bootstrap)
        assert published.returncode == 0, published.stderr
        content_id = published.stdout.strip()
        assert content_id == HashTree.of_bytes(data).content_id.hex()
        assert published.stderr == \
            f"stt: published {original} ({len(data):,} bytes) in {store}\n"
        # Nobody serves it now: the publisher is gone.
        with Member("trio", "--store", str(store), "--bootstrap", first.bootstrap) as node:
            assert node.proc.stdout.readline().startswith("joined: ")
            assert node.proc.stdout.readline() == f"serving 1 contents of the store {store}\n"
            out = tmp_path / "fetched.bin"
            fetched = run("fetch", content_id, "-o", str(out), "--no-provide",
                          "--bootstrap", first.bootstrap, "--store", str(tmp_path / "mine"))
            assert fetched.returncode == 0, fetched.stderr
            assert out.read_bytes() == data
            assert summary(fetched.stderr)["providers"] == "1"
            # The node holds its store: another command on it stops, clearly.
            clash = run("publish", str(original), "--store", str(store), "--exit",
                        "--bootstrap", first.bootstrap)
            assert clash.returncode == 1 and "Traceback" not in clash.stderr
            assert f"--store {store}: content store {store} is open" in clash.stderr
            assert f"(process {node.proc.pid})" in clash.stderr
            status, _, err = node.stop()
        assert status == 130 and "Traceback" not in err, err
    # --no-provide: the store forgot the file; the file stays.
    assert DirectoryStore(tmp_path / "mine").entries() == []


def test_an_interrupted_fetch_resumes(tmp_path):
    original = tmp_path / "original.bin"
    data = make_file(original, 64 * 1024 * 1024)
    count = len(data) // CHUNK_SIZE
    with Member("asyncio") as node, \
            Publisher(original, "--store", str(tmp_path / "pub-store"), "--bootstrap",
                      node.bootstrap) as publisher:
        out, store = tmp_path / "fetched.bin", tmp_path / "fetch-store"
        command = ["fetch", publisher.content_id, "-o", str(out), "--bootstrap",
                   node.bootstrap, "--store", str(store)]
        fetch = start(*command)
        # The store's log of verified chunks: 36 bytes a chunk (index, leaf).
        log = store / "objects" / f"{publisher.content_id}.partial"
        deadline = time.monotonic() + 20
        while fetch.poll() is None and time.monotonic() < deadline:
            if log.exists() and log.stat().st_size >= 36 * count // 8:
                fetch.kill()   # no goodbye: as a power cut or kill -9 leaves it
                break
            time.sleep(0.002)
        status, _, err = finish(fetch, timeout=10)
        assert status == -signal.SIGKILL, f"the fetch ended before it was killed: {err}"
        assert out.read_bytes() != data
        again = run(*command)
        assert again.returncode == 0, again.stderr
        assert out.read_bytes() == data
    done = summary(again.stderr)
    assert done["resumed"] and int(done["count"]) == count
    assert count // 8 <= int(done["kept"]) < count


def test_an_unknown_content_is_not_found(tmp_path):
    unknown = "cd" * 32
    with Member("asyncio") as node:
        result = run("fetch", unknown, "-o", str(tmp_path / "x"), "--bootstrap",
                     node.bootstrap, "--store", str(tmp_path / "store"))
    assert one_line(result, 1) == (f"stt: content {unknown} not found: no provider of it "
                                   "could be found or reached\n")


NOBODY = "127.0.0.1:9/" + "ab" * 32


@pytest.mark.parametrize(("args", "named"), [
    (["fetch", "ab" * 31, "-o", "x", "--bootstrap", NOBODY], "CONTENT_ID"),
    (["fetch", "zz" * 32, "-o", "x", "--bootstrap", NOBODY], "CONTENT_ID"),
    (["fetch", "ab" * 32, "--bootstrap", NOBODY], "-o"),
    (["fetch", "ab" * 32, "-o", "x"], "--bootstrap"),
    (["fetch", "ab" * 32, "-o", "x", "--bootstrap", NOBODY, "--timeout", "0"], "--timeout"),
    (["publish"], "FILE"),
    (["publish", "f", "--bootstrap", "127.0.0.1:9"], "HOST:PORT/NODE_ID"),
], ids=lambda v: " ".join(a[:10] for a in v) if isinstance(v, list) else v)
def test_bad_input_is_a_usage_error(args, named):
    assert named in one_line(run(*args), 2)


def test_failures_before_joining(tmp_path):
    missing = run("publish", str(tmp_path / "nope"), "--store", str(tmp_path / "s"))
    assert one_line(missing, 1) == f"stt: {tmp_path / 'nope'}: no such file\n"
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    refused = run("fetch", "ab" * 32, "-o", str(taken), "--bootstrap", NOBODY,
                  "--store", str(tmp_path / "s"))
    assert "--overwrite" in one_line(refused, 1)
    assert taken.read_text() == "keep me"
    slow = run("fetch", "ab" * 32, "-o", str(tmp_path / "x"), "--bootstrap", NOBODY,
               "--store", str(tmp_path / "s"), "--timeout", "1")
    assert "bootstrap" in one_line(slow, 1)


def test_help_lists_the_options():
    publish = run("publish", "--help").stdout
    for option in ("--store DIR", "--bootstrap HOST:PORT/NODE_ID", "--exit", "--timeout",
                   "--backend", "--identity"):
        assert option in publish
    assert "nobody serves the file unless a 'stt node' with the same --store" in \
        " ".join(publish.split())
    fetch = run("fetch", "--help").stdout
    for option in ("-o FILE", "--store DIR", "--bootstrap HOST:PORT/NODE_ID", "--no-provide",
                   "--timeout SECONDS", "--backend", "--overwrite"):
        assert option in fetch
    assert "--store [DIR]" in run("node", "--help").stdout


def test_fetch_progress_shows_bytes_providers_and_rate():
    clock = iter([0.0, 1.0, 2.0, 4.0, 5.0, 6.0]).__next__
    out = io.StringIO()
    progress = FetchProgress("f.bin", resumed_bytes=lambda total: 1_000_000, out=out,
                             interactive=False, interval=1.5, clock=clock)
    progress.report(0, 0, 0)              # the length is not known yet: nothing shown
    progress.report(1_000_000, 4_000_000, 2)   # at 1 s: too early for a line
    progress.report(3_000_000, 4_000_000, 3)   # at 2 s: 2 MB this run in 2 s
    assert out.getvalue() == \
        "f.bin: 75% (3,000,000 of 4,000,000 bytes) from 3 providers, 1.0 MB/s\n"
    assert progress.resumed == 1_000_000 and progress.peak_providers == 3
    live = io.StringIO()
    bar = FetchProgress("f.bin", out=live, interactive=True,
                        clock=iter([0.0, 1.0, 1.5, 2.0, 3.0]).__next__)
    bar.report(1 << 20, 4 << 20, 1)
    bar.report(1 << 20, 4 << 20, 1)       # nothing changed: not drawn again
    bar.report(2 << 20, 4 << 20, 2)
    assert bar.finish() == 3.0
    assert live.getvalue() == (
        "\rf.bin [######...................]  25% 1.0/4.0 MiB, 1 provider, 1.0 MB/s\x1b[K"
        "\rf.bin [############.............]  50% 2.0/4.0 MiB, 2 providers, 1.0 MB/s\x1b[K\n")


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the XDG rule")
def test_the_default_store_is_in_the_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_dir() == str(tmp_path / "stt" / "content")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert default_store_dir() == os.path.expanduser("~/.local/share/stt/content")
