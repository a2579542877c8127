"""The DHT names as the original STT manual imports them::

    from seigr_toolset_transmissions.dht import KademliaDHT, PubSubManager

``ContentDistribution`` joins this module when its overlay lands.
"""

from stt import DHTNode, KademliaDHT, PubSubManager, Subscription, TopicGap, TopicMessage

__all__ = ["KademliaDHT", "DHTNode", "PubSubManager", "Subscription", "TopicMessage", "TopicGap"]
