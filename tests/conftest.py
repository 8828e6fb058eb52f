"""Shared fixtures: a real broker (Tansu and Apache Kafka), worker processes, a small catalog with distinct texts.

The session fixture ``broker`` is parametrised over the brokers in ``STREAMREC_TEST_BROKERS`` (comma-separated,
default ``tansu,kafka``), so every test that uses it runs once per broker (ids ``[tansu]`` and ``[kafka]``).
A test marked ``@pytest.mark.brokers("tansu")`` runs only on the brokers it names.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from connectors.broker import BrokerProcess, EmbeddedBroker, free_port  # noqa: E402
from connectors.kafka import KafkaClientConfig  # noqa: E402
from learners.types import Item  # noqa: E402

THEMES = {
    "space": ["rocket", "galaxy", "astronaut", "planet", "starship", "orbit", "nebula", "alien"],
    "cooking": ["pasta", "baking", "kitchen", "recipe", "chef", "soup", "bread", "dessert"],
    "sports": ["football", "tennis", "stadium", "marathon", "boxing", "cycling", "soccer", "hockey"],
}


def wait_for(pred: Callable[[], Any], timeout: float, what: str | Callable[[], str], every: float = 0.3) -> None:
    """Wait until ``pred()`` is true; past ``timeout`` seconds fail naming ``what`` (a callable one is called then,
    so the message can show the values last seen)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(every)


def make_catalog(per_theme: int = 8) -> list[Item]:
    """Items whose text says what they are about: ``space-0`` ... ``sports-7``."""
    out = []
    for theme, words in THEMES.items():
        for i in range(per_theme):
            w = words[i % len(words)]
            out.append(Item(f"{theme}-{i}", f"A {theme} story about the {w}, episode {i}."))
    return out


BROKERS_ENV = "STREAMREC_TEST_BROKERS"
BROKERS = ("tansu", "kafka")


def selected_brokers() -> list[str]:
    """The brokers ``STREAMREC_TEST_BROKERS`` names (default: all of :data:`BROKERS`)."""
    names = [n.strip() for n in os.environ.get(BROKERS_ENV, ",".join(BROKERS)).split(",") if n.strip()]
    unknown = sorted(set(names) - set(BROKERS))
    if unknown or not names:
        raise pytest.UsageError(f"{BROKERS_ENV}: unknown broker {', '.join(unknown) or '(none)'} "
                                f"(expected a comma-separated subset of {', '.join(BROKERS)})")
    return names


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "brokers(*names): run only on these brokers (tansu, kafka)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect a test on a broker its ``brokers`` marker does not name, or one that is not selected."""
    selected = set(selected_brokers())
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("brokers")
        allowed = set(marker.args) if marker else set(BROKERS)
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("broker") if callspec is not None else None
        runs_on = {param} if param is not None else allowed
        (keep if runs_on & allowed & selected else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def start_broker(name: str, log: Path) -> BrokerProcess:
    """A started broker of this kind on a free loopback port."""
    if name == "kafka":
        from connectors.kafka_broker import ApacheKafkaBroker

        return ApacheKafkaBroker(port=0, log_path=log).start()
    return EmbeddedBroker(port=0, log_path=log).start()


@pytest.fixture(scope="session", params=selected_brokers(), ids=str)
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A real broker for the whole session, one per selected kind (started once, stopped at the end)."""
    b = start_broker(request.param, tmp_path_factory.mktemp(f"broker-{request.param}") / f"{request.param}.log")
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def kafka(broker: BrokerProcess) -> KafkaClientConfig:
    return KafkaClientConfig([broker.bootstrap], {})


@pytest.fixture
def run() -> Callable[[Any], Any]:
    """Run a coroutine to completion (tests stay synchronous)."""
    return lambda coro: asyncio.run(coro)


@pytest.fixture
def worker_factory(broker: BrokerProcess, tmp_path: Path) -> Iterator[Callable[..., Any]]:
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
            "STREAMREC_TOPIC_SHARES": f"{app_id}-model-shares",
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
