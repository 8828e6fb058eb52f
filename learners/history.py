"""Per-user behaviour state: a bounded recent sequence and a bounded seen set, shared by worker and evaluator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class UserState:
    """A user's recent items (oldest first, repeats kept) and the items they already have (insertion order).

    Both are bounded: ``seq`` to ``seq_len`` items, ``seen`` to ``seen_max`` (oldest forgotten first).
    ``n`` counts every interaction ever appended; ``ids`` holds the last event ids (for de-duplication, bounded
    by ``ids_max``) and ``offs`` the input offset each of them was read at (-1: unknown), so a redelivery of the
    same message can be told from a producer sending an id twice. The dict form is what the worker stores in
    RocksDB.

    >>> s = UserState()
    >>> for i in ["a", "b", "a", "c"]:
    ...     s.append(i, seq_len=3, seen_max=2)
    >>> s.seq, s.seen, s.n
    (['b', 'a', 'c'], ['a', 'c'], 4)
    >>> UserState.from_dict(s.to_dict()) == s
    True
    """

    seq: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    n: int = 0
    ids: list[str] = field(default_factory=list)
    offs: list[int] = field(default_factory=list)
    shown: list[list[Any]] = field(default_factory=list)  # the last lists sent: [rec_id, [items], [explored places]]

    def has_event(self, event_id: str) -> bool:
        """True when ``event_id`` is among the last remembered event ids of this user."""
        return event_id in self.ids

    def append(self, item_id: str, seq_len: int, seen_max: int, event_id: str | None = None,
               ids_max: int = 128, offset: int | None = None) -> None:
        """Record one interaction with ``item_id`` (and remember ``event_id``, read at input ``offset``)."""
        if event_id is not None and ids_max > 0:
            self.ids.append(event_id)
            self.offs.append(-1 if offset is None else offset)
            if len(self.ids) > ids_max:
                del self.ids[: len(self.ids) - ids_max]
                del self.offs[: len(self.offs) - ids_max]
        self.seq.append(item_id)
        if len(self.seq) > seq_len:
            del self.seq[: len(self.seq) - seq_len]
        if item_id in self.seen:
            self.seen.remove(item_id)
        self.seen.append(item_id)
        if len(self.seen) > seen_max:
            del self.seen[: len(self.seen) - seen_max]
        self.n += 1

    def later_than(self, event_id: str, offset: int | None) -> int | None:
        """How many interactions were appended after ``event_id`` read at ``offset`` (None: not recorded so).

        >>> s = UserState()
        >>> for k, item in enumerate("abc"):
        ...     s.append(item, seq_len=5, seen_max=5, event_id=f"e{k}", offset=100 + k)
        >>> s.later_than("e0", 100), s.later_than("e0", 7), s.history_before(2), s.history_before(0)
        (2, None, (), ('a', 'b'))
        """
        if offset is None or offset < 0:
            return None
        for k in range(len(self.ids) - 1, -1, -1):
            if self.ids[k] == event_id and self.offs[k] == offset:
                return len(self.ids) - 1 - k
        return None

    def history_before(self, later: int) -> tuple[str, ...] | None:
        """The sequence as it was before the interaction that ``later`` others followed (None: no longer known)."""
        end = len(self.seq) - later - 1
        if end < 0 or (end == 0 and self.n > later + 1):
            return None
        return tuple(self.seq[:end])

    def remember_list(self, rec_id: str, items: list[str], explored: list[int], keep: int) -> None:
        """Keep the list ``rec_id`` sent to this user (its items and the places exploration chose), the last
        ``keep`` lists only, so a later click that names it can be attributed (:meth:`find_list`)."""
        if keep <= 0:
            return
        self.shown.append([rec_id, list(items), list(explored)])
        if len(self.shown) > keep:
            del self.shown[: len(self.shown) - keep]

    def find_list(self, rec_id: str) -> tuple[list[str], list[int]] | None:
        """The items and explored places of the remembered list ``rec_id`` (None: not among the last ones).

        >>> s = UserState(); s.remember_list("r1", ["a", "b"], [1], keep=1); s.remember_list("r2", ["c"], [], keep=1)
        >>> s.find_list("r2"), s.find_list("r1")
        ((['c'], []), None)
        """
        for rid, items, explored in reversed(self.shown):
            if rid == rec_id:
                return items, explored
        return None

    def to_dict(self) -> dict[str, Any]:
        d = {"seq": list(self.seq), "seen": list(self.seen), "n": self.n, "ids": list(self.ids),
             "offs": list(self.offs)}
        if self.shown:
            d["shown"] = [list(x) for x in self.shown]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> UserState:
        if not d:
            return cls()
        ids = list(d.get("ids", []))
        offs = [int(o) for o in d.get("offs", [])]
        if len(offs) != len(ids):  # written before offsets were kept
            offs = [-1] * len(ids)
        return cls(seq=list(d.get("seq", [])), seen=list(d.get("seen", [])), n=int(d.get("n", 0)), ids=ids,
                   offs=offs, shown=[list(x) for x in d.get("shown", [])])


class InMemoryHistory:
    """A :class:`~learners.types.HistoryStore` in a dict, for notebooks and the offline evaluator.

    >>> h = InMemoryHistory(seq_len=2)
    >>> h.append("u", "a"); h.append("u", "b"); h.append("u", "c")
    >>> h.history("u"), sorted(h.seen("u")), h.history("nobody")
    (('b', 'c'), ['a', 'b', 'c'], ())
    """

    def __init__(self, seq_len: int = 50, seen_max: int = 2000) -> None:
        self.seq_len = seq_len
        self.seen_max = seen_max
        self._users: dict[str, UserState] = {}

    def state(self, user_id: str) -> UserState:
        """The user's stored state (created empty for a new user), to read and append to in place."""
        st = self._users.get(user_id)
        if st is None:
            st = self._users[user_id] = UserState()
        return st

    def history(self, user_id: str) -> tuple[str, ...]:
        st = self._users.get(user_id)
        return tuple(st.seq) if st else ()

    def seen(self, user_id: str) -> frozenset[str]:
        st = self._users.get(user_id)
        return frozenset(st.seen) if st else frozenset()

    def append(self, user_id: str, item_id: str) -> None:
        self.state(user_id).append(item_id, self.seq_len, self.seen_max)

    def __len__(self) -> int:
        return len(self._users)
