"""Which engine modules are compiled in place, and how the pure build is forced.

The per-packet modules of the engine (:data:`IN_PLACE`) are compiled by Cython
from their own source: ``stt_proto/session.py`` becomes an extension module
``stt_proto/session.*.so`` beside it, with the C types of its classes, when it
has any, in ``stt_proto/session.pxd`` (Cython's *augmenting* declarations: the
``.py`` stays plain Python that runs as it is). Python's import system prefers
an extension module to a source file of the same name, so a compiled build
needs no selector module; the codec (``_wire``) and the range sets
(``_rangeset``), compiled earlier under other names, keep theirs.

``STT_NO_EXTENSIONS=1`` (or an interpreter other than CPython) must still load
the pure build. :func:`install` then puts a finder first on ``sys.meta_path``
that finds these modules' sources only. ``stt_proto/__init__.py`` calls it
before importing anything of the engine; the environment is read once, at
that import, as the selectors of ``_wire`` and ``_rangeset`` read it.

A compiled module built from an older source would run that older code
without a word, the trap of an editable checkout. So ``setup.py`` records the
SHA-256 of each source it compiled in :data:`SOURCES_FILE`, and :func:`install`
compares: if any source changed since, or a module has no compiled build, the
whole set is loaded pure (compiled modules declare each other's C types, so
they are used all together or not at all), with a warning that says how to
rebuild, and :func:`compiled` is False.

This module imports nothing but the standard library: ``setup.py`` loads it
by path to learn what to compile.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import platform
import sys
import warnings
from pathlib import Path

__all__ = ["IN_PLACE", "NO_EXTENSIONS", "SOURCES_FILE", "install", "compiled",
           "compiled_in_place", "source_digests"]

NO_EXTENSIONS = bool(os.environ.get("STT_NO_EXTENSIONS")) or (
    platform.python_implementation() != "CPython"
)

#: The modules compiled in place: everything a data packet passes through,
#: from the datagram to the event and back, per packet or per frame.
IN_PLACE = (
    "stt_proto.acks",
    "stt_proto.assembly",
    "stt_proto.budget",
    "stt_proto.congestion.base",
    "stt_proto.congestion.bbr",
    "stt_proto.congestion.cubic",
    "stt_proto.congestion.newreno",
    "stt_proto.congestion.pacer",
    "stt_proto.crypto",
    "stt_proto.deadlines",
    "stt_proto.endpoint",
    "stt_proto.flow",
    "stt_proto.path",
    "stt_proto.priority",
    "stt_proto.recovery",
    "stt_proto.session",
    "stt_proto.sessions",
    "stt_proto.stream",
    "stt_proto.stream_ids",
)


PACKAGE_DIR = Path(__file__).resolve().parent
#: Written by ``setup.py`` beside the compiled modules: module -> SHA-256 of the
#: source it was compiled from.
SOURCES_FILE = "_compiled_sources.json"


def source_path(name: str, root: Path = PACKAGE_DIR.parent) -> Path:
    """The source file of module ``name`` under ``root`` (the directory that
    holds the ``stt_proto`` package)."""
    return root.joinpath(*name.split(".")).with_suffix(".py")


def source_digests(root: Path = PACKAGE_DIR.parent) -> dict[str, str]:
    """module -> SHA-256 of its source, for every module of :data:`IN_PLACE`."""
    return {name: hashlib.sha256(source_path(name, root).read_bytes()).hexdigest()
            for name in IN_PLACE}


def _has_extension(name: str) -> bool:
    path = source_path(name)
    stem = path.with_suffix("")
    return any(Path(str(stem) + suffix).exists()
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _stale() -> list[str]:
    """The modules whose compiled build is missing or older than the source."""
    try:
        recorded = json.loads((PACKAGE_DIR / SOURCES_FILE).read_text())
    except (OSError, ValueError):
        recorded = {}
    current = source_digests()
    return [name for name in IN_PLACE
            if not _has_extension(name) or recorded.get(name) != current[name]]


_compiled = False


class _SourceOnlyFinder:
    """Finds the modules of :data:`IN_PLACE` as source (or bytecode) files,
    passing over their compiled builds."""

    _loaders = (
        (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
        (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
    )

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname not in IN_PLACE or not path:
            return None
        for directory in path:
            spec = importlib.machinery.FileFinder(directory, *cls._loaders).find_spec(fullname)
            if spec is not None:
                return spec
        return None


def install() -> None:
    """Load the pure build of :data:`IN_PLACE` when the environment asks for it,
    or when a compiled module is missing or stale (then with a warning)."""
    global _compiled
    pure = NO_EXTENSIONS
    if not pure:
        stale = _stale()
        # Nothing compiled at all is a pure install (no compiler, no Cython): silent.
        built = (PACKAGE_DIR / SOURCES_FILE).exists() or len(stale) < len(IN_PLACE)
        if stale and built:
            warnings.warn(
                f"stt_proto: the compiled build of {', '.join(stale)} is missing or older "
                "than its source; the pure-Python build of the engine is loaded. Rebuild "
                "with `python setup.py build_ext --inplace` (or `pip install -e .`).",
                RuntimeWarning, stacklevel=3)
        pure = bool(stale)
    _compiled = not pure
    if pure and _SourceOnlyFinder not in sys.meta_path:
        sys.meta_path.insert(0, _SourceOnlyFinder)


def compiled() -> bool:
    """True when the engine modules of :data:`IN_PLACE` load their compiled build."""
    return _compiled


def compiled_in_place() -> dict[str, bool]:
    """For each module of :data:`IN_PLACE` imported so far: whether its
    compiled build is the one loaded."""
    loaded = {}
    for name in IN_PLACE:
        module = sys.modules.get(name)
        if module is not None:
            loader = getattr(module, "__loader__", None)
            loaded[name] = isinstance(loader, importlib.machinery.ExtensionFileLoader)
    return loaded
