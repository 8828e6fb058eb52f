"""Notice a broker that lost our data, so the worker can recover instead of stalling or crashing.

The embedded broker keeps topics in memory: when it restarts, every topic, changelog and committed offset is
gone, yet it answers on the same address with the same cluster id. Faust does not notice (its consumer sits on
positions past the end of topics that no longer exist, and its commits never move again). The broker also
creates a missing topic as soon as a client produces to it or asks for its metadata, so a vanished ``events`` or
changelog topic can be back (empty, perhaps with another partition count) before anyone looks.

So the worker creates one topic nobody produces to or consumes from, ``<app_id>-broker-epoch``, and lists the
broker's topics (a listing creates nothing) every ``broker_check_interval_s``: if that topic, or any other watched
topic seen earlier, is missing, the broker lost our data. A broker that does not answer is *not* a reset: that is
an outage, which the consumer rides out. (End offsets below consumed positions are no sign here: Tansu 0.6.0
under-reports end offsets, see ``stream.transport``.)
"""

from __future__ import annotations

from collections.abc import Iterable


def epoch_topic(app_id: str) -> str:
    """The marker topic of a worker group: created at start, never written, so only a broker reset removes it."""
    return f"{app_id}-broker-epoch"


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

    def check(self, present: set[str]) -> str | None:
        """A one-line reason when a watched topic seen earlier is missing from ``present``, else None."""
        gone = sorted(self.seen - present)
        self.seen |= self.watched & present
        return f"topic {gone[0]} is gone" if gone else None
