"""Transport benchmark: STT against aioquic, qh3, TCP+TLS 1.3 and bare UDP, over loopback.

Usage::

    python bench/bench_transport.py [--mib 100] [--seconds 3] [--quick]
    python bench/bench_transport.py --only stt,stt-trio    # the two STT adapters
    python bench/bench_transport.py --only stt,udp --quick  # STT against its floor
    python bench/bench_transport.py --profile [bulk|echo|connect]   # cProfile STT rows

Every transport runs its server and its client in two separate processes on
127.0.0.1 (the server prints its port and id; the client measures; see
``bench/_processes.py``), all on asyncio (STT's asyncio adapter; aioquic's and
qh3's ``asyncio.serve``/``connect`` with their stream reader/writer;
``asyncio.start_server``/``open_connection`` with a TLS 1.3 context) except the
two trio rows: ``STT (trio)`` (``--only stt-trio``), STT's trio adapter on both
sides, and ``UDP (trio)``, both under ``trio.run``. The STT server and the
client phases are one piece of code on anyio for both adapters (the phases
serve every transport), so the two STT rows differ only in the adapter and the
event loop. A self-signed P-256 certificate is generated at run time; QUIC and
TLS clients verify it. STT authenticates the server by its node id. Each
transport carries the same payloads (see ``bench/_transport_peers.py``):

1. bulk: one stream of ``--mib`` MiB (default 100) written in ``--chunk``-byte
   pieces (64 KiB; one message each on STT), timed from the first write until
   the server's answer, which carries the SHA-256 and length of what it
   received: the client checks both, so a figure is only printed for bytes that
   arrived intact. MB/s is 10**6 bytes per second.
2. round trips: 100-byte request, 100-byte answer, one at a time on one stream,
   for ``--seconds``.
3. connect: connect + open a stream + one byte there and back, median of
   ``--connects`` one after the other (the client's STT node, its socket and
   its key are made once, as a node is meant to be used; QUIC and TCP clients
   make a socket per connection), then the same with ``--concurrency`` (8)
   connects at a time for ``--seconds``: handshakes/s. Closing is not timed.

The ``UDP`` rows (``--only udp,udp-uvloop,udp-trio``) have no protocol at all:
a 100-byte datagram to a server process that sends it back, one outstanding at
a time, timed by the same round-trip phase as the others, with the loop's stock
UDP API (asyncio's ``DatagramProtocol``, ``trio.socket``). They run round trips
only: the floor under any protocol's round trip on that event loop.

After the table come the ratios (every STT row over qh3 and TCP+TLS, trio over
asyncio, every STT row's round trips over the bare UDP row of its loop) and
issue 18's targets, each with the ratio measured in this run and whether it is
met: round trips >= 1.0x TCP+TLS and >= 0.75x bare UDP, handshakes/s >= 3x
qh3, bulk >= 1.0x TCP+TLS, connect time <= 0.5x qh3's, and trio within 20 % of
asyncio in bulk and round trips (issue 6's criterion: a ratio of at least 0.80).
A target whose rows did not run (``--only``, a library not installed) says so.

The STT server lifts two anti-abuse limits a one-address benchmark would hit:
the per-address session cap (closed sessions linger and count) and the cookie
round trip above 500 handshakes/s (QUIC servers here run without Retry too).
Every other setting of every transport is its default. When uvloop is installed
the asyncio STT and UDP rows are also run with uvloop on both sides. Every
phase has a timeout; a missing library prints "n/a (not installed)".
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _processes as processes  # noqa: E402
import _transport_peers as peers  # noqa: E402

#: (label, transport, uvloop)
ALL = [("STT", "stt", False), ("STT+uvloop", "stt", True), ("STT (trio)", "stt-trio", False),
       ("aioquic", "aioquic", False), ("qh3", "qh3", False), ("TCP+TLS1.3", "tcp-tls", False),
       ("UDP", "udp", False), ("UDP+uvloop", "udp", True), ("UDP (trio)", "udp-trio", False)]
#: the phases a bare UDP row runs: it has no streams, handshake or integrity check
UDP_PHASES = ("echo",)
#: the metrics a ratio line shows: (name, phase, result key)
METRICS = [("bulk", "bulk", "mb_s"), ("round trips", "echo", "rt_s"),
           ("connect", "connect", "connect_ms"), ("handshakes/s", "connect", "hs_s")]
#: issue 18's targets, each a ratio of two rows of the same run:
#: (what, phase, result key, row, over row, ">=" or "<=", goal). "trio within
#: 20 % of asyncio" in bulk and round trips is issue 6's criterion, kept.
TARGETS = [
    ("round trips vs TCP+TLS on asyncio", "echo", "rt_s", "STT", "TCP+TLS1.3", ">=", 1.0),
    ("round trips vs bare UDP ping-pong", "echo", "rt_s", "STT", "UDP", ">=", 0.75),
    ("handshakes/s vs qh3", "connect", "hs_s", "STT", "qh3", ">=", 3.0),
    ("bulk vs TCP+TLS on asyncio", "bulk", "mb_s", "STT", "TCP+TLS1.3", ">=", 1.0),
    ("connect time vs qh3", "connect", "connect_ms", "STT", "qh3", "<=", 0.5),
    ("trio bulk vs asyncio", "bulk", "mb_s", "STT (trio)", "STT", ">=", 0.8),
    ("trio round trips vs asyncio", "echo", "rt_s", "STT (trio)", "STT", ">=", 0.8),
]
#: each STT row and the bare UDP row on the same event loop
UDP_FLOOR = {"STT": "UDP", "STT+uvloop": "UDP+uvloop", "STT (trio)": "UDP (trio)"}


def _installed(kind: str, use_uvloop: bool) -> str | None:
    """None, or why the row cannot run."""
    if kind in ("aioquic", "qh3") and importlib.util.find_spec(kind) is None:
        return "n/a (not installed)"
    if peers.backend(kind) == "trio" and importlib.util.find_spec("trio") is None:
        return "n/a (trio not installed)"
    if use_uvloop and importlib.util.find_spec("uvloop") is None:
        return "n/a (uvloop not installed)"
    return None


def _run_pair(kind: str, use_uvloop: bool, certdir: str, args, opts: dict,
              profile: str | None) -> dict:
    """Start the server, run the client, stop the server; the client's results
    (or ``{"error": ...}``)."""
    me = os.path.abspath(__file__)
    common = ["--certdir", certdir] + (["--uvloop"] if use_uvloop else [])
    cpus = _cpus() if args.pin else []
    server_cmd = [sys.executable, me, "--serve", kind] + common
    if cpus:
        server_cmd += ["--cpu", str(cpus[0])]
    if opts.get("stt_config"):
        server_cmd += ["--stt-config", json.dumps(opts["stt_config"])]
    if profile:
        server_cmd += ["--profile-out", profile + ".server"]
    budget = 120 + 2.5 * opts["mib"] * opts["repeat"] + 3 * opts["seconds"]
    if profile:
        budget *= 4
    try:
        with processes.serving(server_cmd) as hello:
            client_cmd = [sys.executable, me, "--client", kind, "--port", str(hello["port"]),
                          "--peer-id", hello["id"], "--opts", json.dumps(opts)] + common
            if profile:
                client_cmd += ["--profile-out", profile + ".client"]
            if cpus:
                client_cmd += ["--cpu", str(cpus[1])]
            return processes.run_client(client_cmd, budget)
    except subprocess.TimeoutExpired:
        return {"error": f"client timed out after {budget:.0f} s"}
    except RuntimeError as exc:  # the server did not start, or the client failed
        return {"error": str(exc)}


def _cpus() -> list[int]:
    """Two CPUs to pin the server and the client to, or [] when there are fewer."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return []
    return cpus[-2:] if len(cpus) >= 2 else []


def _fmt(result: dict, phase: str, key: str, spec: str) -> str:
    if "error" in result:
        return "error"
    r = result.get(phase)
    if r is None:
        return "-"
    if "error" in r:
        return "error"
    return format(r[key], spec)


def _value(result: dict, phase: str, key: str) -> float | None:
    r = result.get(phase)
    if not r or "error" in r or "error" in result:
        return None
    return r[key]


def _stt_config(pairs: list[str]) -> dict:
    config = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            config[name] = json.loads(value)
        except ValueError:
            config[name] = value
    return config


def _print_profile(path: str, top: int, label: str) -> None:
    import pstats
    for side in ("client", "server"):
        file = f"{path}.{side}"
        if os.path.exists(file):
            print(f"\n--- cProfile, {label} {side}, by own time (cProfile slows it; "
                  "compare shares) ---")
            pstats.Stats(file).sort_stats("tottime").print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=100, help="bulk MiB (default 100)")
    parser.add_argument("--chunk", type=int, default=65536,
                        help="bytes per write / STT message in bulk (65536)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="bulk: best of this many transfers, each on a new connection (3)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="duration of the round-trip and handshake runs (3)")
    parser.add_argument("--connects", type=int, default=50,
                        help="sequential connects for the latency median (50)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="concurrent connects for handshakes/s (8)")
    parser.add_argument("--only", help="comma-separated rows: stt,stt-uvloop,stt-trio,aioquic,"
                                       "qh3,tcp-tls,udp,udp-uvloop,udp-trio")
    parser.add_argument("--no-uvloop", action="store_true",
                        help="skip the STT+uvloop and UDP+uvloop rows")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 8 MiB, 1 s runs, 10 connects")
    parser.add_argument("--profile", nargs="?", const="bulk", choices=["bulk", "echo",
                                                                         "connect"],
                        help="STT rows only (both adapters, or those --only names), one "
                             "phase (bulk unless named), under cProfile in both processes; "
                             "prints the functions with the most own time")
    parser.add_argument("--top", type=int, default=25, help="functions --profile shows (25)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--stt", action="append", default=[], metavar="NAME=VALUE",
                        help="an EndpointConfig setting for both STT nodes, e.g. "
                             "congestion_control=cubic or max_datagram_size=16384 "
                             "(VALUE is read as JSON when it parses, else as a string)")
    parser.add_argument("--stt-config", help=argparse.SUPPRESS)
    parser.add_argument("--pin", action="store_true",
                        help="pin the server and the client to two different CPUs (default: "
                             "the OS places them; on this 2-vCPU VM pinning made every "
                             "transport slower: cross-CPU wake-ups are expensive)")
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    # the peers' own options
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--peer-id", default="", help=argparse.SUPPRESS)
    parser.add_argument("--certdir", help=argparse.SUPPRESS)
    parser.add_argument("--uvloop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--opts", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.serve:
        return peers.main_server(args.serve, args.certdir, args.uvloop, args.profile_out,
                                 json.loads(args.stt_config) if args.stt_config else None)
    if args.client:
        return peers.main_client(args.client, args.port, args.peer_id, args.certdir,
                                 args.uvloop, json.loads(args.opts), args.profile_out)

    if args.quick:
        args.mib, args.seconds, args.connects, args.repeat = min(args.mib, 8), 1.0, 10, 1
    opts = {"mib": args.mib, "chunk": args.chunk, "repeat": args.repeat, "seconds": args.seconds,
            "connects": args.connects, "concurrency": args.concurrency,
            "phases": ["bulk", "echo", "connect"], "stt_config": _stt_config(args.stt)}
    rows = ALL
    if args.only:
        wanted = {w.strip() for w in args.only.split(",")}
        rows = [r for r in rows if (r[1] + ("-uvloop" if r[2] else "")) in wanted]
    if args.no_uvloop:
        rows = [r for r in rows if not r[2]]
    if args.profile:
        rows = ([r for r in rows if r[1] in peers.STT_BACKENDS and not r[2]]
                or [r for r in ALL if r[1] in peers.STT_BACKENDS and not r[2]])
        opts["phases"] = [args.profile]

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="stt-bench-") as certdir:
        peers.make_certificate(certdir)
        for label, kind, use_uvloop in rows:
            missing = _installed(kind, use_uvloop)
            if missing:
                results[label] = {"missing": missing}
                continue
            row_opts = opts
            if kind in peers.UDP_BACKENDS:
                row_opts = dict(opts, phases=[p for p in opts["phases"] if p in UDP_PHASES])
                if not row_opts["phases"]:
                    results[label] = {"missing": "n/a (round trips only)"}
                    continue
            print(f"running {label} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            profile_base = os.path.join(certdir, f"profile-{kind}") if args.profile else None
            results[label] = _run_pair(kind, use_uvloop, certdir, args, row_opts, profile_base)
            for phase, r in results[label].items():
                if isinstance(r, dict) and "error" in r:
                    print(f"  {label} {phase}: {r['error']}", file=sys.stderr)
            if "error" in results[label]:
                print(f"  {label}: {results[label]['error']}", file=sys.stderr)
            print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        if args.profile:
            for label, kind, _ in rows:
                _print_profile(os.path.join(certdir, f"profile-{kind}"), args.top, label)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"options": opts, "results": results}, f, indent=2)

    pinned = "pinned to CPUs " + "/".join(map(str, _cpus())) if _cpus() and args.pin \
        else "not pinned"
    print(f"\ntransport benchmark, loopback, server and client in separate processes "
          f"({pinned}), asyncio (the (trio) rows: trio); UDP rows: bare datagram ping-pong, "
          f"no protocol, round trips only; "
          f"bulk {args.mib:g} MiB in {args.chunk}-byte writes (SHA-256 verified, best of "
          f"{args.repeat}), "
          f"{peers.ECHO_SIZE}-byte round trips for {args.seconds:g} s, connect = median of "
          f"{args.connects}, handshakes/s with {args.concurrency} concurrent")
    header = (f"{'transport':<12}{'bulk MB/s':>10}{'CPU cli/srv':>12}{'round trips/s':>15}"
              f"{'connect ms':>12}{'p90 ms':>8}{'handshakes/s':>14}")
    print(header)
    for label, _, _ in rows:
        r = results[label]
        if "missing" in r:
            print(f"{label:<12}  {r['missing']}")
            continue
        cpu = _value(r, "bulk", "client_cpu")
        cpu = (f"{cpu:.0%}/{_value(r, 'bulk', 'server_cpu'):.0%}" if cpu is not None else "-")
        print(f"{label:<12}{_fmt(r, 'bulk', 'mb_s', '.1f'):>10}{cpu:>12}"
              f"{_fmt(r, 'echo', 'rt_s', ',.0f'):>15}"
              f"{_fmt(r, 'connect', 'connect_ms', '.2f'):>12}"
              f"{_fmt(r, 'connect', 'connect_p90_ms', '.2f'):>8}"
              f"{_fmt(r, 'connect', 'hs_s', ',.0f'):>14}")

    runs = [f"{label} {results[label]['bulk']['runs_mb_s']}" for label, _, _ in rows
            if "runs_mb_s" in (results[label].get("bulk") or {})]
    if runs:
        print("bulk MB/s of every run: " + "; ".join(runs))
    for label, kind, _ in rows:
        bulk = results[label].get("bulk") or {}
        if kind in peers.STT_BACKENDS and "stt_packets_sent" in bulk:
            pacing = bulk["stt_pacing_rate"]
            print(f"{label} bulk session: {bulk['stt_packets_sent']:,} packets sent, "
                  f"{bulk['stt_packets_lost']} lost, {bulk['stt_bytes_retransmitted']:,} bytes "
                  f"retransmitted, {bulk['stt_probe_timeouts']} PTOs, rtt min/smoothed "
                  f"{bulk['stt_rtt_min'] * 1e3:.2f}/{bulk['stt_rtt_smoothed'] * 1e3:.2f} ms, "
                  f"cwnd {bulk['stt_congestion_window']:,} B, pacing "
                  f"{'none' if pacing is None else f'{pacing / 1e6:.1f} MB/s'}")
    print()
    if not args.profile:
        _print_ratios(results, [label for label, _, _ in rows])
        _print_targets(results)
    return 0


def _ratio(results: dict, row: str, base: str, phase: str, key: str) -> float | str:
    """``row``'s figure over ``base``'s, or why there is none."""
    for label in (row, base):
        result = results.get(label)
        if result is None:
            return "not run"
        if "missing" in result:
            return f"{label} {result['missing']}"
    value, base_value = _value(results[row], phase, key), _value(results[base], phase, key)
    if value is None or base_value is None or base_value == 0:
        return "no figure"
    return value / base_value


def _print_ratios(results: dict, ran: list[str]) -> None:
    """Every STT row over qh3 and TCP+TLS, the trio row over the asyncio one,
    and every STT row's round trips over the bare UDP row on its loop."""
    print("ratios, a row's figure over another's (connect: STT's time over the other's, "
          "lower is better):")
    stt_rows = [label for label, kind, _ in ALL if kind in peers.STT_BACKENDS and label in ran]
    pairs = [(row, base) for base in ("qh3", "TCP+TLS1.3") if base in ran for row in stt_rows]
    if "STT (trio)" in ran and "STT" in ran:
        pairs.append(("STT (trio)", "STT"))
    for row, base in pairs:
        parts = []
        for name, phase, key in METRICS:
            ratio = _ratio(results, row, base, phase, key)
            parts.append(f"{name} {ratio:.2f}x" if isinstance(ratio, float) else f"{name} n/a")
        print(f"  {row}/{base}: " + "; ".join(parts))
    floors = [(row, UDP_FLOOR[row]) for row in stt_rows if UDP_FLOOR[row] in ran]
    if floors:
        parts = []
        for row, base in floors:
            ratio = _ratio(results, row, base, "echo", "rt_s")
            parts.append(f"{row}/{base} " + (f"{ratio:.2f}x" if isinstance(ratio, float)
                                               else "n/a"))
        print("  round trips over the bare UDP ping-pong on the same loop: " + "; ".join(parts))


def _print_targets(results: dict) -> None:
    """Issue 18's targets, each with the ratio this run measured and whether it
    is met (``n/a`` and why when a row it needs did not run)."""
    print("\nissue 18 targets, ratios of this run:")
    what_width = max(len(what) for what, *_ in TARGETS)
    rows_width = max(len(f"{row}/{base}") for _, _, _, row, base, _, _ in TARGETS)
    for what, phase, key, row, base, op, goal in TARGETS:
        ratio = _ratio(results, row, base, phase, key)
        if isinstance(ratio, float):
            met = ratio >= goal if op == ">=" else ratio <= goal
            measured, verdict = f"{ratio:.2f}x", "met" if met else "MISSED"
        else:
            measured, verdict = "n/a", ratio
        print(f"  {what:<{what_width}}  {row + '/' + base:<{rows_width}}  {measured:>6}  "
              f"target {op} {goal:.2f}  {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
