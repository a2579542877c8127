"""Fuzz harness for a DHT engine fed arbitrary messages from authenticated peers (atheris).

One ``stt_proto.dht.node.DhtNode`` with a populated routing table and stores
takes a program read from the input: messages from a few authenticated peers
(raw bytes, valid requests, valid or edited answers to its own pending
requests, answers from the wrong peer), timer advances, the application's
operations and unreachable peers. The program and every invariant checked
after each step are in ``_dht_engine.py`` (no atheris there, so the tests
replay findings through the same code).

Run: ``python fuzz/fuzz_dht_engine.py [corpus dirs] [libFuzzer flags]``, or ``fuzz/run``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from _dht_engine import run_input


def main() -> None:
    atheris.Setup(sys.argv, run_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
