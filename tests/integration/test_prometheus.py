"""A real Prometheus (Debian's package) scrapes a live worker fed by a short replay with a shift in it; every
dashboard panel's PromQL must return data and every rule must load and evaluate."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.broker import free_port
from connectors.kafka import KafkaClientConfig, publish_items, read_topic, replay_events
from tests.conftest import make_catalog, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


#: Panels with a series per peer: one worker alone has none (tests/integration/test_sharing.py reads the metric
#: from two workers that share).
NEEDS_A_PEER = {"Sharing lag per peer"}

async def click_latest_lists(kafka: KafkaClientConfig, app: str, sent: int) -> None:
    """Each user clicks the first item of the latest list they were sent, naming it in context.rec_id."""
    latest: dict[str, dict[str, Any]] = {}
    async for _, value, _ in read_topic(kafka, f"{app}-recommendations", until_count=sent, idle_timeout=30):
        if value is not None:
            r = json.loads(value)
            latest[r["user_id"]] = r
    clicks = [{"event_id": f"click-{n}", "user_id": r["user_id"], "item_id": r["items"][0]["item_id"],
               "event_type": "click", "ts": 10_000.0 + n, "context": {"rec_id": r["rec_id"], "position": 0}}
              for n, r in enumerate(latest.values()) if r["items"]]
    await replay_events(kafka, f"{app}-events", clicks)


def query(port: int, expr: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:  # a 400 carries the parse error
        return json.loads(exc.read())


def get(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Any]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: install Debian's prometheus package (make test does)"
    procs: list[subprocess.Popen[bytes]] = []

    def start(target_port: int) -> int:
        port = free_port()
        rules = tmp_path / "rules"
        shutil.copytree(ROOT / "deploy" / "prometheus" / "rules", rules)
        cfg = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
        cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
        cfg["rule_files"] = [str(rules / "*.yml")]
        cfg["scrape_configs"][0].pop("dns_sd_configs")
        cfg["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{target_port}"]}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT))
        def ready() -> bool:  # /-/ready answers 200 with plain text once the server is up
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as r:  # noqa: S310
                    return r.status == 200
            except OSError:
                return False

        wait_for(ready, 60, lambda: f"prometheus ready: {(tmp_path / 'prometheus.log').read_text()[-2000:]}")
        return port

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def test_dashboard_and_alerts_against_real_prometheus(worker_factory: Any, kafka: KafkaClientConfig,
                                                      prometheus_factory: Any) -> None:
    app = "t-prom"
    w = worker_factory(app, STREAMREC_DRIFT_WINDOW="100")
    asyncio.run(publish_items(kafka, f"{app}-items", make_catalog()))
    w.wait_ready(len(make_catalog()), timeout=180)
    prom = prometheus_factory(w.metrics_port)
    # a drift episode: users switch from space items to sports items half way
    events = []
    for n in range(600):
        theme = "space" if n < 300 else "sports"
        events.append({"event_id": f"p{n}", "user_id": f"u{n % 20}", "item_id": f"{theme}-{(n // 20) % 8}",
                       "event_type": "click" if n % 3 else "view", "ts": float(n)})
    asyncio.run(replay_events(kafka, f"{app}-events", events, rate=150))
    def value(expr: str) -> float:
        """The first sample of ``expr`` now (0 when it has none)."""
        got = query(prom, expr)["data"]["result"]
        return float(got[0]["value"][1]) if got else 0.0

    wait_for(lambda: value("sum(streamrec_recommendations_total)") >= len(events), 60,
             lambda: f"Prometheus to see {len(events)} lists (it saw {value('sum(streamrec_recommendations_total)')})")
    asyncio.run(click_latest_lists(kafka, app, len(events)))  # the CTR panels need attributed clicks
    rates = ("sum(rate(streamrec_recommendations_total[1m]))", "sum(rate(streamrec_recommendation_clicks_total[5m]))")
    wait_for(lambda: all(value(r) > 0 for r in rates), 60,  # rates need two scrapes that both saw traffic
             lambda: f"a rate of lists and of attributed clicks: {[value(r) for r in rates]}")

    assert query(prom, 'up{job="streamrec-worker"}')["data"]["result"][0]["value"][1] == "1"
    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "streamrec.json").read_text())
    def empty_panels() -> list[str]:
        empty = []
        for panel in dash["panels"]:
            for target in panel["targets"]:
                res = query(prom, target["expr"])
                assert res["status"] == "success", (panel["title"], target["expr"], res.get("error"))
                if not res["data"]["result"] and panel["title"] not in NEEDS_A_PEER:
                    empty.append(f"{panel['title']}: {target['expr']}")
        return empty

    # a panel over a series the worker exports late (after a drift window, a learning step) waits for it
    wait_for(lambda: not empty_panels(), 60, lambda: f"data in every panel; without: {empty_panels()}", every=1)
    annotation = dash["annotations"]["list"][0]["expr"]
    assert query(prom, annotation)["status"] == "success"

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules" / "streamrec.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert query(prom, rule["expr"])["status"] == "success", rule
    loaded = get(prom, "/api/v1/rules")["data"]["groups"]
    health = {r["name"]: r["health"] for g in loaded for r in g["rules"]}
    assert len(health) == sum(len(g["rules"]) for g in rules["groups"])
    assert all(h in ("ok", "unknown") for h in health.values()), health
    # the drift episode as the metrics saw it: the item distribution moved
    psi_max = 'max(max_over_time(streamrec_drift_score{signal="item_popularity",statistic="psi"}[5m]))'
    # the shifted window's score is exported when the worker has taken that window in
    wait_for(lambda: value(psi_max) > 0.25, 60, lambda: f"an item-popularity PSI above 0.25 (last {value(psi_max)})")
    episode = {
        "psi_max": value(psi_max),
        "alarms": {f"{r['metric']['detector']}/{r['metric']['signal']}": r["value"][1] for r in query(
            prom, "sum by (detector, signal) (streamrec_drift_alarms_total) > 0")["data"]["result"]},
        "hit_rate": query(prom, "avg(streamrec_online_hit_rate)")["data"]["result"][0]["value"][1],
    }
    print("drift episode as Prometheus saw it:", json.dumps(episode))
