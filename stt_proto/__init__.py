"""STT protocol engine: sans-I/O, no sockets, clocks or event loops inside.

The engine consumes bytes and a caller-chosen ``now`` and produces datagrams to
send and events to handle. The socket-driving adapters live in :mod:`stt_io`.

``stt_proto.COMPILED`` tells whether the Cython-accelerated modules (the wire
codec ``_wire``, the range sets ``_rangeset`` and the engine's per-packet
modules listed in ``stt_proto._build.IN_PLACE``) are all loaded
(``STT_NO_EXTENSIONS=1`` forces the pure-Python build).
"""

from __future__ import annotations

from . import _build

_build.install()  # before any engine module is imported: it picks their build

from . import _rangeset  # noqa: E402
from . import _wire as wire  # noqa: E402
from .constants import VARINT_MAX, ErrorCode, FrameType, PacketKind  # noqa: E402
from .errors import (  # noqa: E402
    DecodeError,
    EncodeError,
    LocalProtocolError,
    ProtocolError,
    STTError,
)

__version__ = "0.1.0"

#: True when every accelerated module is the compiled build; a partial or stale
#: build (one extension failed to compile or import, or is older than its
#: source) counts as not compiled.
COMPILED: bool = wire.COMPILED and _rangeset.COMPILED and _build.compiled()

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
