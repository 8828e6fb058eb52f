"""Drift watching in the worker: feeds the detectors of :mod:`learners.drift`, exports gauges and alarm counters
with bounded labels, and optionally reacts to an alarm (a temporary learning-rate boost)."""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

from learners.drift import EmbeddingDrift, SignalDriftMonitor, WindowedDistributionDrift
from learners.types import WorkerLearner
from stream.metrics import WorkerMetrics
from stream.settings import Settings


class DriftWatch:
    """Performance drift (hit, loss), data drift (item popularity, event types, new/unknown items) and
    embedding drift (mean adapted vector of consumed items), one window of ``drift_window`` events at a time."""

    def __init__(self, settings: Settings, learner: WorkerLearner, metrics: WorkerMetrics) -> None:
        s = self.settings = settings
        self.learner = learner
        self.metrics = metrics
        self.hit = SignalDriftMonitor("hit", seed=s.seed, mode="down")
        self.loss = SignalDriftMonitor("loss", seed=s.seed, mode="up")
        self.items = WindowedDistributionDrift("item_popularity", s.drift_window, 256, s.psi_threshold, s.js_threshold)
        self.types = WindowedDistributionDrift("event_type", s.drift_window, 32, s.psi_threshold, s.js_threshold)
        self.embedding = EmbeddingDrift(s.embedding_drift_threshold)
        self._window_items: Counter[str] = Counter()
        self._first_seen: dict[str, int] = {}
        self._new: deque[int] = deque(maxlen=s.hit_window)
        self._n = 0

    def alarm(self, detector: str, signal: str) -> None:
        """Count an alarm and react if configured."""
        self.metrics.drift_alarms.labels(detector, signal).inc()
        if self.settings.drift_reaction == "lr_boost":
            self.learner.boost_learning_rate(self.settings.drift_lr_boost, self.settings.drift_boost_steps)

    def observe_hit(self, hit: bool) -> None:
        for det in self.hit.update(1.0 if hit else 0.0):
            self.alarm(det, "hit")

    def observe_loss(self, loss: float) -> None:
        if loss == loss:  # not NaN
            for det in self.loss.update(loss):
                self.alarm(det, "loss")

    def observe_event(self, item_id: str, event_type: str) -> None:
        """One accepted event."""
        self._n += 1
        first = self._first_seen.setdefault(item_id, self._n)
        self._new.append(int(self._n - first < self.settings.drift_window))
        if self._n % 100 == 0:
            self.metrics.new_item_ratio.set(sum(self._new) / len(self._new))
        self._window_items[item_id] += 1
        for det, signal in ((self.items, "item_popularity"), (self.types, "event_type")):
            out = det.update(item_id if signal == "item_popularity" else event_type)
            if out is not None:
                self.metrics.drift_score.labels(signal, "psi").set(out[0])
                self.metrics.drift_score.labels(signal, "js").set(out[1])
                if out[0] > det.psi_threshold:
                    self.alarm("psi", signal)
                if out[1] > det.js_threshold:
                    self.alarm("js", signal)
        if self._n % self.settings.drift_window == 0:
            self._close_embedding_window()

    def _close_embedding_window(self) -> None:
        index = self.learner.item_index
        counts, self._window_items = self._window_items, Counter()
        table = self.learner.adapted_item_vectors()
        rows = [(index[i], c) for i, c in counts.items() if i in index]
        if table is None or not rows:
            return
        idx = np.array([r for r, _ in rows])
        w = np.array([c for _, c in rows], dtype=np.float64)
        mean = (table[idx] * w[:, None]).sum(0) / w.sum()
        shift = self.embedding.observe(mean)
        if shift is not None:
            self.metrics.drift_score.labels("user_embedding", "cosine_shift").set(shift)
            if shift > self.embedding.threshold:
                self.alarm("embedding", "user_embedding")
