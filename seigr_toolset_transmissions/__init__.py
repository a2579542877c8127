"""STT under the name the original STT manual imports: ``seigr_toolset_transmissions``.

The distribution is published as ``seigr-toolset-transmissions`` (the name ``stt`` on
the package index belongs to an unrelated speech-to-text library). This package
re-exports the asyncio API of :mod:`stt`, so code written against the manual runs
as written::

    from seigr_toolset_transmissions import Node

The DHT names are in ``seigr_toolset_transmissions.dht`` as the manual imports
them (``KademliaDHT``, ``PubSubManager``; content distribution joins as it lands).
"""

from stt import *  # noqa: F403 - the same names, by design
from stt import __all__ as _stt_all

__all__ = list(_stt_all)
