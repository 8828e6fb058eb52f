"""Checkpoints (stream.checkpoint): arrays written raw, the learner back as it was, old plain pickles still load."""

from __future__ import annotations

import json
import logging
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from learners.adapter import AdapterRecommender
from learners.attributes import AttributeConfig
from learners.cold import ColdConfig
from learners.encoder import HashingEncoder
from learners.exploration import ExplorationConfig
from learners.retrieval import RetrievalConfig
from learners.training import TrainingConfig
from learners.types import ByteStream, Interaction, Item, Query
from stream.checkpoint import MAGIC, MAGIC_PICKLED, CheckpointStore
from stream.statefile import STREAM_CHUNK, StateFileError


def trained(retrieval: RetrievalConfig) -> AdapterRecommender:
    m = AdapterRecommender(HashingEncoder(32), dim=16, seq_len=6, device="cpu", text_dims=0,
                           training=TrainingConfig(early_events=0), retrieval=retrieval)
    m.add_items([Item(f"i{j}", f"topic{j % 5} word{j % 7} thing{j}") for j in range(120)])
    rng = np.random.default_rng(0)
    for s in range(4):
        xs = [Interaction(f"u{s}-{j}", f"i{int(rng.integers(120))}") for j in range(50)]
        m.learn_many(xs, [[f"i{int(x)}" for x in rng.integers(0, 120, size=4)] for _ in xs])
    m.wait_for_index()
    return m


QS = [Query(f"q{j}", (f"i{j}", f"i{j + 5}"), frozenset({f"i{j}", f"i{j + 5}"})) for j in range(20)]
MORE = [Interaction(f"v{j}", f"i{(7 * j) % 120}") for j in range(40)], [[f"i{j % 120}", f"i{(j + 3) % 120}"]
                                                                        for j in range(40)]


@pytest.mark.parametrize("retrieval", [RetrievalConfig(), RetrievalConfig(exact_max_items=0,
                                                                          refresh_in_background=False)],
                         ids=["exact", "two-stage"])
def test_a_saved_learner_recommends_and_learns_on_as_the_original(retrieval: RetrievalConfig,
                                                                  tmp_path: Path) -> None:
    m = trained(retrieval)
    path = CheckpointStore(tmp_path).save(m, version=7, offsets={("events", 0): 11})
    assert path.read_bytes().startswith(MAGIC)
    back = CheckpointStore(tmp_path).load_latest()
    assert back is not None and back.version == 7 and back.offsets == {("events", 0): 11}
    m2 = back.learner
    m2.attach_encoder(HashingEncoder(32))
    assert m2.recommend_many(QS, k=10) == m.recommend_many(QS, k=10)
    for learner in (m, m2):  # the optimizer still holds the module's own parameters: the same step follows
        learner.learn_many(*MORE)
    assert m2.recommend_many(QS, k=10) == m.recommend_many(QS, k=10)
    assert m2.model_version == m.model_version


def test_a_learner_with_every_part_on_comes_back_whole(tmp_path: Path) -> None:
    """Attributes, cold places, exploration (its generator mid-stream), feedback, a sharing tracker with
    contributions pending and intents cached: each part's state goes through the JSON document and its arrays."""
    m = AdapterRecommender(HashingEncoder(32), dim=8, seq_len=6, device="cpu", text_dims=0, seed=2,
                           training=TrainingConfig(early_events=0), attributes=AttributeConfig(slots=2),
                           cold=ColdConfig(gate=0.0, slots=2), exploration=ExplorationConfig("epsilon", epsilon=0.5))
    m.add_items([Item(f"i{j}", f"topic{j % 5} thing{j}", (f"brand=b{j % 3}", f"maker=m{j % 4}")) for j in range(60)])
    m.start_sharing("a")
    rng = np.random.default_rng(1)
    for _ in range(3):
        xs = [Interaction(f"u{int(u)}", f"i{int(u) % 60}") for u in rng.integers(0, 40, size=30)]
        m.learn_many(xs, [[f"i{int(j)}" for j in rng.integers(0, 60, size=3)] for _ in xs])
    m.observe_feedback([[i for i, _ in r] for r in m.recommend_many(QS[:4], k=5)], [("i3", 0)])
    qs = [Query("q", ("i1",), frozenset({"i1"}), "topic2 things")] + QS[:5]
    CheckpointStore(tmp_path).save(m, version=m.model_version)
    got = CheckpointStore(tmp_path).load_latest()
    assert got is not None
    back = got.learner
    back.attach_encoder(HashingEncoder(32))
    assert back.recommend_many(qs, k=6) == m.recommend_many(qs, k=6)  # the exploration draws too
    assert back.last_explored == m.last_explored and back.feedback == m.feedback
    assert back.attribute_values == m.attribute_values and back.cold_places == m.cold_places
    mine, theirs = m.contribution(), back.contribution()
    assert mine is not None and theirs is not None and mine.to_bytes() == theirs.to_bytes()


def test_tensors_keep_their_kind_and_sharing(tmp_path: Path) -> None:
    w = torch.nn.Parameter(torch.arange(6.0).view(2, 3))
    payload = {"w": w, "again": w, "frozen": torch.ones(3, dtype=torch.int64), "grad": torch.zeros(2, requires_grad=True),
               "array": np.arange(5, dtype=np.int32), "half": torch.ones(2, dtype=torch.bfloat16)}
    CheckpointStore(tmp_path).save(payload, version=1)
    got = CheckpointStore(tmp_path).load_latest()
    assert got is not None
    back = got.learner
    assert isinstance(back["w"], torch.nn.Parameter) and back["w"] is back["again"] and back["w"].requires_grad
    assert torch.equal(back["w"], w) and back["frozen"].dtype == torch.int64 and back["grad"].requires_grad
    assert back["array"].tolist() == [0, 1, 2, 3, 4] and back["half"].dtype == torch.bfloat16


def test_an_old_plain_pickle_still_loads_and_a_truncated_file_is_skipped_loudly(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = CheckpointStore(tmp_path)
    with open(tmp_path / "model-1.pkl", "wb") as fh:
        pickle.dump({"learner": {"old": True}, "version": 1, "offsets": {}}, fh)
    store.save({"new": torch.ones(1000)}, version=2)
    data = (tmp_path / "model-2.pkl").read_bytes()
    (tmp_path / "model-2.pkl").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.ERROR, logger="streamrec.checkpoint"):
        got = store.load_latest()
    assert got is not None and got.version == 1 and got.learner == {"old": True}
    assert "model-2.pkl cannot be read" in caplog.text


def test_a_file_of_the_pickled_layout_still_loads(tmp_path: Path) -> None:
    """The layout of the version before (arrays, then a pickle instead of the JSON document) is still read."""
    body = pickle.dumps({"learner": {"older": [1, 2]}, "version": 4, "offsets": {("events", 1): 3}}, protocol=5)
    (tmp_path / "model-4.pkl").write_bytes(MAGIC_PICKLED + body + struct.pack("<QQ", len(body), 0))
    got = CheckpointStore(tmp_path).load_latest()
    assert got is not None and got.learner == {"older": [1, 2]} and got.offsets == {("events", 1): 3}


def document(path: Path) -> dict:
    """The JSON document of a checkpoint file."""
    data = path.read_bytes()
    body_len, n = struct.unpack("<QQ", data[-16:])
    end = len(data) - 16 - 8 * n
    return json.loads(data[end - body_len : end])


def test_a_checkpoint_is_config_and_arrays_not_a_pickle(tmp_path: Path) -> None:
    """The learner's structure is a JSON document in which each part's config reads as its fields; no pickle."""
    m = trained(RetrievalConfig())
    path = CheckpointStore(tmp_path).save(m, version=1)
    doc = document(path)
    learner = doc["__dict__"]["learner"]
    assert learner["__object__"] == "learners.adapter:AdapterRecommender"
    fields = learner["state"]["__dict__"]
    assert fields["training"]["__object__"] == "learners.training:TrainingConfig"
    assert fields["training"]["state"]["__dict__"]["early_events"] == 0
    assert fields["_emb"]["dtype"] == "float32" and fields["_emb"]["shape"][1] == 32


def test_a_file_naming_a_class_outside_the_allowed_ones_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A checkpoint cannot make the worker build anything but the learner's parts and torch's modules."""
    store = CheckpointStore(tmp_path)
    store.save({"fine": 1}, version=1)
    store.save({"x": 1}, version=2)
    path = tmp_path / "model-2.pkl"
    data = path.read_bytes()
    evil = json.dumps({"__dict__": {"learner": {"__object__": "subprocess:Popen", "__id__": 0, "state": None},
                                    "version": 2}}).encode()
    path.write_bytes(MAGIC + evil + struct.pack("<QQ", len(evil), 0))
    assert data != path.read_bytes()
    with caplog.at_level(logging.ERROR, logger="streamrec.checkpoint"):
        got = store.load_latest()
    assert got is not None and got.version == 1
    assert "subprocess:Popen, which is not among the allowed classes" in caplog.text
    with pytest.raises(StateFileError, match="cannot be saved"):
        store.save({"learner": Path("x")}, version=3)  # nor can the worker write one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-1.pkl", "model-2.pkl"]  # no temp file left


@pytest.mark.parametrize("entry", [{"__ndarray__": 5, "__id__": 0, "dtype": "<f4", "shape": [1]},
                                   {"__chunks__": 0, "count": 9}, {"__bytes__": -1}, {"__strs__": "0", "ends": 0}],
                         ids=["ndarray", "chunks", "bytes", "strs"])
def test_a_document_naming_an_array_the_file_lacks_is_skipped_loudly(
        entry: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A damaged document (an array number past the file's arrays) is an error naming why; the older file loads."""
    store = CheckpointStore(tmp_path)
    store.save({"fine": 1}, version=1)
    body = json.dumps({"__dict__": {"learner": entry, "version": 2}}).encode()
    (tmp_path / "model-2.pkl").write_bytes(MAGIC + b"abcd" + body + struct.pack("<QQQ", 4, len(body), 1))
    with caplog.at_level(logging.ERROR, logger="streamrec.checkpoint"):
        got = store.load_latest()
    assert got is not None and got.version == 1
    assert "model-2.pkl cannot be read (StateFileError: checkpoint: the document names array" in caplog.text


def test_long_id_lists_and_maps_are_arrays_and_come_back_equal(tmp_path: Path) -> None:
    """The catalog's item ids (any text, a lone surrogate included) and their rows go out as arrays, not as a
    JSON entry per item; short ones, mixed ones and ints past 64 bits stay entries; an empty matrix saves too."""
    ids = [f"item{j}" for j in range(200)] + ["", "é ü 漢字", "\ud800 lone", "new\nline", "\x00"]
    payload = {"ids": ids, "rows": {i: n for n, i in enumerate(ids)}, "short": ["a", "b"],
               "mixed": [*ids[:70], 3], "huge": {f"k{j}": 2**70 + j for j in range(70)},
               "empty": np.zeros((0, 4), dtype=np.float32), "ints": {f"k{j}": j for j in range(3)}}
    path = CheckpointStore(tmp_path).save(payload, version=1)
    fields = document(path)["__dict__"]["learner"]["__dict__"]
    assert set(fields["ids"]) == {"__strs__", "ends"} and set(fields["rows"]) == {"__strints__", "values"}
    assert fields["short"] == ["a", "b"] and isinstance(fields["mixed"], list) and "__dict__" in fields["huge"]
    got = CheckpointStore(tmp_path).load_latest()
    assert got is not None
    back = got.learner
    assert back["ids"] == ids and back["rows"] == payload["rows"] and back["mixed"] == payload["mixed"]
    assert back["huge"] == payload["huge"] and back["short"] == ["a", "b"] and back["ints"] == payload["ints"]
    assert back["empty"].shape == (0, 4)


def test_a_byte_stream_is_written_as_its_chunks_and_read_back_as_one_array(tmp_path: Path) -> None:
    """Small chunks are joined into arrays of up to STREAM_CHUNK bytes, a large one is an array of its own, an empty
    stream is an empty array; the bytes come back whole and in order."""
    big = bytes(range(256)) * (STREAM_CHUNK // 256 + 3)
    small = [bytes([j]) * (j + 1) for j in range(40)]
    pieces = [*small, big, b"tail"]
    payload = {"s": ByteStream(lambda emit: [emit(p) for p in pieces]), "none": ByteStream(lambda emit: None)}
    path = CheckpointStore(tmp_path).save(payload, version=1)
    fields = document(path)["__dict__"]["learner"]["__dict__"]
    assert fields["s"]["count"] == 3 and fields["none"]["count"] == 0  # the small ones, the big one, the tail
    got = CheckpointStore(tmp_path).load_latest()
    assert got is not None
    assert got.learner["s"].dtype == np.uint8 and got.learner["s"].tobytes() == b"".join(pieces)
    assert got.learner["none"].tobytes() == b""


def test_an_unsaveable_entry_is_named_by_its_path(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match=r"root\.learner\.parts\[2\]\[\('a', 1\)\]: a pathlib"):
        CheckpointStore(tmp_path).save({"parts": [0, 1, {("a", 1): Path("x")}]}, version=1)


def test_a_written_checkpoint_is_not_loaded_before_its_commit(tmp_path: Path) -> None:
    """The worker releases the model after write() and syncs the file after: until commit() the older
    checkpoint is the latest, and a failed sync leaves no temporary file."""
    store = CheckpointStore(tmp_path, keep=1)
    store.save({"v": 1}, version=1)
    written = store.write({"v": 2}, version=2)
    got = store.load_latest()
    assert got is not None and got.version == 1
    assert written.commit() == tmp_path / "model-2.pkl"
    got = store.load_latest()
    assert got is not None and got.learner == {"v": 2} and [p.name for p in tmp_path.iterdir()] == ["model-2.pkl"]
    lost = store.write({"v": 3}, version=3)
    lost.tmp.unlink()  # the sync cannot open it: it fails loudly, and nothing is put in place
    with pytest.raises(FileNotFoundError):
        lost.commit()
    assert [p.name for p in tmp_path.iterdir()] == ["model-2.pkl"]


def test_the_worker_releases_the_model_while_the_checkpoint_syncs(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A learning step (which takes the model lock) runs while the checkpoint's file is synced to disk."""
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from stream import checkpoint
    from stream.worker import checkpoint_saver

    syncing, release = threading.Event(), threading.Event()
    real_fsync = checkpoint.os.fsync

    def slow_fsync(fd: int) -> None:
        syncing.set()
        assert release.wait(10), "the learning step never ran while the file was synced"
        real_fsync(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", slow_fsync)
    learner = AdapterRecommender(HashingEncoder(32), dim=8, seq_len=4, device="cpu", text_dims=0)
    learner.add_items([Item(f"i{j}", f"thing{j}") for j in range(10)])
    from stream.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    sr = SimpleNamespace(learner=learner, sharing=None, model_lock=asyncio.Lock(), metrics=metrics,
                         processor=SimpleNamespace(learned={("events", 0): 9}), learning_thread=ThreadPoolExecutor(1))
    save = checkpoint_saver(CheckpointStore(tmp_path), ())

    async def learn_meanwhile() -> None:
        await asyncio.get_running_loop().run_in_executor(None, syncing.wait, 10)
        async with sr.model_lock:  # as learn_off_the_loop
            release.set()

    async def both() -> None:
        await asyncio.gather(save(sr, True), learn_meanwhile())

    with sr.learning_thread:
        asyncio.run(both())
    got = CheckpointStore(tmp_path).load_latest()
    assert got is not None and got.version == learner.model_version and got.offsets == {("events", 0): 9}
    for phase in ("write", "sync"):  # each phase timed once
        assert metrics.registry.get_sample_value("streamrec_checkpoint_seconds_count", {"phase": phase}) == 1


def test_thompson_posterior_comes_back_whole(tmp_path: Path) -> None:
    """The click posterior (its precision matrix and the clicks' sum) goes through the checkpoint: the restored
    learner draws the same lists."""
    m = AdapterRecommender(HashingEncoder(32), dim=8, seq_len=6, device="cpu", seed=3,
                           training=TrainingConfig(early_events=0),
                           exploration=ExplorationConfig("thompson", places=3, bonus=5.0))
    m.add_items([Item(f"i{j}", f"topic{j % 5} thing{j}") for j in range(40)])
    m.learn_many([Interaction(f"u{j}", f"i{j % 40}") for j in range(30)], [[f"i{(j * 7) % 40}"] for j in range(30)])
    shown = [[i for i, _ in r] for r in m.recommend_many(QS[:4], k=5)]
    m.observe_feedback(shown, [(shown[0][1], 1)], [q.history for q in QS[:4]], [QS[0].history])
    CheckpointStore(tmp_path).save(m, version=m.model_version)
    got = CheckpointStore(tmp_path).load_latest()
    assert got is not None
    back = got.learner
    back.attach_encoder(HashingEncoder(32))
    assert m._posterior is not None and back._posterior is not None  # noqa: SLF001
    assert np.array_equal(back._posterior.precision, m._posterior.precision)  # noqa: SLF001
    assert back.recommend_many(QS, k=6) == m.recommend_many(QS, k=6) and back.last_explored == m.last_explored


def test_when_each_item_arrived_comes_back(tmp_path: Path) -> None:
    """``exploration.fresh_events`` counts from each item's arrival: a restored learner keeps it, so a restart
    does not make the whole catalog new again."""
    m = AdapterRecommender(HashingEncoder(32), dim=8, seq_len=6, device="cpu", seed=3,
                           training=TrainingConfig(early_events=0),
                           exploration=ExplorationConfig("ucb", places=2, bonus=50.0, position=0, fresh_events=40))
    m.add_items([Item(f"i{j}", f"topic{j % 5} thing{j}") for j in range(40)])
    m.learn_many([Interaction(f"u{j}", f"i{j % 40}") for j in range(50)], [[f"i{(j * 7) % 40}"] for j in range(50)])
    m.add_items([Item(f"new{j}", f"topic{j % 5} novel{j}") for j in range(3)])
    CheckpointStore(tmp_path).save(m, version=m.model_version)
    got = CheckpointStore(tmp_path).load_latest()
    assert got is not None
    back = got.learner
    back.attach_encoder(HashingEncoder(32))
    assert back._arrival().tolist() == [0] * 40 + [50] * 3  # noqa: SLF001
    assert back.recommend_many(QS, k=6) == m.recommend_many(QS, k=6) and back.last_explored == m.last_explored
