"""The build selectors: which build of each compiled module is loaded, and how to
force the pure one."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import stt_proto
from stt_proto import _build

ENGINE_BUILDS = (
    "import importlib, stt_proto, stt_proto._build as b;"
    " [importlib.import_module(m) for m in b.IN_PLACE];"
    " print(stt_proto.COMPILED, sorted(set(b.compiled_in_place().values())))"
)


def _run(code: str, env_extra: dict[str, str], cwd: Path | None = None
         ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "STT_NO_EXTENSIONS"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, cwd=cwd,
                          capture_output=True, text=True, check=True)


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


def test_no_extensions_loads_every_engine_module_from_its_source():
    assert _run(ENGINE_BUILDS, {"STT_NO_EXTENSIONS": "1"}).stdout.strip() == "False [False]"


def test_every_engine_module_is_compiled_when_required():
    if os.environ.get("STT_NO_EXTENSIONS") or not os.environ.get("STT_REQUIRE_EXTENSIONS"):
        pytest.skip("this run does not require the compiled build")
    assert _run(ENGINE_BUILDS, {}).stdout.strip() == "True [True]"


def test_a_source_changed_since_it_was_compiled_loads_the_pure_engine_with_a_warning(tmp_path):
    package = Path(stt_proto.__file__).parent
    if not (package / _build.SOURCES_FILE).exists():
        pytest.skip("the engine is not compiled in this checkout")
    shutil.copytree(package, tmp_path / "stt_proto",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "stt_proto" / "flow.py", "a") as source:
        source.write("\n# edited after the build\n")
    done = _run(ENGINE_BUILDS + "; print(stt_proto.__file__)", {}, cwd=tmp_path)
    compiled, where = done.stdout.strip().splitlines()
    assert where.startswith(str(tmp_path))
    assert compiled == "False [False]"
    assert "stt_proto.flow is missing or older than its source" in done.stderr
    # The untouched copy is the compiled build, silently.
    shutil.copyfile(package / "flow.py", tmp_path / "stt_proto" / "flow.py")
    done = _run(ENGINE_BUILDS, {}, cwd=tmp_path)
    assert done.stdout.strip() == "True [True]" and "RuntimeWarning" not in done.stderr


def _declared(pxd: Path) -> dict[str, set[str]]:
    """Class -> attributes a .pxd declares (``cdef public <type> a, b``)."""
    classes: dict[str, set[str]] = {}
    current = None
    for line in pxd.read_text().splitlines():
        match = re.match(r"cdef class (\w+)", line)
        if match:
            current = classes.setdefault(match.group(1), set())
            continue
        match = re.match(r"\s+cdef public [\w.]+ ([^#]+)", line)
        if match and current is not None:
            current.update(name.strip() for name in match.group(1).split(","))
    return classes


def _assigned(source: Path) -> dict[str, set[str]]:
    """Class -> its ``__slots__``, or the ``self.<name>`` its methods assign."""
    tree = ast.parse(source.read_text())
    classes = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        slots, assigned = None, set()
        for item in ast.walk(node):
            if (isinstance(item, ast.Assign) and len(item.targets) == 1
                    and isinstance(item.targets[0], ast.Name)
                    and item.targets[0].id == "__slots__"):
                slots = set(ast.literal_eval(item.value))
            targets = (item.targets if isinstance(item, ast.Assign)
                       else [item.target] if isinstance(item, (ast.AnnAssign, ast.AugAssign))
                       else [])
            for target in targets:
                for leaf in ast.walk(target):
                    if (isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name)
                            and leaf.value.id == "self"):
                        assigned.add(leaf.attr)
        classes[node.name] = slots if slots is not None else assigned
    return classes


@pytest.mark.parametrize("module", [m for m in _build.IN_PLACE
                                    if _build.source_path(m).with_suffix(".pxd").exists()])
def test_every_attribute_of_a_compiled_class_is_declared_in_its_pxd(module):
    """A cdef class has no __dict__: an attribute the .py sets and the .pxd does
    not declare would fail in the compiled build only."""
    source = _build.source_path(module)
    declared = _declared(source.with_suffix(".pxd"))
    assigned = _assigned(source)
    assert declared, "the .pxd declares no class"
    for name, attributes in declared.items():
        assert attributes == assigned[name], (
            f"{module}.{name}: declared only {sorted(attributes - assigned[name])}, "
            f"not declared {sorted(assigned[name] - attributes)}")
