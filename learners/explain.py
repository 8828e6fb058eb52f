"""Why an item is in a list: the ``because`` of each recommended item, faithful to the model's score.

Each recommended item gets one reason (a :data:`Because`):

* ``{"kind": "history", "item_id": j}``: of the user's latest :data:`RECENT` distinct history items, ``j`` is the
  one whose removal from the history lowers the item's model score most (leave-one-out through the whole model:
  the attention user model and the co-occurrence signal both see the shorter history). By construction, removing
  ``j`` lowers that score. A new item can have this reason too: its text is close to ``j``'s.
* ``{"kind": "new"}``: no history item raises the score (or the user has none) and the item has had no
  interaction yet: it is there for its text alone (the cold places give new items a chance).
* ``{"kind": "popular"}``: no history item raises the score (or the user has none) and the item has had
  interactions: popularity and the item's learned bias placed it.

* ``{"kind": "intent"}``: the request came with a text (``Query.intent``) and removing the text lowers the item's
  score more than removing any history item does.

``explore`` is given by the worker to places an exploration policy filled (:mod:`learners.exploration`).
The model score here is the one before rank fusion and cold places; leave-one-out costs one extra user-model
pass per (list, recent item), batched per micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from learners.types import Because, Query, Recommendation

#: Distinct history items tried per list (the latest ones: the attention's recency bias and the co-occurrence
#: signal both weigh the latest items most).
RECENT = 10


def without_history(recs: Sequence[Recommendation], item_index: dict[str, int],
                    counts: np.ndarray) -> list[list[Because]]:
    """Reasons when no history can explain anything: ``new`` or ``popular`` by the item's interactions.

    >>> without_history([[("a", 1.0), ("b", 0.5)]], {"a": 0, "b": 1}, np.array([3.0, 0.0]))
    [[{'kind': 'popular'}, {'kind': 'new'}]]
    """
    return [[_plain(item_index.get(i), counts) for i, _ in rec] for rec in recs]


def _plain(row: int | None, counts: np.ndarray) -> Because:
    return {"kind": "new" if row is not None and row < len(counts) and counts[row] <= 0 else "popular"}


def recent_distinct(idx: np.ndarray, mask: np.ndarray, n: int) -> list[list[int]]:
    """Per right-aligned history row, its latest ``n`` distinct item indices, newest first.

    >>> recent_distinct(np.array([[0, 4, 5, 4, 6], [1, 1, 2, 2, 2]]), np.array([[0, 1, 1, 1, 1], [0, 0, 1, 1, 1]], bool), 2)
    [[6, 4], [2]]
    """
    out: list[list[int]] = []
    for row, present in zip(idx.tolist(), mask.tolist(), strict=True):
        mine: list[int] = []
        for i, p in zip(reversed(row), reversed(present), strict=True):
            if p and i not in mine:
                mine.append(i)
                if len(mine) == n:
                    break
        out.append(mine)
    return out


def without_each(idx: np.ndarray, mask: np.ndarray, owner: np.ndarray, drop: np.ndarray) -> tuple[np.ndarray,
                                                                                                      np.ndarray]:
    """History rows ``owner`` with every occurrence of item ``drop`` removed, right-aligned again (the items
    before it move one place later, as if the item had never been there).

    >>> i, m = without_each(np.array([[0, 7, 8, 7, 9]]), np.array([[0, 1, 1, 1, 1]], bool), np.array([0, 0]),
    ...                     np.array([7, 9]))
    >>> (i * m).tolist(), m.tolist()
    ([[0, 0, 0, 8, 9], [0, 0, 7, 8, 7]], [[False, False, False, True, True], [False, False, True, True, True]])
    """
    keep = mask[owner] & (idx[owner] != drop[:, None])
    order = np.argsort(keep, axis=1, kind="stable")  # the removed and empty places first, the rest in order
    return np.take_along_axis(idx[owner], order, axis=1), np.take_along_axis(keep, order, axis=1)


def by_leave_one_out(qs: Sequence[Query], recs: Sequence[Recommendation], item_index: dict[str, int],
                     item_ids: Sequence[str], counts: np.ndarray,
                     encode: Callable[[Sequence[Sequence[str]]], tuple[torch.Tensor, torch.Tensor]],
                     scores_at: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray],
                                         torch.Tensor],
                     recent: int = RECENT) -> list[list[Because]]:
    """The reasons of the module doc for lists ``recs`` made for ``qs``.

    ``encode(histories)`` gives a learner's (rows, L) right-aligned history index rows and mask;
    ``scores_at(idx, mask, cand, owner, with_intent)`` its (rows, C) model scores of the item indices ``cand``
    (-1: none) for rows that belong to query ``owner``, with that query's text (intent) where ``with_intent``.
    One call of ``scores_at`` for the whole batch: the histories as they are, each with one of its latest
    ``recent`` distinct items removed (within the L places the learner reads: an item older than those does not
    move in), and, for a query with a text, the history without the text.
    """
    width = max((len(r) for r in recs), default=0)
    if not recs or width == 0:
        return [[] for _ in recs]
    cand = np.full((len(recs), width), -1, dtype=np.int64)
    for b, rec in enumerate(recs):
        for c, (i, _) in enumerate(rec):
            cand[b, c] = item_index.get(i, -1)
    idx_t, mask_t = encode([q.history for q in qs])
    idx, mask = idx_t.cpu().numpy(), mask_t.cpu().numpy()
    tried = recent_distinct(idx, mask, recent)
    owner = np.repeat(np.arange(len(qs)), [len(t) for t in tried])
    dropped = np.asarray([j for t in tried for j in t], dtype=np.int64)
    loo_idx, loo_mask = without_each(idx, mask, owner, dropped)
    texts = np.asarray([b for b, q in enumerate(qs) if q.intent], dtype=np.int64)
    everyone = np.arange(len(qs))
    rows_owner = np.concatenate([everyone, owner, texts])
    with_intent = np.concatenate([np.ones(len(qs) + len(owner), dtype=bool), np.zeros(len(texts), dtype=bool)])
    dev = idx_t.device
    scores = scores_at(torch.as_tensor(np.concatenate([idx, loo_idx, idx[texts]]), device=dev),
                       torch.as_tensor(np.concatenate([mask, loo_mask, mask[texts]]), device=dev),
                       torch.as_tensor(cand[rows_owner], device=dev), rows_owner, with_intent).float().cpu().numpy()
    base, loo = scores[: len(recs)], scores[len(recs): len(recs) + len(owner)]
    drop = base[owner] - loo  # (tries, width): how much each removal lowers each item's score
    intent_drop = np.full(cand.shape, -np.inf)
    intent_drop[texts] = base[texts] - scores[len(recs) + len(owner):]  # what the text adds
    starts = np.concatenate([[0], np.cumsum([len(t) for t in tried])])
    out: list[list[Because]] = []
    for b, rec in enumerate(recs):
        reasons: list[Because] = []
        d = drop[starts[b]: starts[b + 1]]
        best = d.argmax(axis=0) if len(d) else None
        for c in range(len(rec)):
            row = int(cand[b, c])
            plain = _plain(row if row >= 0 else None, counts)
            j = int(best[c]) if best is not None else -1
            history = float(d[j, c]) if j >= 0 else -np.inf
            if row >= 0 and intent_drop[b, c] > max(history, 0.0):
                reasons.append({"kind": "intent"})
            elif row < 0 or history <= 0:
                reasons.append(plain)
            else:
                reasons.append({"kind": "history", "item_id": item_ids[tried[b][j]]})
        out.append(reasons)
    return out
