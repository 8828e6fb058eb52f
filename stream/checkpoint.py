"""Model checkpoints: the whole learner (adapter, optimizer state, replay buffer, item embeddings) on local disk.

Files are ``model-<version>.pkl`` written atomically (temp file + rename); the newest ``keep`` are kept. The
frozen encoder is not stored: it is re-attached after loading. Each checkpoint also records, per input
partition, the offset after the last event the saved model learned from, so a restarted worker can re-learn
what came after it (see ``stream.processor.EventProcessor.rewind``).
"""

from __future__ import annotations

import os
import pickle
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^model-(\d+)\.pkl$")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A loaded checkpoint: the learner, its ``model_version`` and the learned offsets per (topic, partition)."""

    learner: Any
    version: int
    offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)


class CheckpointStore:
    """Save and load learner checkpoints in one folder.

    >>> import tempfile
    >>> store = CheckpointStore(Path(tempfile.mkdtemp()), keep=2)
    >>> for v in (1, 2, 3):
    ...     _ = store.save({"version": v}, version=v, offsets={("events", 0): 10 * v})
    >>> last = store.load_latest()
    >>> [p.name for p in store.list()], last.learner, last.offsets
    (['model-2.pkl', 'model-3.pkl'], {'version': 3}, {('events', 0): 30})
    """

    def __init__(self, folder: Path, keep: int = 2) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def list(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, learner: Any, version: int, offsets: Mapping[tuple[str, int], int] | None = None) -> Path:
        """Write ``learner`` (and the offsets it learned up to) as checkpoint ``version``; returns the file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"model-{version}.pkl"
        tmp = self.folder / f".model-{version}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump({"learner": learner, "version": version, "offsets": dict(offsets or {}),
                         "saved_at": time.time()}, fh,
                        protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        for old in self.list()[: -self.keep] if self.keep > 0 else []:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> Checkpoint | None:
        """The newest readable checkpoint, or None (a corrupt file is skipped)."""
        for path in reversed(self.list()):
            try:
                with open(path, "rb") as fh:
                    data = pickle.load(fh)  # noqa: S301 - our own files in the worker's data dir
                return Checkpoint(data["learner"], int(data["version"]), dict(data.get("offsets", {})))
            except (OSError, EOFError, pickle.UnpicklingError, KeyError, AttributeError):
                continue
        return None
