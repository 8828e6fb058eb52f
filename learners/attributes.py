"""Item attributes as shared vectors: each attribute value (``director=...``, a brand) an item carries gets a
learned vector and bias, shared by every item with that value (the tables live in :class:`~learners.heads.AdapterHead`;
this part keeps which values each item has)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from learners.config import check_ranges, setting

#: An attribute value counts for an item once at least this many items have it (one: the item's own vector again).
MIN_ITEMS = 2
FIRST_VALUES = 1024  # rows of the value tables made with the first item that has attributes


@dataclass(frozen=True)
class AttributeConfig:
    """Item attributes (the ``attributes`` setting; ``STREAMREC_ATTRIBUTES__<FIELD>``): up to ``slots`` attribute
    values per item (``Item.attributes``) add the mean of learned vectors and biases, one per value, times
    ``scale``; a value only one item has so far is left out. ``slots`` 0: items' attributes are ignored."""

    slots: int = setting(0, "Up to this many of an item's `attributes` values (e.g. its director, brand) each get "
                         "a learned vector shared by every item with that value (0: attributes are not learned from).")
    scale: float = setting(0.5, "How far the shared attribute-value vectors move an item's vector, relative to its "
                           "own (their step size under Adam).")

    def __post_init__(self) -> None:
        check_ranges(self, "attributes", {"slots": ">=0", "scale": ">0"})


class ItemAttributes:
    """Which attribute values (by row of the value tables; row 0 is padding) each item index has.

    >>> a = ItemAttributes(slots=2, device=torch.device("cpu"))
    >>> a.assign([0, 1, 2], [("director=x", "writer=y"), (), ("director=x",)], capacity=4)
    >>> a.values, a.count, a.of(n=3).tolist()
    (['', 'director=x', 'writer=y'], 2, [[1, 0], [0, 0], [1, 0]])
    """

    def __init__(self, slots: int, device: torch.device) -> None:
        self.slots = slots
        self.device = device
        self.index: dict[str, int] = {"": 0}  # value -> row of the value tables
        self.rows: torch.Tensor | None = None  # (capacity, slots) int32 value rows of each item, 0-padded: made
        # when the first item with attributes arrives (a catalog without any pays nothing)
        self.support = torch.zeros(FIRST_VALUES, dtype=torch.long, device=device)  # items with each value
        self.width = 0  # the most values an item has had (the rows' columns past it are all padding)

    @property
    def values(self) -> list[str]:
        """The values by row (row 0, padding, is ``""``)."""
        out = [""] * len(self.index)
        for v, r in self.index.items():
            out[r] = v
        return out

    @property
    def count(self) -> int:
        """How many values have a row."""
        return len(self.index) - 1

    def grow(self, capacity: int) -> None:
        """Room for ``capacity`` items."""
        if self.rows is not None and capacity > self.rows.shape[0]:
            rows = torch.zeros(capacity, self.slots, dtype=torch.int32, device=self.device)
            rows[: self.rows.shape[0]] = self.rows
            self.rows = rows

    def assign(self, at: Sequence[int], attributes: Sequence[Sequence[str]], capacity: int) -> None:
        """Give the items at indices ``at`` their first ``slots`` values (replacing those they had), registering
        values not seen before; ``capacity``: the items the rows must hold."""
        if self.rows is None:
            if not any(attributes):
                return
            self.rows = torch.zeros(capacity, self.slots, dtype=torch.int32, device=self.device)
        index = self.index
        rows: list[list[int]] = []
        for values in attributes:
            row = [index.setdefault(v, len(index)) for v in list(dict.fromkeys(values))[: self.slots] if v]
            self.width = max(self.width, len(row))
            rows.append(row + [0] * (self.slots - len(row)))
        if len(index) > self.support.shape[0]:
            support = torch.zeros(2 * len(index), dtype=torch.long, device=self.device)
            support[: self.support.shape[0]] = self.support
            self.support = support
        if at:
            at_t = torch.as_tensor(list(at), device=self.device)
            old = self.rows.index_select(0, at_t).reshape(-1)
            self.support.index_add_(0, old, torch.full((len(old),), -1, dtype=torch.long, device=self.device))
            self.rows[at_t] = new = torch.as_tensor(rows, dtype=torch.int32, device=self.device)
            self.support.index_add_(0, new.reshape(-1), torch.ones(len(old), dtype=torch.long, device=self.device))

    def of(self, rows: torch.Tensor | None = None, n: int = 0) -> torch.Tensor | None:
        """The value rows of items ``rows`` (of the first ``n`` items when None), values fewer than ``MIN_ITEMS``
        items have as padding; None while no item has any."""
        if self.rows is None:
            return None
        r = self.rows[:n] if rows is None else self.rows.index_select(0, rows)
        r = r[:, : self.width]  # no item has more values: the rest of every row is padding
        return torch.where(self.support[r] >= MIN_ITEMS, r, 0)

    @classmethod
    def from_fields(cls, slots: int, device: torch.device, index: dict[str, int], rows: torch.Tensor | None,
                    support: torch.Tensor, width: int) -> ItemAttributes:
        """The part from the four fields a learner pickled by an earlier version held itself."""
        out = cls(slots, device)
        out.index, out.rows, out.support, out.width = index, rows, support, width
        return out
