"""The build selectors: which build of each compiled module is loaded, and how to
force the pure one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import stt_proto


def _loaded(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "STT_NO_EXTENSIONS"}
    env.update(env_extra)
    out = subprocess.run(
        [sys.executable, "-c",
         "import stt_proto, stt_proto._wire as w, stt_proto._rangeset as r;"
         " print(stt_proto.COMPILED, w.StreamFrame.__module__, r.RangeSet.__module__)"],
        env=env, capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def test_no_extensions_forces_the_pure_build():
    assert _loaded({"STT_NO_EXTENSIONS": "1"}) == (
        "False stt_proto._wire_py stt_proto._rangeset_py"
    )


def test_compiled_build_is_loaded_when_required():
    if os.environ.get("STT_NO_EXTENSIONS") or not os.environ.get("STT_REQUIRE_EXTENSIONS"):
        pytest.skip("this run does not require the compiled build")
    assert stt_proto.COMPILED is True
    assert _loaded({}) == "True stt_proto._wire_c stt_proto._rangeset_c"


def test_flag_matches_the_loaded_modules():
    from stt_proto import _rangeset

    loaded = (
        stt_proto.wire.StreamFrame.__module__.endswith("_wire_c"),
        _rangeset.RangeSet.__module__.endswith("_rangeset_c"),
    )
    assert (stt_proto.wire.COMPILED, _rangeset.COMPILED) == loaded
    assert stt_proto.COMPILED == all(loaded)


def test_the_engine_uses_the_selected_range_sets():
    from stt_proto import _rangeset, acks, stream, stream_ids

    assert stream.RangeSet is _rangeset.RangeSet
    assert acks.RangeSet is _rangeset.RangeSet
    assert stream_ids.RangeSet is _rangeset.RangeSet
