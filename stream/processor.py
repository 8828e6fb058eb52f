"""The per-micro-batch logic of the events agent, free of Faust so it is testable without a broker.

For one micro-batch, in order: validate every message (bad ones become DLQ records); for each valid event,
extend the user's sequence (per-event prefixes, so a user appearing twice in a batch is handled exactly);
recommend for the whole batch in one call with the model as it was before this batch (test, then learn);
the agent publishes; then one learning step on the batch. The user states to write back are returned, one per
user, with the user's last event in the batch (the agent writes them under that event's partition).

Re-learning after a restart: the processor tracks, per input partition, the offset after the last event the
model learned from (saved with each checkpoint). A restarted worker resumes the model from its checkpoint, but
the events processed after that checkpoint are already in the users' state. :meth:`EventProcessor.rewind` moves
the start back to the checkpoint's offsets; replayed events below the committed offset, and redeliveries of
events the resumed model has not learned, are then learned only: no state change, no second recommendation
(a redelivery still goes to the DLQ as ``duplicate``, as before).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.schemas import (
    Event,
    Reason,
    Rejection,
    dlq_record,
    new_rec_id,
    parse_event,
    recommendation_record,
)
from learners.history import UserState
from learners.types import Interaction, Query, WorkerLearner, run_stages
from stream.drift import DriftWatch
from stream.metrics import WorkerMetrics
from stream.settings import Settings


@dataclass(slots=True)
class RawMessage:
    """One consumed message with its origin; ``handle`` is the Faust event (opaque here)."""

    key: bytes | None
    value: bytes | None
    topic: str = "events"
    partition: int | None = None
    offset: int | None = None
    timestamp: float | None = None  # produce time, epoch seconds
    handle: Any = None
    undecodable: str | None = None  # why the consumer could not decode this record's batch (see stream.records)


def mark_key(topic: str, partition: int | None) -> str:
    """The key of an input partition in :attr:`~learners.sharing.Contribution.marks`.

    >>> mark_key("shop-events", 3)
    'shop-events:3'
    """
    return f"{topic}:{partition}"


@dataclass(slots=True)
class BatchResult:
    """What the agent must do for one micro-batch."""

    recommendations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    dlq: list[tuple[bytes | None, dict[str, Any]]] = field(default_factory=list)
    states: dict[str, tuple[UserState, Any]] = field(default_factory=dict)
    produce_ts: list[float | None] = field(default_factory=list)
    examples: list[Interaction] = field(default_factory=list)
    histories: list[tuple[str, ...]] = field(default_factory=list)
    already_shared: int = 0  # events not learned: a contribution on the shared topic holds them
    ends: dict[tuple[str, int], int] = field(default_factory=dict)  # per partition: offset after the batch
    relearned: int = 0
    pending: list[tuple[Interaction, tuple[str, ...]]] = field(default_factory=list)  # items not in the catalog yet
    answered_again: int = 0  # redelivered events answered again (their first answer was not known to be out)
    shown: list[list[str]] = field(default_factory=list)  # the items of each list sent, in order
    shown_histories: list[tuple[str, ...]] = field(default_factory=list)  # the history each list was made for
    clicks: list[tuple[str, int, str]] = field(default_factory=list)  # attributed: (item, position, arm)
    click_histories: list[tuple[str, ...]] = field(default_factory=list)  # the user's history at each click


def merged(results: Sequence[BatchResult]) -> BatchResult:
    """Answered batches, in order, as one for :meth:`EventProcessor.learning`: one step learns their events, and
    each partition counts as learned up to the end of the last of them (the answers' fields are left empty).

    >>> a = BatchResult(examples=[Interaction("u", "i")], histories=[()], ends={("events", 0): 5}, relearned=1)
    >>> b = BatchResult(examples=[Interaction("v", "j")], histories=[("i",)], ends={("events", 0): 9, ("events", 1): 2})
    >>> m = merged([a, b]); [x.item_id for x in m.examples], m.histories, m.ends, m.relearned
    (['i', 'j'], [(), ('i',)], {('events', 0): 9, ('events', 1): 2}, 1)
    """
    out = BatchResult()
    for r in results:
        out.examples += r.examples
        out.histories += r.histories
        out.pending += r.pending
        out.already_shared += r.already_shared
        out.relearned += r.relearned
        out.ends.update(r.ends)
    return out


class EventProcessor:
    """Validate, recommend and learn for micro-batches of raw ``events`` messages."""

    def __init__(self, settings: Settings, learner: WorkerLearner, metrics: WorkerMetrics,
                 clock: Callable[[], float] = time.time, last_recs_max: int = 50_000) -> None:
        self.settings = settings
        self.learner = learner
        self.metrics = metrics
        self.clock = clock
        self.event_types = frozenset(settings.event_weights)
        self.drift = DriftWatch(settings, learner, metrics)
        self._last_recs: OrderedDict[str, tuple[str, ...]] = OrderedDict()  # a 10-tuple: ~1/6 of a frozenset
        self._last_recs_max = last_recs_max
        self._known_window: deque[int] = deque(maxlen=settings.hit_window)
        self.limiter = UserRateLimiter(settings.user_rate_per_s, settings.user_burst, clock=clock)
        self.learned: dict[tuple[str, int], int] = {}  # per partition: offset after the last event learned
        self.replaying: dict[tuple[str, int], int] = {}  # per partition: committed offset the rewind replays up to
        self.answered: dict[tuple[str, int], int] = {}  # per partition: offset after the last batch prepared (learned
        # or waiting to be: stream.app.learn_answered), so a rebalance's rewind does not read the waiting ones again
        self.pending = PendingEvents(settings.pending_max_events)

    def marks(self) -> dict[str, int]:
        """:attr:`learned` as a contribution's :attr:`~learners.sharing.Contribution.marks` (keys :func:`mark_key`)."""
        return {mark_key(*tp): end for tp, end in self.learned.items()}

    def rewind(self, committed: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Where to start reading each of these partitions so the model learns what it missed; sets up replay.

        ``committed`` holds the group's committed offsets of the assigned ``events`` partitions. A partition whose
        learned offset lies below its committed one is read again from there (at most ``relearn_max_events``
        back); those events are learned only (see the module docstring).
        """
        starts: dict[tuple[str, int], int] = {}
        for tp, end in committed.items():
            learned = self.learned.get(tp)
            if learned is not None:
                learned = max(learned, self.answered.get(tp, learned))
            self.replaying.pop(tp, None)
            if learned is None or not self.settings.relearn_max_events or not self.settings.dedup_window \
                    or learned >= end:  # without remembered event ids a replay could learn nothing
                continue
            starts[tp] = max(learned, end - self.settings.relearn_max_events)
            self.replaying[tp] = end
        return starts

    def prepare(self, batch: Sequence[RawMessage], load_state: Callable[[str], UserState]) -> BatchResult:
        """Validate and recommend (model not yet updated with this batch)."""
        s = self.settings
        res = BatchResult()

        def state_of(user_id: str) -> UserState:
            """The user's state as this batch has left it so far (else as stored)."""
            cached = res.states.get(user_id)
            return cached[0] if cached else load_state(user_id)

        queries: list[Query] = []
        valid: list[tuple[Event, RawMessage]] = []
        for msg in batch:
            tp = (msg.topic, msg.partition) if msg.partition is not None and msg.offset is not None else None
            if tp is not None:
                res.ends[tp] = max(res.ends.get(tp, 0), msg.offset + 1)  # type: ignore[operator]
            replayed = tp is not None and msg.offset < self.replaying.get(tp, -1)  # type: ignore[operator]
            parsed = Rejection(Reason.UNDECODABLE, msg.undecodable) if msg.undecodable is not None else parse_event(
                msg.value, event_types=self.event_types, max_bytes=s.max_event_bytes, max_id_length=s.max_id_length)
            if isinstance(parsed, Rejection):
                if not replayed:  # a replayed bad event went to the DLQ the first time
                    self.reject(res, msg, parsed)
                continue
            if replayed:
                self._relearn(res, parsed, msg, state_of(parsed.user_id))
                continue
            valid.append((parsed, msg))
        known = self.learner.item_index
        accepted: list[tuple[Event, RawMessage]] = []
        again: list[tuple[Event, Query]] = []
        for ev, msg in valid:
            state = state_of(ev.user_id)
            if s.dedup_window and state.has_event(ev.event_id):
                later = state.later_than(ev.event_id, msg.offset)
                if later is not None:  # this very record again: read after a crash, its answer may never have gone out
                    again.append((ev, self._query_at(ev, state, later)))
                else:
                    self.reject(res, msg, Rejection(Reason.DUPLICATE,
                                                    f"event_id: {ev.event_id!r} was already processed"))
                self._relearn(res, ev, msg, state)
                continue
            if not self.limiter.allow(ev.user_id):
                self.reject(res, msg, Rejection(Reason.RATE_LIMITED,
                                                f"user_id: over {s.user_rate_per_s:g} events/s (burst {s.user_burst})"))
                continue
            accepted.append((ev, msg))
            click = self._attribute(ev, state)
            history = tuple(state.seq)
            if click is not None:  # the list clicked was made after the user's last event: for this history
                res.clicks.append(click)
                res.click_histories.append(history)
            state.append(ev.item_id, s.seq_len, s.seen_max, ev.event_id, s.dedup_window, msg.offset)
            res.states[ev.user_id] = (state, msg.handle)
            queries.append(Query(ev.user_id, tuple(state.seq), frozenset(state.seen), intent_of(ev)))
            example = Interaction(ev.user_id, ev.item_id, ev.ts, s.event_weights[ev.event_type])
            if ev.item_id not in known:
                res.pending.append((example, history))  # learned when the item arrives (bounded)
            else:
                self._example(res, example, history, msg)
            res.produce_ts.append(msg.timestamp)
            self.metrics.events.labels(ev.event_type).inc()
            self.drift.observe_event(ev.item_id, ev.event_type)
            self._known_window.append(int(ev.item_id in known))
        if accepted or again:
            lists0, placed0 = self.learner.cold_places
            asked = queries + [q for _, q in again]
            recs = self.learner.recommend_many(asked, s.top_k)
            explored = self.learner.last_explored
            reasons = self.learner.explain_many(asked, recs) if s.explain else [None] * len(recs)
            for why, marks in zip(reasons, explored, strict=False):
                for pos in marks if why is not None else ():
                    why[pos] = {"kind": "explore"}
            lists, placed = self.learner.cold_places
            self.metrics.cold_lists.inc(lists - lists0)
            self.metrics.cold_items.inc(placed - placed0)
            version = self.learner.model_version
            now = self.clock()
            for (ev, _), q, rec, why, marks in zip(accepted, queries, recs, reasons, explored, strict=False):
                rec_id = new_rec_id()
                record = recommendation_record(ev.user_id, ev.event_id, rec, version, ev.ts, now, rec_id, why, marks)
                res.recommendations.append((ev.user_id, record))
                sent = [it["item_id"] for it in record["items"]]
                res.shown.append(sent)
                res.shown_histories.append(q.history)
                res.states[ev.user_id][0].remember_list(
                    rec_id, sent, [p for p, it in enumerate(record["items"]) if it.get("explore")], s.attribution_lists)
                # in event order, so a user's second event in this batch is scored against the list made after
                # the first one (not the stale list from before the batch)
                self._observe_hit(ev)
                self._remember(ev.user_id, tuple(i for i, _ in rec))
            for (ev, _), rec, why, marks in zip(again, recs[len(accepted):], reasons[len(accepted):],
                                                explored[len(accepted):], strict=True):
                res.recommendations.append(
                    (ev.user_id, recommendation_record(ev.user_id, ev.event_id, rec, version, ev.ts, now, because=why,
                                                       explored=marks))
                )
            res.answered_again = len(again)
            if self._known_window:
                self.metrics.unknown_item_ratio.set(1.0 - sum(self._known_window) / len(self._known_window))
        for tp, end in res.ends.items():
            self.answered[tp] = max(self.answered.get(tp, end), end)
        return res

    def _attribute(self, ev: Event, state: UserState) -> tuple[str, int, str] | None:
        """The (item, 0-based position, arm) of a click on a list the user was sent (``context.rec_id``), counted
        by outcome; None when the event names no list or not one of the user's last ``attribution_lists``, or its
        item was not in it. The list's own order decides the position (``context.position`` is the producer's
        claim; the worker knows what it sent)."""
        rec_id = ev.context.get("rec_id")
        if rec_id is None or not self.settings.attribution_lists:
            return None
        found = state.find_list(rec_id)
        if found is None or ev.item_id not in found[0]:
            self.metrics.attributions.labels("unknown_list" if found is None else "not_in_list").inc()
            return None
        items, explored = found
        position = items.index(ev.item_id)
        arm = "explore" if position in explored else "exploit"
        self.metrics.attributions.labels("attributed").inc()
        self.metrics.clicks.labels(arm, str(position)).inc()
        return ev.item_id, position, arm

    def _query_at(self, ev: Event, state: UserState, later: int) -> Query:
        """The query of an event already in ``state`` with ``later`` events after it: its history prefix and the
        event's item (the whole stored sequence when that prefix is no longer known); everything seen excluded."""
        before = state.history_before(later)
        seq = (*before, ev.item_id) if before is not None else tuple(state.seq)
        return Query(ev.user_id, seq, frozenset(state.seen), intent_of(ev))

    def _relearn(self, res: BatchResult, ev: Event, msg: RawMessage, state: UserState) -> None:
        """Learn from an already processed event the model has not learned (a replay or redelivery after restart)."""
        if msg.partition is None or msg.offset is None:
            return
        if msg.offset < self.learned.get((msg.topic, msg.partition), msg.offset + 1):
            return  # learned before
        later = state.later_than(ev.event_id, msg.offset)
        history = state.history_before(later) if later is not None else None
        if history is None:
            return  # not this message, or its history is no longer known
        example = Interaction(ev.user_id, ev.item_id, ev.ts, self.settings.event_weights[ev.event_type])
        res.relearned += self._example(res, example, history, msg)

    def _example(self, res: BatchResult, example: Interaction, history: tuple[str, ...], msg: RawMessage) -> bool:
        """Learn ``example`` with the batch, unless a contribution on the shared topic holds it already (its offset
        below :attr:`WorkerLearner.shared_marks`: this worker's own before a crash, restored, or a peer's, whose
        partition moved here): the model has it, and learning it again would count it twice in every model."""
        marks = self.learner.shared_marks
        if marks and msg.offset is not None and msg.offset < marks.get(mark_key(msg.topic, msg.partition), 0):
            res.already_shared += 1
            return False
        res.examples.append(example)
        res.histories.append(history)
        return True

    def reject(self, res: BatchResult, msg: RawMessage, rej: Rejection) -> None:
        """Queue a DLQ record for ``msg`` and count it."""
        res.dlq.append((msg.key, dlq_record(msg.value, rej, topic=msg.topic, partition=msg.partition,
                                             offset=msg.offset, key=msg.key)))
        self.metrics.invalid.labels(str(rej.reason)).inc()

    def learn(self, res: BatchResult) -> None:
        """One learning step on the batch's valid events (after their recommendations went out)."""
        run_stages(self.learning(res))

    def learning(self, res: BatchResult) -> Iterator[Callable[[], None]]:
        """:meth:`learn` in the learner's stages (:meth:`~learners.types.Learner.learn_stages`): the worker runs
        each yielded gradient computation off its event loop, so the HTTP routes are answered meanwhile."""
        known = self.learner.item_index  # an item may have arrived since prepare (the sends, a learn queue between)
        arrived = [p for p in res.pending if p[0].item_id in known]
        dropped = self.pending.hold([p for p in res.pending if p[0].item_id not in known])
        self.metrics.pending_dropped.inc(dropped)
        self.metrics.pending_events.set(len(self.pending))
        self.metrics.shared_events.labels("already_shared").inc(res.already_shared)
        yield from self._learn(res.examples + [x for x, _ in arrived], res.histories + [h for _, h in arrived])
        for tp, end in res.ends.items():  # learned only once the step is done (a checkpoint may come between)
            self.learned[tp] = end  # a partition is read in offset order (a rewind starts at the learned offset)
            if end >= self.replaying.get(tp, end + 1):
                del self.replaying[tp]
        self.metrics.relearned.inc(res.relearned)

    def learn_arrived(self, item_ids: Sequence[str]) -> int:
        """Learn the held events about ``item_ids``, which just joined the catalog; returns how many."""
        examples, histories = self.pending.release(item_ids)
        self.metrics.pending_events.set(len(self.pending))
        if examples:
            run_stages(self._learn(examples, histories))
            self.metrics.pending_learned.inc(len(examples))
        return len(examples)

    def _learn(self, examples: list[Interaction], histories: list[tuple[str, ...]]) -> Iterator[Callable[[], None]]:
        if not examples:
            return
        before = self.learner.model_version
        yield from self.learner.learn_stages(examples, histories)
        m = self.metrics
        if self.learner.model_version != before:
            m.model_updates.inc(self.learner.model_version - before)
            loss = float(self.learner.last_loss)
            m.training_loss.set(loss)
            self.drift.observe_loss(loss)
        m.model_version.set(self.learner.model_version)
        m.events_learned.set(self.learner.events_learned)
        m.replay_size.set(len(self.learner.replay))
        m.catalog_items.set(len(self.learner.item_ids))
        rs = self.learner.retrieval_state
        if rs is not None:
            m.index_items.set(rs.index_items)
            m.index_rebuilds.set(rs.rebuilds)
            if rs.index_recall is not None:
                m.index_recall.set(rs.index_recall)

    def observe_emitted(self, res: BatchResult) -> None:
        """Record latency and counts once the batch's recommendations were handed to the producer."""
        now = self.clock()
        m = self.metrics
        for ts in res.produce_ts:
            if ts is not None:
                m.latency.observe(max(0.0, now - ts))
        m.recommendations.inc(len(res.recommendations))
        shown: dict[tuple[str, int], int] = {}
        for record in (r for _, r in res.recommendations):
            for position, it in enumerate(record["items"]):
                arm = "explore" if it.get("explore") else "exploit"
                shown[arm, position] = shown.get((arm, position), 0) + 1
        for (arm, position), n in shown.items():
            m.shown.labels(arm, str(position)).inc(n)
            m.clicks.labels(arm, str(position))  # the series exists at 0 before its first click: rate() sees it rise
        if res.shown or res.clicks:
            self.learner.observe_feedback(res.shown, [(item, position) for item, position, _ in res.clicks],
                                          res.shown_histories, res.click_histories)
            m.feedback_clicks.set(self.learner.feedback[1])
        m.empty_lists.inc(sum(1 for _, r in res.recommendations if not r["items"]))
        m.answered_again.inc(res.answered_again)

    def _observe_hit(self, ev: Event) -> None:
        last = self._last_recs.get(ev.user_id)
        if last is None:
            return
        hit = ev.item_id in last
        self.metrics.observe_hit(hit)
        self.drift.observe_hit(hit)

    def _remember(self, user_id: str, items: tuple[str, ...]) -> None:
        lr = self._last_recs
        lr[user_id] = items
        lr.move_to_end(user_id)
        if len(lr) > self._last_recs_max:
            lr.popitem(last=False)


def intent_of(ev: Event) -> str:
    """The event's request text (``context.query``, validated a string), "" when it has none."""
    query = ev.context.get("query")
    return query.strip() if isinstance(query, str) else ""


def intent_texts(batch: Sequence[RawMessage]) -> list[str]:
    """The request texts (``context.query``) of a micro-batch's raw messages, read ahead of :meth:`prepare` so
    the worker can encode them off its event loop; only messages that mention ``"query"`` are parsed here.

    >>> intent_texts([RawMessage(None, b'{"context": {"query": " sci-fi "}}'), RawMessage(None, b'{"x": 1}')])
    ['sci-fi']
    """
    out: list[str] = []
    for msg in batch:
        if msg.value is None or b'"query"' not in msg.value:
            continue
        try:
            ctx = json.loads(msg.value).get("context")
        except (ValueError, AttributeError):
            continue
        query = ctx.get("query") if isinstance(ctx, dict) else None
        if isinstance(query, str) and query.strip():
            out.append(query.strip())
    return out


class PendingEvents:
    """Events about items not in the catalog yet, held (oldest dropped first past ``max_events``) to be learned
    when their item arrives.

    >>> p = PendingEvents(max_events=2)
    >>> p.hold([(Interaction("u", "x", 1.0), ()), (Interaction("u", "y", 2.0), ("x",)),
    ...         (Interaction("v", "x", 3.0), ())])
    1
    >>> len(p), [x.ts for x in p.release(["x"])[0]], len(p)
    (2, [3.0], 1)
    """

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._by_item: OrderedDict[str, list[tuple[int, Interaction, tuple[str, ...]]]] = OrderedDict()
        self._order: deque[tuple[int, str]] = deque()  # (sequence number, item) oldest first
        self._alive: set[int] = set()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._alive)

    def hold(self, events: Sequence[tuple[Interaction, tuple[str, ...]]]) -> int:
        """Hold these (example, history) pairs; returns how many older ones were dropped to stay bounded."""
        for example, history in events:
            self._seq += 1
            self._by_item.setdefault(example.item_id, []).append((self._seq, example, history))
            self._order.append((self._seq, example.item_id))
            self._alive.add(self._seq)
        dropped = 0
        while len(self._alive) > self.max_events:
            seq, item = self._order.popleft()
            if seq not in self._alive:
                continue  # released earlier
            self._alive.discard(seq)
            held = self._by_item[item]
            held.pop(0)  # the oldest of this item is the oldest overall among its own
            if not held:
                del self._by_item[item]
            dropped += 1
        return dropped

    def release(self, item_ids: Sequence[str]) -> tuple[list[Interaction], list[tuple[str, ...]]]:
        """The held events about ``item_ids`` in arrival order, no longer held."""
        got: list[tuple[int, Interaction, tuple[str, ...]]] = []
        for item in item_ids:
            for entry in self._by_item.pop(item, ()):
                got.append(entry)
                self._alive.discard(entry[0])
        got.sort(key=lambda e: e[0])
        if len(self._order) > 2 * len(self._alive) + 1024:  # drop the released entries from the drop order
            self._order = deque(e for e in self._order if e[0] in self._alive)
        return [e[1] for e in got], [e[2] for e in got]


class UserRateLimiter:
    """Per-user token buckets (``rate`` tokens/s, ``burst`` capacity), least recently seen users evicted.

    A bucket idle for ``burst / rate`` seconds is full again, the same as a new one, so it is dropped: the table
    holds only users seen in the last ``burst / rate`` seconds (``max_users`` is a backstop).

    >>> t = [0.0]
    >>> lim = UserRateLimiter(rate=1.0, burst=2, clock=lambda: t[0])
    >>> [lim.allow("u") for _ in range(3)]
    [True, True, False]
    >>> t[0] = 1.0
    >>> lim.allow("u"), lim.allow("v")
    (True, True)
    >>> t[0] = 10.0
    >>> lim.allow("w"), list(lim._buckets)
    (True, ['w'])
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_users: int = 500_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_users = max_users
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, user_id: str) -> bool:
        now = self.clock()
        tokens, last = self._buckets.get(user_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= 1.0
        self._buckets[user_id] = (tokens - 1.0 if ok else tokens, now)
        self._buckets.move_to_end(user_id)
        idle = self.burst / self.rate
        while len(self._buckets) > 1:  # least recently seen first
            _, (_, seen) = next(iter(self._buckets.items()))
            if now - seen < idle and len(self._buckets) <= self.max_users:
                break
            self._buckets.popitem(last=False)
        return ok


def run_offline(processor: EventProcessor, events: Sequence[dict[str, Any]], batch: int,
                on_batch: Callable[[int, BatchResult], None] | None = None) -> dict[str, UserState]:
    """Feed wire-format events through ``processor`` in micro-batches, no broker: user states live in a dict.

    ``on_batch(start_index, result)`` sees each batch's result before learning. Returns the final user states.
    """
    import json

    states: dict[str, UserState] = {}
    now = time.time()
    for start in range(0, len(events), batch):
        msgs = [RawMessage(e["user_id"].encode(), json.dumps(e).encode(), timestamp=now)
                for e in events[start : start + batch]]
        res = processor.prepare(msgs, lambda u: states.get(u) or UserState())
        for user, (state, _) in res.states.items():
            states[user] = state
        if on_batch is not None:
            on_batch(start, res)
        processor.learn(res)
    return states
