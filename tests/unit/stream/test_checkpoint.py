"""Checkpoints (stream.checkpoint): arrays written raw, the learner back as it was, old plain pickles still load."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from learners.adapter import AdapterRecommender
from learners.encoder import HashingEncoder
from learners.retrieval import RetrievalConfig
from learners.training import TrainingConfig
from learners.types import Interaction, Item, Query
from stream.checkpoint import MAGIC, CheckpointStore


def trained(retrieval: RetrievalConfig) -> AdapterRecommender:
    m = AdapterRecommender(HashingEncoder(32), dim=16, seq_len=6, device="cpu", text_dims=0,
                           training=TrainingConfig(early_events=0), retrieval=retrieval)
    m.add_items([Item(f"i{j}", f"topic{j % 5} word{j % 7} thing{j}") for j in range(120)])
    rng = np.random.default_rng(0)
    for s in range(4):
        xs = [Interaction(f"u{s}-{j}", f"i{int(rng.integers(120))}") for j in range(50)]
        m.learn_many(xs, [[f"i{int(x)}" for x in rng.integers(0, 120, size=4)] for _ in xs])
    m.wait_for_index()
    return m


QS = [Query(f"q{j}", (f"i{j}", f"i{j + 5}"), frozenset({f"i{j}", f"i{j + 5}"})) for j in range(20)]
MORE = [Interaction(f"v{j}", f"i{(7 * j) % 120}") for j in range(40)], [[f"i{j % 120}", f"i{(j + 3) % 120}"]
                                                                        for j in range(40)]


@pytest.mark.parametrize("retrieval", [RetrievalConfig(), RetrievalConfig(exact_max_items=0,
                                                                          refresh_in_background=False)],
                         ids=["exact", "two-stage"])
def test_a_saved_learner_recommends_and_learns_on_as_the_original(retrieval: RetrievalConfig,
                                                                  tmp_path: Path) -> None:
    m = trained(retrieval)
    path = CheckpointStore(tmp_path).save(m, version=7, offsets={("events", 0): 11})
    assert path.read_bytes().startswith(MAGIC)
    back = CheckpointStore(tmp_path).load_latest()
    assert back is not None and back.version == 7 and back.offsets == {("events", 0): 11}
    m2 = back.learner
    m2.attach_encoder(HashingEncoder(32))
    assert m2.recommend_many(QS, k=10) == m.recommend_many(QS, k=10)
    for learner in (m, m2):  # the optimizer still holds the module's own parameters: the same step follows
        learner.learn_many(*MORE)
    assert m2.recommend_many(QS, k=10) == m.recommend_many(QS, k=10)
    assert m2.model_version == m.model_version


def test_tensors_keep_their_kind_and_sharing(tmp_path: Path) -> None:
    w = torch.nn.Parameter(torch.arange(6.0).view(2, 3))
    payload = {"w": w, "again": w, "frozen": torch.ones(3, dtype=torch.int64), "grad": torch.zeros(2, requires_grad=True),
               "array": np.arange(5, dtype=np.int32), "half": torch.ones(2, dtype=torch.bfloat16)}
    CheckpointStore(tmp_path).save(payload, version=1)
    got = CheckpointStore(tmp_path).load_latest()
    assert got is not None
    back = got.learner
    assert isinstance(back["w"], torch.nn.Parameter) and back["w"] is back["again"] and back["w"].requires_grad
    assert torch.equal(back["w"], w) and back["frozen"].dtype == torch.int64 and back["grad"].requires_grad
    assert back["array"].tolist() == [0, 1, 2, 3, 4] and back["half"].dtype == torch.bfloat16


def test_an_old_plain_pickle_still_loads_and_a_truncated_file_is_skipped(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    with open(tmp_path / "model-1.pkl", "wb") as fh:
        pickle.dump({"learner": {"old": True}, "version": 1, "offsets": {}}, fh)
    store.save({"new": torch.ones(1000)}, version=2)
    data = (tmp_path / "model-2.pkl").read_bytes()
    (tmp_path / "model-2.pkl").write_bytes(data[: len(data) // 2])
    got = store.load_latest()
    assert got is not None and got.version == 1 and got.learner == {"old": True}
