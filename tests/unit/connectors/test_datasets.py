"""Dataset loaders on tiny fixture files of every supported form; no network (the RecBole download is faked)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors import datasets
from connectors.datasets import Dataset, DatasetError, fetch_movielens_100k, load_dataset, load_items_file
from learners.types import Item

WIRE_KEYS = {"event_id", "user_id", "item_id", "event_type", "ts"}

RECBOLE_FILES = {
    "ml-100k.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                     "1\t10\t5\t300\n2\t20\t3\t100\n1\t20\t4\t200\n3\t10\t2\t100\n",
    "ml-100k.item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                    "10\tToy Story\t1995\tAnimation Children's Comedy\n"
                    "20\tLand Before Time III (1995)\tV\t\n"
                    "30\tunkonwn\tunkonwn\tunknown\n",
    "ml-100k.user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                    "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n",
    "ml-100k.kg": "head_id:token\trelation_id:token\ttail_id:token\n",
    "ml-100k.link": "item_id:token\tentity_id:token\n",
}


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMREC_ML100K_DIR", raising=False)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def fake_wheel(dest: Path, files: dict[str, str] = RECBOLE_FILES) -> Path:
    """A stand-in for the recbole wheel: the dataset folder plus unrelated members."""
    wheel = dest / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("recbole/__init__.py", "")
        zf.writestr("recbole/dataset_example/ml-1m/ml-1m.inter", "nope")
        for name, text in files.items():
            zf.writestr(f"recbole/dataset_example/ml-100k/{name}", text)
    return wheel


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the pip download with :func:`fake_wheel`; the list records each call's destination."""
    calls: list[Path] = []

    def fake(dest: Path) -> Path:
        calls.append(dest)
        return fake_wheel(dest)

    monkeypatch.setattr(datasets, "_download_recbole_wheel", fake)
    return calls


def ids(ds: Dataset) -> list[str]:
    return [e["event_id"] for e in ds.events]


# --- ml-100k from the RecBole wheel ---------------------------------------------------------------------------


def test_fetch_extracts_only_the_ml100k_folder_and_caches_it(tmp_path: Path, downloads: list[Path]) -> None:
    folder = fetch_movielens_100k(tmp_path)
    assert folder == tmp_path / "ml-100k"
    assert sorted(p.name for p in folder.iterdir()) == sorted(RECBOLE_FILES)
    assert (folder / "ml-100k.inter").read_text() == RECBOLE_FILES["ml-100k.inter"]
    assert [p.name for p in tmp_path.iterdir()] == ["ml-100k"]  # the staging folder is gone
    assert fetch_movielens_100k(tmp_path) == folder
    assert len(downloads) == 1


def test_fetch_replaces_an_incomplete_cache(tmp_path: Path, downloads: list[Path]) -> None:
    write(tmp_path / "ml-100k" / "ml-100k.inter", "partial")
    folder = fetch_movielens_100k(tmp_path)
    assert len(downloads) == 1
    assert (folder / "ml-100k.inter").read_text() == RECBOLE_FILES["ml-100k.inter"]


def test_fetch_rejects_a_wheel_without_the_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "_download_recbole_wheel", lambda dest: fake_wheel(dest, {}))
    with pytest.raises(DatasetError, match=r"recbole-1\.2\.1-py3-none-any\.whl to hold .*ml-100k\.inter"):
        fetch_movielens_100k(tmp_path)
    assert not (tmp_path / "ml-100k").exists()


def test_pip_failure_is_a_dataset_error_naming_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for recbole==1.2.1\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(DatasetError, match=r"pip download recbole==1\.2\.1` failed \(exit code 1\): ERROR: No matching"):
        fetch_movielens_100k(tmp_path)
    assert seen[0][1:4] == ["-m", "pip", "download"] and "recbole==1.2.1" in seen[0] and seen[0][-2] == "-d"
    assert not (tmp_path / "ml-100k").exists()


def test_env_var_names_a_folder_and_skips_the_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "mine"
    for name, text in RECBOLE_FILES.items():
        write(own / name, text)
    monkeypatch.setenv("STREAMREC_ML100K_DIR", str(own))
    monkeypatch.setattr(datasets, "_download_recbole_wheel", lambda dest: pytest.fail("downloaded"))
    assert fetch_movielens_100k(tmp_path / "cache") == own
    assert len(load_dataset("ml-100k", tmp_path / "cache").events) == 4
    monkeypatch.setenv("STREAMREC_ML100K_DIR", str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="STREAMREC_ML100K_DIR: expected .*missing to hold ml-100k.inter"):
        fetch_movielens_100k(tmp_path / "cache")


def test_recbole_dataset(tmp_path: Path, downloads: list[Path]) -> None:
    ds = load_dataset("ml-100k", tmp_path)
    assert ds.name == "ml-100k"
    assert all(set(e) == WIRE_KEYS for e in ds.events)
    assert ids(ds) == ["ml-100k-1", "ml-100k-3", "ml-100k-2", "ml-100k-0"]  # ties at ts=100 keep file order
    assert ds.events[0] == {"event_id": "ml-100k-1", "user_id": "2", "item_id": "20", "event_type": "click", "ts": 100.0}
    assert ds.items == [
        Item("10", "Toy Story (1995). Genres: Animation, Children's, Comedy."),
        Item("20", "Land Before Time III (1995)."),  # year "V" is no year: the one in the title is used
        Item("30", "unkonwn."),
    ]
    assert ds.users == {"1": "24-year-old male technician", "2": "53-year-old female"}


def test_recbole_attributes_from_the_knowledge_graph(tmp_path: Path) -> None:
    """Triples either way round (film -> value, value -> film) give the linked film's attributes, each value once,
    keys in KG_ORDER (actors last); sequels, unlinked films and unknown relations give nothing."""
    for name, text in RECBOLE_FILES.items():
        write(tmp_path / "rb" / name, text)
    write(tmp_path / "rb" / "ml-100k.link", "item_id:token\tentity_id:token\n10\tm.toy\n20\tm.land\n")
    write(tmp_path / "rb" / "ml-100k.kg", "head_id:token\trelation_id:token\ttail_id:token\n"
          "m.toy\tfilm.film.actor\tm.hanks\n"
          "m.lasseter\tfilm.director.film\tm.toy\n"
          "m.toy\tfilm.film.directed_by\tm.lasseter\n"
          "m.toy\tfilm.film.sequel\tm.toy2\n"
          "m.comedy\tfilm.film_genre.films_in_this_genre\tm.toy\n"
          "m.other\tfilm.film.actor\tm.hanks\n"
          "m.land\tfilm.film.something_new\tm.x\n")
    assert datasets.recbole_attributes(tmp_path / "rb") == {
        "10": {"director": ["m.lasseter"], "genre": ["m.comedy"], "actor": ["m.hanks"]}}
    ds = load_dataset(str(tmp_path / "rb"))
    assert ds.items[0].attributes == ("director=m.lasseter", "genre=m.comedy", "actor=m.hanks")
    assert ds.items[1].attributes == ()
    catalog = datasets.load_catalog(str(tmp_path / "rb"))
    assert catalog[0].attributes == {"director": ["m.lasseter"], "genre": ["m.comedy"], "actor": ["m.hanks"]}
    (tmp_path / "rb" / "ml-100k.kg").unlink()
    assert datasets.recbole_attributes(tmp_path / "rb") == {}


def test_recbole_min_rating_and_event_type(tmp_path: Path, downloads: list[Path]) -> None:
    ds = load_dataset("ml-100k", tmp_path, event_type="rate", min_rating=4)
    assert ids(ds) == ["ml-100k-2", "ml-100k-0"]  # ids keep the file row of the kept ratings
    assert {e["event_type"] for e in ds.events} == {"rate"}


def test_recbole_header_without_a_column(tmp_path: Path) -> None:
    write(tmp_path / "rb" / "ml-100k.inter", "user_id:token\titem_id:token\trating:float\n1\t2\t3\n")
    write(tmp_path / "rb" / "ml-100k.item", RECBOLE_FILES["ml-100k.item"])
    with pytest.raises(DatasetError, match="ml-100k.inter line 1: expected header columns .* missing timestamp"):
        load_dataset(str(tmp_path / "rb"))


# --- GroupLens folders ----------------------------------------------------------------------------------------


def flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(19))


@pytest.fixture
def ml100k_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml-100k-grouplens"
    write(d / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t881250949\n22\t377\t1\t878887116\n")
    write(d / "u.item", f"242|Kolya (1996)|24-Jan-1997||http://x|{flags(5)}\n"
                        f"302|Misérables, Les (1995)|01-Jan-1995||http://y|{flags(8, 12)}\n"
                        f"377|unknown||||{flags(0)}\n", encoding="latin-1")
    write(d / "u.user", "196|49|M|writer|55105\n186|39|F|none|00000\n")
    return d


def test_grouplens_100k(ml100k_dir: Path) -> None:
    ds = load_dataset(str(ml100k_dir))
    assert ds.name == "ml-100k-grouplens"
    assert ids(ds) == ["ml-100k-grouplens-2", "ml-100k-grouplens-0", "ml-100k-grouplens-1"]
    assert [i.text for i in ds.items] == ["Kolya (1996). Genres: Comedy.", "Misérables, Les (1995). Genres: Drama, Musical.",
                                          "unknown."]
    assert ds.users == {"196": "49-year-old male writer", "186": "39-year-old female"}
    assert [e["item_id"] for e in load_dataset(str(ml100k_dir), min_rating=3).events] == ["242", "302"]


def test_grouplens_100k_bad_row_names_file_and_line(ml100k_dir: Path) -> None:
    write(ml100k_dir / "u.data", "196\t242\t3\t881250949\n\n186\t302\t3\n")
    with pytest.raises(DatasetError, match=r"^u\.data line 3: expected 4 fields separated by '\\t', got 3$"):
        load_dataset(str(ml100k_dir))
    write(ml100k_dir / "u.data", "196\t242\t3\t881250949\n186\t302\tthree\t1\n")
    with pytest.raises(DatasetError, match=r"^u\.data line 2: rating: expected a number, got 'three'$"):
        load_dataset(str(ml100k_dir))


@pytest.fixture
def ml1m_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml-1m"
    write(d / "ratings.dat", "1::1193::5::978300760\n2::661::3::978300760\n1::914::2::978298000\n")
    write(d / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                            "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
                            "914::Crème (no year)::(no genres listed)\n", encoding="latin-1")
    write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    return d


def test_grouplens_dat(ml1m_dir: Path) -> None:
    ds = load_dataset(str(ml1m_dir), event_type="rating")
    assert ids(ds) == ["ml-1m-2", "ml-1m-0", "ml-1m-1"]
    assert ds.events[0]["event_type"] == "rating"
    assert [i.text for i in ds.items] == ["One Flew Over the Cuckoo's Nest (1975). Genres: Drama.",
                                          "James and the Giant Peach (1996). Genres: Animation, Children's, Musical.",
                                          "Crème (no year)."]
    assert ds.users == {"1": "under-18 female K-12 student", "2": "56-or-older male self-employed"}


def test_grouplens_dat_users_are_optional(ml1m_dir: Path) -> None:
    (ml1m_dir / "users.dat").unlink()
    assert load_dataset(str(ml1m_dir)).users == {}


def test_grouplens_dat_bad_row(ml1m_dir: Path) -> None:
    write(ml1m_dir / "ratings.dat", "1::1193::5::978300760\n" * 16 + "1::1193::5\n")
    with pytest.raises(DatasetError, match="^ratings.dat line 17: expected 4 fields separated by '::', got 3$"):
        load_dataset(str(ml1m_dir))


@pytest.fixture
def latest_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml-latest-small"
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n2,1,2.5,964981247\n")
    write(d / "movies.csv", 'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
                            '3,"American President, The (1995)",Comedy|Drama|Romance\n4,Untitled,(no genres listed)\n')
    return d


def test_grouplens_latest_csv(latest_dir: Path) -> None:
    ds = load_dataset(str(latest_dir), min_rating=3.0)
    assert ids(ds) == ["ml-latest-small-1", "ml-latest-small-0"]
    assert [i.text for i in ds.items] == ["Toy Story (1995). Genres: Adventure, Animation.",
                                          "American President, The (1995). Genres: Comedy, Drama, Romance.", "Untitled."]
    assert ds.users == {}


def test_grouplens_latest_csv_errors(latest_dir: Path) -> None:
    write(latest_dir / "ratings.csv", "userId,movieId,rating\n1,1,4.0\n")
    with pytest.raises(DatasetError, match="^ratings.csv line 1: expected a header .* missing timestamp$"):
        load_dataset(str(latest_dir))
    write(latest_dir / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,5\n1,1,4.0\n")
    with pytest.raises(DatasetError, match="^ratings.csv line 3: expected 4 comma-separated fields, got 3$"):
        load_dataset(str(latest_dir))


# --- plain event files ----------------------------------------------------------------------------------------


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_events_jsonl_with_sibling_items(tmp_path: Path) -> None:
    write(tmp_path / "events.jsonl", jsonl([
        {"event_id": "a", "user_id": "u1", "item_id": "i1", "event_type": "view", "ts": 5},
        {"user_id": "u2", "item_id": "i2", "ts": 1.5},
        {"user_id": 7, "item_id": "i1"},  # no ts: its row number
        {"user_id": "u1", "item_id": "i2", "ts": 1.5},
    ]) + "\n")
    write(tmp_path / "items.jsonl", jsonl([{"item_id": "i1", "text": "one"}, {"item_id": "i2", "text": "two"}]))
    ds = load_dataset(str(tmp_path / "events.jsonl"), event_type="like")
    assert ds.name == "events"
    assert ds.events == [  # ts ties (1.5) keep file order; the row without ts gets its row number (2)
        {"event_id": "events-1", "user_id": "u2", "item_id": "i2", "event_type": "like", "ts": 1.5},
        {"event_id": "events-3", "user_id": "u1", "item_id": "i2", "event_type": "like", "ts": 1.5},
        {"event_id": "events-2", "user_id": "7", "item_id": "i1", "event_type": "like", "ts": 2.0},
        {"event_id": "a", "user_id": "u1", "item_id": "i1", "event_type": "view", "ts": 5.0},
    ]
    assert ds.items == [Item("i1", "one"), Item("i2", "two")]


def test_events_csv_with_sibling_items_csv_and_ratings(tmp_path: Path) -> None:
    write(tmp_path / "log.csv", "user_id,item_id,timestamp,rating\nu1,i1,20,5\nu2,i2,10,1\nu3,i1,,4\n")
    write(tmp_path / "items.csv", 'item_id,text\ni1,"Hello, world"\n')
    ds = load_dataset(str(tmp_path / "log.csv"), min_rating=3)
    assert ds.events == [
        {"event_id": "log-2", "user_id": "u3", "item_id": "i1", "event_type": "click", "ts": 2.0},
        {"event_id": "log-0", "user_id": "u1", "item_id": "i1", "event_type": "click", "ts": 20.0},
    ]
    assert ds.items == [Item("i1", "Hello, world")]
    assert load_dataset(str(tmp_path / "log.csv")).name == "log"


def test_events_file_without_items(tmp_path: Path) -> None:
    ds = load_dataset(str(write(tmp_path / "e.csv", "user_id,item_id\nu,i\n")))
    assert ds.items == [] and ds.events[0]["event_id"] == "e-0" and ds.events[0]["ts"] == 0.0


@pytest.mark.parametrize(("name", "text", "message"), [
    ("e.jsonl", '{"user_id": "u", "item_id": "i"}\n{"user_id":\n', r"^e\.jsonl line 2: expected one JSON object per line$"),
    ("e.jsonl", '{"user_id": "u", "item_id": "i"}\n[1]\n', r"^e\.jsonl line 2: expected a JSON object, got list$"),
    ("e.jsonl", '\n{"user_id": "u"}\n', r"^e\.jsonl line 2: expected fields user_id, item_id, missing item_id$"),
    ("e.jsonl", '{"user_id": "", "item_id": "i"}\n', r"^e\.jsonl line 1: user_id: expected a non-empty id, got ''$"),
    ("e.jsonl", '{"user_id": "u", "item_id": "i", "ts": "soon"}\n', r"^e\.jsonl line 1: ts: expected a number, got 'soon'$"),
    ("e.jsonl", '{"user_id": "u", "item_id": "i", "ts": NaN}\n', r"^e\.jsonl line 1: ts: expected a number, got nan$"),
    ("e.csv", "user,item_id\nu,i\n", r"^e\.csv line 1: expected a header with columns user_id, item_id, missing user_id$"),
    ("e.txt", "user_id,item_id\n", r"^e\.txt: expected a \.csv or \.jsonl file$"),
])
def test_event_file_errors_name_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(write(tmp_path / name, text)))


def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_bytes(b'{"user_id": "u", "item_id": "i"}\n{"user_id": "\xff", "item_id": "i"}\n')
    with pytest.raises(DatasetError, match=r"^e\.jsonl line 2: expected utf-8 text$"):
        load_dataset(str(tmp_path / "e.jsonl"))


def test_items_file_needs_item_id_and_text(tmp_path: Path) -> None:
    assert load_items_file(write(tmp_path / "items.jsonl", '{"item_id": 3, "text": "x"}\n')) == [Item("3", "x")]
    with pytest.raises(DatasetError, match=r"^items\.csv line 1: expected a header with columns item_id, text"):
        load_items_file(write(tmp_path / "items.csv", "item_id,title\n1,x\n"))


# --- what load_dataset accepts --------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: str(p / "nowhere"), "expected 'ml-100k', an existing folder or a .csv/.jsonl file"),
    (lambda p: str(p), "expected ml-100k.inter, u.data, ratings.dat or ratings.csv in this folder"),
])
def test_unknown_spec(tmp_path: Path, make: Callable[[Path], str], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset(make(tmp_path))


def test_missing_companion_file_is_named(ml1m_dir: Path) -> None:
    (ml1m_dir / "movies.dat").unlink()
    with pytest.raises(DatasetError, match=r"movies\.dat: file not found"):
        load_dataset(str(ml1m_dir))
