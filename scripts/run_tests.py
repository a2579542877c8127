"""Run the test suite against the build the environment asks for.

Without ``STT_NO_EXTENSIONS`` the compiled build must be the one loaded: a
silent fallback to pure Python would let the compiled code go untested, so the
run fails instead (``STT_REQUIRE_EXTENSIONS=1`` is passed on to the tests). With
``STT_NO_EXTENSIONS=1`` the whole suite runs on the pure-Python build.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main() -> int:
    env = dict(os.environ)
    if not env.get("STT_NO_EXTENSIONS"):
        env.setdefault("STT_REQUIRE_EXTENSIONS", "1")
    probe = subprocess.run(
        [sys.executable, "-c",
         "import stt_proto, stt_proto._rangeset as r, stt_proto._build as b;"
         " print(stt_proto.COMPILED, '(_wire:', stt_proto.wire.COMPILED,"
         " '_rangeset:', r.COMPILED, 'engine:', str(b.compiled()) + ')')"],
        env=env, capture_output=True, text=True, check=False,
    )
    label = "pure Python" if env.get("STT_NO_EXTENSIONS") else "compiled"
    print(f"stt: running the suite, build requested: {label}; "
          f"stt_proto.COMPILED = {probe.stdout.strip() or probe.stderr.strip()}", flush=True)
    return subprocess.call([sys.executable, "-m", "pytest", *sys.argv[1:]], env=env)


if __name__ == "__main__":
    raise SystemExit(main())
