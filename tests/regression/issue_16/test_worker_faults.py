"""Issue 16 through a real broker and real worker processes: faults 2, 3, 4, 5 and 7 as a user met them.

Each test failed before its fix: compressed events crashed the worker (2), events published right after a
catalog got empty lists (3), nothing said when a worker was ready (4), bad catalog items only logged (5), and a
large event's dead letter was over the producer's limit and stopped the events agent for good (7).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from connectors.kafka import KafkaClientConfig, ensure_topics, publish_items, read_topic, replay_events
from connectors.schemas import DLQ_JSON_SCHEMA, RECOMMENDATION_JSON_SCHEMA, schema_errors
from stream.demo import scrape
from tests.conftest import make_catalog

pytestmark = pytest.mark.integration


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:  # noqa: S310
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_probe(w: Any, path: str, code: int, timeout: float = 180.0) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert w.alive(), f"worker exited (log: {w.log_path})"
        try:
            got, body = probe(w.metrics_port, path)
        except OSError:  # not serving yet
            got, body = 0, {}
        if got == code:
            return body
        time.sleep(0.2)
    raise TimeoutError(f"{path} never answered {code} (log: {w.log_path})")


def publish_catalog(kafka: KafkaClientConfig, app: str, catalog: list[Any]) -> None:
    """The catalog team creates its topic (Apache Kafka creates none unasked) and publishes the items."""
    async def go() -> None:
        await ensure_topics(kafka, {f"{app}-items": 4})
        await publish_items(kafka, f"{app}-items", catalog)

    asyncio.run(go())


def events(prefix: str, n: int, items: list[str]) -> list[dict[str, Any]]:
    return [{"event_id": f"{prefix}{i}", "user_id": f"{prefix}u{i % 7}", "item_id": items[(i * 5) % len(items)],
             "event_type": "click", "ts": 1_700_000_000.0 + i} for i in range(n)]


async def read_json(cfg: KafkaClientConfig, topic: str, count: int, idle: float = 60.0) -> list[dict[str, Any]]:
    return [json.loads(v) async for _, v, _ in read_topic(cfg, topic, until_count=count, idle_timeout=idle)
            if v is not None]


def test_catalog_then_events_at_once_get_full_lists_and_readiness_is_visible(worker_factory: Any,
                                                                             kafka: KafkaClientConfig) -> None:
    """Faults 3 and 4, in the README's order (worker, catalog, events) without waiting between the steps."""
    app = "t-startup"
    w = worker_factory(app)
    body = wait_probe(w, "/readyz", 200)  # an empty catalog is read at once
    assert body["status"] == "ready" and body["catalog_items"] == 0
    assert probe(w.metrics_port, "/healthz") == (200, {"status": "ok"})
    catalog = make_catalog(per_theme=60)  # 180 items: encoding them takes longer than the events take to arrive
    evs = events("s", 150, [it.item_id for it in catalog])

    async def go() -> list[dict[str, Any]]:
        await publish_items(kafka, f"{app}-items", catalog)
        await replay_events(kafka, f"{app}-events", evs)
        return await read_json(kafka, f"{app}-recommendations", len(evs))

    recs = asyncio.run(go())
    assert {r["event_id"] for r in recs} == {e["event_id"] for e in evs}
    assert all(schema_errors(r, RECOMMENDATION_JSON_SCHEMA) == [] for r in recs)
    assert [len(r["items"]) for r in recs] == [10] * len(evs)
    assert scrape(w.metrics_port, "streamrec_empty_recommendations_total") == 0
    log = w.log_path.read_text()
    assert "ready: catalog of 0 items" in log


def test_a_restarted_worker_is_ready_only_with_its_catalog(worker_factory: Any, kafka: KafkaClientConfig,
                                                           tmp_path: Any) -> None:
    """Fault 4: /readyz names the catalog it answers from; a worker started after the catalog reads it first."""
    app = "t-ready"
    catalog = make_catalog(per_theme=40)
    publish_catalog(kafka, app, catalog)
    w = worker_factory(app, tmp_path / "state")
    body = wait_probe(w, "/readyz", 200)
    assert body["catalog_items"] == len(catalog) and body["partitions"] == [0, 1, 2, 3]
    assert scrape(w.metrics_port, "streamrec_ready") == 1.0
    assert f"ready: catalog of {len(catalog)} items" in w.log_path.read_text()


def test_compressed_events_large_events_and_bad_items(worker_factory: Any, kafka: KafkaClientConfig) -> None:
    """Faults 2, 5 and 7: every codec is read, a 900 KB event's dead letter fits, bad items are dead letters."""
    app = "t-faults"
    catalog = make_catalog()
    publish_catalog(kafka, app, catalog)
    w = worker_factory(app)
    wait_probe(w, "/readyz", 200)
    ids = [it.item_id for it in catalog]
    codecs = ["gzip", "snappy", "lz4", "zstd"]

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        sent = 0
        for k, codec in enumerate(codecs):
            prod = AIOKafkaProducer(bootstrap_servers=list(kafka.bootstrap_servers), compression_type=codec,
                                    linger_ms=20)
            await prod.start()
            try:
                futs = [await prod.send(f"{app}-events", json.dumps(e).encode(), key=e["user_id"].encode())
                        for e in events(f"c{k}-", 10, ids)]
                await asyncio.gather(*futs)
                sent += len(futs)
            finally:
                await prod.stop()
        big = AIOKafkaProducer(bootstrap_servers=list(kafka.bootstrap_servers), max_request_size=2**21)
        await big.start()
        try:
            huge = {**events("big", 1, ids)[0], "context": {"blob": "x" * 900_000}}
            await big.send_and_wait(f"{app}-events", json.dumps(huge).encode(), key=b"bigu0")
            await big.send_and_wait(f"{app}-items", b'{"item_id": "blank", "text": "  "}', key=b"blank")
            await big.send_and_wait(f"{app}-items", b'{"item_id": "cut"', key=b"cut")
        finally:
            await big.stop()
        after = events("after", 10, ids)  # the worker goes on after the large event
        await replay_events(kafka, f"{app}-events", after)
        recs = await read_json(kafka, f"{app}-recommendations", sent + len(after))
        dlq = await read_json(kafka, f"{app}-events-dlq", 1)
        items_dlq = await read_json(kafka, f"{app}-items-dlq", 2)
        return recs, dlq, items_dlq

    recs, dlq, items_dlq = asyncio.run(go())
    answered = {r["event_id"] for r in recs}
    assert {f"c{k}-{i}" for k in range(len(codecs)) for i in range(10)} <= answered  # fault 2
    assert {f"after{i}" for i in range(10)} <= answered  # fault 7: still processing
    [big] = dlq
    assert schema_errors(big, DLQ_JSON_SCHEMA) == []
    assert big["reason"] == "too_large" and big["truncated"] and big["value_bytes"] > 900_000
    assert len(json.dumps(big)) < 200_000
    assert w.alive()
    assert sorted(d["reason"] for d in items_dlq) == ["empty_text", "invalid_json"]  # fault 5
    assert all(schema_errors(d, DLQ_JSON_SCHEMA) == [] for d in items_dlq)
    assert scrape(w.metrics_port, "streamrec_items_invalid_total") is not None


def test_events_in_flight_when_the_worker_dies_are_answered_after_the_restart(worker_factory: Any,
                                                                               kafka: KafkaClientConfig,
                                                                               tmp_path: Any) -> None:
    """Fault 8: killed after a batch's state writes reached the broker and before its answers were sent.

    The restarted worker reads that batch again; every event of it must be answered (before the fix they were
    dead letters as ``duplicate``, never answered).
    """
    import time

    app = "t-inflight"
    data = tmp_path / "state"
    catalog = make_catalog()
    publish_catalog(kafka, app, catalog)
    w = worker_factory(app, data, _STREAMREC_CRASH_AFTER_STATE_WRITES="3")
    wait_probe(w, "/readyz", 200)
    evs = events("f", 120, [it.item_id for it in catalog])
    asyncio.run(replay_events(kafka, f"{app}-events", evs, rate=200))
    deadline = time.monotonic() + 120
    while w.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not w.alive() and w.proc.returncode == -9, "the fault injection should have killed the worker"
    assert "fault injection: killed after the state writes" in w.log_path.read_text()
    w2 = worker_factory(app, data)
    wait_probe(w2, "/readyz", 200)
    want = {e["event_id"] for e in evs}
    answered: set[str] = set()
    deadline = time.monotonic() + 120
    while not want <= answered and time.monotonic() < deadline:
        answered = {r["event_id"] for r in asyncio.run(read_json(kafka, f"{app}-recommendations", 10**6, idle=3))}
    dlq = asyncio.run(read_json(kafka, f"{app}-events-dlq", 10**6, idle=2))
    assert want - answered == set(), f"{len(want - answered)} events never answered"
    assert dlq == []
    assert (scrape(w2.metrics_port, "streamrec_redelivered_answered_total") or 0) > 0
