"""The worker makes its topics before Faust starts, the tables' changelogs included: a changelog Faust creates itself
can be missing from its consumer's metadata when the first items arrive, and the items agent then crashes on a
partition count of 0 (seen on a fresh Apache Kafka)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from connectors.broker import BrokerProcess
from connectors.kafka import KafkaClientConfig, admin_client, ensure_topics, topic_partitions
from stream.settings import Settings
from stream.tables import ITEM_TABLE, USER_TABLE, changelog_name
from stream.worker import prepare_topics

pytestmark = pytest.mark.integration


def cleanup_policy(cfg: KafkaClientConfig, topic: str) -> str | None:
    async def go() -> str | None:
        async with admin_client(cfg) as admin:
            [resp] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            for _err, _msg, _type, _name, entries in resp.resources:
                for entry in entries:
                    if entry[0] == "cleanup.policy":
                        return str(entry[1])
            return None

    return asyncio.run(go())


def test_changelogs_exist_before_faust_starts(broker: BrokerProcess, kafka: KafkaClientConfig) -> None:
    app = "t-topics"
    # producers made the events topic first, with their own count: the user table's changelog follows it
    asyncio.run(ensure_topics(kafka, {f"{app}-events": 3}))
    s = Settings(broker_url=broker.url, app_id=app, topic_partitions=2,
                 topic_events=f"{app}-events", topic_items=f"{app}-items",
                 topic_recommendations=f"{app}-recommendations", topic_dlq=f"{app}-events-dlq",
                 topic_items_dlq=f"{app}-items-dlq")
    users, items = changelog_name(app, USER_TABLE), changelog_name(app, ITEM_TABLE)
    assert users == f"{app}-user-sequences-changelog"  # the name Faust gives the table's changelog
    parts = prepare_topics(s)
    assert parts[f"{app}-events"] == 3 and parts[f"{app}-items"] == 2
    assert asyncio.run(topic_partitions(kafka, [users, items])) == {users: 3, items: 2}
    if broker.name == "kafka":  # whether Tansu 0.6.0 describes topic configs is not this test's concern
        assert cleanup_policy(kafka, users) == "compact" and cleanup_policy(kafka, items) == "compact"
