"""Settings: one object, FOOTFALL_* variables, standard AWS names, URLs checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from footfall import ConfigError, load_settings
from footfall._settings import parse_clickhouse_url, parse_kafka_url


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("FOOTFALL_") or name.startswith("AWS_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_embedded_setup() -> None:
    s = load_settings()
    assert s.table == "footfall-activities"
    assert s.dynamodb_endpoint is None  # real AWS with the credential chain
    assert s.clickhouse.mode == "embedded"
    assert s.clickhouse.path == Path(".footfall/chdb")
    assert s.kafka is None
    assert s.topic("events") == "footfall.events"


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOOTFALL_TABLE", "acts")
    monkeypatch.setenv("FOOTFALL_KAFKA_BROKER", "kafka://127.0.0.1:9092")
    monkeypatch.setenv("FOOTFALL_TARGET_SHARDS", "8")
    s = load_settings()
    assert (s.table, s.target_shards) == ("acts", 8)
    assert s.kafka is not None and s.kafka.bootstrap == "127.0.0.1:9092"


def test_standard_aws_names_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://localhost:8000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    s = load_settings()
    assert s.dynamodb_endpoint == "http://localhost:8000"
    assert s.region == "eu-west-1"


def test_footfall_endpoint_wins_over_the_aws_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://aws-name:1")
    monkeypatch.setenv("FOOTFALL_DYNAMODB_ENDPOINT", "http://footfall-name:2")
    assert load_settings().dynamodb_endpoint == "http://footfall-name:2"


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOOTFALL_TABLE", "from-env")
    assert load_settings(table="from-code").table == "from-code"


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        s.table = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("FOOTFALL_CLICKHOUSE_URL", "postgres://x", "chdb:///"),
        ("FOOTFALL_CLICKHOUSE_URL", "chdb://", "chdb:///"),
        ("FOOTFALL_CLICKHOUSE_URL", "http://:8123", "http(s)://"),
        ("FOOTFALL_CLICKHOUSE_URL", "http://host:notaport", "http(s)://"),
        ("FOOTFALL_KAFKA_BROKER", "localhost", "kafka://host:port"),
        ("FOOTFALL_KAFKA_BROKER", "http://localhost:9092", "kafka://host:port"),
        ("FOOTFALL_DYNAMODB_ENDPOINT", "localhost:8000", "http(s)://host"),
        ("FOOTFALL_TABLE", "a", "3-255 characters"),
        ("FOOTFALL_TARGET_SHARDS", "0", "greater than or equal to 1"),
        ("FOOTFALL_TARGET_SHARDS", "many", "integer"),
    ],
)
def test_invalid_values_fail_with_the_expected_form(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.field == env
    assert expected in str(caught.value)


def test_a_bad_clickhouse_url_never_echoes_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOOTFALL_CLICKHOUSE_URL", "http://me:s3cret@host:port/db")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "s3cret" not in str(caught.value)


def test_settings_repr_never_shows_a_password() -> None:
    s = load_settings(clickhouse_url="https://me:s3cret@ch.example:8443/analytics")
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.clickhouse)


def test_clickhouse_server_url_is_parsed() -> None:
    t = parse_clickhouse_url("https://me:p%40ss@ch.example:8443/analytics")
    assert (t.mode, t.host, t.port, t.secure) == ("server", "ch.example", 8443, True)
    assert (t.username, t.password, t.database) == ("me", "p@ss", "analytics")
    assert parse_clickhouse_url("http://localhost").port == 8123


def test_chdb_paths_absolute_and_relative() -> None:
    assert parse_clickhouse_url("chdb:///var/lib/ff").path == Path("/var/lib/ff")
    assert parse_clickhouse_url("chdb:///./data/ch").path == Path("data/ch")


def test_kafka_url_with_several_brokers() -> None:
    assert parse_kafka_url("kafka://a:1,b:2").bootstrap_servers == ("a:1", "b:2")
