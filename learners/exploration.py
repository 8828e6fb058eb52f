"""What was shown and what was clicked: per-item exposure and attributed-click counts, and the posterior of
neural-linear Thompson sampling.

The worker tells its learner, once per micro-batch, which items it sent (every list) and which of them were
clicked (events whose ``context.rec_id`` names a list the user was sent, attributed by ``stream.processor``). The
counts are the learner's feedback from what it showed: an item's exposures are how often the engine has looked
at it through a user's eyes, its clicks how often that paid off. They live in contiguous arrays that grow with
the catalog, pickled with the learner. With the ``thompson`` policy the same feedback also fits
:class:`LinearPosterior`: a Bayesian linear regression of clicks on the model's last-layer features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from learners.config import check_ranges, setting
from learners.tensors import grown


class ExposureStats:
    """Exposures and attributed clicks per item index.

    >>> e = ExposureStats(); e.grow(3)
    >>> e.observe(shown=[[0, 1], [1, 2]], clicked=[(1, 0)])
    >>> e.exposures.tolist(), e.clicks.tolist(), e.lists, e.attributed
    ([1.0, 2.0, 1.0], [0.0, 1.0, 0.0], 2, 1)
    """

    def __init__(self) -> None:
        self.exposures = np.zeros(0, dtype=np.float64)
        self.clicks = np.zeros(0, dtype=np.float64)
        self.lists = 0  # lists sent
        self.attributed = 0  # clicks attributed to a list

    def grow(self, n: int) -> None:
        """Room for ``n`` items (new ones never shown)."""
        self.exposures = grown(self.exposures, n)
        self.clicks = grown(self.clicks, n)

    def observe(self, shown: Sequence[Sequence[int]], clicked: Sequence[tuple[int, int]]) -> None:
        """``shown``: the item indices of each list sent; ``clicked``: (item index, 0-based position) of each
        attributed click. Unknown items (-1) are skipped."""
        flat = np.asarray([i for lst in shown for i in lst if i >= 0], dtype=np.int64)
        if len(flat):
            self.grow(int(flat.max()) + 1)
            np.add.at(self.exposures, flat, 1.0)
        self.lists += len(shown)
        hit = np.asarray([i for i, _ in clicked if i >= 0], dtype=np.int64)
        if len(hit):
            self.grow(int(hit.max()) + 1)
            np.add.at(self.clicks, hit, 1.0)
        self.attributed += len(hit)


def features(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Neural-linear features of (user, item) pairs: ``sqrt(dim) * (u / |u|) * (v / |v|)`` elementwise, from the
    model's last layer (``u``: user vectors, ``v``: adapted item vectors, broadcast against each other), so
    their sum is ``sqrt(dim)`` times the pair's cosine and their norm is about 1 whatever the vectors' scales.

    >>> features(np.array([[3.0, 4.0]]), np.array([[1.0, 0.0], [0.0, 2.0]])).round(3).tolist()
    [[0.849, 0.0], [0.0, 1.131]]
    """
    u = users / np.maximum(np.linalg.norm(users, axis=-1, keepdims=True), 1e-12)
    v = items / np.maximum(np.linalg.norm(items, axis=-1, keepdims=True), 1e-12)
    out: np.ndarray = np.sqrt(users.shape[-1]) * u * v
    return out


def examination(positions: np.ndarray) -> np.ndarray:
    """The assumed chance that a place is looked at: ``1 / log2(position + 2)`` (0-based; DCG's discount)."""
    out: np.ndarray = 1.0 / np.log2(np.asarray(positions, dtype=np.float64) + 2.0)
    return out


class LinearPosterior:
    """Bayesian linear regression of attributed clicks on the neural-linear :func:`features` of what was shown
    (Riquelme et al. 2018, "Deep Bayesian bandits showdown": the network's last layer as the features of a linear
    bandit): a shown place ``p`` is clicked with chance ``examination(p) * (phi . w)``, ``w ~ N(0, I / ridge)``
    a priori, unit noise. Its precision ``A = ridge I + sum e^2 phi phi^T`` and ``b = sum e y phi`` are sums over
    every place shown (``y``: clicked or not), discounted by ``decay`` at each update so that features the model
    has since moved away from fade. A draw :meth:`sample` is ``N(A^-1 b, A^-1)``.

    >>> post = LinearPosterior(2, ridge=1.0)
    >>> phi = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> post.shown(phi, np.ones(3))
    >>> post.clicked(phi[:2], np.ones(2))
    >>> post.mean().round(3).tolist(), np.diag(post.covariance()).round(3).tolist()
    ([0.667, 0.0], [0.333, 0.5])
    """

    def __init__(self, dim: int, ridge: float) -> None:
        self.ridge = ridge
        self.precision = ridge * np.eye(dim)
        self.b = np.zeros(dim)
        self.places = 0  # places shown
        self.clicks = 0

    def shown(self, phi: np.ndarray, exam: np.ndarray, decay: float = 1.0) -> None:
        """Places shown (each counted as not clicked until :meth:`clicked` says otherwise): features ``phi``
        (N, dim) and examination chances ``exam`` (N,), after discounting what was observed before by ``decay``."""
        if decay < 1.0:
            prior = self.ridge * np.eye(len(self.b))
            self.precision = prior + decay * (self.precision - prior)
            self.b *= decay
        x = phi * exam[:, None]
        self.precision += x.T @ x
        self.places += len(phi)

    def clicked(self, phi: np.ndarray, exam: np.ndarray) -> None:
        """Clicks on places counted by :meth:`shown`: their features and examination chances."""
        self.b += (phi * exam[:, None]).sum(axis=0)
        self.clicks += len(phi)

    def mean(self) -> np.ndarray:
        out: np.ndarray = np.linalg.solve(self.precision, self.b)
        return out

    def covariance(self) -> np.ndarray:
        out: np.ndarray = np.linalg.inv(self.precision)
        return out

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent draws of ``w`` (n, dim)."""
        chol = np.linalg.cholesky(self.covariance())
        out: np.ndarray = self.mean() + rng.standard_normal((n, len(self.b))) @ chol.T
        return out


POLICIES = ("none", "epsilon", "ucb", "thompson")


@dataclass(frozen=True)
class ExplorationConfig:
    """How lists explore beyond the model's order (the ``exploration`` setting; ``STREAMREC_EXPLORATION__<FIELD>``).

    policy
        ``none``: the model's lists as they are.
        ``epsilon``: with probability ``epsilon`` a list's last ``places`` places go to items drawn uniformly from
        the top ``pool`` items it lacks by the model's score plus the ``ucb`` bonus below (the model's next items
        and, the larger ``bonus``, more of the items rarely shown); propensity: the chance the item is shown in
        one of those places.
        ``ucb``: a list's last ``places`` places go to the best items it lacks by the model's score plus
        ``bonus * sqrt(log(1 + lists sent) / (1 + exposures))`` (added before the rank fusion), so items rarely
        shown (new ones first) get places where the model already likes them; deterministic: propensity 1.
        ``thompson``: the same places, by the score plus ``bonus * (phi . w + item_noise * z / sqrt(1 +
        exposures))``: neural-linear Thompson sampling. ``phi`` are the (user, item) pair's last-layer
        :func:`features`, ``w`` one draw per list from :class:`LinearPosterior` (a Bayesian linear regression of
        attributed clicks on those features, fitted on every place shown: shown-but-not-clicked places are its
        negatives), so the lists lean to the directions of the model's space that paid off and explore those
        little shown; ``z ~ N(0, 1)`` per (list, item) adds each item's own uncertainty (the per-item part of a
        hybrid linear bandit: items never shown, new ones among them, get places too; ``item_noise`` 0 by
        default, as it lowered CTR in ``benchmarks/exploration.py``). No propensity (the chance is not computed).
        The first places stay the model's.
    position
        Where a list's explored items go: -1 (the default) in the last ``places`` places, as above; ``p`` >= 0
        at place ``p`` (0: the top), the model's items from there moving down one place each (its last
        ``places`` items leave the list). The examination chance falls with the place, so an item explored near
        the top is looked at more often: in ``benchmarks/exploration.py`` the median high-appeal new item placed
        at the top was clicked within ~200 lists of arriving; placed at the end, almost none ever were.
    fresh_events
        ucb and thompson's per-item part: only items added to the catalog within the last ``fresh_events``
        learned events get a bonus (0, the default: every item, by its exposures alone). An item in the catalog
        for long without clicks is known to be unwanted even if rarely shown; a new one is not known yet.
    epsilon, places, pool, bonus, ridge, decay, item_noise
        As above (``bonus`` in units of the model's logits; ``ridge``: the posterior's prior precision; ``decay``:
        the weight left to earlier feedback at each micro-batch's update).
    """

    policy: str = setting("none", "`none`, `epsilon`, `ucb` or `thompson` (README, Exploration).")
    epsilon: float = setting(0.1, "epsilon: the chance a list explores.")
    places: int = setting(2, "How many places of a list the policy may fill (the last ones unless `position` is set).")
    pool: int = setting(40, "epsilon: the top items by score (plus bonus) the explored places are drawn from.")
    bonus: float = setting(0.5, "ucb, thompson (and epsilon's pool): the exploration bonus, in units of the model's "
                           "logits.")
    ridge: float = setting(1.0, "thompson: prior precision of the click posterior over the last layer's features.")
    decay: float = setting(0.99, "thompson: weight left to earlier feedback at each update of the posterior.")
    item_noise: float = setting(0.0, "thompson: scale of each item's own draw N(0, 1 / (1 + exposures)).")
    position: int = setting(-1, "The place explored items go to (0: the top; the model's items move down); -1: the "
                            "last `places` places.")
    fresh_events: int = setting(0, "ucb, thompson: only items added within this many learned events get the "
                                "per-item bonus (0: every item).")

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"exploration.policy: expected one of {', '.join(POLICIES)}, got {self.policy!r}")
        check_ranges(self, "exploration", {"epsilon": "[0,1]", "places": ">=0", "pool": ">=0", "bonus": ">=0",
                                               "ridge": ">0", "decay": "(0,1]", "item_noise": ">=0",
                                               "position": ">=-1", "fresh_events": ">=0"})


#: Per list: 0-based place -> propensity (None where the policy's chance is not computed) of the places the
#: exploration policy filled.
Explored = dict[int, float | None]
#: ``boost(rows, queries)``: what exploration adds to the model's scores of item indices ``rows`` ((1, n) for the
#: whole catalog, or (queries, C) candidates), broadcastable to (queries, ...).
Boost = Callable[[np.ndarray, int], np.ndarray]
Scored = Sequence[tuple[str, float]]


def epsilon_places(config: ExplorationConfig, lists: Sequence[Scored], pools: Sequence[Scored],
                   rng: np.random.Generator) -> tuple[list[list[tuple[str, float]]], list[Explored]]:
    """The ``epsilon`` policy: each list's last ``places`` places, with probability ``epsilon``, to items drawn
    from its pool (the model's longer list) that it does not hold; each takes the score of the place it fills.

    >>> cfg = ExplorationConfig("epsilon", epsilon=1.0, places=1)
    >>> epsilon_places(cfg, [[("a", 3.0), ("b", 2.0)]], [[("a", 3.0), ("b", 2.0), ("c", 1.0)]],
    ...                np.random.default_rng(0))
    ([[('a', 3.0), ('c', 2.0)]], [{1: 1.0}])
    """
    out: list[list[tuple[str, float]]] = []
    marks: list[Explored] = []
    for lst, pool in zip(lists, pools, strict=True):
        have = {i for i, _ in lst}
        mine = [i for i, _ in pool if i not in have]
        places = min(config.places, len(lst), len(mine))
        if places == 0 or rng.random() >= config.epsilon:
            out.append(list(lst))
            marks.append({})
            continue
        drawn = [mine[j] for j in rng.choice(len(mine), size=places, replace=False)]
        k = len(lst)
        at = placed_at(config, k - places)
        out.append(in_places(lst, [i for i, _ in lst[: k - places]], drawn, [], at))
        marks.append(dict.fromkeys(range(at, at + places), config.epsilon * places / len(mine)))
    return out, marks


def placed_at(config: ExplorationConfig, head: int) -> int:
    """The first place of a list's explored items when the model keeps ``head`` of its items (``position``)."""
    return head if config.position < 0 else min(config.position, head)


def in_places(model: Scored, head: Sequence[str], explored: Sequence[str], rest: Sequence[str],
              at: int) -> list[tuple[str, float]]:
    """A list made of the model's kept items ``head`` with the ``explored`` items from place ``at`` on (the
    model's items from there moving down), then ``rest``; each place keeps the score of the model's list there
    (``model``), so the scores stay in order.

    >>> in_places([("a", 3.0), ("b", 2.0), ("c", 1.0)], ["a", "b"], ["x"], [], 0)
    [('x', 3.0), ('a', 2.0), ('b', 1.0)]
    """
    ids = [*head[:at], *explored, *head[at:], *rest]
    return [(i, s) for i, (_, s) in zip(ids, model, strict=False)]


def exposure_boost(config: ExplorationConfig, exposures: np.ndarray, lists_sent: int,
                   rng: np.random.Generator, age: np.ndarray | None = None) -> Boost:
    """The score boost of ``ucb`` or ``thompson`` (see :class:`ExplorationConfig`) for items with these
    exposure counts (by item index), and ``age``: learned events since each was added (``fresh_events``).

    >>> b = exposure_boost(ExplorationConfig("ucb", bonus=1.0), np.array([0.0, 3.0]), 100, np.random.default_rng(0))
    >>> np.round(b(np.array([[0, 1]]), 1), 3).tolist()
    [[2.148, 1.074]]
    >>> b = exposure_boost(ExplorationConfig("ucb", bonus=1.0, fresh_events=50), np.array([0.0, 3.0]), 100,
    ...                    np.random.default_rng(0), age=np.array([50, 49]))
    >>> np.round(b(np.array([[0, 1]]), 1), 3).tolist()
    [[0.0, 1.074]]
    """
    scale = config.bonus / np.sqrt(1.0 + exposures)
    if config.fresh_events > 0 and age is not None:
        scale = np.where(age < config.fresh_events, scale, 0.0)
    if config.policy != "thompson":
        ucb = scale * np.sqrt(np.log1p(lists_sent))
        return lambda rows, queries: ucb[rows]
    scale *= config.item_noise
    return lambda rows, queries: rng.standard_normal((queries, rows.shape[1])) * scale[rows]


def boosted_places(config: ExplorationConfig, plain: Sequence[Scored],
                   boosted: Sequence[Scored]) -> tuple[list[list[tuple[str, float]]], list[Explored]]:
    """``ucb``/``thompson``: each list keeps the model's first ``len - places`` items; its last ``places`` places
    go to the best items of the boosted ranking it does not hold yet, each with the score of the place it fills.
    Places holding an item the model's own list lacked are the explored ones; with ``position`` >= 0 they go
    there (the model's items moving down) and the rest of the tail, items of the model's list, to the end.

    >>> cfg = ExplorationConfig("ucb", places=1)
    >>> boosted_places(cfg, [[("a", 3.0), ("b", 2.0)]], [[("c", 9.0), ("a", 5.0), ("b", 1.0)]])
    ([[('a', 3.0), ('c', 2.0)]], [{1: 1.0}])
    >>> boosted_places(ExplorationConfig("ucb", places=1, position=0), [[("a", 3.0), ("b", 2.0)]],
    ...                [[("c", 9.0), ("a", 5.0), ("b", 1.0)]])
    ([[('c', 3.0), ('a', 2.0)]], [{0: 1.0}])
    """
    value = 1.0 if config.policy == "ucb" else None
    out: list[list[tuple[str, float]]] = []
    marks: list[Explored] = []
    for p, b in zip(plain, boosted, strict=True):
        kept = max(0, len(p) - config.places)
        head = [i for i, _ in p[:kept]]
        have = set(head)
        tail = [i for i, _ in b if i not in have][: len(p) - kept]
        model = {i for i, _ in p}
        if config.position < 0:
            lst = in_places(p, head, tail, [], kept)
        else:
            lst = in_places(p, head, [i for i in tail if i not in model], [i for i in tail if i in model],
                            placed_at(config, kept))
        out.append(lst)
        marks.append({pos: value for pos, (i, _) in enumerate(lst) if i not in model})
    return out, marks
