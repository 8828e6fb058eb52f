"""The state the adapter's modules share: :class:`AdapterBase` declares, for the type checker, the attributes
:class:`~learners.adapter.AdapterRecommender` sets and the methods one of its modules calls on another
(:mod:`learners.item_tables`, :mod:`learners.two_stage`, :mod:`learners.sharing`); at run time it is
:class:`~learners.types.BaseLearner`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from learners.types import BaseLearner

if TYPE_CHECKING:
    import numpy as np
    import torch

    from learners.attributes import AttributeConfig, ItemAttributes
    from learners.cold import ColdConfig, ColdGate
    from learners.fusion import FusionConfig
    from learners.heads import AdapterHead, AttentionUserModel
    from learners.intent import IntentConfig
    from learners.retrieval import CandidateRetriever, RetrievalConfig
    from learners.sharing import DeltaTracker
    from learners.signals import CooccurrenceConfig, CooccurrenceSignal, PopularityConfig, PopularitySignal
    from learners.training import TrainingConfig
    from learners.types import FloatArray, Interaction, Query, TextEncoder


class AdapterBase(BaseLearner):
    """What the adapter's modules see of one another (declarations only)."""

    if TYPE_CHECKING:
        encoder: TextEncoder | None
        dim: int
        seq_len: int
        text_dims: int
        seed: int
        training: TrainingConfig
        cooccurrence: CooccurrenceConfig
        popularity: PopularityConfig
        fusion: FusionConfig
        cold: ColdConfig
        retrieval: RetrievalConfig
        intent: IntentConfig
        attributes: AttributeConfig
        _dev: torch.device
        _emb: torch.Tensor | None
        _basis: torch.Tensor | None
        _head: AdapterHead | None
        _user: AttentionUserModel | None
        _log_temp: torch.nn.Parameter
        _blend: torch.nn.Parameter
        _avg: dict[str, torch.Tensor] | None
        _averaged: tuple[AdapterHead, AttentionUserModel] | None
        _cache: tuple[torch.Tensor, torch.Tensor] | None
        _train_table: tuple[torch.Tensor, torch.Tensor] | None
        _cooc: CooccurrenceSignal | None
        _pop: PopularitySignal | None
        _gate: ColdGate | None
        _attributes: ItemAttributes | None
        _opt: torch.optim.Optimizer | None
        _sparse_opt: torch.optim.SparseAdam | None
        _retriever: CandidateRetriever | None
        _sharing: DeltaTracker | None
        _n_learned: int
        _arrived: np.ndarray | None

        # learners.adapter
        def _encode_histories(self, histories: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]: ...
        def _intent_tensor(self, qs: Sequence[Query]) -> torch.Tensor | None: ...
        def _scores(self, qs: Sequence[Query]) -> tuple[FloatArray, torch.Tensor | None, torch.Tensor | None]: ...
        def _cached_table(self) -> tuple[torch.Tensor, torch.Tensor] | None: ...
        def _averaged_modules(self) -> tuple[AdapterHead, AttentionUserModel]: ...
        def count_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None: ...
        # learners.item_tables
        def _attrs(self, rows: torch.Tensor | None = None, n: int = 0) -> torch.Tensor | None: ...
        def _named_params(self) -> dict[str, torch.Tensor]: ...
        def _dense_params(self) -> list[torch.Tensor]: ...
        @property
        def attribute_values(self) -> list[str]: ...
        # learners.two_stage
        def _large(self) -> bool: ...
        def _ensure_retriever(self) -> CandidateRetriever: ...
        def _index_table(self, rows: np.ndarray | None = None, chunk: int = 65_536) -> np.ndarray: ...
        def _popularity_array(self) -> np.ndarray | None: ...
