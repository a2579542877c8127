"""Retrievals of one content that overlap, and a store that changes under a
retrieval, in the simulator.

A content is fetched into the store once however many callers ask for it at
the same time: the first retrieval fetches, the others wait for it and end
with it (or take over when it is cancelled). A retrieval whose partial entry
the store drops meanwhile (the content removed, or added whole) opens it again
and goes on.
"""

from __future__ import annotations

import random

from stt_proto.content.tree import CHUNK_SIZE
from stt_proto.events import ContentRetrievalFailed, ContentRetrieved
from tests.helpers.content_sim import ContentNet

SIZE = 12 * CHUNK_SIZE + 77
CHUNKS = 13


def setup(seed: int = 5):
    net = ContentNet(seed, content={"stall_timeout": 2.0})
    publisher = net.add()
    retriever = net.add(bootstrap=publisher)
    data = random.Random(seed).randbytes(SIZE)
    content_id = net.publish(publisher, data)
    net.run(1.0)
    return net, publisher, retriever, data, content_id


def served(member) -> int:
    return member.content.stats["requests_served"]


def run_until_some_chunks(net, member, retrieval, chunks: int = 3) -> None:
    net.net.run(until=net.net.now + 30,
                stop=lambda: retrieval.done_bytes >= chunks * CHUNK_SIZE)
    assert 0 < retrieval.done_bytes < SIZE


def test_a_second_retrieval_waits_for_the_first_and_nothing_is_fetched_twice():
    net, publisher, retriever, data, content_id = setup()
    first = net.retrieve(retriever, content_id)
    second = net.retrieve(retriever, content_id)
    assert type(net.wait(retriever, first)) is ContentRetrieved
    assert type(net.wait(retriever, second)) is ContentRetrieved
    assert retriever.store.read(content_id) == data
    assert served(publisher) == CHUNKS
    assert retriever.content.stats["retrievals_joined"] == 1
    assert retriever.content.retrievals() == []
    # The waiting one was told of the progress too, with the first one's figures.
    assert {e.retrieval_id for e in retriever.progress} == {first.id, second.id}
    assert max(e.done_bytes for e in retriever.progress if e.retrieval_id == second.id) == SIZE


def test_when_the_first_is_cancelled_the_second_takes_over_from_its_chunks():
    net, publisher, retriever, data, content_id = setup()
    first = net.retrieve(retriever, content_id)
    second = net.retrieve(retriever, content_id)
    run_until_some_chunks(net, retriever, first)
    kept = first.done_bytes
    retriever.node.call(lambda host, now: retriever.content.cancel(first.id, now=now))
    assert net.wait(retriever, first).reason == "cancelled"
    assert type(net.wait(retriever, second)) is ContentRetrieved
    assert retriever.store.read(content_id) == data
    # Chunks verified before the cancel are not fetched again; those in
    # flight at the cancel may be.
    assert served(publisher) <= CHUNKS + retriever.content.config.initial_depth
    assert retriever.store.stats["store_resume_chunks_kept"] >= kept // CHUNK_SIZE


def test_a_waiting_retrieval_cancelled_leaves_the_first_running():
    net, publisher, retriever, data, content_id = setup()
    first = net.retrieve(retriever, content_id)
    second = net.retrieve(retriever, content_id)
    retriever.node.call(lambda host, now: retriever.content.cancel(second.id, now=now))
    assert net.wait(retriever, second).reason == "cancelled"
    assert type(net.wait(retriever, first)) is ContentRetrieved
    assert retriever.store.read(content_id) == data


def test_a_retrieval_to_another_file_starts_when_the_first_ends(tmp_path):
    net, publisher, retriever, data, content_id = setup()
    one, two = tmp_path / "one", tmp_path / "two"
    first = net.retrieve(retriever, content_id, path=str(one))
    second = net.retrieve(retriever, content_id, path=str(two))
    assert type(net.wait(retriever, first)) is ContentRetrieved
    assert second.state in ("finding", "fetching", "done")  # started, not failed with it
    assert type(net.wait(retriever, second)) is ContentRetrieved
    assert one.read_bytes() == data and two.read_bytes() == data


def test_a_failure_ends_the_retrievals_waiting_for_it():
    net, publisher, retriever, _, _ = setup()
    missing = bytes(range(32))          # nobody provides it
    first = net.retrieve(retriever, missing)
    second = net.retrieve(retriever, missing)
    end = net.wait(retriever, first)
    assert type(end) is ContentRetrievalFailed and end.reason == "no_providers"
    assert net.wait(retriever, second).reason == "no_providers"
    assert retriever.content.retrievals() == []


def test_the_content_removed_mid_retrieval_is_fetched_again_not_lost():
    net, publisher, retriever, data, content_id = setup()
    retrieval = net.retrieve(retriever, content_id)
    run_until_some_chunks(net, retriever, retrieval)
    assert retriever.store.remove(content_id)         # the partial goes with it
    assert type(net.wait(retriever, retrieval)) is ContentRetrieved
    assert retriever.store.read(content_id) == data


def test_the_content_added_whole_mid_retrieval_ends_it():
    net, publisher, retriever, data, content_id = setup()
    retrieval = net.retrieve(retriever, content_id)
    run_until_some_chunks(net, retriever, retrieval)
    retriever.store.add_bytes(data)                  # published locally meanwhile
    assert type(net.wait(retriever, retrieval)) is ContentRetrieved
    assert retriever.store.read(content_id) == data
    assert served(publisher) < CHUNKS
