"""Run every script in ``examples/`` as a user would, with small sizes.

Each example starts its own nodes on 127.0.0.1, prints a transcript and exits 0
on success; these tests check the exit code and the transcript's key lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str, seed: str | None = "examples test network seed",
                timeout: float = 30.0) -> str:
    env = dict(os.environ)
    env.pop("STT_SEED", None)
    if seed is not None:
        env["STT_SEED"] = seed
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (f"{name} exited {result.returncode}:\n"
                                    f"{result.stdout}\n{result.stderr}")
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def test_request_response():
    out = run_example("request_response.py", "--requests", "4")
    assert "'upper hello'" in out and "'HELLO'" in out
    assert "20 concurrent requests answered in order: True" in out
    assert "session closed: graceful" in out
    assert out.rstrip().endswith("request-response OK")


def test_request_response_generates_a_seed_when_none_is_given():
    out = run_example("request_response.py", "--requests", "2", seed=None)
    assert "using a random seed for this run" in out
    assert "request-response OK" in out


def test_seed_option_is_used():
    out = run_example("request_response.py", "--requests", "1", "--seed",
                      "a seed given on the command line", seed=None)
    assert "random seed" not in out
    assert "request-response OK" in out


def test_bidirectional_streaming():
    out = run_example("bidirectional_streaming.py", "--count", "30")
    assert "client: <- status 10 readings so far" in out
    assert "received 30 averages" in out and "avg 30 14.50" in out
    assert "bidirectional streaming OK" in out


def test_file_transfer():
    out = run_example("file_transfer.py", "--size-mib", "3")
    assert "3.0 / 3.0 MiB" in out
    assert "receiver got payload.bin: 3145728 bytes" in out
    assert "MiB/s" in out
    assert out.rstrip().endswith("hash OK")


def test_multiplexed():
    out = run_example("multiplexed.py")
    assert "chat refuses a 1000-byte message locally" in out
    assert out.count("  chat '") == 4
    assert "multiplexing OK: chat was not stuck behind video" in out


def test_connect_retry():
    out = run_example("connect_retry.py", "--delay", "0.8")
    assert "attempt 1: " in out
    assert "ConnectionRefusedError" in out or "ConnectionTimeoutError" in out
    assert "server: got b'ping'" in out
    assert "connect retry OK" in out


def test_pubsub():
    out = run_example("pubsub.py", "--count", "30")
    assert "3 subscribers joined 'sensor_data'" in out
    assert "plain handler: sensor_data #0 20.0 C from DHTNode(" in out
    for name in ("plain ", "async ", "pull  "):
        assert f"{name} subscriber: 30 readings, every one once, in order, from the sensor: " \
               "True" in out
    assert "lost 0" in out
    assert out.rstrip().endswith("pub/sub OK")


def test_content_distribution():
    out = run_example("content_distribution.py", "--size-mib", "4")
    assert "published 4 MiB, content id " in out
    assert out.count("member retrieved 4194304 bytes and now provides them") == 4
    assert "late member: 4194304 bytes to disk in " in out
    assert "copy identical to the original: True" in out
    assert out.rstrip().endswith("content distribution OK")


@pytest.mark.skipif(os.name != "posix", reason="kills a child process with SIGKILL")
def test_keepalive_monitor():
    out = run_example("keepalive_monitor.py", "--idle-timeout", "1.0")
    assert "open=True" in out
    assert "reason=timeout" in out and "session.close_reason 'timeout'" in out
    assert "reason=auth_failure" in out and "AuthenticationError" in out
    assert "keepalive monitor OK" in out


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("[!_]*.py")))
def test_a_short_seed_is_one_clear_error(name):
    # Every example starts through examples/_common.py, which checks the seed
    # before any node starts.
    env = {k: v for k, v in os.environ.items() if k != "STT_SEED"}
    for args, env_seed, named in ((["--seed", "short"], None, "--seed"), ([], "short", "STT_SEED")):
        if env_seed is not None:
            env["STT_SEED"] = env_seed
        result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        last = result.stderr.splitlines()[-1]
        assert named in last and "at least 16 bytes (got 5)" in last, result.stderr


def test_live_av_drops_stale_frames_and_keeps_the_audio():
    out = run_example("live_av.py", "--seconds", "3", "--stall", "0.8")
    assert "skipped by the transport" in out
    assert "audio: 151 sent" in out
    assert out.rstrip().endswith("live audio/video OK")
