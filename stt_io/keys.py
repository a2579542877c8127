"""Key files: saving and loading identities and network seeds.

File loading lives here, in the adapters package, and not in :mod:`stt_proto`,
which does no I/O (STYLE.md point 13).

Identity file formats (text, ASCII, ``\\n`` line endings). A signing identity
(:mod:`stt_proto.identity`, "Signing identity"; every new identity is one)::

    STT-IDENTITY-V2
    signing_seed <Ed25519 seed: 64 hex characters>
    node_id <public key: 64 hex characters>

A legacy, X25519-only identity, in the format that came first::

    STT-IDENTITY-V1
    <X25519 private key: 64 hex characters>
    node_id <public key: 64 hex characters>

The first line tells the formats apart, so files written before identities
could sign keep loading, as legacy identities; :func:`save_identity` writes each
identity in the format that holds all of it. The second line of the new format
is labelled so that a file whose header was edited by hand (to "upgrade" an old
file, say) is refused rather than read as another key with another node id.

The ``node_id`` line is informational (it lets an operator read a node's id
without running code); when present, :func:`load_identity` checks that it
matches the private key, which catches a file that was edited or corrupted.

Permissions
-----------
Key files must be readable by their owner only, like ``ssh`` private keys.

* :func:`save_identity` creates the file with ``os.open(..., 0o600)``, so it is
  never readable by others, not even for the instant between creation and a
  later ``chmod``; it also refuses to follow a symlink at the target path.
* :func:`load_identity` and :func:`load_seed` refuse, with
  :class:`InsecureKeyFileError`, a file whose mode grants any permission to group
  or others. The mode is read from the *opened* file descriptor, so it describes
  the file actually read even if the path changes meanwhile. On Windows the check
  is skipped: POSIX mode bits do not reflect NTFS ACLs there.

No error message in this module contains key material: malformed content is
reported by path, line number and what was expected.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from typing import Union

from stt_proto.errors import STTError
from stt_proto.identity import Identity, parse_node_id, validate_seed

__all__ = [
    "InsecureKeyFileError",
    "IDENTITY_HEADER",
    "SIGNING_IDENTITY_HEADER",
    "MAX_KEY_FILE_BYTES",
    "save_identity",
    "load_identity",
    "load_seed",
]

#: First line of a legacy (X25519-only) identity file, the format that came first.
IDENTITY_HEADER = "STT-IDENTITY-V1"
#: First line of a signing identity's file: the format's version, after V1.
SIGNING_IDENTITY_HEADER = "STT-IDENTITY-V2"
#: Largest identity or seed file read. Key files are tiny; the bound keeps a
#: wrong path (a log, a device) from being read whole into memory.
MAX_KEY_FILE_BYTES = 64 * 1024

StrPath = Union[str, "os.PathLike[str]"]

# POSIX mode bits are meaningless for access control on Windows (NTFS ACLs).
_CHECK_MODE = os.name == "posix"
# Bits that give group or others any access at all.
_GROUP_OTHER_BITS = 0o077
_KEY_FILE_MODE = 0o600
_NODE_ID_PREFIX = "node_id "
_SIGNING_SEED_PREFIX = "signing_seed "
# Exactly 64 ASCII hex digits: bytes.fromhex alone would accept inner spaces.
_PRIVATE_KEY_HEX = re.compile(r"[0-9a-fA-F]{64}")
# Opening a FIFO would block until a peer appears; with O_NONBLOCK it fails or
# returns at once, and the S_ISREG check then refuses it. No effect on regular
# files. Not on Windows.
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
# Flags every key-file open uses; O_BINARY matters on Windows only.
_O_COMMON = _O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class InsecureKeyFileError(STTError, PermissionError):
    """A key file grants access to group or others, so it is refused.

    It is a :class:`PermissionError` (so ``except OSError`` around file loading
    catches it) and an :class:`~stt_proto.errors.STTError`. The message names
    the path, the mode and the fix.

    :param path: the refused file.
    :param mode: its permission bits.
    """

    def __init__(self, path: StrPath, mode: int) -> None:
        path = os.fspath(path)
        super().__init__(
            f"{path}: key file permissions {mode:04o} are too open "
            f"(group or others have access); run: chmod 600 {shlex.quote(path)}"
        )
        # Not OSError.filename: setting it would make str() print
        # "[Errno None] None: ..." instead of the message above.
        #: The refused file.
        self.path = path
        #: Its permission bits.
        self.mode = mode


# ---------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------


def save_identity(identity: Identity, path: StrPath, *, overwrite: bool = False) -> None:
    """Write ``identity`` to ``path`` as an owner-only (mode ``0600``) file.

    A signing identity is written as ``STT-IDENTITY-V2`` (its Ed25519 seed), a
    legacy identity as ``STT-IDENTITY-V1`` (its X25519 key), so each loads back
    as what it was.

    The file is created with mode ``0600`` from the start. With
    ``overwrite=True`` an existing regular file is truncated, rewritten and set to
    ``0600``. A symlink at ``path`` is never followed.

    :param identity: the identity to save.
    :param path: where to write it.
    :param overwrite: replace an existing file instead of refusing.
    :raises TypeError: if ``identity`` is not an :class:`Identity`.
    :raises FileExistsError: if ``path`` exists and ``overwrite`` is false, or
        if it exists and is not a regular file (a directory, a symlink, a
        device), whatever ``overwrite`` says.
    :raises OSError: if the file cannot be written.
    """
    if not isinstance(identity, Identity):
        raise TypeError("identity must be a stt_proto.identity.Identity")
    path = os.fspath(path)
    if identity.can_sign:
        header = SIGNING_IDENTITY_HEADER
        secret_line = _SIGNING_SEED_PREFIX + identity.signing_seed_bytes().hex()
    else:
        header, secret_line = IDENTITY_HEADER, identity.private_bytes().hex()
    content = (
        f"{header}\n{secret_line}\n{_NODE_ID_PREFIX}{identity.node_id_hex}\n"
    ).encode("ascii")

    # O_NOFOLLOW: with O_TRUNC a planted symlink would redirect the key into
    # another file (O_EXCL alone already refuses a symlink). Not on Windows.
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | _O_COMMON
    existed = False
    if overwrite:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            existed = True
            # Checked before opening, so O_TRUNC never touches a device and a
            # symlink gets a clear message rather than ELOOP.
            if not stat.S_ISREG(st.st_mode):
                raise _not_regular(path)
        flags |= os.O_TRUNC
    else:
        flags |= os.O_EXCL

    try:
        fd = os.open(path, flags, _KEY_FILE_MODE)
    except FileExistsError:
        raise FileExistsError(
            f"{path}: already exists; pass overwrite=True to replace it"
        ) from None
    # The path may have been swapped between lstat and open.
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_regular(path)
    try:
        # The mode argument of os.open only applies to a new file, and the umask
        # may have removed bits from it: set it explicitly, on the descriptor, so
        # an overwritten file that used to be 0644 ends up 0600 too.
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _KEY_FILE_MODE)
        else:  # Windows before Python 3.13: only the read-only bit exists anyway.
            os.chmod(path, _KEY_FILE_MODE)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        if not existed:
            # Do not leave a half-written key file behind that a later load
            # would reject with a confusing message.
            try:
                os.unlink(path)
            except OSError:
                pass
        raise
    os.close(fd)


def load_identity(path: StrPath) -> Identity:
    """Read an identity written by :func:`save_identity`, in either format.

    :param path: the identity file.
    :returns: the identity: a signing identity from an ``STT-IDENTITY-V2``
        file, a legacy one (:attr:`~stt_proto.identity.Identity.can_sign` false)
        from an ``STT-IDENTITY-V1`` file.
    :raises InsecureKeyFileError: on POSIX, if the file grants any access to
        group or others.
    :raises ValueError: if the file is not a regular file, is too large, or its
        content is malformed; the message names the path and the line, never the
        key material.
    :raises OSError: if the file cannot be opened or read.
    """
    path = os.fspath(path)
    data = _read_key_file(path)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        # ``from None``: the UnicodeDecodeError's text quotes the offending byte.
        raise ValueError(f"{path}: not an STT identity file (not ASCII text)") from None
    lines = text.splitlines()
    # Trailing blank lines are harmless (editors add them); anything else is not.
    while lines and not lines[-1].strip():
        lines.pop()
    header = lines[0].strip() if lines else ""
    if header not in (IDENTITY_HEADER, SIGNING_IDENTITY_HEADER):
        raise ValueError(
            f"{path}: line 1: expected {IDENTITY_HEADER!r} or {SIGNING_IDENTITY_HEADER!r}"
        )
    if len(lines) < 2:
        raise ValueError(f"{path}: line 2: missing private key")
    if len(lines) > 3:
        raise ValueError(f"{path}: line 4: unexpected content after the node_id line")

    key_line = lines[1].strip()
    if header == SIGNING_IDENTITY_HEADER:
        identity = _signing_identity_from_line(path, key_line)
    else:
        if _PRIVATE_KEY_HEX.fullmatch(key_line) is None:
            raise ValueError(f"{path}: line 2: expected the private key as 64 hex characters")
        identity = Identity.from_private_bytes(bytes.fromhex(key_line))

    if len(lines) == 3:
        line = lines[2].strip()
        if not line.startswith(_NODE_ID_PREFIX):
            raise ValueError(f"{path}: line 3: expected 'node_id <64 hex characters>'")
        try:
            node_id = parse_node_id(line[len(_NODE_ID_PREFIX):])
        except ValueError:
            raise ValueError(f"{path}: line 3: expected 'node_id <64 hex characters>'") from None
        if node_id != identity.node_id:
            raise ValueError(f"{path}: line 3: node_id does not match the private key on line 2")
    return identity


def _signing_identity_from_line(path: str, line: str) -> Identity:
    """Line 2 of an ``STT-IDENTITY-V2`` file: ``signing_seed <64 hex characters>``."""
    seed_hex = line[len(_SIGNING_SEED_PREFIX):] if line.startswith(_SIGNING_SEED_PREFIX) else ""
    if _PRIVATE_KEY_HEX.fullmatch(seed_hex) is not None:
        return Identity.from_signing_seed(bytes.fromhex(seed_hex))
    if _PRIVATE_KEY_HEX.fullmatch(line) is not None:
        # A bare key is the V1 layout: most likely an old file whose header was
        # edited. Reading it as a seed would silently give another node id.
        raise ValueError(
            f"{path}: line 2: expected 'signing_seed <64 hex characters>'; the bare key "
            f"here is the {IDENTITY_HEADER} layout, so line 1 should probably say "
            f"{IDENTITY_HEADER!r} (an old identity cannot be upgraded: run 'stt keygen' "
            f"for one that can sign)"
        )
    raise ValueError(f"{path}: line 2: expected 'signing_seed <64 hex characters>'")


# ---------------------------------------------------------------------------
# Network seeds
# ---------------------------------------------------------------------------


def load_seed(source: StrPath) -> bytes:
    """Read a network ``shared_seed`` from a file.

    The seed is the file's bytes, with one trailing newline (``\\n`` or
    ``\\r\\n``) removed so that a seed written with ``echo`` or a text editor
    works. Nothing else is interpreted: a hex-looking file is used as the text it
    is, which is fine as long as every node reads the same file.

    :param source: the seed file.
    :returns: the seed, at least :data:`~stt_proto.identity.MIN_SEED_BYTES` long.
    :raises InsecureKeyFileError: on POSIX, if the file grants any access to
        group or others.
    :raises ValueError: if the file is not a regular file, is too large, or the
        seed is too short; the message names the path, never the seed.
    :raises OSError: if the file cannot be opened or read.
    """
    path = os.fspath(source)
    data = _read_key_file(path)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    try:
        return validate_seed(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _not_regular(path: str) -> FileExistsError:
    return FileExistsError(f"{path}: exists and is not a regular file; refusing to overwrite it")


def _read_key_file(path: str) -> bytes:
    """Open ``path``, check that it is a private regular file, and read it."""
    fd = os.open(path, os.O_RDONLY | _O_COMMON)
    try:
        # fstat on the open descriptor, not stat on the path: what is checked is
        # exactly what is read, with no window for the path to be swapped.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if _CHECK_MODE and mode & _GROUP_OTHER_BITS:
            raise InsecureKeyFileError(path, mode)
        chunks = []
        size = 0
        while size <= MAX_KEY_FILE_BYTES:
            chunk = os.read(fd, MAX_KEY_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_KEY_FILE_BYTES:
            raise ValueError(f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes; not a key file")
        return b"".join(chunks)
    finally:
        os.close(fd)
