"""DHT members in a process of their own, driven line by line (a test helper).

Run as a program, it starts ``--count`` ``KademliaDHT`` members on one backend,
bound to ``--host`` on free ports, and joins them through ``--bootstrap
HOST:PORT/NODE_ID``; without it the first member is the network's first node and
the others join through it. It then prints one JSON line::

    {"members": [[node_id_hex, host, port], ...]}

and serves commands: one JSON object per line on stdin, one JSON answer per line
on stdout, in order. Every answer carries ``"ok": true``, or ``"ok": false`` and
an ``"error"`` (an exception, or the command outlasting ``--timeout``). Every
member of the process carries out each lookup command, so a test learns what
each single member can reach:

* ``{"op": "find", "ids": [hex, ...]}`` -> ``{"found": {member: {id: [host, port] | null}},
  "statistics": {member: {counter: n}}}`` (the counters of members that missed one)
* ``{"op": "put", "member": i, "value": hex}`` -> ``{"key": hex}`` (member ``i`` stores it)
* ``{"op": "get", "keys": [hex, ...]}`` -> ``{"values": {member: {key: hex | null}}}``
* ``{"op": "provide", "member": i, "key": hex}`` -> ``{"stored": n}``
* ``{"op": "providers", "keys": [hex, ...]}`` -> ``{"providers": {member: {key: [hex, ...]}}}``
* ``{"op": "quit"}`` -> ``{}``; the members stop and the program exits (so it does at
  the end of stdin: a test that dies takes its members with it).

Every member also has a pub/sub manager: the commands ``subscribe``, ``publish``,
``received`` and ``pubsub_statistics`` are described in ``pubsub_members.py``.

Imported, it offers :class:`MemberProcess`, the test side of that conversation,
and :func:`member_argv` to build the command line.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["MemberProcess", "SCRIPT", "ask_all", "get_failures", "lookup_failures",
           "kill_and_recheck", "member_argv", "providers_seen", "start_on_hosts",
           "start_on_loopback"]

SCRIPT = Path(__file__).resolve()
#: lookups one member keeps going at once during ``find``, ``get`` and
#: ``providers`` (the engine allows more; this keeps a busy machine responsive)
CONCURRENT_LOOKUPS = 8


def member_argv(*, backend: str, host: str, count: int, seed: str,
                bootstrap: str | None = None, timeout: float = 20.0) -> list[str]:
    """The command line that runs ``count`` members (``bootstrap``: ``HOST:PORT/NODE_ID``)."""
    argv = [sys.executable, str(SCRIPT), "--backend", backend, "--host", host,
            "--count", str(count), "--seed", seed, "--timeout", str(timeout)]
    if bootstrap is not None:
        argv += ["--bootstrap", bootstrap]
    return argv


class MemberProcess:
    """The test's end of one member program: requests out, answers back, bounded waits.

    A thread reads the program's stdout into a queue, so :meth:`receive` can give
    up after ``timeout`` seconds instead of blocking on a silent process. Commands
    to several processes are sent first and answered later, so they run at once.

    Args:
        process: the program, started with ``stdin`` and ``stdout`` as text pipes.
        name: how failures name it.
        log: the file its stderr goes to; its tail is quoted when it fails.
    """

    def __init__(self, process: subprocess.Popen, name: str, log: Path | None = None) -> None:
        self.process = process
        self.name = name
        self.log = log
        #: ``[(node_id, (host, port)), ...]`` once :meth:`wait_ready` returned
        self.members: list[tuple[bytes, tuple[str, int]]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"{name} stdout", daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.process.stdout:
                self._lines.put(line)
        except (OSError, ValueError):  # the pipe was closed under us at teardown
            pass
        self._lines.put(None)

    def _failure(self, what: str) -> AssertionError:
        tail = ""
        if self.log is not None and self.log.exists():
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        return AssertionError(f"{self.name} (exit status {self.process.poll()}): {what}\n"
                              f"--- its stderr ---\n{tail}")

    def receive(self, timeout: float) -> dict[str, Any]:
        """The next answer; fails on an error answer, on exit, or after ``timeout`` s."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise self._failure(f"no answer within {timeout} s") from None
        if line is None:
            raise self._failure("exited before answering")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise self._failure(f"answered with an error: {answer.get('error')}")
        return answer

    def send(self, command: dict[str, Any]) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def request(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(command)
        return self.receive(timeout)

    def wait_ready(self, timeout: float) -> list[tuple[bytes, tuple[str, int]]]:
        """Wait for the ``members`` line; returns and keeps the members."""
        answer = self.receive(timeout)
        self.members = [(bytes.fromhex(node_id), (host, port))
                        for node_id, host, port in answer["members"]]
        return self.members

    @property
    def bootstrap(self) -> str:
        """``HOST:PORT/NODE_ID`` of this process's first member."""
        node_id, (host, port) = self.members[0]
        return f"{host}:{port}/{node_id.hex()}"

    def kill(self) -> None:
        """SIGKILL the program (no goodbye to its peers) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:  # a write the dead reader never took
                    pass


def start_on_loopback(count: int, processes: list[MemberProcess], *, per_process: int,
                      backends: Sequence[str], seed: str, timeout: float, step: float,
                      logs: Path) -> None:
    """``count`` member programs of ``per_process`` members each on 127.0.0.1,
    backends taken in turn, all joining through the first member of the first;
    appended to ``processes`` as they start (so a caller's ``finally`` kills them
    all) and returned once every one is ready."""
    def start(index: int, bootstrap: str | None) -> MemberProcess:
        backend = backends[index % len(backends)]
        log = logs / f"process-{index}.log"
        with open(log, "w") as stderr:
            process = subprocess.Popen(
                member_argv(backend=backend, host="127.0.0.1", count=per_process, seed=seed,
                            bootstrap=bootstrap, timeout=timeout),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
        return MemberProcess(process, f"process {index} ({backend})", log)

    processes.append(start(0, None))
    processes[0].wait_ready(step)
    for index in range(1, count):
        processes.append(start(index, processes[0].bootstrap))
    for process in processes[1:]:
        process.wait_ready(step)


def start_on_hosts(hosts: Sequence[Any], processes: list[MemberProcess], *,
                   backends: Sequence[str], seed: str, timeout: float, step: float,
                   logs: Path) -> None:
    """One member program per network-namespace host (``tests/helpers/netns.py``),
    backends taken in turn, all joining through the first; appended to
    ``processes`` as they start (so a caller's ``finally`` kills them all) and
    returned once every one is ready."""
    for host in hosts:
        backend = backends[host.index % len(backends)]
        log = logs / f"host-{host.index}.log"
        bootstrap = processes[0].bootstrap if processes else None
        with open(log, "w") as stderr:
            process = host.popen(
                member_argv(backend=backend, host=host.address, count=1, seed=seed,
                            bootstrap=bootstrap, timeout=timeout),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
        processes.append(MemberProcess(process, f"host {host.index} {host.address} "
                                                f"({backend})", log))
        if host.index == 0:  # the others need its bootstrap string
            processes[0].wait_ready(step)
    for process in processes[1:]:
        process.wait_ready(step)


def ask_all(processes: Sequence[MemberProcess], command: dict[str, Any],
            timeout: float) -> list[dict[str, Any]]:
    """Send ``command`` to every process, then collect every answer (all run at once)."""
    for process in processes:
        process.send(command)
    return [process.receive(timeout) for process in processes]


def lookup_failures(processes: Sequence[MemberProcess],
                    members: dict[bytes, tuple[str, int]], timeout: float) -> list[str]:
    """Every member of ``processes`` looks up every id of ``members``; returns one
    line per lookup that found nothing or another address than the member's own."""
    answers = ask_all(processes, {"op": "find", "ids": [m.hex() for m in members]}, timeout)
    failures, finders = [], 0
    for process, answer in zip(processes, answers):
        for finder, found in answer["found"].items():
            finders += 1
            for target, address in found.items():
                expected = members[bytes.fromhex(target)]
                if address is None or tuple(address) != expected:
                    failures.append(f"{process.name}: {finder[:12]} looked up {target[:12]} "
                                    f"({expected[0]}:{expected[1]}) and got {address}")
        for finder, statistics in answer.get("statistics", {}).items():
            failures.append(f"{process.name}: {finder[:12]}'s counters: {statistics}")
    expected_finders = sum(len(process.members) for process in processes)
    if finders != expected_finders:
        failures.append(f"{finders} members answered, not {expected_finders}")
    return failures


def get_failures(processes: Sequence[MemberProcess], values: dict[bytes, bytes],
                 timeout: float) -> list[str]:
    """Every member of ``processes`` gets every key of ``values`` (key -> value);
    returns one line per get that did not return the value."""
    answers = ask_all(processes, {"op": "get", "keys": [k.hex() for k in values]}, timeout)
    failures = []
    for process, answer in zip(processes, answers):
        if len(answer["values"]) != len(process.members):
            failures.append(f"{process.name}: {len(answer['values'])} members answered, "
                            f"not {len(process.members)}")
        for getter, got in answer["values"].items():
            for key, value in got.items():
                if value is None or bytes.fromhex(value) != values[bytes.fromhex(key)]:
                    failures.append(f"{process.name}: {getter[:12]} got "
                                    f"{'nothing' if value is None else 'another value'} "
                                    f"under {key[:12]}")
    return failures


def providers_seen(processes: Sequence[MemberProcess], keys: Sequence[bytes],
                   timeout: float) -> dict[str, dict[bytes, set[bytes]]]:
    """What every member of ``processes`` finds as providers of each key:
    ``{member_hex: {key: {provider_id, ...}}}``."""
    answers = ask_all(processes, {"op": "providers", "keys": [k.hex() for k in keys]}, timeout)
    seen = {}
    for answer in answers:
        for finder, found in answer["providers"].items():
            seen[finder] = {bytes.fromhex(key): {bytes.fromhex(p) for p in providers}
                            for key, providers in found.items()}
    return seen


def kill_and_recheck(processes: Sequence[MemberProcess], killed: Sequence[int],
                     values: dict[bytes, bytes], key: bytes, providers: set[bytes],
                     timeout: float) -> list[str]:
    """SIGKILL ``processes[i]`` for each ``i`` in ``killed``, then check the rest.

    Every surviving member must still find every other survivor and get every
    value of ``values``, and must find every living provider of ``key`` among
    ``providers``; a record outlives a provider killed without a word, so a dead
    one may still be listed. Returns one line per failure.
    """
    for index in killed:
        processes[index].kill()
    survivors = [p for i, p in enumerate(processes) if i not in killed]
    alive = {node_id: address for p in survivors for node_id, address in p.members}
    failures = lookup_failures(survivors, alive, timeout)
    failures += get_failures(survivors, values, timeout)
    living = providers & alive.keys()
    for finder, found in providers_seen(survivors, [key], timeout).items():
        if not living <= found[key] <= providers:
            failures.append(f"{finder[:12]} found {len(found[key] & living)} of "
                            f"{len(living)} living providers, and "
                            f"{len(found[key] - providers)} that never provided")
    return failures


# -- the program ---------------------------------------------------------------------


async def _each(dhts: list[Any], items: list[Any], one: Any) -> dict[str, dict[str, Any]]:
    """``one(dht, item)`` for every member and item, at most ``CONCURRENT_LOOKUPS`` per member."""
    import anyio

    results: dict[str, dict[str, Any]] = {dht.node_id.hex(): {} for dht in dhts}

    async def run(dht: Any, item: Any, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            results[dht.node_id.hex()][item] = await one(dht, item)

    async with anyio.create_task_group() as tasks:
        for dht in dhts:
            limiter = anyio.CapacityLimiter(CONCURRENT_LOOKUPS)
            for item in items:
                tasks.start_soon(run, dht, item, limiter)
    return results


async def _find(dht: Any, node_id: str) -> list[Any] | None:
    found = await dht.find_node(bytes.fromhex(node_id))
    return None if found is None else [found.address[0], found.address[1]]


async def _get(dht: Any, key: str) -> str | None:
    value = await dht.get(bytes.fromhex(key))
    return None if value is None else value.hex()


async def _providers(dht: Any, key: str) -> list[str]:
    return [peer.node_id_hex for peer in await dht.find_providers(bytes.fromhex(key))]


async def _serve(dhts: list[Any], pubsub: Any, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    if op in pubsub.OPS:
        return await pubsub.serve(command)
    if op == "find":
        found = await _each(dhts, command["ids"], _find)
        # A member that missed a lookup reports its DHT counters, so a rare
        # failure on a loaded machine says why (timeouts, rate limits, ...).
        missed = {dht.node_id.hex(): {k: v for k, v in dht.statistics().items() if v}
                  for dht in dhts if None in found[dht.node_id.hex()].values()}
        return {"found": found, "statistics": missed}
    if op == "put":
        key = await dhts[command["member"]].put(bytes.fromhex(command["value"]))
        return {"key": key.hex()}
    if op == "get":
        return {"values": await _each(dhts, command["keys"], _get)}
    if op == "provide":
        return {"stored": await dhts[command["member"]].provide(bytes.fromhex(command["key"]))}
    if op == "providers":
        return {"providers": await _each(dhts, command["keys"], _providers)}
    raise ValueError(f"unknown op {op!r}")


def _answer(answer: dict[str, Any]) -> None:
    print(json.dumps(answer), flush=True)


async def _main(args: argparse.Namespace) -> None:
    import anyio

    from stt_io.cli.dht import bootstrap_entry
    from stt_proto.identity import Identity

    if __package__:
        from .pubsub_members import PubSubMembers
    else:  # run as a program: its own folder is on the path, the project's root need not be
        from pubsub_members import PubSubMembers

    if args.backend == "trio":
        from stt_io.trio import KademliaDHT
    else:
        from stt_io.asyncio import KademliaDHT
    seed = args.seed.encode()
    dhts = [KademliaDHT(identity=Identity.generate(), shared_seed=seed, host=args.host, port=0)
            for _ in range(args.count)]
    started = []
    try:
        with anyio.fail_after(args.timeout):
            for dht in dhts:
                await dht.start()
                started.append(dht)
            if args.bootstrap is not None:
                seeds, joining = [bootstrap_entry(args.bootstrap)], dhts
            else:  # the first member founds the network
                seeds, joining = [(dhts[0].node.address, dhts[0].node_id)], dhts[1:]
            for dht in joining:
                await dht.bootstrap(seeds, timeout=args.timeout)
        _answer({"ok": True, "members": [[d.node_id.hex(), *d.node.address[:2]] for d in dhts]})
        # Pull subscriptions are read by tasks that outlive the command that made them.
        async with anyio.create_task_group() as tasks:
            pubsub = PubSubMembers(dhts, args.backend, tasks)
            try:
                await _commands(dhts, pubsub, args.timeout)
            finally:
                tasks.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    await pubsub.stop()
    finally:
        for dht in reversed(started):
            await dht.stop()


async def _commands(dhts: list[Any], pubsub: Any, timeout: float) -> None:
    """Answer commands from stdin until ``quit`` or its end."""
    import anyio

    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            return
        command = json.loads(line)
        if command.get("op") == "quit":
            _answer({"ok": True})
            return
        try:
            with anyio.fail_after(timeout):
                answer = await _serve(dhts, pubsub, command)
        except Exception as exc:  # noqa: BLE001 - the test reads it as a failure
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        else:
            answer["ok"] = True
        _answer(answer)


def main(argv: Sequence[str] | None = None) -> None:
    import anyio

    parser = argparse.ArgumentParser(description="DHT members serving JSON commands")
    parser.add_argument("--backend", choices=("asyncio", "trio"), required=True)
    parser.add_argument("--host", required=True, help="address every member binds")
    parser.add_argument("--count", type=int, required=True, help="members in this process")
    parser.add_argument("--seed", required=True, help="the network's seed (text)")
    parser.add_argument("--bootstrap", metavar="HOST:PORT/NODE_ID",
                        help="the member to join through (default: found a network)")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="longest joining, and longest single command, in seconds")
    args = parser.parse_args(argv)
    anyio.run(_main, args, backend=args.backend)


if __name__ == "__main__":
    main()
