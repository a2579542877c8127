"""Fuzz harness for a pub/sub engine fed arbitrary traffic from authenticated peers (atheris).

One ``stt_proto.pubsub.node.PubSubNode`` with small limits, subscribed to one
or two topics, takes a program read from the input: raw bytes and valid
control messages from a handful of peers, PUBLISH messages genuinely signed
(in order, out of order, two versions of one number, too large) or forged,
answers to its IWANTs, time, the application's subscribe, unsubscribe and
publish, sessions that come and go, and the host's side (output, connects,
DHT answers, bans). The program and every invariant checked after each step
are in ``_pubsub_engine.py`` (no atheris there, so the tests replay findings
through the same code).

Run: ``python fuzz/fuzz_pubsub_engine.py [corpus dirs] [libFuzzer flags]``, or ``fuzz/run``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from _pubsub_engine import run_input


def main() -> None:
    atheris.Setup(sys.argv, run_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
