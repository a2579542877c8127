"""PubSubManager on both adapters, over real UDP sockets on 127.0.0.1.

Each test runs on asyncio and on trio (anyio's pytest plugin) with the same body.
"""

from __future__ import annotations

import anyio
import pytest

import stt_io.asyncio
import stt_io.trio
from stt_io.errors import MessageTooLargeError, NodeStoppedError
from stt_proto.identity import Identity
from stt_proto.pubsub.messages import message_id, topic_key

SEED = b"pubsub adapter test network seed"
# Short timings: a heartbeat every 0.2 s, lookups again after 1 s at most.
FAST = dict(heartbeat=0.2, want_timeout=0.3, repair_window=3.0, discovery_interval=1.0)

pytestmark = pytest.mark.anyio



class Swarm:
    """``count`` DHT members on loopback, bootstrapped through the first, each
    with a PubSubManager (not yet attached: the first call attaches it)."""

    def __init__(self, stt, count: int, **pubsub) -> None:
        self.dhts = [stt.KademliaDHT(identity=Identity.generate(), shared_seed=SEED,
                                     host="127.0.0.1", port=0) for _ in range(count)]
        self.pubsubs = [stt.PubSubManager(dht=dht, **{**FAST, **pubsub}) for dht in self.dhts]

    async def __aenter__(self):
        for dht in self.dhts:
            await dht.start()
        first = self.dhts[0]
        for dht in self.dhts[1:]:
            await dht.bootstrap([(first.node.address, first.node_id)], timeout=10)
        return self

    async def __aexit__(self, *exc_info):
        for pubsub in self.pubsubs:
            await pubsub.stop()
        for dht in self.dhts:
            await dht.stop()


async def wait_for(condition, step: float = 0.02) -> None:
    while not condition():
        await anyio.sleep(step)


async def test_manual_pattern_as_written(stt):
    with anyio.fail_after(15):
        async with Swarm(stt, 3) as swarm:
            DHTNode = stt.DHTNode
            received = []

            def handle_data(topic: str, data: bytes, publisher: DHTNode):
                received.append((topic, data, publisher))

            dht = swarm.dhts[1]
            pubsub = stt.PubSubManager(dht=dht)
            await pubsub.subscribe('sensor_data', handle_data)

            dht = swarm.dhts[2]
            pubsub = stt.PubSubManager(dht=dht)
            sensor_reading_bytes = b"21.5 C"
            mid = await pubsub.publish('sensor_data', sensor_reading_bytes)

            await wait_for(lambda: received)
            topic, data, publisher = received[0]
            assert (topic, data) == ('sensor_data', sensor_reading_bytes)
            assert isinstance(publisher, DHTNode)
            assert publisher.node_id == dht.node_id
            assert publisher.address[1] == dht.node.address[1]
            assert len(mid) == 32 and mid == message_id(
                topic_key('sensor_data'), dht.node_id, pubsub.engine.epoch, 1)
            assert pubsub.topics() == []  # publishing does not subscribe


def test_manual_import_path():
    from seigr_toolset_transmissions.dht import DHTNode, KademliaDHT, PubSubManager
    assert PubSubManager is stt_io.asyncio.PubSubManager
    assert KademliaDHT is stt_io.asyncio.KademliaDHT and DHTNode is stt_io.asyncio.DHTNode


async def test_plain_async_and_pull_subscribers_each_get_every_message_once_in_order(stt):
    count = 100
    with anyio.fail_after(30):
        async with Swarm(stt, 5) as swarm:
            publisher_dht = swarm.dhts[4]
            plain, awaited, pulled = [], [], []
            order = []  # an async handler runs one message at a time

            def on_plain(topic, data, publisher):
                plain.append((topic, data, publisher.node_id))

            async def on_async(topic, data, publisher):
                order.append("start")
                await anyio.sleep(0)
                awaited.append((topic, data, publisher.node_id))
                order.append("end")

            await swarm.pubsubs[1].subscribe("readings", on_plain)
            await swarm.pubsubs[2].subscribe("readings", on_async)

            async def pull(task_status=anyio.TASK_STATUS_IGNORED):
                async with swarm.pubsubs[3].subscription("readings") as sub:
                    task_status.started()
                    async for message in sub:
                        assert isinstance(message, stt.TopicMessage), message
                        pulled.append(message)
                        if len(pulled) == count:
                            return

            async with anyio.create_task_group() as tg:
                await tg.start(pull)
                ids = [await swarm.pubsubs[4].publish("readings", b"reading %d" % i)
                       for i in range(count)]
            await wait_for(lambda: len(plain) == count and len(awaited) == count)

            expected = [("readings", b"reading %d" % i, publisher_dht.node_id)
                        for i in range(count)]
            assert plain == expected
            assert awaited == expected
            assert [(m.topic, m.data, m.publisher.node_id) for m in pulled] == expected
            assert [m.message_id for m in pulled] == ids
            assert [m.seq for m in pulled] == list(range(1, count + 1))
            assert order == ["start", "end"] * count
            await anyio.sleep(0.3)  # nothing more comes: each message once
            assert len(plain) == len(awaited) == count
            assert swarm.pubsubs[4].topics() == []
            assert {p.node_id for p in swarm.pubsubs[4].peers("readings")} <= \
                {d.node_id for d in swarm.dhts[1:4]}
            for pubsub in swarm.pubsubs[1:4]:
                stats = pubsub.statistics()
                assert stats["messages_delivered"] == count
                assert stats["handler_overflow"] == stats["messages_lost"] == 0
            assert swarm.pubsubs[4].statistics()["messages_published"] == count


async def test_too_large_raises_before_anything_is_sent(stt):
    with anyio.fail_after(15):
        async with Swarm(stt, 2, max_message_size=100) as swarm:
            pubsub = swarm.pubsubs[1]
            with pytest.raises(MessageTooLargeError, match="max_message_size"):
                await pubsub.publish("t", b"x" * 101)
            with pytest.raises(MessageTooLargeError):
                await pubsub.publish(None, bytearray(101))  # size first, then the rest
            with pytest.raises(TypeError):
                await pubsub.publish("t", "text")
            with pytest.raises(TypeError):
                await pubsub.publish(b"topic", b"data")
            with pytest.raises(ValueError):
                await pubsub.publish("", b"data")
            with pytest.raises(NodeStoppedError):
                pubsub.engine  # noqa: B018 - nothing was even attached
            assert swarm.dhts[1].node._engine.pubsub is None
            await pubsub.publish("t", b"x" * 100)
            assert pubsub.statistics()["messages_published"] == 1


async def test_unsubscribe_stops_delivery(stt):
    with anyio.fail_after(20):
        async with Swarm(stt, 4) as swarm:
            leaving, staying = [], []
            await swarm.pubsubs[1].subscribe("news", lambda t, d, p: leaving.append(d))
            await swarm.pubsubs[2].subscribe("news", lambda t, d, p: staying.append(d))
            await swarm.pubsubs[3].publish("news", b"one")
            await wait_for(lambda: leaving == [b"one"] and staying == [b"one"])
            await swarm.pubsubs[1].unsubscribe("news")
            assert swarm.pubsubs[1].topics() == []
            for data in (b"two", b"three"):
                await swarm.pubsubs[3].publish("news", data)
            await wait_for(lambda: staying == [b"one", b"two", b"three"])
            await anyio.sleep(0.5)
            assert leaving == [b"one"]


async def test_unsubscribe_one_handler_keeps_the_others(stt):
    with anyio.fail_after(20):
        async with Swarm(stt, 3) as swarm:
            first, second = [], []

            def on_first(topic, data, publisher):
                first.append(data)

            async def on_second(topic, data, publisher):
                second.append(data)

            pubsub = swarm.pubsubs[1]
            await pubsub.subscribe("news", on_first)
            await pubsub.subscribe("news", on_first)  # the same handler is one handler
            await pubsub.subscribe("news", on_second)
            await swarm.pubsubs[2].publish("news", b"one")
            await wait_for(lambda: first and second)
            await pubsub.unsubscribe("news", on_second)
            assert pubsub.topics() == ["news"]
            await swarm.pubsubs[2].publish("news", b"two")
            await wait_for(lambda: len(first) == 2)
            await anyio.sleep(0.2)
            assert first == [b"one", b"two"] and second == [b"one"]


async def test_full_pull_queue_reports_an_overflow_gap_in_place(stt):
    with anyio.fail_after(20):
        async with Swarm(stt, 3) as swarm:
            async with swarm.pubsubs[1].subscription("fast", max_queue=5) as sub:
                for i in range(20):
                    await swarm.pubsubs[2].publish("fast", b"%d" % i)
                await wait_for(lambda: sub.missed == 15)
                items = [await sub.receive() for _ in range(6)]
                assert [m.data for m in items[:5]] == [b"%d" % i for i in range(5)]
                gap = items[5]
                assert isinstance(gap, stt.TopicGap)
                assert (gap.topic, gap.count, gap.reason) == ("fast", 15, "overflow")
                assert gap.publisher.node_id == swarm.dhts[2].node_id
                await swarm.pubsubs[2].publish("fast", b"after")
                assert (await sub.receive()).data == b"after"
                assert swarm.pubsubs[1].statistics()["handler_overflow"] == 15
            assert swarm.pubsubs[1].topics() == []


async def test_a_slow_async_handler_hears_of_its_overflow_through_on_gap(stt):
    with anyio.fail_after(20):
        async with Swarm(stt, 3, max_queue=4) as swarm:
            release = anyio.Event()
            handled, gaps = [], []

            async def slow(topic, data, publisher):
                await release.wait()
                handled.append(data)

            def on_gap(topic, publisher, count):
                gaps.append((topic, publisher.node_id, count, len(handled)))

            await swarm.pubsubs[1].subscribe("t", slow, on_gap=on_gap)
            for i in range(10):
                await swarm.pubsubs[2].publish("t", b"%d" % i)
            await wait_for(lambda: swarm.pubsubs[1].statistics()["messages_delivered"] == 10)
            # Four queued, perhaps one in the handler's hands already, the rest
            # had no room: reported after the ones that had.
            overflow = swarm.pubsubs[1].statistics()["handler_overflow"]
            assert overflow in (5, 6)
            release.set()
            await wait_for(lambda: gaps)
            assert handled == [b"%d" % i for i in range(10 - overflow)]
            assert gaps == [("t", swarm.dhts[2].node_id, overflow, 10 - overflow)]
            await swarm.pubsubs[2].publish("t", b"after")
            await wait_for(lambda: len(handled) == 11 - overflow)
            assert handled[-1] == b"after"


async def test_handler_exception_is_logged_and_delivery_goes_on(stt, caplog):
    with anyio.fail_after(15):
        async with Swarm(stt, 3) as swarm:
            got = []

            def flaky(topic, data, publisher):
                got.append(data)
                if data == b"bad":
                    raise RuntimeError("application bug")

            await swarm.pubsubs[1].subscribe("t", flaky)
            for data in (b"bad", b"good"):
                await swarm.pubsubs[2].publish("t", data)
            await wait_for(lambda: len(got) == 2)
            assert got == [b"bad", b"good"]
            assert swarm.pubsubs[1].statistics()["handler_errors"] == 1
            assert "application bug" in caplog.text


async def test_publish_and_subscriptions_after_node_stop_raise(stt):
    with anyio.fail_after(15):
        async with Swarm(stt, 2) as swarm:
            pubsub = swarm.pubsubs[1]
            errors = []

            async def read(task_status=anyio.TASK_STATUS_IGNORED):
                async with pubsub.subscription("t") as sub:
                    task_status.started()
                    try:
                        await sub.receive()
                    except NodeStoppedError as exc:
                        errors.append(exc)

            async with anyio.create_task_group() as tg:
                await tg.start(read)
                await swarm.dhts[1].node.stop()
            assert len(errors) == 1
            with pytest.raises(NodeStoppedError):
                await pubsub.publish("t", b"data")
            with pytest.raises(NodeStoppedError):
                await pubsub.subscribe("t", lambda *a: None)


async def test_a_dht_not_started_is_a_clear_error(stt):
    dht = stt.KademliaDHT(identity=Identity.generate(), shared_seed=SEED, host="127.0.0.1",
                          port=0)
    pubsub = stt.PubSubManager(dht=dht)
    with pytest.raises(NodeStoppedError, match="start the DHT"):
        await pubsub.publish("t", b"data")
    with pytest.raises(ValueError):
        stt.PubSubManager(dht=dht, mesh_degree=0)


async def test_statistics_keys(stt):
    with anyio.fail_after(15):
        async with Swarm(stt, 3) as swarm:
            await swarm.pubsubs[1].subscribe("t", lambda *a: None)
            await swarm.pubsubs[2].subscribe("t", lambda *a: None)
            stats = swarm.pubsubs[1].statistics()
            for key in ("messages_published", "messages_delivered", "messages_forged",
                        "mesh_grafted", "queue_full", "handler_calls", "handler_errors",
                        "handler_overflow", "gaps_lost", "messages_lost", "publish_waits",
                        "topics", "mesh_peers"):
                assert key in stats, key
            assert stats["topics"] == 1
            await wait_for(lambda: swarm.pubsubs[1].statistics()["mesh_peers"] == 1)
            assert [p.node_id for p in swarm.pubsubs[1].peers("t")] == [swarm.dhts[2].node_id]


async def test_flush_waits_until_every_peer_acknowledged(stt):
    """``flush`` returns once nothing published is queued or unacknowledged;
    stopping right after it loses nothing."""
    with anyio.fail_after(20):
        async with Swarm(stt, 3) as swarm:
            got = []
            await swarm.pubsubs[1].subscribe("flush", lambda t, d, p: got.append(d))
            publisher = swarm.pubsubs[2]
            for i in range(200):
                await publisher.publish("flush", b"%d" % i + b"." * 1000)
            host = swarm.dhts[2].node._engine
            assert host.pubsub_unsettled()  # 200 kB cannot all be acknowledged yet
            assert await publisher.flush(timeout=10)
            assert not host.pubsub_unsettled()
            await publisher.stop()
            await swarm.dhts[2].stop()
            await wait_for(lambda: len(got) == 200)
            assert got == [b"%d" % i + b"." * 1000 for i in range(200)]
