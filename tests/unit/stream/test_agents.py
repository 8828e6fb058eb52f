"""The events agent through Faust's ``agent.test_context()`` with ``store="memory://"`` (no broker)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from learners.adapter import AdapterRecommender
from learners.encoder import HashingEncoder
from learners.types import Item
from stream.app import create_app
from stream.settings import load_settings


def test_events_agent_updates_table_and_emits(tmp_path) -> None:
    s = load_settings(store_url="memory://", data_dir=tmp_path, app_id="unit-agent", batch_within_s=0.01,
                      learn_min_events=1)
    enc = HashingEncoder(16)
    learner = AdapterRecommender(enc, dim=8, seq_len=s.seq_len, device="cpu")
    learner.add_items([Item(f"i{j}", f"item {j}") for j in range(12)])
    sr = create_app(s, learner, enc, events_partitions=1, items_partitions=1)
    sent: list[tuple[str, bytes, bytes]] = []

    async def capture(topic_name: str, key=None, value=None, headers=None, **kw):  # the producer side
        sent.append((topic_name, key, value))

    for topic in (sr.recommendations_topic, sr.dlq_topic):
        name = topic.get_topic_name()
        topic.send = lambda key=None, value=None, headers=None, _n=name, **kw: capture(_n, key, value, headers)

    sr.catalog_read.set()  # the catalog was handed to the learner above
    sr.on_fatal = pytest.fail  # an agent crash fails the test instead of ending the process

    async def go() -> None:
        async with sr.events_agent.test_context() as agent:
            for n, item in enumerate(["i1", "i2"]):
                ev = {"event_id": f"e{n}", "user_id": "u", "item_id": item, "event_type": "click", "ts": float(n)}
                await agent.put(json.dumps(ev).encode(), key=b"u")
            await agent.put(b"{broken", key=b"u")
            for _ in range(100):
                if len(sent) >= 3 and learner.model_version >= 1:  # learning ends after the sends
                    break
                await asyncio.sleep(0.02)

    asyncio.run(go())
    recs = [json.loads(v) for t, _, v in sent if t == "recommendations"]
    dlq = [json.loads(v) for t, _, v in sent if t == "events-dlq"]
    assert [r["event_id"] for r in recs] == ["e0", "e1"]
    assert dlq and dlq[0]["reason"] == "invalid_json"
    assert sr.user_table["u"]["seq"] == ["i1", "i2"]
    assert learner.model_version >= 1


def test_worker_logging_stays_at_the_configured_level(tmp_path) -> None:
    """Faust's spinner would set the root logger to DEBUG, building every debug record of Faust and aiokafka."""
    import logging

    from stream.worker import faust_worker

    s = load_settings(store_url="memory://", data_dir=tmp_path, app_id="unit-logging")
    enc = HashingEncoder(16)
    sr = create_app(s, AdapterRecommender(enc, dim=8, device="cpu"), enc, events_partitions=1, items_partitions=1)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        faust_worker(sr.app, "warning")._setup_logging()
        assert root.level == logging.WARNING
        assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _app_capturing_sends(tmp_path, **settings):  # noqa: ANN001, ANN202
    s = load_settings(store_url="memory://", data_dir=tmp_path, app_id="unit-agent", batch_within_s=0.01, **settings)
    enc = HashingEncoder(16)
    learner = AdapterRecommender(enc, dim=8, seq_len=s.seq_len, device="cpu")
    learner.add_items([Item(f"i{j}", f"item {j}") for j in range(12)])
    sr = create_app(s, learner, enc, events_partitions=1, items_partitions=1)
    sr.on_fatal = pytest.fail
    sent: list[tuple[str, bytes, bytes]] = []
    def capturing(name: str):  # noqa: ANN202 - the producer side of one topic
        async def capture(key=None, value=None, headers=None, **kw):  # noqa: ANN001, ANN003
            sent.append((name, key, value))
        return capture

    for topic in (sr.recommendations_topic, sr.dlq_topic, sr.items_dlq_topic):
        topic.send = capturing(topic.get_topic_name())
    return sr, sent


async def _wait_for(cond, tries: int = 200) -> None:  # noqa: ANN001
    for _ in range(tries):
        if cond():
            return
        await asyncio.sleep(0.02)


def test_events_wait_until_the_catalog_is_read(tmp_path) -> None:
    """Issue 16, fault 3: no answer from a catalog not read to its end (lists were empty at start-up)."""
    sr, sent = _app_capturing_sends(tmp_path)
    answered_before: list[int] = []

    async def go() -> None:
        async with sr.events_agent.test_context() as agent:
            ev = {"event_id": "e0", "user_id": "u", "item_id": "i1", "event_type": "click", "ts": 1.0}
            await agent.put(json.dumps(ev).encode(), key=b"u")
            await _wait_for(lambda: False, tries=10)
            answered_before.append(len(sent))
            sr.catalog_read.set()
            await _wait_for(lambda: len(sent) >= 1)

    asyncio.run(go())
    assert answered_before == [0]
    [(topic, _, value)] = sent
    assert topic == "recommendations" and len(json.loads(value)["items"]) == 10


def test_a_crashing_events_agent_fails_the_worker(tmp_path) -> None:
    """Issue 16, fault 7: an agent that raises must take the worker down, never idle in a live-looking process."""
    sr, _ = _app_capturing_sends(tmp_path)
    sr.catalog_read.set()
    fatal: list[str] = []
    sr.on_fatal = fatal.append

    def broken(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("producer gave up")

    sr.processor.prepare = broken

    async def go() -> None:
        async with sr.events_agent.test_context() as agent:
            ev = {"event_id": "e0", "user_id": "u", "item_id": "i1", "event_type": "click", "ts": 1.0}
            await agent.put(json.dumps(ev).encode(), key=b"u")
            await _wait_for(lambda: bool(fatal))

    asyncio.run(go())
    assert fatal and "events agent crashed" in fatal[0] and "producer gave up" in fatal[0]
    assert sr.health.liveness()[0] == 500 and sr.health.readiness()[0] == 503


def test_bad_catalog_items_go_to_the_items_dead_letter_topic(tmp_path) -> None:
    """Issue 16, fault 5: a malformed or blank item is a dead letter with its reason, not only a log line."""
    sr, sent = _app_capturing_sends(tmp_path)

    async def go() -> None:
        async with sr.items_agent.test_context() as agent:
            await agent.put(b'{"item_id": "x1", "text": "   "}', key=b"x1")
            await agent.put(b'{"item_id": "x2"', key=b"x2")
            await agent.put(b'{"item_id": "x3", "text": "a fine new item"}', key=b"x3")
            await _wait_for(lambda: len(sent) >= 2 and "x3" in sr.learner.item_index)

    asyncio.run(go())
    reasons = [json.loads(v)["reason"] for t, _, v in sent if t == "items-dlq"]
    assert reasons == ["empty_text", "invalid_json"]
    assert "x1" not in sr.learner.item_index and "x3" in sr.learner.item_index
    assert sr.metrics.items_invalid.labels("empty_text")._value.get() == 1  # noqa: SLF001


def test_a_fatal_error_exits_the_process_with_status_70() -> None:
    """Issue 16, fault 7: the worker process ends (non-zero, so an orchestrator restarts it) with one clear line."""
    import subprocess
    import sys

    code = "import logging; logging.basicConfig(); from stream.app import exit_process; exit_process('events agent crashed: X')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 70
    assert "events agent crashed: X; exiting with status 70" in done.stderr


def test_items_with_embeddings_use_them_encode_the_rest_and_dead_letter_malformed_ones(tmp_path, caplog) -> None:
    """Issue 15: an embedding of the worker's model and width is used as is; another model's or width's is counted
    and the text encoded here (the item is good); a malformed one is a dead letter like any bad item."""
    import numpy as np

    from stream.catalog import decode_embedding

    sr, sent = _app_capturing_sends(tmp_path)
    given = [0.0] * 16
    given[3] = 1.0  # not what HashingEncoder gives for the text: shows the message's vector was used

    def item(item_id: str, embedding: object = None) -> bytes:
        body = {"item_id": item_id, "text": f"a fine new item {item_id}"}
        if embedding is not None:
            body["embedding"] = embedding
        return json.dumps(body).encode()

    async def go() -> None:
        async with sr.items_agent.test_context() as agent:
            await agent.put(item("same", {"model": "all-MiniLM-L6-v2", "values": given}), key=b"same")
            await agent.put(item("other-model", {"model": "e5-small", "values": given}), key=b"other-model")
            await agent.put(item("short", {"model": "all-MiniLM-L6-v2", "values": given[:15]}), key=b"short")
            await agent.put(item("none"), key=b"none")
            await agent.put(item("bad", {"model": "all-MiniLM-L6-v2", "values": [0.1, "x"]}), key=b"bad")
            await _wait_for(lambda: len(sent) >= 1 and all(f"{i}" in sr.learner.item_index
                                                           for i in ("same", "other-model", "short", "none")))

    with caplog.at_level(logging.WARNING, logger="streamrec.worker"):
        asyncio.run(go())
    assert np.array_equal(decode_embedding(sr.item_table["same"]["emb"]), np.asarray(given, dtype=np.float32))
    for item_id in ("other-model", "short", "none"):  # encoded here, as without an embedding
        expected = HashingEncoder(16).encode([f"a fine new item {item_id}"])[0]
        assert np.allclose(decode_embedding(sr.item_table[item_id]["emb"]), expected)
    [(topic, key, value)] = sent
    dead = json.loads(value)
    assert (topic, key, dead["reason"]) == ("items-dlq", b"bad", "invalid_embedding")
    assert dead["detail"] == "embedding: values[1]: expected a number, got str ('x')"
    assert "bad" not in sr.learner.item_index
    m = sr.metrics
    assert m.item_embeddings_used._value.get() == 1  # noqa: SLF001
    assert m.item_embeddings_rejected.labels("model")._value.get() == 1  # noqa: SLF001
    assert m.item_embeddings_rejected.labels("size")._value.get() == 1  # noqa: SLF001
    assert m.items_invalid.labels("invalid_embedding")._value.get() == 1  # noqa: SLF001
    warned = " | ".join(r.getMessage() for r in caplog.records if "embeddings not usable" in r.getMessage())
    assert "model 'e5-small' (the worker's is 'all-MiniLM-L6-v2')" in warned
    assert "15 values (the worker's encoder gives 16)" in warned


def test_the_event_loop_answers_routes_while_a_gradient_is_computed(tmp_path) -> None:
    """Issue 16, on-demand latency: a learning step's gradient runs off the event loop (a route waited behind it),
    and the model changes only once the step is done, so a route answered meanwhile sees the model as it was."""
    import threading

    from stream.web import OnDemandAnswers

    sr, sent = _app_capturing_sends(tmp_path, learn_min_events=1)
    sr.catalog_read.set()
    learner = sr.learner
    entered, release = threading.Event(), threading.Event()
    released_in_time: list[bool] = []
    stages = learner.learn_stages

    def held_stages(xs, histories):  # noqa: ANN001, ANN202 - each gradient waits until the test lets it go
        for gradient in stages(xs, histories):
            def held(gradient=gradient) -> None:  # noqa: ANN001
                entered.set()
                released_in_time.append(release.wait(timeout=5.0))
                gradient()
            yield held

    learner.learn_stages = held_stages
    during: list[tuple[int, int, list[str]]] = []

    async def go() -> None:
        async with sr.events_agent.test_context() as agent:
            ev = {"event_id": "e0", "user_id": "u", "item_id": "i1", "event_type": "click", "ts": 1.0}
            await agent.put(json.dumps(ev).encode(), key=b"u")
            await _wait_for(entered.is_set)
            status, body = OnDemandAnswers(sr).user_recommendations("u", "5")
            during.append((learner.model_version, status, [it["item_id"] for it in body["items"]]))
            release.set()
            await _wait_for(lambda: learner.model_version >= 1)

    asyncio.run(go())
    assert released_in_time and all(released_in_time)  # on the loop, the gradient would have waited in vain
    [(version, status, items)] = during
    assert version == 0 and status == 200 and len(items) == 5 and "i1" not in items
    assert learner.model_version == 1 and len(sent) == 1


def test_with_a_learn_queue_answers_do_not_wait_for_learning(tmp_path) -> None:
    """learn_queue_batches > 0: a batch is answered and queued for learning; the events agent waits only when the
    queue is full, and the learning task learns the batches in order (without it, nothing is learned)."""
    from stream.app import learn_queued

    sr, sent = _app_capturing_sends(tmp_path, learn_queue_batches=1, learn_min_events=1)
    sr.catalog_read.set()
    v0 = sr.learner.model_version
    counts: list[tuple[int, int]] = []

    async def go() -> None:
        async with sr.events_agent.test_context() as agent:
            for n in range(3):
                ev = {"event_id": f"e{n}", "user_id": f"u{n}", "item_id": f"i{n + 1}", "event_type": "click", "ts": 1.0}
                await agent.put(json.dumps(ev).encode(), key=f"u{n}".encode())
                await _wait_for(lambda n=n: len(sent) > n, tries=200 if n < 2 else 25)  # one batch each; the third waits
            counts.append((len(sent), sr.learner.model_version - v0))  # 1 queued, 1 answered and waiting to queue
            learning = asyncio.ensure_future(learn_queued(sr))
            await _wait_for(lambda: len(sent) == 3 and sr.learner.model_version - v0 == 3)
            counts.append((len(sent), sr.learner.model_version - v0))
            learning.cancel()

    asyncio.run(go())
    assert counts == [(2, 0), (3, 3)]
    assert sorted(sr.processor.learned.values()) == [3]


def test_answered_batches_wait_to_be_learned_in_one_step(tmp_path) -> None:
    """learn_min_events: batches are answered at once, learned together once they hold that many events, or once
    the oldest has waited learn_within_s (the learning task); a rebalance's rewind does not read waiting ones again."""
    from stream.app import learn_when_due

    sr, sent = _app_capturing_sends(tmp_path, learn_min_events=3, learn_within_s=0.3)
    sr.catalog_read.set()
    learner, v0 = sr.learner, sr.learner.model_version
    seen: list[tuple[int, int, int]] = []  # (answered, steps, events learned)

    def now() -> tuple[int, int, int]:
        return len(sent), learner.model_version - v0, learner.events_learned

    async def go() -> None:
        async with sr.events_agent.test_context() as agent:
            for n in range(4):
                ev = {"event_id": f"e{n}", "user_id": f"u{n}", "item_id": f"i{n + 1}", "event_type": "click", "ts": 1.0}
                await agent.put(json.dumps(ev).encode(), key=f"u{n}".encode())
                await _wait_for(lambda n=n: len(sent) > n and (n != 2 or learner.events_learned))  # a batch each
                seen.append(now())
            tp = next(iter(sr.processor.answered))
            seen.append((sr.processor.learned[tp], sr.processor.answered[tp],
                         len(sr.processor.rewind({tp: sr.processor.answered[tp]}))))
            learning = asyncio.ensure_future(learn_when_due(sr))
            await _wait_for(lambda: learner.events_learned == 4)
            seen.append(now())
            learning.cancel()

    asyncio.run(go())
    assert seen[:4] == [(1, 0, 0), (2, 0, 0), (3, 1, 3), (4, 1, 3)]
    assert seen[4] == (3, 4, 0)  # learned up to offset 3, answered up to 4: nothing to read again
    assert seen[5] == (4, 2, 4)


def test_a_graceful_stop_learns_the_waiting_batches_before_its_checkpoint(tmp_path) -> None:
    """The final checkpoint holds every answered event: the batches waiting for learn_min_events are learned first."""
    from stream.worker import install_checkpoints

    sr, sent = _app_capturing_sends(tmp_path, learn_min_events=50, learn_within_s=60.0)
    sr.catalog_read.set()
    saved: list[int] = []

    async def save(app, force: bool = False) -> None:  # noqa: ANN001 - the checkpoint: what it would hold
        saved.append(app.learner.events_learned)

    install_checkpoints(sr, save)

    async def go() -> None:
        async with sr.events_agent.test_context() as agent:
            for n in range(2):
                ev = {"event_id": f"e{n}", "user_id": f"u{n}", "item_id": f"i{n + 1}", "event_type": "click", "ts": 1.0}
                await agent.put(json.dumps(ev).encode(), key=f"u{n}".encode())
                await _wait_for(lambda n=n: len(sent) > n)
            saved.append(sr.learner.events_learned)
            await sr.app.on_before_shutdown.send()

    asyncio.run(go())
    assert saved == [0, 2]
