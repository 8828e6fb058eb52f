"""Periodic retraining, the batch alternative to learning online (``streamrec-retrain-N``).

A nightly job's model: every ``every`` events the default learner's model is trained from scratch on every event
so far, served frozen until the next retrain. Training goes through the model's own code: ``epochs`` passes of
shuffled mini-batches, each through :meth:`~learners.adapter.AdapterRecommender.learn_many` (one Adam step on
the batch's next-item examples, each with the history it had when it happened, so shuffling loses nothing). The
stream statistics the model keeps beside its parameters (co-occurrence and decayed-popularity signals, the cold
gate) are then rebuilt in time order (:meth:`~learners.adapter.AdapterRecommender.count_many`), as a batch job
computes them from its log: after shuffled epochs they would count each event ``epochs`` times and remember a
random order's popularity.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable, Generator, Iterator, Sequence

from learners.adapter import AdapterRecommender
from learners.types import Interaction, Item, Query, Recommendation, TextEncoder, learn_in_one_stage

COUNT_BATCH = 256  # events per count_many call when the statistics are rebuilt: the worker's micro-batch


class PeriodicRetrain:
    """Retrains a fresh copy of ``template`` on every event so far each ``every`` events; serves it frozen.

    Parameters
    ----------
    template
        An untrained :class:`~learners.adapter.AdapterRecommender` with the architecture and hyper-parameters to
        retrain (the default learner's, from settings); every retrain starts from a copy of it. The copies take
        no replayed examples (``replay_ratio`` 0: shuffled epochs already mix old and new events) and no early
        steps (``early_events`` 0: the epochs are what early steps stand in for online).
    every
        Events between retrains (the first one after ``every`` events; before it the untrained model is served).
    epochs
        Passes over every event so far per retrain. 2-3 gave the best held-out HR@10 on the first half of
        ML-100K (trained on its first 40,000 events, served on the next 5,000); 4 and more overfit.
    batch_size
        Examples per Adam step: 512, as many as one online step takes (256 new events and 256 replayed).
    seed
        Seeds the shuffles (the model's initial parameters are the template's).

    Examples
    --------
    >>> from learners.encoder import HashingEncoder
    >>> m = PeriodicRetrain(AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu"), every=4, epochs=2)
    >>> m.add_items([Item("a", "space opera"), Item("b", "space opera two"), Item("c", "cooking show")])
    >>> m.learn_many([Interaction("u", "b"), Interaction("v", "c")], [("a",), ()])
    >>> m.model_version, m.retrains
    (0, 0)
    >>> m.learn_many([Interaction("u", "c"), Interaction("v", "a")], [("a", "b"), ("c",)])
    >>> m.model_version, m.steps, m.model.model_version  # 2 epochs of one 4-event batch
    (1, 2, 2)
    """

    def __init__(self, template: AdapterRecommender, every: int = 5000, epochs: int = 3, batch_size: int = 512,
                 seed: int = 0) -> None:
        if template.model_version:
            raise ValueError(f"template: expected an untrained learner, got one at model_version "
                             f"{template.model_version}")
        for name, value in (("every", every), ("epochs", epochs), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self.template = template
        self.every = every
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.log: list[tuple[Interaction, tuple[str, ...]]] = []  # every event learned so far, with its history
        self.retrains = 0
        self.steps = 0  # Adam steps over all retrains
        self._due = every
        self._rng = random.Random(seed)
        self.model = self._fresh()

    def _fresh(self) -> AdapterRecommender:
        """An untrained copy of the template, with the encoder attached (a copy drops it, as a pickle does)."""
        m = copy.deepcopy(self.template)
        if self.template.encoder is not None:
            m.attach_encoder(self.template.encoder)
        m.training = dataclasses.replace(m.training, replay_ratio=0.0, early_events=0)
        return m

    def attach_encoder(self, encoder: TextEncoder) -> None:
        """Re-attach a frozen encoder after unpickling (only needed to add items by text)."""
        self.template.attach_encoder(encoder)
        self.model.attach_encoder(encoder)

    @property
    def model_version(self) -> int:
        """Retrains so far: the version of the model being served."""
        return self.retrains

    def add_items(self, items: Sequence[Item]) -> None:
        self.template.add_items(items)
        self.model.add_items(items)  # a new item is served from its text until the next retrain

    # -- learning --------------------------------------------------------------------------------------------
    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        self.learn_many([x], [history])

    def learn_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None:
        """Log the events; once ``every`` more have arrived since the last retrain, retrain on all of them."""
        seq_len = self.template.seq_len
        self.log.extend((x, tuple(h[-seq_len:])) for x, h in zip(xs, histories, strict=True))
        if len(self.log) >= self._due:
            self.retrain()


    def learn_stages(self, xs: Sequence[Interaction],
                     histories: Sequence[Sequence[str]]) -> Iterator[Callable[[], None]]:
        return learn_in_one_stage(self, xs, histories)
    def retrain(self) -> None:
        """Train a fresh copy on every logged event (``epochs`` shuffled passes), rebuild its statistics in time
        order, and serve it from now on."""
        m = self._fresh()
        log = self.log
        order = list(range(len(log)))
        for _ in range(self.epochs):
            self._rng.shuffle(order)
            for start in range(0, len(order), self.batch_size):
                chunk = [log[j] for j in order[start : start + self.batch_size]]
                m.learn_many([x for x, _ in chunk], [h for _, h in chunk])
                self.steps += 1
        m.reset_statistics()
        for start in range(0, len(log), COUNT_BATCH):
            chunk = log[start : start + COUNT_BATCH]
            m.count_many([x for x, _ in chunk], [h for _, h in chunk])
        self.model = m
        self.retrains += 1
        self._due = (len(log) // self.every + 1) * self.every

    # -- serving (the frozen model) --------------------------------------------------------------------------
    def recommend(self, q: Query, k: int = 10) -> Recommendation:
        return self.model.recommend(q, k)

    def recommend_many(self, qs: Sequence[Query], k: int = 10) -> list[Recommendation]:
        return self.model.recommend_many(qs, k)

    def score(self, q: Query, item_ids: Sequence[str]) -> list[float]:
        return self.model.score(q, item_ids)

    def recommend_readonly(self, q: Query, k: int = 10) -> Recommendation:
        return self.model.recommend_readonly(q, k)

    def similar_items(self, item_id: str, k: int = 10) -> Recommendation | None:
        return self.model.similar_items(item_id, k)

    def similar_stages(self, item_id: str, k: int = 10) -> Generator[Callable[[], None], None, Recommendation | None]:
        return self.model.similar_stages(item_id, k)
