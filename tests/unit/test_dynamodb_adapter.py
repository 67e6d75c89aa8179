"""The DynamoDB adapter's own logic: error translation by code, batch retries, give-up reports.

The client here is a scripted stand-in for the wire (no emulation of DynamoDB): it answers
BatchWriteItem with what a throttled table answers, so the retry loop is proven in isolation.
The same paths run against DynamoDB Local in tests/integration.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import botocore.exceptions
import pytest

from footfall import ConfigError, StoreError, StoreThrottled, StoreUnavailable, load_settings
from footfall._dynamodb import DynamoDB, translate_error


def client_error(code: str, status: int = 400) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "BatchWriteItem",
    )


@pytest.mark.parametrize(
    ("exc", "kind", "transient"),
    [
        (client_error("ProvisionedThroughputExceededException"), StoreThrottled, True),
        (client_error("ThrottlingException"), StoreThrottled, True),
        (client_error("RequestLimitExceeded"), StoreThrottled, True),
        (client_error("InternalServerError", 500), StoreUnavailable, True),
        (client_error("Whatever", 503), StoreUnavailable, True),
        (client_error("ValidationException"), StoreError, False),
        (client_error("ResourceNotFoundException"), StoreError, False),
        (
            botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"),
            StoreUnavailable,
            True,
        ),
        (botocore.exceptions.NoCredentialsError(), ConfigError, False),
    ],
)
def test_errors_are_classified_by_code(exc: Exception, kind: type, transient: bool) -> None:
    error = translate_error(exc, table="tbl")
    assert type(error) is kind
    assert error.transient is transient


def test_missing_table_error_says_how_to_create_it() -> None:
    assert "footfall table create" in str(
        translate_error(client_error("ResourceNotFoundException"))
    )


class ScriptedClient:
    """Answers BatchWriteItem from a script: leave N items unprocessed, or raise."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls: list[int] = []

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
        ((table, requests),) = RequestItems.items()
        self.calls.append(len(requests))
        step = self.script.pop(0) if self.script else 0
        if isinstance(step, Exception):
            raise step
        return {"UnprocessedItems": {table: requests[:step]} if step else {}}


def items(n: int) -> list[tuple[int, dict[str, Any]]]:
    return [(i, {"actor": f"a{i}", "sk": f"{i:013d}#e{i}", "type": "t"}) for i in range(n)]


def store(script: list[Any]) -> tuple[DynamoDB, ScriptedClient]:
    client = ScriptedClient(script)
    return DynamoDB(load_settings(table="tbl"), client=client), client  # type: ignore[arg-type]


def test_unprocessed_items_are_retried_until_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("footfall._dynamodb.time.sleep", lambda s: None)
    db, client = store([10, 3, 0])
    outcome = db.batch_put(items(25))
    assert client.calls == [25, 10, 3]
    assert sorted(outcome.written) == list(range(25)) and outcome.failed == []
    assert outcome.retries == 2


def test_transient_errors_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("footfall._dynamodb.time.sleep", lambda s: None)
    db, client = store([client_error("ThrottlingException"), client_error("X", 500), 0])
    outcome = db.batch_put(items(5))
    assert client.calls == [5, 5, 5] and len(outcome.written) == 5


def test_giving_up_reports_exactly_the_unwritten_items(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("footfall._dynamodb.time.sleep", lambda s: None)
    db, _ = store([4] * 20)
    outcome = db.batch_put(items(10), max_attempts=3)
    assert len(outcome.written) == 6
    assert [i for i, _ in outcome.failed] == [0, 1, 2, 3]
    assert all("gave up after 3 attempts" in reason for _, reason in outcome.failed)


def test_terminal_errors_fail_the_chunk_without_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("footfall._dynamodb.time.sleep", lambda s: None)
    db, client = store([client_error("ValidationException")])
    outcome = db.batch_put(items(3))
    assert client.calls == [3]
    assert outcome.written == [] and [i for i, _ in outcome.failed] == [0, 1, 2]
    assert "ValidationException" in outcome.failed[0][1]


def test_backoff_grows_between_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    caps: list[float] = []
    monkeypatch.setattr("footfall._dynamodb.random.uniform", lambda lo, hi: caps.append(hi) or 0)
    monkeypatch.setattr("footfall._dynamodb.time.sleep", lambda s: None)
    db, _ = store([1, 1, 1, 0])
    db.batch_put(items(2))
    assert caps == sorted(caps) and caps[0] < caps[-1]


@pytest.mark.parametrize(
    "raw",
    [
        {"actor": {"S": "a"}, "ts": {"N": "1764000000000"}, "rev": {"N": "-1.50"}},
        {"attributes": {"M": {"s": {"S": ""}, "n": {"N": "7"}, "m": {"M": {"x": {"N": "1e3"}}}}}},
        {"l": {"L": [{"S": "x"}, {"BOOL": True}, {"NULL": True}]}, "ss": {"SS": ["a", "b"]}},
        {"ns": {"NS": ["1", "2.5"]}, "b": {"B": b"\x00"}, "flag": {"BOOL": False}},
    ],
)
def test_items_are_deserialized_as_boto3_would(raw: dict[str, Any]) -> None:
    from boto3.dynamodb.types import TypeDeserializer

    db, _ = store([])
    expected = {k: TypeDeserializer().deserialize(v) for k, v in raw.items()}
    got = db._deserialize(raw)
    assert got == expected
    assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]


def test_requests_the_adapter_builds_skip_botocores_validation_walk() -> None:
    """botocore's parameter validation repeated the adapter's own checks at a third of a batch
    write's client CPU; the DynamoDB client leaves it off (DynamoDB still refuses bad input)."""
    import botocore.validate
    from botocore.stub import Stubber

    from footfall._aws import make_client, make_streams_client

    settings = load_settings(table="tbl", dynamodb_endpoint="http://127.0.0.1:9")
    client = make_client(settings)
    with Stubber(client) as stub:
        stub.add_response("batch_write_item", {"UnprocessedItems": {}})
        with mock.patch.object(
            botocore.validate.ParamValidator, "validate", side_effect=AssertionError("validated")
        ):
            outcome = DynamoDB(settings, client=client).batch_put(items(3))
    assert outcome.written == [0, 1, 2]
    assert make_streams_client(settings).meta.config.parameter_validation is True
