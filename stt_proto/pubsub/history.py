"""The messages a node saw lately, kept to answer IWANT (lazy repair).

Every node that forwards a message keeps it for ``repair_window`` seconds, or
less when ``max_history_bytes`` over all topics is reached (the oldest go
first, counted as ``history_evicted``). Messages are found by topic, publisher,
epoch and sequence number; what a node holds of one publisher is what it puts
in its IHAVE summaries.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = ["History"]

Key = tuple[bytes, bytes, int, int]   # topic, publisher, epoch, seq


class History:
    def __init__(self, *, window: float, max_bytes: int, stats: dict[str, int]) -> None:
        self.window = window
        self.max_bytes = max_bytes
        self.stats = stats
        self.bytes = 0
        self._messages: OrderedDict[Key, tuple[float, Any]] = OrderedDict()  # oldest first
        # (topic, publisher, epoch) -> highest seq held: the IHAVE entries.
        self._high: dict[tuple[bytes, bytes, int], int] = {}

    def __len__(self) -> int:
        return len(self._messages)

    def add(self, message: Any, now: float) -> None:
        key = (message.topic, message.publisher, message.epoch, message.seq)
        if key in self._messages:
            return
        size = len(message.data)
        if size > self.max_bytes:
            return
        while self.bytes + size > self.max_bytes:
            self._evict_oldest()
            self.stats["history_evicted"] += 1
        self._messages[key] = (now, message)
        self.bytes += size
        stream = key[:3]
        if message.seq > self._high.get(stream, 0):
            self._high[stream] = message.seq

    def _evict_oldest(self) -> None:
        key, (_, message) = self._messages.popitem(last=False)
        self.bytes -= len(message.data)
        stream = key[:3]
        if self._high.get(stream) == key[3]:
            # Its newest went: what is left of this publisher is older still.
            del self._high[stream]

    def expire(self, now: float) -> None:
        while self._messages:
            at, _ = next(iter(self._messages.values()))
            if now - at < self.window:
                return
            self._evict_oldest()

    def get(self, topic: bytes, publisher: bytes, epoch: int, seq: int) -> Any:
        entry = self._messages.get((topic, publisher, epoch, seq))
        return None if entry is None else entry[1]

    def high(self, topic: bytes, publisher: bytes, epoch: int) -> int:
        return self._high.get((topic, publisher, epoch), 0)

    def summary(self, topic: bytes) -> list[tuple[bytes, int, int]]:
        """``(publisher, epoch, high)`` of what is held for ``topic``."""
        return [(publisher, epoch, high) for (t, publisher, epoch), high in self._high.items()
                if t == topic]

    def next_expiry(self) -> float | None:
        if not self._messages:
            return None
        at, _ = next(iter(self._messages.values()))
        return at + self.window

    def drop_topic(self, topic: bytes) -> None:
        for key in [k for k in self._messages if k[0] == topic]:
            _, message = self._messages.pop(key)
            self.bytes -= len(message.data)
        for stream in [s for s in self._high if s[0] == topic]:
            del self._high[stream]
