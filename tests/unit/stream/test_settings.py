"""Settings: one-line errors naming the field, TOML files, secrets masked, README table in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from learners.fusion import FusionConfig
from learners.retrieval import RetrievalConfig
from learners.training import TrainingConfig
from stream.cli.main import cli
from stream.settings import ConfigError, load_settings, settings_table, unknown_env_vars

ROOT = Path(__file__).resolve().parents[3]


def test_readme_settings_table_matches_code() -> None:
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", readme, re.S)
    assert m, "README lacks the settings table markers"
    assert m.group(1).strip() == settings_table().strip()


@pytest.mark.parametrize(("overrides", "field"), [
    ({"broker_url": "http://x:1"}, "broker_url"),
    ({"top_k": 0}, "top_k"),
    ({"device": "gpu"}, "device"),
    ({"event_weights": {"click": -1}}, "event_weights"),
    ({"store_url": "redis://"}, "store_url"),
    ({"broker_profile": "redpanda"}, "broker_profile"),
    ({"retrieval": {"exact_max_items": -1}}, "retrieval"),
    ({"retrieval": {"ann_efs": 3}}, "retrieval"),
    ({"training": {"learning_rate": 0}}, "training.learning_rate"),
    ({"cold": {"gate": 2}}, "cold.gate"),
])
def test_bad_values_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(**overrides)
    msg = str(exc.value)
    assert msg.startswith(field) and "\n" not in msg


def test_env_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('top_k = 20\nseq_len = 30\n')
    monkeypatch.setenv("STREAMREC_SEQ_LEN", "40")
    s = load_settings(toml)
    assert s.top_k == 20 and s.seq_len == 40  # env beats file
    with pytest.raises(ConfigError, match="config"):
        load_settings(tmp_path / "missing.toml")


def test_retrieval_is_one_json_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The large-catalog config nests as JSON; fields left out keep their defaults; the learner gets it."""
    monkeypatch.setenv("STREAMREC_RETRIEVAL", '{"exact_max_items": 50000, "ann_ef": 72}')
    s = load_settings()
    default = RetrievalConfig().ann_candidates
    assert (s.retrieval.exact_max_items, s.retrieval.ann_ef, s.retrieval.ann_candidates) == (50000, 72, default)
    from stream.worker import build_learner

    assert build_learner(s, None).retrieval == s.retrieval


def test_a_part_config_is_one_setting_each_field_its_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """``STREAMREC_<PART>__<FIELD>`` sets one field of a part's config over the part's JSON; the worker's learner
    gets the very config objects; a bad field is one line naming it; a flat name of before is pointed to its new
    variable."""
    monkeypatch.setenv("STREAMREC_FUSION", '{"weight": 0.2, "recent": 3}')
    monkeypatch.setenv("STREAMREC_FUSION__WEIGHT", "0.9")
    monkeypatch.setenv("STREAMREC_TRAINING__EARLY_EVENTS", "7")
    s = load_settings()
    assert (s.fusion.weight, s.fusion.recent, s.fusion.popularity) == (0.9, 3, FusionConfig().popularity)
    assert s.training == TrainingConfig(early_events=7)
    from stream.worker import build_learner

    m = build_learner(s, None)
    assert m.fusion is s.fusion and m.training is s.training and m.cold is s.cold
    assert unknown_env_vars({"STREAMREC_FUSION__WEIGHT": "1", "STREAMREC_TRAINING__EARLY_EVENTS": "7"}) == []
    renamed = {"STREAMREC_COLD_SLOTS": "2", "STREAMREC_REPLAY_RATIO": "1"}  # an unknown_env_vars( example
    assert unknown_env_vars(renamed) == [
        "STREAMREC_COLD_SLOTS is not a streamrec setting and is ignored (did you mean STREAMREC_COLD__SLOTS?)",
        "STREAMREC_REPLAY_RATIO is not a streamrec setting and is ignored (did you mean STREAMREC_TRAINING__REPLAY_RATIO?)"]
    assert s.public_dict()["fusion"] == {"weight": 0.9, "recent": 3, "popularity": FusionConfig().popularity}
    monkeypatch.setenv("STREAMREC_COLD__SLOTS", "-1")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert str(exc.value) == "cold.slots: expected a number >= 0, got -1"


def test_secret_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_SASL_PASSWORD", "hunter2")
    s = load_settings()
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.public_dict())
    out = CliRunner().invoke(cli, ["config"])
    assert out.exit_code == 0 and "hunter2" not in out.output and "**********" in out.output
    assert s.kafka_client_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_cli_bad_setting_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_TOP_K", "many")
    out = CliRunner().invoke(cli, ["config"])
    assert out.exit_code == 2
    assert out.output.strip().splitlines()[-1].startswith("Error: top_k:")


def test_sasl_settings_pass_through() -> None:
    s = load_settings(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p",
                      sasl_mechanism="SCRAM-SHA-256")
    kw = s.kafka_client_kwargs()
    assert kw["sasl_plain_username"] == "u" and kw["sasl_plain_password"] == "p"
    from stream.app import faust_credentials

    cred = faust_credentials(s)
    assert cred.username == "u" and cred.password == "p"
