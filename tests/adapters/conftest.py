"""Fixtures of the adapter tests: every ``async def`` test (marked ``anyio``)
runs once on asyncio and once on trio; ``stt`` is the adapter module under test."""

from __future__ import annotations

import pytest

import stt_io.asyncio
import stt_io.trio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture
def stt(anyio_backend):
    """The adapter module under test."""
    return stt_io.trio if anyio_backend == "trio" else stt_io.asyncio
