"""How the adapter learner trains: what its softmax contains, how histories become index rows."""

from __future__ import annotations

import pickle

import pytest
import torch

from learners.adapter import AdapterRecommender
from learners.encoder import HashingEncoder
from learners.fusion import FusionConfig
from learners.tensors import principal_basis, right_aligned
from learners.training import TrainingConfig, masked_history
from learners.types import Interaction, Item, Query


def test_history_items_but_not_the_target_leave_the_softmax() -> None:
    logits = torch.zeros(2, 5, requires_grad=True)
    idx = torch.tensor([[0, 1], [0, 3]])
    mask = torch.tensor([[False, True], [True, True]])
    out = masked_history(logits.clone(), idx, mask, torch.tensor([1, 2]))
    inf = float("-inf")
    assert out.tolist() == [[0.0, 0.0, 0.0, 0.0, 0.0],  # item 1 is the target (a repeat): kept; 0 is padding
                            [inf, 0.0, 0.0, inf, 0.0]]
    loss = torch.nn.functional.cross_entropy(out, torch.tensor([1, 2]))
    loss.backward()  # type: ignore[no-untyped-call]
    assert logits.grad is not None and logits.grad[1, 0] == 0 and logits.grad[1, 3] == 0


def test_histories_with_unknown_items_are_right_aligned_and_cut_to_width() -> None:
    idx, mask = right_aligned([1, -1, 2, 3, 4, 5, 6], [3, 4, 0], 3)
    assert idx.tolist() == [[0, 1, 2], [4, 5, 6], [0, 0, 0]]
    assert mask.tolist() == [[False, True, True], [True, True, True], [False, False, False]]


def _trained(ema_decay: float) -> AdapterRecommender:
    m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu", seed=3,
                           training=TrainingConfig(ema_decay=ema_decay, early_steps=1))
    m.add_items([Item(i, f"item {i} text") for i in "abcdef"])
    m.learn_many([Interaction("u", "b"), Interaction("v", "d")], [("a",), ("c", "e")])
    return m


def test_recommendations_are_scored_with_averaged_parameters() -> None:
    untrained = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu", seed=3,
                                   training=TrainingConfig(early_steps=1))
    untrained.add_items([Item(i, f"item {i} text") for i in "abcdef"])
    start = {k: t.detach().clone() for k, t in untrained._named_params().items()}
    live, averaged = _trained(0.0), _trained(0.75)
    trained = live._named_params()
    assert averaged._avg is not None and live._avg is None
    for name, avg in averaged._avg.items():  # one update: avg = 0.75 * start + 0.25 * trained
        assert torch.allclose(avg, 0.75 * start[name] + 0.25 * trained[name].detach(), atol=1e-6), name
    q = Query("u", ("a", "b"), frozenset({"a", "b"}))
    assert averaged.score(q, list("cdef")) != live.score(q, list("cdef"))


def test_ema_decay_out_of_range_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"training\.ema_decay: expected a number in \[0, 1\), got 1.0"):
        AdapterRecommender(HashingEncoder(16), training=TrainingConfig(ema_decay=1.0))


def test_history_items_are_recommended_unless_excluded() -> None:
    m = _trained(0.9)
    everything = {i for i, _ in m.recommend(Query("u", ("a", "c"), frozenset()), k=6)}
    assert everything == set("abcdef")  # repeats allowed: history items stay candidates
    rest = [i for i, _ in m.recommend(Query("u", ("a", "c"), frozenset({"a", "c"})), k=6)]
    assert sorted(rest) == list("bdef")
    partly = [i for i, _ in m.recommend(Query("u", ("a", "c"), frozenset({"c"})), k=6)]
    assert sorted(partly) == list("abdef")


def test_text_basis_is_fitted_once_and_kept_for_later_items_and_checkpoints() -> None:
    enc = HashingEncoder(16)
    m = AdapterRecommender(enc, dim=8, seq_len=5, device="cpu", text_dims=4, seed=1)
    m.add_items([Item(i, f"film {i} drama") for i in "abcdef"])
    assert m._basis is not None and m._basis.shape == (16, 4) and m._emb is not None and m._emb.shape[1] == 4
    basis = m._basis.clone()
    m.learn_many([Interaction("u", "b")], [("a",)])
    m.add_items([Item("g", "film g comedy")])  # a later batch: projected on the same basis
    assert torch.equal(m._basis, basis)
    g = torch.as_tensor(enc.encode(["film g comedy"]))[0] @ basis
    assert torch.allclose(m._emb[m.item_index["g"]], g, atol=1e-6)
    q = Query("u", ("a", "b"), frozenset({"a", "b"}))
    restored = pickle.loads(pickle.dumps(m))
    restored.attach_encoder(enc)
    assert restored.recommend(q, k=5) == m.recommend(q, k=5)


def test_fused_lists_respect_exclusions_even_when_candidates_run_out() -> None:
    m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu", fusion=FusionConfig(weight=0.3), seed=2)
    ids = [f"i{j}" for j in range(60)]
    m.add_items([Item(i, f"item {i}") for i in ids])
    for step in range(5):
        m.learn_many([Interaction(f"u{j}", ids[(j + step) % 60]) for j in range(20)],
                     [(ids[(j + step + 1) % 60], ids[(j + step + 2) % 60]) for j in range(20)])
    excluded = frozenset(ids[:55])  # far more than the spare candidates, and not in the history
    rec = m.recommend(Query("u1", ("i58",), excluded), k=5)
    assert sorted(i for i, _ in rec) == ids[55:]
    long = m.recommend(Query("u1", ("i58",), frozenset({"i58"})), k=50)  # more than the 40 fused candidates
    assert len(long) == 50 and len({i for i, _ in long}) == 50 and "i58" not in {i for i, _ in long}
    assert m.recommend_many([Query("u1", ("i58",), excluded)], k=0) == [[]]
    plain = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu", fusion=FusionConfig(weight=0.0), seed=2)
    plain.add_items([Item(i, f"item {i}") for i in ids])
    assert len(plain.recommend(Query("u1", ("i58",), excluded), k=5)) == 5


def test_a_user_model_saved_without_position_vectors_still_scores_and_learns() -> None:
    m = _trained(0.0)
    restored = pickle.loads(pickle.dumps(m))
    assert restored._user is not None
    del restored._user._parameters["position"]  # as pickled by a version before positions existed
    q = Query("u", ("a", "b"), frozenset({"a", "b"}))
    assert len(restored.recommend(q, k=3)) == 3
    restored.learn_many([Interaction("w", "c")], [("a", "b")])
    assert restored.model_version == m.model_version + 1


def test_a_young_model_takes_early_steps_per_batch_and_one_version_each() -> None:
    m = AdapterRecommender(HashingEncoder(16), dim=8, seq_len=5, device="cpu",
                           training=TrainingConfig(early_events=3, early_steps=4), seed=0)
    m.add_items([Item(i, f"item {i} text") for i in "abcdef"])
    assert m._opt is not None
    proj = m._named_params()["head.proj"]

    def steps() -> int:
        return int(m._opt.state[proj]["step"]) if proj in m._opt.state else 0

    m.learn_many([Interaction("u", "b"), Interaction("v", "d")], [("a",), ("c",)])  # 2 learned: still young
    assert (steps(), m.model_version) == (4, 1)
    m.learn_many([Interaction("u", "c")], [("a", "b")])  # 3 learned: young no more after this batch
    assert (steps(), m.model_version) == (8, 2)
    m.learn_many([Interaction("w", "e")], [("f",)])
    assert (steps(), m.model_version) == (9, 3)


def test_principal_basis_of_many_rows_from_the_gram_matrix_spans_the_svd_directions() -> None:
    """Past svd_max_rows the basis comes from the chunked Gram matrix: the same leading directions as the SVD's."""
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(3000, 48, generator=g) @ torch.randn(48, 48, generator=g)
    svd = principal_basis(emb, 8)
    gram = principal_basis(emb, 8, svd_max_rows=1000)  # three chunks
    assert torch.allclose(gram.T @ gram, torch.eye(8), atol=1e-5)
    assert torch.allclose((svd.T @ gram).abs().diagonal(), torch.ones(8), atol=1e-4)
