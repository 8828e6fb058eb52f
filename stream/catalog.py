"""The whole catalog on every worker: follow the item table's changelog, every partition, without a group.

The ``items`` agent encodes each item once, on the worker that owns the item's ``items`` partition, and writes
text and embedding to the ``item-embeddings`` table, so the table's changelog holds the whole catalog, encoded.
With several workers each owns only some partitions, yet every recommendation ranks the whole catalog: each
worker therefore reads every partition of that changelog from its beginning, keeps following it, and hands the
embeddings to its learner (nothing is encoded twice). Faust's ``GlobalTable`` would do the same, but its own
docstring warns that it can loop in recovery when several instances run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer

from connectors.kafka import KafkaClientConfig, assign_all_partitions
from connectors.schemas import CatalogItem

log = logging.getLogger("streamrec.worker")

#: Hands a batch of catalog items to the learner: ids, embeddings, each item's attribute values (``key=value``).
ItemsCallback = Callable[[list[str], np.ndarray[Any, Any], list[tuple[str, ...]]], Awaitable[None]]

#: The name an embedding made by the bundled encoder carries (``encoder_model`` empty).
BUNDLED_ENCODER_NAME = "all-MiniLM-L6-v2"


def encoder_name(encoder_model: str) -> str:
    """The model name of embeddings made by the encoder this ``encoder_model`` setting loads.

    >>> encoder_name(""), encoder_name("/models/e5-small")
    ('all-MiniLM-L6-v2', '/models/e5-small')
    """
    return encoder_model or BUNDLED_ENCODER_NAME


@dataclass
class EmbeddingCheck:
    """Which items of a batch bring an embedding the worker can use, and which texts it must encode itself.

    ``given`` maps a position in the batch to its embedding (float32); ``to_encode`` lists the other positions;
    ``rejected`` counts the embeddings that were there but unusable, by ``model`` or ``size``; ``mismatches``
    says how, once per distinct mismatch.
    """

    given: dict[int, np.ndarray[Any, Any]] = field(default_factory=dict)
    to_encode: list[int] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)


def check_embeddings(items: Sequence[CatalogItem], model: str, dim: int) -> EmbeddingCheck:
    """Sort ``items`` into those whose embedding is usable (made by ``model``, ``dim`` values) and the rest.

    >>> from connectors.schemas import ItemEmbedding
    >>> items = [CatalogItem("a", "t", embedding=ItemEmbedding("m", (1.0, 0.0))),
    ...          CatalogItem("b", "t", embedding=ItemEmbedding("other", (1.0, 0.0))),
    ...          CatalogItem("c", "t", embedding=ItemEmbedding("m", (1.0,))), CatalogItem("d", "t")]
    >>> c = check_embeddings(items, "m", 2)
    >>> sorted(c.given), c.to_encode, dict(c.rejected)
    ([0], [1, 2, 3], {'model': 1, 'size': 1})
    >>> c.mismatches
    ["model 'other' (the worker's is 'm')", "1 values (the worker's encoder gives 2)"]
    """
    check = EmbeddingCheck()
    for n, item in enumerate(items):
        e = item.embedding
        if e is None:
            check.to_encode.append(n)
            continue
        if e.model != model:
            reason, how = "model", f"model {e.model[:128]!r} (the worker's is {model!r})"
        elif len(e.values) != dim:
            reason, how = "size", f"{len(e.values)} values (the worker's encoder gives {dim})"
        else:
            check.given[n] = np.asarray(e.values, dtype=np.float32)
            continue
        check.to_encode.append(n)
        check.rejected[reason] += 1
        if how not in check.mismatches:
            check.mismatches.append(how)
    return check


def encode_embedding(vec: np.ndarray[Any, Any]) -> str:
    """An embedding as the item table stores it: base64 of float32 bytes.

    >>> decode_embedding(encode_embedding(np.array([0.5, -1.0]))).tolist()
    [0.5, -1.0]
    """
    return base64.b64encode(np.asarray(vec, dtype=np.float32).tobytes()).decode()


def decode_embedding(s: str) -> np.ndarray[Any, Any]:
    return np.frombuffer(base64.b64decode(s), dtype=np.float32)


def catalog_entries(pairs: Iterable[tuple[str, Any]]
                    ) -> tuple[list[str], np.ndarray[Any, Any] | None, list[tuple[str, ...]]]:
    """Item ids, stacked embeddings and attribute values of ``(item_id, table value)`` pairs; values without an
    embedding are skipped (a value written before attributes existed has none).

    >>> ids, vecs, attrs = catalog_entries([("a", {"emb": encode_embedding(np.ones(2)), "attrs": ["brand=Acme"]}),
    ...                                     ("b", None)])
    >>> ids, vecs.shape, attrs
    (['a'], (1, 2), [('brand=Acme',)])
    """
    ids: list[str] = []
    vecs: list[np.ndarray[Any, Any]] = []
    attrs: list[tuple[str, ...]] = []
    for item_id, value in pairs:
        if isinstance(value, dict) and isinstance(value.get("emb"), str):
            ids.append(str(item_id))
            vecs.append(decode_embedding(value["emb"]))
            given = value.get("attrs")
            attrs.append(tuple(str(v) for v in given) if isinstance(given, list) else ())
    return ids, (np.stack(vecs) if vecs else None), attrs


def changelog_pairs(records: Iterable[Any]) -> Iterable[tuple[str, Any]]:
    """``(item_id, value)`` of item-table changelog records (Faust writes keys and values as JSON)."""
    for r in records:
        try:
            yield json.loads(r.key), (json.loads(r.value) if r.value is not None else None)
        except (TypeError, ValueError):
            log.warning("catalog: unreadable changelog record at %s[%s]@%s", r.topic, r.partition, r.offset)


async def follow_catalog(cfg: KafkaClientConfig, changelog_topic: str, on_items: ItemsCallback,
                         stop: Callable[[], bool], max_records: int = 2000, retry_s: float = 2.0,
                         on_caught_up: Callable[[], None] | None = None) -> None:
    """Hand every item in ``changelog_topic`` (all partitions, from the beginning) to ``on_items``, then follow.

    ``on_caught_up`` is called once every partition was read to the end offset it had when reading began.

    Runs until ``stop()`` is true or the task is cancelled. A broker that is unreachable or an error while
    reading starts the follower over after ``retry_s`` (from the beginning: adding known items is a no-op);
    a batch the learner rejects is logged and skipped. It never ends silently while the worker runs.
    """
    while not stop():
        try:
            await _follow_once(cfg, changelog_topic, on_items, stop, max_records, on_caught_up)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep following; the worker must not run on a partial catalog
            log.exception("catalog: following %s failed; retrying in %.0f s", changelog_topic, retry_s)
            await asyncio.sleep(retry_s)


async def _follow_once(cfg: KafkaClientConfig, changelog_topic: str, on_items: ItemsCallback,
                       stop: Callable[[], bool], max_records: int,
                       on_caught_up: Callable[[], None] | None = None) -> None:
    consumer = AIOKafkaConsumer(**cfg.kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    try:
        await consumer.start()
        while not (tps := await assign_all_partitions(consumer, changelog_topic)):
            if stop():
                return
            await asyncio.sleep(1.0)
        ends = await consumer.end_offsets(tps)  # Tansu may under-report them: then the position passes them
        while not stop():
            if on_caught_up is not None and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                on_caught_up()
                on_caught_up = None
            batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
            ids, vecs, attrs = catalog_entries(changelog_pairs(r for records in batch.values() for r in records))
            if vecs is None:
                continue
            try:
                await on_items(ids, vecs, attrs)
            except Exception:  # noqa: BLE001 - one bad batch (e.g. another embedding width) must not stop the rest
                log.exception("catalog: %d items from %s not added", len(ids), changelog_topic)
    finally:
        await consumer.stop()
