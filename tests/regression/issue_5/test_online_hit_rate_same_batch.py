"""Online HR@10 scored a user's second event in a micro-batch against the list from before the batch.

Replayed MovieLens sessions put a user's consecutive events in one batch, so the gauge read ~0.07 at the end of the
demo while the recommendations on the topic scored 0.215 against each user's next event.
"""

from __future__ import annotations

from learners.history import UserState
from tests.unit.stream.test_processor import event, make, msg


def test_second_event_in_a_batch_is_scored_against_the_list_made_after_the_first() -> None:
    probe, _, _ = make()
    after_first = probe.prepare([msg(event(1, "u", "i1"))], lambda u: UserState()).recommendations[0][1]
    top = after_first["items"][0]["item_id"]
    p, _, metrics = make()  # same seed, same catalog: the same list after event 1
    p.prepare([msg(event(1, "u", "i1")), msg(event(2, "u", top))], lambda u: UserState())
    assert metrics.rolling_hit_rate == 1.0
    assert len(metrics._hits) == 1  # noqa: SLF001 - the first event had no earlier list to score
