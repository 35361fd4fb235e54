"""The one typed settings object, read once from the environment (see CONTRACT.md)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from worker.errors import ConfigError

# is_loopback_host is re-exported: the URL checks of other modules import it from here.
from worker.transport import is_loopback_host as is_loopback_host
from worker.transport import transport_problems

Environment = Literal["sandbox", "production"]
BASE_URLS: Mapping[Environment, str] = {
    "sandbox": "https://sandbox.bluebutton.cms.gov",
    "production": "https://api.bluebutton.cms.gov",
}
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bbingest"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_METRICS_PORT = 9108


# Settings that hold a secret (or a password, inside a DSN): each may instead name a file
# holding it with ``<NAME>_FILE``, as Kubernetes and Docker mount secrets.
SECRET_SETTINGS: Final = (
    "BB_CLIENT_SECRET",
    "TOKEN_ENCRYPTION_KEY",
    "TOKEN_DECRYPT_ONLY_KEYS",
    "INTAKE_SECRET",
    "INTAKE_KEYS",
    "DATABASE_URL",
    "REDIS_URL",
)
_DSN_PASSWORD = re.compile(r"(?<=://)([^/@]*?):[^/@]*@")


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***`` (for repr, logs and messages)."""
    return _DSN_PASSWORD.sub(r"\1:***@", dsn)


def base_url_for(environment: Environment, override: str = "") -> str:
    """The BB2 base URL of an environment, or ``override`` once checked: https (plain http
    only for loopback hosts, such as the emulator) and a host without a path."""
    url = override or BASE_URLS[environment]
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("plain http:// is accepted only for loopback hosts")
    if parts.path not in {"", "/"} or parts.query:
        raise ValueError("give the host only, e.g. https://sandbox.bluebutton.cms.gov")
    return f"{parts.scheme}://{parts.netloc}"


class Settings(BaseModel):
    """Every setting of the service; built by :func:`load_settings`, then never changed."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    bb_env: Environment = Field("sandbox", alias="BB_ENV")
    bb_base_url: str = Field("", alias="BB_BASE_URL")
    bb_client_id: str = Field("", alias="BB_CLIENT_ID")
    bb_client_secret: SecretStr = Field(SecretStr(""), alias="BB_CLIENT_SECRET")
    bb_rate_limit: int = Field(10, alias="BB_RATE_LIMIT", ge=1, le=1000)
    bb_rate_burst: int = Field(1, alias="BB_RATE_BURST", ge=1, le=1000)
    bb_rate_margin: float = Field(0.02, alias="BB_RATE_MARGIN", ge=0, le=1)
    bb_http_timeout: float = Field(60.0, alias="BB_HTTP_TIMEOUT", gt=0, le=600)
    bb_refresh_margin: int = Field(120, alias="BB_REFRESH_MARGIN", ge=0, le=3000)
    database_url: str = Field(DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    redis_url: str = Field(DEFAULT_REDIS_URL, alias="REDIS_URL")
    token_encryption_key: SecretStr = Field(SecretStr(""), alias="TOKEN_ENCRYPTION_KEY")
    token_decrypt_only_keys: SecretStr = Field(SecretStr(""), alias="TOKEN_DECRYPT_ONLY_KEYS")
    metrics_port: int = Field(DEFAULT_METRICS_PORT, alias="METRICS_PORT", ge=0, le=65535)
    worker_concurrency: int = Field(8, alias="WORKER_CONCURRENCY", ge=1, le=256)
    worker_exchange_concurrency: int = Field(4, alias="WORKER_EXCHANGE_CONCURRENCY", ge=1, le=64)
    bb_code_lifetime: float = Field(60, alias="BB_CODE_LIFETIME", gt=0, le=3600)
    worker_shutdown_grace: float = Field(25, alias="WORKER_SHUTDOWN_GRACE", ge=0, le=3600)
    job_lease_seconds: float = Field(60, alias="JOB_LEASE_SECONDS", ge=1, le=3600)
    redis_outage_seconds: float = Field(300, alias="REDIS_OUTAGE_SECONDS", gt=0, le=86400)
    intake_secret: SecretStr = Field(SecretStr(""), alias="INTAKE_SECRET")
    intake_keys: SecretStr = Field(SecretStr(""), alias="INTAKE_KEYS")
    intake_max_skew: int = Field(300, alias="INTAKE_MAX_SKEW", ge=1, le=3600)
    # Signature v1 (ambiguous message, no nonce) is accepted before this day (UTC) only.
    intake_v1_until: date = Field(date(2027, 7, 1), alias="INTAKE_V1_UNTIL")
    resync_cadence_hours: float = Field(168, alias="RESYNC_CADENCE_HOURS", gt=0)
    resync_full_every_days: float = Field(28, alias="RESYNC_FULL_EVERY_DAYS", gt=0)
    resync_margin_hours: float = Field(24, alias="RESYNC_MARGIN_HOURS", ge=0)
    resync_daily_share: float = Field(0.5, alias="RESYNC_DAILY_SHARE", gt=0, le=1)
    resync_hour_utc: int = Field(2, alias="RESYNC_HOUR_UTC", ge=0, le=23)
    dormant_retention_days: float = Field(30, alias="DORMANT_RETENTION_DAYS", gt=0)
    error_retention_days: float = Field(30, alias="ERROR_RETENTION_DAYS", gt=0)
    webhook_consent_expiring_days: float = Field(7, alias="WEBHOOK_CONSENT_EXPIRING_DAYS", gt=0)
    # Webhook delivery (issue 15): sends at once per replica, in total and per endpoint.
    webhook_concurrency: int = Field(32, alias="WEBHOOK_CONCURRENCY", ge=1, le=1024)
    webhook_endpoint_concurrency: int = Field(
        16, alias="WEBHOOK_ENDPOINT_CONCURRENCY", ge=1, le=256
    )
    webhook_retention_days: float = Field(7, alias="WEBHOOK_RETENTION_DAYS", gt=0)
    # Retries (exponential backoff, full jitter) go on this long, then the row is dead-lettered.
    webhook_give_up_hours: float = Field(72, alias="WEBHOOK_GIVE_UP_HOURS", gt=0)
    webhook_retry_base_seconds: float = Field(5, alias="WEBHOOK_RETRY_BASE_SECONDS", gt=0)
    webhook_retry_max_seconds: float = Field(3600, alias="WEBHOOK_RETRY_MAX_SECONDS", gt=0)
    log_format: Literal["json", "console"] = Field("json", alias="LOG_FORMAT")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", alias="LOG_LEVEL")
    allow_insecure_transport: bool = Field(False, alias="ALLOW_INSECURE_TRANSPORT")
    # libpq's variable, which asyncpg reads when DATABASE_URL names no host: read here only
    # so that the TLS rule sees the host asyncpg will reach.
    pghost: str = Field("", alias="PGHOST")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The DSNs may carry passwords: repr() and str() show them masked.
        for name, value in super().__repr_args__():
            yield name, mask_dsn(value) if name in {"database_url", "redis_url"} else value

    @field_validator("database_url")
    @classmethod
    def _postgres_dsn(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"postgres", "postgresql"}:
            raise ValueError("must be a postgresql:// DSN")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _burst_within_rate(self) -> Settings:
        if self.bb_rate_burst > self.bb_rate_limit:
            raise ValueError("BB_RATE_BURST: must not exceed BB_RATE_LIMIT")
        return self

    @model_validator(mode="after")
    def _base_url(self) -> Settings:
        try:
            url = base_url_for(self.bb_env, self.bb_base_url)
        except ValueError as exc:
            raise ValueError(f"BB_BASE_URL: {exc}") from None
        object.__setattr__(self, "bb_base_url", url)
        return self

    @model_validator(mode="after")
    def _verified_transport(self) -> Settings:
        problems = self.insecure_transport()
        if problems and not self.allow_insecure_transport:
            raise ValueError(
                "; ".join(problems) + " (or ALLOW_INSECURE_TRANSPORT=1 on a private network)"
            )
        return self

    def insecure_transport(self) -> list[str]:
        """Each link to Postgres or Redis that would go unverified (see worker.transport);
        non-empty only with ALLOW_INSECURE_TRANSPORT, and then logged on every start."""
        return transport_problems(self.database_url, self.redis_url, self.pghost)


def _read_secret_files(env: dict[str, str]) -> None:
    """Replace each ``<NAME>_FILE`` of :data:`SECRET_SETTINGS` by ``<NAME>`` read from the file
    (surrounding whitespace stripped: editors and ``echo`` add a newline)."""
    for name in SECRET_SETTINGS:
        path = env.pop(f"{name}_FILE", "")
        if not path:
            continue
        if env.get(name):
            raise ConfigError(f"set {name} or {name}_FILE, not both")
        try:
            env[name] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from exc


def _describe(error: ValidationError) -> str:
    reasons = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        reasons.append(f"{field}: {message}" if field else message)
    return "; ".join(reasons)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; a ConfigError names every bad variable at once."""
    source = os.environ if environ is None else environ
    env = {key: value for key, value in source.items() if key.isupper()}
    _read_secret_files(env)
    try:
        return Settings.model_validate(env)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {_describe(exc)}") from None
