"""Rough CLI edges of issue 16 (fault 6): each test failed before its fix.

No broker runs here: a broker address nobody listens on is the point of several of them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from connectors.broker import free_port
from stream.cli.main import cli
from stream.settings import load_settings

ROOT = Path(__file__).resolve().parents[3]


def dead_broker() -> str:
    return f"127.0.0.1:{free_port()}"


def one_error_line(result: object, broker: str) -> str:
    """The run ended with exactly one line, ``Error: broker <address>: ...``, and no traceback."""
    assert isinstance(result.exception, SystemExit), result.exception  # type: ignore[attr-defined]
    assert result.exit_code == 1  # type: ignore[attr-defined]
    lines = result.output.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Error: broker {broker}: not reachable"), lines[0]
    return lines[0]


def test_catalog_reads_any_jsonl_file_as_a_catalog(tmp_path: Path) -> None:
    # before: only files named items* were catalogs; products.jsonl failed as an events file lacking user_id
    products = tmp_path / "products.jsonl"
    products.write_text(json.dumps({"item_id": "sku-1", "text": "Red kettle", "attributes": {"brand": "Acme"}}) + "\n")
    broker = dead_broker()
    result = CliRunner().invoke(cli, ["catalog", str(products), "--broker", f"kafka://{broker}"])
    assert "user_id" not in result.output
    one_error_line(result, broker)  # the file was read; what failed is the broker


def test_catalog_csv_file_with_attributes(tmp_path: Path) -> None:
    from connectors.datasets import load_catalog
    from connectors.schemas import CatalogItem

    products = tmp_path / "products.csv"
    products.write_text("item_id,text,brand\nsku-1,Red kettle,Acme\nsku-2,Blue mug,\n")
    assert load_catalog(str(products)) == [CatalogItem("sku-1", "Red kettle", {"brand": "Acme"}),
                                           CatalogItem("sku-2", "Blue mug", {})]


@pytest.mark.parametrize("command", ["catalog", "replay", "tail"])
def test_unreachable_broker_is_one_line(command: str, tmp_path: Path) -> None:
    # before: a 57-line traceback
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"user_id": "u1", "item_id": "i1", "ts": 1.0}) + "\n")
    items = tmp_path / "catalog.jsonl"
    items.write_text(json.dumps({"item_id": "i1", "text": "one"}) + "\n")
    args = {"catalog": [str(items)], "replay": [str(events)], "tail": ["--no-follow"]}[command]
    broker = dead_broker()
    one_error_line(CliRunner().invoke(cli, [command, *args, "--broker", f"kafka://{broker}"]), broker)


def test_worker_retries_an_unreachable_broker_then_says_so_in_one_line(tmp_path: Path) -> None:
    broker = dead_broker()
    env = {**os.environ, "STREAMREC_BROKER_CONNECT_TIMEOUT_S": "2", "STREAMREC_METRICS_PORT": "0",
           "STREAMREC_WEB_PORT": "0", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "stream.cli.main", "worker", "--broker", f"kafka://{broker}",
                           "--data-dir", str(tmp_path / "state")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    retries = [ln for ln in lines if "not reachable" in ln and "retrying in" in ln]
    assert retries and all(broker in ln for ln in retries), lines
    assert lines[-1].startswith(f"Error: broker {broker}: not reachable after "), lines[-1]
    assert len(lines) == len(retries) + 1, lines


def test_bad_json_in_an_env_setting_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # before: pydantic-settings' SettingsError traceback
    monkeypatch.setenv("STREAMREC_EVENT_WEIGHTS", '{"click": 1')
    result = CliRunner().invoke(cli, ["config"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: event_weights: STREAMREC_EVENT_WEIGHTS: expected JSON"), last


def test_misspelled_env_setting_is_named_with_the_closest_one(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    # before: silently ignored
    monkeypatch.setenv("STREAMREC_TOPK", "5")
    monkeypatch.setenv("STREAMREC_EVNET_WEIGHTS", '{"click": 1}')
    monkeypatch.setenv("_STREAMREC_BROKER_RESETS", "1")  # private: never warned about
    monkeypatch.setenv("STREAMREC_ML100K_DIR", "/nowhere")  # read by connectors.datasets, not a setting
    with caplog.at_level(logging.WARNING, logger="streamrec.settings"):
        s = load_settings()
    assert s.top_k == 10
    warned = [r.getMessage() for r in caplog.records if r.name == "streamrec.settings"]
    assert warned == [
        "STREAMREC_EVNET_WEIGHTS is not a streamrec setting and is ignored (did you mean STREAMREC_EVENT_WEIGHTS?)",
        "STREAMREC_TOPK is not a streamrec setting and is ignored (did you mean STREAMREC_TOP_K?)",
    ]


def test_every_streamrec_variable_the_project_reads_is_a_setting_or_listed() -> None:
    """A STREAMREC_* name used anywhere in the project is a setting or in OTHER_ENV_VARS (else it would be warned
    about as a misspelling)."""
    from stream.settings import OTHER_ENV_VARS, env_var, setting_paths

    known = {env_var(path) for path, _ in setting_paths()} | OTHER_ENV_VARS
    here = Path(__file__).resolve()
    files = [p for d in ("connectors", "stream", "tests", "benchmarks", "deploy") for p in (ROOT / d).rglob("*")
             if p.is_file() and p.suffix in (".py", ".yaml", ".yml", ".toml", ".md", "") and p != here]
    lines = [ln for p in [*files, ROOT / "Makefile", ROOT / "README.md"]
             for ln in p.read_text(errors="replace").splitlines()
             if "did you mean" not in ln and "unknown_env_vars(" not in ln]  # typos shown as examples
    used = {m for ln in lines for m in re.findall(r"(?<![_A-Z])STREAMREC_[A-Z0-9_]*[A-Z0-9]", ln)}
    assert sorted(used - known) == []
