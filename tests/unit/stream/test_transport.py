"""The worker transport's guards against events committed without reaching the agent (stream.transport)."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from aiokafka import TopicPartition
from faust.types import TP
from faust.types.tuples import Message

from stream.transport import OffsetWatch, worker_transport

EVENTS = TP("events", 0)


@pytest.fixture
def consumer() -> Any:
    app = faust.App("test-transport", broker="kafka://127.0.0.1:1", store="memory://")
    watch = OffsetWatch("events")
    transport_cls = worker_transport(50, None, None, watch)

    async def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    c = transport_cls.Consumer(transport_cls(app.conf.broker_consumer, app), callback=nothing,
                               on_partitions_revoked=nothing, on_partitions_assigned=nothing)
    app.topics.acking_topics.add("events")
    app.consumer_generation_id = 2
    app.flow_control.resume()
    c._committed_offset[EVENTS] = 10
    yield c, watch
    app.loop.close()


def message(offset: int, generation: int, tracked: bool) -> Message:
    m = Message("events", 0, offset, 0.0, 0, None, b"u1", b"{}", None, None, None, tp=EVENTS,
                generation_id=generation)
    m.tracked = tracked
    return m


def test_an_event_the_stream_skipped_for_an_old_generation_is_not_committable(consumer: Any) -> None:
    c, watch = consumer
    stale = message(10, generation=1, tracked=False)  # fetched before the last rebalance, skipped by the stream
    assert c.ack(stale) is False
    assert stale.acked  # the stream's bookkeeping is done ...
    assert c._acked[EVENTS] == [] and c._new_offset(EVENTS) is None  # ... but the commit does not pass it
    assert watch.skipped_acks == 1
    assert c.ack(message(10, generation=2, tracked=True)) is True  # read again in this generation: committable
    assert c._new_offset(EVENTS) == 11


def test_an_event_skipped_while_a_rebalance_suspends_the_flow_is_not_committable(consumer: Any) -> None:
    c, watch = consumer
    c.app.flow_control.suspend()
    assert c.ack(message(10, generation=2, tracked=False)) is False
    assert c.ack(message(11, generation=2, tracked=False)) is False
    assert c._acked[EVENTS] == []
    assert c.ack(message(12, generation=2, tracked=True)) is True  # delivered before the suspension: processed
    # 10 and 11 are missing: nothing committed (Faust lets one offset at the head pass, for a transaction marker)
    assert c._new_offset(EVENTS) is None
    assert watch.skipped_acks == 2


def test_an_untracked_ack_in_the_current_generation_counts(consumer: Any) -> None:
    c, _ = consumer  # e.g. Faust's conductor acking an undecodable message: it was handled, commit past it
    assert c.ack(message(10, generation=2, tracked=False)) is True
    assert c._new_offset(EVENTS) == 11


def test_a_batch_the_agent_did_not_finish_is_not_committable(consumer: Any) -> None:
    """take_events acks a batch as its generator closes, also when the agent was cancelled in the middle of it (a
    worker stopping): the events agent holds the batch back first, and those acks are not recorded."""
    c, _ = consumer
    done, unfinished = message(10, generation=2, tracked=True), [message(n, generation=2, tracked=True)
                                                                 for n in (11, 12)]
    assert c.ack(done) is True
    c.hold_back(unfinished)
    assert [c.ack(m) for m in unfinished] == [False, False]
    assert all(m.acked for m in unfinished) and c._acked[EVENTS] == [10]
    assert c._new_offset(EVENTS) == 11  # the commit stops below the unfinished batch
    again = message(11, generation=2, tracked=True)  # the offset read again (a restart, the next owner): counts
    assert c.ack(again) is True and c._new_offset(EVENTS) == 12


def test_offset_watch_reports_the_ranges_a_batch_skipped() -> None:
    w = OffsetWatch("events")
    w.sought({EVENTS: 100, TP("events", 1): None, TP("items", 0): 5})
    assert w.expected == {0: 100}
    assert w.batch({0: [100, 101, 105, 106], 1: [7, 8]}) == [(0, 102, 104)]
    assert w.expected == {0: 107, 1: 9}
    assert w.batch({0: [103, 107], 1: [12]}) == [(1, 9, 11)]  # a redelivery below the position is no gap
    assert w.expected == {0: 108, 1: 13}
    w.revoked({EVENTS})
    assert w.batch({0: [500]}) == [] and w.expected == {0: 501, 1: 13}  # unknown start after a revoke
    w.revoked({EVENTS, TP("events", 1)})
    w.sought({EVENTS: 480, TP("events", 1): 13})  # kept: events 480-500 were taken before the rebalance
    assert w.expected == {0: 501, 1: 13}
    w.revoked({EVENTS})
    w.sought({TP("events", 1): 13})  # partition 0 went to another worker: forgotten
    w.sought({EVENTS: 520})
    assert w.expected == {0: 520, 1: 13}


def test_partitions_sought_after_a_rebalance_hand_nothing_on_until_faust_resumes_the_flow(consumer: Any) -> None:
    """Faust resumes the partitions, seeks them, then clears the agents' queues and resumes the flow: what was
    fetched in between was handed on, cleared unprocessed, and never read again (the Kafka loss this guards)."""
    c, watch = consumer
    items = TP("items", 0)
    c.assignment = lambda: {EVENTS, items}
    c.resume_partitions({EVENTS, items})  # as Faust's _resume_streams does just before perform_seek
    active_while_seeking: list[set[TP]] = []

    async def seek_to_committed() -> dict[TP, int]:
        active_while_seeking.append(set(c._get_active_partitions()))
        return {EVENTS: 40, items: 3}

    c.seek_to_committed = seek_to_committed
    asyncio.run(c.perform_seek())
    assert active_while_seeking == [set()]
    assert c._get_active_partitions() == set()  # still held after the seek: the queues are not cleared yet
    assert watch.expected == {0: 40}
    c._read_offset[EVENTS] = 99  # the fetch loop finishes handing on a record fetched before the seek
    c.resume_flow()
    assert c._get_active_partitions() == {EVENTS, items}
    assert c._read_offset[EVENTS] == 40  # else 40..98, fetched again, are dropped as read already


def test_a_partition_revoked_while_held_is_not_resumed(consumer: Any) -> None:
    c, _ = consumer
    c.assignment = lambda: {EVENTS}
    c.resume_partitions({EVENTS})

    async def seek_to_committed() -> dict[TP, int]:
        return {EVENTS: 40}

    c.seek_to_committed = seek_to_committed
    asyncio.run(c.perform_seek())
    c.assignment = lambda: set()
    c.resume_flow()
    assert c._get_active_partitions() == set()


class FetchedDuringTheSeek:
    """The consumer's thread, as far as perform_seek and the fetch loop use it: a fetch sent before the pause
    answers while the partitions are sought (records the fetcher moved past)."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int]] = []
        self.answer: asyncio.Event | None = None

    async def getmany(self, active: Any, timeout: float) -> dict[TP, list[Any]]:
        assert self.answer is not None
        await self.answer.wait()
        return {EVENTS: [type("Record", (), {"offset": o})() for o in range(40, 46)]}

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def seek_to_beginning(self, *partitions: Any) -> None:
        assert all(isinstance(tp, TopicPartition) for tp in partitions), partitions  # as aiokafka demands
        self.seeks.extend((tp, 0) for tp in partitions)


@pytest.mark.parametrize("committed", [40, None])
def test_records_a_fetch_returns_during_the_seek_are_sought_again_once_handed_on(consumer: Any,
                                                                                committed: int | None) -> None:
    c, _ = consumer
    thread = c._thread = FetchedDuringTheSeek()
    c.assignment = lambda: {EVENTS}
    c.resume_partitions({EVENTS})
    c.resume_flow()

    async def go() -> None:
        thread.answer = asyncio.Event()

        async def fetch_loop() -> list[Any]:
            return [m async for m in c.getmany(timeout=1.0)]

        fetching = asyncio.create_task(fetch_loop())
        await asyncio.sleep(0.01)  # the fetch is sent, with the partition active

        async def seek_to_committed() -> dict[TP, int]:
            thread.answer.set()  # ... and answers while the partition is paused for the seek
            await asyncio.sleep(0.01)
            return {EVENTS: committed}  # None: nobody committed, read from the beginning

        c.seek_to_committed = seek_to_committed
        await c.perform_seek()
        assert await fetching == []  # Faust dropped them: paused
        assert thread.seeks == [(EVENTS, committed or 0)]  # so the fetcher goes back where the seek meant it to be

    asyncio.run(go())
