"""Wire constants, enums and limits shared by both builds.

Never compiled: the accelerated ``_wire_c`` and ``_rangeset_c`` modules and their
pure twins ``_wire_py`` and ``_rangeset_py`` import their numbers from here so that
the builds cannot drift apart. The meaning of every value is specified in
``docs/protocol.md``.
"""

from __future__ import annotations

import enum

__all__ = [
    "VARINT_MAX",
    "PacketKind",
    "FrameType",
    "ErrorCode",
    "DATA_HEADER_SIZE",
    "AEAD_TAG_SIZE",
    "MAX_ACK_RANGES",
    "MAX_CLOSE_REASON_BYTES",
    "PATH_DATA_SIZE",
    "FIRST_OVERLAY_STREAM_ID",
    "PUBSUB_STREAM_ID",
    "CONTENT_STREAM_ID",
]

#: Largest value a variable-length integer can carry (RFC 9000 section 16: 62 bits).
VARINT_MAX = (1 << 62) - 1

#: Stream ids at and above this are the overlays' (docs/protocol.md 10.1): the
#: application cannot open them, and their events never reach it.
FIRST_OVERLAY_STREAM_ID = (1 << 62) - 256
#: The one stream of a session that carries pub/sub messages, both ways. Ids
#: are rendezvous points (7.2), so either side may start it.
PUBSUB_STREAM_ID = (1 << 62) - 2
#: The one stream of a session that carries content requests and chunks, both ways.
CONTENT_STREAM_ID = (1 << 62) - 3


class PacketKind(enum.IntEnum):
    """First byte of every datagram (``docs/protocol.md`` section "Packets")."""

    INITIATION = 0x01
    RESPONSE = 0x02
    COOKIE_REPLY = 0x03
    DATA = 0x04


class FrameType(enum.IntEnum):
    """One byte at the start of every frame (``docs/protocol.md`` section "Frames").

    ``STREAM`` has its lowest bit used as the FIN flag, so ``0x09`` is a STREAM
    frame that ends its stream.
    """

    PADDING = 0x00
    PING = 0x01
    ACK = 0x02
    RESET_STREAM = 0x04
    STOP_SENDING = 0x05
    STREAM = 0x08
    STREAM_FIN = 0x09
    MAX_DATA = 0x10
    MAX_STREAM_DATA = 0x11
    # 0x12 is unassigned (once MAX_STREAMS; docs/protocol.md 7.2 says why).
    DATA_BLOCKED = 0x14
    STREAM_DATA_BLOCKED = 0x15
    STREAM_SKIP = 0x16
    PATH_CHALLENGE = 0x1A
    PATH_RESPONSE = 0x1B
    CLOSE = 0x1C
    DATAGRAM = 0x30
    DHT = 0x31


class ErrorCode(enum.IntEnum):
    """Codes carried by CLOSE and RESET_STREAM frames."""

    NO_ERROR = 0x00
    INTERNAL_ERROR = 0x01
    FRAME_ENCODING_ERROR = 0x02
    FLOW_CONTROL_ERROR = 0x03
    STREAM_LIMIT_ERROR = 0x04
    STREAM_STATE_ERROR = 0x05
    FINAL_SIZE_ERROR = 0x06
    PROTOCOL_VIOLATION = 0x07
    MESSAGE_TOO_LARGE = 0x08
    IDLE_TIMEOUT = 0x09
    AUTH_FAILURE = 0x0A


#: Bytes before the sealed payload of a DATA packet: kind, receiver index, packet number.
DATA_HEADER_SIZE = 1 + 4 + 8

#: Bytes the AEAD appends (Poly1305 and GCM tags are both 16 bytes).
AEAD_TAG_SIZE = 16

#: Most additional ranges an ACK frame may carry. A decoder refuses more, so a peer
#: cannot make us build an arbitrarily long list; an encoder never needs more
#: because the sender keeps at most this many ranges (RFC 9000 section 13.2.4
#: likewise lets a receiver bound the ranges it tracks).
MAX_ACK_RANGES = 256

#: Longest reason phrase (UTF-8 bytes) a CLOSE frame may carry.
MAX_CLOSE_REASON_BYTES = 1024

#: Size of the opaque data of PATH_CHALLENGE and PATH_RESPONSE frames.
PATH_DATA_SIZE = 8
