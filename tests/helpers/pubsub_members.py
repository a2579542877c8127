"""The pub/sub commands of the member program ``tests/helpers/dht_members.py``.

Every member of a member program has a ``PubSubManager`` (of the program's
backend) with short timings, so a test over real UDP waits tenths of seconds,
not the defaults' seconds. The program hands these commands to
:class:`PubSubMembers`:

* ``{"op": "subscribe", "topic": t, "members": [[i, mode], ...]}`` -> ``{"mesh": {member: n}}``:
  the members subscribe at once, each with a plain handler (``mode`` ``"plain"``),
  an ``async def`` handler (``"async"``) or a pull subscription read by a task
  of its own (``"pull"``); it answers when every ``subscribe`` returned (the
  mesh formed or the join timeout passed), with each one's mesh peers then.
* ``{"op": "publish", "member": i, "topic": t, "count": n, "prefix": p, "interval": s}``
  -> ``{"publisher": hex, "published": n}``: member ``i`` publishes ``p0``, ``p1``, ...
  ``p{n-1}`` (UTF-8), waiting ``s`` seconds between two.
* ``{"op": "received", "topic": t, "expect": {publisher: n}, "wait": s}``
  -> ``{"received": {member: {"mode": m, "messages": [[publisher, seq, data], ...],
  "gaps": [[publisher, count, reason], ...]}}}``: what each subscribed member got,
  in the order it got it, once every one of them has heard of ``n`` messages of
  each listed publisher (delivered or reported lost) or after ``s`` seconds.
  Handlers are not told ``seq`` or a gap's reason: those are ``null`` for them.
* ``{"op": "pubsub_statistics"}`` -> ``{"statistics": {member: {...}}}``.

Imported, it offers the test's side: :func:`publish_through_a_kill`, the
scenario of the multi-process tests, made of :func:`publish_all` (or
:func:`start_publishing` and :func:`messages`), and :func:`delivery_check`
(:func:`received_by`, then :func:`delivery_failures`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["OPS", "PUBSUB_TIMINGS", "PubSubMembers", "delivery_check", "delivery_failures",
           "messages", "publish_all", "publish_through_a_kill", "received_by",
           "start_publishing"]

#: the commands :class:`PubSubMembers` serves
OPS = frozenset({"subscribe", "publish", "received", "pubsub_statistics"})
#: every member's ``PubSubManager`` settings: a heartbeat every 0.3 s, lookups for
#: more subscribers after 1 s at most; a missing message is asked for again after
#: 0.5 s, and reported lost only after 10 s, longer than any test waits, so a gap
#: a test sees is a message the repair truly gave up on
PUBSUB_TIMINGS = dict(heartbeat=0.3, want_timeout=0.5, repair_window=10.0,
                      discovery_interval=1.0, join_timeout=5.0)
#: how often ``received`` looks whether everything expected is in
POLL = 0.05


class _Log:
    """What one member got on one topic, in arrival order."""

    __slots__ = ("mode", "messages", "gaps")

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.messages: list[list[Any]] = []   # [publisher hex, seq | None, data]
        self.gaps: list[list[Any]] = []       # [publisher hex, count, reason | None]

    def message(self, publisher: Any, seq: int | None, data: bytes) -> None:
        self.messages.append([publisher.node_id.hex(), seq,
                              data.decode("utf-8", "backslashreplace")])

    def gap(self, publisher: Any, count: int, reason: str | None) -> None:
        self.gaps.append([publisher.node_id.hex(), count, reason])

    def heard(self, publisher: str) -> int:
        """Messages of ``publisher`` delivered or reported lost."""
        return sum(1 for m in self.messages if m[0] == publisher) + \
            sum(g[1] for g in self.gaps if g[0] == publisher)

    def as_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "messages": self.messages, "gaps": self.gaps}


class PubSubMembers:
    """The pub/sub side of a member program: one manager per DHT member.

    Args:
        dhts: the program's started members.
        backend: ``"asyncio"`` or ``"trio"``.
        tasks: a task group that outlives the commands (pull readers run in it).
    """

    OPS = OPS

    def __init__(self, dhts: Sequence[Any], backend: str, tasks: Any) -> None:
        if backend == "trio":
            import stt_io.trio as stt
        else:
            import stt_io.asyncio as stt
        self._stt = stt
        self._dhts = list(dhts)
        self._managers = [stt.PubSubManager(dht=dht, **PUBSUB_TIMINGS) for dht in dhts]
        self._tasks = tasks
        self._logs: dict[str, dict[int, _Log]] = {}   # topic -> member index -> log

    async def serve(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        if op == "subscribe":
            return await self._subscribe(command["topic"], command["members"])
        if op == "publish":
            return await self._publish(command["member"], command["topic"], command["count"],
                                       command["prefix"], command.get("interval", 0.0))
        if op == "received":
            return await self._received(command["topic"], command.get("expect", {}),
                                        command.get("wait", 0.0))
        if op == "pubsub_statistics":
            return {"statistics": {dht.node_id.hex(): manager.statistics()
                                   for dht, manager in zip(self._dhts, self._managers)}}
        raise ValueError(f"unknown op {op!r}")

    async def stop(self) -> None:
        """Every member leaves its topics (before the DHT members stop)."""
        for manager in self._managers:
            await manager.stop()

    async def _subscribe(self, topic: str, members: list[list[Any]]) -> dict[str, Any]:
        import anyio

        logs = self._logs.setdefault(topic, {})
        for index, mode in members:
            if index in logs:
                raise ValueError(f"member {index} already subscribes to {topic!r}")
            if mode not in ("plain", "async", "pull"):
                raise ValueError(f"unknown mode {mode!r}")
            logs[index] = _Log(mode)
        async with anyio.create_task_group() as joining:
            for index, mode in members:
                joining.start_soon(self._join, topic, index, mode, logs[index])
        return {"mesh": {self._dhts[i].node_id.hex(): len(self._managers[i].peers(topic))
                         for i, _ in members}}

    async def _join(self, topic: str, index: int, mode: str, log: _Log) -> None:
        manager = self._managers[index]

        def on_gap(topic: str, publisher: Any, count: int) -> None:
            log.gap(publisher, count, None)

        if mode == "plain":
            def handler(topic: str, data: bytes, publisher: Any) -> None:
                log.message(publisher, None, data)

            await manager.subscribe(topic, handler, on_gap=on_gap)
        elif mode == "async":
            async def async_handler(topic: str, data: bytes, publisher: Any) -> None:
                log.message(publisher, None, data)

            await manager.subscribe(topic, async_handler, on_gap=on_gap)
        else:
            await self._tasks.start(self._read, manager, topic, log)

    async def _read(self, manager: Any, topic: str, log: _Log, *, task_status: Any) -> None:
        from stt_io.errors import NodeStoppedError

        async with manager.subscription(topic) as sub:
            task_status.started()
            try:
                async for item in sub:
                    if isinstance(item, self._stt.TopicGap):
                        log.gap(item.publisher, item.count, item.reason)
                    else:
                        log.message(item.publisher, item.seq, item.data)
            except NodeStoppedError:  # the program is stopping; what came is logged
                return

    async def _publish(self, index: int, topic: str, count: int, prefix: str,
                       interval: float) -> dict[str, Any]:
        import anyio

        manager = self._managers[index]
        for n in range(count):
            await manager.publish(topic, f"{prefix}{n}".encode())
            if interval:
                await anyio.sleep(interval)
        return {"publisher": self._dhts[index].node_id.hex(), "published": count}

    async def _received(self, topic: str, expect: dict[str, int],
                        wait: float) -> dict[str, Any]:
        import anyio

        logs = {self._dhts[i].node_id.hex(): log for i, log in self._logs.get(topic, {}).items()}
        with anyio.move_on_after(wait):
            while not all(log.heard(publisher) >= count for member, log in logs.items()
                          for publisher, count in expect.items() if publisher != member):
                await anyio.sleep(POLL)
        return {"received": {member: log.as_json() for member, log in logs.items()}}


# -- the test's side ---------------------------------------------------------------------


def messages(prefix: str, count: int) -> list[str]:
    """What ``publish`` with ``prefix`` and ``count`` sends, in order."""
    return [f"{prefix}{n}" for n in range(count)]


def start_publishing(process: Any, member: int, topic: str, count: int, prefix: str,
                     interval: float = 0.0) -> None:
    """Have ``member`` of ``process`` publish ``messages(prefix, count)``; the
    answer is for the caller to ``receive`` (so several publish at once)."""
    process.send({"op": "publish", "member": member, "topic": topic, "count": count,
                  "prefix": prefix, "interval": interval})


def publish_all(publishers: Sequence[tuple[Any, int, str]], topic: str, count: int,
                timeout: float, *, interval: float = 0.0,
                meanwhile: Any = None) -> dict[bytes, list[str]]:
    """Each ``(process, member, prefix)`` publishes ``messages(prefix, count)``, all at
    once; ``meanwhile()``, if given, runs while they do (it may kill some). Returns
    ``{publisher_id: messages}`` of those whose process lived to answer."""
    for process, member, prefix in publishers:
        start_publishing(process, member, topic, count, prefix, interval)
    if meanwhile is not None:
        meanwhile()
    published = {}
    for process, member, prefix in publishers:
        if process.process.poll() is not None:  # killed meanwhile: no answer comes
            continue
        publisher = process.members[member][0]
        answer = process.receive(timeout)
        assert answer == {"ok": True, "publisher": publisher.hex(), "published": count}, \
            f"{process.name}: {answer}"
        published[publisher] = messages(prefix, count)
    return published


def delivery_check(processes: Sequence[Any], topic: str, subscribers: Iterable[bytes],
                   published: dict[bytes, list[str]],
                   partial: dict[bytes, list[str]] | None = None, *, wait: float,
                   timeout: float) -> tuple[dict[bytes, dict[str, Any]], list[str]]:
    """:func:`received_by` (expecting all of ``published``) and then
    :func:`delivery_failures`: returns what was received and the failures."""
    received = received_by(processes, topic, {p: len(m) for p, m in published.items()},
                           wait, timeout)
    return received, delivery_failures(received, subscribers, published, partial)


def publish_through_a_kill(processes: Sequence[Any], topic: str, subscribers: set[bytes],
                           publishers: Sequence[tuple[int, int]], doomed: tuple[int, int],
                           killed: Sequence[int], *, count: int, interval: float,
                           wait: float, timeout: float) -> dict[str, Any]:
    """The scenario both multi-process tests run; fails with the reasons.

    Round one: each ``(process, member)`` of ``publishers`` publishes ``count``
    messages as fast as ``publish`` lets it; every member of ``subscribers``
    must get them all, once, in order, without a gap. Round two: they publish
    ``count`` more, ``interval`` seconds apart, and so does ``doomed``; halfway,
    the processes ``killed`` (``doomed``'s among them) are SIGKILLed. Every
    surviving subscriber must get all of both rounds of the live publishers,
    no gap, and of ``doomed`` only its messages, once each, in its order.

    Returns ``{"survivors": [process, ...], "round_one": s, "round_two": s,
    "doomed_reached": [messages of doomed each survivor got]}``.
    """
    assert doomed[0] in killed and doomed not in publishers

    def prefix(round_name: str, who: tuple[int, int]) -> str:
        return f"{round_name} {who[0]}.{who[1]} "

    def ids(whos: Iterable[tuple[int, int]]) -> set[bytes]:
        return {processes[i].members[m][0] for i, m in whos}

    began = time.monotonic()
    published = publish_all([(processes[i], m, prefix("one", (i, m))) for i, m in publishers],
                            topic, count, timeout)
    assert published.keys() == ids(publishers)
    _, failures = delivery_check(processes, topic, subscribers, published, wait=wait,
                                 timeout=timeout)
    assert not failures, f"{len(failures)} failures in round one:\n" + "\n".join(failures[:20])
    first_round = time.monotonic()

    def kill() -> None:
        time.sleep(count * interval / 2)
        for index in killed:
            processes[index].kill()

    second = publish_all([(processes[i], m, prefix("two", (i, m)))
                          for i, m in (*publishers, doomed)],
                         topic, count, timeout, interval=interval, meanwhile=kill)
    assert second.keys() == published.keys()  # the doomed one never answered
    for publisher, sent in second.items():
        published[publisher] += sent
    survivors = [p for i, p in enumerate(processes) if i not in killed]
    alive = subscribers & {node_id for p in survivors for node_id, _ in p.members}
    (doomed_id,) = ids([doomed])
    received, failures = delivery_check(
        survivors, topic, alive, published,
        partial={doomed_id: messages(prefix("two", doomed), count)},
        wait=wait, timeout=timeout)
    assert not failures, f"{len(failures)} failures after the kill:\n" + \
        "\n".join(failures[:20])
    assert received.keys() == alive
    return {"survivors": survivors, "round_one": first_round - began,
            "round_two": time.monotonic() - first_round,
            "doomed_reached": [sum(1 for m in log["messages"] if m[0] == doomed_id.hex())
                               for log in received.values()]}


def received_by(processes: Sequence[Any], topic: str, expect: dict[bytes, int],
                wait: float, timeout: float) -> dict[bytes, dict[str, Any]]:
    """Ask every process (a ``MemberProcess``) what its members got on ``topic``,
    once they heard of ``expect[publisher]`` messages of each publisher (a
    publisher does not hear its own) or ``wait`` seconds passed:
    ``{member_id: {"mode": ..., "messages": [...], "gaps": [...]}}``."""
    command = {"op": "received", "topic": topic, "wait": wait,
               "expect": {publisher.hex(): count for publisher, count in expect.items()}}
    for process in processes:
        process.send(command)
    received = {}
    for process in processes:
        for member, log in process.receive(timeout)["received"].items():
            received[bytes.fromhex(member)] = log
    return received


def delivery_failures(received: dict[bytes, dict[str, Any]], subscribers: Iterable[bytes],
                      published: dict[bytes, list[str]],
                      partial: dict[bytes, list[str]] | None = None) -> list[str]:
    """One line per way ``received`` falls short of exactly-once, in-order delivery.

    Every member of ``subscribers`` must have answered and have got, of each
    publisher of ``published`` (other than itself), exactly that publisher's
    list of messages in that order, with no gap reported. For a publisher of
    ``partial`` (one that died while publishing), a gap is allowed, but what
    arrived must still be its messages, each once, in its order. With ``seq``
    known (pull subscriptions), the sequence numbers must run on one by one,
    bar where a gap was reported. No message may come from anyone else.
    """
    partial = partial or {}
    failures = []
    missing = set(subscribers) - received.keys()
    failures += [f"{member.hex()[:12]} did not answer" for member in sorted(missing)]
    for member, log in sorted(received.items()):
        name = f"{member.hex()[:12]} ({log['mode']})"
        by_publisher: dict[str, list[list[Any]]] = {}
        for publisher, seq, data in log["messages"]:
            by_publisher.setdefault(publisher, []).append([seq, data])
        gapped = {publisher for publisher, _, _ in log["gaps"]}
        known = {p.hex() for p in published} | {p.hex() for p in partial}
        for stranger in sorted(by_publisher.keys() - known):
            failures.append(f"{name}: {len(by_publisher[stranger])} messages from "
                            f"{stranger[:12]}, who did not publish")
        for publisher, expected in published.items():
            if publisher == member:
                continue
            got = by_publisher.get(publisher.hex(), [])
            data = [d for _, d in got]
            if data != expected:
                failures.append(_difference(name, publisher, data, expected))
            if publisher.hex() in gapped:
                failures.append(f"{name}: a gap reported for {publisher.hex()[:12]}, alive: "
                                f"{[g for g in log['gaps'] if g[0] == publisher.hex()]}")
            failures += _seq_failures(name, publisher, got, allow_gaps=False)
        for publisher, expected in partial.items():
            got = by_publisher.get(publisher.hex(), [])
            positions = [expected.index(d) if d in expected else -1 for _, d in got]
            if -1 in positions or positions != sorted(set(positions)):
                failures.append(f"{name}: of {publisher.hex()[:12]} (dead) got "
                                f"{[d for _, d in got]}, not in its order once each")
            failures += _seq_failures(name, publisher, got, allow_gaps=publisher.hex() in gapped)
    return failures


def _difference(name: str, publisher: bytes, data: list[str], expected: list[str]) -> str:
    duplicates = sorted({d for d in data if data.count(d) > 1})
    lost = [d for d in expected if d not in data]
    firsts = list(dict.fromkeys(d for d in data if d in expected))
    reordered = firsts != [d for d in expected if d in data]
    return (f"{name}: of {publisher.hex()[:12]} got {len(data)} of {len(expected)}; "
            f"missing {lost[:10]}, duplicated {duplicates[:10]}, "
            f"{'out of order' if reordered else 'in order'}")


def _seq_failures(name: str, publisher: bytes, got: list[list[Any]],
                  allow_gaps: bool) -> list[str]:
    seqs = [seq for seq, _ in got if seq is not None]
    steps = [b - a for a, b in zip(seqs, seqs[1:])]
    if any(step < 1 for step in steps) or (not allow_gaps and any(step != 1 for step in steps)):
        return [f"{name}: seq of {publisher.hex()[:12]} ran {seqs[:60]}"]
    return []
