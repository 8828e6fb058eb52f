"""Which broker the worker talks to, and what it does when topics vanish from it.

**The broker profile.** ``broker_profile`` names the broker whose quirks the worker works around
(:data:`connectors.broker.PROFILES`); ``auto`` (the default) asks the broker at start: Tansu reports its cluster id
``tansu_cluster``, Apache Kafka a random one (:func:`resolve_broker_profile`). The profile gives the defaults of
``probe_highwaters``, ``recovery_consistency_check`` and ``broker_reset_recovery``; an explicit setting wins.

**Tansu: a broker that lost our data.** The embedded broker keeps topics in memory: when it restarts, every
topic, changelog and committed offset is gone, yet it answers on the same address with the same cluster id. Faust
does not notice (its consumer sits on positions past the end of topics that no longer exist, and its commits never
move again). The broker also creates a missing topic as soon as a client produces to it or asks for its metadata,
so a vanished ``events`` or changelog topic can be back (empty, perhaps with another partition count) before anyone
looks. So the worker creates one topic nobody produces to or consumes from, ``<app_id>-broker-epoch``, and lists
the broker's topics (a listing creates nothing) every ``broker_check_interval_s``: if that topic, or any other
watched topic seen earlier, is missing, the broker lost our data and the worker recovers (``stream.worker``). A
broker that does not answer is *not* a reset: that is an outage, which the consumer rides out. (End offsets below
consumed positions are no sign here: Tansu 0.6.0 under-reports end offsets, see ``stream.transport``.)

**Apache Kafka: a deleted topic.** Kafka keeps its topics on disk, so a topic that vanishes was deleted by someone.
The worker says so (one ``ERROR`` line per topic and the ``streamrec_topic_missing`` gauge at 1 while it is
missing) and does nothing else: republishing tables and evicting the consumer group would disturb every worker of
the group for what is an operator's mistake, and re-creating the topic is the operator's call (a worker re-creates
its missing topics when it starts).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from connectors.broker import PROFILES, profile_for_cluster
from connectors.kafka import KafkaClientConfig, admin_client
from stream.settings import Settings

log = logging.getLogger("streamrec.worker")


def epoch_topic(app_id: str) -> str:
    """The marker topic of a worker group: created at start, never written, so only a broker reset removes it."""
    return f"{app_id}-broker-epoch"


async def cluster_id(cfg: KafkaClientConfig) -> str | None:
    """The cluster id the broker reports in its metadata."""
    async with admin_client(cfg) as admin:
        return (await admin.describe_cluster()).get("cluster_id")


def resolve_broker_profile(settings: Settings) -> Settings:
    """``settings`` with ``broker_profile`` ``auto`` replaced by the profile of the broker it names."""
    if settings.broker_profile in PROFILES:
        return settings
    cid = asyncio.run(cluster_id(KafkaClientConfig.from_settings(settings)))
    profile = profile_for_cluster(cid)
    log.warning("broker: cluster id %r, so broker_profile %s (set STREAMREC_BROKER_PROFILE to choose)", cid,
                profile.name)
    return settings.model_copy(update={"broker_profile": profile.name})


class BrokerResetDetector:
    """Decide from topic listings whether the broker lost its data: a watched topic seen before is gone.

    >>> d = BrokerResetDetector(["streamrec-broker-epoch", "events"])
    >>> d.check({"streamrec-broker-epoch", "events", "other"}) is None
    True
    >>> d.check({"events"})
    'topic streamrec-broker-epoch is gone'
    """

    def __init__(self, watched: Iterable[str]) -> None:
        self.watched = set(watched)
        self.seen: set[str] = set()

    def gone(self, present: set[str]) -> list[str]:
        """Watched topics seen in an earlier listing and missing from ``present`` (sorted)."""
        out = sorted(self.seen - present)
        self.seen |= self.watched & present
        return out

    def check(self, present: set[str]) -> str | None:
        """A one-line reason when a watched topic seen earlier is missing from ``present``, else None."""
        gone = self.gone(present)
        return f"topic {gone[0]} is gone" if gone else None


class TopicWatch:
    """What the worker makes of each topic listing, by profile: a reset to recover from, or missing topics to report.

    With ``reset_recovery`` (Tansu) :meth:`check` returns the reason of a reset; without it (Apache Kafka) it sets
    ``gauge`` (labelled by topic: 1 while missing, 0 when present), logs one error when a topic goes missing and a
    warning when it is back, and returns None.

    >>> from prometheus_client import CollectorRegistry, Gauge
    >>> g = Gauge("missing", "", ["topic"], registry=CollectorRegistry())
    >>> w = TopicWatch(["events", "items"], reset_recovery=False, gauge=g)
    >>> w.check({"events", "items"}), w.check({"events"}), g.labels("items")._value.get()
    (None, None, 1.0)
    >>> w.check({"events", "items"}), g.labels("items")._value.get()
    (None, 0.0)
    """

    def __init__(self, watched: Iterable[str], *, reset_recovery: bool, gauge: Any) -> None:
        self.detector = BrokerResetDetector(watched)
        self.reset_recovery = reset_recovery
        self.gauge = gauge
        self.missing: set[str] = set()

    def check(self, present: set[str]) -> str | None:
        if self.reset_recovery:
            return self.detector.check(present)
        gone = set(self.detector.gone(present))
        for topic in sorted(gone - self.missing):
            log.error("broker: topic %s is gone from the broker (deleted by hand?); this worker does not re-create "
                      "it or recover by itself against Apache Kafka (broker_reset_recovery is off): re-create it, "
                      "or restart the worker to have it re-created empty", topic)
        for topic in sorted(self.missing - gone):
            log.warning("broker: topic %s is back", topic)
        self.missing = gone
        for topic in sorted(self.detector.seen):
            self.gauge.labels(topic).set(1 if topic in gone else 0)
        return None
