"""Shared fixtures: every test of a compiled module runs against both its builds.

``wire`` is parametrized over the pure module (``stt_proto._wire_py``) and the
compiled one (``stt_proto._wire_c``), ``rangeset`` likewise over
``stt_proto._rangeset_py`` and ``stt_proto._rangeset_c``. The compiled parameter
carries the ``c_extension`` marker and is skipped when the extension is not
importable or when ``--no-c-extensions`` / ``STT_NO_EXTENSIONS=1`` asks for the
pure build only; with ``STT_REQUIRE_EXTENSIONS=1`` (set by ``make test``) a
missing extension fails the run instead of being skipped. ``both_builds`` and
``both_rangeset_builds`` give ``(pure, compiled)`` pairs for differential tests.
"""

from __future__ import annotations

import importlib
import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        default=bool(os.environ.get("STT_NO_EXTENSIONS")),
        help="test the pure-Python build only",
    )
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="run the slow (nightly) variants"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow variant: use --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def _load_compiled(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


#: name -> (pure module, compiled module or None) for every compiled module.
BUILDS = {
    name: (importlib.import_module(f"stt_proto.{name}_py"), _load_compiled(f"stt_proto.{name}_c"))
    for name in ("_wire", "_rangeset")
}


def require_compiled(config: pytest.Config, name: str = "_wire"):
    """Return the compiled build of ``stt_proto.<name>``, or skip/fail as the
    configuration says."""
    if config.getoption("--no-c-extensions"):
        pytest.skip("pure-Python build requested")
    compiled = BUILDS[name][1]
    if compiled is None:
        if os.environ.get("STT_REQUIRE_EXTENSIONS"):
            pytest.fail(f"the compiled build is required but stt_proto.{name}_c is not importable")
        pytest.skip("compiled build not installed")
    return compiled


_BUILD_PARAMS = [
    pytest.param("pure", id="pure"),
    pytest.param("compiled", id="compiled", marks=pytest.mark.c_extension),
]


def _build(request: pytest.FixtureRequest, name: str):
    if request.param == "pure":
        return BUILDS[name][0]
    return require_compiled(request.config, name)


@pytest.fixture(scope="session", params=_BUILD_PARAMS)
def wire(request: pytest.FixtureRequest):
    """The wire codec module under test, once per build."""
    return _build(request, "_wire")


@pytest.fixture(scope="session", params=_BUILD_PARAMS)
def rangeset(request: pytest.FixtureRequest):
    """The range-set module under test, once per build."""
    return _build(request, "_rangeset")


@pytest.fixture(scope="session")
def both_builds(request: pytest.FixtureRequest):
    """``(pure, compiled)`` wire codecs for differential tests."""
    return BUILDS["_wire"][0], require_compiled(request.config, "_wire")


@pytest.fixture(scope="session")
def both_rangeset_builds(request: pytest.FixtureRequest):
    """``(pure, compiled)`` range-set modules for differential tests."""
    return BUILDS["_rangeset"][0], require_compiled(request.config, "_rangeset")
