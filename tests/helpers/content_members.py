"""A DHT member with content distribution in a process of its own (a test helper).

Run as a program, it starts one ``KademliaDHT`` member on one backend, bound to
``--host`` on a free port, joins through ``--bootstrap HOST:PORT/NODE_ID`` (or
founds the network without it), and attaches a ``ContentDistribution`` to it,
on the directory store ``--store`` (memory without it) with the
``ContentConfig`` fields of ``--config`` (JSON). Then it speaks the line
protocol of ``tests/helpers/dht_members.py`` (the members line, then one JSON
answer per JSON command; its ``find``, ``providers`` ... commands work too) with
these commands of its own:

* ``{"op": "publish_file", "path": p}`` -> ``{"content_id": hex, "seconds": s}``:
  the file is hashed streaming and served in place.
* ``{"op": "publish_bytes", "size": n, "seed": s}`` -> ``{"content_id": hex}``: the
  manual's pattern as written (``ContentDistribution(dht=dht, node_id=my_node_id)``,
  ``publish_content``, ``retrieve_content`` of its own content, compared) on
  :func:`pattern_bytes` ``(n, s)``. That ``ContentDistribution`` (the manual's:
  a memory store, default settings) is the member's from then on, so this must
  be its first content command; any other makes one of ``--store`` and ``--config``.
* ``{"op": "retrieve", "content_id": hex}`` -> ``{"length": n, "blake2b": hex,
  "seconds": s}``: ``retrieve_content``; the answer carries a digest of what came.
* ``{"op": "retrieve_to_file", "content_id": hex, "path": p, "provide": bool,
  "report_at": fraction | null}`` -> ``{"length": n, "seconds": s, "providers":
  most in use at once, "statistics": {...}, "memory": {...}}``. With ``report_at``,
  an extra answer ``{"progress": done, "total": t, "providers": n}`` comes first,
  as soon as the progress callback reports at least that fraction done (a test
  kills the program then: see :meth:`ContentProcess.wait_progress`).
* ``{"op": "statistics"}`` -> ``{"statistics": cd.statistics(), "memory": {...}}``.

``memory`` is ``{"vm_hwm": kB, "vm_rss": kB}`` from ``/proc/self/status``: the
peak and current resident memory of the program.

Imported, it offers the test's side: :func:`content_argv`, :func:`start_content_members`
(starting programs on loopback or on the hosts of a ``NetnsBed``) and
:func:`tree_of_file` and :func:`content_id_of_file`, computed from a file on disk
independently of any store (``TreeBuilder`` over the file, a MiB at a time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stt_proto.content.tree import CHUNK_SIZE, HashTree, TreeBuilder

if __package__:
    from .dht_members import MemberProcess
else:  # run as a program: its own folder is on the path
    from dht_members import MemberProcess

__all__ = ["OPS", "ContentProcess", "Member", "content_argv", "content_id_of_file",
           "pattern_bytes", "start_content_members", "tree_of_file", "write_random_file"]

SCRIPT = Path(__file__).resolve()
#: the commands this program adds to those of ``dht_members.py``
OPS = frozenset({"publish_file", "publish_bytes", "retrieve", "retrieve_to_file",
                 "statistics"})
#: how much of a file the test side reads (and hashes) at a time
READ_SIZE = 1 << 20


def pattern_bytes(size: int, seed: int) -> bytes:
    """``size`` bytes of a seeded pseudo-random pattern: what ``publish_bytes`` publishes,
    so a test knows the content without sending it down a pipe."""
    return random.Random(seed).randbytes(size)


def write_random_file(path: Path, size: int, block: int = 64 << 20) -> None:
    """Write ``size`` bytes to ``path`` (no sparse holes), ``block`` at a time: one
    block of random bytes, repeated, with each 256 KiB chunk's first eight bytes
    replaced by its index, so that no two chunks are alike (a chunk written at
    the wrong place changes the content id) without drawing a GiB of randomness."""
    base = os.urandom(min(block, size))
    with open(path, "wb") as f:
        written = 0
        while written < size:
            piece = bytearray(base[:min(block, size - written)])
            for offset in range(0, len(piece), CHUNK_SIZE):
                stamp = ((written + offset) // CHUNK_SIZE).to_bytes(8, "big")
                end = min(offset + len(stamp), len(piece))
                piece[offset:end] = stamp[:end - offset]
            f.write(piece)
            written += len(piece)


def tree_of_file(path: Path) -> HashTree:
    """The hash tree of the file at ``path``, hashed streaming by ``TreeBuilder``
    (independently of any store)."""
    builder = TreeBuilder()
    with open(path, "rb") as f:
        while block := f.read(READ_SIZE):
            builder.update(block)
    return builder.finish()


def content_id_of_file(path: Path) -> bytes:
    """The content id of the file at ``path`` (see :func:`tree_of_file`)."""
    return tree_of_file(path).content_id


def content_argv(*, backend: str, host: str, seed: str, bootstrap: str | None = None,
                 store: Path | None = None, config: dict[str, Any] | None = None,
                 timeout: float = 20.0) -> list[str]:
    """The command line of one content member."""
    argv = [sys.executable, str(SCRIPT), "--backend", backend, "--host", host,
            "--seed", seed, "--timeout", str(timeout)]
    if bootstrap is not None:
        argv += ["--bootstrap", bootstrap]
    if store is not None:
        argv += ["--store", str(store)]
    if config:
        argv += ["--config", json.dumps(config)]
    return argv


class ContentProcess(MemberProcess):
    """The test's end of one content member program."""

    @property
    def node_id(self) -> bytes:
        return self.members[0][0]

    def wait_progress(self, timeout: float) -> dict[str, Any]:
        """The ``progress`` answer of a ``retrieve_to_file`` with ``report_at``."""
        answer = self.receive(timeout)
        if "progress" not in answer:
            raise AssertionError(f"{self.name}: expected a progress report, got {answer}")
        return answer


class Member:
    """How to start one content member: ``popen(argv, **kwargs)`` (``subprocess.Popen``
    on loopback, a ``NetnsHost``'s ``popen`` on a host), the address it binds,
    and the rest of :func:`content_argv`."""

    def __init__(self, name: str, *, backend: str, host: str = "127.0.0.1",
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen,
                 store: Path | None = None, config: dict[str, Any] | None = None,
                 timeout: float = 20.0) -> None:
        self.name = name
        self.backend = backend
        self.host = host
        self.popen = popen
        self.store = store
        self.config = config
        self.timeout = timeout


def start_content_members(members: Sequence[Member], processes: list[ContentProcess], *,
                          seed: str, step: float, logs: Path,
                          bootstrap: str | None = None) -> list[ContentProcess]:
    """Start a program for each of ``members``, all joining through ``bootstrap``
    or, without it, through the first of them; each is appended to ``processes``
    as it starts (so a caller's ``finally`` kills them all). Returns the new
    ones, once every one is ready."""
    started: list[ContentProcess] = []
    for member in members:
        log = logs / f"{member.name}.log"
        through = bootstrap if bootstrap is not None else \
            (started[0].bootstrap if started else None)
        with open(log, "a") as stderr:
            process = member.popen(
                content_argv(backend=member.backend, host=member.host, seed=seed,
                             bootstrap=through, store=member.store, config=member.config,
                             timeout=member.timeout),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
        child = ContentProcess(process, f"{member.name} ({member.backend})", log)
        processes.append(child)
        started.append(child)
        if through is None:  # the others need its bootstrap string
            child.wait_ready(step)
    for child in started:
        if not child.members:
            child.wait_ready(step)
    return started


# -- the program ---------------------------------------------------------------------


def _memory() -> dict[str, int]:
    """Peak and current resident memory of this process, in kB."""
    figures = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                figures["vm_hwm" if name == "VmHWM" else "vm_rss"] = int(value.split()[0])
    return figures


class ContentMembers:
    """The content side of the program; ``dht_members``' command loop hands it
    the commands of :data:`OPS`."""

    OPS = OPS

    def __init__(self, stt: Any, dht: Any, store: str | None, config: dict[str, Any],
                 answer: Callable[[dict[str, Any]], None]) -> None:
        self._stt = stt
        self._dht = dht
        self._answer = answer
        self._store = store
        self._config = config
        #: the member's ContentDistribution, made by the first command that needs one
        #: (``publish_bytes`` makes it as the manual does)
        self.cd: Any = None

    async def content(self) -> Any:
        """The member's ContentDistribution, started (attached to the node)."""
        if self.cd is None:
            self.cd = self._stt.ContentDistribution(dht=self._dht, store=self._store,
                                                    **self._config)
            await self.cd.start()
        return self.cd

    async def serve(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        began = time.monotonic()
        if op == "publish_bytes":
            return {"content_id": (await self._manual(command["size"],
                                                      command["seed"])).hex()}
        cd = await self.content()
        if op == "publish_file":
            content_id = await cd.publish_content(command["path"])
            return {"content_id": content_id.hex(), "seconds": time.monotonic() - began}
        if op == "retrieve":
            data = await cd.retrieve_content(bytes.fromhex(command["content_id"]))
            return {"length": len(data), "seconds": time.monotonic() - began,
                    "blake2b": hashlib.blake2b(data, digest_size=32).hexdigest()}
        if op == "retrieve_to_file":
            return await self._retrieve_to_file(cd, command, began)
        if op == "statistics":
            return {"statistics": cd.statistics(), "memory": _memory()}
        raise ValueError(f"unknown op {op!r}")

    async def _manual(self, size: int, seed: int) -> bytes:
        if self.cd is not None:
            raise ValueError("publish_bytes makes the member's ContentDistribution: it must "
                             "be the member's first content command")
        dht, my_node_id = self._dht, self._dht.node_id
        my_data = pattern_bytes(size, seed)
        # The original manual's lines, as written there.
        content_dist = self.cd = self._stt.ContentDistribution(dht=dht, node_id=my_node_id)
        content_id = await content_dist.publish_content(my_data)
        retrieved_data = await content_dist.retrieve_content(content_id)
        assert retrieved_data == my_data
        return content_id

    async def _retrieve_to_file(self, cd: Any, command: dict[str, Any],
                                began: float) -> dict[str, Any]:
        report_at = command.get("report_at")
        most = [0]
        reported = [report_at is None]

        def progress(done: int, total: int, providers: int) -> None:
            most[0] = max(most[0], providers)
            if not reported[0] and total and done >= report_at * total:
                reported[0] = True
                self._answer({"ok": True, "progress": done, "total": total,
                              "providers": providers})

        length = await cd.retrieve_to_file(
            bytes.fromhex(command["content_id"]), command["path"], progress=progress,
            provide=command.get("provide", True))
        return {"length": length, "seconds": time.monotonic() - began, "providers": most[0],
                "statistics": cd.statistics(), "memory": _memory()}

    async def stop(self) -> None:
        if self.cd is not None:
            await self.cd.stop()


async def _main(args: argparse.Namespace) -> None:
    import anyio

    from stt_io.cli.dht import bootstrap_entry
    from stt_proto.identity import Identity

    if __package__:
        from .dht_members import _answer, _commands
    else:
        from dht_members import _answer, _commands

    if args.backend == "trio":
        import stt_io.trio as stt
    else:
        import stt_io.asyncio as stt
    dht = stt.KademliaDHT(identity=Identity.generate(), shared_seed=args.seed.encode(),
                          host=args.host, port=0)
    await dht.start()
    content = None
    try:
        with anyio.fail_after(args.timeout):
            if args.bootstrap is not None:
                await dht.bootstrap([bootstrap_entry(args.bootstrap)], timeout=args.timeout)
        content = ContentMembers(stt, dht, args.store, json.loads(args.config), _answer)
        if args.store is not None:  # a store's complete content is provided from the start
            await content.content()
        _answer({"ok": True, "members": [[dht.node_id.hex(), *dht.node.address[:2]]]})
        await _commands([dht], content, args.timeout)
    finally:
        if content is not None:
            with anyio.CancelScope(shield=True):
                await content.stop()
        await dht.stop()


def main(argv: Sequence[str] | None = None) -> None:
    import anyio

    parser = argparse.ArgumentParser(description="a content member serving JSON commands")
    parser.add_argument("--backend", choices=("asyncio", "trio"), required=True)
    parser.add_argument("--host", required=True, help="the address the member binds")
    parser.add_argument("--seed", required=True, help="the network's seed (text)")
    parser.add_argument("--bootstrap", metavar="HOST:PORT/NODE_ID",
                        help="the member to join through (default: found a network)")
    parser.add_argument("--store", help="a DirectoryStore directory (default: memory)")
    parser.add_argument("--config", default="{}", help="ContentConfig fields, as JSON")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="longest joining, and longest single command, in seconds")
    args = parser.parse_args(argv)
    anyio.run(_main, args, backend=args.backend)


if __name__ == "__main__":
    main()
