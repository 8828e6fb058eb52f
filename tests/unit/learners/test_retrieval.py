"""Two-stage recommendation and sampled softmax (learners.retrieval, the adapter past exact_max_items)."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
import torch

from learners import two_stage
from learners.adapter import AdapterRecommender
from learners.encoder import HashingEncoder
from learners.fusion import FusionConfig
from learners.retrieval import AnnIndex, RetrievalConfig, dedupe_rows
from learners.signals import PopularityConfig
from learners.training import TrainingConfig, masked_history
from learners.types import Interaction, Item, Query, run_stages

N_ITEMS = 300


def world(seed: int = 0) -> tuple[list[Item], list[tuple[str, list[str]]]]:
    """Items in 10 topics; users who click within one topic (a next item and its history)."""
    rng = np.random.default_rng(seed)
    items = [Item(f"i{j}", f"topic{j % 10} word{j % 7} thing{j}") for j in range(N_ITEMS)]
    stream = []
    for e in range(1200):
        topic = e % 10
        hist = [f"i{topic + 10 * int(x)}" for x in rng.integers(0, N_ITEMS // 10, size=5)]
        stream.append((f"i{topic + 10 * int(rng.integers(0, N_ITEMS // 10))}", hist))
    return items, stream


def learner(retrieval: RetrievalConfig, **kw: object) -> AdapterRecommender:
    items, stream = world()
    m = AdapterRecommender(HashingEncoder(32), dim=16, seq_len=8, device="cpu", text_dims=0,
                           training=TrainingConfig(early_events=0), retrieval=retrieval, **kw)  # type: ignore[arg-type]
    m.add_items(items)
    for s in range(0, len(stream), 100):
        chunk = stream[s : s + 100]
        m.learn_many([Interaction(f"u{s + j}", t) for j, (t, _) in enumerate(chunk)], [h for _, h in chunk])
    m.wait_for_index()
    return m


def queries() -> list[Query]:
    items, stream = world(1)
    return [Query(f"q{j}", tuple(h), frozenset(h)) for j, (_, h) in enumerate(stream[:64])]


def test_every_item_a_candidate_gives_the_exact_lists() -> None:
    """With every item among the candidates, the two-stage lists are the lists of scoring the whole catalog."""
    cfg = RetrievalConfig(exact_max_items=0, ann_candidates=N_ITEMS, refresh_in_background=False, rebuild_updates=1)
    m = learner(cfg, fusion=FusionConfig(weight=0.0, popularity=0.0))
    qs = queries()
    two_stage = [[i for i, _ in r] for r in m.recommend_many(qs, k=10)]
    exact = [[i for i, _ in r] for r in m.recommend_exact(qs, k=10)]
    assert two_stage == exact
    assert m.index_recall(qs) == 1.0  # the graph drawn from the current vectors (rebuilt every update) finds them
    small = learner(RetrievalConfig())
    assert small.index_recall(qs) is None and small.retrieval_state is None  # below exact_max_items: no index


def test_retrieval_recall_against_exact_scoring() -> None:
    """Fewer candidates than items: the default sources still find nearly all of the exact top 10."""
    # refresh_updates 1: the hot items' vectors recomputed every 256 events (by default every 2,560, more than this
    # world's whole stream; with them that stale, recall here is 0.88)
    cfg = RetrievalConfig(exact_max_items=0, ann_candidates=60, cooccurrence_candidates=30, fresh_candidates=8,
                          popular_candidates=10, refresh_in_background=False, refresh_updates=1)
    m = learner(cfg)
    qs = queries()
    got = m.recommend_many(qs, k=10)
    want = m.recommend_exact(qs, k=10)
    recall = np.mean([len({i for i, _ in g} & {i for i, _ in w}) / len(w) for g, w in zip(got, want, strict=True)])
    assert recall >= 0.9, recall


@pytest.mark.parametrize("refresh_rows", [N_ITEMS, 70])
def test_index_vectors_are_recomputed_in_place(refresh_rows: int) -> None:
    """Each full update (256 events) rewrites ``refresh_rows`` stored vectors with the current ones, in turn; the
    graph stays."""
    cfg = RetrievalConfig(exact_max_items=0, refresh_in_background=False, refresh_rows=refresh_rows,
                          rebuild_updates=0)
    m = learner(cfg)
    rt = m._retriever
    assert rt is not None and rt.index is not None
    index = rt.index
    items, stream = world(2)
    for s in range(0, 1024, 256):  # 4 more full updates
        chunk = stream[s : s + 256]
        m.learn_many([Interaction(f"v{s + j}", t) for j, (t, _) in enumerate(chunk)], [h for _, h in chunk])
    assert rt.index is index  # no rebuild
    fresh = m._index_table(None)
    stored = index.vectors()
    same = np.isclose(stored, fresh, atol=1e-6).all(axis=1)
    if refresh_rows >= N_ITEMS:
        assert same.all()
    else:  # the last update rewrote the 70 rows before the cursor; the others are older
        last = (rt.cursor - 1 - np.arange(refresh_rows)) % N_ITEMS
        assert same[last].all() and not same.all()


def test_without_refresh_the_index_keeps_the_vectors_it_was_built_with() -> None:
    cfg = RetrievalConfig(exact_max_items=0, refresh_in_background=False, refresh_rows=0, rebuild_updates=0)
    m = learner(cfg)
    assert m._retriever is not None and m._retriever.index is not None
    assert not np.isclose(m._retriever.index.vectors(), m._index_table(None), atol=1e-6).all()


def test_a_rebuilt_graph_takes_the_current_vectors() -> None:
    """A graph built in the background from older vectors gets the live index's (newer) ones when swapped in."""
    m = learner(RetrievalConfig(exact_max_items=0, refresh_rows=3 * N_ITEMS, rebuild_updates=0))
    rt = m._retriever
    assert rt is not None and rt.index is not None
    current = m._index_table(None)
    rt._build_into(current[: N_ITEMS - 5] + 1.0)  # as a thread would: older vectors, five items fewer
    m.wait_for_index()
    assert len(rt.index) == N_ITEMS
    assert np.isclose(rt.index.vectors(), current, atol=1e-6).all()


def test_sampled_softmax_with_every_item_equals_the_full_softmax() -> None:
    """Every item sampled and uniform sampling probabilities: the log-Q term is one constant, the loss the same."""
    m = learner(RetrievalConfig(exact_max_items=10**9), popularity=PopularityConfig(half_life=0.0))
    idx = torch.tensor([[0, 5, 7], [0, 0, 12]])
    mask = torch.tensor([[False, True, True], [False, False, True]])
    target = torch.tensor([9, 12])
    with torch.no_grad():
        table = m._item_table()
        full = masked_history(m._logits(idx, mask, table), idx, mask, target)
        full_loss = torch.nn.functional.cross_entropy(full, target)
        logits, cols = m._sampled_logits(idx, mask, target, sampled=torch.arange(N_ITEMS))
        sampled_loss = torch.nn.functional.cross_entropy(logits, cols)
    assert cols.tolist() == target.tolist()
    assert float(sampled_loss) == pytest.approx(float(full_loss), rel=1e-5)


def test_large_catalog_training_never_builds_the_whole_table() -> None:
    """Past exact_max_items a learning step scores only the sampled items (the full table would fail here)."""
    cfg = RetrievalConfig(exact_max_items=0, sampled_negatives=32, refresh_in_background=False)
    m = learner(cfg)

    def whole_table(*a: object, **k: object) -> None:
        raise AssertionError("the whole item table was computed")

    m._item_table = whole_table  # type: ignore[method-assign]
    m._index_table = lambda rows=None, chunk=0: np.zeros((0 if rows is None else len(rows), m.dim + 1),  # type: ignore[method-assign]
                                                        dtype=np.float32) if rows is not None else whole_table()
    v0 = m.model_version
    m.learn_many([Interaction("u", "i3")], [("i13", "i23")])
    assert m.model_version == v0 + 1 and np.isfinite(m.last_loss)


def test_a_large_catalog_step_moves_only_the_rows_it_scored() -> None:
    """Past exact_max_items the per-item vectors, their Adam moments and their averages change only in the rows the
    sampled softmax read (SparseAdam over a sparse gradient), and the clicked item's row does move."""
    cfg = RetrievalConfig(exact_max_items=0, sampled_negatives=8, refresh_in_background=False)
    m = learner(cfg)
    assert m._head is not None and m._sparse_opt is not None and m._avg is not None
    state = m._sparse_opt.state[m._head.item_id]
    before = [t.detach().clone() for t in (m._head.item_id, state["exp_avg"], state["exp_avg_sq"],
                                           m._avg["head.item_id"])]
    steps = m.model_version
    m.learn_many([Interaction("u", "i3")], [("i13", "i23")])
    assert m.model_version == steps + 1 and m._head.item_id.grad is not None  # one step: its gradient's rows
    read = set(m._head.item_id.grad.coalesce().indices()[0].tolist())
    after = (m._head.item_id.detach(), state["exp_avg"], state["exp_avg_sq"], m._avg["head.item_id"])
    for old, new in zip(before, after, strict=True):
        moved = set(torch.nonzero((old != new).any(1))[:, 0].tolist())
        assert moved and moved <= read
    assert m.item_index["i3"] in set(torch.nonzero((before[0] != after[0]).any(1))[:, 0].tolist())


def test_checkpoint_round_trip_gives_identical_recommendations() -> None:
    cfg = RetrievalConfig(exact_max_items=0, ann_candidates=40, refresh_in_background=False, refresh_updates=3)
    m = learner(cfg)
    qs = queries()
    before = m.recommend_exact(qs, k=10), m.recommend_many(qs, k=10)
    m2 = pickle.loads(pickle.dumps(m))
    m2.attach_encoder(HashingEncoder(32))
    assert (m2.recommend_exact(qs, k=10), m2.recommend_many(qs, k=10)) == before


def test_new_item_is_retrievable_after_it_arrives() -> None:
    cfg = RetrievalConfig(exact_max_items=0, ann_candidates=20, fresh_candidates=4, refresh_in_background=False)
    m = learner(cfg)
    m.add_items([Item("brand-new", "topic3 word3 brand new thing")])
    recs = m.recommend_many([Query("x", ("i3", "i13"), frozenset({"i3", "i13"}))], k=10)
    assert m._retriever is not None and len(m._retriever.index or []) == N_ITEMS + 1
    assert "brand-new" in {i for i, _ in recs[0]} or m.item_index["brand-new"] in m._retriever.fresh


def test_ann_index_and_dedupe() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    idx = AnnIndex(16, ef=128)
    idx.add(x)
    q = rng.normal(size=(50, 16)).astype(np.float32)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    got = idx.search(q, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.tolist(), got.tolist(), strict=True)]) >= 0.9
    assert pickle.loads(pickle.dumps(idx)).search(q, 10).tolist() == got.tolist()
    assert dedupe_rows(np.array([[-1, -1]])).tolist() == [[-1, -1]]


@pytest.mark.parametrize(("rows", "k", "chunk"), [(1000, 20, 64), (1000, 100, 64), (999, 7, 1000), (50, 80, 16)])
def test_the_chunked_top_k_is_the_whole_products_top_k(rows: int, k: int, chunk: int) -> None:
    """The hot scan's and the recall probe's top k, chunk by chunk, holds exactly the rows the whole product's
    top k holds (k above the chunk, a last chunk shorter, k above the rows)."""
    from learners.tensors import chunked_topk

    rng = np.random.default_rng(rows + k)
    q = torch.from_numpy(rng.normal(size=(9, 12)).astype(np.float32))
    t = torch.from_numpy(rng.normal(size=(rows, 12)).astype(np.float32))
    got = chunked_topk(q, t, k, chunk)
    exact = torch.topk(q @ t.T, min(k, rows), dim=1).indices
    assert got.shape == exact.shape
    assert [sorted(r) for r in got.tolist()] == [sorted(r) for r in exact.tolist()]


@pytest.mark.parametrize(("cols", "k", "group"), [(4096, 60, 32), (5000, 60, 32), (4096, 1, 32), (700, 10, 32),
                                                  (640, 10, 32), (16_384, 200, 16)])
def test_the_grouped_top_k_is_the_rows_top_k(cols: int, k: int, group: int) -> None:
    """The pre-selection by group maxima keeps every top-k column: on random rows, rows whose top scores crowd into
    a few groups, rows of ties (compared by score: any k tied columns are a top k) and a ragged tail."""
    from learners.tensors import grouped_topk

    rng = np.random.default_rng(cols + k)
    rows = rng.normal(size=(12, cols)).astype(np.float32)
    rows[1, :k] += 10  # the whole top k in the first groups
    rows[2, -min(k, cols % group or group):] += 10  # in the tail (or the last group)
    rows[3] = np.round(rows[3])  # many ties
    rows[4] = 0.0
    s = torch.from_numpy(rows)
    got = grouped_topk(s, k, group)
    want = torch.topk(s, k, dim=1).values
    assert got.shape == (12, k)
    assert all(len(set(r)) == k for r in got.tolist())
    assert torch.equal(s.gather(1, got).sort(1, descending=True).values, want)


def test_holds_is_the_broadcast_membership_test() -> None:
    """The two-stage ranker's 'candidate in the row's history' test (masked cells never match, -1 padding never)."""
    from learners.tensors import holds

    rng = np.random.default_rng(7)
    idx = torch.from_numpy(rng.integers(0, 40, size=(16, 9)))
    mask = torch.from_numpy(rng.random((16, 9)) < 0.7)
    cand = torch.from_numpy(rng.integers(-1, 40, size=(16, 25)))
    want = ((cand[:, :, None] == idx[:, None, :]) & mask[:, None, :]).any(dim=2)
    assert want.any() and (~want).any()
    assert torch.equal(holds(idx, mask, cand), want)
    assert not holds(idx[:, :0], mask[:, :0], cand).any()


@pytest.mark.parametrize("field", ["exact_max_items", "ann_ef", "refresh_updates", "refresh_rows"])
def test_config_rejects_bad_values(field: str) -> None:
    with pytest.raises(ValueError, match=rf"retrieval\.{field}"):
        RetrievalConfig(**{field: -1})


def test_similar_items_of_a_large_catalog_come_from_the_index() -> None:
    """Past exact_max_items: the nearest by cosine among the index's stored vectors, which are current here, so the
    lists are the exact ones, and no item vector is computed for the whole catalog."""
    cfg = RetrievalConfig(exact_max_items=10**9, refresh_in_background=False)
    m = learner(cfg)
    exact = {i: [j for j, _ in m.similar_items(i, 10) or []] for i in ("i3", "i17", "i250")}
    m.retrieval = RetrievalConfig(exact_max_items=0, refresh_in_background=False)

    def whole_table(*a: object, **k: object) -> None:
        raise AssertionError("the whole item table was computed")

    m._item_table = whole_table  # type: ignore[method-assign]
    for i, want in exact.items():
        got = m.similar_items(i, 10)
        assert got is not None and len(got) == 10 and i not in {j for j, _ in got}
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        assert [j for j, _ in got] == want
    assert m.similar_items("nope", 10) is None


def test_items_with_one_embedding_are_each_others_nearest_past_exact_max_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two items that arrive with one embedding after the index exists are each other's first similar item, though
    half the stored vectors are far longer (by inner product those would fill the candidates)."""
    monkeypatch.setattr(two_stage, "SIMILAR_CANDIDATES", 10)
    m = learner(RetrievalConfig(exact_max_items=0, refresh_in_background=False))
    twin = np.random.default_rng(5).normal(size=(1, 32)).astype(np.float32)
    m.add_item_embeddings(["new-a", "new-b"], np.repeat(twin, 2, axis=0))
    index = m._retriever.index  # type: ignore[union-attr]
    assert index is not None and len(index) == N_ITEMS + 2
    index.vectors()[: N_ITEMS // 2, : m.dim] *= 50.0
    for a, b in (("new-a", "new-b"), ("new-b", "new-a")):
        got = m.similar_items(a, 5)
        assert got is not None and got[0][0] == b and got[0][1] == pytest.approx(1.0, abs=1e-4), got


def test_the_similar_items_scan_is_a_stage_another_thread_runs_while_items_wait() -> None:
    """Past exact_max_items the scan of the index's stored vectors is the one stage of ``similar_stages`` (the web
    route runs it on a thread); it holds the lock that adding items takes, since an add may move the storage it
    reads; the staged answer is ``similar_items``'."""
    m = learner(RetrievalConfig(exact_max_items=0, refresh_in_background=False))
    rt = m._retriever
    assert rt is not None
    stages = m.similar_stages("i3", 5)
    scan = next(stages)
    with rt._lock:  # an add in progress
        worker = threading.Thread(target=scan)
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive()  # the scan waits for the add to finish
    worker.join()
    with pytest.raises(StopIteration) as done:
        next(stages)
    assert done.value.value == m.similar_items("i3", 5) and len(done.value.value) == 5
    small = learner(RetrievalConfig())  # below exact_max_items: no stage off the caller's thread
    assert run_stages(small.similar_stages("i3", 5)) == small.similar_items("i3", 5)
    with pytest.raises(StopIteration):
        next(small.similar_stages("i3", 5))


def test_a_background_rebuild_indexes_the_stored_vectors_without_computing_the_catalog() -> None:
    """The graph rebuilt in the background comes from a copy of the vectors the index stores (kept current in
    place), not from ``table_fn(None)``: the learning step that triggers it computes nothing for the whole catalog."""
    from learners.retrieval import CandidateRetriever

    rng = np.random.default_rng(2)
    table = rng.normal(size=(500, 9)).astype(np.float32)
    rt = CandidateRetriever(RetrievalConfig(exact_max_items=0, rebuild_updates=1, refresh_rows=0))
    rt.items_added(500, np.arange(500), None)
    rt.build_now(table)
    assert rt.index is not None
    rt.index.vectors()[:10] = 7.0  # as the in-place refresh would have written them
    asked: list[object] = []

    def table_fn(rows: np.ndarray | None) -> np.ndarray:
        asked.append(rows if rows is None else len(rows))
        return table if rows is None else table[rows]

    old = rt.index
    rt.updated(table_fn, None)  # rebuild_updates 1: starts the background rebuild
    rt.wait(table_fn)
    assert rt.index is not old and asked == []
    assert np.array_equal(rt.index.vectors()[:10], np.full((10, 9), 7.0, dtype=np.float32))
    assert np.array_equal(rt.index.vectors()[10:], table[10:])


def test_the_in_place_refresh_is_per_event_not_per_update() -> None:
    """Updates of fewer events than a full micro-batch recompute proportionally fewer index vectors (fractions
    carried over), and the graph is rebuilt after rebuild_updates full updates' worth of events, however split."""
    from learners.retrieval import FULL_UPDATE, CandidateRetriever

    rng = np.random.default_rng(3)
    table = rng.normal(size=(1000, 5)).astype(np.float32)
    rt = CandidateRetriever(RetrievalConfig(exact_max_items=0, refresh_rows=100, rebuild_updates=2,
                                            refresh_in_background=False))
    rt.items_added(1000, np.arange(1000), None)
    rt.build_now(table)
    asked: list[int] = []

    def table_fn(rows: np.ndarray | None) -> np.ndarray:
        asked.append(-1 if rows is None else len(rows))
        return table if rows is None else table[rows]

    for _ in range(8):  # 8 updates of 32 events: one full update's worth, 100 rows in all
        rt.updated(table_fn, None, FULL_UPDATE // 8)
    assert sum(n for n in asked if n > 0) == 100 and -1 not in asked
    for _ in range(8):  # a second full update's worth: 100 more rows, then the rebuild (inline here)
        rt.updated(table_fn, None, FULL_UPDATE // 8)
    assert sum(n for n in asked if n > 0) == 200 and asked.count(-1) == 1 and asked[-1] == -1
    assert rt.cursor == 200


@pytest.mark.parametrize("rebuild_below", [0.9, 0.0])
def test_a_graph_the_vectors_drifted_from_is_rebuilt_when_the_probe_finds_it(rebuild_below: float) -> None:
    """Vectors rewritten in place far from the ones the graph's links were drawn from: the recall probe (exact scan
    of a few recent queries) finds the search missing their top 10, and the graph is redrawn from the stored
    vectors; with rebuild_below 0 nothing probes or rebuilds (probe_recall, called, still finds the drift)."""
    from learners.retrieval import CandidateRetriever

    rng = np.random.default_rng(4)
    n, d = 20_000, 16
    rt = CandidateRetriever(RetrievalConfig(exact_max_items=0, ann_candidates=10, ann_ef=40, refresh_rows=0,
                                            rebuild_updates=0, probe_updates=2, rebuild_below=rebuild_below,
                                            refresh_in_background=False))
    rt.items_added(n, np.arange(n), None)
    rt.build_now(rng.normal(size=(n, d)).astype(np.float32))
    assert rt.index is not None
    drifted = rng.normal(size=(n, d)).astype(np.float32)
    rt.index.vectors()[:] = drifted  # as learning moves every vector, the links staying
    asked = rng.normal(size=(8, d)).astype(np.float32)
    rt.candidates(asked, None)

    def table_fn(rows: np.ndarray | None) -> np.ndarray:
        return drifted if rows is None else drifted[rows]

    rt.updated(table_fn, None)  # update 1: no probe yet
    for _ in range(255):  # small updates count their events, not themselves: 511 events learned, still none
        rt.updated(table_fn, None, events=1)
    assert rt.ann_recall is None and rt.rebuilds == 0
    rt.updated(table_fn, None)  # 767 events: probed (with rebuild_below > 0)
    if rebuild_below:
        assert rt.ann_recall is not None and rt.ann_recall < 0.9
        assert rt.rebuilds == 1 and (rt.probe_recall() or 0.0) >= 0.9
    else:
        assert rt.ann_recall is None and rt.rebuilds == 0 and rt.probe is None  # no copy of the queries kept
        assert (rt.probe_recall(asked) or 1.0) < 0.9


def test_the_hot_source_is_the_exact_top_of_the_most_popular_items() -> None:
    """hot_items: each query's hot_candidates best of the most popular items by their stored index vectors,
    exactly (the graph plays no part), re-ranked with the popular list; 0 hot items: no such candidates."""
    from learners.retrieval import CandidateRetriever

    rng = np.random.default_rng(5)
    n, d = 3_000, 8
    table = rng.normal(size=(n, d)).astype(np.float32)
    popularity = rng.random(n)
    hot = np.argsort(-popularity)[:500]
    q = rng.normal(size=(6, d)).astype(np.float32)
    for items in (500, 0):
        rt = CandidateRetriever(RetrievalConfig(exact_max_items=0, ann_candidates=0, popular_candidates=0,
                                                fresh_candidates=0, hot_items=items, hot_candidates=20,
                                                refresh_rows=0, rebuild_updates=0, probe_updates=0))
        rt.items_added(n, np.arange(n), None)
        rt.build_now(table)
        rt.updated(lambda rows: table if rows is None else table[rows], popularity)
        got = rt.candidates(q, None)
        if not items:
            assert (got == -1).all()
            continue
        assert sorted(rt.hot.tolist()) == sorted(hot.tolist())
        exact = hot[np.argsort(-(q @ table[hot].T), axis=1)[:, :20]]
        assert [sorted(r[r >= 0].tolist()) for r in got] == [sorted(r.tolist()) for r in exact]


@pytest.mark.parametrize(("every", "events"), [(1, 256), (3, 256), (3, 128)])
def test_the_popular_and_hot_lists_are_re_ranked_every_refresh_updates(every: int, events: int) -> None:
    """The popular list (best first) and the hot items follow the popularity every ``refresh_updates`` x 256 events
    learned (the first update, then whenever that many events have been learned since), from one selection; in
    between they stay. Half-size updates re-rank half as often per update."""
    from learners.retrieval import FULL_UPDATE, CandidateRetriever

    n = 50
    table = np.eye(n, 4, dtype=np.float32)
    rt = CandidateRetriever(RetrievalConfig(exact_max_items=0, popular_candidates=3, hot_items=5,
                                            refresh_updates=every, refresh_rows=0, rebuild_updates=0))
    rt.items_added(n, np.arange(n), None)
    per_rank = every * FULL_UPDATE // events  # updates between two re-rankings
    last = 0
    for update in range(1, 9):
        popularity = np.zeros(n)
        popularity[[update, update + 10, update + 20, update + 30, update + 40]] = [5.0, 4.0, 3.0, 2.0, 1.0]
        rt.updated(lambda rows: table if rows is None else table[rows], popularity, events)
        if (update - 1) % per_rank == 0:
            last = update
        assert rt.popular.tolist() == [last, last + 10, last + 20]
        assert rt.hot.tolist() == [last + 10 * j for j in range(5)]
        assert rt.hot_vectors.tolist() == table[rt.hot].tolist()


def test_a_schedule_not_allowed_to_run_keeps_counting_and_runs_as_soon_as_it_is() -> None:
    """The retriever's schedules (re-rank, rebuild, probe) count events; one that falls due while it may not run
    (a probe while a rebuild is under way, a re-rank without popularity) runs at the first update that allows it,
    and counts from 0 again after it ran; ``now`` runs it whatever the count (the first re-rank)."""
    from learners.retrieval import FULL_UPDATE, CandidateRetriever

    rt = CandidateRetriever(RetrievalConfig(exact_max_items=0))
    assert not rt._due("probe_due", 3 * FULL_UPDATE, 2, when=False) and rt.probe_due == 3 * FULL_UPDATE
    assert rt._due("probe_due", 0, 2, when=True) and rt.probe_due == 0
    assert not rt._due("probe_due", FULL_UPDATE, 2, when=True) and rt.probe_due == FULL_UPDATE
    assert rt._due("probe_due", FULL_UPDATE, 2, when=True) and rt.probe_due == 0
    assert rt._due("rank_due", 1, 10, when=True, now=True) and rt.rank_due == 0
    assert not rt._due("rank_due", 1, 10, when=False, now=True) and rt.rank_due == 1
