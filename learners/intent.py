"""User intent from text: a request's text (an event's ``context.query``) moves the user vector of that request
toward the text's adapted vector, so "something funny" shifts the list without any learning step."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from learners.config import check_ranges, setting
from learners.heads import AdapterHead
from learners.types import Query, TextEncoder


@dataclass(frozen=True)
class IntentConfig:
    """How request texts move user vectors (the ``intent`` setting; ``STREAMREC_INTENT__<FIELD>``)."""

    weight: float = setting(4.0, "How far an event's `context.query` text moves the user vector of its request "
                            "(0: ignored).")
    cache: int = setting(10_000, "Request texts whose frozen embeddings are kept (the latest ones).")

    def __post_init__(self) -> None:
        check_ranges(self, "intent", {"weight": ">=0", "cache": ">=1"})


class IntentCache:
    """Frozen embeddings of the latest request texts (the encoder is frozen: a text's vector never changes).

    >>> from learners.encoder import HashingEncoder
    >>> c = IntentCache(2); c.encode(HashingEncoder(8), ["a", "b", "a", "c"])
    >>> list(c.vectors)
    ['a', 'c']
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, encoder: TextEncoder | None, texts: Sequence[str]) -> None:
        """Encode the texts not cached yet, in one batch; the cache keeps the latest ``size`` texts."""
        cache = self.vectors
        missing = [t for t in dict.fromkeys(texts) if t and t not in cache]
        if missing and encoder is not None:
            for t, v in zip(missing, encoder.encode(missing), strict=True):
                cache[t] = np.asarray(v, dtype=np.float32)
        for t in texts:
            if t in cache:
                cache.move_to_end(t)
        while len(cache) > self.size:
            cache.popitem(last=False)

    def rows(self, qs: Sequence[Query], width: int) -> np.ndarray:
        """(B, width) embeddings of the queries' texts (zero rows: no text, or one of another width)."""
        out = np.zeros((len(qs), width), dtype=np.float32)
        for row, q in enumerate(qs):
            v = self.vectors.get(q.intent) if q.intent else None
            if v is not None and len(v) == width:
                out[row] = v
        return out


def with_intent(head: AdapterHead, u: torch.Tensor, intent: torch.Tensor, weight: float) -> torch.Tensor:
    """User vectors moved toward their request's text: ``u + weight * |u| * q / |q|``, q the text's adapted vector
    (the item head without an item's own id vector); rows without a text unchanged."""
    has = intent.abs().sum(dim=1, keepdim=True) > 0
    q = intent @ head.proj.T + head.mlp(intent)
    q = torch.nn.functional.normalize(q, dim=1) * u.norm(dim=1, keepdim=True).clamp(min=1e-6)
    return torch.where(has, u + weight * q, u)
