"""STT protocol engine: sans-I/O, no sockets, clocks or event loops inside.

The engine consumes bytes and a caller-chosen ``now`` and produces datagrams to
send and events to handle. The socket-driving adapters live in :mod:`stt_io`.

``stt_proto.COMPILED`` tells whether the Cython-accelerated wire codec is loaded
(``STT_NO_EXTENSIONS=1`` forces the pure-Python build).
"""

from __future__ import annotations

from . import _wire as wire
from ._wire import COMPILED
from .constants import VARINT_MAX, ErrorCode, FrameType, PacketKind
from .errors import (
    DecodeError,
    EncodeError,
    LocalProtocolError,
    ProtocolError,
    STTError,
)

__version__ = "0.1.0"

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
