"""The one settings object: read once (FOOTFALL_* environment variables), frozen, passed down.

Service URLs are parsed here and nowhere else: an invalid one fails at start-up with a message
that shows the expected form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._errors import ConfigError

__all__ = ["ClickHouseTarget", "KafkaTarget", "Settings", "load_settings"]

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")

CLICKHOUSE_FORMS = "chdb:///path/to/dir (embedded) or http(s)://user:password@host:port/database"
KAFKA_FORM = "kafka://host:port[,host:port...]"
DYNAMODB_FORM = "http(s)://host[:port], or unset for AWS"


@dataclass(frozen=True, slots=True)
class ClickHouseTarget:
    """Where ClickHouse is: the embedded engine on a directory, or a server over HTTP(S)."""

    mode: Literal["embedded", "server"]
    path: Path | None = None
    host: str = ""
    port: int = 0
    secure: bool = False
    username: str = "default"
    password: str = ""
    database: str = "default"

    def __repr__(self) -> str:  # never show the password
        if self.mode == "embedded":
            return f"ClickHouseTarget(embedded, path={self.path})"
        scheme = "https" if self.secure else "http"
        return (
            f"ClickHouseTarget({scheme}://{self.username}@{self.host}:{self.port}/{self.database})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class KafkaTarget:
    """Kafka bootstrap servers, `host:port` each."""

    bootstrap_servers: tuple[str, ...]

    @property
    def bootstrap(self) -> str:
        return ",".join(self.bootstrap_servers)


def parse_clickhouse_url(url: str) -> ClickHouseTarget:
    """Parse `chdb:///dir` or `http(s)://user:pass@host:port/db` into a ClickHouseTarget."""
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        if parts.netloc or not parts.path or parts.path == "/":
            raise ConfigError("FOOTFALL_CLICKHOUSE_URL", _redact(url), CLICKHOUSE_FORMS)
        raw = parts.path
        # chdb:///abs/dir is absolute; chdb:///./rel/dir is relative to the working directory
        path = Path(raw[1:]) if raw.startswith("/./") or raw.startswith("/../") else Path(raw)
        return ClickHouseTarget(mode="embedded", path=path)
    if parts.scheme in ("http", "https"):
        try:
            port = parts.port
        except ValueError:
            raise ConfigError("FOOTFALL_CLICKHOUSE_URL", _redact(url), CLICKHOUSE_FORMS) from None
        if not parts.hostname:
            raise ConfigError("FOOTFALL_CLICKHOUSE_URL", _redact(url), CLICKHOUSE_FORMS)
        secure = parts.scheme == "https"
        database = parts.path.strip("/") or "default"
        if "/" in database:
            raise ConfigError("FOOTFALL_CLICKHOUSE_URL", _redact(url), CLICKHOUSE_FORMS)
        return ClickHouseTarget(
            mode="server",
            host=parts.hostname,
            port=port or (8443 if secure else 8123),
            secure=secure,
            username=unquote(parts.username) if parts.username else "default",
            password=unquote(parts.password) if parts.password else "",
            database=database,
        )
    raise ConfigError("FOOTFALL_CLICKHOUSE_URL", _redact(url), CLICKHOUSE_FORMS)


def parse_kafka_url(url: str) -> KafkaTarget:
    """Parse `kafka://host:port[,host:port]` (the scheme may be omitted)."""
    rest = url[len("kafka://") :] if url.startswith("kafka://") else url
    servers = tuple(s.strip() for s in rest.rstrip("/").split(",") if s.strip())
    if "://" in rest or not servers or not all(_HOST_PORT.match(s) for s in servers):
        raise ConfigError("FOOTFALL_KAFKA_BROKER", _redact(url), KAFKA_FORM)
    return KafkaTarget(servers)


def _redact(url: str) -> str:
    """The URL with any password replaced by ***.

    Also for text that is not a valid URL: a password holding `# / ? @` that was not
    percent-encoded ends the URL's netloc early, so the user information is taken to run from
    the scheme (or the start) to the last `@` of the whole text.
    """
    scheme_end = url.find("://")
    start = 0 if scheme_end < 0 else scheme_end + 3
    at = url.rfind("@")
    if at < start or ":" not in url[start:at]:
        return url
    user = url[start:at].split(":", 1)[0]
    return f"{url[:start]}{user}:***{url[at:]}"


class Settings(BaseSettings):
    """footfall's configuration. Every field reads `FOOTFALL_<NAME>`; see README for each."""

    model_config = SettingsConfigDict(
        env_prefix="FOOTFALL_", frozen=True, extra="forbid", populate_by_name=True
    )

    dynamodb_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("FOOTFALL_DYNAMODB_ENDPOINT", "AWS_ENDPOINT_URL_DYNAMODB"),
        description="DynamoDB endpoint URL; unset means AWS with the normal credential chain.",
    )
    region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("FOOTFALL_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    table: str = "footfall-activities"
    target_shards: int = Field(default=4, ge=1, le=64)
    ttl_days: int | None = Field(default=None, ge=1)
    clickhouse_url: str = "chdb:///./.footfall/chdb"
    kafka_broker: str | None = None
    topic_prefix: str = "footfall"
    topic_partitions: int = Field(default=4, ge=1, le=1024)
    home: Path = Path(".footfall")
    write_concurrency: int = Field(
        default=16,
        ge=1,
        le=64,
        description="Units (check + write of up to 100 items) record_many runs at once. With "
        "the client's request validation off, 16 beat 8 (1,764 vs 1,561 items/s) on a loaded "
        "2-core machine, where a bare BatchWriteItem loop was best at 16 threads (2026-11-30).",
    )

    @field_validator("dynamodb_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(DYNAMODB_FORM)
        return value.rstrip("/")

    @field_validator("table")
    @classmethod
    def _check_table(cls, value: str) -> str:
        if not _TABLE_NAME.match(value):
            raise ValueError("3-255 characters of A-Z a-z 0-9 _ . -")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.match(value):
            raise ValueError("1-200 characters of A-Z a-z 0-9 _ . -")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _check_clickhouse(cls, value: str) -> str:
        parse_clickhouse_url(value)
        return value

    @field_validator("kafka_broker")
    @classmethod
    def _check_kafka(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parse_kafka_url(value)
        return value

    def __repr_args__(self) -> Any:  # repr() and str() never show a password
        for name, value in super().__repr_args__():
            yield name, _redact(value) if name == "clickhouse_url" and value else value

    @property
    def clickhouse(self) -> ClickHouseTarget:
        return parse_clickhouse_url(self.clickhouse_url)

    @property
    def kafka(self) -> KafkaTarget | None:
        return parse_kafka_url(self.kafka_broker) if self.kafka_broker else None

    def topic(self, name: Literal["events", "cdc", "dlq"]) -> str:
        """The Kafka topic for a stream: `footfall.events`, `footfall.cdc`, `footfall.dlq`."""
        return f"{self.topic_prefix}.{name}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings once; explicit keyword arguments win over the environment.

    Raises ConfigError naming the first bad setting and the form it expects.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = str(error["loc"][0]) if error["loc"] else "?"
        name = "FOOTFALL_" + loc.upper().removeprefix("FOOTFALL_")
        cause = error.get("ctx", {}).get("error")
        expected = str(cause) if isinstance(cause, ConfigError) else error["msg"]
        if isinstance(cause, ConfigError):
            expected = cause.expected
        value = error.get("input")
        if isinstance(value, str):
            value = _redact(value)
        # not `from exc`: pydantic's error quotes the input, which may hold a password
        raise ConfigError(name, value, expected.removeprefix("Value error, ")) from None
