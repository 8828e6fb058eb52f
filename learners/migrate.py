"""Learners saved by earlier versions: the pickled state of an adapter from before its parts had config
dataclasses (flat hyper-parameters such as ``fusion_weight``, the attribute tables' bookkeeping on the learner
itself) becomes today's on loading, so a checkpoint keeps working across the upgrade."""

from __future__ import annotations

import logging
from typing import Any

from learners.attributes import AttributeConfig, ItemAttributes
from learners.cold import ColdConfig
from learners.fusion import FusionConfig
from learners.intent import IntentConfig
from learners.signals import CooccurrenceConfig, PopularityConfig
from learners.training import TrainingConfig

log = logging.getLogger("learners.adapter")  # said of the adapter being loaded


#: Flat hyper-parameters a learner pickled before the part configs held, their config and field, and the class
#: default an older learner that lacked the attribute had.
FLAT_FIELDS: dict[str, tuple[str, str, Any]] = {
    "learning_rate": ("training", "learning_rate", 0.004),
    "weight_decay": ("training", "weight_decay", 0.0),
    "temperature": ("training", "temperature", 10.0),
    "replay_capacity": ("training", "replay_capacity", 20000),
    "replay_ratio": ("training", "replay_ratio", 1.0),
    "ema_decay": ("training", "ema_decay", 0.0),
    "early_events": ("training", "early_events", 0),
    "early_steps": ("training", "early_steps", 1),
    "cooccurrence_window": ("cooccurrence", "window", 20),
    "cooccurrence_recent": ("cooccurrence", "recent", 5),
    "cooccurrence_dense_items": ("cooccurrence", "dense_items", 4096),
    "cooccurrence_neighbours": ("cooccurrence", "neighbours", 64),
    "cooccurrence_log_scale": ("cooccurrence", "log_scale", 0.0),
    "cooccurrence_distance_decay": ("cooccurrence", "distance_decay", 0.0),
    "popularity_half_life": ("popularity", "half_life", 5000.0),
    "fusion_weight": ("fusion", "weight", 0.0),
    "fusion_recent": ("fusion", "recent", 10),
    "fusion_popularity": ("fusion", "popularity", 0.0),
    "cold_threshold": ("cold", "threshold", 5),
    "cold_gate": ("cold", "gate", 0.5),
    "cold_slots": ("cold", "slots", 0),
    "intent_weight": ("intent", "weight", 4.0),
    "attribute_slots": ("attributes", "slots", 0),
    "attribute_scale": ("attributes", "scale", 0.5),
}
PART_CONFIGS: dict[str, type] = {"training": TrainingConfig, "cooccurrence": CooccurrenceConfig,
                                 "popularity": PopularityConfig, "fusion": FusionConfig, "cold": ColdConfig,
                                 "intent": IntentConfig, "attributes": AttributeConfig}


def migrate_flat_state(state: dict[str, Any]) -> None:
    """Turn the pickled state of a learner saved before the part configs (flat hyper-parameters, the attribute
    fields held by the learner itself) into today's, in place; today's state is left as it is."""
    if "training" in state:
        return
    if "cooccurrence_dense_items" not in state:  # saved when the signal was dense up to cooccurrence_max_items
        state["cooccurrence_dense_items"] = state.pop("cooccurrence_max_items", 10000)
        if state.get("_cooc") is None and state.get("cooccurrence_window", 0) > 0 and state.get("item_ids"):
            log.warning("co-occurrence: this checkpoint (%d items) was saved without its co-occurrence signal "
                        "(an earlier version dropped it above %d items); it stays off for this model",
                        len(state["item_ids"]), state["cooccurrence_dense_items"])
    fields: dict[str, dict[str, Any]] = {part: {} for part in PART_CONFIGS}
    for flat, (part, name, old_default) in FLAT_FIELDS.items():
        fields[part][name] = state.pop(flat, old_default)
    gate = state.get("_gate")
    if gate is not None:  # the gate's own settings are what it ran with
        fields["cold"].update(threshold=gate.threshold, gate=gate.min_probability, slots=gate.slots)
    for part, cls in PART_CONFIGS.items():
        state[part] = cls(**fields[part])
    index = state.pop("_attr_index", None)
    rows, support, width = state.pop("_attr_rows", None), state.pop("_attr_support", None), state.pop("_attr_width", 0)
    if index is not None and support is not None:
        state["_attributes"] = ItemAttributes.from_fields(state["attributes"].slots, state["_dev"], index, rows,
                                                          support, width)
    state["_intents"] = None  # an OrderedDict of texts then; a cache, never needed across a restart
