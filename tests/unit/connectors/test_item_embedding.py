"""The optional ``embedding`` of an ``items`` message (issue 15): parsed, serialised, and every malformed kind
rejected as ``invalid_embedding`` with a detail naming what is wrong."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from connectors.clients import make_item
from connectors.schemas import (
    ITEM_JSON_SCHEMA,
    CatalogItem,
    ItemEmbedding,
    Reason,
    Rejection,
    SchemaError,
    item_json,
    parse_item,
    schema_errors,
)


def raw(embedding: Any) -> bytes:
    return json.dumps({"item_id": "sku-1", "text": "Red kettle", "embedding": embedding}).encode()


def test_an_item_without_embedding_has_none() -> None:
    for value in (b'{"item_id": "sku-1", "text": "Red kettle"}', raw(None)):
        item = parse_item(value)
        assert isinstance(item, CatalogItem) and item.embedding is None


def test_an_item_with_embedding_round_trips_float32_exactly() -> None:
    vec = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    emb = ItemEmbedding.from_floats("all-MiniLM-L6-v2", vec.tolist())
    value = item_json("sku-1", "Red kettle", {"brand": "Acme"}, emb)
    assert schema_errors(value, ITEM_JSON_SCHEMA) == []
    item = parse_item(value)
    assert isinstance(item, CatalogItem) and item.attributes == {"brand": "Acme"}
    assert item.embedding is not None and item.embedding.model == "all-MiniLM-L6-v2"
    assert np.array_equal(np.asarray(item.embedding.values, dtype=np.float32), vec)
    assert len(value) < 384 * 14  # 9 significant digits a value, not 17
    assert parse_item(raw({"model": "m", "values": [1, 0]})).embedding.values == (1.0, 0.0)  # integers are numbers


@pytest.mark.parametrize(("embedding", "detail"), [
    ([0.1, 0.2], 'embedding: expected an object {"model": str, "values": [numbers]}, got list'),
    ("AAAA", 'embedding: expected an object {"model": str, "values": [numbers]}, got str'),
    ({"values": [0.1]}, "embedding: model: expected the name of the encoder (a non-empty string), got None"),
    ({"model": " ", "values": [0.1]}, "embedding: model: expected the name of the encoder (a non-empty string), "
                                      "got ' '"),
    ({"model": 7, "values": [0.1]}, "embedding: model: expected the name of the encoder (a non-empty string), got 7"),
    ({"model": "m"}, "embedding: values: expected a non-empty array of numbers, got NoneType"),
    ({"model": "m", "values": []}, "embedding: values: expected a non-empty array of numbers, got an empty list"),
    ({"model": "m", "values": "0.1,0.2"}, "embedding: values: expected a non-empty array of numbers, got str"),
    ({"model": "m", "values": [0.1, "0.2"]}, "embedding: values[1]: expected a number, got str ('0.2')"),
    ({"model": "m", "values": [0.1, None]}, "embedding: values[1]: expected a number, got NoneType (None)"),
    ({"model": "m", "values": [True]}, "embedding: values[0]: expected a number, got bool (True)"),
    ({"model": "m", "values": [[0.1]]}, "embedding: values[0]: expected a number, got list ([0.1])"),
])
def test_each_malformed_embedding_is_invalid_embedding(embedding: Any, detail: str) -> None:
    got = parse_item(raw(embedding))
    assert got == Rejection(Reason.INVALID_EMBEDDING, detail)
    assert schema_errors(raw(embedding), ITEM_JSON_SCHEMA) != []  # the JSON Schema says no as well


def test_infinite_and_nan_values() -> None:
    # JSON has no infinity, but 1e999 parses as one: the embedding is invalid
    assert parse_item(b'{"item_id": "i", "text": "t", "embedding": {"model": "m", "values": [0.5, 1e999]}}') == \
        Rejection(Reason.INVALID_EMBEDDING, "embedding: values[1]: expected a finite number, got inf")
    # a NaN literal is not JSON at all, as anywhere else in a message
    assert parse_item(b'{"item_id": "i", "text": "t", "embedding": {"model": "m", "values": [NaN]}}').reason \
        == Reason.INVALID_JSON
    with pytest.raises(SchemaError, match="invalid_embedding: embedding: values\\[0\\]: expected a finite number"):
        make_item("i", "t", embedding=ItemEmbedding("m", (float("inf"),)))


def test_make_item_keeps_a_valid_embedding() -> None:
    item = make_item("i", "t", embedding=ItemEmbedding("m", (0.25, -0.5)))
    assert item.embedding == ItemEmbedding("m", (0.25, -0.5))
