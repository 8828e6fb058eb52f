"""Issue 15, bulk catalog encoding through a real broker and worker: ``streamrec catalog --encode`` publishes items
with the worker's own model's embeddings, which the worker uses; items with another model's embedding or none are
encoded by the worker; all of them become recommendable."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from connectors.clients import ItemProducer
from connectors.kafka import KafkaClientConfig, replay_events
from connectors.schemas import ItemEmbedding
from stream.cli.main import cli
from stream.demo import scrape_all
from tests.conftest import make_catalog
from tests.integration.test_engine import read_json

pytestmark = pytest.mark.integration


def test_items_with_and_without_usable_embeddings_all_become_recommendable(worker_factory: Any, broker: Any,
                                                                         kafka: KafkaClientConfig,
                                                                         tmp_path: Path) -> None:
    app = "t-embed"
    catalog = make_catalog(per_theme=4)  # 12 items: 4 encoded by the CLI, 4 another model's, 4 without
    encoded, other_model, plain = catalog[0::3], catalog[1::3], catalog[2::3]
    w = worker_factory(app)
    products = tmp_path / "products.jsonl"
    products.write_text("".join(json.dumps({"item_id": it.item_id, "text": it.text}) + "\n" for it in encoded))
    out = CliRunner().invoke(cli, ["catalog", str(products), "--encode", "--cache", str(tmp_path / "cache"),
                                   "--broker", broker.url], env={"STREAMREC_TOPIC_ITEMS": f"{app}-items"})
    assert out.exit_code == 0, out.output
    assert f"published 4 items with embeddings to {app}-items" in out.output
    assert (tmp_path / "cache" / "embeddings.sqlite3").is_file()
    wrong = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    wrong /= np.linalg.norm(wrong)
    with ItemProducer(broker.bootstrap, topic=f"{app}-items") as producer:
        for it in other_model:
            producer.send(it.item_id, it.text, embedding=ItemEmbedding.from_floats("e5-small", wrong.tolist()))
        for it in plain:
            producer.send(it.item_id, it.text)

    w.wait_ready(len(catalog), timeout=180)
    deadline = time.monotonic() + 30  # the counters move with the batch that added the items
    while time.monotonic() < deadline:
        m = scrape_all(w.metrics_port)
        if m.get("streamrec_item_embeddings_rejected_total{reason=model}") == len(other_model):
            break
        time.sleep(0.2)
    assert m["streamrec_catalog_items"] == len(catalog)
    assert m["streamrec_item_embeddings_used_total"] == len(encoded)
    assert m["streamrec_item_embeddings_rejected_total{reason=model}"] == len(other_model)
    assert m["streamrec_item_embeddings_rejected_total{reason=size}"] == 0
    assert m["streamrec_items_invalid_total{reason=invalid_embedding}"] == 0
    log = w.log_path.read_text()
    assert "embeddings not usable, their texts encoded here instead: model 'e5-small'" in log

    events = [{"event_id": f"e{n}", "user_id": f"u{n}", "item_id": it.item_id, "event_type": "click",
               "ts": 1_700_000_000.0 + n} for n, it in enumerate([encoded[0], other_model[0], plain[0]])]
    asyncio.run(replay_events(kafka, f"{app}-events", events))
    recs = asyncio.run(read_json(kafka, f"{app}-recommendations", len(events)))
    assert sorted(r["event_id"] for r in recs) == ["e0", "e1", "e2"]
    listed = {i["item_id"] for r in recs for i in r["items"]}
    assert listed <= {it.item_id for it in catalog}
    assert listed & {it.item_id for it in encoded} and listed & {it.item_id for it in other_model}
    assert listed & {it.item_id for it in plain}
    assert scrape_all(w.metrics_port).get("streamrec_unknown_item_ratio") == 0
