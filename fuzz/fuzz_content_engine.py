"""Fuzz harness for a content engine fed arbitrary traffic from authenticated peers (atheris).

One ``stt_proto.content.node.ContentNode`` with small limits and a memory store
holding one or two small contents takes a program read from the input: raw
bytes and valid REQUEST, CANCEL and REFUSE messages from a handful of peers;
CHUNKs that answer the node's own requests genuinely, edited (bits flipped in
data or proof, wrong length or index, proof cut or grown), unsolicited or late;
the application's retrievals (whole and ranges) and cancels; the DHT's
answers (the node itself, duplicates, banned peers, strangers); sessions that
come and go; time; and the host's side (output with push-back, connects, DHT
actions, bans). The program and every invariant checked after each step are in
``_content_engine.py`` (no atheris there, so the tests replay findings through
the same code).

Run: ``python fuzz/fuzz_content_engine.py [corpus dirs] [libFuzzer flags]``, or ``fuzz/run``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from _content_engine import run_input


def main() -> None:
    atheris.Setup(sys.argv, run_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
