"""STT: secure peer-to-peer transport. The short name for the asyncio API::

    import stt

    async with stt.Node(shared_seed=seed) as node:
        session = await node.connect(address, peer_id)
        stream = session.open_stream()
        await stream.send(b"hello")

Everything here comes from :mod:`stt_io.asyncio` and :mod:`stt_io.errors`; the
sans-I/O engine is :mod:`stt_proto`.
"""

from stt_io.asyncio import (
    ByteStream,
    ContentDistribution,
    DHTNode,
    KademliaDHT,
    Node,
    PubSubManager,
    Session,
    Stream,
    Subscription,
    TopicGap,
    TopicMessage,
)
from stt_io.errors import (
    AuthenticationError,
    BootstrapError,
    ConnectionTimeoutError,
    ContentError,
    ContentNotFoundError,
    DhtBusyError,
    DhtError,
    MessageTooLargeError,
    MissingSigningKeyError,
    NodeStoppedError,
    ProofError,
    PubSubError,
    SessionClosedError,
    StreamClosedError,
    StreamIdUsedError,
    StoreFullError,
    StreamResetError,
    STTError,
    ValueTooLargeError,
)
from stt_proto import __version__
from stt_proto.identity import Identity

__all__ = [
    "Node",
    "Session",
    "Stream",
    "ByteStream",
    "KademliaDHT",
    "DHTNode",
    "PubSubManager",
    "Subscription",
    "TopicMessage",
    "TopicGap",
    "ContentDistribution",
    "Identity",
    "STTError",
    "ConnectionTimeoutError",
    "AuthenticationError",
    "SessionClosedError",
    "StreamClosedError",
    "StreamResetError",
    "StreamIdUsedError",
    "MessageTooLargeError",
    "NodeStoppedError",
    "DhtError",
    "DhtBusyError",
    "ValueTooLargeError",
    "MissingSigningKeyError",
    "BootstrapError",
    "PubSubError",
    "ContentError",
    "ContentNotFoundError",
    "ProofError",
    "StoreFullError",
    "__version__",
]
