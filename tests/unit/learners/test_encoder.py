"""The real MiniLM encoder: offline load, embeddings equal sentence-transformers', weights never change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learners.adapter import AdapterRecommender
from learners.encoder import FrozenTransformerEncoder, bundled_model_path
from learners.training import TrainingConfig
from learners.types import Interaction, Item, Query


@pytest.fixture(scope="module")
def encoder() -> FrozenTransformerEncoder:
    return FrozenTransformerEncoder(device="cpu", batch_size=4)


def test_matches_sentence_transformers(encoder: FrozenTransformerEncoder) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["Toy Story (1995). Genres: Animation, Comedy.", "Heat (1995). Genres: Crime, Thriller.", "x"]
    ref = SentenceTransformer(str(bundled_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    ours = encoder.encode(texts)
    assert ours.shape == (3, 384)
    assert np.allclose(ours, ref, atol=1e-4)


def test_similar_texts_are_close(encoder: FrozenTransformerEncoder) -> None:
    v = encoder.encode(["a rocket flies to the galaxy", "astronauts travel to a planet", "baking fresh bread"])
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])


def test_encoder_weights_never_change_while_learning(encoder: FrozenTransformerEncoder) -> None:
    before = encoder.weights_fingerprint()
    assert not any(p.requires_grad for p in encoder.model.parameters())
    m = AdapterRecommender(encoder, dim=16, seq_len=5, device="cpu",
                           training=TrainingConfig(learning_rate=0.05))
    m.add_items([Item(f"i{j}", f"movie {j} about {['space', 'food', 'sport'][j % 3]}") for j in range(12)])
    for t in range(20):
        m.learn_many([Interaction("u", f"i{t % 12}")], [(f"i{(t + 1) % 12}",)])
    m.recommend(Query("u", ("i1",)), 5)
    assert m.model_version == 20
    assert encoder.weights_fingerprint() == before
    assert all(p.grad is None for p in encoder.model.parameters())
    trainable = {id(p) for p in m._params()}  # noqa: SLF001 - the optimiser must not hold encoder weights
    assert not trainable & {id(p) for p in encoder.model.parameters()}


def test_bad_model_path_names_the_setting() -> None:
    with pytest.raises(ValueError, match="encoder_model"):
        FrozenTransformerEncoder("/nonexistent/model", device="cpu")


def test_device_auto_uses_cuda_when_present() -> None:
    from learners.encoder import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"
