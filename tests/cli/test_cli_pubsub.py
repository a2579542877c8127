"""``stt pub`` and ``stt sub`` in subprocesses over 127.0.0.1, on both backends."""

from __future__ import annotations

import signal
import subprocess

import pytest

from stt_io.cli.pubsub import MAX_MESSAGE_SIZE, format_message

from ..helpers.cli import BACKENDS, ENV, STT, finish, run, start
from .test_cli_dht import Member

TOPIC = "sensor_data"
#: A bootstrap string nobody answers at (the discard port).
NOBODY = "127.0.0.1:9/" + "ab" * 32


class Subscriber:
    """``stt sub TOPIC ARGS`` in the background; returns once it has joined the
    topic (its first stderr line), so what is published from then on is owed to it."""

    def __init__(self, *args: str) -> None:
        self.proc = start("sub", *args)
        self.ready = self.proc.stderr.readline()
        if not self.ready.startswith("stt: subscribed to "):
            self.proc.kill()
            raise AssertionError(f"sub did not start: {self.ready}{self.proc.communicate()}")
        #: Its HOST:PORT/NODE_ID, for others to join through.
        self.bootstrap = self.ready.split(" as ")[1].split()[0]

    def finish(self) -> tuple[int, str, str]:
        status, out, err = finish(self.proc, timeout=30)
        return status, out, self.ready + err

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def keygen(path) -> str:
    """Write an identity file; its node id (hex)."""
    made = run("keygen", "--out", str(path))
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def one_line(result: subprocess.CompletedProcess, status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("stt: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_sub_prints_each_message_with_its_publisher(backend, tmp_path):
    other = BACKENDS[1 - BACKENDS.index(backend)]
    alice, bob = keygen(tmp_path / "alice.key"), keygen(tmp_path / "bob.key")
    with Member(backend) as node, \
            Subscriber(TOPIC, "--count", "3", "--timeout", "20", "--bootstrap",
                       node.bootstrap, "--backend", backend) as sub:
        assert "(0 mesh peers)" in sub.ready  # the first subscriber
        one = run("pub", TOPIC, "hello", "--bootstrap", node.bootstrap,
                  "--identity", str(tmp_path / "alice.key"), "--backend", other)
        assert one.returncode == 0, one.stderr
        assert one.stdout == ""
        assert one.stderr == f"stt: published 1 message on {TOPIC!r} as {alice}\n"
        lines = run("pub", TOPIC, "-", "--bootstrap", node.bootstrap,
                    "--identity", str(tmp_path / "bob.key"), "--backend", backend,
                    input="two\n\nthree\r\n")
        assert lines.returncode == 0, lines.stderr
        assert lines.stderr == f"stt: published 2 messages on {TOPIC!r} as {bob}\n"
        status, out, err = sub.finish()
    assert status == 0, err
    # One publisher's messages are numbered from 1; the empty line was skipped,
    # the "\r\n" line ending is not part of the message.
    assert out.splitlines() == [f"{alice[:16]} 1 hello", f"{bob[:16]} 1 two",
                                f"{bob[:16]} 2 three"]
    assert "Traceback" not in err and "gap" not in err


def test_a_subscriber_is_the_bootstrap_and_raw_writes_the_data(tmp_path):
    with Subscriber(TOPIC, "--host", "127.0.0.1", "--count", "3", "--raw",
                    "--timeout", "20") as first:
        # A second subscriber joins the mesh through the first: both get everything.
        with Subscriber(TOPIC, "--count", "3", "--timeout", "20", "--bootstrap",
                        first.bootstrap, "--backend", "trio") as second:
            assert "(1 mesh peer)" in second.ready
            whole = run("pub", TOPIC, "--whole", "--bootstrap", first.bootstrap,
                        input="line one\nline two\n")
            assert whole.returncode == 0, whole.stderr
            text = run("pub", TOPIC, "no newline", "--bootstrap", second.bootstrap)
            assert text.returncode == 0, text.stderr
            binary = run("pub", TOPIC, "--whole", "--bootstrap", first.bootstrap,
                         input="tab\there")
            assert binary.returncode == 0, binary.stderr
            status, out, err = second.finish()
        assert status == 0, err
        assert [line.split(" ", 2)[1:] for line in out.splitlines()] == [
            ["1", "hex:" + b"line one\nline two\n".hex()], ["1", "no newline"],
            ["1", "hex:" + b"tab\there".hex()]]
        status, out, err = first.finish()
    assert status == 0, err
    # --raw: the data as it is, a newline added only where it has none.
    assert out == "line one\nline two\nno newline\ntab\there\n"


def test_format_message():
    publisher = bytes(range(32))
    assert format_message(publisher, 7, b"21.5 C") == "0001020304050607 7 21.5 C"
    assert format_message(publisher, 1, "été".encode()) == "0001020304050607 1 été"
    assert format_message(publisher, 1, b"") == "0001020304050607 1"
    assert format_message(publisher, 1, b"\xff\x00") == "0001020304050607 1 hex:ff00"
    assert format_message(publisher, 1, b"a\nb") == "0001020304050607 1 hex:610a62"
    # Text that looks like the hex form is written as hex itself: never ambiguous.
    assert format_message(publisher, 1, b"hex:00") == "0001020304050607 1 hex:6865783a3030"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("args", "named"), [
    (["pub", "", "x"], "TOPIC"),
    (["pub", "t" * 256, "x"], "TOPIC"),
    (["sub", ""], "TOPIC"),
    (["sub", "é" * 128], "TOPIC"),      # 256 bytes of UTF-8
    (["pub", "t", "x", "--whole"], "--whole"),
    (["sub", "t", "--count", "0"], "--count"),
    (["sub", "t", "--timeout", "0"], "--timeout"),
    (["pub", "t", "x", "--bootstrap", "127.0.0.1:9"], "HOST:PORT/NODE_ID"),
], ids=lambda v: " ".join(a[:12] for a in v) if isinstance(v, list) else v)
def test_bad_input_is_a_usage_error(backend, args, named):
    line = one_line(run(*args, "--backend", backend), 2)
    assert named in line


def test_a_topic_name_of_255_bytes_is_accepted():
    result = run("pub", "é" * 127 + "t", "x", "--timeout", "3")
    assert one_line(result, 1) == \
        f"stt: no subscriber of {'é' * 127 + 't'!r} was found: 1 message reached nobody\n"


@pytest.mark.parametrize("mode", [["--whole"], ["-"]])
def test_a_message_over_the_size_limit_is_refused(mode):
    size = MAX_MESSAGE_SIZE + 1
    result = run("pub", TOPIC, *mode, input="x" * size + "\n", timeout=30)
    line = one_line(result, 1)
    length = size + 1 if mode == ["--whole"] else size  # the newline is data with --whole
    assert line == (f"stt: MessageTooLargeError: a message of {length} bytes exceeds "
                    f"max_message_size ({MAX_MESSAGE_SIZE})\n")


def test_at_the_size_limit_a_line_is_published():
    with Subscriber(TOPIC, "--host", "127.0.0.1", "--count", "1", "--raw",
                    "--timeout", "20") as sub:
        done = run("pub", TOPIC, "-", "--bootstrap", sub.bootstrap,
                   input="y" * MAX_MESSAGE_SIZE + "\n")
        assert done.returncode == 0, done.stderr
        status, out, err = sub.finish()
    assert status == 0, err
    assert out == "y" * MAX_MESSAGE_SIZE + "\n"


def test_nothing_to_publish_and_nobody_to_publish_to():
    empty = run("pub", TOPIC, "-", input="\n\n")
    assert empty.returncode == 0 and "nothing to publish" in empty.stderr
    with Member("asyncio") as node:
        nobody = run("pub", TOPIC, "hello", "--bootstrap", node.bootstrap)
        assert one_line(nobody, 1) == \
            f"stt: no subscriber of {TOPIC!r} was found: 1 message reached nobody\n"


def test_timeouts_bound_every_wait():
    silent = run("pub", TOPIC, "x", "--bootstrap", NOBODY, "--timeout", "2", timeout=20)
    assert "bootstrap" in one_line(silent, 1)
    silent_sub = run("sub", TOPIC, "--bootstrap", NOBODY, "--timeout", "2", timeout=20)
    assert "bootstrap" in one_line(silent_sub, 1)
    with Subscriber(TOPIC, "--host", "127.0.0.1", "--count", "2", "--timeout", "1") as sub:
        status, out, err = sub.finish()
    assert status == 1 and out == ""
    assert err.splitlines()[-1] == "stt: no message within 1 s (--timeout); 0 of 2 received"


# On trio a Ctrl-C may land in one of the node's own tasks; the node passes it
# on to the command (it once logged and swallowed it, and the command hung).
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_stops_sub_and_a_pub_waiting_for_stdin(backend):
    with Subscriber(TOPIC, "--host", "127.0.0.1", "--backend", backend) as sub:
        pub = subprocess.Popen([*STT, "pub", TOPIC, "--bootstrap", sub.bootstrap,
                                "--backend", backend], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENV)
        try:
            pub.stdin.write("first\n")
            pub.stdin.flush()
            assert sub.proc.stdout.readline().split()[1:] == ["1", "first"]
            # stdin stays open: the reading thread is blocked when Ctrl-C comes.
            pub.send_signal(signal.SIGINT)
            status, _, err = finish(pub, timeout=10)
            assert status == 130 and "Traceback" not in err, err
        finally:
            if pub.poll() is None:
                pub.kill()
                pub.communicate()
        sub.proc.send_signal(signal.SIGINT)
        status, _, err = sub.finish()
    assert status == 130 and "Traceback" not in err, err
