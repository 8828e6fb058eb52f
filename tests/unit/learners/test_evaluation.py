"""The prequential protocol's scored range (``score_from``) and the ``streamrec evaluate`` output it feeds."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from learners.evaluation import prequential, summarise, whole_stream_rows
from learners.types import BaseLearner, FloatArray, Interaction, Item, Query
from stream.cli.evaluate import command


class Fixed(BaseLearner):
    """Always ranks a, b, c, ... in that order; records every event it learns from and every query it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.learned: list[Interaction] = []
        self.asked: list[str] = []

    def learn_many(self, xs: Sequence[Interaction], histories: Sequence[Sequence[str]]) -> None:
        self.learned.extend(xs)

    def recommend_many(self, qs: Sequence[Query], k: int = 10) -> list[list[tuple[str, float]]]:
        self.asked.extend(q.user_id for q in qs)
        return super().recommend_many(qs, k)

    def _score_all(self, q: Query) -> FloatArray:
        return -np.arange(len(self.item_ids), dtype=np.float32)


def hits_then_misses(n_hits: int, n_misses: int) -> list[Interaction]:
    """``n_hits`` events on item a (always first in Fixed's list), then ``n_misses`` on z (never in a top-1);
    one user per event, so no item is ever excluded."""
    return [Interaction(f"u{t}", "a" if t < n_hits else "z") for t in range(n_hits + n_misses)]


def fixed() -> Fixed:
    m = Fixed()
    m.add_items([Item(i, i) for i in "abcz"])
    return m


@pytest.mark.parametrize("batch_size", [1, 4, 256])
def test_events_before_score_from_are_learned_and_answered_but_not_scored(batch_size: int) -> None:
    m = fixed()
    events = hits_then_misses(6, 5)
    r = prequential(m, events, k=1, batch_size=batch_size, score_from=6)
    assert m.learned == events  # learned from every event, in order
    assert m.asked == [x.user_id for x in events]  # and every event was recommended for (test, then learn)
    assert (r.n, r.hits, r.hr, r.events) == (5, 0, 0.0, 11)  # fails if scoring started at event 0 (6 hits)
    assert r.whole is not None and (r.whole.n, r.whole.hits) == (11, 6)


def test_score_from_zero_counts_every_event_and_has_no_separate_whole() -> None:
    r = prequential(fixed(), hits_then_misses(6, 5), k=1, batch_size=4)
    assert (r.n, r.hits, r.events, r.whole) == (11, 6, 11, None)


def test_cold_items_are_judged_by_every_earlier_event_scored_or_not() -> None:
    """Item a has 6 interactions before event 6: a later event on it is not cold although none was scored."""
    events = [*hits_then_misses(6, 0), Interaction("late", "a"), Interaction("later", "b")]
    r = prequential(fixed(), events, k=1, batch_size=2, score_from=6, cold_threshold=5)
    assert (r.n, r.n_cold, r.hits, r.hits_cold) == (2, 1, 1, 0)


def test_score_from_past_the_end_scores_nothing() -> None:
    r = prequential(fixed(), hits_then_misses(3, 0), k=1, score_from=10)
    assert r.n == 0 and r.events == 3 and np.isnan(r.hr)


def test_negative_score_from_is_refused() -> None:
    with pytest.raises(ValueError, match="score_from"):
        prequential(fixed(), hits_then_misses(1, 0), score_from=-1)


def test_summary_rows_of_both_ranges_and_their_eval_lines() -> None:
    runs = [prequential(fixed(), hits_then_misses(6, 4), k=1, batch_size=4, score_from=6)]
    scored = summarise("fixed", runs)
    whole = whole_stream_rows([scored], {"fixed": runs})[0]
    assert (scored.n, scored.hr[0], scored.score_from) == (4, 0.0, 6)
    assert (whole.n, whole.hr[0], whole.score_from) == (10, 0.6, 0)
    assert re.fullmatch(r"EVAL learner=fixed hr10=0\.0000 ndcg10=0\.0000 cold_hr10=\S+ events_per_s=\d+ "
                        r"score_from=6", scored.eval_line())


def test_evaluate_cli_prints_the_whole_stream_and_the_scored_range(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``--score-from``: two tables from the same runs, each followed by one EVAL line per learner."""
    monkeypatch.setattr(sys, "argv", ["streamrec", "evaluate"])  # the tables' titles show the command line
    (tmp_path / "items.jsonl").write_text("".join(json.dumps({"item_id": i, "text": f"film {i}"}) + "\n"
                                                  for i in "abcz"))
    events = [{"user_id": f"u{t % 3}", "item_id": "abcz"[t % 4], "ts": t} for t in range(40)]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    out = CliRunner().invoke(command, ["--dataset", str(tmp_path / "events.jsonl"), "--learners", "popularity,item-knn",
                                       "--seeds", "0", "--score-from", "30", "--plot", ""],
                             env={"COLUMNS": "200"}, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    lines = [ln for ln in out.output.splitlines() if ln.startswith("EVAL ")]
    assert [re.search(r"learner=(\S+) .* score_from=(\d+)", ln).groups() for ln in lines] == [  # type: ignore[union-attr]
        ("popularity", "0"), ("item-knn", "0"), ("popularity", "30"), ("item-knn", "30")]
    assert "whole stream" in out.output and "from event 30 on" in out.output


def test_evaluate_cli_names_a_bad_retrain_learner() -> None:
    out = CliRunner().invoke(command, ["--learners", "streamrec-retrain-soon", "--plot", ""])
    assert out.exit_code == 2 and "unknown learner 'streamrec-retrain-soon'" in out.output
    assert "streamrec-retrain-N" in out.output
    out = CliRunner().invoke(command, ["--learners", "streamrec-retrain-0", "--plot", ""])
    assert out.exit_code == 2 and "at least 1" in out.output
