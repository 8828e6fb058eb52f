"""A seeded synthetic recommendation world of any size, for scale benchmarks and tests.

Items belong to categories; an item's text is a few words drawn mostly (``text_share``) from its category's
vocabulary (so a text encoder can tell categories apart), each item has a brand of its category (``brand=...``, one
of ``brands_per_category``: an attribute that says the category whatever the text says), its popularity follows a
Zipf law over a random order of the catalog (times a brand's appeal, with ``brand_effect``), and items arrive over
time: a share of the catalog exists at the start, the rest arrive evenly over ``horizon``
events, in id order. Users have a few category tastes (weighted); an event picks a user (mildly Zipf-active),
one of their tastes (now and then any category), then an item of that category by popularity among the items
that have arrived. Every user starts with a pre-filled history drawn the same way from the initial catalog.

Everything is numpy arrays, reproducible from ``seed``; a user's pre-filled history is drawn from the seed and the
user's number when asked for, so a world of a million users holds no million histories.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from learners.types import Item

SYLLABLES = ("ka", "lo", "mi", "nu", "ra", "te", "vo", "zi", "po", "se", "da", "fu", "gi", "he", "ju", "ly")


@dataclass(frozen=True)
class WorldConfig:
    """The world's sizes and shape; every field has a default but ``items`` and ``users``."""

    items: int
    users: int
    categories: int = 0  # 0: one per 500 items, at least 8, at most 400
    words_per_category: int = 30
    shared_words: int = 300
    title_words: int = 6
    text_share: float = 0.7  # of an item's words, the share from its category's vocabulary (the rest: shared words)
    brands_per_category: int = 4
    brand_effect: float = 0.0  # an item's popularity weight x exp(brand_effect x its brand's N(0, 1) draw)
    zipf: float = 1.05  # item popularity: weight 1 / rank^zipf
    user_zipf: float = 0.6  # user activity
    tastes: int = 3  # categories per user (weights drawn at random)
    explore: float = 0.1  # share of events from any category
    history_min: int = 10
    history_max: int = 50
    initial_share: float = 0.95  # of the catalog, there from the start
    horizon: int = 100_000  # events over which the rest arrive
    seed: int = 0

    @property
    def n_categories(self) -> int:
        return self.categories or int(min(400, max(8, self.items // 500)))


class SyntheticWorld:
    """Items, users and events of one seeded world (see the module doc).

    >>> w = SyntheticWorld(WorldConfig(items=200, users=50, seed=1))
    >>> w.initial_items, len(w.items(0, 3)), w.items(0, 1)[0].item_id
    (190, 3, 'item0')
    >>> users, items = w.events(0, 1000)
    >>> hist, lengths = w.prefilled(users[:3])
    >>> bool((items < w.arrived(1000)).all()), hist.shape, bool((hist < w.initial_items).all())
    (True, (3, 50), True)
    """

    def __init__(self, config: WorldConfig) -> None:
        self.config = c = config
        rng = np.random.default_rng(c.seed)
        C = c.n_categories
        self.item_category = rng.integers(0, C, size=c.items).astype(np.int32)
        rank = rng.permutation(c.items) + 1
        self.item_weight = (1.0 / rank.astype(np.float64) ** c.zipf)
        own = rng.integers(0, c.words_per_category, size=(c.items, c.title_words))
        shared = rng.integers(0, c.shared_words, size=(c.items, c.title_words)) + C * c.words_per_category
        from_own = rng.random((c.items, c.title_words)) < c.text_share
        self.item_words = np.where(from_own, own + self.item_category[:, None] * c.words_per_category,
                                   shared).astype(np.int32)
        self.initial_items = int(round(c.items * c.initial_share))
        brands = max(c.brands_per_category, 1)  # drawn apart from the stream above: other worlds stay as they were
        brand_rng = np.random.default_rng(c.seed + 3)
        self.item_brand = (self.item_category.astype(np.int64) * brands
                           + brand_rng.integers(0, brands, size=c.items)).astype(np.int32)
        if c.brand_effect:
            appeal = brand_rng.standard_normal(C * brands)
            self.item_weight = self.item_weight * np.exp(c.brand_effect * appeal[self.item_brand])
        # per category, its items in arrival (id) order with cumulative popularity, laid end to end
        self._order = np.argsort(self.item_category, kind="stable").astype(np.int64)
        self._cat_start = np.searchsorted(self.item_category[self._order], np.arange(C + 1))
        self._cum = np.cumsum(self.item_weight[self._order])
        user_rank = rng.permutation(c.users) + 1
        activity = 1.0 / user_rank.astype(np.float64) ** c.user_zipf
        self._user_cum = np.cumsum(activity)
        self.user_tastes = rng.integers(0, C, size=(c.users, c.tastes)).astype(np.int32)
        taste_w = rng.random((c.users, c.tastes)) + 0.2
        self._taste_cum = np.cumsum(taste_w / taste_w.sum(axis=1, keepdims=True), axis=1).astype(np.float32)
        self._rng = np.random.default_rng(c.seed + 1)

    # -- items ---------------------------------------------------------------------------------------------------
    @staticmethod
    def item_id(i: int) -> str:
        return f"item{i}"

    def word(self, w: int) -> str:
        """A pronounceable word for vocabulary index ``w`` (distinct per index)."""
        out, w = [], int(w) + 17
        while True:
            out.append(SYLLABLES[w % len(SYLLABLES)])
            w //= len(SYLLABLES)
            if w == 0:
                return "".join(out)

    def item_text(self, i: int) -> str:
        return " ".join(self.word(w) for w in self.item_words[i])

    def items(self, start: int, stop: int, text: bool = True, attributes: bool = False) -> list[Item]:
        """Items ``start`` to ``stop - 1`` (with their text, or an empty one for learners that read no text; with
        their brand as an attribute, ``brand=b12``, when ``attributes``)."""
        return [Item(self.item_id(i), self.item_text(i) if text else "",
                     (f"brand=b{self.item_brand[i]}",) if attributes else ()) for i in range(start, stop)]

    def embeddings(self, start: int, stop: int, dim: int = 384) -> np.ndarray:
        """A stub encoder, vectorised: each item's L2-normalised sum of seeded random word vectors (items of a
        category share most of their words, so they lie close), for items ``start`` to ``stop - 1``."""
        vocab = self.config.n_categories * self.config.words_per_category + self.config.shared_words
        vecs = np.random.default_rng(self.config.seed + 2).standard_normal((vocab, dim)).astype(np.float32)
        words = self.item_words[start:stop]
        out = np.zeros((stop - start, dim), dtype=np.float32)
        for p in range(words.shape[1]):
            out += vecs[words[:, p]]
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
        return out

    def arrived(self, event: int) -> int:
        """How many items (ids 0 .. n-1) exist when event number ``event`` happens."""
        late = self.config.items - self.initial_items
        return self.initial_items + min(late, late * max(event, 0) // max(self.config.horizon, 1))

    # -- users and events ----------------------------------------------------------------------------------------
    def _pick_items(self, users: np.ndarray, available: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """One item per user: a taste (or any category), then an item of it by popularity among ``available``.
        ``uniforms``: (4, len(users)) numbers in [0, 1) that make the draws."""
        c = self.config
        taste = np.minimum((uniforms[0][:, None] > self._taste_cum[users]).sum(axis=1), c.tastes - 1)
        cat = self.user_tastes[users, taste].astype(np.int64)
        anyc = uniforms[1] < c.explore
        cat[anyc] = (uniforms[2][anyc] * c.n_categories).astype(np.int64)
        lo = self._cat_start[cat]
        ids_in_order = self._order
        # the category's items that have arrived are a prefix of its run (ids ascending)
        if (available == available[0]).all():  # one catalog for all: items per category, counted once
            n_avail = np.bincount(self.item_category[: int(available[0])], minlength=c.n_categories)[cat]
        else:
            n_avail = np.empty(len(users), dtype=np.int64)
            for k in np.unique(cat):
                sel = cat == k
                run = ids_in_order[self._cat_start[k]:self._cat_start[k + 1]]
                n_avail[sel] = np.searchsorted(run, available[sel])
        empty = n_avail == 0  # a category with no item yet: fall back to the most popular arrived item of any
        n_avail[empty] = 1
        base = np.where(lo > 0, self._cum[np.maximum(lo - 1, 0)], 0.0)
        top = self._cum[lo + n_avail - 1]
        pos = np.searchsorted(self._cum, base + uniforms[3] * (top - base), side="right")
        pos = np.clip(pos, lo, lo + n_avail - 1)
        out = ids_in_order[pos]
        if empty.any():
            out[empty] = int(np.argmax(self.item_weight[: int(available.min())]))
        return out.astype(np.int64)

    def _hashed_uniforms(self, keys: np.ndarray, salt: int) -> np.ndarray:
        """Numbers in [0, 1) that depend only on (seed, salt, key): splitmix64 of each key."""
        with np.errstate(over="ignore"):
            x = keys.astype(np.uint64) + np.uint64((self.config.seed * 0x9E3779B1 + salt) & 0xFFFFFFFF) * np.uint64(
                0x9E3779B97F4A7C15)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            x = x ^ (x >> np.uint64(31))
        out: np.ndarray = (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        return out

    def prefilled(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pre-filled histories of ``users`` from the initial catalog: (len(users), history_max) item ids,
        right-aligned (0-padded on the left), and their lengths. Drawn per (user, position) from the seed alone,
        so a million users cost nothing until they act, and a user's history does not depend on who else asks."""
        c = self.config
        users = np.asarray(users, dtype=np.int64)
        L = c.history_max
        lengths = c.history_min + (self._hashed_uniforms(users, 7) * (L - c.history_min + 1)).astype(np.int64)
        flat_u = np.repeat(users, L)
        keys = flat_u * L + np.tile(np.arange(L), len(users))
        uniforms = np.stack([self._hashed_uniforms(keys, salt) for salt in (11, 13, 17, 19)])
        items = self._pick_items(flat_u, np.full(len(flat_u), self.initial_items), uniforms).reshape(len(users), L)
        items[np.arange(L)[None, :] < (L - lengths)[:, None]] = 0
        return items, lengths

    def events(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) of events ``start`` to ``stop - 1`` (a user's next item follows the world's rules, not
        their history); each call continues the world's random stream."""
        n = stop - start
        users = np.searchsorted(self._user_cum, self._rng.random(n) * self._user_cum[-1], side="right")
        users = np.minimum(users, self.config.users - 1).astype(np.int64)
        available = np.array([self.arrived(e) for e in range(start, stop)], dtype=np.int64)
        return users, self._pick_items(users, available, self._rng.random((4, n)))

    def batches(self, size: int, start: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Endless micro-batches: (first event number, users, items)."""
        while True:
            users, items = self.events(start, start + size)
            yield start, users, items
            start += size

    @property
    def nbytes(self) -> int:
        """Bytes of the world's arrays (histories are drawn when asked for: see :meth:`prefilled`)."""
        arrays = (self.item_category, self.item_brand, self.item_weight, self.item_words, self._order, self._cum,
                  self._user_cum, self.user_tastes, self._taste_cum)
        return sum(a.nbytes for a in arrays)
