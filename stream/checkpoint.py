"""Model checkpoints: the whole learner (adapter, optimizer state, replay buffer, item embeddings) on local disk.

Files are ``model-<version>.pkl`` written atomically (temp file + rename); the newest ``keep`` are kept. The
frozen encoder is not stored: it is re-attached after loading. Each checkpoint also records, per input
partition, the offset after the last event the saved model learned from, so a restarted worker can re-learn
what came after it (see ``stream.processor.EventProcessor.rewind``).

A checkpoint is config + arrays, not a pickle (:mod:`stream.statefile`): every tensor and numpy array is written
as raw bytes straight from its memory, and the objects around them (the part configs, the learner's structure)
as one JSON document that names each array by number, with its dtype and shape. Loading builds only the
learner's own classes and torch's modules and optimizers, and runs no code the file names. Layout: ``MAGIC``, the
arrays' bytes one after another, the JSON document (UTF-8), the arrays' sizes (little-endian uint64), then the
document's size and the number of arrays (uint64 each).

Files written by earlier versions (``MAGIC_PICKLED``: the same layout with a pickle for the document; or a plain
pickle) are still read, once, by the worker that upgrades; its next checkpoint is in today's form. A file that
cannot be read is logged as an error naming it and why, and the next older one is tried.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stream.statefile import StateFileError, decode, encode

_NAME = re.compile(r"^model-(\d+)\.pkl$")
MAGIC = b"streamrec-checkpoint-3\n"
MAGIC_PICKLED = b"streamrec-checkpoint-2\n"  # the document pickled (checkpoints from before config + arrays)
_U64 = struct.Struct("<Q")

log = logging.getLogger("streamrec.checkpoint")


def _tensor(array: np.ndarray, parameter: bool, requires_grad: bool) -> torch.Tensor:
    """A tensor back from the array a ``MAGIC_PICKLED`` file holds (sharing its memory): named by those files."""
    t = torch.from_numpy(array)
    if parameter:
        return torch.nn.Parameter(t, requires_grad=requires_grad)
    return t.requires_grad_(requires_grad) if requires_grad else t


def dump(payload: Any, fh: Any) -> None:
    """Write ``payload`` to the binary file ``fh`` in the layout of the module doc."""
    fh.write(MAGIC)
    sizes: list[int] = []

    def out_of_band(raw: memoryview) -> None:
        fh.write(raw)
        sizes.append(raw.nbytes)

    body = json.dumps(encode(payload, out_of_band), separators=(",", ":"), allow_nan=False).encode()
    fh.write(body)
    fh.write(struct.pack(f"<{len(sizes)}Q", *sizes))
    fh.write(_U64.pack(len(body)) + _U64.pack(len(sizes)))


def load(fh: Any) -> Any:
    """Read what :func:`dump` wrote (or a file of an earlier version: see the module doc)."""
    magic = fh.read(len(MAGIC))
    if magic not in (MAGIC, MAGIC_PICKLED):
        fh.seek(0)
        return pickle.load(fh)  # noqa: S301 - a plain pickle of an earlier version, in the worker's own data dir
    end = fh.seek(0, os.SEEK_END)
    fh.seek(end - 2 * _U64.size)
    body_len, n = _U64.unpack(fh.read(_U64.size))[0], _U64.unpack(fh.read(_U64.size))[0]
    fh.seek(end - 2 * _U64.size - 8 * n)
    sizes = struct.unpack(f"<{n}Q", fh.read(8 * n))
    body_at = end - 2 * _U64.size - 8 * n - body_len
    if body_at != len(MAGIC) + sum(sizes):
        raise StateFileError("checkpoint: sizes do not add up (a truncated file?)")
    fh.seek(len(MAGIC))
    buffers = []
    for size in sizes:
        buf = bytearray(size)
        if fh.readinto(buf) != size:
            raise EOFError("checkpoint: an array ends early")
        buffers.append(buf)
    body = fh.read(body_len)
    if magic == MAGIC_PICKLED:
        return pickle.loads(body, buffers=buffers)  # noqa: S301 - an earlier version's file, in our own data dir
    return decode(json.loads(body), buffers)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A loaded checkpoint: the learner, its ``model_version`` and the learned offsets per (topic, partition)."""

    learner: Any
    version: int
    offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Written:
    """A checkpoint written by :meth:`CheckpointStore.write`, not yet synced nor in place."""

    store: CheckpointStore
    tmp: Path
    path: Path

    def commit(self) -> Path:
        """Sync the file to disk, put it in place (atomically: a crash leaves the older checkpoints), drop the
        oldest beyond ``keep``; returns the file."""
        try:
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        os.replace(self.tmp, self.path)
        self.store._prune()  # noqa: SLF001 - the store's own helper
        return self.path


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
        return self.write(learner, version, offsets).commit()

    def write(self, learner: Any, version: int, offsets: Mapping[tuple[str, int], int] | None = None) -> Written:
        """The part of :meth:`save` that reads the learner: its bytes written to a temporary file (to the page
        cache; not yet synced to disk). The learner may change again once this returns; :meth:`Written.commit`
        makes the file checkpoint ``version``. The worker holds the model only for this part: at 200k items the
        sync takes 0.15 to 0.2 s more, which learning (and the events it answers) waited through before."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".model-{version}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as fh:
                dump({"learner": learner, "version": version, "offsets": dict(offsets or {}),
                      "saved_at": time.time()}, fh)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Written(self, tmp, self.folder / f"model-{version}.pkl")

    def _prune(self) -> None:
        for old in self.list()[: -self.keep] if self.keep > 0 else []:
            old.unlink(missing_ok=True)

    def load_latest(self) -> Checkpoint | None:
        """The newest readable checkpoint, or None (a corrupt file is skipped)."""
        for path in reversed(self.list()):
            try:
                with open(path, "rb") as fh:
                    data = load(fh)
                return Checkpoint(data["learner"], int(data["version"]), dict(data.get("offsets", {})))
            except (OSError, EOFError, pickle.UnpicklingError, KeyError, AttributeError, ValueError, TypeError,
                    struct.error, json.JSONDecodeError) as exc:  # StateFileError is a ValueError
                log.error("checkpoint %s cannot be read (%s: %s); trying an older one", path, type(exc).__name__, exc)
                continue
        return None
