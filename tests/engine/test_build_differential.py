"""The compiled and the pure engine are the same engine: one seeded scenario,
run once in each build, gives the same datagrams, byte for byte and at the same
simulated times, and the same events.

The build of the engine modules is chosen once per process (see
``stt_proto/_build.py``), so each build runs the scenario in its own
subprocess, which prints its trace as JSON lines; the test compares the two
traces and names the first entry where they part. The simulator draws every
key, nonce source and loss from its seed, so a trace is reproducible to the
byte within one build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The scenario, run as ``python -c SCENARIO SEED``: two nodes over a lossy,
#: jittery, reordering link open streams of every kind, with priorities and
#: deadlines, send messages and datagrams both ways, and close.
SCENARIO = r'''
import json, sys
import stt_proto
from stt_proto.endpoint import Endpoint
from stt_proto.errors import SendBufferFullError
from stt_proto.testing import Link, Network

seed = int(sys.argv[1])
net = Network(seed=seed)
a = net.add_node("a")
b = net.add_node("b")
link = Link(latency=0.02, jitter=0.004, bandwidth=20e6, loss=0.03, reorder=0.02,
            duplicate=0.01, corrupt=0.005)
net.connect_nodes(a, b, link)
trace = []
enter = Link._enter

def tap(self, network, data, src, dst, now):
    trace.append(["datagram", round(now, 9), str(src), data.hex()])
    enter(self, network, data, src, dst, now)

Link._enter = tap

def echo(node, event):
    kind = type(event).__name__
    fields = {}
    for name in getattr(type(event), "__slots__", ()):
        value = getattr(event, name)
        fields[name] = value.hex() if isinstance(value, bytes) else repr(value)
    trace.append(["event", round(net.now, 9), node.name, kind, fields])
    if kind == "MessageReceived" and node is b:
        node.endpoint.send_message(event.session_id, event.stream_id, event.data[::-1],
                                   now=net.now)
    if kind == "DatagramReceived" and node is b:
        node.send_datagram(event.session_id, event.data)

a.on_event = echo
b.on_event = echo
session = a.connect(b)
net.run(until=5.0, stop=lambda: bool(b.events_of()))
streams = [a.call(Endpoint.open_stream, session, priority=p) for p in (0, 3, 7)]
timed = a.call(Endpoint.open_stream, session, priority=1)
for i in range(120):
    now = net.now
    try:
        for k, stream in enumerate(streams):
            size = (i * 37 + k * 1000) % 5000 + 1
            a.call(Endpoint.send_message, session, stream, bytes([i % 256]) * size)
        a.call(Endpoint.send_message, session, timed, b"frame %d" % i * 40, deadline=0.08)
    except SendBufferFullError:
        trace.append(["full", round(now, 9), i])
    a.send_datagram(session, b"d%d" % i)
    net.run(until=now + 0.01)
net.run(until=net.now + 3.0)
a.close(session, reason="done")
net.run(until=net.now + 2.0)
print(json.dumps({"compiled": stt_proto.COMPILED, "stats": net.statistics()}))
for entry in trace:
    print(json.dumps(entry))
'''


def _trace(seed: int, *, pure: bool) -> tuple[dict, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "STT_NO_EXTENSIONS"}
    if pure:
        env["STT_NO_EXTENSIONS"] = "1"
    done = subprocess.run([sys.executable, "-c", SCENARIO, str(seed)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    head, *lines = done.stdout.splitlines()
    return json.loads(head), lines


@pytest.mark.c_extension
@pytest.mark.parametrize("seed", [1, 2])
def test_both_builds_send_the_same_datagrams_and_report_the_same_events(seed, request):
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("pure-Python build requested")
    compiled_head, compiled = _trace(seed, pure=False)
    pure_head, pure = _trace(seed, pure=True)
    if not compiled_head["compiled"]:
        if os.environ.get("STT_REQUIRE_EXTENSIONS"):
            pytest.fail("the compiled engine is required but not loaded")
        pytest.skip("the compiled engine is not built")
    assert pure_head["compiled"] is False
    kinds = {json.loads(line)[0] for line in pure}
    assert kinds == {"datagram", "event"}
    assert sum(1 for line in pure if '"datagram"' in line[:12]) > 1_000
    for index, (left, right) in enumerate(zip(compiled, pure)):
        assert left == right, f"the builds part at entry {index}:\n{left}\n{right}"
    assert len(compiled) == len(pure)
    assert compiled_head["stats"] == pure_head["stats"]


def test_one_build_reproduces_its_own_trace():
    """What the comparison rests on: within one build the trace is the seed's."""
    first = _trace(3, pure=True)
    assert first == _trace(3, pure=True)
