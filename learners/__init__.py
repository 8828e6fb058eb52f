"""Pure modelling: encoders, the adapter learner, replay, baselines, evaluation. No Kafka imports here."""

from learners.history import InMemoryHistory, UserState
from learners.types import BaseLearner, Interaction, Item, Learner, Query, Recommendation, TextEncoder

__all__ = [
    "BaseLearner",
    "InMemoryHistory",
    "Interaction",
    "Item",
    "Learner",
    "Query",
    "Recommendation",
    "TextEncoder",
    "UserState",
]
