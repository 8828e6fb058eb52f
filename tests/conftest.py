"""Shared fixtures: a real Tansu broker, worker processes, a small catalog with distinct texts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from connectors.broker import EmbeddedBroker, free_port  # noqa: E402
from connectors.kafka import KafkaClientConfig  # noqa: E402
from learners.types import Item  # noqa: E402

THEMES = {
    "space": ["rocket", "galaxy", "astronaut", "planet", "starship", "orbit", "nebula", "alien"],
    "cooking": ["pasta", "baking", "kitchen", "recipe", "chef", "soup", "bread", "dessert"],
    "sports": ["football", "tennis", "stadium", "marathon", "boxing", "cycling", "soccer", "hockey"],
}


def make_catalog(per_theme: int = 8) -> list[Item]:
    """Items whose text says what they are about: ``space-0`` ... ``sports-7``."""
    out = []
    for theme, words in THEMES.items():
        for i in range(per_theme):
            w = words[i % len(words)]
            out.append(Item(f"{theme}-{i}", f"A {theme} story about the {w}, episode {i}."))
    return out


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(port=0, log_path=log) as b:
        yield b


@pytest.fixture
def kafka(broker: EmbeddedBroker) -> KafkaClientConfig:
    return KafkaClientConfig([broker.bootstrap], {})


@pytest.fixture
def run() -> Callable[[Any], Any]:
    """Run a coroutine to completion (tests stay synchronous)."""
    return lambda coro: asyncio.run(coro)


@pytest.fixture
def worker_factory(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start ``streamrec worker`` processes against the test broker; all are stopped at teardown."""
    from stream.demo import WorkerProcess

    started: list[WorkerProcess] = []

    def make(app_id: str, data_dir: Path | None = None, **env: str) -> WorkerProcess:
        topics = {
            "STREAMREC_APP_ID": app_id,
            "STREAMREC_TOPIC_EVENTS": f"{app_id}-events",
            "STREAMREC_TOPIC_ITEMS": f"{app_id}-items",
            "STREAMREC_TOPIC_RECOMMENDATIONS": f"{app_id}-recommendations",
            "STREAMREC_TOPIC_DLQ": f"{app_id}-events-dlq",
            "STREAMREC_TOPIC_ITEMS_DLQ": f"{app_id}-items-dlq",
            "STREAMREC_BATCH_WITHIN_S": "0.02",
            "STREAMREC_LOG_LEVEL": "info",
        }
        w = WorkerProcess(broker.url, data_dir or tmp_path / f"{app_id}-state", free_port(),
                          tmp_path / f"{app_id}-worker.log", {**topics, **env})
        started.append(w.start())
        return w

    yield make
    for w in started:
        w.stop()
