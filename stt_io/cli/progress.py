"""Transfer progress on stderr: a live bar on a terminal, plain lines otherwise.

On a terminal the bar is redrawn in place (``\\r``) at each whole percent.
When stderr goes to a file or a pipe, carriage returns would run together
into one unreadable line of the log, so a plain line is written every
:data:`PLAIN_INTERVAL` seconds instead, and one summary line at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "PLAIN_INTERVAL"]

#: Seconds between two progress lines when stderr is not a terminal.
PLAIN_INTERVAL = 3.0
_BAR_WIDTH = 25


class Progress:
    """Progress of one transfer of ``total`` bytes.

    Args:
        total: the bytes to transfer.
        label: what is transferred (a file name), shown on each line.
        out: where to write (default: ``sys.stderr``).
        interactive: draw a live bar; default: whether ``out`` is a terminal.
        interval: seconds between plain lines (not interactive).
        clock: a monotonic clock in seconds (tests pass their own).
    """

    def __init__(self, total: int, label: str, *, out: TextIO | None = None,
                 interactive: bool | None = None, interval: float = PLAIN_INTERVAL,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.total = total
        self.label = label
        self.out = out if out is not None else sys.stderr
        if interactive is None:
            isatty = getattr(self.out, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self.interval = interval
        self._clock = clock
        self.start = clock()
        self._shown = -1
        self._next_line = self.start + interval
        self._done = 0

    def _percent(self, done: int) -> int:
        return done * 100 // self.total if self.total else 100

    def _rate(self, done: int, now: float) -> float:
        return done / max(now - self.start, 1e-9) / 1e6

    def update(self, done: int) -> None:
        """``done`` bytes of ``total`` are through."""
        self._done = done
        now = self._clock()
        percent = self._percent(done)
        if self.interactive:
            if percent == self._shown:
                return
            self._shown = percent
            bar = "#" * (percent * _BAR_WIDTH // 100)
            self.out.write(f"\r{self.label} [{bar:.<{_BAR_WIDTH}}] {percent:3d}% "
                           f"{self._rate(done, now):7.1f} MB/s")
            self.out.flush()
        elif now >= self._next_line:
            self._next_line = now + self.interval
            self.out.write(f"{self.label}: {percent}% ({done:,} of {self.total:,} bytes), "
                           f"{self._rate(done, now):.1f} MB/s\n")
            self.out.flush()

    def finish(self) -> float:
        """End the display; returns the seconds since the start."""
        now = self._clock()
        elapsed = now - self.start
        if self.interactive:
            self.out.write("\n")
        else:
            self.out.write(f"{self.label}: {self._percent(self._done)}% ({self._done:,} bytes) "
                           f"in {elapsed:.2f} s, {self._rate(self._done, now):.1f} MB/s\n")
        self.out.flush()
        return elapsed

    def abort(self) -> None:
        """End the display of a transfer that failed: end the bar's line, so
        that the error message that follows starts on its own."""
        if self.interactive and self._shown >= 0:
            self.out.write("\n")
            self.out.flush()
