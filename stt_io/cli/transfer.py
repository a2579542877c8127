"""The file-transfer exchange between ``stt send`` and ``stt listen``.

Protocol
--------
Application level, on one stream the sender opens; every item is one message:

1. sender: ``b"STT-FILE "`` + JSON ``{"name": NAME, "size": SIZE}``. ``NAME``
   is a plain file name (no directory part), ``SIZE`` the number of bytes;
2. sender: the file, in messages of at most :data:`CHUNK` bytes, ``SIZE``
   bytes in all;
3. sender: ``b"STT-END "`` + JSON ``{"blake2b": HEX}``, the BLAKE2b-256 digest
   of the file; then it ends its side of the stream;
4. receiver: one answer, then it ends its side:
   ``b"OK "`` + the hex digest of what it stored, or
   ``b"ERR "`` + a :class:`Refusal` code in decimal + ``b" "`` + a reason (UTF-8).

The receiver may answer ``ERR`` at any point, as soon as it knows it cannot
take the file (at the header when the name is taken, mid-way when the disk
fills up). It then also stops reading the sender's side of the stream
(``STOP_SENDING`` with the same code, docs/protocol.md "Streams"), so the
sender's next ``send`` fails at once instead of pushing the rest of the file
for nothing; the sender then reads the ``ERR`` answer and reports its reason.

Saving
------
The receiver writes into a temporary file in the save directory
(``.NAME.XXXXXXXX.stt-part``, created exclusively) and moves it into place
only once the size and the digest match. It never replaces an existing file
unless the listener runs with ``--overwrite``: otherwise the transfer is
refused with :attr:`Refusal.EXISTS` (checked at the header, and again when
moving into place, with a hard link that cannot overwrite). A failed or
refused transfer leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from .._core import Session, Stream
from ..errors import SessionClosedError, StreamClosedError, StreamResetError
from .args import CommandError
from .backends import Backend
from .progress import Progress

__all__ = ["FILE_MAGIC", "END_MAGIC", "CHUNK", "PART_SUFFIX", "Refusal", "TransferRefused",
           "send_file", "receive_file"]

FILE_MAGIC = b"STT-FILE "
END_MAGIC = b"STT-END "
#: The largest data message; the stream's ``max_frame_size`` leaves room for headers.
CHUNK = 1024 * 1024
#: Largest header or trailer message the receiver accepts.
MAX_HEADER = 4096
#: Suffix of the temporary files a transfer writes.
PART_SUFFIX = ".stt-part"
_ERR = re.compile(rb"ERR (\d{1,6}) (.*)", re.DOTALL)


class Refusal(enum.IntEnum):
    """Why a receiver refused a file: the code in its ``ERR`` answer and in
    its STOP_SENDING."""

    BAD_HEADER = 1
    """The header is not valid (not JSON, no plain name, no size)."""
    EXISTS = 2
    """A file of that name exists in the save directory (no ``--overwrite``)."""
    STORAGE = 3
    """The file cannot be written (no save directory, no space, no permission)."""
    SIZE_MISMATCH = 4
    """More or fewer bytes arrived than the header announced."""
    HASH_MISMATCH = 5
    """The bytes received do not match the sender's digest."""
    BAD_TRAILER = 6
    """The digest message is missing or malformed."""


class TransferRefused(CommandError):
    """The receiver refused the file; the message carries its reason."""


class _Refused(Exception):
    def __init__(self, code: Refusal, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# ---------------------------------------------------------------------------- sending


async def send_file(session: Session, io: Backend, name: str, chunks: AsyncIterator[bytes],
                    size: int, *, timeout: float | None = None,
                    progress: Progress | None = None) -> str:
    """Send a file on a new stream of ``session``.

    Args:
        session: an open session with a listener.
        io: the backend (for the time limits).
        name: the file's name (no directory part).
        chunks: the file's content, in pieces of at most :data:`CHUNK` bytes.
        size: the sum of their lengths.
        timeout: the longest wait for each send to go through and for the
            answer (``None``: no limit).
        progress: updated after each chunk.

    Returns:
        The hex digest the receiver confirmed.

    Raises:
        TransferRefused: the receiver refused the file (its reason), or its
            digest differs from ours.
        CommandError: a wait passed ``timeout``.
        STTError: the session closed.
    """
    stream = session.open_stream(max_frame_size=CHUNK + MAX_HEADER)
    digest = hashlib.blake2b(digest_size=32)
    stopped: StreamResetError | None = None
    header = FILE_MAGIC + json.dumps({"name": name, "size": size}).encode()
    try:
        await _within(io, timeout, stream.send(header))
        sent = 0
        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                await _within(io, timeout, stream.send(chunk))
                digest.update(chunk)
                sent += len(chunk)
                if progress is not None:
                    progress.update(sent)
        trailer = END_MAGIC + json.dumps({"blake2b": digest.hexdigest()}).encode()
        await _within(io, timeout, stream.send(trailer))
        await _within(io, timeout, stream.close())
    except StreamResetError as exc:  # the receiver stopped reading: its answer says why
        stopped = exc
    try:
        answer = await io.within(timeout, stream.receive(), "answer from the receiver") \
            if timeout is not None else await stream.receive()
    except StreamClosedError:
        if stopped is not None:
            raise TransferRefused(f"the receiver stopped the transfer of {name} "
                                  f"(code {stopped.error_code}) without a reason") from None
        raise TransferRefused(f"the receiver ended the transfer of {name} without an "
                              f"answer") from None
    refused = _ERR.fullmatch(answer)
    if refused is not None:
        code, reason = int(refused[1]), refused[2].decode(errors="replace")
        label = Refusal(code).name.lower() if code in Refusal._value2member_map_ else code
        raise TransferRefused(f"the receiver refused {name}: {reason} ({label})")
    if not answer.startswith(b"OK "):
        raise TransferRefused(f"unexpected answer from the receiver: "
                              f"{answer[:80].decode(errors='replace')!r}")
    theirs = answer[3:].decode(errors="replace")
    if theirs != digest.hexdigest():
        raise TransferRefused("hash mismatch: the receiver stored different bytes")
    return theirs


async def _within(io: Backend, timeout: float | None, awaitable) -> None:
    if timeout is None:
        await awaitable
    else:
        await io.within(timeout, awaitable, "progress sending (the receiver is not reading)")


# ---------------------------------------------------------------------------- receiving


async def receive_file(stream: Stream, header: bytes, save_dir: Path | None, *,
                       overwrite: bool = False, log: Callable[[str], object] = print) -> bool:
    """Receive the file whose header message ``header`` came on ``stream``,
    answer the sender, and end this side of the stream.

    Args:
        stream: the stream the header came on.
        header: that first message (it starts with :data:`FILE_MAGIC`).
        save_dir: where to save the file; ``None`` verifies and discards it.
        overwrite: replace an existing file of the same name.
        log: called with one line when the file is saved or refused.

    Returns:
        Whether the file was received whole and verified.

    Raises:
        STTError: the stream or session failed (nothing is left on disk).
    """
    name = "?"
    target: _PartFile | None = None
    try:
        name, size = _parse_header(header)
        if save_dir is not None:
            target = _PartFile(save_dir, name, overwrite)
        digest = await _receive_data(stream, size, target)
        if target is not None:
            target.commit()
    except _Refused as refused:
        if target is not None:
            target.discard()
        log(f"stream {stream.stream_id}: refused {name}: {refused.reason}")
        await _refuse(stream, refused)
        return False
    except BaseException:
        if target is not None:
            target.discard()
        raise
    await stream.send(b"OK " + digest.encode())
    await stream.close()
    where = f", saved as {target.path}" if target is not None else ""
    log(f"received {name}: {size:,} bytes, blake2b {digest[:16]}...{where}")
    return True


def _parse_header(message: bytes) -> tuple[str, int]:
    if len(message) > MAX_HEADER:
        raise _Refused(Refusal.BAD_HEADER, "the file header is too long")
    try:
        header = json.loads(message[len(FILE_MAGIC):])
    except (ValueError, RecursionError):  # RecursionError: nesting too deep
        raise _Refused(Refusal.BAD_HEADER, "the file header is not JSON") from None
    name = header.get("name") if isinstance(header, dict) else None
    size = header.get("size") if isinstance(header, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _Refused(Refusal.BAD_HEADER, "the file header has no valid size")
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name
            or "\0" in name or name.endswith(PART_SUFFIX) or not _encodable(name)):
        raise _Refused(Refusal.BAD_HEADER, "the file header has no plain file name")
    return name, size


def _encodable(name: str) -> bool:
    """Whether ``name`` can be a file name here (JSON can carry lone surrogates)."""
    try:
        os.fsencode(name)
    except UnicodeError:
        return False
    return True


async def _receive_data(stream: Stream, size: int, target: _PartFile | None) -> str:
    """Read ``size`` bytes and the digest message; return the checked digest."""
    digest = hashlib.blake2b(digest_size=32)
    received = 0
    while received < size:
        try:
            chunk = await stream.receive()
        except StreamResetError:
            raise
        except StreamClosedError:
            raise _Refused(Refusal.SIZE_MISMATCH,
                           f"got {received:,} bytes, the header said {size:,}") from None
        received += len(chunk)
        if received > size:
            raise _Refused(Refusal.SIZE_MISMATCH, f"more than the {size:,} bytes announced")
        digest.update(chunk)
        if target is not None:
            target.write(chunk)
    try:
        trailer = await stream.receive()
    except StreamResetError:
        raise
    except StreamClosedError:
        raise _Refused(Refusal.BAD_TRAILER, "the digest message is missing") from None
    try:
        theirs = json.loads(trailer[len(END_MAGIC):])["blake2b"] \
            if trailer.startswith(END_MAGIC) and len(trailer) <= MAX_HEADER else None
    except (ValueError, TypeError, KeyError, RecursionError):
        theirs = None
    if not isinstance(theirs, str):
        raise _Refused(Refusal.BAD_TRAILER, "the digest message is malformed")
    if theirs != digest.hexdigest():
        raise _Refused(Refusal.HASH_MISMATCH, "the bytes received do not match the "
                                              "sender's digest")
    return theirs


async def _refuse(stream: Stream, refused: _Refused) -> None:
    """Answer ``ERR``, end our side and stop reading the sender's."""
    reason = " ".join(refused.reason.split())
    await stream.send(b"ERR %d %s" % (refused.code, reason.encode()))
    await stream.close()
    with contextlib.suppress(SessionClosedError):
        await stream.stop_receiving(refused.code)  # the rest of the file is not wanted


class _PartFile:
    """A file being received: a temporary file in the save directory, moved
    to its name once complete (never over another file unless ``overwrite``)."""

    def __init__(self, save_dir: Path, name: str, overwrite: bool) -> None:
        self.path = (save_dir / name).absolute()
        self.overwrite = overwrite
        if not overwrite and os.path.lexists(self.path):
            raise _Refused(Refusal.EXISTS, f"{name} already exists on the receiver "
                                           f"(its listener can run with --overwrite)")
        self.part = save_dir / f".{name[:200]}.{secrets.token_hex(4)}{PART_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) \
            | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.part, flags, 0o666)
        except OSError as exc:
            raise _Refused(Refusal.STORAGE, _storage_reason(exc)) from None
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise _Refused(Refusal.STORAGE, _storage_reason(exc)) from None

    def commit(self) -> None:
        """Move the complete file to its name."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if self.overwrite:
                os.replace(self.part, self.path)
                return
            try:
                # A hard link never replaces a file: if one of that name
                # appeared meanwhile (another transfer), this fails.
                os.link(self.part, self.path)
            except FileExistsError:
                raise _Refused(Refusal.EXISTS, f"{self.path.name} already exists on the "
                                               f"receiver (its listener can run with "
                                               f"--overwrite)") from None
            except OSError:  # no hard links on this file system
                if os.path.lexists(self.path):
                    raise _Refused(Refusal.EXISTS, f"{self.path.name} already exists on "
                                                   f"the receiver") from None
                os.rename(self.part, self.path)
                return
            os.unlink(self.part)
        except OSError as exc:
            raise _Refused(Refusal.STORAGE, _storage_reason(exc)) from None

    def discard(self) -> None:
        """Delete the temporary file (after a failure)."""
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.part)


def _storage_reason(exc: OSError) -> str:
    return f"cannot write the file on the receiver: {exc.strerror or exc}"
