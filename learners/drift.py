"""Drift detectors on streaming signals (river's ADWIN and Page-Hinkley), with no Kafka or metrics imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from river import drift


@dataclass
class SignalDriftMonitor:
    """ADWIN and Page-Hinkley watching one numeric signal (e.g. the online hit 0/1 stream or the loss).

    ``update`` returns the names of the detectors that raised an alarm on this value.

    >>> m = SignalDriftMonitor("hit", seed=0)
    >>> alarms = [a for x in [1.0] * 2000 + [0.0] * 2000 for a in m.update(x)]
    >>> "adwin" in alarms
    True
    """

    signal: str
    adwin_delta: float = 0.002
    ph_threshold: float = 50.0
    ph_min_instances: int = 500
    seed: int = 0
    alarms: dict[str, int] = field(default_factory=lambda: {"adwin": 0, "page_hinkley": 0})
    _adwin: Any = None
    _ph: Any = None

    def __post_init__(self) -> None:
        self._adwin = drift.ADWIN(delta=self.adwin_delta)  # type: ignore[no-untyped-call]
        self._ph = drift.PageHinkley(min_instances=self.ph_min_instances, threshold=self.ph_threshold, mode="down")

    def update(self, x: float) -> list[str]:
        """Feed one value; return detectors that alarmed."""
        fired: list[str] = []
        self._adwin.update(x)
        if self._adwin.drift_detected:
            fired.append("adwin")
        self._ph.update(x)
        if self._ph.drift_detected:
            fired.append("page_hinkley")
        for name in fired:
            self.alarms[name] += 1
        return fired
