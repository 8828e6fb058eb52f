"""The no-update control: any learner, frozen after a warm-up, so the value of online learning is visible."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence

from learners.types import Interaction, Item, Learner, Query, Recommendation, learn_in_one_stage


class FrozenAfterWarmup:
    """Learns from the first ``warmup`` events, then never updates (new catalog items are still added).

    >>> from learners.baselines.popularity import Popularity
    >>> m = FrozenAfterWarmup(Popularity(), warmup=1); m.add_items([Item("a", ""), Item("b", "")])
    >>> m.learn_many([Interaction("u", "a")], [()]); m.learn_many([Interaction("u", "b")] * 3, [()] * 3)
    >>> m.recommend(Query("v"), k=1)[0][0], m.model_version
    ('a', 1)
    """

    def __init__(self, learner: Learner, warmup: int = 10_000) -> None:
        self.learner = learner
        self.warmup = warmup
        self.seen = 0

    @property
    def model_version(self) -> int:
        return self.learner.model_version

    def add_items(self, items: Sequence[Item]) -> None:
        self.learner.add_items(items)

    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        self.learn_many([x], [history])

    def learn_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None:
        room = max(0, self.warmup - self.seen)
        if room:
            self.learner.learn_many(xs[:room], histories[:room])
        self.seen += len(xs)


    def learn_stages(self, xs: Sequence[Interaction],
                     histories: Sequence[Sequence[str]]) -> Iterator[Callable[[], None]]:
        return learn_in_one_stage(self, xs, histories)
    def recommend(self, q: Query, k: int = 10) -> Recommendation:
        return self.learner.recommend(q, k)

    def recommend_many(self, qs: Sequence[Query], k: int = 10) -> list[Recommendation]:
        return self.learner.recommend_many(qs, k)

    def score(self, q: Query, item_ids: Sequence[str]) -> list[float]:
        return self.learner.score(q, item_ids)

    def recommend_readonly(self, q: Query, k: int = 10) -> Recommendation:
        return self.learner.recommend_readonly(q, k)

    def similar_items(self, item_id: str, k: int = 10) -> Recommendation | None:
        return self.learner.similar_items(item_id, k)

    def similar_stages(self, item_id: str, k: int = 10) -> Generator[Callable[[], None], None, Recommendation | None]:
        return self.learner.similar_stages(item_id, k)
