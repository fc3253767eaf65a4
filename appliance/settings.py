"""All settings of the appliance, in one pydantic-settings class.

Every setting is read from an environment variable named ``APPLIANCE_<FIELD>``; the
defaults below are the documented ones (README, "Settings").
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APPLIANCE_", extra="ignore")

    home: Path = Field(Path("~/.appliance"), description="State directory (SQLite file, key files).")
    database_url: str | None = Field(
        None,
        description="sqlite:///path/to/file.db or postgresql://user:pass@host:5432/db; "
        "default: a SQLite file appliance.db in the home directory.",
    )
    host: str = Field("127.0.0.1", description="Address `serve` binds to.")
    port: int = Field(4200, ge=1, le=65535, description="Port `serve` binds to.")
    workers: int = Field(1, ge=1, le=64, description="gunicorn worker processes.")
    log_level: str = Field("info", description="debug, info, warning, error.")
    api_prefix: str = Field("/api", description="Base path of the REST API.")
    migrate_on_start: bool = Field(True, description="Apply pending migrations before serving.")
    db_pool_size: int = Field(8, ge=1, le=256, description="Database threads (and connections) per worker.")
    db_wait_seconds: float = Field(30.0, ge=0, description="How long `serve` waits for the database at boot.")
    db_busy_timeout_ms: int = Field(30000, ge=0, description="SQLite busy timeout.")
    services_enabled: bool = Field(
        True, description="Run the background services (schedulers, sweepers) in this process."
    )
    deployment_slot_wait_seconds: float = Field(
        30.0, gt=0, le=3600,
        description="How long a run refused by its deployment's concurrency limit waits (AwaitingConcurrencySlot) "
        "before it is offered again, as Prefect's PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS.",
    )
    concurrency_queue_seconds: float = Field(
        5.0, ge=0, le=60,
        description="How long an acquisition of a full global concurrency limit is held at the server, waiting "
        "for a slot to be released, before it is answered 423 with Retry-After (0: at once, as Prefect).",
    )
    # Retention (README "Retention"): a duration per kind of data ("30d", "12h", "90m", "3600" seconds; at
    # least 1h, so that a bare number meant as days cannot empty the database), "off" or empty: kept forever.
    retention_flow_runs: dt.timedelta | None = Field(
        None, description="Terminal flow runs whose end_time is older than this are deleted, with their task runs, "
        "states, logs, artifacts, inputs and events. Off by default."
    )
    retention_events: dt.timedelta | None = Field(
        dt.timedelta(days=7), description="Events (including the server's flow-run state events) older than this "
        "are deleted."
    )
    retention_notifications: dt.timedelta | None = Field(
        None, description="Notification deliveries in a final status (sent, failed, dead) for longer than this "
        "are deleted. Off by default."
    )
    retention_workers: dt.timedelta | None = Field(
        None, description="Workers whose last heartbeat is older than this are deleted. Off by default."
    )
    retention_interval_seconds: float = Field(3600.0, gt=0, description="Seconds between retention passes.")
    retention_batch_size: int = Field(
        500, ge=1, le=10000, description="Flow runs (events, notifications, workers) per retention batch."
    )
    retention_child_batch_size: int = Field(
        2000, ge=1, le=100000, description="Rows one retention DELETE of a batch's children removes at most."
    )
    retention_pause_seconds: float = Field(
        0.0, ge=0, le=60, description="Pause after each retention transaction (throttles the deletion)."
    )
    retention_sqlite_incremental_vacuum: bool = Field(
        True, description="On SQLite, PRAGMA incremental_vacuum after a pass that deleted rows (frees pages only "
        "when the file has auto_vacuum=INCREMENTAL)."
    )
    events_retention_days: float | None = Field(
        None, gt=0, description="Deprecated: APPLIANCE_RETENTION_EVENTS. Used when that one is not set."
    )
    auth_string: str | None = Field(
        None, description="'user:pass' enables HTTP basic auth (health and ready stay open)."
    )
    secret_key: str | None = Field(
        None,
        description="Fernet key(s) encrypting block documents at rest, comma-separated (the first encrypts, "
        "all decrypt: for a key roll-out). Required on PostgreSQL; on SQLite, when unset, a key file "
        "HOME/secret.key (mode 0600) is created on first start.",
    )
    # The notifier sidecar (`appliance notifier`).
    notifier_poll_interval: float = Field(
        1.0, gt=0, description="Seconds between notifier polls of the queue (PostgreSQL also wakes on NOTIFY)."
    )
    notifier_endpoints: dict[str, str] = Field(
        default_factory=dict,
        description='JSON channel -> base URL overriding fixed API hosts (opsgenie, pager-duty-webhook, '
        'sendgrid-email, twilio-sms), e.g. {"sendgrid-email": "http://proxy:8080"}.',
    )
    notifier_lease_seconds: float = Field(
        60.0, gt=0, description="How long a claimed notification stays leased before another notifier may retry it."
    )
    notifier_max_attempts: int = Field(8, ge=1, description="Attempts (429s excluded) before a notification is dead.")
    notifier_deadline_hours: float = Field(24.0, gt=0, description="After this a notification still failing is dead.")
    notifier_backoff_base_seconds: float = Field(5.0, gt=0, description="First retry delay (exponential, full jitter).")
    notifier_concurrency: int = Field(8, ge=1, le=128, description="Parallel HTTP deliveries per notifier.")
    notifier_heartbeat_path: Path | None = Field(
        None, description="Heartbeat file the notifier touches each loop (default: HOME/notifier.heartbeat)."
    )
    notifier_heartbeat_max_age: float = Field(30.0, gt=0, description="`notifier --check` fails when older.")
    ui_enabled: bool = Field(True, description="Serve the web console under / (the API stays under the API prefix).")
    # Process model, logs and metrics (README: "Metrics", "Logs").
    server_mode: Literal["auto", "gunicorn"] = Field(
        "auto",
        description="auto: one uvicorn process when workers is 1 (a gunicorn master would only add memory), "
        "a gunicorn master with uvicorn workers otherwise; gunicorn: the master even for one worker "
        "(it restarts a crashed or hung worker).",
    )
    log_format: Literal["text", "json"] = Field("text", description="text lines, or JSON lines (one object per line).")
    access_log: bool = Field(
        False, description="Log every HTTP request (request id, method, route, status, duration); on at log level debug."
    )
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at API_PREFIX/metrics.")
    metrics_multiproc_dir: Path | None = Field(
        None,
        description="Directory of the per-worker metric files under gunicorn (emptied at start); "
        "default: a fresh directory under the system temp dir, removed at exit.",
    )
    metrics_cache_seconds: float = Field(
        10.0, ge=0, le=3600, description="How long the metrics read from the database (runs by state, queue depth) are reused."
    )
    notifier_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port of the notifier's own /metrics on HOST (unset: no metrics server)."
    )
    ui_url: str | None = Field(None, description="Public UI base URL used in notification links (omitted if unset).")

    @field_validator("api_prefix")
    @classmethod
    def _normalise_prefix(cls, value: str) -> str:
        value = "/" + value.strip("/")
        return "" if value == "/" else value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("log_level must be one of debug, info, warning, error, critical")
        return value

    @field_validator(
        "retention_flow_runs", "retention_events", "retention_notifications", "retention_workers", mode="before"
    )
    @classmethod
    def _parse_retention(cls, value):
        return parse_duration(value)

    @field_serializer("retention_flow_runs", "retention_events", "retention_notifications", "retention_workers")
    def _show_retention(self, value: dt.timedelta | None) -> str:
        return format_duration(value)

    @model_validator(mode="after")
    def _deprecated_events_retention_days(self):
        # APPLIANCE_EVENTS_RETENTION_DAYS (the old name) still works when the new variable is not set.
        if self.events_retention_days is not None and "retention_events" not in self.model_fields_set:
            self.retention_events = dt.timedelta(days=self.events_retention_days)
        return self

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_dir / 'appliance.db'}"

    def masked(self) -> dict:
        """Effective settings with secrets masked, for `appliance config`."""
        values = self.model_dump()
        values["home"] = str(self.home_dir)
        values["database_url"] = mask_url(self.effective_database_url)
        if values.get("secret_key"):
            values["secret_key"] = "********"
        if values.get("auth_string"):
            user = values["auth_string"].split(":", 1)[0]
            values["auth_string"] = f"{user}:********"
        return values


def mask_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:********@host/db"""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, hostpart = rest.rpartition("@")
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":********"
    return f"{scheme}://{creds}@{hostpart}"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MIN_RETENTION = dt.timedelta(hours=1)


def parse_duration(value) -> dt.timedelta | None:
    """A retention duration: "30d", "12h", "90m", "45s", "2w", "3600" (seconds) or a timedelta;
    "off" or empty: None (disabled). At least MIN_RETENTION."""
    if value is None or isinstance(value, dt.timedelta):
        duration = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        duration = dt.timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "off", "none"):
            return None
        match = _DURATION.fullmatch(text)
        if match is None:
            raise ValueError(f"{value!r} is not a duration: use e.g. 30d, 12h, 90m, 3600 (seconds) or off")
        duration = dt.timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    else:
        raise ValueError(f"{value!r} is not a duration")
    if duration is not None and duration < MIN_RETENTION:
        raise ValueError(f"a retention of {format_duration(duration)} is below the minimum of 1h (or use off)")
    return duration


def format_duration(value: dt.timedelta | None) -> str:
    """The largest exact unit: 7d, 36h, 90m, 3601s; "off" for None."""
    if value is None:
        return "off"
    seconds = value.total_seconds()
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{int(seconds // _UNIT_SECONDS[unit])}{unit}"
    return f"{seconds:g}s"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
