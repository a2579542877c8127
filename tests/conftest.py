"""Shared fixtures: every codec test runs against both builds of the wire codec.

``wire`` is parametrized over the pure module (``stt_proto._wire_py``) and the
compiled one (``stt_proto._wire_c``). The compiled parameter carries the
``c_extension`` marker and is skipped when the extension is not importable or when
``--no-c-extensions`` / ``STT_NO_EXTENSIONS=1`` asks for the pure build only;
with ``STT_REQUIRE_EXTENSIONS=1`` (set by ``make test``) a missing extension fails
the run instead of being skipped.
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


def _load_compiled():
    try:
        return importlib.import_module("stt_proto._wire_c")
    except ImportError:
        return None


PURE = importlib.import_module("stt_proto._wire_py")
COMPILED_MODULE = _load_compiled()


def require_compiled(config: pytest.Config):
    """Return the compiled module, or skip/fail as the configuration says."""
    if config.getoption("--no-c-extensions"):
        pytest.skip("pure-Python build requested")
    if COMPILED_MODULE is None:
        if os.environ.get("STT_REQUIRE_EXTENSIONS"):
            pytest.fail("the compiled build is required but stt_proto._wire_c is not importable")
        pytest.skip("compiled build not installed")
    return COMPILED_MODULE


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("pure", id="pure"),
        pytest.param("compiled", id="compiled", marks=pytest.mark.c_extension),
    ]
)
def wire(request: pytest.FixtureRequest):
    """The wire codec module under test, once per build."""
    if request.param == "pure":
        return PURE
    return require_compiled(request.config)


@pytest.fixture(scope="session")
def both_builds(request: pytest.FixtureRequest):
    """``(pure, compiled)`` for differential tests."""
    return PURE, require_compiled(request.config)
