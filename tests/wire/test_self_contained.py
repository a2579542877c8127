"""The repository is self-contained: nothing reads from beside the clone at run or test time.

The suite once loaded the Noise vectors from a folder next to the clone, so a clone
anywhere else failed. ``.ci/run`` tests a clone in an empty temporary folder; this
test names the offending line directly.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Built by concatenation so that this file does not match itself.
OUTSIDE = ("../" + "shared", "shared/" + "vectors", "shared/" + "manual")
SCANNED = ("stt_proto", "stt_io", "stt", "seigr_toolset_transmissions", "tests", "fuzz",
           "bench", "scripts", "examples", ".ci")


def _files():
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and path.suffix in {".py", ".pxd", ".sh", ""} \
                    and ".venv" not in path.parts and "__pycache__" not in path.parts:
                yield path
    yield ROOT / "Makefile"
    yield ROOT / "setup.py"


def test_no_file_reaches_outside_the_repository():
    offending = []
    for path in _files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(marker in line for marker in OUTSIDE):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offending, "\n".join(offending)


def test_the_vendored_noise_vectors_carry_their_origin_and_licence():
    folder = ROOT / "tests" / "vectors" / "noise"
    assert (folder / "cacophony_25519.json").stat().st_size > 10_000
    note = (folder / "README.md").read_text(encoding="utf-8")
    assert "cacophony" in note and "Unlicense" in note
