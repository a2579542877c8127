"""Build script: declares the Cython extensions and falls back to pure Python.

Each accelerated module is compiled from the same file as its pure twin plus the C
types in a ``.pxd``: ``stt_proto._wire_c`` from ``stt_proto/_wire_py.py`` and
``_wire_c.pxd`` (the wire codec), ``stt_proto._rangeset_c`` from
``stt_proto/_rangeset_py.py`` and ``_rangeset_c.pxd`` (range sets). The engine's
per-packet modules (``stt_proto._build.IN_PLACE``) are compiled in place, each
from its own ``.py`` and, where it has one, the ``.pxd`` beside it; the SHA-256
of every source compiled is recorded in ``stt_proto/_compiled_sources.json`` so
that a stale build is noticed at import (see ``stt_proto/_build.py``).

Environment switches:

``STT_NO_EXTENSIONS=1``  build nothing: the pure-Python build (also chosen on
                         interpreters other than CPython, and when compiling fails).
``STT_DEBUG_BUILD=1``    ``-O0 -g3 -UNDEBUG`` and Cython line tracing (for coverage).
``STT_ASAN_BUILD=1``     compile and link with AddressSanitizer.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()

# (module name, pure-Python source, type declarations)
ACCELERATED = [
    ("stt_proto._wire_c", "stt_proto/_wire_py.py", "stt_proto/_wire_c.pxd"),
    ("stt_proto._rangeset_c", "stt_proto/_rangeset_py.py", "stt_proto/_rangeset_c.pxd"),
]


def _load_build_module():
    # By path: importing the package would import the engine and its dependencies.
    spec = importlib.util.spec_from_file_location("_stt_build", HERE / "stt_proto" / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _load_build_module()


def _env(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = _env("STT_NO_EXTENSIONS") or platform.python_implementation() != "CPython"
DEBUG = _env("STT_DEBUG_BUILD")
ASAN = _env("STT_ASAN_BUILD")


def _say(message: str) -> None:
    # pip hides a build backend's stdout unless asked (-v); stderr reaches the log.
    print(f"*** stt: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Build the extensions if possible; otherwise leave the pure build in place."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers, Cython failure...
            _say(f"Pure Python build (compiling failed: {exc})")
            return
        if self.extensions:
            self._record_sources()
            _say("Accelerated build (Cython extensions compiled)")

    def _record_sources(self) -> None:
        """Write the digests of the in-place sources beside the compiled modules."""
        root = HERE if self.inplace else Path(self.build_lib)
        target = root / "stt_proto" / BUILD.SOURCES_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(BUILD.source_digests(HERE), indent=1, sort_keys=True) + "\n")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            _say(f"Pure Python build ({ext.name} not compiled: {exc})")
            raise


def _extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        _say("Pure Python build (STT_NO_EXTENSIONS set or not CPython)")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _say("Pure Python build (Cython is not installed)")
        return []

    build_dir = HERE / "build" / "cython"
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = []
    for name, source, pxd in ACCELERATED:
        # Cython pairs foo.py with foo.pxd. The compiled module is named e.g. _wire_c,
        # so hand Cython a copy of the pure source under that name next to its
        # .pxd; the copy lives in build/ and is never edited by hand.
        package_dir = build_dir / Path(source).parent
        package_dir.mkdir(parents=True, exist_ok=True)
        stem = name.rsplit(".", 1)[1]
        shutil.copyfile(HERE / source, package_dir / f"{stem}.py")
        shutil.copyfile(HERE / pxd, package_dir / f"{stem}.pxd")
        init = package_dir / "__init__.py"
        if not init.exists():
            init.write_text("")
        sources.append((name, str((package_dir / f"{stem}.py").relative_to(HERE))))

    for name in BUILD.IN_PLACE:
        # Compiled from the source itself; Cython reads a .pxd of the same name
        # beside it, if there is one, as the C types of its classes.
        sources.append((name, str(BUILD.source_path(name, HERE).relative_to(HERE))))

    compile_args: list[str] = []
    link_args: list[str] = []
    macros: list[tuple[str, str]] = []
    directives = {
        "language_level": 3,
        # Types come from the .pxd only; the .py's annotations are for readers and
        # type checkers (an ``int`` annotation would otherwise mean "exact PyLong").
        "annotation_typing": False,
        "embedsignature": True,
    }
    if DEBUG:
        compile_args += ["-O0", "-g3", "-UNDEBUG"]
        macros.append(("CYTHON_TRACE_NOGIL", "1"))
        directives["linetrace"] = True
    else:
        compile_args += ["-O2"]
    if ASAN:
        compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer"]
        link_args += ["-fsanitize=address"]

    extensions = [
        Extension(
            name,
            [path],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            define_macros=macros,
        )
        for name, path in sources
    ]
    return cythonize(
        extensions,
        compiler_directives=directives,
        include_path=[str(build_dir), str(HERE)],
        build_dir=str(build_dir / "c"),
        quiet=True,
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
