"""AEAD benchmark: ChaCha20-Poly1305 vs AES-256-GCM through ``cryptography``.

Usage::

    python bench/bench_aead.py [--seconds 1.0]

For payloads of 64, 1,200 and 1,400 bytes it measures packets sealed and opened
per second, the way STT's packet protection uses the AEAD: one AEAD object per
key, a 13-byte header as associated data, and a 96-bit nonce built from a 64-bit
packet number (4 zero bytes + 8 bytes, little-endian for ChaCha20-Poly1305 and
big-endian for AES-GCM, as Noise section 12 lays them out). The packet number
increases on every seal, so the nonce construction is part of the measured cost.

MB/s counts payload bytes only (10**6 bytes per MB). Both ciphers run in the same
process one after the other; the last column is AES-GCM's rate divided by
ChaCha20-Poly1305's (above 1 means AES-GCM is faster here).
"""

from __future__ import annotations

import argparse
import os
import platform
import struct
import time
from collections.abc import Callable

import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

SIZES = (64, 1200, 1400)
AD_SIZE = 13

CIPHERS: dict[str, tuple[type, struct.Struct]] = {
    "ChaCha20-Poly1305": (ChaCha20Poly1305, struct.Struct("<4xQ")),
    "AES-256-GCM": (AESGCM, struct.Struct(">4xQ")),
}


def _rate(fn: Callable[[], None], seconds: float, batch: int = 200) -> float:
    """Calls of ``fn`` per second: best of three slices of ``seconds / 3``."""
    best = 0.0
    for _ in range(3):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(batch):
                fn()
            calls += batch
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, calls / (now - start))
    return best


def measure(cipher: str, size: int, seconds: float) -> tuple[float, float]:
    """(seals per second, opens per second) for one cipher and payload size."""
    aead_class, nonce_layout = CIPHERS[cipher]
    aead = aead_class(os.urandom(32))
    pack = nonce_layout.pack
    ad = os.urandom(AD_SIZE)
    payload = os.urandom(size)
    encrypt, decrypt = aead.encrypt, aead.decrypt

    pn = 0

    def seal() -> None:
        nonlocal pn
        encrypt(pack(pn), payload, ad)
        pn += 1

    # Opening always uses the same packet; the cost is identical for any nonce.
    fixed_pn = 12345
    sealed = encrypt(pack(fixed_pn), payload, ad)

    def open_() -> None:
        decrypt(pack(fixed_pn), sealed, ad)

    assert decrypt(pack(fixed_pn), sealed, ad) == payload
    return _rate(seal, seconds), _rate(open_, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="measuring time per cell (default 1.0)"
    )
    args = parser.parse_args()

    from cryptography.hazmat.backends.openssl.backend import backend

    print(
        f"cryptography {cryptography.__version__}, {backend.openssl_version_text()}, "
        f"Python {platform.python_version()}, {platform.machine()}"
    )
    print(f"associated data {AD_SIZE} bytes, nonce from a 64-bit packet number\n")

    names = list(CIPHERS)
    header = (
        f"{'size':>5} {'op':<5} | {'ChaCha pkt/s':>13} {'MB/s':>8} | "
        f"{'AES-GCM pkt/s':>13} {'MB/s':>8} | {'AES/ChaCha':>10}"
    )
    print(header)
    print("-" * len(header))
    for size in SIZES:
        results = {name: measure(name, size, args.seconds) for name in names}
        for op_index, op in enumerate(("seal", "open")):
            chacha = results[names[0]][op_index]
            aes = results[names[1]][op_index]
            print(
                f"{size:>5} {op:<5} | {chacha:>13,.0f} {chacha * size / 1e6:>8.1f} | "
                f"{aes:>13,.0f} {aes * size / 1e6:>8.1f} | {aes / chacha:>9.2f}x"
            )


if __name__ == "__main__":
    main()
