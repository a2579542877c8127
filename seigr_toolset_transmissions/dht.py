"""The DHT names as the original STT manual imports them::

    from seigr_toolset_transmissions.dht import KademliaDHT, ContentDistribution
"""

from stt import (
    ContentDistribution,
    DHTNode,
    KademliaDHT,
    PubSubManager,
    Subscription,
    TopicGap,
    TopicMessage,
)

__all__ = ["KademliaDHT", "DHTNode", "PubSubManager", "Subscription", "TopicMessage", "TopicGap",
           "ContentDistribution"]
