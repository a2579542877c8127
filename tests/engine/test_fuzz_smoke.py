"""Short smoke run of every fuzz harness (the long runs are `fuzz/run SECONDS`).

The run is reproducible: libFuzzer is seeded, stops after a set number of
executions, and starts from the checked-in corpus alone (a scratch work
directory), so the suite never fails at random on what one run happened to
find; a finding of the smoke run fails it on every machine, and the long runs
are where new findings come from."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
#: Executions per harness: about 8 seconds each here (the engine harnesses run
#: whole programs, the codec ones one message).
SMOKE_RUNS = {
    "content_codec": 20_000, "content_engine": 1_500, "dht_codec": 20_000,
    "dht_engine": 800, "endpoint": 800, "handshake": 10_000, "pubsub_codec": 20_000,
    "pubsub_engine": 600, "session": 1_500, "wire": 20_000,
}
#: The ceiling of one smoke run on a slow machine (it then runs fewer executions).
SMOKE_SECONDS = 60
SEED = 1


@pytest.mark.fuzz
@pytest.mark.parametrize("harness", sorted(p.stem.removeprefix("fuzz_") for p in FUZZ.glob("fuzz_*.py")))
def test_fuzz_harness_smoke(harness, tmp_path):
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed for this interpreter")
    proc = subprocess.run(
        [sys.executable, str(FUZZ / "run"), str(SMOKE_SECONDS), "--seed", str(SEED),
         "--runs", str(SMOKE_RUNS[harness]), "--work", str(tmp_path), harness],
        capture_output=True, text=True, timeout=SMOKE_SECONDS * 3, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "executions" in proc.stdout, proc.stdout
