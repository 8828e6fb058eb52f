"""Notice a broker that lost our data, so the worker can recover instead of stalling or crashing.

The embedded broker keeps topics in memory: when it restarts, every topic, changelog and committed offset is
gone, yet it answers on the same address with the same cluster id. Faust does not notice (its consumer sits on
positions past the end of topics that no longer exist, and its commits never move again). Two signs are
unambiguous, and both are checked from what the broker itself answers (a broker that does not answer is *not* a
reset: that is an outage, which the consumer rides out):

* a topic we saw before is no longer listed;
* an input partition's end offset is below the position we already consumed (the log started over).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class BrokerResetDetector:
    """Decide from topic listings and offsets whether the broker lost its data.

    >>> d = BrokerResetDetector(["events", "items"])
    >>> d.check(present={"events", "items"}) is None
    True
    >>> d.check(present={"items"})
    'topic events is gone'
    >>> d.check(positions={("events", 0): 120}, highwaters={("events", 0): 7})
    'events[0] ends at offset 7, below the consumed position 120'
    """

    def __init__(self, watched: Iterable[str]) -> None:
        self.watched = set(watched)
        self.seen: set[str] = set()

    def check(self, present: set[str] | None = None, positions: Mapping[Any, int | None] | None = None,
              highwaters: Mapping[Any, int | None] | None = None) -> str | None:
        """A one-line reason when the broker lost data, else None. ``present`` is None when not listed."""
        if present is not None:
            gone = sorted(self.seen - present)
            self.seen |= self.watched & present
            if gone:
                return f"topic {gone[0]} is gone"
        for tp, pos in (positions or {}).items():
            hw = (highwaters or {}).get(tp)
            if pos is not None and hw is not None and hw < pos:
                topic, partition = (tp.topic, tp.partition) if hasattr(tp, "topic") else tp
                return f"{topic}[{partition}] ends at offset {hw}, below the consumed position {pos}"
        return None
