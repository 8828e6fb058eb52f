"""Crash under load: kill -9 the worker three times while events stream at a steady rate.

Usage: python benchmarks/crash.py [--events 20000] [--rate 400] [--kills 3] [--window 2000] [--brokers tansu,kafka]
                                  [--workers 1] [--sharing-interval 0] [--guarantee at_least_once]
With ``--workers N`` N workers run in one group (learning one model with ``--sharing-interval`` > 0, see README,
"Several workers") and the kills go to each in turn; HR@10 over every event, and over the events before the first
kill (what the workers cost with no kill), is then also compared with one uninterrupted worker's. One column per
broker (the embedded Tansu and Apache Kafka by default), then one
``CRASH broker=...`` line each. Reports lost events (no answer read back from the recommendations topic: an
event counts as delivered only then, whatever the DLQ holds), duplicates, each recovery (restart -> first new
recommendation; "-" when the other workers had answered every event before the restarted one had any: a kill that
slow restarts before it pushed past the stream's end, or a restart the group gave no partition with events left),
the longest an event sent after each kill (from ``IN_FLIGHT_S`` before it) waited for its first answer (how long
the group answered nothing, whoever answered in the end, plus the catch-up with what piled up meanwhile),
whether every user's sequence equals the one of an uninterrupted run (dedup by event id),
read back from the user-sequences changelog, and the quality of the recommendations after each restart: HR@10
(from the topic) over the ``--window`` events after each kill, against the same events in an uninterrupted run of
the same stream at the same rate (a second, kill-free run).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from connectors.broker import free_port
from connectors.datasets import load_dataset
from connectors.kafka import KafkaClientConfig, ensure_topics, publish_items, read_topic, replay_events
from learners.sharing import Contribution
from stream.demo import WorkerProcess, local_broker, prequential_from_topic, run_demo, scrape
from stream.tables import USER_TABLE, changelog_name

ISOLATION = {"level": "read_uncommitted"}  # read_committed with --guarantee exactly_once, as its consumers must


async def read_values(cfg: KafkaClientConfig, topic: str, idle: float = 3.0) -> list[tuple[bytes | None, dict]]:
    return [(k, json.loads(v)) async for k, v, _ in read_topic(cfg, topic, idle_timeout=idle,
                                                               isolation_level=ISOLATION["level"]) if v is not None]


async def read_raw(cfg: KafkaClientConfig, topic: str) -> list[bytes]:
    return [v async for _, v, _ in read_topic(cfg, topic, idle_timeout=3.0, isolation_level=ISOLATION["level"])
            if v is not None]


def all_answered(cfg: KafkaClientConfig, events: list[dict]) -> bool:
    """Whether every event has an answer on the recommendations topic."""
    answered = {v["event_id"] for _, v in asyncio.run(read_values(cfg, "recommendations"))}
    return {e["event_id"] for e in events} <= answered


def seconds(r: float | None) -> str:
    """A recovery's seconds; "-" when the stream was answered before the restarted worker had anything to answer."""
    return "-" if r is None else f"{r:.1f}"


#: An event sent this long before a kill may have been taken by the killed worker and not answered yet: it counts
#: with the kill's events, not with those before.
IN_FLIGHT_S = 2.0


def answer_waits(events: list[dict], answers: dict[str, dict], sent_at: list[float]) -> np.ndarray:
    """Seconds from each event's send to its first answer (``emitted_ts``; both this machine's wall clock), in
    stream order, NaN for an event without one: after a kill, the longest of them is how long the killed worker's
    partitions went unanswered, whoever answered them in the end (the restarted worker or, after a rebalance,
    another).

    >>> answer_waits([{"event_id": "a"}, {"event_id": "b"}], {"a": {"emitted_ts": 12.5}}, [10.0, 11.0]).tolist()
    [2.5, nan]
    """
    return np.array([answers[e["event_id"]]["emitted_ts"] - t if e["event_id"] in answers else np.nan
                     for e, t in zip(events, sent_at, strict=True)])


def crash_run(kind: str, events: list[dict], items: list, args: argparse.Namespace) -> dict[str, str]:
    """One broker: the kills, the read-back and the kill-free reference run; the table's column for it."""
    work = Path(tempfile.mkdtemp(prefix=f"streamrec-crash-{kind}-"))
    env = {"STREAMREC_CHECKPOINT_INTERVAL_S": "5"}
    if args.sharing_interval > 0:
        env["STREAMREC_SHARING_INTERVAL_S"] = str(args.sharing_interval)
    if args.guarantee != "at_least_once":
        env["STREAMREC_PROCESSING_GUARANTEE"] = args.guarantee
    recoveries: list[float | None] = []  # None: the stream was answered before the restarted worker had any
    relearned: list[float] = []  # per restarted worker: already processed events its resumed model learned
    already: list[float] = []  # per restarted worker: events read again and not learned (a contribution holds them)
    kill_at: list[int] = []
    kill_wall: list[float] = []  # time.time() of each kill
    sent_times: list[float] = []

    def count_relearned(w: WorkerProcess) -> None:
        relearned.append(scrape(w.metrics_port, "streamrec_relearned_events_total") or 0)
        already.append(scrape(w.metrics_port, "streamrec_shared_events_total{outcome=already_shared}") or 0)

    def start(n: int, k: int = -1) -> WorkerProcess:
        return WorkerProcess(broker.url, work / f"state{n}", free_port(), work / f"worker{n}.{k + 1}.log",
                             {**env, "STREAMREC_WORKER_NAME": f"w{n}"}).start()

    with local_broker(kind, work / "broker.log") as broker:
        cfg = KafkaClientConfig([broker.bootstrap], {})
        asyncio.run(ensure_topics(cfg, {t: 4 for t in ("items", "events", "recommendations", "events-dlq")}))
        workers = [start(n) for n in range(args.workers)]
        atexit.register(lambda: [w.kill() for w in workers])  # a run that gives up leaves no worker behind
        asyncio.run(publish_items(cfg, "items", items))
        for w in workers:
            w.wait_ready(len(items))
        producer = threading.Thread(target=lambda: asyncio.run(replay_events(cfg, "events", events, rate=args.rate,
                                                                             sent_at=sent_times)))
        producer.start()

        def first_answer_s(worker: WorkerProcess, t_restart: float, who: str) -> float | None:
            """Seconds from the restart to the worker's first answer; None when every event was answered by the
            others before it had any (see the module doc)."""
            deadline, checked = time.monotonic() + 120, time.monotonic()
            while (scrape(worker.metrics_port, "streamrec_recommendations_total") or 0) < 1:
                if not producer.is_alive() and time.monotonic() - checked > 10:
                    checked = time.monotonic()
                    if all_answered(cfg, events):
                        return None
                if time.monotonic() > deadline:
                    raise SystemExit(f"{who} answered nothing within 120 s of its restart (log: {work})")
                time.sleep(0.1)
            return time.monotonic() - t_restart

        for k in range(args.kills):
            while len(sent_times) < (k + 1) * len(events) // (args.kills + 1):  # kills spread over the stream
                time.sleep(0.05)
            n = k % args.workers
            if k >= args.workers:
                count_relearned(workers[n])
            kill_wall.append(time.time())
            workers[n].kill()
            kill_at.append(len(sent_times))
            t_restart = time.monotonic()
            worker = workers[n] = start(n, k)
            worker.wait_ready(len(items))
            recoveries.append(first_answer_s(worker, t_restart, f"worker {n}, restarted after kill {k + 1},"))
        producer.join()
        want = {e["event_id"] for e in events}
        deadline = time.monotonic() + 180
        while True:
            recs = [v for _, v in asyncio.run(read_values(cfg, "recommendations"))]
            dlq = [v for _, v in asyncio.run(read_values(cfg, "events-dlq", 1.0))]
            dlq_ids = {json.loads(d["value"])["event_id"] for d in dlq if d.get("value")}
            if want <= {r["event_id"] for r in recs} or time.monotonic() > deadline:
                break
        changelog = {json.loads(k): v for k, v in asyncio.run(read_values(cfg, changelog_name("streamrec", USER_TABLE)))
                     if k is not None}
        shared = asyncio.run(read_raw(cfg, "model-shares")) if args.sharing_interval > 0 else []
        answered = Counter(r["event_id"] for r in recs)
        in_topic = ({json.loads(v)["event_id"] for v in asyncio.run(read_raw(cfg, "events"))}
                    if want - set(answered) else set())  # read back only for lost.txt
        for n in sorted({k % args.workers for k in range(args.kills)}):
            count_relearned(workers[n])
        for w in workers:
            w.stop()
    # Each event is scored on its first answer: the list a consumer had before the user's next event. An answer
    # again after a restart (a redelivery) leaves out everything the user has by then, the next item included, so
    # scoring the last answers counts every re-answered event a miss; the cells show that figure too ("last").
    first: dict[str, dict] = {}
    for r in recs:  # topic order: a user's answers share a partition, the original before the re-answer
        first.setdefault(r["event_id"], r)
    latest = {r["event_id"]: r for r in recs}
    one = {k: v for k, v in env.items() if k != "STREAMREC_SHARING_INTERVAL_S"}  # one worker, never killed
    reference = run_demo(events, items, rate=args.rate, worker_env=one, broker_kind=kind).extra["recommendations"]
    lost = want - set(answered)  # delivered means: its answer was read back from the topic
    if lost:  # where to look: each lost event's place in the stream, the kills, whether the broker holds it
        at = {e["event_id"]: n for n, e in enumerate(events)}
        (work / "lost.txt").write_text("kills at events " + ", ".join(map(str, kill_at)) + "\n" + "".join(
            f"{eid} user={events[at[eid]]['user_id']} stream_index={at[eid]} in_events_topic={eid in in_topic}\n"
            for eid in sorted(lost, key=at.__getitem__)))
        print(f"{kind}: {len(lost)} lost events listed in {work / 'lost.txt'}", file=sys.stderr)
    expected: dict[str, list[str]] = {}
    for e in events:
        expected.setdefault(e["user_id"], []).append(e["item_id"])
    mismatched = [u for u, seq in expected.items() if changelog.get(u, {}).get("seq") != seq[-50:]]
    twice = sum(1 for c in answered.values() if c > 1)
    if mismatched:
        (work / "sequences.txt").write_text("".join(
            f"{u}: expected {expected[u][-50:]}\n{' ' * len(u)}  changelog {changelog.get(u, {}).get('seq')}\n"
            for u in mismatched))
        print(f"{kind}: the {len(mismatched)} differing sequences are in {work / 'sequences.txt'}", file=sys.stderr)
    col = {
        "events in": f"{len(want):,}",
        "answered on recommendations": f"{len(answered):,}",
        "in events-dlq (reasons)": f"{len(dlq_ids):,} {dict(Counter(d['reason'] for d in dlq))}",
        "lost": f"{len(lost):,}",
        "answered more than once": f"{twice:,}",
        "recovery seconds per kill -9": ", ".join(seconds(r) for r in recoveries),
        "events re-learned by each restarted worker": ", ".join(f"{n:,.0f}" for n in relearned),
        "users whose sequence differs from an uninterrupted run": f"{len(mismatched)} of {len(expected)}",
    }
    waits, sent = answer_waits(events, first, sent_times), np.asarray(sent_times)
    cuts = [np.searchsorted(sent, t - IN_FLIGHT_S) for t in kill_wall] + [len(sent)]
    longest = [f"{np.nanmax(waits[a:b]):.1f}" if b > a else "-" for a, b in zip(cuts, cuts[1:], strict=False)]
    col[f"longest wait for an answer after each kill, s (events sent from {IN_FLIGHT_S:.0f} s before it to "
        f"{IN_FLIGHT_S:.0f} s before the next); p99 of the events before"] = \
        f"{', '.join(longest)}; {np.nanpercentile(waits[: cuts[0]], 99):.2f}" if cuts[0] else ", ".join(longest)
    for n, at in enumerate(kill_at, 1):
        hr, _, scored = prequential_from_topic(events, first, start=at, stop=at + args.window)
        last, _, _ = prequential_from_topic(events, latest, start=at, stop=at + args.window)
        ref, _, _ = prequential_from_topic(events, reference, start=at, stop=at + args.window)
        col[f"HR@10, {args.window:,} events after kill {n}: restarted vs uninterrupted"] = \
            f"{hr:.4f} vs {ref:.4f} ({hr / ref - 1:+.1%}, {scored:,} scored, event {at:,}; last {last:.4f})" \
            if scored and ref else f"- (killed at event {at:,}: no events after it)"
    if shared:
        col["contributions on model-shares: count, MB, largest KB"] = \
            f"{len(shared):,}, {sum(map(len, shared)) / 2**20:.1f}, {max(map(len, shared)) / 1024:,.0f}"
        contributed = sum(len(Contribution.from_bytes(v)) for v in shared)
        col["events in the contributions (each peer learns them): total, beyond the events in"] = \
            f"{contributed:,}, {contributed - len(want):+,}"
        col["events each restarted worker read again and did not learn (a contribution held them)"] = \
            ", ".join(f"{n:,.0f}" for n in already)
    if args.workers > 1:
        hr, _, scored = prequential_from_topic(events, first, start=0, stop=len(events))
        last, _, _ = prequential_from_topic(events, latest, start=0, stop=len(events))
        ref, _, _ = prequential_from_topic(events, reference, start=0, stop=len(events))
        before = ""
        if kill_at:  # the same comparison before any kill: what the workers cost without one
            pre, _, n_pre = prequential_from_topic(events, first, start=0, stop=kill_at[0])
            pre_ref, _, _ = prequential_from_topic(events, reference, start=0, stop=kill_at[0])
            col[f"HR@10 before the first kill: {args.workers} workers vs one worker"] = \
                f"{pre:.4f} vs {pre_ref:.4f} ({pre / pre_ref - 1:+.1%}, {n_pre:,} scored)"
            before = f" hr10_before_kill={pre:.4f} hr10_one_worker_before_kill={pre_ref:.4f}"
        killed = " (killed)" if args.kills else ""
        col[f"HR@10 over all events: {args.workers} workers{killed} vs one worker"] = \
            f"{hr:.4f} vs {ref:.4f} ({hr / ref - 1:+.1%}, {scored:,} scored; last {last:.4f})"
        col["_line_hr"] = f" workers={args.workers} sharing_interval_s={args.sharing_interval} hr10={hr:.4f} " \
                          f"hr10_one_worker={ref:.4f}" + before
        if shared:
            col["_line_hr"] += f" contributed_beyond_events={contributed - len(want)}"
    if args.guarantee != "at_least_once":
        col["_line_hr"] = col.get("_line_hr", "") + f" guarantee={args.guarantee}"
    col["_line"] = (f"CRASH broker={kind} events={len(want)} kills={args.kills} lost={len(lost)} answered_twice={twice} "
                    f"dlq={len(dlq_ids)} recovery_s={','.join(seconds(r) for r in recoveries)} "
                    f"longest_wait_s={','.join(longest)} sequences_differ={len(mismatched)}" + col.pop("_line_hr", ""))
    return col


GOALS = {"lost": "0", "answered more than once": "counted", "recovery seconds per kill -9": "<= 30 each",
         "users whose sequence differs from an uninterrupted run": "0"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=400.0)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--window", type=int, default=2000, help="events after each kill whose HR@10 is compared")
    ap.add_argument("--brokers", default="tansu,kafka", help="comma-separated: tansu (embedded), kafka (Apache "
                    "Kafka from `make kafka`'s jars); one column each")
    ap.add_argument("--workers", type=int, default=1, help="workers in one group; the kills go to each in turn")
    ap.add_argument("--sharing-interval", type=float, default=0.0, help="the workers' sharing_interval_s (0: each "
                    "learns alone)")
    ap.add_argument("--guarantee", default="at_least_once", choices=("at_least_once", "exactly_once"),
                    help="the workers' processing_guarantee (exactly_once: Apache Kafka only)")
    args = ap.parse_args()
    if args.guarantee == "exactly_once":
        ISOLATION["level"] = "read_committed"
    if args.workers < 1:
        raise SystemExit("--workers: expected 1 or more")
    kinds = [k.strip() for k in args.brokers.split(",") if k.strip()]
    ds = load_dataset("ml-100k", Path("data"))
    events = ds.events[: args.events]
    cols = {kind: crash_run(kind, events, ds.items, args) for kind in kinds}
    t = Table(title=f"crash under load — {' '.join(sys.argv)}")
    t.add_column("measure")
    for kind in kinds:
        t.add_column({"tansu": "Tansu 0.6.0", "kafka": "Apache Kafka"}.get(kind, kind), justify="right")
    t.add_column("goal", justify="right")
    for measure in [m for m in cols[kinds[0]] if not m.startswith("_")]:
        t.add_row(measure, *(cols[k].get(measure, "-") for k in kinds), GOALS.get(measure, ""))
    Console(width=200).print(t)
    for kind in kinds:
        print(cols[kind]["_line"])


if __name__ == "__main__":
    main()
