"""Pub/sub over real UDP: 30 members in six processes on 127.0.0.1, asyncio and trio mixed.

Processes alternate between the asyncio and the trio adapter, five members each
(``tests/helpers/dht_members.py`` with its pub/sub commands from
``tests/helpers/pubsub_members.py``), all joined through the first member of the
first process. All members but two subscribe to one topic, by turns with a
plain handler, an ``async def`` handler and a pull subscription. Three members
publish: one asyncio and one trio member that do not subscribe (they reach the
subscribers by fan-out) and one trio member that does. Issue 15 asks that every
subscriber gets every message once and in each publisher's order, attributed to
the verified publisher; that is checked, then checked again while one process
(five subscribers, one of them publishing too) is killed with SIGKILL in the
middle of a second round: the survivors must get every message of the live
publishers with no gap reported, and of the dead one only its own messages,
once each, in its order. Last, the survivors quit and must stop cleanly.

Every wait is bounded, and the processes are killed whatever happens.
"""

from __future__ import annotations

import time

from tests.helpers.dht_members import MemberProcess, ask_all, start_on_loopback
from tests.helpers.pubsub_members import publish_through_a_kill

SEED = "pubsub processes test network seed"
TOPIC = "pubsub processes test topic"
PROCESSES = 6
PER_PROCESS = 5
BACKENDS = ("asyncio", "trio")
#: (process, member) of each publisher: asyncio and trio, unsubscribed and subscribed
PUBLISHERS = ((0, 4), (1, 4), (3, 2))
UNSUBSCRIBED = {(0, 4), (3, 2)}
#: the process killed in the second round (trio); its member 0 publishes until then
KILLED = 5
DOOMED = (KILLED, 0)
MODES = ("plain", "async", "pull")
#: messages each publisher publishes per round
COUNT = 50
#: seconds between two messages in the second round, so it is under way at the kill
INTERVAL = 0.04
COMMAND_TIMEOUT = 20.0
STEP = COMMAND_TIMEOUT + 10.0
#: the longest a member program waits for the expected deliveries before answering
DELIVERY_WAIT = 15.0


def test_thirty_members_in_six_processes_get_every_message_once_in_order(tmp_path):
    began = time.monotonic()
    processes: list[MemberProcess] = []
    try:
        start_on_loopback(PROCESSES, processes, per_process=PER_PROCESS, backends=BACKENDS,
                          seed=SEED, timeout=COMMAND_TIMEOUT, step=STEP, logs=tmp_path)
        ids = {(p, m): processes[p].members[m][0]
               for p in range(PROCESSES) for m in range(PER_PROCESS)}
        joined = time.monotonic()

        # Most members subscribe, the three kinds of consumer by turns.
        subscribing = [[[m, MODES[(p * PER_PROCESS + m) % len(MODES)]]
                        for m in range(PER_PROCESS) if (p, m) not in UNSUBSCRIBED]
                       for p in range(PROCESSES)]
        for process, members in zip(processes, subscribing):
            process.send({"op": "subscribe", "topic": TOPIC, "members": members})
        meshes = {}
        for process in processes:
            meshes.update(process.receive(STEP)["mesh"])
        subscribers = {ids[key] for key in ids if key not in UNSUBSCRIBED}
        assert {bytes.fromhex(m) for m in meshes} == subscribers
        assert all(size >= 1 for size in meshes.values()), meshes
        subscribed = time.monotonic()

        # Round one fast, round two paced with a process killed halfway.
        outcome = publish_through_a_kill(
            processes, TOPIC, subscribers, PUBLISHERS, DOOMED, (KILLED,), count=COUNT,
            interval=INTERVAL, wait=DELIVERY_WAIT, timeout=STEP)
        survivors = outcome["survivors"]
        second_round = time.monotonic()

        statistics = {}
        for answer in ask_all(survivors, {"op": "pubsub_statistics"}, STEP):
            statistics.update(answer["statistics"])
        totals = {key: sum(s.get(key, 0) for s in statistics.values())
                  for key in ("messages_forged", "messages_lost", "handler_overflow",
                              "messages_delivered", "messages_duplicate", "iwant_sent")}
        assert totals["messages_forged"] == totals["messages_lost"] == 0, totals
        assert totals["handler_overflow"] == 0, totals
        for process in survivors:
            process.send({"op": "quit"})
        for process in survivors:
            assert process.receive(STEP) == {"ok": True}
            assert process.process.wait(timeout=STEP) == 0, process.name
        ended = time.monotonic()
        duplicates = totals["messages_duplicate"] / max(1, totals["messages_delivered"])
        print(f"joined {joined - began:.1f} s, subscribed {subscribed - joined:.1f} s, "
              f"round one {outcome['round_one']:.1f} s, round two with the kill "
              f"{outcome['round_two']:.1f} s, quit {ended - second_round:.1f} s; "
              f"total {ended - began:.1f} s; the dead publisher's messages reached "
              f"{min(outcome['doomed_reached'])}-{max(outcome['doomed_reached'])} of its "
              f"{COUNT} per survivor; {duplicates:.2f} duplicates per delivery, "
              f"{totals['iwant_sent']} IWANTs sent")
    finally:
        for process in processes:
            process.kill()
