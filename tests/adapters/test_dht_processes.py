"""50 DHT members in 10 processes over real UDP on 127.0.0.1, asyncio and trio mixed.

Processes alternate between the asyncio and the trio adapter; each runs five
members (``tests/helpers/dht_members.py``). Every member joins through one node,
the first member of the first process. The test checks what issue 14 asks of a
real network: every member finds every other at the address it is bound to,
values and provider records written in one process are read in all the others,
and once two processes are killed with SIGKILL (their members vanish without a
word, as a crashed host would) the survivors still find each other and still
read every value, including those whose author is gone. Last, the survivors are
asked to quit and must stop their members without an error.

Every wait is bounded (``STEP`` seconds per step; the program itself gives up on
a command after ``COMMAND_TIMEOUT``), and the processes are killed whatever
happens.
"""

from __future__ import annotations

import hashlib
import os
import time

from tests.helpers.dht_members import (
    MemberProcess,
    get_failures,
    kill_and_recheck,
    lookup_failures,
    providers_seen,
    start_on_loopback,
)

SEED = "dht processes test network seed"
PROCESSES = 10
PER_PROCESS = 5
BACKENDS = ("asyncio", "trio")
#: killed with SIGKILL halfway through: one of each backend, never process 0
#: (it holds the bootstrap node)
KILLED = (3, 6)
#: the longest a member program may spend on one command (it answers with an error then)
COMMAND_TIMEOUT = 20.0
#: the longest the test waits for one answer; above COMMAND_TIMEOUT, so a slow
#: command is reported by the program with its reason rather than by silence
STEP = COMMAND_TIMEOUT + 10.0


def test_fifty_members_in_ten_processes_survive_losing_two(tmp_path):
    began = time.monotonic()
    processes: list[MemberProcess] = []
    try:
        start_on_loopback(PROCESSES, processes, per_process=PER_PROCESS, backends=BACKENDS,
                          seed=SEED, timeout=COMMAND_TIMEOUT, step=STEP, logs=tmp_path)
        members = {node_id: address for p in processes for node_id, address in p.members}
        assert len(members) == PROCESSES * PER_PROCESS
        assert len(set(members.values())) == len(members)  # a socket each
        joined = time.monotonic()

        failures = lookup_failures(processes, members, STEP)
        missed = sum("looked up" in failure for failure in failures)
        assert not failures, f"{missed} of 2500 lookups failed:\n" + "\n".join(failures[:20])
        looked_up = time.monotonic()

        # Values stored from both backends, two of them by processes about to die.
        values = {}
        for index, member in ((1, 0), (KILLED[0], 2), (4, 4), (KILLED[1], 1)):
            value = os.urandom(300) + b"from process %d" % index
            key = bytes.fromhex(processes[index].request(
                {"op": "put", "member": member, "value": value.hex()}, STEP)["key"])
            assert key == hashlib.blake2b(value, digest_size=32).digest()
            values[key] = value
        failures = get_failures(processes, values, STEP)
        assert not failures, "\n".join(failures[:20])

        shared = hashlib.blake2b(b"content everyone wants", digest_size=32).digest()
        lonely = hashlib.blake2b(b"content one member has", digest_size=32).digest()
        nobody = hashlib.blake2b(b"content nobody has", digest_size=32).digest()
        providers = {(2, 1), (5, 4), (KILLED[1], 0)}
        for index, member in sorted(providers):
            answer = processes[index].request(
                {"op": "provide", "member": member, "key": shared.hex()}, STEP)
            assert answer["stored"] >= 1
        assert processes[9].request({"op": "provide", "member": 3, "key": lonely.hex()},
                                    STEP)["stored"] >= 1
        provider_ids = {processes[i].members[m][0] for i, m in providers}
        seen = providers_seen(processes, [shared, lonely, nobody], STEP)
        assert len(seen) == len(members)
        for finder, found in seen.items():
            assert found[shared] == provider_ids, finder
            assert found[lonely] == {processes[9].members[3][0]}, finder
            assert found[nobody] == set(), finder
        stored = time.monotonic()

        # Two processes die without a word: 10 members gone at once.
        failures = kill_and_recheck(processes, KILLED, values, shared, provider_ids, STEP)
        assert not failures, f"{len(failures)} failures after the kill:\n" + \
            "\n".join(failures[:20])
        # The survivors stop cleanly when asked: every member leaves without an error.
        survivors = [p for i, p in enumerate(processes) if i not in KILLED]
        for process in survivors:
            process.send({"op": "quit"})
        for process in survivors:
            assert process.receive(STEP) == {"ok": True}
            assert process.process.wait(timeout=STEP) == 0, process.name
        ended = time.monotonic()
        print(f"joined {joined - began:.1f} s, 2500 lookups {looked_up - joined:.1f} s, "
              f"values and providers {stored - looked_up:.1f} s, after the kill and quit "
              f"{ended - stored:.1f} s; total {ended - began:.1f} s")
    finally:
        for process in processes:
            process.kill()
