"""Exceptions raised by the STT engine.

This module is never compiled, so the compiled and the pure-Python builds of the
accelerated modules raise the very same classes (an exception class defined in a
module that is compiled twice exists twice, and ``except`` on one misses the other).

The error model has three paths (see ``docs/protocol.md``):

* bytes from the network that cannot be decoded or authenticated are dropped and
  counted; the codec signals them with :class:`DecodeError`, which the engine catches
  at the layer boundary and never lets reach an adapter;
* a violation by an authenticated peer closes the session with an error code;
* local misuse (bad arguments, calls in the wrong state) raises synchronously:
  :class:`EncodeError`, :class:`LocalProtocolError`, or plain ``ValueError``.
"""

from __future__ import annotations

__all__ = [
    "STTError",
    "ProtocolError",
    "DecodeError",
    "EncodeError",
    "LocalProtocolError",
    "NoiseError",
    "StreamClosedError",
    "StreamIdUsedError",
    "MessageTooLargeError",
    "SendBufferFullError",
    "MissingSigningKeyError",
    "DhtError",
    "DhtBusyError",
    "ValueTooLargeError",
    "PubSubError",
    "ContentError",
    "ProofError",
    "StoreFullError",
    "StoreInUseError",
    "ContentNotFoundError",
]


class STTError(Exception):
    """Base class of every exception STT raises on purpose."""


class ProtocolError(STTError):
    """Something the peer (or the bytes it sent) did is not allowed by the protocol.

    ``error_code`` is the code a session closes with when this happens on an
    authenticated packet (one of :class:`stt_proto.constants.ErrorCode`).
    """

    error_code: int = 0x07  # ErrorCode.PROTOCOL_VIOLATION; literal to avoid an import cycle

    def __init__(self, message: str, *, error_code: int | None = None) -> None:
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code


class DecodeError(ProtocolError, ValueError):
    """Bytes that do not decode: truncated, impossible lengths, out-of-range values,
    unknown types or trailing garbage.

    This is the only exception the wire codec raises for untrusted input, whatever
    the bytes are, in both builds.
    """

    error_code = 0x02  # ErrorCode.FRAME_ENCODING_ERROR


class EncodeError(STTError, ValueError):
    """A value given to the encoder cannot be put on the wire (out of range, too long,
    or does not fit in the space left in the packet). This is local misuse."""


class LocalProtocolError(STTError, RuntimeError):
    """The application asked for something the protocol state does not allow."""


class NoiseError(STTError):
    """A Noise handshake or cipher operation failed: authentication failure, a
    malformed or wrongly sized message, a call out of turn, or use of a dead or
    finished handshake. The message never contains key material."""


class StreamClosedError(LocalProtocolError):
    """The stream can no longer send: its sending side was ended (FIN), reset
    locally, or stopped by the peer (STOP_SENDING); or the session is closed or
    closing."""


class StreamIdUsedError(StreamClosedError):
    """The stream id was already used in this session (opened by either side,
    and closed or refused since): an id never opens twice in a session
    (``docs/protocol.md`` 7.5). Open a new stream, with an allocated id."""


class MessageTooLargeError(LocalProtocolError, ValueError):
    """A message is larger than the stream's ``max_frame_size``."""


class SendBufferFullError(LocalProtocolError):
    """The stream already holds ``max_send_buffer`` bytes not yet acknowledged by
    the peer. Nothing was queued; wait for ``StreamWritable`` and send again."""


class MissingSigningKeyError(STTError, ValueError):
    """The identity cannot sign: it is a legacy X25519-only identity, made before
    identities carried a signing key (``stt_proto.identity``, "Signing identity").

    Such a key cannot be upgraded in place (the signing key would have to come
    before the X25519 key, not after it), so the message tells the user to make a
    new identity with ``stt keygen``; the new identity has a new node id.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            if message is not None
            else "this identity has no signing key (it is an X25519-only identity from "
            "before STT identities could sign); generate a new identity with `stt keygen` "
            "(or Identity.generate()) and use its new node id"
        )


class DhtError(STTError):
    """A DHT operation could not be carried out."""


class DhtBusyError(DhtError):
    """Too many DHT operations are running (``DhtConfig.max_lookups``): wait for
    some to finish, or raise the limit."""


class ValueTooLargeError(DhtError, ValueError):
    """A value is larger than the DHT's ``max_value_bytes``."""


class PubSubError(STTError):
    """A pub/sub operation could not be carried out (``max_topics`` topics in use,
    the node stopped, ...)."""


class ContentError(STTError):
    """A content-distribution operation could not be carried out."""


class ProofError(ContentError, ValueError):
    """A chunk or its proof does not match the content id (a flipped bit in
    either, a chunk of the wrong size, a proof of the wrong length)."""


class StoreFullError(ContentError):
    """The content store has no room for that much more (``max_bytes`` or
    ``max_entries``)."""


class StoreInUseError(ContentError):
    """Another :class:`~stt_proto.content.store.DirectoryStore` (in this process
    or another) has the store directory open: one at a time may."""


class ContentNotFoundError(ContentError):
    """No provider of the content could be found, or none of them could serve it."""
