"""Selector for the range sets: the compiled build when it can be used, else pure.

The compiled module ``stt_proto._rangeset_c`` is the Cython build of
``_rangeset_py.py``. It is used unless

* the environment variable ``STT_NO_EXTENSIONS`` is set to a non-empty value,
* the interpreter is not CPython,
* a type checker is reading this file, or
* the compiled module cannot be imported (no compiler at install time).

``stt_proto._rangeset.COMPILED`` tells at run time which build is loaded. The rules
are those of ``stt_proto._wire``, so both modules come from the same build.
"""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING

NO_EXTENSIONS = bool(os.environ.get("STT_NO_EXTENSIONS")) or (
    platform.python_implementation() != "CPython"
)

if TYPE_CHECKING or NO_EXTENSIONS:
    from ._rangeset_py import *  # noqa: F403
    from ._rangeset_py import COMPILED, __all__  # noqa: F401
else:
    try:
        from ._rangeset_c import *  # noqa: F403
        from ._rangeset_c import COMPILED, __all__  # noqa: F401
    except ImportError:  # pragma: no cover - depends on how the package was built
        from ._rangeset_py import *  # noqa: F403
        from ._rangeset_py import COMPILED, __all__  # noqa: F401
