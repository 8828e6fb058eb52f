"""One model across workers (learners.sharing): contributions, their wire form, and merging them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learners.adapter import AdapterRecommender
from learners.cold import ColdConfig
from learners.encoder import HashingEncoder
from learners.sharing import Contribution
from learners.training import TrainingConfig
from learners.types import Interaction, Item, Query

ITEMS = [Item(f"i{j}", f"topic{j % 5} word{j % 3} thing{j}") for j in range(40)]


def worker(name: str, items: list[Item] = ITEMS) -> AdapterRecommender:
    m = AdapterRecommender(HashingEncoder(32), dim=8, seq_len=6, device="cpu", text_dims=0, seed=3,
                           training=TrainingConfig(early_events=0), cold=ColdConfig(slots=2))
    m.add_items(items)
    m.start_sharing(name)
    return m


def stream(seed: int, n: int = 64) -> tuple[list[Interaction], list[tuple[str, ...]]]:
    rng = np.random.default_rng(seed)
    xs = [Interaction(f"u{seed}-{e % 8}", f"i{int(rng.integers(0, 40))}") for e in range(n)]
    hs = [tuple(f"i{int(j)}" for j in rng.integers(0, 40, size=4)) for _ in range(n)]
    return xs, hs


def tensors(m: AdapterRecommender) -> dict[str, torch.Tensor]:
    return {k: t.detach().clone() for k, t in m._shared_tensors().items()}


def test_a_peer_that_learned_nothing_gets_the_statistics_and_item_rows_and_averages_the_rest() -> None:
    a, b = worker("a"), worker("b")
    start = tensors(b)
    a.learn_many(*stream(1))
    c = Contribution.from_bytes(a.contribution().to_bytes())  # through the wire form
    assert len(c) == 64 and c.worker == "a" and c.rows
    b.merge([c])
    # additive statistics: the events themselves, so b counts what a counted
    assert torch.equal(b._pop.decayed, a._pop.decayed)
    assert torch.equal(b._cooc.counts, a._cooc.counts)
    assert np.array_equal(b._gate.counts, a._gate.counts)
    after_a, after_b = tensors(a), tensors(b)
    for name in ("head.item_id", "head.item_bias", "avg.head.item_id"):  # per-item rows: a's change, added
        assert torch.allclose(after_b[name], after_a[name], atol=1e-6), name
    for name in ("head.proj", "user.position", "user.query", "log_temp", "avg.head.proj"):  # dense: the mean
        assert not torch.equal(after_a[name], start[name]), name
        assert torch.allclose(after_b[name], (start[name] + after_a[name]) / 2, atol=1e-6), name
    assert b.model_version == 1
    assert len(b.recommend(Query("u1-0", ("i3", "i4")), k=5)) == 5


def test_contributions_hold_only_what_was_learned_since_the_last_one() -> None:
    a, b = worker("a"), worker("b")
    assert a.contribution() is None  # nothing learned yet
    a.learn_many(*stream(1))
    first = a.contribution()
    assert first is not None and first.seq == 1
    assert a.contribution() is None
    b.learn_many(*stream(2))
    a.merge([b.contribution()])
    a.learn_many(*stream(3, n=16))
    second = a.contribution()
    assert second is not None and second.seq == 2 and len(second) == 16  # b's events are not sent back


def test_merging_its_own_contribution_changes_nothing() -> None:
    a = worker("a")
    a.learn_many(*stream(1))
    before, version = tensors(a), a.model_version
    a.merge([a.contribution()])
    assert a.model_version == version
    assert all(torch.equal(t, tensors(a)[k]) for k, t in before.items())


def test_rows_of_items_this_worker_does_not_have_are_skipped() -> None:
    a = worker("a")
    b = worker("b", ITEMS[:20])  # b has not read half the catalog yet
    a.learn_many(*stream(1))
    b.merge([a.contribution()])
    assert b.n_skipped > 0  # a's events about i20..i39 are not counted either
    assert b.item_ids == [f"i{j}" for j in range(20)]


def test_a_damaged_or_foreign_contribution_is_a_value_error() -> None:
    for junk in (b"not an archive", b"", b"PK\x03\x04", np.zeros(3).tobytes()):
        with pytest.raises(ValueError, match="contribution"):
            Contribution.from_bytes(junk)
    a, b = worker("a"), AdapterRecommender(HashingEncoder(32), dim=4, seq_len=6, device="cpu", seed=3)
    b.add_items(ITEMS)
    b.start_sharing("b")
    a.learn_many(*stream(1))
    with pytest.raises(ValueError, match="does not fit|do not fit"):
        b.merge([a.contribution()])  # another dimension: named, not silently broadcast


def test_two_workers_that_exchange_count_what_one_worker_counts() -> None:
    """The additive statistics of workers that share equal one worker's that saw every event (co-occurrence and
    item counts; decayed popularity up to the order of decay)."""
    xs, hs = stream(5, n=96)
    one, a, b = worker("one"), worker("a"), worker("b")
    one.learn_many(xs, hs)
    mine = [i for i, x in enumerate(xs) if x.user_id.endswith(("-0", "-1", "-2", "-3"))]
    theirs = [i for i in range(len(xs)) if i not in mine]
    a.learn_many([xs[i] for i in mine], [hs[i] for i in mine])
    b.learn_many([xs[i] for i in theirs], [hs[i] for i in theirs])
    ca, cb = a.contribution(), b.contribution()
    a.merge([ca, cb])
    b.merge([ca, cb])
    for w in (a, b):
        assert torch.allclose(w._cooc.counts, one._cooc.counts, atol=1e-5)  # summed in another order
        assert np.array_equal(w._gate.counts, one._gate.counts)
        assert torch.allclose(w._pop.decayed, one._pop.decayed, rtol=0.05)
    for name in ("head.proj", "user.position", "avg.head.item_id"):  # both serve from one model after the exchange
        assert torch.allclose(tensors(a)[name], tensors(b)[name], atol=1e-6), name


def test_a_contribution_read_twice_is_merged_once_and_successive_ones_add_up() -> None:
    """After a restart a worker reads the shared topic again from its checkpoint's offset: what it merged before
    must not count twice. Two contributions of one peer in one read are two steps, not two voices to average."""
    a, b, c = worker("a"), worker("b"), worker("c")
    a.learn_many(*stream(1))
    first = a.contribution()
    a.learn_many(*stream(2))
    second = a.contribution()
    assert b.merge([first, second]) == 2 and b.events_learned == 128
    assert b.merge([first, second]) == 0 and b.events_learned == 128
    assert c.merge([first]) == 1 and c.merge([second]) == 1
    for name in ("head.item_id", "avg.head.item_id"):  # at once or one by one: the same rows as a's own
        assert torch.allclose(tensors(b)[name], tensors(a)[name], atol=1e-5), name
        assert torch.allclose(tensors(c)[name], tensors(a)[name], atol=1e-5), name


def test_a_worker_reading_its_own_newer_contribution_numbers_on_after_it() -> None:
    """A worker restarted from a checkpoint older than its last published contribution must not reuse that
    contribution's seq, or its peers would skip what it learns next as merged before."""
    a, b = worker("a"), worker("b")
    a.learn_many(*stream(1))
    b.merge([a.contribution()])
    restarted = worker("a")  # its checkpoint predates contribution 1
    restarted.merge([Contribution("a", 1)])  # read back from the topic
    restarted.learn_many(*stream(2))
    nxt = restarted.contribution()
    assert nxt is not None and nxt.seq == 2 and b.merge([nxt]) == 1


def test_a_checkpoint_from_before_the_dedup_and_weights_still_merges() -> None:
    """A learner pickled by an earlier version (its tracker without the attributes added since) keeps merging
    after the upgrade: a live worker restarted onto new code failed every merge before this."""
    import pickle

    a, old = worker("a"), worker("b")
    for attr in ("merged", "target_weight"):
        del old._sharing.__dict__[attr]
    b = pickle.loads(pickle.dumps(old))
    a.learn_many(*stream(1))
    assert b.merge([a.contribution()]) == 1 and b.events_learned == 64


def test_the_worker_that_learned_an_item_as_a_target_moves_its_row() -> None:
    """Every worker moves every row each step (negatives, Adam's momentum); the row of an item one worker learned
    as a target follows that worker's delta rather than the mean with the others' negative pushes."""
    a, b, c, d = worker("a"), worker("b"), worker("c"), worker("d")
    start = tensors(d)["head.item_id"]
    a.learn_many([Interaction("ua", "i7")] * 8, [("i1", "i2")] * 8)
    b.learn_many([Interaction("ub", "i9")] * 8, [("i3",)] * 8)
    c.learn_many([Interaction("uc", "i11")] * 8, [("i4",)] * 8)
    ca, cb, cc = a.contribution(), b.contribution(), c.contribution()
    d.merge([ca, cb, cc])
    moved = tensors(d)["head.item_id"] - start
    for m, item in ((a, 7), (b, 9), (c, 11)):
        own = tensors(m)["head.item_id"][item] - start[item]
        assert torch.allclose(moved[item], own, atol=0.02 * float(own.abs().max())), item
    others = (tensors(a)["head.item_id"][20] + tensors(b)["head.item_id"][20] + tensors(c)["head.item_id"][20]) / 3
    assert torch.allclose(tensors(d)["head.item_id"][20], others, atol=1e-6)  # no target anywhere: the mean


def test_a_worker_restarted_from_an_older_checkpoint_restores_its_own_later_contributions() -> None:
    """A worker killed after contributing what its checkpoint predates reads that contribution back from the
    shared topic and takes it back: the model it had (the shared parameters, the statistics) without learning
    those events again, and its next contribution holds exactly what it learns after them."""
    import copy

    a = worker("a")
    a.learn_many(*stream(1))
    a.contribution(marks={"ev:0": 64})
    restarted = copy.deepcopy(a)  # its checkpoint
    a.learn_many(*stream(2))
    sent = Contribution.from_bytes(a.contribution(marks={"ev:0": 128}).to_bytes())
    assert sent.marks == {"ev:0": 128}
    before_crash = tensors(a)

    assert restarted.merge([sent]) == 1  # its own, read back from the shared topic
    assert restarted.shared_marks == {"ev:0": 128} and restarted.events_learned == 128
    for name, t in tensors(restarted).items():
        assert torch.allclose(t, before_crash[name], atol=1e-6), name
    assert torch.equal(restarted._pop.decayed, a._pop.decayed)
    assert torch.equal(restarted._cooc.counts, a._cooc.counts)
    assert restarted.merge([sent]) == 0 and restarted.contribution() is None  # read twice: taken back once
    mid = tensors(restarted)
    restarted.learn_many(*stream(3, n=16))
    end = tensors(restarted)
    nxt = restarted.contribution(marks={"ev:0": 144})
    assert nxt is not None and len(nxt) == 16 and nxt.seq == 3 and restarted.shared_marks == {"ev:0": 144}
    index = restarted.item_index
    for name, (ids, delta) in nxt.rows.items():  # the rows' change since the restore, nothing of before it
        rows = torch.as_tensor([index[i] for i in ids])
        change = (end[name] - mid[name])[rows]
        assert torch.allclose(torch.as_tensor(delta), change, atol=1e-6), name
        others = torch.ones(len(end[name]), dtype=torch.bool)
        others[rows] = False
        assert torch.equal(end[name][others], mid[name][others]), name


def test_the_marks_of_every_workers_contributions_say_what_the_shared_model_holds() -> None:
    a, b = worker("a"), worker("b")
    a.learn_many(*stream(1))
    b.merge([a.contribution(marks={"ev:0": 64, "ev:1": 3})])
    b.learn_many(*stream(2, n=8))
    assert b.contribution(marks={"ev:1": 9, "ev:2": 5}).marks == {"ev:1": 9, "ev:2": 5}
    assert b.shared_marks == {"ev:0": 64, "ev:1": 9, "ev:2": 5}


def test_a_deflated_archive_as_sent_before_reads_back_the_same() -> None:
    import io
    import zipfile

    c = Contribution("w1", 2, [("a", 1.0, ("b", "c"))], {"blend": np.arange(3, dtype=np.float32)},
                     {"head.item_id": (["a", "b"], np.ones((2, 4), np.float32))}, {"events:0": 7})
    data = c.to_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}  # sent stored, not deflated
    deflated = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as z, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as out:
        for info in z.infolist():
            out.writestr(info.filename, z.read(info.filename))
    for back in (Contribution.from_bytes(data), Contribution.from_bytes(deflated.getvalue())):
        assert (back.worker, back.seq, back.events, back.marks) == (c.worker, c.seq, c.events, c.marks)
        assert back.dense["blend"].tolist() == [0.0, 1.0, 2.0]
        assert back.rows["head.item_id"][0] == ["a", "b"] and back.rows["head.item_id"][1].tolist() == [[1.0] * 4] * 2
