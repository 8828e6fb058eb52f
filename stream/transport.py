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
* **High watermarks.** Tansu 0.6.0 reports a partition's end offset as the base offset of its last record batch
  + 1, not the last offset + 1. Faust's table recovery reads changelogs only up to that number, so the tail of
  the last batch was silently not restored (seen: 23 of 24 catalog items after losing local state). With
  ``probe_highwaters`` the consumer reads the tail after the reported end and returns the true end offset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from connectors.kafka import true_highwaters
from stream.records import dead_letter_undecodable

Rewind = Callable[[dict[Any, int]], Mapping[Any, int]]


def worker_transport(fetch_max_wait_ms: int, probe_kwargs: dict[str, Any] | None,
                     rewind: Rewind | None = None) -> type[faust_aiokafka.Transport]:
    """A Faust Transport whose worker consumer uses ``fetch_max_wait_ms``, given ``probe_kwargs`` (aiokafka
    connection arguments) corrects under-reported high watermarks, and given ``rewind`` (committed offsets of the
    assigned partitions -> where to start instead) re-reads partitions from before their committed offsets."""

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

        async def perform_seek(self) -> None:
            await super().perform_seek()
            if rewind is None:
                return
            assigned = self.assignment()
            committed = {tp: off for tp, off in self._committed_offset.items() if off is not None and tp in assigned}
            for tp, offset in rewind(committed).items():
                await self.seek(tp, offset)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport
