"""The bulk-encoding cache of ``streamrec catalog --encode`` (issue 15): hits, misses, resuming, read-back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from learners.encoder import HashingEncoder
from learners.types import FloatArray
from stream.embedding_cache import EmbeddingCache, cached_embeddings, encode_texts, text_key

TEXTS = [f"item {n}: a story about the number {n}" for n in range(50)]


class CountingEncoder:
    """HashingEncoder that counts the texts it was asked to encode, and can fail after some batches."""

    def __init__(self, dim: int = 8, fail_after_batches: int | None = None) -> None:
        self.inner = HashingEncoder(dim)
        self.texts = 0
        self.batches = 0
        self.fail_after_batches = fail_after_batches

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: Sequence[str]) -> FloatArray:
        if self.fail_after_batches is not None and self.batches >= self.fail_after_batches:
            raise KeyboardInterrupt  # the operator's ^C in the middle of a run
        self.batches += 1
        self.texts += len(texts)
        return self.inner.encode(texts)


def test_miss_then_hit(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        keys = [text_key(t) for t in TEXTS[:3]]
        assert cache.get("m", keys) == {} and cache.missing("m", keys) == keys
        vecs = HashingEncoder(8).encode(TEXTS[:2])
        cache.put("m", keys[:2], vecs)
        got = cache.get("m", keys)
        assert sorted(got) == sorted(keys[:2]) and np.array_equal(got[keys[1]], vecs[1])
        assert cache.missing("m", keys) == keys[2:]
        assert cache.missing("another model", keys) == keys  # keyed by model too
        assert cache.count("m") == 2 and cache.count("another model") == 0


def test_a_second_run_encodes_nothing_and_reads_back_the_same_vectors(tmp_path: Path) -> None:
    first = CountingEncoder()
    with EmbeddingCache(tmp_path) as cache:
        done = encode_texts([*TEXTS, TEXTS[0]], lambda: first, cache, "m", batch_size=16)
        assert (done.texts, done.unique, done.cached, done.encoded) == (51, 50, 0, 50)
        assert first.texts == 50 and first.batches == 4
    loaded: list[CountingEncoder] = []

    def load() -> CountingEncoder:
        loaded.append(CountingEncoder())
        return loaded[-1]

    with EmbeddingCache(tmp_path) as cache:  # a new process: the cache is on disk
        again = encode_texts(TEXTS, load, cache, "m")
        assert (again.cached, again.encoded) == (50, 0)
        assert loaded == []  # nothing to encode: no model loaded
        vecs = np.stack(list(cached_embeddings(TEXTS, cache, "m", chunk=7)))
    assert np.array_equal(vecs, HashingEncoder(8).encode(TEXTS))


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        with pytest.raises(KeyboardInterrupt):
            encode_texts(TEXTS, lambda: CountingEncoder(fail_after_batches=2), cache, "m", batch_size=10)
        assert cache.count("m") == 20  # the two batches before the interruption were kept
    resumed = CountingEncoder()
    progress: list[int] = []
    with EmbeddingCache(tmp_path) as cache:
        done = encode_texts(TEXTS, lambda: resumed, cache, "m", batch_size=10, on_progress=progress.append)
        assert (done.cached, done.encoded, resumed.texts) == (20, 30, 30)
        assert progress == [20, 30, 40, 50]
        assert np.array_equal(np.stack(list(cached_embeddings(TEXTS, cache, "m"))), HashingEncoder(8).encode(TEXTS))


def test_reading_a_text_that_was_never_encoded_names_it(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache, pytest.raises(KeyError, match="no cached embedding of 'never seen'"):
        list(cached_embeddings(["never seen"], cache, "m"))


def test_put_checks_one_vector_per_key(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache, pytest.raises(ValueError, match="expected 2 vectors"):
        cache.put("m", [text_key("a"), text_key("b")], np.ones((1, 4)))
