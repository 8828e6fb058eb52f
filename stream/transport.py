"""Faust's aiokafka transport adjusted for the embedded broker (both settings are harmless against Kafka).

* **Fetch wait.** faust-streaming 0.15.3 hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. Apache Kafka
  answers a fetch as soon as data arrives; Tansu 0.6.0 holds every fetch for the full wait (measured: ~750 ms
  mean delivery delay at 1,500 ms, ~5 ms at 50 ms), which became event->recommendation latency.
* **Rewind after the committed-offset seek.** Faust seeks every assigned partition to its committed offset when
  recovery ends (``Consumer.perform_seek``); ``rewind`` then may move some partitions further back (the worker
  uses it to re-learn events its resumed model missed). Faust delivers every offset at or after a seek and
  commits only offsets above the committed one, so the re-read events are acknowledged without moving commits
  backwards.
* **A partition nobody committed is read from its beginning.** aiokafka's ``seek_to_committed`` seeks only
  partitions with a committed offset above 0 and leaves the others where the fetcher stands. Faust drops the
  records it fetched when a rebalance or a recovery pause interrupts a fetch (``Consumer.getmany`` breaks off on a
  new generation) and then relies on that seek to fetch them again: a partition with no committed offset yet
  (another worker owned it and had not committed) was then read on from past the dropped records, which were
  never processed (seen on Apache Kafka: nine catalog items a second worker waited for until ``catalog_wait_s``).
  Such partitions are sought to their beginning, which is what ``auto_offset_reset="earliest"`` promises.
* **Nothing handed on while the positions change.** After a rebalance Faust resumes the assigned partitions,
  then seeks them to their committed offsets (``perform_seek``), then clears the agents' queues as it resumes the
  flow. Records fetched in that window were handed on, cleared from the queues unprocessed, and the consumer's
  read offset had passed them, so the records fetched again from the committed offset were dropped as already
  read, or the jump was recorded as a gap and committed over (seen on Apache Kafka with two workers: up to 1,700
  events per run committed without an answer). ``perform_seek`` here pauses the partitions it seeks and
  ``resume_flow`` (which Faust calls after clearing the queues) resumes them, first setting their read offsets
  back to where the seek left them (a record the fetch loop was handing on during the seek sets its own after).
* **No commit past an event no agent saw.** Faust's streams ack the messages they skip because they were fetched
  under an earlier consumer generation (a rebalance came between fetch and delivery) or arrived while a rebalance
  had suspended the flow. Recording those acks moved the committed offset past events that were never processed
  (seen on Apache Kafka with two workers: hundreds of events per kill committed without an answer). The consumer
  here marks such messages acked without recording their offsets, so the committed offset stops below them and
  the next owner of the partition reads them again.
* **No commit past a batch the agent did not finish.** ``Stream.take_events`` acks a batch's events in a
  ``finally`` after its ``yield``, which also runs when the agent is cancelled in the middle of the batch (the
  worker stopping): the commit Faust makes as the consumer stops then passed events whose answers were never sent
  (seen on Tansu: a second worker stopped a second after it joined left 1-149 of 2,000 events unanswered in 9 of
  14 runs). The events agent hands such a batch to ``hold_back``; their acks are not recorded.
* **Gaps are watched.** ``watch`` (an :class:`OffsetWatch`) learns where each events partition was sought to and
  is shown every batch; an offset range that never reached the agent is logged and counted, so an operator sees a
  loss instead of guessing it from lag.
* **High watermarks.** Tansu 0.6.0 reports a partition's end offset as the base offset of its last record batch
  + 1, not the last offset + 1. Faust's table recovery reads changelogs only up to that number, so the tail of
  the last batch was silently not restored (seen: 23 of 24 catalog items after losing local state). With
  ``probe_highwaters`` the consumer reads the tail after the reported end and returns the true end offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ack_lock

from connectors.kafka import true_highwaters
from stream.records import dead_letter_undecodable

log = logging.getLogger(__name__)

Rewind = Callable[[dict[Any, int]], Mapping[Any, int]]


class OffsetWatch:
    """Where each watched partition's next offset should be: set when the consumer seeks (the end of every
    rebalance's recovery), moved on by every batch. :meth:`batch` answers the offset ranges a batch skipped."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.expected: dict[int, int] = {}  # partition -> next offset the agent should see
        self.revoked_at: dict[int, int] = {}  # partition -> its expected offset when the last rebalance began
        self.skipped_acks = 0  # skipped messages whose ack was not recorded (the consumer's count)

    def sought(self, positions: Mapping[Any, int | None]) -> None:
        """The consumer sought these partitions (topic-partition -> offset; None: position unknown). A partition
        this worker kept through the rebalance may have had events taken before the rebalance and processed after
        it, above the offset committed: the next batch starts after those."""
        before, self.revoked_at = self.revoked_at, {}
        for tp, offset in positions.items():
            if tp.topic != self.topic:
                continue
            if offset is None:
                self.expected.pop(tp.partition, None)
            else:
                self.expected[tp.partition] = max(offset, before.get(tp.partition, offset))

    def revoked(self, partitions: Any) -> None:
        for tp in partitions:
            if tp.topic == self.topic and tp.partition in self.expected:
                self.revoked_at[tp.partition] = self.expected.pop(tp.partition)

    def batch(self, offsets: Mapping[int, list[int]]) -> list[tuple[int, int, int]]:
        """Take a batch's offsets per partition (in delivery order); answer (partition, first, last) for every
        range of offsets that was expected and not delivered."""
        gaps = []
        for partition, seen in offsets.items():
            nxt = self.expected.get(partition)
            for offset in seen:
                if nxt is not None and offset > nxt:
                    gaps.append((partition, nxt, offset - 1))
                if nxt is None or offset >= nxt:
                    nxt = offset + 1
            if nxt is not None:
                self.expected[partition] = nxt
        return gaps


def worker_transport(fetch_max_wait_ms: int, probe_kwargs: dict[str, Any] | None,
                     rewind: Rewind | None = None, watch: OffsetWatch | None = None) -> type[faust_aiokafka.Transport]:
    """A Faust Transport whose worker consumer uses ``fetch_max_wait_ms``, given ``probe_kwargs`` (aiokafka
    connection arguments) corrects under-reported high watermarks, and given ``rewind`` (committed offsets of the
    assigned partitions -> where to start instead) re-reads partitions from before their committed offsets; given
    ``watch``, tells it where each partition was sought to."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        _probe: AIOKafkaConsumer | None = None

        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # noqa: SLF001 - read when the fetcher starts
            return consumer

        async def on_start(self) -> None:
            await super().on_start()
            # made by start(), nothing assigned or fetched yet: undecodable batches become dead letters from now on
            dead_letter_undecodable(self._consumer._fetcher)  # noqa: SLF001

        async def _highwaters(self, partitions: Any) -> Mapping[Any, int]:
            reported = await super()._highwaters(partitions)
            if probe_kwargs is None:
                return reported
            if self._probe is None:
                self._probe = AIOKafkaConsumer(**probe_kwargs, group_id=None, enable_auto_commit=False,
                                               fetch_max_wait_ms=20)
                await self._probe.start()
            return await true_highwaters(self._probe, reported)

        async def seek_to_committed(self) -> Mapping[Any, int]:
            return await self.call_thread(self._seek_to_committed_or_beginning)

        async def _seek_to_committed_or_beginning(self) -> Mapping[Any, int]:
            consumer = self._ensure_consumer()
            committed: Mapping[Any, int] = await consumer.seek_to_committed()
            fresh = [tp for tp, offset in committed.items() if not offset]  # none committed, or 0
            if fresh:
                await consumer.seek_to_beginning(*fresh)
            return committed

        async def on_thread_stop(self) -> None:
            if self._probe is not None:
                await self._probe.stop()
                self._probe = None
            await super().on_thread_stop()

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        _held: frozenset[Any] = frozenset()  # partitions perform_seek paused until the flow resumes
        _sought: dict[Any, int | None] = {}  # their read offsets as perform_seek left them
        _fetched: Any = None  # the records the fetch loop's last _wait_next_records returned
        _dropped: set[Any]  # partitions whose fetched records Faust did not hand on, since perform_seek began
        _handing_on: asyncio.Event  # clear from a fetch until its records are handed on (or dropped)
        _fetch_task: asyncio.Task[Any] | None = None  # the fetch loop's task

        _unfinished: set[tuple[Any, int]]  # (tp, offset) of events a batch left unprocessed: acks not recorded

        def on_init(self) -> None:
            super().on_init()
            self._unfinished = set()
            self._dropped = set()
            self._handing_on = asyncio.Event()
            self._handing_on.set()

        async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
            self._handing_on.clear()  # from the fetch to the end of handing its records on
            return await super()._getmany(active_partitions, timeout)

        async def _wait_next_records(self, timeout: float) -> Any:
            records, active = await super()._wait_next_records(timeout)
            self._fetched = records
            return records, active

        async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
            self._fetch_task = asyncio.current_task()
            self._fetched = None
            last: dict[Any, int] = {}
            try:
                async for tp, message in super().getmany(timeout):
                    last[tp] = message.offset
                    yield tp, message
                for tp, records in (self._fetched or {}).items():
                    if records and records[-1].offset > last.get(tp, -1):
                        self._dropped.add(tp)  # paused, or the flow stopped: the fetcher's position is past them
            finally:
                self._fetched = None
                self._handing_on.set()

        async def perform_seek(self) -> None:
            # Faust resumes the partitions before this seek and clears the agents' queues after it (its
            # flow_control.resume), so records fetched meanwhile from the old positions were handed on, then
            # cleared from the queues unprocessed, and the fetcher's read offset had passed them: they were never
            # read again, or were committed as a gap. Nothing is handed on from here until resume_flow.
            held = self._held | frozenset(self._get_active_partitions())
            self._held = held
            self.pause_partitions(held)
            self._dropped.clear()
            await super().perform_seek()
            assigned = self.assignment()
            committed = {tp: off for tp, off in self._committed_offset.items() if off is not None and tp in assigned}
            starts = dict(rewind(committed)) if rewind is not None else {}
            for tp, offset in starts.items():
                await self.seek(tp, offset)
            self._sought = sought = {tp: self._read_offset.get(tp) for tp in held}
            # A fetch sent before the pause may answer during these seeks: Faust drops its records (paused), and
            # the fetcher, asked to seek where it already stood, had kept them and moved past them. Once that
            # fetch is handed on (nothing new is fetched for held partitions), seek those partitions again.
            if asyncio.current_task() is not self._fetch_task:  # Faust also seeks from inside getmany
                try:
                    await asyncio.wait_for(self._handing_on.wait(), 5.0)
                except TimeoutError:
                    log.warning("consumer: the fetch loop is still handing on records 5 s after the seek")
            again = self._dropped & held & assigned
            self._dropped.clear()
            if again:
                log.info("consumer: records of %s fetched during the seek were dropped; seeking again", sorted(again))
                for tp in again:
                    if sought.get(tp) is not None:
                        await self.seek(tp, sought[tp])
                fresh = [tp for tp in again if sought.get(tp) is None]  # none committed: from the beginning
                if fresh:
                    await self._thread.seek_to_beginning(*(TopicPartition(tp.topic, tp.partition) for tp in fresh))
            if watch is not None:  # events re-read below the committed offset are extras, not what must come
                watch.sought({tp: committed.get(tp) for tp in assigned})  # none committed: log start, unknown

        def resume_flow(self) -> None:
            super().resume_flow()  # after Faust cleared the queues: now the partitions perform_seek held fetch
            held, self._held = self._held, frozenset()
            # a record the fetch loop was handing on while the seek ran sets its read offset after the seek's:
            # the records read again from the sought offset would be dropped as already read
            for tp, offset in self._sought.items():
                if tp in held:
                    self._read_offset[tp] = offset
            self._sought = {}
            self.resume_partitions(held & self.assignment())

        async def on_partitions_revoked(self, revoked: Any) -> None:
            self._held = self._held - frozenset(revoked)
            if watch is not None:
                watch.revoked(revoked)
            await super().on_partitions_revoked(revoked)

        def hold_back(self, messages: Any) -> None:
            """The events agent did not finish the batch of these messages (cancelled as the worker stops, or
            failed): the acks Faust's ``take_events`` gives them anyway as its generator closes are not recorded,
            so no commit passes them and the partition's next owner answers them."""
            held = [(m.tp, m.offset) for m in messages if not m.acked]
            with ack_lock:
                self._unfinished.update(held)
            if held:
                log.warning("events: a batch of %d events left unfinished (the worker stopping, or the agent "
                            "failed): not committed, the partitions' next owner answers them", len(held))

        def ack(self, message: Any) -> bool:
            if self._unfinished and (message.tp, message.offset) in self._unfinished:
                self._unfinished.discard((message.tp, message.offset))
                return self._not_committable(message)
            if not message.tracked and (message.generation_id != self.app.consumer_generation_id
                                        or not self.app.flow_control.is_active()):
                # skipped by the stream (see the module's doc)
                if watch is not None:
                    watch.skipped_acks += 1
                return self._not_committable(message)
            return bool(super().ack(message))

        def _not_committable(self, message: Any) -> bool:
            """Acked (the stream's bookkeeping is done), but its offset is not recorded: no commit passes it."""
            with ack_lock:
                message.acked = True
                self._unacked_messages.discard(message)
            return False

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport
