"""The interfaces every learner, encoder and history store implements, in one place.

A learner never keeps the user's behaviour sequence as its source of truth: the caller (the Faust worker with its
RocksDB table, or the offline evaluator with a dict) passes the user's recent history with every call. That is
what lets the worker and ``streamrec evaluate`` run the very same learner code.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from learners.sharing import Contribution

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Item:
    """A catalog item: its id, the text the encoder reads and its attribute values (``attribute_values``)."""

    item_id: str
    text: str
    attributes: tuple[str, ...] = ()


def attribute_values(attributes: Any) -> tuple[str, ...]:
    """The learnable values of an item's ``attributes`` object: one ``key=value`` string per value, in order, each
    once. A value is a string, a number or a boolean, or a list of them (each its own value); anything else
    (null, an object) is kept on the wire but not learned from.

    >>> attribute_values({"director": "Jane Campion", "actor": ["A", "B", "A"], "year": 1993, "x": {"y": 1}})
    ('director=Jane Campion', 'actor=A', 'actor=B', 'year=1993')
    >>> attribute_values(None)
    ()
    """
    if not isinstance(attributes, dict):
        return ()
    out: dict[str, None] = {}
    for key, value in attributes.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, bool):
                v = "true" if v else "false"
            if isinstance(v, (str, int, float)) and str(v).strip():
                out[f"{str(key).strip()}={str(v).strip()}"] = None
    return tuple(out)


def attribute_object(values: Sequence[str]) -> dict[str, list[str]]:
    """The ``attributes`` object of ``key=value`` strings (each key's values as a list): the inverse of
    :func:`attribute_values` up to the values' types.

    >>> attribute_object(("director=Jane Campion", "actor=A", "actor=B"))
    {'director': ['Jane Campion'], 'actor': ['A', 'B']}
    """
    out: dict[str, list[str]] = {}
    for v in values:
        key, _, value = v.partition("=")
        out.setdefault(key, []).append(value)
    return out


@dataclass(frozen=True, slots=True)
class Interaction:
    """One positive user-item interaction (an event after validation), with its training weight."""

    user_id: str
    item_id: str
    ts: float = 0.0
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Query:
    """A request for recommendations: the user, their recent items (oldest first), items to leave out and, when
    there is one, the text of the request (user intent)."""

    user_id: str
    history: tuple[str, ...] = ()
    exclude: frozenset[str] = field(default_factory=frozenset)
    intent: str = ""  # what the user typed or the page they are on (an event's context.query): "" for none


Recommendation = list[tuple[str, float]]
#: Why one recommended item is in its list (``items[].because`` on the wire, see :mod:`learners.explain`):
#: ``{"kind": "history", "item_id": ...}``, ``{"kind": "popular"}``, ``{"kind": "new"}``, ...
Because = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RetrievalState:
    """What a two-stage learner's candidate retriever reports to the worker's metrics."""

    index_items: int  # items in the ANN index
    rebuilds: int  # graph rebuilds started (every retrieval.rebuild_updates, or on a low probe)
    index_recall: float | None  # the latest probe's share of the exact top 10 the search found (None: no probe)
    building: bool  # a graph rebuild is under way in the background


@dataclass(frozen=True, slots=True)
class ByteStream:
    """Bytes a part's ``__getstate__`` hands to the checkpoint as they are made, instead of as one array:
    ``produce(emit)`` calls ``emit`` with each chunk, in order. The checkpoint (:mod:`stream.statefile`) writes
    the chunks straight to its file and reads them back as one uint8 array. The ANN index's graph is written so:
    serialising it to an array first cost a second and two copies of the index (~385 MB each at a million items).

    >>> chunks = []
    >>> _ = ByteStream(lambda emit: [emit(b"ab"), emit(b"c")]).produce(chunks.append); chunks
    [b'ab', b'c']
    """

    produce: Callable[[Callable[[bytes], None]], Any]

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (and deep-copied) as the uint8 array of its bytes, as the checkpoint reads it back.

        >>> import pickle
        >>> pickle.loads(pickle.dumps(ByteStream(lambda emit: [emit(b"ab"), emit(b"c")]))).tobytes()
        b'abc'
        """
        chunks: list[bytes] = []
        self.produce(chunks.append)
        return np.frombuffer, (b"".join(chunks), np.uint8)


@runtime_checkable
class TextEncoder(Protocol):
    """Turns item texts into fixed-size vectors; implementations are frozen (never trained)."""

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> FloatArray: ...


@runtime_checkable
class Learner(Protocol):
    """The one protocol shared by the streamrec model and every baseline (river-style).

    ``history`` arguments are the user's items *before* the interaction, oldest first.
    """

    @property
    def model_version(self) -> int: ...

    def add_items(self, items: Sequence[Item]) -> None: ...

    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None: ...

    def learn_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None: ...

    def learn_stages(self, xs: Sequence[Interaction],
                     histories: Sequence[Sequence[str]]) -> Iterator[Callable[[], None]]:
        """:meth:`learn_many` in stages, for a caller that answers reads meanwhile (the worker's HTTP routes).
        Each function it yields only reads the learner (a gradient computation: nothing a read sees changes) or
        refreshes in place a derived structure that a read tolerates half-refreshed (an ANN index's vectors: a
        search meanwhile ranks by a mix of older and newer ones), so the caller may run it on another thread while
        it serves reads; the code between the yields changes the learner and runs on the caller's thread. Running
        every stage in order is :meth:`learn_many`."""
        ...

    def recommend(self, q: Query, k: int = 10) -> Recommendation: ...

    def recommend_many(self, qs: Sequence[Query], k: int = 10) -> list[Recommendation]: ...

    def score(self, q: Query, item_ids: Sequence[str]) -> list[float]: ...

    def recommend_readonly(self, q: Query, k: int = 10) -> Recommendation:
        """The list for ``q`` when no event came with it (a request on demand): what :meth:`recommend` gives,
        without changing the learner in any way (no counters, nothing that changes a later result). A query with
        no known item in its history (a user never seen) gets popular and fresh items."""
        ...

    def similar_items(self, item_id: str, k: int = 10) -> Recommendation | None:
        """The ``k`` items most similar to ``item_id`` (itself left out), best first; None for an unknown item,
        an empty list from a learner with no notion of item similarity. Changes nothing."""
        ...

    def similar_stages(self, item_id: str, k: int = 10) -> Generator[Callable[[], None], None, Recommendation | None]:
        """:meth:`similar_items` in stages, returning its result: each function it yields only reads what no
        learning step moves under it (a scan of an ANN index's stored vectors), so a caller that serves other
        requests meanwhile may run it on another thread; the rest runs on the caller's thread.
        ``run_stages(similar_stages(...))`` is :meth:`similar_items`."""
        ...


@runtime_checkable
class WorkerLearner(Learner, Protocol):
    """What the worker (``stream/``) asks of its learner beyond :class:`Learner`: the catalog it holds, frozen
    embeddings computed elsewhere, the counters its metrics report, and the drift reactions. The default learner
    (:class:`~learners.adapter.AdapterRecommender`) is one."""

    item_ids: list[str]
    item_index: dict[str, int]
    last_loss: float  # the latest learning step's loss (nan before the first)

    @property
    def replay(self) -> Sized:
        """The replay buffer (its size is a metric)."""
        ...

    @property
    def cold_places(self) -> tuple[int, int]:
        """(lists given cold places, cold items placed in them) so far."""
        ...

    def add_item_embeddings(self, item_ids: Sequence[str], embeddings: FloatArray,
                            attributes: Sequence[Sequence[str]] | None = None) -> None:
        """Add items whose frozen embeddings were computed elsewhere; ``attributes``: each item's attribute values
        (:func:`attribute_values`), for a learner that learns from them."""
        ...

    @property
    def attribute_count(self) -> int:
        """Item attribute values the model learns a shared vector for."""
        ...

    def boost_learning_rate(self, factor: float, steps: int) -> None: ...

    def adapted_item_vectors(self) -> FloatArray | None: ...

    @property
    def events_learned(self) -> int:
        """Events the model has learned from: this worker's own and those merged from peers."""
        ...

    # -- one model across workers (learners.sharing; the worker's side is stream.sharing) --
    @property
    def sharing_worker(self) -> str | None:
        """The name this learner shares under, or None while it does not share."""
        ...

    def start_sharing(self, worker: str) -> None: ...

    def contribution(self, marks: dict[str, int] | None = None) -> Contribution | None: ...

    def merge(self, cs: Sequence[Contribution]) -> int: ...

    @property
    def shared_marks(self) -> dict[str, int]:
        """How far into the worker's input the contributions on the shared topic reach
        (:attr:`Contribution.marks`, every worker's): an event below them is in the shared model already."""
        ...

    @property
    def retrieval_state(self) -> RetrievalState | None:
        """The candidate retriever's counters, or None while the learner scores its whole catalog."""
        ...

    def observe_feedback(self, shown: Sequence[Sequence[str]], clicked: Sequence[tuple[str, int]],
                         shown_histories: Sequence[Sequence[str]] | None = None,
                         click_histories: Sequence[Sequence[str]] | None = None) -> None:
        """What the worker sent (each list's item ids) and the clicks attributed to those lists ((item id,
        0-based position)), once per micro-batch; ``shown_histories`` / ``click_histories``: the user history
        each list was made for and each clicked list was made for (what ``thompson`` fits its posterior on)."""
        ...

    @property
    def last_explored(self) -> list[dict[int, float | None]]:
        """Per list of the latest ``recommend_many``: the 0-based places its exploration policy filled, each with
        its propensity (None: not computed)."""
        ...

    @property
    def feedback(self) -> tuple[int, int]:
        """(lists sent, attributed clicks) seen through :meth:`observe_feedback`."""
        ...

    def encode_intents(self, texts: Sequence[str]) -> None:
        """Encode these request texts (:attr:`Query.intent`) into the learner's cache, so recommending for them
        later encodes nothing (the worker calls this off its event loop)."""
        ...

    def explain_many(self, qs: Sequence[Query], recs: Sequence[Recommendation]) -> list[list[Because]]:
        """One reason per item of each list in ``recs``, made for ``qs`` by this learner as it is now (before it
        learns again); changes nothing."""
        ...


class BaseLearner:
    """Shared plumbing: an item index, batch methods defined from single ones, top-k with exclusion.

    Subclasses implement :meth:`learn_one` and :meth:`_score_all` (scores for every known item, in index order);
    they may override the ``*_many`` methods to batch.

    Examples
    --------
    >>> class Constant(BaseLearner):
    ...     def _score_all(self, q):
    ...         return np.arange(len(self.item_ids), dtype=np.float32)
    >>> m = Constant()
    >>> m.add_items([Item("a", "A"), Item("b", "B"), Item("c", "C")])
    >>> m.recommend(Query("u", exclude=frozenset({"c"})), k=2)
    [('b', 1.0), ('a', 0.0)]
    """

    def __init__(self) -> None:
        self.item_ids: list[str] = []
        self.item_index: dict[str, int] = {}
        self._version = 0

    # -- catalog ---------------------------------------------------------------------------------------------
    def add_items(self, items: Sequence[Item]) -> None:
        """Register catalog items (idempotent: known ids are ignored)."""
        for it in items:
            self._register(it.item_id)

    def _register(self, item_id: str) -> int:
        idx = self.item_index.get(item_id)
        if idx is None:
            idx = self.item_index[item_id] = len(self.item_ids)
            self.item_ids.append(item_id)
        return idx

    @property
    def model_version(self) -> int:
        """Number of updates applied so far; every recommendation carries it."""
        return self._version

    # -- state: ``item_index`` is ``item_ids`` inverted, so it is not saved but rebuilt ----------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("item_index", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A state of :meth:`__getstate__` (or an older one that still holds ``item_index``).

        >>> m = BaseLearner()
        >>> m.add_items([Item("a", ""), Item("b", "")])
        >>> back = BaseLearner.__new__(BaseLearner)
        >>> back.__setstate__(m.__getstate__())
        >>> back.item_index
        {'a': 0, 'b': 1}
        """
        self.__dict__.update(state)
        if "item_index" not in state:
            self.item_index = {item_id: row for row, item_id in enumerate(self.item_ids)}

    # -- learning --------------------------------------------------------------------------------------------
    def learn_one(self, x: Interaction, history: Sequence[str] = ()) -> None:
        raise NotImplementedError

    def learn_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None:
        for x, h in zip(xs, histories, strict=True):
            self.learn_one(x, h)

    def learn_stages(self, xs: Sequence[Interaction],
                     histories: Sequence[Sequence[str]]) -> Iterator[Callable[[], None]]:
        return learn_in_one_stage(self, xs, histories)

    # -- scoring ---------------------------------------------------------------------------------------------
    def _score_all(self, q: Query) -> FloatArray:
        raise NotImplementedError

    def _score_all_many(self, qs: Sequence[Query]) -> FloatArray:
        if not qs:
            return np.zeros((0, len(self.item_ids)), dtype=np.float32)
        return np.stack([self._score_all(q) for q in qs]).astype(np.float32, copy=False)

    def score(self, q: Query, item_ids: Sequence[str]) -> list[float]:
        scores = self._score_all(q) if self.item_ids else np.zeros(0, dtype=np.float32)
        return [float(scores[self.item_index[i]]) if i in self.item_index else float("-inf") for i in item_ids]

    def recommend(self, q: Query, k: int = 10) -> Recommendation:
        return self.recommend_many([q], k)[0]

    def recommend_many(self, qs: Sequence[Query], k: int = 10) -> list[Recommendation]:
        if not self.item_ids:
            return [[] for _ in qs]
        return top_k(self._score_all_many(qs), qs, self.item_ids, self.item_index, k)

    def recommend_readonly(self, q: Query, k: int = 10) -> Recommendation:
        """:meth:`recommend`, which changes nothing in a learner built on this class unless it overrides it."""
        return self.recommend(q, k)

    def similar_items(self, item_id: str, k: int = 10) -> Recommendation | None:
        """The ``k`` best items by :meth:`_similarities` to ``item_id`` (itself left out); None when unknown.

        >>> class Line(BaseLearner):
        ...     def _similarities(self, i):
        ...         return -np.abs(np.arange(len(self.item_ids), dtype=np.float32) - i)
        >>> m = Line(); m.add_items([Item(c, c) for c in "abcd"])
        >>> m.similar_items("b", k=2), m.similar_items("zz")
        ([('a', -1.0), ('c', -1.0)], None)
        """
        i = self.item_index.get(item_id)
        if i is None:
            return None
        sims = self._similarities(i)
        if sims is None:
            return []
        return top_k(sims[None, :], [Query("", exclude=frozenset({item_id}))], self.item_ids, self.item_index, k)[0]

    def similar_stages(self, item_id: str, k: int = 10) -> Generator[Callable[[], None], None, Recommendation | None]:
        """:meth:`similar_items` with no stage off the caller's thread (see :class:`Learner`)."""
        return self.similar_items(item_id, k)
        yield  # a generator without stages

    def _similarities(self, i: int) -> FloatArray | None:
        """Similarity of item index ``i`` to every known item, in index order (None: no notion of it)."""
        return None


def learn_in_one_stage(learner: Learner, xs: Sequence[Interaction],
                       histories: Sequence[Sequence[str]]) -> Iterator[Callable[[], None]]:
    """:meth:`Learner.learn_stages` of a learner that has nothing to run off the caller's thread: it learns when
    first asked for a stage and yields none.

    >>> class Counting(BaseLearner):
    ...     def learn_one(self, x, history=()):
    ...         self._version += 1
    >>> m = Counting()
    >>> stages = m.learn_stages([Interaction("u", "a")], [()])
    >>> m.model_version, list(stages), m.model_version
    (0, [], 1)
    """
    learner.learn_many(xs, histories)
    yield from ()


def run_stages(stages: Iterable[Callable[[], None]]) -> Any:
    """Run the stages of :meth:`Learner.learn_stages` or :meth:`Learner.similar_stages` in order on this thread;
    returns what the generator returns (what ``learn_many`` and ``similar_items`` do).

    >>> def stages():
    ...     yield lambda: print("off the loop")
    ...     return 7
    >>> run_stages(stages())
    off the loop
    7
    """
    it = iter(stages)
    while True:
        try:
            stage = next(it)
        except StopIteration as done:
            return done.value
        stage()


def top_k(
    scores: FloatArray,
    qs: Sequence[Query],
    item_ids: Sequence[str],
    item_index: dict[str, int],
    k: int,
    extra: int = 64,
) -> list[Recommendation]:
    """Top-``k`` items per row of ``scores`` (queries x items), leaving out each query's ``exclude`` set.

    Takes the best ``k + extra`` candidates per row and skips excluded ones; a row with more excluded items
    among them takes the top-``k`` of its whole row with the exclusions masked. Equal scores keep index order.

    >>> top_k(np.array([[0.25, 0.75, 0.5]], dtype=np.float32), [Query("u", exclude=frozenset({"b"}))],
    ...       ["a", "b", "c"], {"a": 0, "b": 1, "c": 2}, 2)
    [[('c', 0.5), ('a', 0.25)]]
    """
    s = np.asarray(scores, dtype=np.float32)
    n = s.shape[1] if s.ndim == 2 else 0
    kk = min(k, n)
    if kk == 0:
        return [[] for _ in qs]
    k1 = min(n, kk + extra)
    cand = top_sorted(s, k1)
    return pick_top_k(cand, np.take_along_axis(s, cand, axis=1), s if k1 < n else None, qs, item_ids, item_index, kk)


def top_sorted(s: FloatArray, m: int) -> np.ndarray:
    """Indices of each row's ``m`` largest values, largest first (ties in index order)."""
    n = s.shape[1]
    # the largest m without a negated copy of s
    part = np.argpartition(s, n - m, axis=1)[:, n - m:] if m < n else np.broadcast_to(np.arange(n), s.shape)
    part = np.sort(part, axis=1)
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
    out: np.ndarray = np.take_along_axis(part, order, axis=1)
    return out


def reciprocal_rank_fusion(primary: FloatArray, others: Sequence[tuple[FloatArray, float]], k: float = 20.0,
                           candidates: int = 40) -> tuple[np.ndarray, FloatArray]:
    """Each row's top ``candidates`` of ``primary`` re-ranked by ``1/(k + rank) + sum of weight/(k + other rank)``.

    Ranks start at 0. An item's rank in an ``other`` is the number of items scored strictly above it, so tied items
    share a rank (a ranking that knows nothing of some items, all scored 0, favours none of them; ordering ties by
    index used to push a new item, the last index, down every such list). An ``other`` is either (rows, n) scores,
    where ranks are counted among the row's top ``candidates`` (so at most ``candidates``), or (n,) scores shared
    by every row (exact ranks). Returns the candidates' indices, best first, and their fused values (``-inf``
    where ``primary`` is).

    >>> p = np.array([[3.0, 2.0, 1.0, 0.0]]); s = np.array([[0.0, 1.0, 5.0, 0.5]])
    >>> idx, val = reciprocal_rank_fusion(p, [(s, 1.0)], k=1.0, candidates=3)
    >>> idx.tolist(), [round(v, 3) for v in val[0].tolist()]
    ([[2, 0, 1]], [1.333, 1.25, 1.0])
    >>> reciprocal_rank_fusion(p, [(s, 1.0), (np.array([0.0, 9.0, 0.0, 0.0]), 2.0)], k=1.0, candidates=3)[0].tolist()
    [[1, 2, 0]]
    >>> tied = np.array([[0.0, 0.0, 0.0, 0.0]])  # knows nothing: the primary's order stands
    >>> reciprocal_rank_fusion(np.array([[1.0, 2.0, 3.0, 4.0]]), [(tied, 5.0), (tied[0], 5.0)], candidates=4)[0].tolist()
    [[3, 2, 1, 0]]
    """
    m = min(candidates, primary.shape[1])
    top_i = top_sorted(primary, m)
    fused = np.broadcast_to(1.0 / (k + np.arange(m, dtype=np.float32)), top_i.shape).astype(np.float32)
    for other, weight in others:
        if other.ndim == 1:
            rank = other.shape[0] - np.searchsorted(np.sort(other), other[top_i], side="right")
        else:  # counted among the row's top m values (unordered): (rows, m candidates, m values)
            n = other.shape[1]
            best = np.partition(other, n - m, axis=1)[:, n - m:] if m < n else other
            rank = (best[:, None, :] > np.take_along_axis(other, top_i, axis=1)[:, :, None]).sum(axis=2)
        fused += weight / (k + rank.astype(np.float64))
    fused[np.take_along_axis(primary, top_i, axis=1) == -np.inf] = -np.inf
    order = np.argsort(-fused, axis=1, kind="stable")
    return np.take_along_axis(top_i, order, axis=1), np.take_along_axis(fused, order, axis=1)


def pick_top_k(
    cand: np.ndarray,
    val: FloatArray,
    scores: FloatArray | None,
    qs: Sequence[Query],
    item_ids: Sequence[str],
    item_index: dict[str, int],
    k: int,
) -> list[Recommendation]:
    """The first ``k`` candidates of each row of ``cand`` (indices, best first; ``val`` their values) that its
    query does not exclude; a row left short is replaced by the top-``k`` of its ``scores`` row (when given)
    with the exclusions masked.

    >>> pick_top_k(np.array([[2, 0, 1]]), np.array([[0.9, 0.5, 0.1]]), None, [Query("u", exclude=frozenset({"c"}))],
    ...            "abc", {"a": 0, "b": 1, "c": 2}, 2)
    [[('a', 0.5), ('b', 0.1)]]
    """
    if k <= 0:
        return [[] for _ in qs]
    width = cand.shape[1]
    head = min(width, k + 8)  # most rows are filled from their first few candidates: only those become Python
    out: list[Recommendation] = []
    for row, (q, cs, vs) in enumerate(zip(qs, cand[:, :head].tolist(), val[:, :head].tolist(), strict=True)):
        rec = _first_allowed(cs, vs, q.exclude, item_ids, k, [])
        if len(rec) < k and head < width:
            rec = _first_allowed(cand[row, head:].tolist(), val[row, head:].tolist(), q.exclude, item_ids, k, rec)
        if len(rec) < k and scores is not None:
            rec = _top_k_row(scores[row], q.exclude, item_ids, item_index, k)
        out.append(rec)
    return out


def _first_allowed(cs: list[int], vs: list[float], exclude: frozenset[str], item_ids: Sequence[str], k: int,
                   rec: Recommendation) -> Recommendation:
    """``rec`` extended with candidates not excluded (nor -inf) until it holds ``k``."""
    neg_inf = float("-inf")
    for c, v in zip(cs, vs, strict=True):
        iid = item_ids[c]
        if iid in exclude or v == neg_inf:
            continue
        rec.append((iid, v))
        if len(rec) == k:
            break
    return rec


def _top_k_row(
    row: FloatArray, exclude: frozenset[str], item_ids: Sequence[str], item_index: dict[str, int], k: int
) -> Recommendation:
    """One row's top-``k`` with its excluded items masked first (when they crowd the first candidates)."""
    s = row.copy()
    gone = [j for j in (item_index.get(i) for i in exclude) if j is not None]
    s[gone] = -np.inf
    order = top_sorted(s[None, :], min(k, s.shape[0]))[0]
    return [(item_ids[c], float(s[c])) for c in order.tolist() if s[c] != -np.inf]


class HistoryStore(Protocol):
    """Where a user's recent items and seen set live (RocksDB table in the worker, a dict offline)."""

    def history(self, user_id: str) -> tuple[str, ...]: ...

    def seen(self, user_id: str) -> frozenset[str]: ...

    def append(self, user_id: str, item_id: str) -> None: ...


__all__ = [
    "BaseLearner",
    "FloatArray",
    "HistoryStore",
    "Interaction",
    "Item",
    "Learner",
    "Query",
    "Recommendation",
    "Because",
    "TextEncoder",
    "pick_top_k",
    "reciprocal_rank_fusion",
    "top_sorted",
    "top_k",
]

