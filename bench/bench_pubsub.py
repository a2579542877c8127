"""Pub/sub benchmark: STT's ``PubSubManager`` against py-libp2p's gossipsub, rate by rate.

Usage::

    python bench/bench_pubsub.py                       # every implementation that imports
    python bench/bench_pubsub.py --impl stt --impl libp2p --quick
    python bench/bench_pubsub.py --rates 100,1000 --step 5 --json out.json

The same work for every implementation (issue 15, item 5), each in a process
of its own (so imports and memory do not mix) on its own event loop, every
node of it in that one process on 127.0.0.1: one publisher and
``--subscribers`` (10) subscribers of one topic. One process per
implementation means one core at most for all its nodes, so the figures are
per core, and neither side pays for a process boundary the other avoids.

1. start the nodes and join them (see ``bench/_pubsub_peers.py``), then warm
   up: publish a probe every 50 ms until every subscriber has received one
   (the mesh and the publisher's peers are formed), for ``--warmup`` s at most;
2. for each offered rate (50, 100, 200, 500, 1000, 2000, 5000 messages/s) run
   a step of ``--step`` (4) seconds: message i is due at ``i / rate`` after
   the step starts and is published when due, or at once when the publisher
   is behind (``publish`` waited: backpressure, or the library is slow). The
   publisher never skips a message and never publishes after the step's end,
   so "published/s" is the rate it truly reached. Each message is
   ``--size`` (100) bytes: step, sequence number and the ``perf_counter`` time
   at which ``publish`` was called, padded;
3. after the step, wait until every subscriber has every message of the
   step, or ``--settle`` (3) s have passed and nothing arrived for 0.5 s;
4. per step: deliveries/s = distinct (message, subscriber) arrivals divided by
   the time from the step's start to the last arrival (equal to the offered
   rate times the subscribers when the implementation keeps up); lost =
   (message, subscriber) pairs published but not arrived after the settle
   time; duplicates = arrivals beyond the first of a pair; latency = arrival
   time minus the time ``publish`` was called (so it includes any wait in
   ``publish``), p50 and p99 nearest-rank over first arrivals; CPU = the
   process's user + system time over the step and its settle, per wall second;
5. before the next step, wait (uncounted, 30 s at most) until nothing has
   arrived for 1 s, so that a backlog left in a library's queues is not
   charged to the next rate. What arrives then stays lost, but the summary
   says how much of the loss was late rather than missing.

The curve bends at the first rate where published/s falls below 95 % of the
offered rate, deliveries/s below 90 % of offered × subscribers, or anything is
lost. ``--quick`` runs 100, 1000 and 5000 messages/s in 1 s steps with a 2 s
settle unless given. An implementation whose library does not import (or STT
before ``PubSubManager`` exists) is skipped with a one-line note.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
#: every implementation the table knows, in its order
ORDER = ("stt", "libp2p", "libp2p-unlimited")
RATES = (50, 100, 200, 500, 1000, 2000, 5000)
QUICK_RATES = (100, 1000, 5000)
#: step (u16), sequence number (u32), perf_counter at publish (f64)
HEADER = struct.Struct("!HId")
#: the step number of warm-up probes
PROBE = 0
#: seconds the uncounted wait between steps lasts at most
DRAIN_LIMIT = 30.0
#: issue 15's targets, and what it measured of py-libp2p
TARGET_DELIVERIES = 5000
TARGET_P50_MS = 5.0
TARGET = "≥ 5,000 deliveries/s with 0 lost and median latency ≤ 5 ms on loopback"
LIBP2P_MEASURED = "80–100 messages/s per core, dropping past 20 messages/s"


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Recorder:
    """Every arrival at every subscriber, by step; cheap enough to sit in the receive path."""

    def __init__(self, subscribers: int) -> None:
        self.subscribers = subscribers
        #: step -> (subscriber, seq) -> latency of the first arrival, seconds
        self.first: dict[int, dict[tuple[int, int], float]] = {}
        self.duplicates: dict[int, int] = {}
        #: step -> perf_counter of its latest arrival; and the latest of any step
        self.last: dict[int, float] = {}
        self.last_arrival = 0.0
        self.malformed = 0

    def deliver(self, index: int, data: bytes) -> None:
        now = time.perf_counter()
        try:
            step, seq, sent = HEADER.unpack_from(data)
        except struct.error:
            self.malformed += 1
            return
        self.last_arrival = self.last[step] = now
        pairs = self.first.setdefault(step, {})
        if (index, seq) in pairs:
            self.duplicates[step] = self.duplicates.get(step, 0) + 1
        else:
            pairs[(index, seq)] = now - sent

    def reached(self, step: int) -> set[int]:
        """The subscribers that received at least one message of ``step``."""
        return {index for index, _ in self.first.get(step, {})}

    def count(self, step: int) -> int:
        return len(self.first.get(step, {}))


def _payload(step: int, seq: int, size: int) -> bytes:
    head = HEADER.pack(step, seq, time.perf_counter())
    return head + bytes(max(0, size - len(head)))


async def _warmup(peers, recorder: Recorder, args) -> float | None:
    """Probe until every subscriber has heard the publisher: the seconds it took, or None."""
    import anyio

    started = time.perf_counter()
    seq = 0
    while time.perf_counter() - started < args.warmup:
        await peers.publish(_payload(PROBE, seq, args.size))
        seq += 1
        await anyio.sleep(0.05)
        if len(recorder.reached(PROBE)) == args.subscribers:
            return time.perf_counter() - started
    return None


async def _step(peers, recorder: Recorder, args, step: int, rate: int) -> dict:
    import anyio

    cpu = _cpu()
    start = time.perf_counter()
    end = start + args.step
    published = 0
    waited = 0.0  # time spent inside publish
    while True:
        due = start + published / rate
        if due >= end:
            break
        now = time.perf_counter()
        if now >= end:
            break
        if due > now:
            await anyio.sleep(due - now)
        before = time.perf_counter()
        await peers.publish(_payload(step, published, args.size))
        waited += time.perf_counter() - before
        published += 1
    publish_end = time.perf_counter()
    expected = published * args.subscribers
    settle_until = publish_end + args.settle
    while recorder.count(step) < expected:
        now = time.perf_counter()
        if now >= settle_until and now - recorder.last_arrival >= 0.5:
            break
        if now >= publish_end + 3 * args.settle:
            break
        await anyio.sleep(0.02)
    wall = time.perf_counter() - start
    cpu = _cpu() - cpu
    arrivals = recorder.first.get(step, {})
    delivered = len(arrivals)
    last = max(recorder.last.get(step, 0.0), publish_end)
    latencies = [seconds * 1000 for seconds in arrivals.values()]
    missing_messages = sum(1 for seq in range(published)
                           if any((index, seq) not in arrivals
                                  for index in range(args.subscribers)))
    return {
        "rate": rate,
        "published": published,
        "published_per_s": published / args.step,
        "publish_wait_s": waited,
        "deliveries": delivered,
        "deliveries_per_s": delivered / (last - start),
        "lost": expected - delivered,
        "messages_incomplete": missing_messages,
        "duplicates": recorder.duplicates.get(step, 0),
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "cpu": cpu / wall,
        "drain_s": await _drain(recorder),
        # arrived after the settle time, before the next step: counted lost above
        "late": recorder.count(step) - delivered,
    }


async def _drain(recorder: Recorder, quiet: float = 1.0, limit: float | None = None) -> float:
    """Wait until nothing has arrived for ``quiet`` s (``limit`` s at most), uncounted:
    a backlog the last step left in a library must not be charged to the next one."""
    import anyio

    limit = DRAIN_LIMIT if limit is None else limit
    started = time.perf_counter()
    while (time.perf_counter() - recorder.last_arrival < quiet
           and time.perf_counter() - started < limit):
        await anyio.sleep(0.1)
    return time.perf_counter() - started


def _within_target(steps: list[dict]) -> dict | None:
    """The step with the most deliveries/s among those with nothing lost and the
    target's median latency, or None."""
    good = [s for s in steps if s["lost"] == 0 and s["p50_ms"] is not None
            and s["p50_ms"] <= TARGET_P50_MS]
    return max(good, key=lambda s: s["deliveries_per_s"], default=None)


def _bend(steps: list[dict], subscribers: int) -> dict | None:
    """The first step where the implementation stops following the offered rate."""
    for step in steps:
        if (step["published_per_s"] < 0.95 * step["rate"]
                or step["deliveries_per_s"] < 0.9 * step["rate"] * subscribers
                or step["lost"] > 0):
            return step
    return None


async def _measure(peers, args) -> dict:
    result: dict = {"impl": peers.name, "transport": peers.transport,
                    "backend": peers.backend, "settings": peers.settings,
                    "subscribers": args.subscribers, "size": args.size}
    recorder = Recorder(args.subscribers)
    started = time.perf_counter()
    await peers.start(args.subscribers, seed=args.seed, deliver=recorder.deliver)
    result["start_s"] = time.perf_counter() - started
    result["warmup_s"] = await _warmup(peers, recorder, args)
    steps = result["steps"] = []
    if result["warmup_s"] is None:
        result["warmup_note"] = (f"{len(recorder.reached(PROBE))} of {args.subscribers} "
                                 f"subscribers heard a probe within {args.warmup:g} s")
    for number, rate in enumerate(args.rates, start=PROBE + 1):
        print(f"  {peers.name}: {rate} messages/s", file=sys.stderr, flush=True)
        steps.append(await _step(peers, recorder, args, number, rate))
    result["counters"] = peers.counters()
    result["malformed"] = recorder.malformed
    # Out before stop: a library whose shutdown hangs must not take the figures with it.
    print(json.dumps(result), flush=True)
    await peers.stop()
    return result


def _child(impl: str, args) -> int:
    """Run one implementation and print its results as one JSON line."""
    sys.path.insert(0, HERE)
    import _pubsub_peers

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.disable(logging.WARNING)  # py-libp2p logs every message its spam check drops
    cls = _pubsub_peers.IMPLEMENTATIONS.get(impl)
    if cls is None:
        print(json.dumps({"impl": impl, "skipped": "unknown implementation"}), flush=True)
        return 0
    if impl == "libp2p" and args.libp2p_spam_limit is not None:
        cls.spam_limit = args.libp2p_spam_limit
    try:
        peers = cls()
    except (ImportError, AttributeError) as error:
        print(json.dumps({"impl": impl, "skipped": f"import failed: {error}"}), flush=True)
        return 0
    import anyio

    anyio.run(_measure, peers, args, backend=peers.backend)
    # Background tasks of a library may outlive stop(); the figures are out.
    sys.stdout.flush()
    os._exit(0)


def _run_child(impl: str, args) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--child", impl,
            "--subscribers", str(args.subscribers), "--size", str(args.size),
            "--rates", ",".join(map(str, args.rates)), "--step", str(args.step),
            "--settle", str(args.settle), "--warmup", str(args.warmup),
            "--seed", str(args.seed)]
    if args.libp2p_spam_limit is not None:
        argv += ["--libp2p-spam-limit", str(args.libp2p_spam_limit)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as expired:
        stdout = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) \
            else (expired.stdout or "")
        stderr, code = f"no result within {args.timeout:.0f} s", None
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])  # a hang in stop() after the figures costs nothing
    tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"impl": impl, "error": f"exit {code}: {tail}"}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


#: (heading, width, cell) of each column an implementation gets in the table
COLUMNS = (
    ("pub/s", 7, lambda s: _fmt(s["published_per_s"], ".0f")),
    ("deliv/s", 8, lambda s: _fmt(s["deliveries_per_s"], ".0f")),
    ("lost", 7, lambda s: str(s["lost"])),
    ("dup", 6, lambda s: str(s["duplicates"])),
    ("p50 ms", 10, lambda s: _fmt(s["p50_ms"], ".2f")),
    ("p99 ms", 9, lambda s: _fmt(s["p99_ms"], ".1f")),
    ("cpu", 5, lambda s: _fmt(s["cpu"], ".0%")),
)


def _table(results: list[dict], args) -> str:
    rows = [r for r in results if "skipped" not in r and "error" not in r]
    out = []
    for r in rows:
        warm = (f"warm-up {r['warmup_s']:.2f} s" if r["warmup_s"] is not None
                else f"warm-up incomplete: {r['warmup_note']}")
        out.append(f"{r['impl']}: {r['transport']}, {r['backend']}; {r['settings']}; "
                   f"start {r['start_s']:.1f} s, {warm}")
    if rows:
        group = sum(width for _, width, _ in COLUMNS) + 3
        out.append("")
        out.append("offered".rjust(8) + "".join(("| " + r["impl"]).ljust(group) for r in rows))
        out.append("msg/s".rjust(8) + "".join(
            "| " + "".join(h.rjust(w) for h, w, _ in COLUMNS) + " "
            for _ in rows))
        for index, rate in enumerate(args.rates):
            line = f"{rate:>8}"
            for r in rows:
                step = r["steps"][index] if index < len(r["steps"]) else None
                cells = ("".join(cell(step).rjust(w) for _, w, cell in COLUMNS) if step
                         else "".join("-".rjust(w) for _, w, _ in COLUMNS))
                line += "| " + cells + " "
            out.append(line)
        out.append("")
        for r in rows:
            bend = _bend(r["steps"], r["subscribers"])
            if bend is None:
                out.append(f"{r['impl']}: follows every offered rate up to "
                           f"{args.rates[-1]} messages/s with nothing lost")
            else:
                why = []
                if bend["published_per_s"] < 0.95 * bend["rate"]:
                    why.append(f"publishes {bend['published_per_s']:.0f}/s")
                if bend["deliveries_per_s"] < 0.9 * bend["rate"] * r["subscribers"]:
                    why.append(f"delivers {bend['deliveries_per_s']:.0f}/s of "
                               f"{bend['rate'] * r['subscribers']}")
                if bend["lost"]:
                    why.append(f"loses {bend['lost']} deliveries")
                out.append(f"{r['impl']}: the curve bends at {bend['rate']} messages/s ("
                           + ", ".join(why) + ")")
            late = sum(s.get("late", 0) for s in r["steps"])
            if late:
                out.append(f"  {late} of the lost deliveries arrived after the settle time "
                           "(in the uncounted wait before the next step)")
            for step in r["steps"]:
                if step.get("drain_s", 0) >= DRAIN_LIMIT:
                    out.append(f"  at {step['rate']} messages/s deliveries were still arriving "
                               f"when the {DRAIN_LIMIT:g} s wait after the step ended")
            peak = max(r["steps"], key=lambda s: s["deliveries_per_s"], default=None)
            if peak is not None:
                out.append(f"  peak: {peak['deliveries_per_s']:.0f} deliveries/s at "
                           f"{peak['rate']} messages/s ({peak['lost']} lost, median "
                           f"{_fmt(peak['p50_ms'], '.2f')} ms)")
            good = _within_target(r["steps"])
            if good is None:
                out.append(f"  no step with 0 lost and median ≤ {TARGET_P50_MS:g} ms")
            else:
                verdict = ("meets" if good["deliveries_per_s"] >= TARGET_DELIVERIES
                           else "short of")
                out.append(f"  best step with 0 lost and median ≤ {TARGET_P50_MS:g} ms: "
                           f"{good['deliveries_per_s']:.0f} deliveries/s at {good['rate']} "
                           f"messages/s (median {good['p50_ms']:.2f} ms): {verdict} the "
                           f"target of {TARGET_DELIVERIES:,}/s")
            if r.get("counters"):
                shown = {k: v for k, v in r["counters"].items() if v}
                if shown:
                    out.append("  counters: " + ", ".join(f"{k}={v}" for k, v in
                                                         sorted(shown.items())))
        out.append(f"target (issue 15): {TARGET}")
        out.append(f"py-libp2p as measured in issue 15: {LIBP2P_MEASURED}")
    for r in results:
        if "skipped" in r:
            out.append(f"{r['impl']}: skipped ({r['skipped']})")
        elif "error" in r:
            out.append(f"{r['impl']}: failed ({r['error']})")
    return "\n".join(out)


def _rates(text: str) -> tuple[int, ...]:
    rates = tuple(int(part) for part in text.split(",") if part.strip())
    if not rates or min(rates) < 1:
        raise argparse.ArgumentTypeError("rates are positive integers, comma-separated")
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", action="append", choices=ORDER,
                        help="an implementation to run (repeatable; default: all)")
    parser.add_argument("--subscribers", type=int, default=10, help="subscribers (10)")
    parser.add_argument("--size", type=int, default=100, help="bytes per message (100)")
    parser.add_argument("--rates", type=_rates,
                        help="offered messages/s, comma-separated "
                             f"({','.join(map(str, RATES))}; --quick "
                             f"{','.join(map(str, QUICK_RATES))})")
    parser.add_argument("--step", type=float, help="seconds of publishing per rate (4; --quick 1)")
    parser.add_argument("--settle", type=float,
                        help="seconds to wait for stragglers after a step (3; --quick 2)")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="seconds the warm-up may take before the steps start anyway (30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the node keys (1)")
    parser.add_argument("--libp2p-spam-limit", type=float, metavar="N",
                        help="py-libp2p: messages/s a forwarder may send per topic before "
                             "the excess is dropped (library default 10; 0 turns it off)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds one implementation may take in all (1800)")
    parser.add_argument("--quick", action="store_true", help="a shorter run (see above)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rates is None:
        args.rates = QUICK_RATES if args.quick else RATES
    if args.step is None:
        args.step = 1.0 if args.quick else 4.0
    if args.settle is None:
        args.settle = 2.0 if args.quick else 3.0
    if args.subscribers < 1 or args.size < HEADER.size or args.step <= 0 or args.settle < 0:
        parser.error(f"need a subscriber, messages of at least {HEADER.size} bytes, "
                     "a positive step and a settle time of 0 or more")
    if len(args.rates) > 65535 - PROBE:
        parser.error("too many rates")
    if args.child:
        return _child(args.child, args)

    results = []
    for impl in [i for i in ORDER if i in (args.impl or ORDER)]:
        print(f"running {impl} ...", file=sys.stderr, flush=True)
        results.append(_run_child(impl, args))
    print(f"pub/sub: 1 publisher (not subscribed) and {args.subscribers} subscribers of one "
          f"topic in one process per implementation on 127.0.0.1, {args.size}-byte messages, "
          f"{args.step:g} s per rate, settle {args.settle:g} s")
    print(_table(results, args))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
