"""Per-path datagram size (``EndpointConfig.path_max_datagram_size``)."""

from __future__ import annotations

import pytest

from stt_io.asyncio import loopback_datagram_size
from stt_proto.endpoint import Endpoint
from stt_proto.events import MessageReceived
from stt_proto.testing import Link, Network

from ..helpers.sim_streams import connect


def _big(address):
    return 16384


@pytest.mark.parametrize(("a_path", "b_path", "expected"), [
    (None, None, 1452),          # nobody knows better: the configured size
    (_big, _big, 16384),          # both sides know the path carries more
    (_big, None, 1452),          # the peer announces only 1452: that caps us
])
def test_sessions_use_the_smaller_of_both_paths(a_path, b_path, expected):
    net = Network(seed=2)
    a = net.add_node("a", path_max_datagram_size=a_path)
    b = net.add_node("b", path_max_datagram_size=b_path)
    # The link drops (and counts) any datagram above the expected size.
    link_ab, _ = net.connect_nodes(a, b, Link(latency=0.005, bandwidth=1e9, mtu=expected))
    sa, sb = connect(net, a, b)
    payload = bytes(range(256)) * 4000
    a.call(Endpoint.send_message, sa, 1, payload)
    net.run(until=net.now + 2)
    assert [e.data for e in b.events_of(MessageReceived)] == [payload]
    assert a.endpoint.session_statistics(sa)["congestion_window"] > 0
    assert a.endpoint.max_datagram_payload(sa) == expected - 13 - 16 - 1 - 2
    stats = link_ab.statistics()
    assert stats["mtu_drops"] == 0
    # ... and the bulk of the transfer used datagrams of about that size.
    assert stats["bytes_delivered"] / stats["delivered"] > 0.8 * expected


def test_the_loopback_rule():
    assert loopback_datagram_size(("127.0.0.1", 4000)) == 65507
    assert loopback_datagram_size(("::1", 4000)) == 65507
    assert loopback_datagram_size(("192.0.2.1", 4000)) is None
    assert loopback_datagram_size(("not an address", 1)) is None
