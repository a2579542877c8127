"""Property test of sessions in the simulator: random links, random streams.

Each scenario draws a link (latency, jitter, bandwidth, queue, loss 0-30 %,
reordering, duplication, corruption), a set of streams with messages from 0 bytes
to 4 MiB in one or both directions, and how each direction ends (FIN, a reset by
the sender, a stop by the receiver). It checks that every message the engine
accepted arrives exactly once, in order and byte-identical (a prefix of them on a
reset or stopped direction); that nothing deadlocks; that both sides end with no
stream open, nothing buffered and nothing in flight; and that buffered bytes stay
within the configured limits throughout.

``SCENARIOS`` scenarios run per test run (``STT_SCENARIOS`` overrides it); the
``slow`` variant (``--run-slow``) runs ten times as many. A failure names its seed:
rerun one with ``STT_SCENARIO_SEED=<seed>``.
"""

from __future__ import annotations

import os

import pytest

from ..helpers.scenarios import run_scenario

SCENARIOS = int(os.environ.get("STT_SCENARIOS", "1000"))
CHUNKS = 20


def _seeds(chunk: int, total: int) -> range:
    per = -(-total // CHUNKS)
    return range(chunk * per, min(total, (chunk + 1) * per))


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_scenarios(chunk: int) -> None:
    only = os.environ.get("STT_SCENARIO_SEED")
    seeds = [int(only)] if only is not None else _seeds(chunk, SCENARIOS)
    if only is not None and chunk:
        pytest.skip("single seed runs in chunk 0")
    for seed in seeds:
        _run_named(seed)


def _run_named(seed: int) -> None:
    try:
        run_scenario(seed)
    except BaseException as exc:
        exc.add_note(f"scenario seed {seed}: rerun it alone with STT_SCENARIO_SEED={seed}")
        raise


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_scenarios_nightly(chunk: int) -> None:
    for seed in _seeds(chunk, SCENARIOS * 10):
        _run_named(100_000 + seed)
