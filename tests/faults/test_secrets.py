"""Secrets never leak: no password or AWS secret in logs (at DEBUG, every library's logger), error
messages (with their whole exception chain), reprs, or the CLI's output.

The secrets are fresh random strings; a ClickHouse password holds the URL-special characters a
real one may hold (`# / ? @ :`), percent-encoded as the URL form requires, and the tests also
give it raw, the way a user pasting a password gets it wrong.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

import query
from footfall import ConfigError, FootfallError, load_settings
from footfall._clickhouse import connect
from footfall._dynamodb import DynamoDB
from footfall.services import free_port
from footfall.services._process import http_probe
from ingest import Tracker

pytestmark = pytest.mark.faults

TOKEN = uuid.uuid4().hex
CH_PASSWORD = f"Ch{TOKEN[:8]}#/?@:x{TOKEN[8:14]}"  # every character a URL treats specially
CH_ENCODED = quote(CH_PASSWORD, safe="")
AWS_SECRET = f"wJalr{TOKEN[:10]}/K7MDENG+bPxRfi{TOKEN[10:20]}"
AWS_TOKEN = f"IQoJb3JpZ2luX2Vj{TOKEN[::-1]}SessionToken"
SECRETS = (CH_PASSWORD, CH_ENCODED, AWS_SECRET, AWS_TOKEN, TOKEN[:8] + "#")
PASSWORD_ENV = "FOOTFALL_TEST_CH_PASSWORD"


def leaks(text: str) -> list[str]:
    """The secrets (or their distinctive parts) that `text` shows."""
    pieces = [*SECRETS, CH_PASSWORD[:10], AWS_SECRET[5:20], AWS_TOKEN[16:40]]
    return [piece for piece in pieces if piece in text]


def everything_about(exc: BaseException) -> str:
    """What a user could ever see of an error: its text, repr, data and whole traceback chain."""
    data = [repr(v) for v in vars(exc).values()] if hasattr(exc, "__dict__") else []
    return "\n".join([str(exc), repr(exc), *data, *traceback.format_exception(exc)])


@pytest.fixture
def aws_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS credentials in the environment, as the AWS credential chain reads them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFOOTFALLTEST0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", AWS_TOKEN)


@pytest.fixture(scope="module")
def guarded_clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`http://alice:<password>@127.0.0.1:<port>/default`: a ClickHouse server requiring a
    password (footfall's HTTP server over chDB, a process of its own, stopped by PID)."""
    port = free_port()
    home = tmp_path_factory.mktemp("guarded-clickhouse")
    argv = [
        sys.executable,
        "-m",
        "footfall.services._clickhouse_http",
        "--path",
        str(home / "chdb"),
        "--port",
        str(port),
        "--user",
        "alice",
        "--password-env",
        PASSWORD_ENV,
    ]
    log_file = (home / "server.log").open("wb")
    env = {**os.environ, PASSWORD_ENV: CH_PASSWORD}
    process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        probe = http_probe(f"http://127.0.0.1:{port}/ping", body="Ok.")
        deadline = time.monotonic() + 60
        while not probe.check():
            assert process.poll() is None, (home / "server.log").read_text()
            assert time.monotonic() < deadline, "the guarded ClickHouse server did not start"
            time.sleep(0.1)
        yield f"http://alice:{CH_ENCODED}@127.0.0.1:{port}/default"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()
        assert not leaks((home / "server.log").read_text(errors="replace"))


# -- settings: repr and invalid values ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"http://alice:{CH_ENCODED}@db.internal:8123/analytics",
        f"https://alice:{CH_ENCODED}@db.internal/analytics",
        f"http://:{CH_ENCODED}@db.internal:8123",
    ],
)
def test_settings_and_handles_never_show_the_clickhouse_password(url: str) -> None:
    settings = load_settings(clickhouse_url=url)
    assert settings.clickhouse.password == CH_PASSWORD  # the password itself is understood
    shown = [
        repr(settings),
        str(settings),
        repr(settings.clickhouse),
        str(settings.clickhouse),
        repr(query.connect(settings)),
        repr(Tracker("views", settings)),
        f"{settings!r} {settings!s}",
    ]
    assert not leaks("\n".join(shown))


@pytest.mark.parametrize(
    ("setting", "url"),
    [
        ("clickhouse_url", f"http://alice:{CH_PASSWORD}@db.internal:8123/analytics"),  # raw
        ("clickhouse_url", f"http://alice:{CH_ENCODED}@db.internal:99999/analytics"),  # port
        ("clickhouse_url", f"http://alice:{CH_ENCODED}@db.internal:port/analytics"),
        ("clickhouse_url", f"http://alice:{CH_ENCODED}@/analytics"),  # no host
        ("clickhouse_url", f"http://alice:{CH_ENCODED}@db.internal/a/b"),  # a path
        ("clickhouse_url", f"ftp://alice:{CH_ENCODED}@db.internal/analytics"),  # scheme
        ("clickhouse_url", f"clickhouse://alice:{CH_PASSWORD}@db.internal:9000/analytics"),
        ("clickhouse_url", f"alice:{CH_PASSWORD}@db.internal"),  # no scheme at all
        ("clickhouse_url", f"chdb://alice:{CH_ENCODED}@/var/lib/chdb"),
        ("kafka_broker", f"kafka://alice:{CH_ENCODED}@broker:9092"),
        ("kafka_broker", f"alice:{CH_PASSWORD}@broker:9092"),
        ("dynamodb_endpoint", f"ftp://alice:{CH_ENCODED}@dynamodb.internal"),
    ],
)
def test_an_invalid_service_url_is_refused_without_showing_its_password(
    setting: str, url: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**{setting: url})
    assert caught.value.field == f"FOOTFALL_{setting.upper()}"
    assert not leaks(everything_about(caught.value))


def test_an_invalid_url_from_the_environment_is_refused_without_showing_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOOTFALL_CLICKHOUSE_URL", f"http://alice:{CH_PASSWORD}@db:8123/x")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert not leaks(everything_about(caught.value))


# -- failing and working connections, with every logger at DEBUG --------------------------------


def test_failing_clickhouse_connects_never_show_the_password(
    guarded_clickhouse: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    closed = guarded_clickhouse.replace(guarded_clickhouse.split(":")[-1].split("/")[0], "9")
    wrong = guarded_clickhouse.replace(CH_ENCODED, quote(CH_PASSWORD[::-1], safe=""))
    for url in (closed, wrong):
        with pytest.raises(FootfallError) as caught:
            connect(load_settings(clickhouse_url=url)).query_arrow("SELECT 1")
        assert not leaks(everything_about(caught.value))
        assert CH_PASSWORD[::-1] not in everything_about(caught.value)
    assert not leaks(caplog.text)
    assert CH_PASSWORD[::-1] not in caplog.text


def test_clickhouse_queries_with_a_password_log_nothing_secret_at_debug(
    guarded_clickhouse: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = load_settings(clickhouse_url=guarded_clickhouse)
    with connect(settings) as ch:
        assert ch.query_arrow("SELECT 1 AS one").to_pylist() == [{"one": 1}]
        with pytest.raises(FootfallError) as caught:
            ch.query_arrow("SELECT no_such_column FROM system.one")
        assert not leaks(everything_about(caught.value) + repr(ch))
    with query.connect(settings) as ff:
        assert ff.sql("SELECT 2 AS two")["two"].to_list() == [2]
    assert not leaks(caplog.text)


@pytest.mark.usefixtures("aws_secrets")
def test_dynamodb_calls_log_no_aws_secret_at_debug(
    dynamodb_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """boto3 signs with the environment's credentials; no log line shows the secret key or the
    session token, whatever logger (botocore's own included) and level."""
    caplog.set_level(logging.DEBUG)
    settings = load_settings(dynamodb_endpoint=dynamodb_endpoint, table=f"s-{TOKEN[:8]}")
    tracker = Tracker("secret-views", settings)
    tracker.ensure_table()
    tracker.record_activity("bob", "/p/1", browser="x")
    tracker.record_many([{"actor": "bob", "target": f"/p/{i}"} for i in range(30)])
    assert any(r.name.startswith("botocore") for r in caplog.records)  # DEBUG was captured
    assert not leaks(caplog.text)


@pytest.mark.usefixtures("aws_secrets")
def test_failing_dynamodb_calls_show_no_aws_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    unreachable = load_settings(dynamodb_endpoint=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(FootfallError) as caught:
        DynamoDB(unreachable).describe()
    assert not leaks(everything_about(caught.value))
    assert not leaks(caplog.text)


# -- the command line ----------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FOOTFALL_", "AWS_"))},
        "FOOTFALL_HOME": str(home),
        "COLUMNS": "200",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "footfall", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_output_shows_no_secret(
    dynamodb_endpoint: str, guarded_clickhouse: str, tmp_path: Path
) -> None:
    """`services status`, a command that talks to DynamoDB at DEBUG, one that queries
    ClickHouse, one that cannot reach it and one with a malformed URL: stdout and stderr of each
    hold no secret."""
    secrets = {
        "AWS_ACCESS_KEY_ID": "AKIAFOOTFALLTEST0001",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_SESSION_TOKEN": AWS_TOKEN,
        "FOOTFALL_CLICKHOUSE_URL": guarded_clickhouse,
        "FOOTFALL_DYNAMODB_ENDPOINT": dynamodb_endpoint,
        "FOOTFALL_TABLE": f"cli-{TOKEN[:8]}",
    }
    unreachable = guarded_clickhouse.replace(guarded_clickhouse.split(":")[-1].split("/")[0], "9")
    malformed = f"http://alice:{CH_PASSWORD}@127.0.0.1:8123/default"
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "services status": (["services", "status"], secrets),
        "-v services status": (["-v", "services", "status"], secrets),
        "-v table create": (["-v", "table", "create"], secrets),
        "-v query": (["-v", "query", "SELECT 1 AS one"], secrets),
        "query, unreachable": (
            ["-v", "query", "SELECT 1"],
            {**secrets, "FOOTFALL_CLICKHOUSE_URL": unreachable},
        ),
        "malformed url": (
            ["services", "status"],
            {**secrets, "FOOTFALL_CLICKHOUSE_URL": malformed},
        ),
    }
    runs = {name: run_cli(*args, env=env, home=tmp_path) for name, (args, env) in commands.items()}
    assert runs["services status"].returncode == 0, runs["services status"].stderr
    assert "dynamodb" in runs["services status"].stdout
    assert runs["-v table create"].returncode == 0, runs["-v table create"].stderr
    assert "botocore" in runs["-v table create"].stderr  # DEBUG logging was on
    assert runs["-v query"].returncode == 0, runs["-v query"].stderr
    assert runs["query, unreachable"].returncode != 0
    assert runs["malformed url"].returncode != 0
    assert "FOOTFALL_CLICKHOUSE_URL" in runs["malformed url"].stderr
    for name, run in runs.items():
        assert not leaks(run.stdout + run.stderr), f"{name}: {leaks(run.stdout + run.stderr)}"
