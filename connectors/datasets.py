"""Dataset loaders: MovieLens-100K from the RecBole wheel, GroupLens folders, plain CSV/JSONL event files.

Every loader returns a :class:`Dataset`: catalog items with text for the encoder, and events in the wire
format of the ``events`` topic, sorted by timestamp with ties kept in file order.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learners.types import Item

RECBOLE = "recbole==1.2.1"
ML100K_MEMBER = "recbole/dataset_example/ml-100k/"
ML100K_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user", "ml-100k.kg", "ml-100k.link")
GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western"]


class DatasetError(RuntimeError):
    """A dataset could not be fetched or read; the message names the file and what was expected."""


@dataclass
class Dataset:
    """Items, time-ordered events (wire format) and optional user descriptions."""

    name: str
    items: list[Item]
    events: list[dict[str, Any]]
    users: dict[str, str] = field(default_factory=dict)


def movie_text(title: str, year: str = "", genres: list[str] | None = None) -> str:
    """Item text for a movie.

    >>> movie_text("Toy Story", "1995", ["Animation", "Comedy"])
    'Toy Story (1995). Genres: Animation, Comedy.'
    >>> movie_text("Heat")
    'Heat.'
    """
    head = f"{title} ({year})" if year else title
    gs = [g for g in (genres or []) if g and g != "unknown"]
    return f"{head}. Genres: {', '.join(gs)}." if gs else f"{head}."


def _download_recbole_wheel(dest: Path) -> Path:
    """``pip download --no-deps recbole==1.2.1`` into ``dest``; returns the wheel path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", RECBOLE,
           "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    wheels = list(dest.glob("recbole-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise DatasetError(f"ml-100k: `pip download {RECBOLE}` failed: {tail[0]}")
    return wheels[0]


def fetch_movielens_100k(data_dir: Path) -> Path:
    """Folder with the RecBole ML-100K files, cached under ``data_dir/ml-100k`` (downloaded once)."""
    override = os.environ.get("STREAMREC_ML100K_DIR")
    if override:
        p = Path(override)
        if not (p / "ml-100k.inter").is_file():
            raise DatasetError(f"STREAMREC_ML100K_DIR: {p} has no ml-100k.inter")
        return p
    target = data_dir / "ml-100k"
    if all((target / f).is_file() for f in ML100K_FILES[:3]):
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        wheel = _download_recbole_wheel(Path(tmp))
        out = Path(tmp) / "ml-100k"
        out.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.startswith(ML100K_MEMBER) and not m.endswith("/")]
            if not members:
                raise DatasetError(f"ml-100k: {wheel.name} has no {ML100K_MEMBER}")
            for m in members:
                with zf.open(m) as src, open(out / Path(m).name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    return target


def _rows(path: Path, sep: str, n_fields: int, encoding: str = "utf-8", skip_header: bool = False
          ) -> Iterator[tuple[int, list[str]]]:
    try:
        with open(path, encoding=encoding, newline="") as fh:
            for lineno, line in enumerate(fh, start=1):
                if skip_header and lineno == 1:
                    continue
                line = line.rstrip("\r\n")
                if not line:
                    continue
                parts = line.split(sep)
                if len(parts) < n_fields:
                    raise DatasetError(f"{path.name} line {lineno}: expected {n_fields} fields separated by "
                                       f"{sep!r}, got {len(parts)}")
                yield lineno, parts
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None


def _float(path: Path, lineno: int, name: str, v: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise DatasetError(f"{path.name} line {lineno}: {name} expected a number, got {v!r}") from None


def _events(name: str, rows: list[tuple[float, str, str, float]], event_type: str,
            min_rating: float | None) -> list[dict[str, Any]]:
    """Wire-format events from (ts, user, item, rating) rows in file order; stable sort by ts."""
    out = [
        {"event_id": f"{name}-{r}", "user_id": u, "item_id": i, "event_type": event_type, "ts": ts}
        for r, (ts, u, i, rating) in enumerate(rows)
        if min_rating is None or rating >= min_rating
    ]
    out.sort(key=lambda e: e["ts"])
    return out


def _load_recbole_100k(folder: Path, event_type: str, min_rating: float | None) -> Dataset:
    items = []
    for _, p in _rows(folder / "ml-100k.item", "\t", 4, skip_header=True):
        items.append(Item(p[0], movie_text(p[1], p[2], p[3].split())))
    rows = []
    path = folder / "ml-100k.inter"
    for ln, p in _rows(path, "\t", 4, skip_header=True):
        rows.append((_float(path, ln, "timestamp", p[3]), p[0], p[1], _float(path, ln, "rating", p[2])))
    users = {}
    if (folder / "ml-100k.user").is_file():
        for _, p in _rows(folder / "ml-100k.user", "\t", 4, skip_header=True):
            users[p[0]] = _user_text(p[1], p[2], p[3])
    return Dataset("ml-100k", items, _events("ml-100k", rows, event_type, min_rating), users)


def _user_text(age: str, gender: str, occupation: str) -> str:
    g = {"M": "male", "F": "female"}.get(gender, "")
    return " ".join(x for x in (f"{age}-year-old" if age else "", g, occupation) if x)


_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


def _split_title(title: str) -> tuple[str, str]:
    m = _YEAR.match(title)
    return (m.group(1), m.group(2)) if m else (title, "")


def _load_grouplens_100k(folder: Path, event_type: str, min_rating: float | None) -> Dataset:
    items = []
    for _, p in _rows(folder / "u.item", "|", 24, encoding="latin-1"):
        title, year = _split_title(p[1])
        genres = [g for g, flag in zip(GENRES_100K, p[5:24], strict=True) if flag == "1"]
        items.append(Item(p[0], movie_text(title, year, genres)))
    rows = []
    path = folder / "u.data"
    for ln, p in _rows(path, "\t", 4):
        rows.append((_float(path, ln, "timestamp", p[3]), p[0], p[1], _float(path, ln, "rating", p[2])))
    users = {}
    if (folder / "u.user").is_file():
        for _, p in _rows(folder / "u.user", "|", 4, encoding="latin-1"):
            users[p[0]] = _user_text(p[1], p[2], p[3])
    return Dataset(folder.name, items, _events(folder.name, rows, event_type, min_rating), users)


def _load_grouplens_dat(folder: Path, event_type: str, min_rating: float | None) -> Dataset:
    items = []
    for _, p in _rows(folder / "movies.dat", "::", 3, encoding="latin-1"):
        title, year = _split_title(p[1])
        items.append(Item(p[0], movie_text(title, year, p[2].split("|"))))
    rows = []
    path = folder / "ratings.dat"
    for ln, p in _rows(path, "::", 4):
        rows.append((_float(path, ln, "timestamp", p[3]), p[0], p[1], _float(path, ln, "rating", p[2])))
    return Dataset(folder.name, items, _events(folder.name, rows, event_type, min_rating))


def _csv_dicts(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            yield from enumerate(csv.DictReader(fh), start=2)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None


def _load_grouplens_csv(folder: Path, event_type: str, min_rating: float | None) -> Dataset:
    items = []
    for _, r in _csv_dicts(folder / "movies.csv"):
        title, year = _split_title(r["title"])
        items.append(Item(r["movieId"], movie_text(title, year, r.get("genres", "").split("|"))))
    rows = []
    path = folder / "ratings.csv"
    for ln, r in _csv_dicts(path):
        try:
            rows.append((_float(path, ln, "timestamp", r["timestamp"]), r["userId"], r["movieId"],
                         _float(path, ln, "rating", r["rating"])))
        except KeyError as exc:
            raise DatasetError(f"{path.name} line {ln}: missing column {exc.args[0]}") from None
    return Dataset(folder.name, items, _events(folder.name, rows, event_type, min_rating))


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix == ".jsonl":
        try:
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        raise DatasetError(f"{path.name} line {lineno}: expected one JSON object per line") from None
                    if not isinstance(obj, dict):
                        raise DatasetError(f"{path.name} line {lineno}: expected a JSON object")
                    yield lineno, obj
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None
    elif path.suffix == ".csv":
        yield from _csv_dicts(path)
    else:
        raise DatasetError(f"{path.name}: expected a .csv or .jsonl file")


def load_items_file(path: Path) -> list[Item]:
    """Catalog items from a ``.jsonl``/``.csv`` file with fields ``item_id`` and ``text``."""
    out = []
    for ln, r in _records(path):
        if "item_id" not in r or "text" not in r:
            raise DatasetError(f"{path.name} line {ln}: expected fields item_id and text")
        out.append(Item(str(r["item_id"]), str(r["text"])))
    return out


def _load_event_file(path: Path, event_type: str, min_rating: float | None) -> Dataset:
    rows: list[dict[str, Any]] = []
    for n, (ln, r) in enumerate(_records(path)):
        if "user_id" not in r or "item_id" not in r:
            raise DatasetError(f"{path.name} line {ln}: expected fields user_id and item_id")
        ts_raw = r.get("ts", r.get("timestamp"))
        ts = float(n) if ts_raw in (None, "") else _float(path, ln, "ts", str(ts_raw))
        if min_rating is not None and "rating" in r and _float(path, ln, "rating", str(r["rating"])) < min_rating:
            continue
        rows.append({"event_id": str(r.get("event_id") or f"{path.stem}-{n}"), "user_id": str(r["user_id"]),
                     "item_id": str(r["item_id"]), "event_type": str(r.get("event_type") or event_type), "ts": ts})
    rows.sort(key=lambda e: e["ts"])
    items: list[Item] = []
    for cand in ("items.jsonl", "items.csv"):
        if (path.parent / cand).is_file() and path.name != cand:
            items = load_items_file(path.parent / cand)
            break
    return Dataset(path.stem, items, rows)


def load_dataset(spec: str, data_dir: Path = Path("data"), event_type: str = "click",
                 min_rating: float | None = None) -> Dataset:
    """Load ``ml-100k`` (RecBole copy), a GroupLens folder (100K, 1M/10M ``.dat``, ``latest`` CSV) or a file."""
    if spec == "ml-100k":
        return _load_recbole_100k(fetch_movielens_100k(data_dir), event_type, min_rating)
    p = Path(spec)
    if p.is_file():
        return _load_event_file(p, event_type, min_rating)
    if p.is_dir():
        if (p / "ml-100k.inter").is_file():
            return _load_recbole_100k(p, event_type, min_rating)
        if (p / "u.data").is_file():
            return _load_grouplens_100k(p, event_type, min_rating)
        if (p / "ratings.dat").is_file():
            return _load_grouplens_dat(p, event_type, min_rating)
        if (p / "ratings.csv").is_file():
            return _load_grouplens_csv(p, event_type, min_rating)
        raise DatasetError(f"{p}: expected ml-100k.inter, u.data, ratings.dat or ratings.csv in this folder")
    raise DatasetError(f"dataset: {spec!r} is not 'ml-100k', an existing folder or a .csv/.jsonl file")
