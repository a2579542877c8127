"""The user guide's scripts run as printed.

Every ```python block of ``docs/guide.md``, ``docs/dht.md``, ``docs/pubsub.md``
and ``docs/content.md`` that is a whole program (it starts an event loop with
``asyncio.run`` or ``trio.run``) is run in a subprocess over
real sockets on 127.0.0.1, with warnings as errors; it must exit 0. Fragments
(blocks that run nothing) are skipped by construction.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCKS = [(name, code) for name in ("guide.md", "dht.md", "pubsub.md", "content.md")
          for code in re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), flags=re.S)]
PROGRAMS = [(i, code) for i, (_, code) in enumerate(BLOCKS)
            if re.search(r"^\s*(asyncio|trio)\.run\(", code, flags=re.M)]


def test_the_guide_has_programs():
    names = [BLOCKS[i][0] for i, _ in PROGRAMS]
    assert names.count("guide.md") >= 6
    assert names.count("dht.md") >= 2
    assert names.count("pubsub.md") >= 2
    assert names.count("content.md") >= 2


@pytest.mark.parametrize("index,code", PROGRAMS, ids=[f"block{i}" for i, _ in PROGRAMS])
def test_guide_program_runs(index, code, tmp_path):
    env = dict(os.environ, STT_SEED="guide test network seed")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"block {index} failed:\n{proc.stdout}\n{proc.stderr}"
