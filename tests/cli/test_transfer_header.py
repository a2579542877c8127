"""The receiver's checks of a file header: whatever a peer sends, it is
refused with ``BAD_HEADER`` (and a reason), never an exception that would
leave the sender without an answer."""

from __future__ import annotations

import json

import pytest

from stt_io.cli.transfer import FILE_MAGIC, MAX_HEADER, Refusal, _parse_header, _Refused


def header(obj) -> bytes:
    return FILE_MAGIC + json.dumps(obj).encode()


def test_a_plain_name_and_a_size_are_accepted():
    assert _parse_header(header({"name": "report.txt", "size": 0})) == ("report.txt", 0)
    assert _parse_header(header({"name": ".hidden", "size": 5})) == (".hidden", 5)


@pytest.mark.parametrize("message", [
    FILE_MAGIC + b"not json",
    # Under MAX_HEADER, yet deep enough to exhaust the JSON decoder's recursion.
    FILE_MAGIC + b"[" * 4000,
    FILE_MAGIC + b"[" * 2000 + b"]" * 2000,
    FILE_MAGIC + b'{"name": "x", "size": 1}' + b" " * MAX_HEADER,
    header([1, 2]),
    header({"name": "x"}),
    header({"name": "x", "size": -1}),
    header({"name": "x", "size": True}),
    header({"name": "x", "size": "10"}),
    header({"size": 1}),
    header({"name": 7, "size": 1}),
    header({"name": "", "size": 1}),
    header({"name": "..", "size": 1}),
    header({"name": "../etc/passwd", "size": 1}),
    header({"name": "dir/file", "size": 1}),
    header({"name": "c:\\file", "size": 1}),
    header({"name": "nul\u0000byte", "size": 1}),
    header({"name": "x.stt-part", "size": 1}),
    FILE_MAGIC + b'{"name": "lone \\ud800 surrogate", "size": 1}',
])
def test_a_bad_header_is_refused(message):
    with pytest.raises(_Refused) as refused:
        _parse_header(message)
    assert refused.value.code == Refusal.BAD_HEADER
    assert refused.value.reason.startswith("the file header ")
