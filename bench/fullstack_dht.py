"""The DHT on the full stack: real endpoints, Noise handshakes and DHT frames in
``stt_proto.testing``, against the message-level simulator on the same parameters.

Issue 14 item 3: N nodes (default 1,000), every pair joined by a link of 25 ms one
way (50 ms RTT) and 5 % loss. The nodes join through a real bootstrap, in waves.
Then every session is let idle out (the pools close them), so each lookup starts
*cold*: its contacts are in the routing table but no session to them exists, and
every step of the lookup pays for a handshake unless the stack hides it (it does:
the first request rides in the handshake, docs/protocol.md 6.9). Lookups
(FIND_NODE of a random live id, exact) run in batches from random nodes; between
batches the sessions idle out again.

The same lookups on :class:`~stt_proto.dht.simulation.DhtSimulation` (sessions
assumed, a converged table) give the baseline; the difference of the medians is the
extra cost of the sessions, in RTTs per lookup.

    .venv/bin/python bench/fullstack_dht.py                 # 1,000 nodes (minutes)
    .venv/bin/python bench/fullstack_dht.py --nodes 150 --lookups 100
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stt_proto.config import EndpointConfig  # noqa: E402
from stt_proto.dht.config import DhtConfig  # noqa: E402
from stt_proto.dht.node import DhtNode  # noqa: E402
from stt_proto.dht.simulation import DhtSimulation  # noqa: E402
from stt_proto.endpoint import Endpoint  # noqa: E402
from stt_proto.events import DhtQueryCompleted  # noqa: E402
from stt_proto.identity import Identity  # noqa: E402
from stt_proto.overlay import OverlayHost  # noqa: E402
from stt_proto.pool import SessionPool  # noqa: E402
from stt_proto.testing import Link, Network  # noqa: E402

SHARED_SEED = b"fullstack dht bench network seed"
LATENCY = 0.025
RTT = 2 * LATENCY
#: The pool's idle close in the bench: short, so that the network goes cold
#: between lookup batches in little simulated time.
IDLE_CLOSE = 5.0


def dht_config() -> DhtConfig:
    """The DHT's parameters, the same on both sides of the comparison."""
    return DhtConfig(initial_rtt=RTT, min_rpc_timeout=RTT)


@dataclass
class Member:
    node: object          # stt_proto.testing.Node
    host: OverlayHost
    dht: DhtNode
    done: dict = field(default_factory=dict)   # query id -> (time, result)


@dataclass
class Outcome:
    seconds: float
    found: bool


def member_address(n: int) -> tuple[str, int]:
    # One /24 per member: the routing table limits contacts per subnet.
    return (f"10.{n >> 8 & 255}.{n & 255}.1", 4000)


def build(count: int, seed: int, *, loss: float, shared_seed: bytes = SHARED_SEED,
          net: Network | None = None, first: int = 1) -> tuple[Network, list[Member]]:
    """``count`` OverlayHosts with a DhtNode each, not yet joined."""
    if net is None:
        net = Network(seed, shared_seed=shared_seed,
                      default_link=Link(latency=LATENCY, loss=loss))
    rng = random.Random(seed * 1_000_003 + first)
    members = []
    for n in range(first, first + count):
        identity = Identity.generate(rng.randbytes)
        endpoint = Endpoint(EndpointConfig(identity=identity, shared_seed=shared_seed,
                                           rng=rng.randbytes, connect_timeout=5.0))
        host = OverlayHost(endpoint, pool=SessionPool(endpoint, idle_close=IDLE_CLOSE))
        dht = DhtNode(identity.node_id, dht_config(), identity=identity, rng=rng.randbytes)
        host.attach_dht(dht)
        member = Member(None, host, dht)

        def on_event(node, event, member=member):
            if type(event) is DhtQueryCompleted:
                member.done[event.query_id] = (node.network.now, event.result)

        node = net.add_endpoint(host, member_address(n), name=f"m{n}", on_event=on_event)
        node.record_events = False
        dht.address = node.address
        member.node = node
        members.append(member)
    return net, members


def start(member: Member, begin) -> int:
    return member.node.call(lambda host, now: begin(member.dht, now))


def run_until_done(net: Network, waiting: list[tuple[Member, int]], limit: float) -> None:
    net.run(until=net.now + limit, stop=lambda: all(q in m.done for m, q in waiting),
            max_steps=50_000_000)


def join(net: Network, members: list[Member], rng: random.Random, *, wave: int = 25,
         retries: int = 3) -> float:
    """Bootstrap every member after the first through a random joined one, ``wave``
    at a time (each wave's joins run concurrently). Returns the simulated seconds."""
    began = net.now
    joined = [members[0]]
    rest = members[1:]
    for i in range(0, len(rest), wave):
        batch = rest[i:i + wave]
        waiting = []
        for member in batch:
            via = rng.choice(joined)
            query = start(member, lambda d, now, via=via: d.bootstrap(
                [(via.dht.own_id, via.node.address)], now=now))
            waiting.append((member, query))
        run_until_done(net, waiting, 120.0)
        # A join whose first handshake or request was lost found nobody: join
        # again through another member, as KademliaDHT.bootstrap retries.
        for _ in range(retries):
            lonely = [m for m in batch if len(m.dht.table) < 2]
            if not lonely:
                break
            waiting = []
            for member in lonely:
                via = rng.choice(joined)
                waiting.append((member, start(member, lambda d, now, via=via: d.bootstrap(
                    [(via.dht.own_id, via.node.address)], now=now))))
            run_until_done(net, waiting, 120.0)
        joined.extend(batch)
    # Let the joins' bucket refreshes finish before measuring.
    net.run(until=net.now + 10.0, max_steps=50_000_000)
    return net.now - began


def sessions_open(members: list[Member]) -> int:
    return sum(len(m.host.pool) for m in members)


def go_cold(net: Network, members: list[Member]) -> None:
    """Run until the pools have closed every session (idle close), and a little more
    for the closes to reach the peers."""
    net.run(until=net.now + IDLE_CLOSE + 2.0, max_steps=50_000_000)
    for _ in range(10):
        if not sessions_open(members):
            return
        net.run(until=net.now + IDLE_CLOSE, max_steps=50_000_000)


def lookups(net: Network, members: list[Member], rng: random.Random, count: int, *,
            batch: int = 10, cold: bool = True) -> list[Outcome]:
    """``count`` exact FIND_NODE lookups of random member ids from random members,
    ``batch`` at a time; with ``cold``, every session idles out before each batch."""
    outcomes = []
    while len(outcomes) < count:
        if cold:
            go_cold(net, members)
        waiting = []
        sources = rng.sample(members, min(batch, count - len(outcomes)))
        for source in sources:
            target = rng.choice([m for m in members if m is not source])
            query = start(source, lambda d, now, t=target.dht.own_id:
                          d.find_node(t, now=now, exact=True))
            waiting.append((source, query, target.dht.own_id, net.now))
        run_until_done(net, [(m, q) for m, q, _, _ in waiting], 120.0)
        for source, query, target, began in waiting:
            at, result = source.done.get(query, (None, None))
            if at is None:
                outcomes.append(Outcome(float("inf"), False))
            else:
                outcomes.append(Outcome(at - began,
                                        any(peer == target for peer, _ in result)))
    return outcomes


def simulated(count: int, lookups_count: int, seed: int, loss: float) -> list[Outcome]:
    """The same lookups in the message-level simulator (sessions assumed)."""
    sim = DhtSimulation(seed, latency=LATENCY, loss=loss, config=dht_config())
    sim.add_members(count)
    sim.populate()
    members = list(sim.members.values())
    outcomes = []
    for _ in range(lookups_count):
        source, target = sim.rng.sample(members, 2)
        o = sim.find_node(source, target.node_id)
        outcomes.append(Outcome(o.seconds, any(p == target.node_id for p, _ in o.result)))
    return outcomes


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(outcomes: list[Outcome]) -> dict:
    rtts = [o.seconds / RTT for o in outcomes]
    return {"lookups": len(outcomes),
            "success": sum(o.found for o in outcomes) / len(outcomes),
            "p50_rtt": percentile(rtts, 0.5), "p99_rtt": percentile(rtts, 0.99),
            "mean_rtt": sum(r for r in rtts if r != float("inf")) / len(rtts)}


def measure(nodes: int, lookups_count: int, seed: int, loss: float, *,
            verbose: bool = False) -> dict:
    """Build, join, run cold and warm lookups, and the simulator's; every figure."""
    wall = time.perf_counter()
    net, members = build(nodes, seed, loss=loss)
    rng = random.Random(seed)
    join_seconds = join(net, members, rng)
    if verbose:
        print(f"joined {nodes} nodes in {join_seconds:.1f} simulated s "
              f"({time.perf_counter() - wall:.0f} s wall)", file=sys.stderr)
    def total(name: str) -> int:
        return sum(m.host.pool.stats[name] if name.startswith("pool_")
                   else m.host.endpoint.statistics()[name] for m in members)

    before = {name: total(name) for name in ("pool_connects", "pool_connect_retries",
                                             "early_dht_answers_received")}
    cold = lookups(net, members, rng, lookups_count)
    handshakes = total("pool_connects") - before["pool_connects"]
    early = total("early_dht_answers_received") - before["early_dht_answers_received"]
    retries = total("pool_connect_retries") - before["pool_connect_retries"]
    if verbose:
        print(f"cold lookups done ({time.perf_counter() - wall:.0f} s wall)", file=sys.stderr)
    warm = lookups(net, members, rng, lookups_count, cold=False)
    sim = simulated(nodes, lookups_count, seed, loss)
    result = {"nodes": nodes, "loss": loss, "seed": seed, "join_seconds": join_seconds,
              "cold": summary(cold), "warm": summary(warm), "simulator": summary(sim),
              "handshakes_per_cold_lookup": handshakes / lookups_count,
              "early_answers_per_cold_lookup": early / lookups_count,
              "handshake_retries_per_cold_lookup": retries / lookups_count,
              "wall_seconds": time.perf_counter() - wall,
              "network": net.statistics()}
    result["extra_rtt_p50"] = result["cold"]["p50_rtt"] - result["simulator"]["p50_rtt"]
    result["extra_rtt_mean"] = result["cold"]["mean_rtt"] - result["simulator"]["mean_rtt"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    r = measure(args.nodes, args.lookups, args.seed, args.loss, verbose=True)
    print(f"{r['nodes']} nodes, RTT {RTT * 1000:.0f} ms, loss {r['loss']:.0%}, seed {r['seed']}; "
          f"join {r['join_seconds']:.0f} simulated s; wall {r['wall_seconds']:.0f} s")
    print(f"{'':24}{'success':>9}{'p50 RTT':>9}{'p99 RTT':>9}{'mean RTT':>10}")
    for name, key in (("full stack, cold", "cold"), ("full stack, no idle gap", "warm"),
                      ("message simulator", "simulator")):
        s = r[key]
        print(f"{name:24}{s['success']:9.3f}{s['p50_rtt']:9.2f}{s['p99_rtt']:9.2f}"
              f"{s['mean_rtt']:10.2f}")
    print(f"extra cost of cold sessions: p50 {r['extra_rtt_p50']:+.2f} RTT, "
          f"mean {r['extra_rtt_mean']:+.2f} RTT per lookup; "
          f"{r['handshakes_per_cold_lookup']:.1f} handshakes per cold lookup, "
          f"{r['early_answers_per_cold_lookup']:.1f} of them answered in the handshake, "
          f"{r['handshake_retries_per_cold_lookup']:.2f} handshakes retried early")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
