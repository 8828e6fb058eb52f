"""Record batches the worker's consumer cannot decode become dead letters instead of stopping the worker.

aiokafka decompresses a fetched record batch lazily while the stream iterates it; an unknown codec, a corrupt
compressed payload or a batch it cannot parse raises from deep inside the fetcher, so Faust's consumer crashes
on that offset, and again after every restart. :class:`DeadLetteringFetcher` (the worker consumer's fetcher,
see :mod:`stream.transport`) wraps each fetched partition's records in :class:`DeadLetteringRecords`: a batch
that fails to decode (or fails its CRC check) yields one stand-in record at the batch's last offset, with no value
and the error, with the batch's offsets, in the header :data:`UNDECODABLE_HEADER`. The events agent sends it to
the dead-letter topic with reason ``undecodable`` (:func:`undecodable_reason`), and the consumer moves past the
batch. aiokafka's compiled record classes do not expose a batch's bytes, so the dead letter names the offsets
instead: the bytes stay in the input topic there, for as long as its retention keeps them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from aiokafka.consumer.fetcher import READ_UNCOMMITTED, Fetcher, PartitionRecords
from aiokafka.structs import ConsumerRecord

UNDECODABLE_HEADER = "streamrec-undecodable"

log = logging.getLogger("streamrec.worker")


def undecodable_reason(headers: Any) -> str | None:
    """The decode error carried by a stand-in record's headers (None for an ordinary record).

    >>> undecodable_reason([(UNDECODABLE_HEADER, b"codec 0x07")]), undecodable_reason([("x", b"")])
    ('codec 0x07', None)
    """
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, dict) else headers
    for k, v in pairs:
        if k == UNDECODABLE_HEADER:
            return bytes(v).decode("utf-8", "replace")
    return None


class DeadLetteringRecords(PartitionRecords):  # type: ignore[misc]
    """aiokafka's partition records, except that a batch which fails to decode becomes one stand-in record."""

    def _unpack_records(self) -> Iterator[ConsumerRecord]:  # noqa: C901 - aiokafka's loop plus one guard
        records = self._records
        while records.has_next():
            try:
                batch = records.next_batch()
            except Exception as exc:  # noqa: BLE001 - a batch header that does not parse: nothing after it reads
                log.error("consumer: %s: unreadable record batch at offset >= %s: %r", self._tp,
                          self.next_fetch_offset, exc)
                raise
            start = self.next_fetch_offset
            base, end = batch.base_offset, batch.next_offset
            if end <= start:
                continue  # already consumed (a re-fetch of the same batch)
            if batch.is_control_batch:
                self.next_fetch_offset = end
                continue
            try:
                if self._check_crcs and not batch.validate_crc():
                    raise ValueError("CRC check failed")
                decoded = [r for r in batch if r.offset >= start]  # decompresses the batch
            except Exception as exc:  # noqa: BLE001 - any decode failure: dead-letter the batch, carry on
                detail = f"{self._tp.topic}[{self._tp.partition}] record batch at offsets {base}..{end - 1} " \
                         f"could not be decoded: {exc!r}"[:900]
                log.error("consumer: %s: %s; sent to the dead-letter topic", self._tp, detail)
                self.next_fetch_offset = end
                yield self._stand_in(batch, end - 1, detail)
                continue
            for record in decoded:
                self.next_fetch_offset = record.offset + 1
                yield self._consumer_record(self._tp, record)
            self.next_fetch_offset = end

    def _stand_in(self, batch: Any, offset: int, detail: str) -> ConsumerRecord:
        return ConsumerRecord(self._tp.topic, self._tp.partition, offset, batch.max_timestamp, batch.timestamp_type,
                              None, None, None, -1, -1, [(UNDECODABLE_HEADER, detail.encode())])


class DeadLetteringFetcher(Fetcher):  # type: ignore[misc]
    """aiokafka's fetcher whose fetched partitions iterate as :class:`DeadLetteringRecords`."""

    async def _proc_fetch_request(self, assignment: Any, node_id: int, request: Any) -> bool:
        ok: bool = await super()._proc_fetch_request(assignment, node_id, request)
        for result in self._records.values():
            part = result._partition_records  # noqa: SLF001 - created just now, not iterated yet
            if type(part) is PartitionRecords:
                part.__class__ = DeadLetteringRecords
                part._records_iterator = part._unpack_records()  # noqa: SLF001
        return ok


def dead_letter_undecodable(fetcher: Any) -> bool:
    """Make a just-started consumer's ``fetcher`` a :class:`DeadLetteringFetcher`; True when it did.

    Only an aiokafka ``Fetcher`` reading uncommitted records (the worker's isolation level): the read-committed
    path, which skips aborted transactions batch by batch, stays aiokafka's own.
    """
    if type(fetcher) is not Fetcher or fetcher._isolation_level != READ_UNCOMMITTED:  # noqa: SLF001
        return False
    fetcher.__class__ = DeadLetteringFetcher
    return True
