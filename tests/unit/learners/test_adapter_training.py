"""How the adapter learner trains: what its softmax contains, how histories become index rows."""

from __future__ import annotations

import torch

from learners.adapter import AdapterRecommender, right_aligned


def test_history_items_but_not_the_target_leave_the_softmax() -> None:
    logits = torch.zeros(2, 5, requires_grad=True)
    idx = torch.tensor([[0, 1], [0, 3]])
    mask = torch.tensor([[False, True], [True, True]])
    out = AdapterRecommender._masked_history(logits.clone(), idx, mask, torch.tensor([1, 2]))
    inf = float("-inf")
    assert out.tolist() == [[0.0, 0.0, 0.0, 0.0, 0.0],  # item 1 is the target (a repeat): kept; 0 is padding
                            [inf, 0.0, 0.0, inf, 0.0]]
    loss = torch.nn.functional.cross_entropy(out, torch.tensor([1, 2]))
    loss.backward()  # type: ignore[no-untyped-call]
    assert logits.grad is not None and logits.grad[1, 0] == 0 and logits.grad[1, 3] == 0


def test_histories_with_unknown_items_are_right_aligned_and_cut_to_width() -> None:
    idx, mask = right_aligned([1, -1, 2, 3, 4, 5, 6], [3, 4, 0], 3)
    assert idx.tolist() == [[0, 1, 2], [4, 5, 6], [0, 0, 0]]
    assert mask.tolist() == [[False, True, True], [True, True, True], [False, False, False]]
