"""Bulk catalog encoding for ``streamrec catalog --encode``: a resumable on-disk cache of item-text embeddings.

Encoding a million item texts with the frozen transformer takes hours on a CPU, so the work is kept as it is
done: every encoded batch is committed to an SQLite file keyed by (model, SHA-256 of the text) before the next
batch starts. A second run, or a run after an interruption, encodes only the texts the cache does not hold.
SQLite (standard library) rather than a folder of ``.npy`` shards: a batch is one transaction, so a run killed
mid-write leaves the batches before it intact and never a half-written shard; a look-up by key reads only the
rows asked for, not a whole index in memory; and one file is easy to copy, inspect (``sqlite3``) or delete.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from learners.types import TextEncoder

CACHE_FILE = "embeddings.sqlite3"
_LOOKUP_CHUNK = 500  # keys per SELECT ... IN (...): below SQLite's oldest limit of 999 variables


def text_key(text: str) -> bytes:
    """The cache key of an item text: SHA-256 of its UTF-8 bytes (32 bytes).

    >>> text_key("Toy Story").hex()[:16]
    '09c101788b3729d5'
    """
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Embeddings of item texts on disk, keyed by (model, SHA-256 of the text): ``DIR/embeddings.sqlite3``.

    ``model`` is any string that names what made the vectors (the encoder's name and, when they change the
    vectors, its settings). Vectors are stored as float32 bytes with their width.

    >>> import tempfile
    >>> with EmbeddingCache(Path(tempfile.mkdtemp())) as cache:
    ...     cache.put("m", [text_key("a")], np.ones((1, 3)))
    ...     got = cache.get("m", [text_key("a"), text_key("b")])
    >>> {k.hex()[:4]: v.tolist() for k, v in got.items()}
    {'ca97': [1.0, 1.0, 1.0]}
    """

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / CACHE_FILE
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")  # a crash mid-commit loses that batch only
        self._db.execute("CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, text_sha256 BLOB NOT NULL, "
                         "dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, text_sha256)) WITHOUT ROWID")
        self._db.commit()

    def get(self, model: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray[Any, Any]]:
        """The cached vectors (float32) of those ``keys`` that are cached for ``model``."""
        out: dict[bytes, np.ndarray[Any, Any]] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = list(keys[start : start + _LOOKUP_CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT text_sha256, dim, vector FROM embeddings "  # noqa: S608 - only '?' marks
                                    f"WHERE model = ? AND text_sha256 IN ({marks})", [model, *chunk])
            for key, dim, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if len(vec) == dim:  # a row of another width than it says is not trusted
                    out[bytes(key)] = vec
        return out

    def missing(self, model: str, keys: Sequence[bytes]) -> list[bytes]:
        """The ``keys`` not cached for ``model``, in order, each once."""
        unique = list(dict.fromkeys(keys))
        have: set[bytes] = set()
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            have.update(bytes(k) for (k,) in self._db.execute(
                f"SELECT text_sha256 FROM embeddings WHERE model = ? AND text_sha256 IN ({marks})",  # noqa: S608
                [model, *chunk]))
        return [k for k in unique if k not in have]

    def put(self, model: str, keys: Sequence[bytes], vectors: np.ndarray[Any, Any]) -> None:
        """Store ``vectors`` (one row per key) for ``model`` and commit them (one transaction)."""
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or len(vecs) != len(keys):
            raise ValueError(f"expected {len(keys)} vectors, got an array of shape {vecs.shape}")
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)",
                                 [(model, k, vecs.shape[1], v.tobytes()) for k, v in zip(keys, vecs, strict=True)])

    def count(self, model: str) -> int:
        """How many texts are cached for ``model``."""
        return int(self._db.execute("SELECT COUNT(*) FROM embeddings WHERE model = ?", [model]).fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True)
class EncodingSummary:
    """What :func:`encode_texts` did: texts asked for, distinct texts, already cached, encoded now, and the seconds
    spent encoding them (not loading the model)."""

    texts: int
    unique: int
    cached: int
    encoded: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Texts encoded per second (0 when nothing was encoded)."""
        return self.encoded / self.seconds if self.encoded and self.seconds > 0 else 0.0


def encode_texts(texts: Sequence[str], load_encoder: Callable[[], TextEncoder], cache: EmbeddingCache, model: str,
                 *, batch_size: int = 64, on_progress: Callable[[int], None] | None = None) -> EncodingSummary:
    """Make sure ``cache`` holds an embedding of every text for ``model``; encode only the missing ones.

    ``load_encoder()`` is called once, and only when a text is missing (loading a transformer takes seconds).
    Texts are encoded ``batch_size`` at a time and every batch is committed before the next starts, so an
    interrupted run loses at most one batch. ``on_progress(n)`` is called with the number of distinct texts
    that are cached so far (first with those cached before).

    >>> import tempfile
    >>> cache = EmbeddingCache(Path(tempfile.mkdtemp()))
    >>> from learners.encoder import HashingEncoder
    >>> encode_texts(["a b", "c d", "a b"], lambda: HashingEncoder(4), cache, "hash").encoded
    2
    >>> encode_texts(["a b", "c d", "e f"], lambda: HashingEncoder(4), cache, "hash").encoded
    1
    """
    by_key = {text_key(t): t for t in texts}
    todo = cache.missing(model, list(by_key))
    cached = len(by_key) - len(todo)
    if on_progress is not None:
        on_progress(cached)
    encoder = load_encoder() if todo else None
    t0 = time.monotonic()  # encoding time, without loading the model
    for start in range(0, len(todo) if encoder is not None else 0, batch_size):
        keys = todo[start : start + batch_size]
        cache.put(model, keys, encoder.encode([by_key[k] for k in keys]))
        if on_progress is not None:
            on_progress(cached + start + len(keys))
    return EncodingSummary(len(texts), len(by_key), cached, len(todo), time.monotonic() - t0)


def cached_embeddings(texts: Iterable[str], cache: EmbeddingCache, model: str,
                      chunk: int = 1000) -> Iterator[np.ndarray[Any, Any]]:
    """The cached embedding of each text, in order, read ``chunk`` texts at a time (memory stays bounded).

    Raises ``KeyError`` naming the first text the cache lacks (:func:`encode_texts` first).
    """
    batch: list[str] = []

    def flush() -> Iterator[np.ndarray[Any, Any]]:
        keys = [text_key(t) for t in batch]
        got = cache.get(model, keys)
        for t, k in zip(batch, keys, strict=True):
            if k not in got:
                raise KeyError(f"no cached embedding of {t[:60]!r} for {model}")
            yield got[k]
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= chunk:
            yield from flush()
    yield from flush()
