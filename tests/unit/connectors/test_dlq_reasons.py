"""Every DLQ reason the worker can count (the `reason` label of the invalid-events counter) is documented."""

from __future__ import annotations

import re
from pathlib import Path

from connectors.schemas import Reason

ROOT = Path(__file__).resolve().parents[3]


def documented_reasons() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"\*\*DLQ reasons\*\*(.*?)\n\n", readme, re.S)
    assert m, "README lacks the **DLQ reasons** paragraph"
    return set(re.findall(r"`([a-z0-9_]+)`", m.group(1)))


def test_every_reason_is_documented_in_the_readme() -> None:
    # key_mismatch was a label of streamrec_events_invalid_total that nothing produced and nobody documented
    undocumented = sorted(str(r) for r in Reason if str(r) not in documented_reasons())
    assert undocumented == []
