"""Apache Kafka broker fixture plumbing that needs no JVM: the error when the jars are missing, the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.broker import BrokerError
from connectors.kafka_broker import ApacheKafkaBroker, kafka_version


def test_missing_jars_name_the_folder_and_the_make_target(tmp_path: Path) -> None:
    b = ApacheKafkaBroker(port=0, lib=tmp_path / "no-kafka-here")
    with pytest.raises(BrokerError, match=r"no-kafka-here.*make kafka"):
        b.start()
    assert not b.running and not b.work.exists(), "a failed start leaves no process and no temporary folder"


def test_single_node_kraft_settings_for_tests(tmp_path: Path) -> None:
    (tmp_path / "kafka_2.13-4.3.2.jar").write_bytes(b"")
    assert kafka_version(tmp_path) == "4.3.2"
    b = ApacheKafkaBroker(port=0, lib=tmp_path, data_dir=tmp_path / "work")
    props = b.properties()
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{b.port},CONTROLLER://127.0.0.1:{b.controller_port}"
    assert props["auto.create.topics.enable"] == "false" and props["group.initial.rebalance.delay.ms"] == "0"
    assert b.url == f"kafka://127.0.0.1:{b.port}"
