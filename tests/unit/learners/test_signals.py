"""Side signals of the adapter learner."""

from __future__ import annotations

import torch

from learners.signals import CooccurrenceSignal


def test_a_repeat_of_the_target_in_its_own_history_is_not_a_pair() -> None:
    sig = CooccurrenceSignal(capacity=4, window=5, recent=5, device=torch.device("cpu"), log_scale=0.0)
    sig.update(torch.tensor([[2, 0, 2]]), torch.tensor([[True, True, True]]), torch.tensor([2]))
    assert sig.counts[2, 2] == 0  # one user re-clicking an item must not bury it (benchmarks/poisoning.py)
    assert sig.counts[0, 2] == 1 and sig.counts[2, 0] == 1


def test_pairs_further_back_in_the_history_count_less() -> None:
    sig = CooccurrenceSignal(capacity=4, window=5, recent=5, device=torch.device("cpu"), distance_decay=0.5)
    sig.update(torch.tensor([[0, 1, 2]]), torch.tensor([[False, True, True]]), torch.tensor([3]))
    assert float(sig.counts[2, 3]) == 1.0 and abs(float(sig.counts[1, 3]) - 1 / 1.5) < 1e-6  # latest, one back
    assert abs(float(sig.counts[3, 1]) - 1 / 1.5) < 1e-6 and float(sig.counts[0, 3]) == 0.0  # symmetric; no padding
