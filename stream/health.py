"""Liveness and readiness of a worker, as orchestrators ask for them (``/healthz``, ``/readyz``).

*Live* means the process is doing its work: false once an agent has crashed (the worker then also exits non-zero,
so an orchestrator restarts it). *Ready* means it answers from a loaded catalog: true once the catalog was read to
the end it had at start-up and the events agent runs, false again while a fatal error is being handled.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WorkerHealth:
    """Thread-safe health flags shared by the agents and the HTTP endpoints.

    >>> h = WorkerHealth()
    >>> h.readiness()[0], h.liveness()[0]
    (503, 200)
    >>> h.set_ready(catalog_items=3, partitions=[0, 1], model_version=7)
    >>> code, body = h.readiness(); code, body["catalog_items"]
    (200, 3)
    >>> h.set_failed("events agent crashed: boom")
    >>> h.readiness()[0], h.liveness()
    (503, (500, {'status': 'failed', 'reason': 'events agent crashed: boom'}))
    """

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    ready: bool = False
    failed: str | None = None
    waiting_for: str = "starting"
    details: dict[str, Any] = field(default_factory=dict)
    ready_since: float | None = None

    def set_waiting(self, what: str) -> None:
        """Not ready yet: ``what`` says what the worker waits for (shown by ``/readyz``)."""
        with self._lock:
            self.waiting_for = what

    def set_ready(self, **details: Any) -> None:
        """Ready to answer; ``details`` (catalog size, partitions, model version) are shown by ``/readyz``."""
        with self._lock:
            self.ready = True
            self.waiting_for = ""
            self.details = dict(details)
            self.ready_since = time.time()

    def set_failed(self, reason: str) -> None:
        """A fatal error: neither live nor ready any more."""
        with self._lock:
            self.failed = reason
            self.ready = False

    def liveness(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of ``/healthz``."""
        with self._lock:
            if self.failed is not None:
                return 500, {"status": "failed", "reason": self.failed}
            return 200, {"status": "ok"}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of ``/readyz``."""
        with self._lock:
            if self.failed is not None:
                return 503, {"status": "failed", "reason": self.failed}
            if not self.ready:
                return 503, {"status": "waiting", "waiting_for": self.waiting_for}
            return 200, {"status": "ready", **self.details}
