#!/usr/bin/env python3
"""Write the seed corpora of the DHT harnesses: ``fuzz/corpus/dht_codec`` and
``fuzz/corpus/dht_engine``.

Usage: ``python fuzz/make_dht_seeds.py``. :func:`genuine_messages` is also what
``fuzz_dht_codec.py`` mutates, so seeds and harness start from the same valid
messages: one of every type, with IPv4 and IPv6 contacts and both record kinds.
A seed is a target byte (even: decode the rest as it is; odd: mutate a genuine
message as the rest says, in the op format of ``_harness.Ops``) and its input.
The engine corpus also keeps the long runs' findings as ``regress_*`` files
(written by hand, never by this script): ``regress_store_counted_late_lookup_answers``
left a ``provide`` waiting forever, fixed in c9d2bf0;
``regress_provider_at_unencodable_address`` made GET_PROVIDERS raise out of ``receive``.
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


#: What an engine seed must make happen, each checked on the node's statistics
#: (``stat:NAME``) or on a completed operation (``done:KIND``, with a result
#: that is not empty: a record found, a store accepted, nodes or providers found).
ENGINE_GOALS = (
    "stat:requests_rate_limited", "stat:messages_bad_version", "stat:records_invalid",
    "stat:handoff_records_sent", "stat:internal_queries_deferred", "stat:republished",
    "stat:answers_unencodable", "stat:requests_refused_full", "stat:table_evicted",
    "stat:table_promoted", "stat:table_pings_requested", "stat:table_address_changes",
    "stat:values_replaced", "stat:values_refused_rollback", "stat:values_refused_cas",
    "stat:values_refused_full", "stat:values_refused_publisher_limit",
    "stat:providers_refused_key_full", "stat:providers_refused_provider_limit",
    "done:find_node", "done:bootstrap", "done:get", "done:put", "done:provide",
    "done:find_providers", "done:ping",
)


def _reached(run) -> set[str]:
    from stt_proto.dht.queries import StoreReport

    stats = run.node.statistics()
    reached = {f"stat:{name}" for name, value in stats.items() if value}
    for qid, (kind, _key, _count) in run.started.items():
        result = run.results.get(qid)
        if result is None:
            continue
        if isinstance(result, StoreReport):
            # Some node besides this one answered the STORE or ADD_PROVIDER.
            reached_remote = result.stored + sum(result.refused.values()) > 1
        else:
            reached_remote = bool(result)
        if reached_remote:
            reached.add(f"done:{kind}")
    return reached


def dht_engine_seeds(tries: int = 3_000) -> dict[str, bytes]:
    """For each of :data:`ENGINE_GOALS`, the shortest of ``tries`` seeded random
    programs that reaches it: a corpus that starts inside every deep path
    (lookups that complete, stores, CAS and rollback refusals, providers, the
    rate limit, evictions) rather than at the codec's front door."""
    import random

    from _dht_engine import Run

    rng = random.Random(14)
    best: dict[str, bytes] = {}
    for _ in range(tries):
        data = rng.randbytes(rng.randrange(2, 400))
        run = Run(data)
        run.run()
        for goal in _reached(run) & set(ENGINE_GOALS):
            if goal not in best or len(data) < len(best[goal]):
                best[goal] = data
    seeds = {goal.replace(":", "_"): data for goal, data in sorted(best.items())}
    seeds.update(_engine_hand_seeds())
    return seeds


def _engine_hand_seeds() -> dict[str, bytes]:
    """Programs random search rarely writes: one peer over its per-publisher limits.

    In the op format of ``_dht_engine``: OP_REQUEST (1), a peer byte (0: the
    first pool member, at its own address), an 8-byte txid, the request kind
    (3: STORE, then a record index and a CAS byte, 0x80 for none; 4:
    ADD_PROVIDER, then a key index); OP_TIME (5) with 0x2B: 101 s pass, so the
    records the node started with expire and only the per-publisher limit is left.
    """
    def request(i: int, body: bytes) -> bytes:
        return b"\x01\x00" + bytes([i]) * 8 + body

    stores = b"".join(request(i, bytes([3, record, 0x80]))
                      for i, record in enumerate((1, 2, 10, 13), 1))
    providers = b"".join(request(i, bytes([4, key])) for i, key in enumerate((3, 4, 5), 1))
    # OP_APP (6) put (2) of VALUES[1], put_mutable (3), provide (4) of KEYS[0];
    # then OP_ANSWER (2) to the first pending request, four times with NODES
    # naming nobody (the lookup ends: k = 4 answered), four times with STORE_RESULT OK.
    answers = b"\x02\x00\x00\x00" * 4 + b"\x02\x00\x00" * 4
    return {"hand_publisher_limit": b"\x00\x05\x2b" + stores,
            "hand_provider_limit": b"\x00" + providers,
            "hand_put_stored": b"\x00\x06\x02\x01" + answers,
            "hand_put_mutable_stored": b"\x00\x06\x03\x01\x00" + answers,
            "hand_provide_stored": b"\x00\x06\x04\x00" + answers}


def _write(name: str, seeds: dict[str, bytes]) -> None:
    folder = HERE / "corpus" / name
    folder.mkdir(parents=True, exist_ok=True)
    for seed, data in seeds.items():
        (folder / seed).write_bytes(data)
    print(f"{name}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


def main() -> None:
    _write("dht_codec", dht_codec_seeds())
    from _dht_engine import Run

    seeds = dht_engine_seeds()
    reached: set[str] = set()
    for data in seeds.values():
        run = Run(data)
        run.run()
        reached |= _reached(run)
    missed = [goal for goal in ENGINE_GOALS if goal not in reached]
    _write("dht_engine", seeds)
    if missed:
        print(f"dht_engine: no seed reaches {', '.join(missed)}")


if __name__ == "__main__":
    main()
