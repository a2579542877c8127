"""Publish-subscribe over the DHT: sensor readings to every subscriber, once and in order.

Five DHT members on this machine: one everybody bootstraps through, three
subscribers of the topic 'sensor_data' (the manual's plain handler, an async
handler and a pull subscription read with ``async for``) and a sensor that
publishes readings without subscribing: it finds the subscribers through the
DHT. Each subscriber checks that it got every reading once, in order, signed
by the sensor.

Run: python examples/pubsub.py [--count N] [--seed TEXT]
The network seed comes from --seed or STT_SEED; without either, a random seed is
generated for this run (every member lives in this process).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import time

from _common import argument_parser, run
from seigr_toolset_transmissions.dht import DHTNode, KademliaDHT, PubSubManager

import stt

READING = struct.Struct("!Id")  # reading number, temperature


def member(seed: bytes) -> KademliaDHT:
    return KademliaDHT(identity=stt.Identity.generate(), shared_seed=seed, host="127.0.0.1",
                       port=0)


async def main(args: argparse.Namespace) -> int:
    dhts = [member(args.seed) for _ in range(5)]
    for dht in dhts:
        await dht.start()
    first = dhts[0]
    for dht in dhts[1:]:
        await dht.bootstrap([(first.node.address, first.node_id)])
    print(f"{len(dhts)} DHT members up, bootstrapped through {first.node_id.hex()[:16]}...")
    sensor_dht = dhts[4]
    pubsubs = [PubSubManager(dht=dht) for dht in dhts]
    received: dict[str, list[tuple[int, bytes]]] = {"plain": [], "async": [], "pull": []}

    # The manual's subscriber, as written there.
    def handle_data(topic: str, data: bytes, publisher: DHTNode):
        number, celsius = READING.unpack(data)
        received["plain"].append((number, publisher.node_id))
        if number < 3:
            print(f"  plain handler: {topic} #{number} {celsius:.1f} C from {publisher}")

    async def handle_slowly(topic: str, data: bytes, publisher: DHTNode):
        await asyncio.sleep(0)  # an async handler sees one message at a time
        received["async"].append((READING.unpack(data)[0], publisher.node_id))

    await pubsubs[1].subscribe("sensor_data", handle_data)
    await pubsubs[2].subscribe("sensor_data", handle_slowly)

    async def pull() -> None:
        async with pubsubs[3].subscription("sensor_data") as sub:
            subscribed.set()
            async for item in sub:
                if isinstance(item, stt.TopicGap):
                    print(f"  pull: {item.count} readings will not come ({item.reason})")
                    continue
                received["pull"].append((READING.unpack(item.data)[0], item.publisher.node_id))
                if len(received["pull"]) == args.count:
                    return

    subscribed = asyncio.Event()
    reader = asyncio.create_task(pull())
    await subscribed.wait()
    print("3 subscribers joined 'sensor_data'; the sensor does not subscribe")

    sensor = pubsubs[4]
    started = time.perf_counter()
    for number in range(args.count):
        sensor_reading_bytes = READING.pack(number, 20.0 + number / 10)
        message_id = await sensor.publish("sensor_data", sensor_reading_bytes)
        if number == 0:
            print(f"sensor published #0, message id {message_id.hex()[:16]}...")
    await asyncio.wait_for(reader, 10)
    while min(len(got) for got in received.values()) < args.count and \
            time.perf_counter() - started < 10:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    print(f"sensor published {args.count} readings to {len(sensor.peers('sensor_data'))} "
          f"subscriber(s) it found in the DHT")

    expected = [(number, sensor_dht.node_id) for number in range(args.count)]
    failures = 0
    for name, got in received.items():
        ok = got == expected
        failures += not ok
        print(f"  {name:6} subscriber: {len(got)} readings, every one once, in order, "
              f"from the sensor: {ok}")
    print(f"delivered {3 * args.count} messages in {elapsed * 1000:.0f} ms")
    stats = pubsubs[1].statistics()
    print(f"subscriber statistics: delivered {stats['messages_delivered']}, "
          f"duplicate copies dropped {stats['messages_duplicate']}, "
          f"lost {stats['messages_lost']}")

    for pubsub in pubsubs:
        await pubsub.stop()
    for dht in dhts:
        await dht.stop()
    if failures:
        print(f"FAILED: {failures} subscriber(s) missed or reordered readings")
        return 1
    print("pub/sub OK")
    return 0


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--count", type=int, default=50, help="readings to publish")
    run(main, parser)
