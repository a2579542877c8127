"""Codec benchmark: frames encoded and decoded per second, compiled vs pure build.

Usage::

    python bench/bench_wire.py [--seconds 2.0]

The workload is a realistic mix for a bulk transfer: for every ACK frame with
several ranges there are four STREAM frames of 1,100 bytes, as a receiver and a
sender would see them. Both builds run the same workload in the same process, one
after the other, and the table shows their figures and the ratio.
"""

from __future__ import annotations

import argparse
import importlib
import time


def _workload(wire):
    payload = bytes(range(256)) * 4 + bytes(76)  # 1,100 bytes
    frames = []
    for i in range(4):
        frames.append(wire.StreamFrame(4 * i + 1, 1_000_000 + 1100 * i, payload, False))
    frames.append(
        wire.AckFrame(((9_000, 9_040), (8_950, 8_990), (8_900, 8_940), (8_800, 8_890)), 1_250)
    )
    encoded = [wire.encode_frames([f], capacity=1400) for f in frames]
    return frames, encoded


def _rate(fn, seconds: float) -> float:
    """Calls of ``fn`` per second, best of three slices of ``seconds / 3``."""
    best = 0.0
    for _ in range(3):
        n = 0
        deadline = time.perf_counter() + seconds / 3
        start = time.perf_counter()
        while True:
            fn()
            n += 1
            if n % 64 == 0 and time.perf_counter() >= deadline:
                break
        best = max(best, n / (time.perf_counter() - start))
    return best


def measure(wire, seconds: float) -> tuple[float, float]:
    frames, encoded = _workload(wire)
    per_call = len(frames)
    Writer = wire.Writer
    decode = wire.decode_frames_untrusted

    def encode_all():
        for f in frames:
            w = Writer(1400)
            f.push(w)
            w.getvalue()

    def decode_all():
        for data in encoded:
            decode(data)

    return (_rate(encode_all, seconds) * per_call, _rate(decode_all, seconds) * per_call)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure")
    args = parser.parse_args()
    pure = importlib.import_module("stt_proto._wire_py")
    try:
        compiled = importlib.import_module("stt_proto._wire_c")
    except ImportError:
        print("the compiled build is not installed: run `pip install -e .` with a C compiler")
        return 1
    results = {}
    for name, module in (("compiled", compiled), ("pure", pure)):
        results[name] = measure(module, args.seconds)
    enc_c, dec_c = results["compiled"]
    enc_p, dec_p = results["pure"]
    print("wire codec, mix of 4 STREAM frames (1,100 B) : 1 ACK frame (4 ranges)")
    print(f"{'build':<10}{'encode frames/s':>18}{'decode frames/s':>18}")
    print(f"{'compiled':<10}{enc_c:>18,.0f}{dec_c:>18,.0f}")
    print(f"{'pure':<10}{enc_p:>18,.0f}{dec_p:>18,.0f}")
    print(f"{'ratio':<10}{enc_c / enc_p:>17.2f}x{dec_c / dec_p:>17.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
