"""The progress display of ``stt send`` and ``stt demo``, in process with a
hand-driven clock: a bar on a terminal, plain lines every few seconds in a log."""

from __future__ import annotations

import io

from stt_io.cli.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_interval_then_a_summary():
    clock, out = Clock(), io.StringIO()
    progress = Progress(1000, "file.bin", out=out, interactive=False, interval=3.0, clock=clock)
    for t, done in [(1, 100), (2.5, 200), (3.0, 300), (4.0, 400), (5.9, 500), (6.1, 600)]:
        clock.now = 100 + t
        progress.update(done)
    clock.now = 110.0
    progress.update(1000)
    assert progress.finish() == 10.0
    assert out.getvalue().splitlines() == [
        "file.bin: 30% (300 of 1,000 bytes), 0.0 MB/s",
        "file.bin: 60% (600 of 1,000 bytes), 0.0 MB/s",
        "file.bin: 100% (1,000 of 1,000 bytes), 0.0 MB/s",
        "file.bin: 100% (1,000 bytes) in 10.00 s, 0.0 MB/s",
    ]


def test_a_bar_on_a_terminal_redrawn_at_each_percent():
    clock, out = Clock(), io.StringIO()
    progress = Progress(200, "f", out=out, interactive=True, clock=clock)
    for done in (1, 1, 100, 101, 200):
        clock.now += 1
        progress.update(done)
    progress.finish()
    text = out.getvalue()
    assert text.count("\r") == 3  # 0 %, 50 %, 100 %: the repeats add no new percent
    assert "\rf [############.............]  50%" in text
    assert "\rf [#########################] 100%" in text and text.endswith("\n")


def test_interactive_follows_the_output():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert Progress(1, "f", out=Terminal()).interactive
    assert not Progress(1, "f", out=io.StringIO()).interactive


def test_abort_ends_the_bar_line_only_on_a_terminal():
    out = io.StringIO()
    progress = Progress(10, "f", out=out, interactive=True)
    progress.update(5)
    progress.abort()
    assert out.getvalue().endswith("\n")
    out = io.StringIO()
    Progress(10, "f", out=out, interactive=False).abort()
    assert out.getvalue() == ""
