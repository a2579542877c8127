"""Short smoke run of every fuzz harness (the long runs are `fuzz/run SECONDS`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
SMOKE_SECONDS = 8


@pytest.mark.fuzz
@pytest.mark.parametrize("harness", sorted(p.stem.removeprefix("fuzz_") for p in FUZZ.glob("fuzz_*.py")))
def test_fuzz_harness_smoke(harness):
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed for this interpreter")
    proc = subprocess.run(
        [sys.executable, str(FUZZ / "run"), str(SMOKE_SECONDS), harness],
        capture_output=True, text=True, timeout=SMOKE_SECONDS * 10, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "executions" in proc.stdout, proc.stdout
