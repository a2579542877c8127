"""Every package of the source tree is declared in pyproject.toml, so that a
regular (non-editable) install ships it: the ``stt`` entry point lives in the
``stt_io.cli`` package."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_declared():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = pytest.importorskip("setuptools")
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    declared = set(setuptools.find_packages(str(ROOT), include=include))
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("stt", "stt_io", "stt_proto", "seigr_toolset_transmissions")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert "stt_io.cli" in found
    assert found <= declared, sorted(found - declared)
    assert config["project"]["scripts"]["stt"] == "stt_io.cli:main"
