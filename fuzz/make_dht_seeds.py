#!/usr/bin/env python3
"""Write the seed corpus of the DHT codec harness: ``fuzz/corpus/dht_codec``.

Usage: ``python fuzz/make_dht_seeds.py``. :func:`genuine_messages` is also what
``fuzz_dht_codec.py`` mutates, so seeds and harness start from the same valid
messages: one of every type, with IPv4 and IPv6 contacts and both record kinds.
A seed is a target byte (even: decode the rest as it is; odd: mutate a genuine
message as the rest says, in the op format of ``_harness.Ops``) and its input.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stt_proto.dht import messages as m  # noqa: E402

TXID = bytes.fromhex("0123456789abcdef")


def genuine_messages() -> list[m.Message]:
    """Valid messages of every type (deterministic)."""
    c4 = m.Contact(node_id=b"\x11" * 32, address=("198.51.100.7", 9337))
    c6 = m.Contact(node_id=b"\x22" * 32, address=("2001:db8::2", 9338))
    immutable = m.ImmutableValue(value=b"hello")
    mutable = m.MutableValue(signing_public_key=b"\x44" * 32, salt=b"profile", seq=7,
                             value=b"v1", signature=b"\x55" * 64)
    key = m.immutable_key(b"hello")
    return [
        m.Ping(txid=TXID),
        m.Pong(txid=TXID, observed_address=("2001:db8::7", 4000)),
        m.FindNode(txid=TXID, target=b"\x33" * 32),
        m.Nodes(txid=TXID, contacts=[c4, c6]),
        m.FindValue(txid=TXID, key=key),
        m.ValueFound(txid=TXID, record=mutable, contacts=[c6]),
        m.ValueFound(txid=TXID, record=None, contacts=[c4]),
        m.Store(txid=TXID, record=immutable, cas=None),
        m.Store(txid=TXID, record=mutable, cas=6),
        m.StoreResult(txid=TXID, status=m.StoreStatus.REFUSED_CAS),
        m.AddProvider(txid=TXID, key=key),
        m.GetProviders(txid=TXID, key=key, count=20),
        m.Providers(txid=TXID, providers=[c4], contacts=[c6]),
        m.Error(txid=TXID, code=m.ErrorCode.BUSY, retry_after_ms=250),
    ]


def dht_codec_seeds() -> dict[str, bytes]:
    genuine = genuine_messages()
    names = ["ping", "pong", "find_node", "nodes", "find_value", "value_found_mutable",
             "value_found_none", "store_immutable", "store_mutable_cas", "store_result",
             "add_provider", "get_providers", "providers", "error"]
    seeds = {name: b"\x00" + m.encode(msg) for name, msg in zip(names, genuine, strict=True)}
    # Mutations (target 1): which genuine message, how many edits, then each
    # edit as (kind, u16 position, argument).
    seeds["mutate_nodes_flip"] = b"\x01\x03\x00\x00\x00\x30\x80"
    seeds["mutate_store_cut"] = b"\x01\x08\x01\x01\x00\x40\x00\x00\x20\x01"
    seeds["mutate_providers_insert"] = b"\x01\x0c\x00\x02\x00\x0b\x04\x21\x22\x23\x24"
    return seeds


def main() -> None:
    folder = HERE / "corpus" / "dht_codec"
    folder.mkdir(parents=True, exist_ok=True)
    seeds = dht_codec_seeds()
    for name, data in seeds.items():
        (folder / name).write_bytes(data)
    print(f"dht_codec: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
