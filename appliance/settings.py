"""All settings of the appliance, in one pydantic-settings class.

Every setting is read from an environment variable named ``APPLIANCE_<FIELD>``; the
defaults below are the documented ones (README, "Settings").
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
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
    events_retention_days: float = Field(7.0, gt=0, description="Events older than this are deleted.")
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
