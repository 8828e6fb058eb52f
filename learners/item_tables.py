"""The adapter's per-item tables: adding items (their frozen embeddings projected on the text basis, their
attribute values), building the model on the first catalog batch, and growing every per-item tensor with its Adam
state and moving average as the catalog grows. :class:`ItemTables` is that part of
:class:`~learners.adapter.AdapterRecommender` (a mixin over the adapter's own state, declared by
:class:`~learners.adapter_base.AdapterBase`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from learners.adapter_base import AdapterBase
from learners.attributes import FIRST_VALUES, ItemAttributes
from learners.heads import AdapterHead, AttentionUserModel
from learners.signals import CooccurrenceSignal, PopularitySignal
from learners.tensors import grown, padded, principal_basis
from learners.types import FloatArray, Item, TextEncoder


class ItemTables(AdapterBase):
    """Items in, the per-item tensors sized to them."""

    def add_items(self, items: Sequence[Item]) -> None:
        """Encode new items' text once (in one batch) and make them recommendable."""
        new = [it for it in dict((it.item_id, it) for it in items).values() if it.item_id not in self.item_index]
        if not new:
            return
        if self.encoder is None:
            raise ValueError("encoder: this learner has no encoder attached; call attach_encoder() first")
        self.add_item_embeddings([it.item_id for it in new], self.encoder.encode([it.text for it in new]),
                                 [it.attributes for it in new])

    def add_item_embeddings(self, item_ids: Sequence[str], embeddings: FloatArray,
                            attributes: Sequence[Sequence[str]] | None = None) -> None:
        """Add items whose frozen embeddings were computed elsewhere (e.g. cached in a table). ``attributes``: each
        item's attribute values (``key=value``); those of an item already known replace its values."""
        if attributes is not None and len(attributes) != len(item_ids):
            raise ValueError(f"attributes: expected one entry per item ({len(item_ids)}), got {len(attributes)}")
        fresh = [(i, row) for row, i in enumerate(item_ids) if i not in self.item_index]
        if not fresh:
            self._set_attributes(item_ids, attributes)
            return
        emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32)[[r for _, r in fresh]], device=self._dev)
        if self._head is None:
            if 0 < self.text_dims < emb.shape[1]:
                self._basis = principal_basis(emb, self.text_dims, self.seed)
            self._build(self.text_dims if self._basis is not None else emb.shape[1], capacity=max(1024, 2 * len(fresh)))
        if self._basis is not None:
            emb = emb @ self._basis
        assert self._emb is not None
        n0 = len(self.item_ids)
        need = n0 + len(fresh)
        if need > self._emb.shape[0]:
            cap = self._emb.shape[0]  # double while small; past 65,536 rows by a quarter (every per-item tensor
            self._grow(max(need, 2 * cap if cap < 65_536 else cap + cap // 4))  # and its Adam moments grows with it)
        self._emb[n0:need] = emb
        for i, _ in fresh:
            self._register(i)
        self._arrived = grown(self._arrived if self._arrived is not None else np.zeros(0, dtype=np.int64), need)
        self._arrived[n0:need] = self._n_learned
        self._set_attributes(item_ids, attributes)
        if self._gate is not None:
            self._gate.grow(need)
        self._fit_cooccurrence(need)
        self._cache = self._train_table = None
        if self._retriever is not None:
            rows = np.arange(n0, need)
            self._retriever.items_added(need, rows, self._index_table(rows))
        elif self._large():
            self._ensure_retriever()  # the catalog just passed retrieval.exact_max_items: index it now

    def _set_attributes(self, item_ids: Sequence[str], attributes: Sequence[Sequence[str]] | None) -> None:
        """Give the (registered) items ``item_ids`` their first ``attributes.slots`` attribute values, registering
        values not seen before (their shared vectors start at zero)."""
        part = self._attributes
        if attributes is None or part is None or self._head is None or self._emb is None:
            return  # attributes.slots 0 (no tables made by _build)
        part.assign([self.item_index[i] for i in item_ids], attributes, self._emb.shape[0])
        if len(part.index) > self._head.attr_vec.shape[0]:
            self._resize(("attr_vec", "attr_bias"), 2 * len(part.index))
        self._cache = self._train_table = None

    @property
    def attribute_values(self) -> list[str]:
        """The attribute values the model has a shared vector for, by row (row 0, padding, is ``""``)."""
        return self._attributes.values if self._attributes is not None else []

    @property
    def attribute_count(self) -> int:
        """How many attribute values have a shared vector (0 with ``attributes.slots`` 0)."""
        return self._attributes.count if self._attributes is not None else 0

    def _attrs(self, rows: torch.Tensor | None = None, n: int = 0) -> torch.Tensor | None:
        """The attribute value rows of items ``rows`` (of the first ``n`` items when None), or None without any."""
        return self._attributes.of(rows, n) if self._attributes is not None else None

    def _fit_cooccurrence(self, n: int) -> None:
        """Size the co-occurrence counts to the live catalog (256-row steps), not to the doubled capacity of the
        per-item tensors: doubling a quadratic matrix costs 4x (43 MB instead of 11 MB for ML-100K, and in every
        checkpoint). Past ``cooccurrence.dense_items`` items they become per-item top neighbours."""
        if self._cooc is None:
            return
        if n > self.cooccurrence.dense_items:
            self._cooc.bound(self.cooccurrence.neighbours)
        self._cooc.grow(-(-n // 256) * 256)

    def attach_encoder(self, encoder: TextEncoder) -> None:
        """Re-attach a frozen encoder (it is not pickled with the learner)."""
        self.encoder = encoder

    def _build(self, in_dim: int, capacity: int) -> None:
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self._emb = torch.zeros(capacity, in_dim, device=self._dev)
        self._head = AdapterHead(in_dim, self.dim, capacity, g).to(self._dev)
        self._user = AttentionUserModel(self.dim, self.seq_len).to(self._dev)
        if self.attributes.slots > 0:
            self._head.add_attributes(FIRST_VALUES, self.attributes.scale)
            self._attributes = ItemAttributes(self.attributes.slots, self._dev)
        co = self.cooccurrence
        if co.window > 0:  # sized by _fit_cooccurrence once the items are registered
            self._cooc = CooccurrenceSignal(0, co.window, co.recent, self._dev, co.log_scale, co.distance_decay)
        if self.popularity.half_life > 0:
            self._pop = PopularitySignal(capacity, self.popularity.half_life, self._dev)
        # fused: one kernel for every parameter instead of a dozen foreach ops per step (3x faster on CPU)
        t = self.training
        self._opt = torch.optim.Adam(self._params(), lr=t.learning_rate, weight_decay=t.weight_decay, fused=True)
        if t.ema_decay > 0:
            self._avg = {k: p.detach().clone() for k, p in self._named_params().items()}
            self._averaged = None

    def _named_params(self) -> dict[str, torch.Tensor]:
        """Every trainable tensor by a stable name (``head.*``, ``user.*``, ``log_temp``, ``blend``)."""
        assert self._head is not None and self._user is not None
        return {**{f"head.{k}": p for k, p in self._head.named_parameters()},
                **{f"user.{k}": p for k, p in self._user.named_parameters()},
                "log_temp": self._log_temp, "blend": self._blend}

    def _params(self) -> list[torch.Tensor]:
        return list(self._named_params().values())

    def _dense_params(self) -> list[torch.Tensor]:
        """What the dense Adam steps: every parameter, less the per-item vectors once SparseAdam has them."""
        return [p for name, p in self._named_params().items()
                if not (self._sparse_opt is not None and name == "head.item_id")]

    def _grow(self, capacity: int) -> None:
        """Enlarge the per-item tensors (and their Adam state) to ``capacity`` rows."""
        assert self._emb is not None
        self._emb = padded(self._emb, capacity)
        if self._attributes is not None:
            self._attributes.grow(capacity)
        if self._pop is not None:
            self._pop.grow(capacity)
        self._resize(("item_id", "item_bias"), capacity)

    def _resize(self, names: Sequence[str], capacity: int) -> None:
        """Enlarge the head's parameters ``names`` (their Adam state and moving averages) to ``capacity`` rows."""
        assert self._head is not None and self._opt is not None
        for name in names:
            p_old: nn.Parameter = getattr(self._head, name)
            p_new = nn.Parameter(padded(p_old, capacity))
            opt = self._sparse_opt if self._sparse_opt is not None and name == "item_id" else self._opt
            state = opt.state.pop(p_old, None)
            setattr(self._head, name, p_new)
            if state:
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = padded(state[key], capacity)
                opt.state[p_new] = state
        self._opt.param_groups[0]["params"] = self._dense_params()
        if self._sparse_opt is not None:
            self._sparse_opt.param_groups[0]["params"] = [self._head.item_id]
        if self._avg is not None:
            for name in names:
                self._avg[f"head.{name}"] = padded(self._avg[f"head.{name}"], capacity)
            self._averaged = None
