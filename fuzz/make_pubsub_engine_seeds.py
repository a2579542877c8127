#!/usr/bin/env python3
"""Write the seed corpus of the pub/sub engine harness: ``fuzz/corpus/pubsub_engine``.

Usage: ``python fuzz/make_pubsub_engine_seeds.py``. For each of
:data:`ENGINE_GOALS` (a statistic of the node that must move, or a message or a
gap delivered), the shortest of a few thousand seeded random programs that
reaches it: a corpus that starts inside the deep paths (ordered delivery,
buffers, repair, gaps, bans, the limits) rather than at the codec's front door.
The corpus also keeps the long runs' findings as ``regress_*`` files (the
inputs of ``FINDING_INPUTS`` in ``tests/pubsub/test_fuzz_engine_smoke.py``,
copied by hand, never by this script).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _pubsub_engine import Run  # noqa: E402

#: What the corpus must make happen: ``stat:NAME`` a statistic of the node that
#: is not zero at the end, ``delivered`` and ``gap`` events handed out.
ENGINE_GOALS = (
    "delivered", "gap",
    "stat:messages_duplicate", "stat:messages_forwarded", "stat:messages_forged",
    "stat:messages_too_large", "stat:messages_unwanted", "stat:messages_rate_limited",
    "stat:control_rate_limited", "stat:messages_buffer_full", "stat:messages_from_banned",
    "stat:publishers_forgotten", "stat:history_evicted", "stat:queue_full",
    "stat:control_dropped", "stat:mesh_grafted", "stat:mesh_pruned", "stat:mesh_pruned_slow",
    "stat:mesh_pruned_idle", "stat:grafts_refused", "stat:pushes_skipped_held",
    "stat:iwant_sent", "stat:iwant_answered", "stat:gone_sent", "stat:wants_timed_out",
    "stat:peers_banned", "stat:peer_topics_refused", "stat:messages_published",
)


def reached(run: Run) -> set[str]:
    goals = {f"stat:{name}" for name, value in run.node.stats.items() if value}
    if run.delivered:
        goals.add("delivered")
    if run.gaps:
        goals.add("gap")
    return goals


def pubsub_engine_seeds(tries: int = 3_000) -> dict[str, bytes]:
    rng = random.Random(15)
    best: dict[str, bytes] = {}
    for _ in range(tries):
        data = rng.randbytes(rng.randrange(2, 500))
        run = Run(data)
        run.run()
        for goal in reached(run) & set(ENGINE_GOALS):
            if goal not in best or len(data) < len(best[goal]):
                best[goal] = data
    seeds = {goal.replace(":", "_"): data for goal, data in sorted(best.items())}
    seeds.update(_hand_seeds())
    return seeds


def _hand_seeds() -> dict[str, bytes]:
    """Programs random search rarely writes, in the op format of ``_pubsub_engine``.

    ``hand_graft_in_backoff``: flags 4 (three peers linked and subscribed), then
    OP_CONTROL (1) from peer 0: PRUNE (3) of topic 0, backoff index 0, no
    contacts; then OP_CONTROL from peer 0: GRAFT (2) of topic 0, inside the
    backoff the PRUNE set, so it is refused.
    ``hand_repair_answered``: flags 4, OP_RUN (3) from peer 0 of stream byte 2
    6 (topic 0, publisher AUTHORS[0]) epoch index 1, from seq 1 with 4 more
    left out one (shape 2), OP_TIME (6) to the timer a few times, OP_REPAIR (10)
    answering the IWANT with the messages.
    """
    return {
        "hand_graft_in_backoff": bytes.fromhex("04" "010003000000" "01000200"),
        "hand_repair_answered": bytes.fromhex("04" "0300" "0601" "20" "04" "01"
                                              "0600" "0600" "0a0000" "0600" "0a0000"),
    }


def main() -> None:
    folder = HERE / "corpus" / "pubsub_engine"
    folder.mkdir(parents=True, exist_ok=True)
    seeds = pubsub_engine_seeds()
    for name, data in seeds.items():
        (folder / name).write_bytes(data)
    goals: set[str] = set()
    for data in seeds.values():
        run = Run(data)
        run.run()
        goals |= reached(run)
    missed = [goal for goal in ENGINE_GOALS if goal not in goals]
    print(f"pubsub_engine: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")
    if missed:
        print(f"pubsub_engine: no seed reaches {', '.join(missed)}")


if __name__ == "__main__":
    main()
