"""The DHT names as the original STT manual imports them::

    from seigr_toolset_transmissions.dht import KademliaDHT

``PubSubManager`` and ``ContentDistribution`` join this module as their overlays land.
"""

from stt import DHTNode, KademliaDHT

__all__ = ["KademliaDHT", "DHTNode"]
