"""The real MiniLM encoder: offline load, embeddings equal sentence-transformers', weights never change."""

from __future__ import annotations

from pathlib import Path

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


def test_lazy_encoder_loads_at_first_use_and_encodes_the_same(encoder: FrozenTransformerEncoder) -> None:
    lazy = FrozenTransformerEncoder(device="cpu", batch_size=4, eager=False)
    assert lazy.dim == 384 and lazy._model is None  # noqa: SLF001 - nothing loaded yet: the width from config.json
    texts = ["Toy Story (1995). Genres: Animation, Comedy.", "baking fresh bread"]
    assert np.allclose(lazy.encode(texts), encoder.encode(texts), atol=1e-6)
    assert lazy._model is not None  # noqa: SLF001


def test_lazy_encoder_still_checks_the_folder_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="encoder_model: .*config.json"):
        FrozenTransformerEncoder(tmp_path, device="cpu", eager=False)  # a folder without a model
    with pytest.raises(ValueError, match="encoder_model"):
        FrozenTransformerEncoder("/nonexistent/model", device="cpu", eager=False)
