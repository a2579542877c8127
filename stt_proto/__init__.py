"""STT protocol engine: sans-I/O, no sockets, clocks or event loops inside.

The engine consumes bytes and a caller-chosen ``now`` and produces datagrams to
send and events to handle. The socket-driving adapters live in :mod:`stt_io`.

``stt_proto.COMPILED`` tells whether the Cython-accelerated modules (the wire
codec ``_wire`` and the range sets ``_rangeset``) are both loaded
(``STT_NO_EXTENSIONS=1`` forces the pure-Python build).
"""

from __future__ import annotations

from . import _rangeset
from . import _wire as wire
from .constants import VARINT_MAX, ErrorCode, FrameType, PacketKind
from .errors import (
    DecodeError,
    EncodeError,
    LocalProtocolError,
    ProtocolError,
    STTError,
)

__version__ = "0.1.0"

#: True when every accelerated module is the compiled build; a partial build
#: (one extension failed to compile or import) counts as not compiled.
COMPILED: bool = wire.COMPILED and _rangeset.COMPILED

__all__ = [
    "COMPILED",
    "wire",
    "VARINT_MAX",
    "ErrorCode",
    "FrameType",
    "PacketKind",
    "STTError",
    "ProtocolError",
    "DecodeError",
    "EncodeError",
    "LocalProtocolError",
    "__version__",
]
