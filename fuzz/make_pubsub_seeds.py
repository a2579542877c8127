#!/usr/bin/env python3
"""Write the seed corpus of the pub/sub codec harness: ``fuzz/corpus/pubsub_codec``.

Usage: ``python fuzz/make_pubsub_seeds.py``. :func:`genuine_messages` is also
what ``fuzz_pubsub_codec.py`` mutates, so seeds and harness start from the same
valid messages: one of every type, PRUNE with IPv4 and IPv6 peers, IHAVE with
entries, and a PUBLISH genuinely signed (the harness checks that no mutation of
it still verifies). A seed is a target byte (even: decode the rest as it is;
odd: mutate a genuine message as the rest says, in the op format of
``_harness.Ops``) and its input.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stt_proto.dht.messages import Contact  # noqa: E402
from stt_proto.identity import Identity  # noqa: E402
from stt_proto.pubsub import messages as m  # noqa: E402

#: The publisher of the signed PUBLISH, as in ``docs/pubsub-wire.md`` section 8.
PUBLISHER = Identity.from_signing_seed(b"\x07" * 32)
TOPIC = m.topic_key("sensor_data")


def genuine_messages() -> list[m.Message]:
    """Valid messages of every type (deterministic: Ed25519 signs deterministically)."""
    c4 = Contact(node_id=b"\x11" * 32, address=("198.51.100.7", 9337))
    c6 = Contact(node_id=b"\x22" * 32, address=("2001:db8::2", 9338))
    entries = [m.IHaveEntry(publisher=b"\x11" * 32, epoch=5, high=0),
               m.IHaveEntry(publisher=b"\x11" * 32, epoch=6, high=9),
               m.IHaveEntry(publisher=PUBLISHER.node_id, epoch=1733390000000, high=1)]
    return [
        m.Subscribe(topic=TOPIC),
        m.Unsubscribe(topic=TOPIC),
        m.Graft(topic=TOPIC),
        m.Prune(topic=TOPIC, backoff_ms=60_000, peers=[c4, c6]),
        m.sign_publish(PUBLISHER, TOPIC, 1733390000000, 1, b"hello",
                       published_ms=1733390000123),
        m.IHave(topic=TOPIC, entries=sorted(entries, key=lambda e: (e.publisher, e.epoch))),
        m.IWant(topic=TOPIC, publisher=PUBLISHER.node_id, epoch=1733390000000, first=1,
                last=4),
        m.Gone(topic=TOPIC, publisher=b"\x11" * 32, epoch=6, first=1, last=1024),
    ]


def pubsub_codec_seeds() -> dict[str, bytes]:
    names = ["subscribe", "unsubscribe", "graft", "prune", "publish", "ihave", "iwant", "gone"]
    genuine = genuine_messages()
    seeds = {name: b"\x00" + m.encode(msg) for name, msg in zip(names, genuine, strict=True)}
    # Mutations (target 1): which genuine message, how many edits, then each
    # edit as (kind, u16 position, argument).
    # PUBLISH: the data starts at byte 126; byte 121 is the low byte of the
    # publishing time, which the signature covers too.
    seeds["mutate_publish_flip_data"] = b"\x01\x04\x00\x00\x00\x7e\x01"
    seeds["mutate_publish_flip_published_ms"] = b"\x01\x04\x00\x00\x00\x79\x01"
    seeds["mutate_ihave_cut"] = b"\x01\x05\x00\x01\x00\x40"
    seeds["mutate_prune_insert"] = b"\x01\x03\x00\x02\x00\x27\x04\x21\x22\x23\x24"
    seeds["mutate_iwant_overwrite_last"] = b"\x01\x06\x00\x03\x00\x52" + b"\xff" * 8
    return seeds


def main() -> None:
    folder = HERE / "corpus" / "pubsub_codec"
    folder.mkdir(parents=True, exist_ok=True)
    seeds = pubsub_codec_seeds()
    for seed, data in seeds.items():
        (folder / seed).write_bytes(data)
    print(f"pubsub_codec: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
