"""Issue 16, fault 2: record batches the consumer cannot decode become dead letters, the rest reads on."""

from __future__ import annotations

import struct

import pytest
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from stream.records import DeadLetteringRecords, undecodable_reason

ATTRIBUTES_OFFSET = struct.calcsize(">qiibI")
CRC_OFFSET = struct.calcsize(">qiib")


def batch(base: int, n: int, codec: int = 0, garble: int | None = None) -> bytes:
    """A v2 record batch of ``n`` events from offset ``base``; ``garble`` sets the codec bits after building."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=0, producer_id=-1,
                                  producer_epoch=-1, base_sequence=-1, batch_size=10**6)
    for i in range(n):
        b.append(i, timestamp=1000, key=b"u", value=b'{"n": %d}' % (base + i), headers=[])
    buf = bytearray(b.build())
    struct.pack_into(">q", buf, 0, base)
    if garble is not None:
        attrs = struct.unpack_from(">h", buf, ATTRIBUTES_OFFSET)[0]
        struct.pack_into(">h", buf, ATTRIBUTES_OFFSET, (attrs & ~0x07) | garble)
        struct.pack_into(">I", buf, CRC_OFFSET, calc_crc32c(bytes(buf[ATTRIBUTES_OFFSET:])))
    return bytes(buf)


def records(cls: type, data: bytes) -> PartitionRecords:
    return cls(TopicPartition("events", 0), MemoryRecords(data), None, 0, None, None, True, READ_UNCOMMITTED)


@pytest.mark.parametrize("codec", [1, 2, 3, 4])  # gzip, snappy, lz4, zstd: all four Kafka codecs decode
def test_every_kafka_codec_decodes(codec: int) -> None:
    got = list(records(DeadLetteringRecords, batch(0, 3, codec=codec)))
    assert [r.value for r in got] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']


def test_an_undecodable_batch_becomes_one_dead_letter_and_the_next_batch_reads() -> None:
    data = batch(0, 2) + batch(2, 3, garble=7) + batch(5, 2)
    with pytest.raises(Exception, match="codec"):  # what stopped the worker: aiokafka's own records
        list(records(PartitionRecords, data))
    got = list(records(DeadLetteringRecords, data))
    assert [r.offset for r in got] == [0, 1, 4, 5, 6]
    stand_in = got[2]
    assert stand_in.value is None and "events[0] record batch at offsets 2..4" in undecodable_reason(stand_in.headers)
    assert [undecodable_reason(r.headers) for r in got if r is not stand_in] == [None] * 4


def test_a_batch_failing_its_crc_check_is_a_dead_letter_too() -> None:
    bad = bytearray(batch(0, 2))
    bad[-1] ^= 0xFF  # a flipped bit in the last record
    got = list(records(DeadLetteringRecords, bytes(bad) + batch(2, 1)))
    assert [r.offset for r in got] == [1, 2] and "CRC" in undecodable_reason(got[0].headers)
