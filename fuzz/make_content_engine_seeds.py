#!/usr/bin/env python3
"""Write the seed corpus of the content engine harness: ``fuzz/corpus/content_engine``.

Usage: ``python fuzz/make_content_engine_seeds.py``. For each of
:data:`ENGINE_GOALS` (a statistic of the node that must move, or a retrieval
that must end a given way), the shortest of a few thousand seeded random
programs that reaches it, so the fuzzer starts inside the deep paths
(retrievals, proofs, refusals, bans) rather than at the codec's front door;
and a few programs written by hand (:func:`_hand_seeds`). A program that
breaks an invariant the engine does not keep yet (``KNOWN_FINDINGS``) is not
taken: the corpus replays strictly. The corpus also keeps the long runs'
inputs that broke the harness itself as ``regress_*`` files (copied by hand,
never by this script): ``regress_answer_as_the_sender_links`` is a chunk whose
sender's link, made as it arrives, first sends the request it then answers.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _content_engine import Run  # noqa: E402

#: What the corpus must make happen: ``stat:NAME`` a statistic of the node that
#: is not zero at the end; ``retrieved``, ``retrieved_range`` and ``dropped_bad``
#: events handed out.
ENGINE_GOALS = (
    "retrieved", "retrieved_range", "dropped_bad",
    "stat:messages_malformed", "stat:chunks_received", "stat:chunks_late",
    "stat:chunks_unsolicited", "stat:bad_chunks", "stat:retrievals_done",
    "stat:retrievals_failed", "stat:announcements", "stat:requests_served",
    "stat:requests_refused_busy", "stat:requests_refused_rate",
    "stat:requests_refused_not_found", "stat:requests_refused_range",
    "stat:requests_cancelled", "stat:peers_banned",
)


def reached(run: Run) -> set[str]:
    goals = {f"stat:{name}" for name, value in run.node.stats.items() if value}
    for goal, count in (("retrieved", run.retrieved), ("retrieved_range", run.retrieved_ranges),
                        ("dropped_bad", run.dropped_bad)):
        if count:
            goals.add(goal)
    return goals


def _strict_run(data: bytes) -> Run | None:
    run = Run(data, strict=True)
    try:
        run.run()
    except AssertionError:
        return None
    return run


def content_engine_seeds(tries: int = 4_000) -> dict[str, bytes]:
    rng = random.Random(16)
    best: dict[str, bytes] = {}
    for _ in range(tries):
        data = rng.randbytes(rng.randrange(2, 500))
        run = _strict_run(data)
        if run is None:
            continue
        for goal in reached(run) & set(ENGINE_GOALS):
            if goal not in best or len(data) < len(best[goal]):
                best[goal] = data
    seeds = {goal.replace(":", "_"): data for goal, data in sorted(best.items())}
    seeds.update(_hand_seeds())
    return seeds


def _hand_seeds() -> dict[str, bytes]:
    """Programs random search rarely writes, in the op format of ``_content_engine``.

    ``hand_retrieve_honest``: flags 0x10 (tight limits, the drain's DHT knows one
    holder); OP_APP (7) retrieve whole (0) content 0; OP_HOST (10) DHT round (3)
    answered; OP_PROVIDERS (8) for the lookup asked, one provider, peer 0; OP_HOST
    connects (2), linked; then three times OP_HOST pop all (1) and OP_HONEST (12)
    from peer 0: the three chunks arrive and the content is retrieved.
    ``hand_bad_proof``: the same up to the first answer, then OP_ANSWER (3) of
    the first request with a proof hash flipped (how 2): the provider is bad.
    ``hand_range``: OP_APP range (2) of content 0, bytes 5..CHUNK_SIZE+10 (range 2),
    answered honestly.
    ``hand_request_cancelled``: OP_REQUEST (1) from peer 0 of chunk 0 of the
    node's own content (4) under id 5, then OP_CONTROL (2) CANCEL (bit 1) of id 5.
    """
    find = "0a0300" "08000100" "0a0200"
    return {
        "hand_retrieve_honest": bytes.fromhex("10" "070000" + find + "0a010c00" * 3),
        "hand_bad_proof": bytes.fromhex("10" "070000" + find + "0a01" "03006501"),
        "hand_range": bytes.fromhex("10" "07020002" + find + "0a010c00" * 3),
        "hand_request_cancelled": bytes.fromhex("00" "010000050400" "02000205"),
    }


def main() -> None:
    folder = HERE / "corpus" / "content_engine"
    folder.mkdir(parents=True, exist_ok=True)
    seeds = content_engine_seeds()
    for name, data in seeds.items():
        (folder / name).write_bytes(data)
    goals: set[str] = set()
    for data in seeds.values():
        run = _strict_run(data)
        if run is None:
            raise SystemExit(f"a seed breaks an invariant: {data.hex()}")
        goals |= reached(run)
    missed = [goal for goal in ENGINE_GOALS if goal not in goals]
    print(f"content_engine: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")
    if missed:
        print(f"content_engine: no seed reaches {', '.join(missed)}")


if __name__ == "__main__":
    main()
