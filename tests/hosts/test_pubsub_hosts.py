"""Pub/sub across hosts: 12 network namespaces on a bridge, one member process each.

Each host of a ``NetnsBed`` runs one member (``tests/helpers/dht_members.py``
with its pub/sub commands) bound to the host's own address, asyncio and trio
alternating, all joined through host 0. Unlike loopback, the mesh's sessions,
the fan-out of publishers that do not subscribe and the repair all run between
distinct addresses through the bridge. The checks are the loopback test's
(``tests/adapters/test_pubsub_processes.py``): every subscriber gets every
message once, in each publisher's order, from the verified publisher; then two
hosts are killed halfway through a second round, one of them publishing, and
the survivors must still get every message of the live publishers with no gap,
and of the dead one only its messages, once each, in its order.

Root only (network namespaces); skipped with the reason otherwise.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers.dht_members import MemberProcess, start_on_hosts
from tests.helpers.netns import NetnsBed, netns_available
from tests.helpers.pubsub_members import publish_through_a_kill

_available, _reason = netns_available()
pytestmark = pytest.mark.skipif(not _available, reason=_reason)

SEED = "pubsub hosts test network seed"
TOPIC = "pubsub hosts test topic"
HOSTS = 12
BACKENDS = ("asyncio", "trio")
MODES = ("plain", "async", "pull")
#: hosts that publish: trio and asyncio not subscribed, asyncio subscribed
PUBLISHERS = (1, 4, 2)
UNSUBSCRIBED = {1, 4}
#: hosts killed with SIGKILL halfway through round two (trio and asyncio, never
#: host 0, the bootstrap node); the first publishes until then
KILLED = (7, 10)
DOOMED = KILLED[0]
COUNT = 50
INTERVAL = 0.04
COMMAND_TIMEOUT = 20.0
STEP = COMMAND_TIMEOUT + 10.0
DELIVERY_WAIT = 15.0


def test_12_hosts_get_every_message_once_in_order_through_a_kill(tmp_path):
    began = time.monotonic()
    processes: list[MemberProcess] = []
    with NetnsBed(hosts=HOSTS) as bed:
        built = time.monotonic()
        try:
            start_on_hosts(bed.hosts, processes, backends=BACKENDS, seed=SEED,
                           timeout=COMMAND_TIMEOUT, step=STEP, logs=tmp_path)
            ids = [process.members[0][0] for process in processes]
            assert sorted(p.members[0][1][0] for p in processes) == sorted(bed.addresses)
            joined = time.monotonic()

            subscribing = [i for i in range(HOSTS) if i not in UNSUBSCRIBED]
            for i in subscribing:
                processes[i].send({"op": "subscribe", "topic": TOPIC,
                                   "members": [[0, MODES[i % len(MODES)]]]})
            meshes = {}
            for i in subscribing:
                meshes.update(processes[i].receive(STEP)["mesh"])
            subscribers = {ids[i] for i in subscribing}
            assert {bytes.fromhex(m) for m in meshes} == subscribers
            assert all(size >= 1 for size in meshes.values()), meshes
            subscribed = time.monotonic()

            outcome = publish_through_a_kill(
                processes, TOPIC, subscribers, [(i, 0) for i in PUBLISHERS], (DOOMED, 0),
                KILLED, count=COUNT, interval=INTERVAL, wait=DELIVERY_WAIT, timeout=STEP)
            reached = outcome["doomed_reached"]
            ended = time.monotonic()
            print(f"bed built {built - began:.1f} s, joined {joined - built:.1f} s, "
                  f"subscribed {subscribed - joined:.1f} s, round one "
                  f"{outcome['round_one']:.1f} s, round two with the kill "
                  f"{outcome['round_two']:.1f} s; total {ended - began:.1f} s; the dead "
                  f"publisher's messages reached {min(reached)}-{max(reached)} of its "
                  f"{COUNT} per survivor")
        finally:
            for process in processes:
                process.kill()
