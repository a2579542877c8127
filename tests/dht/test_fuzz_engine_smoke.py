"""The DHT engine fuzz program without atheris: the checked-in corpus and a batch
of seeded random programs replayed through ``fuzz/_dht_engine.py`` (the same
checks ``fuzz/fuzz_dht_engine.py`` runs), and the findings of the long runs as
regressions. ``tests/engine/test_fuzz_smoke.py`` runs the atheris harness itself."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from stt_proto.dht.config import DhtConfig
from stt_proto.dht.messages import AddProvider, FindNode, GetProviders, Providers, decode, encode
from stt_proto.dht.node import DhtNode
from stt_proto.identity import Identity

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))

import _dht_engine  # noqa: E402

CORPUS = FUZZ / "corpus" / "dht_engine"


@pytest.mark.parametrize("seed", sorted(p.name for p in CORPUS.iterdir()))
def test_corpus_program_keeps_every_invariant(seed):
    _dht_engine.run_input((CORPUS / seed).read_bytes())


def test_seeded_random_programs_keep_every_invariant():
    rng = random.Random(1414)
    for _ in range(150):
        _dht_engine.run_input(rng.randbytes(rng.randrange(1, 500)))


def test_corpus_reaches_the_deep_paths():
    """The seeds start inside the paths the harness is for, not at the codec."""
    totals: dict[str, int] = {}
    kinds: set[str] = set()
    for path in CORPUS.iterdir():
        run = _dht_engine.Run(path.read_bytes())
        run.run()
        for name, value in run.node.statistics().items():
            totals[name] = totals.get(name, 0) + value
        kinds |= {run.started[qid][0] for qid, result in run.results.items() if result}
    for counter in ("values_refused_cas", "values_refused_rollback", "values_replaced",
                    "values_refused_publisher_limit", "providers_refused_provider_limit",
                    "requests_rate_limited", "records_invalid", "table_evicted",
                    "requests_refused_full", "republished", "answers_matched"):
        assert totals[counter] > 0, counter
    assert kinds >= {"find_node", "get", "put", "provide", "find_providers", "ping"}


def test_a_broken_invariant_is_reported():
    """The checks can fail: a node over its pending-request limit is caught."""
    run = _dht_engine.Run(b"\x00")
    run.node.rpc._config = DhtConfig(max_pending_requests=1_000)
    for i in range(13):
        run.node.rpc.request(bytes([i + 1]) * 32, ("203.0.113.9", 1),
                             lambda txid: FindNode(txid=txid, target=bytes(32)),
                             owner=None, now=1.0)
    with pytest.raises(AssertionError, match="pending requests"):
        _dht_engine.check_node(run.node, run.authenticated)


# -- regressions ------------------------------------------------------------------------


def test_lookup_ends_when_the_pending_request_limit_cut_its_window_short():
    """Found by fuzz_dht_engine: a lookup chose alpha candidates, the first
    request found no room (max_pending_requests) and only that one was put back;
    the others stayed marked as queried with no request behind them, holding
    their window slots forever, so the lookup never ended."""
    rng = random.Random(5)
    identity = Identity.generate(rng.randbytes)
    node = DhtNode(identity.node_id, DhtConfig(k=4, alpha=3, max_pending_requests=1,
                                               rpc_attempts=1),
                   identity=identity, rng=rng.randbytes)
    peers = [(bytes([0x10 * n]) * 32, (f"10.2.{n}.1", 4000)) for n in (1, 2, 3)]
    for peer_id, address in peers:
        node.table.seen(peer_id, address, now=0.0)
    # Fill the only slot, so the lookup's first request already finds no room.
    node.rpc.request(b"\x7f" * 32, ("10.2.9.1", 4000), lambda txid: FindNode(
        txid=txid, target=bytes(32)), owner=None, now=0.0)
    query = node.find_node(bytes(32), now=0.0)
    asked: set[bytes] = set()
    now, event = 0.0, None
    for _ in range(50):
        asked |= {peer_id for peer_id, _, data in node.messages_to_send()
                  if isinstance(decode(data), FindNode)}
        event = node.next_event()
        if event is not None:
            break
        now = node.get_timer()
        assert now is not None, "a lookup is running and no timer is set"
        node.handle_timer(now=now)
    assert event is not None and event.query_id == query and event.kind == "find_node"
    assert event.result == []          # nobody answered
    assert {peer_id for peer_id, _ in peers} <= asked


@pytest.mark.parametrize("address", [("2001:db8::99", 5000, 0, 0), ("fe80::1%eth0", 5001)])
def test_get_providers_leaves_out_a_provider_the_wire_cannot_address(address):
    """Found by fuzz_dht_engine: a peer provided a key from an address the
    codec cannot carry (asyncio's 4-tuple IPv6 address, a zoned one); the next
    GET_PROVIDERS for the key raised EncodeError out of ``receive``."""
    rng = random.Random(6)
    identity = Identity.generate(rng.randbytes)
    node = DhtNode(identity.node_id, DhtConfig(), identity=identity, rng=rng.randbytes)
    key = b"\x42" * 32
    odd, ordinary = b"\x01" * 32, b"\x02" * 32
    node.receive(odd, address, encode(AddProvider(txid=b"\x01" * 8, key=key)), now=1.0)
    node.receive(ordinary, ("203.0.113.2", 4000),
                 encode(AddProvider(txid=b"\x02" * 8, key=key)), now=1.0)
    node.messages_to_send()
    node.receive(b"\x03" * 32, ("203.0.113.3", 4000),
                 encode(GetProviders(txid=b"\x03" * 8, key=key, count=20)), now=2.0)
    (_, _, data), = node.messages_to_send()
    answer = decode(data)
    assert isinstance(answer, Providers)
    assert [c.node_id for c in answer.providers] == [ordinary]
