"""What every part's config dataclass shares: fields that carry their one-line doc, and range checks that name
the field the way the worker's settings do (``training.learning_rate``).

Each model part (:mod:`learners.training`, :mod:`learners.signals`, :mod:`learners.fusion`, :mod:`learners.cold`,
:mod:`learners.heads`, :mod:`learners.intent`, :mod:`learners.retrieval`, :mod:`learners.exploration`) defines its
config once, as a frozen dataclass of :func:`setting` fields; the learner takes it as an argument, stores it under
the same name, and the worker's settings nest the same class (``STREAMREC_<PART>__<FIELD>``). The README's settings
table is generated from these docs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

#: Range rules :func:`check_ranges` knows: (how the error says what was expected, lowest, highest, highest
#: included).
RULES: dict[str, tuple[str, float, float, bool]] = {
    ">0": ("a number > 0", math.nextafter(0.0, 1.0), math.inf, True),
    ">=-1": ("a number >= -1", -1.0, math.inf, True),
    ">=0": ("a number >= 0", 0.0, math.inf, True),
    ">=1": ("a number >= 1", 1.0, math.inf, True),
    "[0,1)": ("a number in [0, 1)", 0.0, 1.0, False),
    "[0,1]": ("a number in [0, 1]", 0.0, 1.0, True),
    "(0,1]": ("a number in (0, 1]", math.nextafter(0.0, 1.0), 1.0, True),
}


def setting(default: Any, doc: str) -> Any:
    """A config field with its one-line doc (shown in the README's settings table)."""
    return dataclasses.field(default=default, metadata={"doc": doc})


def field_doc(cls: type, name: str) -> str:
    """The one-line doc of config field ``name`` of ``cls`` ("" without one)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return str(f.metadata.get("doc", ""))
    return ""


def check_ranges(cfg: Any, part: str, rules: dict[str, str]) -> None:
    """Raise ``ValueError("<part>.<field>: expected ..., got ...")`` for the first field outside its rule.

    >>> from learners.training import TrainingConfig
    >>> TrainingConfig(learning_rate=0)
    Traceback (most recent call last):
    ...
    ValueError: training.learning_rate: expected a number > 0, got 0
    """
    for name, rule in rules.items():
        what, low, high, closed = RULES[rule]
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v) or v < low \
                or v > high or (v == high and not closed):
            raise ValueError(f"{part}.{name}: expected {what}, got {v!r}")
