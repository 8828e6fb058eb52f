"""Deployment files parse, reference only files that exist, and pass promtool (check + rule unit tests)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\b(streamrec_[a-z_]+|process_[a-z_]+|up)\b")


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: install Debian's prometheus package (make test does: apt-get install prometheus)"
    return path


def exported_metric_names() -> set[str]:
    from prometheus_client import CollectorRegistry

    from stream.metrics import WorkerMetrics

    reg = CollectorRegistry()
    m = WorkerMetrics(reg)
    m.init_labels(["click"], ["invalid_json"], ["events"])
    m.drift_score.labels("item_popularity", "psi").set(0)
    m.info.labels("0", "m").set(1)
    m.sharing_peer_lag.labels("peer").set(0)  # its series appear with the first peer
    m.shown.labels("exploit", "0")  # these appear with the first list sent and the first click
    m.clicks.labels("exploit", "0")
    names = set()
    for fam in reg.collect():
        for sample in fam.samples:
            names.add(sample.name)
    return names | {"up"}


def test_compose_parses_and_references_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "worker", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    build = services["worker"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    assert services["worker"]["environment"]["STREAMREC_BROKER_URL"].startswith("kafka://kafka:")
    assert "container_name" not in services["worker"]  # scalable
    for svc in services.values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"compose mounts missing {src}"


def test_dockerfile_copies_existing_paths() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+)", text, re.M):
        for part in src.split():
            assert (ROOT / part).exists(), part
    assert 'ENTRYPOINT ["streamrec", "worker"]' in text


def test_k8s_manifests_parse_and_kustomization_lists_files() -> None:
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    kinds = set()
    for res in kust["resources"]:
        doc = yaml.safe_load((DEPLOY / "k8s" / res).read_text())
        kinds.add(doc["kind"])
    assert {"StatefulSet", "Service", "ConfigMap", "Secret", "Namespace"} <= kinds
    sts = yaml.safe_load((DEPLOY / "k8s" / "statefulset.yaml").read_text())
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"


def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "streamrec.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dash["annotations"]["list"]]
    return exprs


def rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "streamrec.rules.yml").read_text())
    return [(r.get("alert") or r["record"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def test_dashboard_and_rules_use_only_exported_metrics() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "streamrec.json").read_text())
    assert all(p["datasource"]["uid"] == "prometheus" for p in dash["panels"])
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in dash["panels"])
    known = exported_metric_names()
    for expr in dashboard_exprs() + [e for _, e in rule_exprs()]:
        for name in METRIC.findall(expr):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert name in known or base in known, f"{name} in {expr!r} is not exported by the worker"


def test_promtool_check_and_unit_tests() -> None:
    tool = promtool()
    subprocess.run([tool, "check", "config", "deploy/prometheus/prometheus.yml"], cwd=ROOT, check=True)
    subprocess.run([tool, "check", "rules", "deploy/prometheus/rules/streamrec.rules.yml"], cwd=ROOT, check=True)
    out = subprocess.run([tool, "test", "rules", "streamrec.rules.test.yml"], cwd=DEPLOY / "prometheus" / "tests",
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_runbook_section_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, _ in rule_exprs():
        if name.startswith("Streamrec"):
            assert f'<a id="alert-{name.lower()}"></a>' in readme, f"README lacks the runbook anchor of {name}"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in DEPLOY.rglob("*.y*ml")))
def test_every_yaml_file_parses(path: str) -> None:
    assert list(yaml.safe_load_all((ROOT / path).read_text()))


def test_k8s_probes_use_the_workers_health_endpoints() -> None:
    """Issue 16, fault 4: orchestrators see readiness (/readyz) and a crashed agent (/healthz), not just a port."""
    doc = yaml.safe_load((ROOT / "deploy" / "k8s" / "statefulset.yaml").read_text())
    [container] = doc["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
