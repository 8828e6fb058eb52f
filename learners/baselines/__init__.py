"""Baselines on the same learner protocol, so every comparison is one loop over learners."""

from __future__ import annotations

from collections.abc import Callable

from learners.baselines.cooccurrence import ItemKNN
from learners.baselines.frozen import FrozenAfterWarmup
from learners.baselines.isgd import ISGD
from learners.baselines.popularity import DecayedPopularity, Popularity
from learners.baselines.retrain import PeriodicRetrain
from learners.baselines.river_mf import RiverBiasedMF
from learners.types import BaseLearner

BASELINES: dict[str, Callable[..., BaseLearner]] = {
    "popularity": Popularity,
    "decayed-popularity": DecayedPopularity,
    "item-knn": ItemKNN,
    "isgd": ISGD,
    "river-mf": RiverBiasedMF,
}

__all__ = ["BASELINES", "DecayedPopularity", "FrozenAfterWarmup", "ISGD", "ItemKNN", "PeriodicRetrain", "Popularity",
           "RiverBiasedMF"]
