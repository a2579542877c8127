"""DHT benchmark: STT's Kademlia against bmuller's ``kademlia`` and py-libp2p's kad-dht.

Usage::

    python bench/bench_dht.py                        # every implementation that imports
    python bench/bench_dht.py --impl bmuller --impl libp2p --quick
    python bench/bench_dht.py --nodes 100 --gets 1000 --loss 0.1 --seed 1 --json out.json

The same work for every implementation (issue 14, item 7), each in a process of
its own (so imports and memory do not mix) on its own event loop:

1. start ``--nodes`` nodes (100) in that one process on 127.0.0.1, then join
   every node through node 0 (its ``bootstrap`` call, one node after the other);
2. memory per node: the process's resident set (RSS, ``/proc/self/statm``) after
   bootstrap minus the RSS before the first node started, divided by the node
   count. It includes the library's own per-node objects, sockets' user-space
   buffers and event-loop tasks, not the interpreter or the imports;
3. put ``--values`` (100) values of 64 random bytes under random 20-byte keys,
   each through a random node;
4. ``--gets`` (1,000) gets, each of a random key of step 3 through a random
   node, without loss and then with ``--loss`` (10 %) of every node's outgoing
   datagrams dropped (a seeded generator wraps each node's datagram transport:
   see ``bench/_dht_peers.py``). Without loss the gets run one at a time
   (``--concurrency``), so latency is the lookup's own; with loss
   ``--loss-concurrency`` (20) run at once, because there latency is made of
   RPC timeouts (seconds, idle) and 1,000 of them in a row would take most of
   an hour; 20 gets in flight on 100 nodes add little queueing to that.
   A get succeeds when it returns the value that was put. Latencies are those
   of every get, failed or not (a get that outlasts ``--get-timeout`` counts
   at that timeout); p50/p99 are nearest-rank percentiles. "answered locally"
   is the share of gets whose node stored the key itself, so no lookup ran
   (both libraries answer those from their own store; with k = 20 of 100 nodes
   that is about one get in five); the "lookup gets" rows leave them out.

Keys, values, getters, node ids and drops all come from ``--seed``. py-libp2p
runs over TCP, where dropping datagrams has no meaning: its loss column reads
"n/a (TCP)". ``--quick`` makes 50 nodes, 20 values and 200 gets unless the
sizes are given. An implementation whose library does not import (or STT
before its adapter is registered in ``bench/_dht_peers.py``) is skipped with
a one-line note.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import random
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
#: every implementation the table knows, in its order; "stt" once registered
ORDER = ("stt", "bmuller", "libp2p")


def _rss() -> int:
    """The resident set size of this process, in bytes."""
    gc.collect()
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        # Elsewhere the peak is the best there is: it only grows, as RSS does here.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _gets(peers, items: list[tuple[bytes, bytes]], args, rng: random.Random,
                concurrency: int) -> dict:
    import anyio

    latencies: list[float] = []
    remote: list[float] = []  # gets whose node did not hold the key: real lookups
    succeeded = local = 0
    limit = anyio.Semaphore(concurrency)

    async def one(node: int, key: bytes, value: bytes) -> None:
        nonlocal succeeded, local
        async with limit:
            held = peers.holds(node, key)
            local += held
            start = time.perf_counter()
            result = None
            with anyio.move_on_after(args.get_timeout):
                try:
                    result = await peers.get(node, key)
                except Exception as error:  # noqa: BLE001 - a failed get is a figure
                    logging.getLogger("bench_dht").debug("get failed: %r", error)
            latencies.append((time.perf_counter() - start) * 1000)
            if not held:
                remote.append(latencies[-1])
            succeeded += result == value

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for _ in range(args.gets):
            key, value = rng.choice(items)
            node = rng.randrange(args.nodes)
            if concurrency == 1:
                await one(node, key, value)
            else:
                await limit.acquire()  # bound the tasks waiting, not only those running
                limit.release()
                tasks.start_soon(one, node, key, value)
    return {
        "gets": args.gets,
        "success": succeeded / args.gets,
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "mean_ms": sum(latencies) / len(latencies),
        "max_ms": max(latencies),
        "lookup_p50_ms": _percentile(remote, 0.50),
        "lookup_p99_ms": _percentile(remote, 0.99),
        "local": local / args.gets,
        "seconds": time.perf_counter() - started,
        "concurrency": concurrency,
    }


async def _measure(peers, args) -> dict:
    result: dict = {"impl": peers.name, "transport": peers.transport, "nodes": args.nodes,
                    "backend": peers.backend}
    rng = random.Random(args.seed)
    before = _rss()
    started = time.perf_counter()
    await peers.start(args.nodes, seed=args.seed)
    result["start_s"] = time.perf_counter() - started
    started = time.perf_counter()
    result["table_mean"] = await peers.bootstrap()
    result["bootstrap_s"] = time.perf_counter() - started
    result["memory_per_node_kB"] = (_rss() - before) / args.nodes / 1000

    items = [(rng.randbytes(20), rng.randbytes(64)) for _ in range(args.values)]
    started = time.perf_counter()
    stored = 0
    for key, value in items:
        stored += await peers.put(rng.randrange(args.nodes), key, value)
    result["puts_ok"] = stored / len(items)
    result["put_s"] = time.perf_counter() - started

    result["clean"] = await _gets(peers, items, args, random.Random(args.seed + 1),
                                  args.concurrency)
    if args.loss > 0:
        if peers.loss_note:
            result["lossy"] = {"note": peers.loss_note}
        else:
            peers.set_loss(args.loss, seed=args.seed + 2)
            result["lossy"] = await _gets(peers, items, args, random.Random(args.seed + 3),
                                          args.loss_concurrency)
            result["lossy"]["sent"], result["lossy"]["dropped"] = peers.loss_counts()
    # Not inside a cancel scope: py-libp2p's nodes live in nurseries that start()
    # opened in this task, and trio forbids closing them inside a newer scope. The
    # parent's --timeout bounds a stop that hangs.
    await peers.stop()
    return result


def _child(impl: str, args) -> int:
    """Run one implementation and print its results as one JSON line."""
    sys.path.insert(0, HERE)
    import _dht_peers

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 100 TCP nodes need fds
    logging.disable(logging.WARNING)  # the libraries log every timeout a loss run causes
    cls = _dht_peers.IMPLEMENTATIONS.get(impl)
    if cls is None:
        note = ("SttDht is not registered in bench/_dht_peers.py yet" if impl == "stt"
                else "unknown implementation")
        print(json.dumps({"impl": impl, "skipped": note}), flush=True)
        return 0
    if impl == "stt" and args.stt_pool:
        cls.pool_sessions = args.stt_pool
    try:
        peers = cls()
    except ImportError as error:
        print(json.dumps({"impl": impl, "skipped": f"import failed: {error}"}), flush=True)
        return 0
    import anyio

    result = anyio.run(_measure, peers, args, backend=peers.backend)
    print(json.dumps(result), flush=True)
    # Background tasks of a library may outlive stop(); the figures are out.
    sys.stdout.flush()
    os._exit(0)


def _run_child(impl: str, args) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--child", impl,
            "--nodes", str(args.nodes), "--gets", str(args.gets), "--values", str(args.values),
            "--loss", str(args.loss), "--seed", str(args.seed),
            "--concurrency", str(args.concurrency),
            "--loss-concurrency", str(args.loss_concurrency),
            "--get-timeout", str(args.get_timeout)]
    if args.stt_pool:
        argv += ["--stt-pool", str(args.stt_pool)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "error": f"no result within {args.timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"impl": impl, "error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(results: list[dict], args) -> str:
    rows = [r for r in results if "skipped" not in r and "error" not in r]
    loss = f"{args.loss:.0%} loss"

    def phase(r: dict, name: str, key: str, spec: str, scale: float = 1.0) -> str:
        figures = r.get(name, {})
        if "note" in figures:
            return figures["note"]
        value = figures.get(key)
        return _fmt(None if value is None else value * scale, spec)

    lines = [
        ("transport", lambda r: r["transport"]),
        ("event loop", lambda r: r["backend"]),
        ("nodes", lambda r: str(r["nodes"])),
        ("bootstrap s (all nodes)", lambda r: _fmt(r["bootstrap_s"], ".1f")),
        ("routing table, mean", lambda r: _fmt(r["table_mean"], ".1f")),
        ("memory/node kB (RSS delta)", lambda r: _fmt(r["memory_per_node_kB"], ".1f")),
        ("puts stored", lambda r: _fmt(r["puts_ok"], ".1%")),
        ("get p50 ms", lambda r: phase(r, "clean", "p50_ms", ".2f")),
        ("get p99 ms", lambda r: phase(r, "clean", "p99_ms", ".2f")),
        ("get success", lambda r: phase(r, "clean", "success", ".1%")),
        ("gets answered locally", lambda r: phase(r, "clean", "local", ".1%")),
        ("lookup gets p50 / p99 ms", lambda r: phase(r, "clean", "lookup_p50_ms", ".2f")
         + " / " + phase(r, "clean", "lookup_p99_ms", ".2f")),
        (f"get p50 ms, {loss}", lambda r: phase(r, "lossy", "p50_ms", ".2f")),
        (f"get p99 ms, {loss}", lambda r: phase(r, "lossy", "p99_ms", ".1f")),
        (f"get success, {loss}", lambda r: phase(r, "lossy", "success", ".1%")),
        (f"lookup gets p50 / p99 ms, {loss}",
         lambda r: (r["lossy"]["note"] if "note" in r.get("lossy", {}) else
                    phase(r, "lossy", "lookup_p50_ms", ".2f") + " / "
                    + phase(r, "lossy", "lookup_p99_ms", ".1f"))),
        ("datagrams dropped/sent", lambda r: (r["lossy"]["note"] if "note" in r.get("lossy", {})
                                              else f"{r.get('lossy', {}).get('dropped', '-')}/"
                                                   f"{r.get('lossy', {}).get('sent', '-')}")),
        ("gets wall time s (clean+loss)",
         lambda r: _fmt(r["clean"]["seconds"] + r.get("lossy", {}).get("seconds", 0), ".1f")),
    ]
    out = []
    if rows:
        width = max(len(label) for label, _ in lines) + 2
        cells = [[get(r) for r in rows] for _, get in lines]
        col = max([len(r["impl"]) for r in rows] + [len(c) for row in cells for c in row]) + 2
        out.append("".ljust(width) + "".join(r["impl"].rjust(col) for r in rows))
        for (label, _), row in zip(lines, cells):
            out.append(label.ljust(width) + "".join(c.rjust(col) for c in row))
    for r in results:
        if "skipped" in r:
            out.append(f"{r['impl']}: skipped ({r['skipped']})")
        elif "error" in r:
            out.append(f"{r['impl']}: failed ({r['error']})")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", action="append", choices=ORDER,
                        help="an implementation to run (repeatable; default: all)")
    parser.add_argument("--nodes", type=int, help="nodes in the process (100; --quick 50)")
    parser.add_argument("--gets", type=int, help="gets per phase (1000; --quick 200)")
    parser.add_argument("--values", type=int, help="values put before the gets (100; --quick 20)")
    parser.add_argument("--loss", type=float, default=0.1,
                        help="share of outgoing datagrams dropped in the second phase (0.1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of everything random (1)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="gets in flight without loss (1)")
    parser.add_argument("--loss-concurrency", type=int, default=20,
                        help="gets in flight with loss (20)")
    parser.add_argument("--get-timeout", type=float, default=60.0,
                        help="seconds after which a get counts as failed (60)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds one implementation may take in all (3600)")
    parser.add_argument("--quick", action="store_true", help="a smaller run (see above)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--stt-pool", type=int, metavar="N",
                        help="STT: sessions each member keeps at most (pool_sessions; "
                             "default the library's 256): memory per node against handshakes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = {"nodes": (100, 50), "gets": (1000, 200), "values": (100, 20)}
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if (args.nodes < 2 or args.gets < 1 or args.values < 1
            or min(args.concurrency, args.loss_concurrency) < 1):
        parser.error("need at least 2 nodes, 1 get, 1 value and a concurrency of 1")
    if not 0 <= args.loss < 1:
        parser.error("--loss is a fraction in [0, 1)")
    if args.child:
        return _child(args.child, args)

    results = []
    for impl in [i for i in ORDER if i in (args.impl or ORDER)]:
        print(f"running {impl} ...", file=sys.stderr, flush=True)
        results.append(_run_child(impl, args))
    print(f"DHT: {args.nodes} nodes in one process, {args.values} values, {args.gets} gets "
          f"per phase ({args.concurrency} at a time without loss, {args.loss_concurrency} "
          f"with), seed {args.seed}")
    print(_table(results, args))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
