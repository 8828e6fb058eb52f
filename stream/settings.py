"""The one typed, frozen settings object: every field has a type, a default, an env var and a one-line doc.

Values come from (highest first): keyword arguments (the CLI), ``STREAMREC_*`` environment variables, a TOML
file named by ``STREAMREC_CONFIG`` (or ``--config``), then the defaults below. The README's settings table is
generated from :data:`Settings.model_fields` and a test keeps the two in sync.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

from connectors.broker import KAFKA, PROFILES, BrokerProfile
from learners.attributes import AttributeConfig
from learners.cold import ColdConfig
from learners.exploration import ExplorationConfig
from learners.fusion import FusionConfig
from learners.intent import IntentConfig
from learners.migrate import FLAT_FIELDS
from learners.retrieval import RetrievalConfig
from learners.signals import CooccurrenceConfig, PopularityConfig
from learners.training import TrainingConfig

ENV_PREFIX = "STREAMREC_"
NESTED = "__"  # STREAMREC_TRAINING__LEARNING_RATE: one field of a part's config (the whole part: JSON)
#: ``STREAMREC_*`` variables read outside :class:`Settings`: the config file, the ML-100K folder of
#: ``connectors.datasets``, Kafka's jars (``connectors.kafka_broker``) and the brokers the tests run on.
#: Variables starting with ``_STREAMREC`` are private to the worker and never checked.
OTHER_ENV_VARS = frozenset({f"{ENV_PREFIX}CONFIG", f"{ENV_PREFIX}ML100K_DIR", f"{ENV_PREFIX}KAFKA_LIB",
                            f"{ENV_PREFIX}TEST_BROKERS"})

log = logging.getLogger("streamrec.settings")

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 0.5,
    "click": 1.0,
    "rating": 1.0,
    "like": 2.0,
    "add_to_cart": 2.0,
    "purchase": 3.0,
}


class ConfigError(ValueError):
    """A bad setting: the message is one line naming the field and what was expected."""


class Settings(BaseSettings):
    """streamrec settings (env vars ``STREAMREC_<FIELD>``; nested dicts as JSON)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED, frozen=True, extra="forbid", validate_default=True,
        toml_file=None,
    )

    # -- where things live ---------------------------------------------------------------------------------
    broker_url: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s), `kafka://host:port[;host:port]`.")
    broker_profile: str = Field(
        "auto", description="Broker whose quirks the worker works around: `tansu`, `kafka`, or `auto` (asked at "
        "start: Tansu's cluster id `tansu_cluster` means `tansu`, any other `kafka`; see README, Brokers)."
    )
    data_dir: Path = Field(Path(".streamrec"), description="Worker state folder (RocksDB tables).")
    app_id: str = Field("streamrec", description="Faust app id: consumer group and internal topic prefix.")
    store_url: str = Field("rocksdb://", description="Faust table store: `rocksdb://` or `memory://`.")
    rocksdb_write_buffer_mb: int = Field(
        4, ge=1, description="RocksDB memtable size per table partition, MB (Faust's default, 64, x3 buffers, grew RSS)."
    )
    rocksdb_write_buffers: int = Field(2, ge=2, description="RocksDB memtables per table partition (full + flushing).")
    rocksdb_block_cache_mb: int = Field(8, ge=1, description="RocksDB block cache per table partition, MB (Faust's: 2048).")
    malloc_trim_interval_s: float = Field(
        60.0, ge=0, description="Seconds between returning freed heap to the OS (glibc malloc_trim; 0: never)."
    )
    # -- topics ----------------------------------------------------------------------------------------------
    topic_events: str = Field("events", description="Input topic of user events.")
    topic_items: str = Field("items", description="Input topic of catalog items.")
    topic_recommendations: str = Field("recommendations", description="Output topic of recommendations.")
    topic_dlq: str = Field("events-dlq", description="Rejected input with its reason.")
    topic_items_dlq: str = Field("items-dlq", description="Rejected catalog items with their reason.")
    topic_shares: str = Field("model-shares", description="What each worker learned, written by every worker and "
                              "read by all (one partition; used when `sharing_interval_s` > 0).")
    topic_partitions: int = Field(4, ge=1, description="Partitions of new topics (an existing `events` count wins).")
    replication_factor: int = Field(1, ge=1, description="Replication factor of topics the worker creates.")
    # -- Kafka client security (passed through to aiokafka) --
    security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    sasl_mechanism: str = Field("PLAIN", description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    sasl_username: str = Field("", description="SASL user name.")
    sasl_password: SecretStr = Field(SecretStr(""), description="SASL password (never printed).")
    ssl_cafile: Path | None = Field(None, description="CA bundle for TLS to the broker.")
    # -- events --------------------------------------------------------------------------------------------
    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
        description="Accepted event types and their training weights (JSON object).",
    )
    max_event_bytes: int = Field(16384, ge=64, description="Events larger than this go to the DLQ as `too_large`.")
    max_id_length: int = Field(256, ge=1, description="Longest accepted user/item/event id.")
    seq_len: int = Field(50, ge=1, description="Items kept in each user's behaviour sequence.")
    seen_max: int = Field(2000, ge=1, description="Items remembered per user for exclusion from recommendations.")
    dedup_window: int = Field(128, ge=0, description="Event ids remembered per user; a repeated id goes to the DLQ.")
    user_rate_per_s: float = Field(50.0, gt=0, description="Sustained events/s accepted per user (token bucket).")
    pending_max_events: int = Field(
        100000, ge=0, description="Events about items not in the catalog yet held to be learned when the item "
        "arrives (oldest dropped first; 0: none held)."
    )
    user_burst: int = Field(1000, ge=1, description="Events a user may send in a burst above the sustained rate.")
    # -- recommendation and learning -----------------------------------------------------------------------
    top_k: int = Field(10, ge=1, le=1000, description="Items per recommendation message.")
    explain: bool = Field(True, description="Give each recommended item its `because` (why it is in the list).")
    attribution_lists: int = Field(5, ge=0, le=100, description="Lists remembered per user so a click naming "
                                   "its `context.rec_id` is attributed (0: none).")
    batch_max: int = Field(256, ge=1, description="Largest micro-batch taken from `events` (`stream.take`).")
    batch_within_s: float = Field(0.05, gt=0, description="Longest wait to fill a micro-batch, seconds.")
    learn_queue_batches: int = Field(
        0, ge=0, description="Answered micro-batches that may wait to be learned while later ones are answered "
        "(0: a step that is due, see `learn_min_events`, is taken before the next batch is). Above 0 answers wait "
        "for learning steps and checkpoints only while the queue is full (size it to hold a checkpoint's worth of "
        "batches), and a list may not reflect the last few batches (README, Large catalogs, Through the broker)."
    )
    learn_min_events: int = Field(
        64, ge=1, description="Events a learning step waits for: answered micro-batches are learned together, in one "
        "step, once they hold this many events or the oldest has waited `learn_within_s` (1: every batch is learned "
        "as it comes). A step's cost hardly depends on its size below a few hundred events."
    )
    learn_within_s: float = Field(1.0, gt=0, description="Longest an answered event waits to be learned, seconds "
                                  "(see `learn_min_events`).")
    fetch_max_wait_ms: int = Field(50, ge=1, le=10000, description="Consumer fetch wait (Tansu holds every fetch this long).")
    encoder_model: str = Field("", description="HF model path or id for the frozen encoder (empty: bundled all-MiniLM-L6-v2).")
    encoder_batch_size: int = Field(64, ge=1, description="Texts per encoder forward pass.")
    encoder_max_length: int = Field(128, ge=8, description="Tokens per item text.")
    device: str = Field("auto", description="Torch device: `auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`.")
    dim: int = Field(64, ge=4, description="Width of the adapted item/user space.")
    text_dims: int = Field(64, ge=0, description="Leading principal directions of the frozen item embeddings the "
                           "learner keeps, fitted on the first catalog batch (0: all).")
    training: TrainingConfig = Field(TrainingConfig(), description="How the adapter heads learn: Adam, replay, "
                                     "parameter averaging, extra steps while young.")
    cooccurrence: CooccurrenceConfig = Field(CooccurrenceConfig(), description="The co-occurrence side signal "
                                             "(item-kNN over users' recent items).")
    popularity: PopularityConfig = Field(PopularityConfig(), description="The decayed-popularity side signal.")
    fusion: FusionConfig = Field(FusionConfig(), description="Re-ranking of the model's list by reciprocal rank "
                                 "fusion with the kNN and popularity rankings.")
    cold: ColdConfig = Field(ColdConfig(), description="Places at the end of a list given to cold items for users "
                             "likely to pick one.")
    retrieval: RetrievalConfig = Field(
        RetrievalConfig(), description="Large catalogs: past `exact_max_items` items two-stage recommendation (ANN, "
        "co-occurrence, fresh, popular and hot candidates, then the full model) and sampled-softmax training (README, "
        "Large catalogs)."
    )
    intent: IntentConfig = Field(IntentConfig(), description="How an event's `context.query` text moves the user "
                                 "vector of its request.")
    attributes: AttributeConfig = Field(AttributeConfig(), description="Item attribute values as learned vectors "
                                        "shared by every item with that value.")
    exploration: ExplorationConfig = Field(
        ExplorationConfig(), description="Exploration policy of the lists sent: none, epsilon, ucb or thompson "
        "(README, Exploration)."
    )
    seed: int = Field(0, description="Seed for model init, replay sampling and exploration.")
    torch_threads: int = Field(0, ge=0, description="Torch intra-op threads in the worker (0: torch's default).")
    catalog_follow: bool = Field(
        True, description="Follow every partition of the item table's changelog, so each worker ranks the whole catalog."
    )
    catalog_wait_s: float = Field(
        900.0, ge=0, description="Longest wait at start-up for the catalog to be read to its end before events are "
        "taken (0: don't wait)."
    )
    catalog_lag_wait_s: float = Field(
        5.0, ge=0, description="Longest wait before an events batch while the `items` partitions hold items not read "
        "yet, so items published just before events are known when those are answered (0: don't wait)."
    )
    checkpoint_interval_s: float = Field(30.0, ge=0, description="Seconds between model checkpoints (0: off).")
    relearn_max_events: int = Field(
        50000, ge=0, description="Events per partition re-read after a restart for the resumed model to learn (0: off)."
    )
    sharing_interval_s: float = Field(
        0.0, ge=0, description="Seconds between publishing what this worker learned to `topic_shares` for its peers, "
        "whose contributions it merges as they come (0: off; set it on every worker of a group of N; README, "
        "Several workers)."
    )
    sharing_max_bytes: int = Field(
        16 * 2**20, ge=2**20, description="Largest contribution message, bytes (`topic_shares` is created with this "
        "`max.message.bytes`; a larger one is not sent, and logged)."
    )
    worker_name: str = Field("", description="This worker's name among its peers, stable across restarts (empty: "
                             "host name and `web_port`).")
    checkpoint_keep: int = Field(2, ge=1, description="Checkpoint files kept in `data_dir/checkpoints`.")
    # -- drift ---------------------------------------------------------------------------------------------
    drift_window: int = Field(5000, ge=100, description="Events per window of the data and embedding drift checks.")
    psi_threshold: float = Field(0.25, gt=0, description="PSI between consecutive windows that raises a data-drift alarm.")
    js_threshold: float = Field(0.1, gt=0, description="Jensen-Shannon divergence (bits) that raises a data-drift alarm.")
    embedding_drift_threshold: float = Field(0.05, gt=0, description="Cosine shift of the mean item vector that alarms.")
    drift_reaction: str = Field("none", description="Reaction to a drift alarm: `none` or `lr_boost`.")
    drift_lr_boost: float = Field(3.0, ge=1, description="Learning-rate factor while reacting to an alarm.")
    drift_boost_steps: int = Field(50, ge=1, description="Model updates a learning-rate boost lasts.")
    # -- operations ------------------------------------------------------------------------------------------
    metrics_host: str = Field("127.0.0.1", description="Address the /metrics endpoint binds to.")
    metrics_port: int = Field(9108, ge=0, le=65535, description="Port of the /metrics endpoint (0: disabled).")
    web_port: int = Field(6066, ge=0, le=65535, description="Port of the HTTP routes: recommendations on demand, "
                          "similar items, /openapi.json, /healthz, /readyz (0: no web server).")
    web_host: str = Field("127.0.0.1", description="Address the web server binds to (`0.0.0.0`: every interface).")
    web_canonical_url: str = Field("", description="URL other workers forward a user's request to (empty: "
                                   "`http://web_host:web_port`, this machine's host name when `web_host` is 0.0.0.0).")
    broker_check_interval_s: float = Field(
        5.0, ge=0, description="Seconds between checks that the broker still holds our topics (0: off; see README)."
    )
    broker_reset_recovery: bool | None = Field(
        None, description="A watched topic gone means the broker lost our data: republish the tables, rewind the "
        "group, restart (empty: the profile's, on for tansu only; off: log an error, set `streamrec_topic_missing`)."
    )
    broker_connect_timeout_s: float = Field(
        30.0, ge=0, description="Seconds the worker retries an unreachable broker at start-up before it stops (0: one try)."
    )
    hit_window: int = Field(1000, ge=1, description="Events in the rolling online HR@10 window.")
    log_level: str = Field("warning", description="Worker log level.")
    probe_highwaters: bool | None = Field(
        None, description="Read past reported end offsets (empty: the profile's, on for tansu only: Tansu 0.6.0 "
        "under-reports them after multi-record batches)."
    )
    processing_guarantee: str = Field(
        "at_least_once", description="Faust's `processing_guarantee`: `at_least_once`, or `exactly_once` (Kafka "
        "transactions: Apache Kafka only, Tansu has none; README, Reliability, for what it gave here)."
    )
    recovery_consistency_check: bool | None = Field(
        None, description="Faust's changelog-offset check at recovery (empty: the profile's, on for kafka only: Tansu "
        "0.6.0 under-reports high watermarks)."
    )

    @field_validator("broker_url")
    @classmethod
    def _check_broker(cls, v: str) -> str:
        if not v.startswith(("kafka://", "aiokafka://")):
            raise ValueError("expected kafka://host:port")
        return v

    @field_validator("broker_profile")
    @classmethod
    def _check_profile(cls, v: str) -> str:
        if v != "auto" and v not in PROFILES:
            raise ValueError(f"expected auto, {' or '.join(PROFILES)}")
        return v

    @field_validator("processing_guarantee")
    @classmethod
    def _check_guarantee(cls, v: str) -> str:
        if v not in ("at_least_once", "exactly_once"):
            raise ValueError("expected at_least_once or exactly_once")
        return v

    @field_validator("store_url")
    @classmethod
    def _check_store(cls, v: str) -> str:
        if not v.startswith(("rocksdb://", "memory://")):
            raise ValueError("expected rocksdb:// or memory://")
        return v

    @property
    def store_on_disk(self) -> bool:
        """True when tables live in RocksDB on this machine (``store_url`` is ``rocksdb://``)."""
        return self.store_url.startswith("rocksdb://")

    def broker_quirks(self) -> BrokerProfile:
        """What the worker does for this broker: the ``broker_profile``'s workarounds with the explicit settings
        applied (``auto`` before the worker has asked the broker: Kafka's).

        >>> Settings(broker_profile="tansu").broker_quirks().probe_highwaters
        True
        >>> Settings(broker_profile="tansu", probe_highwaters=False).broker_quirks().probe_highwaters
        False
        """
        return PROFILES.get(self.broker_profile, KAFKA).overridden(
            probe_highwaters=self.probe_highwaters, recovery_consistency_check=self.recovery_consistency_check,
            reset_recovery=self.broker_reset_recovery)

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda", "mps") and not v.startswith("cuda:"):
            raise ValueError("expected auto, cpu, cuda or cuda:N")
        return v

    @field_validator("drift_reaction")
    @classmethod
    def _check_reaction(cls, v: str) -> str:
        if v not in ("none", "lr_boost"):
            raise ValueError("expected none or lr_boost")
        return v

    @field_validator("event_weights")
    @classmethod
    def _check_weights(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("expected at least one event type")
        bad = [k for k, w in v.items() if not (w > 0)]
        if bad:
            raise ValueError(f"weights must be > 0 (bad: {', '.join(bad)})")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = os.environ.get(f"{ENV_PREFIX}CONFIG")
        if toml:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml)))
        return tuple(sources)

    # -- helpers ---------------------------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` strings for aiokafka."""
        rest = self.broker_url.split("://", 1)[1]
        return [h.strip() for h in rest.replace(",", ";").split(";") if h.strip()]

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Security keyword arguments for aiokafka clients (producer, consumer, admin)."""
        kw: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            kw.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        if self.security_protocol.endswith("SSL"):
            import ssl

            kw["ssl_context"] = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        return kw

    def public_dict(self) -> dict[str, Any]:
        """Settings as plain values with secrets masked, for printing and logs."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            v = getattr(self, name)
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                v = dataclasses.asdict(v)  # a part's config: its fields, as STREAMREC_<PART> takes them
            out[name] = "**********" if isinstance(v, SecretStr) and v.get_secret_value() else (
                "" if isinstance(v, SecretStr) else (str(v) if isinstance(v, Path) else v)
            )
        return out


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings`, turning validation errors into a one-line :class:`ConfigError` naming the field.

    A ``STREAMREC_*`` environment variable that names no setting is logged as a warning with the closest one.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for line in unknown_env_vars(os.environ):
        log.warning("%s", line)
    old = os.environ.get(f"{ENV_PREFIX}CONFIG")
    try:
        if config is not None:
            if not Path(config).is_file():
                raise ConfigError(f"config: file {config} does not exist (expected a TOML file)")
            os.environ[f"{ENV_PREFIX}CONFIG"] = str(config)
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if msg.startswith(f"{field}."):  # a part's config named its own field (learners.config.check_ranges)
            raise ConfigError(msg) from None
        raise ConfigError(f"{field}: {msg} (got {err.get('input')!r})") from None
    except SettingsError as exc:  # a source could not decode a value (bad JSON in an env var)
        raise ConfigError(settings_error_line(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {os.environ.get(f'{ENV_PREFIX}CONFIG')}: expected a TOML file ({exc})") from None
    finally:
        if config is not None:
            if old is None:
                os.environ.pop(f"{ENV_PREFIX}CONFIG", None)
            else:
                os.environ[f"{ENV_PREFIX}CONFIG"] = old


def settings_error_line(exc: SettingsError) -> str:
    """One line naming the field, where its value came from and why it could not be decoded.

    >>> try:
    ...     json.loads('{"click": 1')
    ... except ValueError as cause:
    ...     err = SettingsError('error parsing value for field "event_weights" from source "EnvSettingsSource"')
    ...     err.__cause__ = cause
    >>> settings_error_line(err)
    "event_weights: STREAMREC_EVENT_WEIGHTS: expected JSON (Expecting ',' delimiter: line 1 column 12 (char 11))"
    """
    m = re.search(r'field "(\w+)" from source "(\w+)"', str(exc))
    if m is None:
        return f"settings: {exc}"
    field, source = m.groups()
    where = f"{ENV_PREFIX}{field.upper()}" if source.startswith("Env") else source
    cause = exc.__cause__
    what = f"expected JSON ({cause})" if isinstance(cause, json.JSONDecodeError) else str(cause or exc)
    return f"{field}: {where}: {what}"


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """One line for each ``STREAMREC_*`` variable that names no setting, with the closest setting's variable (a
    field of a part's config is ``STREAMREC_<PART>__<FIELD>``).

    >>> unknown_env_vars({"STREAMREC_TOPK": "5", "STREAMREC_TOP_K": "5", "_STREAMREC_X": "1", "HOME": "/"})
    ['STREAMREC_TOPK is not a streamrec setting and is ignored (did you mean STREAMREC_TOP_K?)']
    """
    known = [env_var(name) for name, _ in setting_paths()]
    renamed = {env_var(flat): env_var(f"{part}.{field}") for flat, (part, field, _) in FLAT_FIELDS.items()}
    out = []
    for key in sorted(environ):
        name = key.upper()  # pydantic-settings matches env names case-insensitively
        if not name.startswith(ENV_PREFIX) or name in known or name in OTHER_ENV_VARS:
            continue
        close = [renamed[name]] if name in renamed else difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        out.append(f"{key} is not a streamrec setting and is ignored{hint}")
    return out


def setting_paths() -> list[tuple[str, Any]]:
    """Every setting's name and its field: the top-level ones, then for each part's config (a dataclass) its
    fields as ``part.field`` (their :func:`dataclasses.Field`)."""
    out: list[tuple[str, Any]] = []
    for name, f in Settings.model_fields.items():
        out.append((name, f))
        if dataclasses.is_dataclass(f.annotation):
            out.extend((f"{name}.{sub.name}", sub) for sub in dataclasses.fields(f.annotation))
    return out


def env_var(path: str) -> str:
    """The environment variable of setting ``path`` (``training.learning_rate``: STREAMREC_TRAINING__LEARNING_RATE)."""
    return ENV_PREFIX + path.replace(".", NESTED).upper()


def settings_table() -> str:
    """The README's settings table, generated from the fields (a test keeps the README equal to it): a part's
    config is one row (set it whole as JSON) followed by a row per field (``part.field``)."""
    rows = ["| setting | env var | type | default | what it does |", "|---|---|---|---|---|"]
    for path, f in setting_paths():
        if isinstance(f, dataclasses.Field):
            default, doc = f.default, f.metadata.get("doc", "")
            typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        else:
            default = f.default_factory() if f.default_factory is not None else f.default  # type: ignore[call-arg]
            doc = f.description
            typ = "JSON object" if dataclasses.is_dataclass(f.annotation) else \
                getattr(f.annotation, "__name__", str(f.annotation))
        if isinstance(default, SecretStr):
            default = ""
        shown = json_default(default)
        rows.append(f"| `{path}` | `{env_var(path)}` | {typ.replace('|', 'or')} | `{shown}` | {doc} |")
    return "\n".join(rows)


def json_default(v: Any) -> str:
    if isinstance(v, Path):
        return str(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        v = dataclasses.asdict(v)
    if isinstance(v, dict):
        return json.dumps(v, separators=(",", ":"))
    return str(v) if v is not None else ""
