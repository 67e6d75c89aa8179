"""The DynamoDB adapter: the only module that talks to boto3 for the activity table.

It speaks footfall's types outward: plain-Python items in (see `footfall._table`), footfall errors
out. botocore's errors are translated here, by their error code, never by message text.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import botocore.config
import botocore.exceptions
from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeDeserializer, TypeSerializer

from ._aws import make_client, make_streams_client
from ._errors import ConfigError, FootfallError, StoreError, StoreThrottled, StoreUnavailable
from ._settings import Settings
from ._table import TTL_ATTRIBUTE, table_definition

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["BatchOutcome", "DynamoDB", "make_client", "make_streams_client", "translate_error"]

log = logging.getLogger(__name__)
T = TypeVar("T")

STORE = "DynamoDB"
BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
_EXACT = 10**38  # whole numbers below this are exact as DynamoDB numbers (38 digits)
_THROTTLING = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededException",
    }
)
_UNAVAILABLE = frozenset({"InternalServerError", "ServiceUnavailable", "InternalFailure"})
_CONNECTION = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionError,
)


def translate_error(exc: Exception, *, table: str = "") -> FootfallError:
    """The footfall error for a botocore error, classified by its code."""
    if isinstance(exc, FootfallError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        message = str(error.get("Message", ""))
        if code in _THROTTLING:
            return StoreThrottled(STORE, f"throttled ({code}); slow down", code=code)
        if code in _UNAVAILABLE or status >= 500:
            return StoreUnavailable(STORE, f"server error {code}: {message}", code=code)
        if code == "ResourceNotFoundException":
            return StoreError(
                STORE,
                f"table {table!r} not found; create it with `footfall table create` "
                "or check FOOTFALL_TABLE and FOOTFALL_DYNAMODB_ENDPOINT",
                code=code,
            )
        return StoreError(STORE, f"{code}: {message}", code=code)
    if isinstance(exc, _CONNECTION):
        return StoreUnavailable(
            STORE,
            f"cannot reach DynamoDB ({type(exc).__name__}); is the endpoint up? "
            "(`footfall services up` starts DynamoDB Local)",
            code=type(exc).__name__,
        )
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.NoRegionError):
        return ConfigError(
            "AWS credentials", None, "credentials from the AWS chain (env, profile, role)"
        )
    return StoreError(STORE, f"{type(exc).__name__}: {exc}", code=type(exc).__name__)


@dataclass(slots=True)
class BatchOutcome:
    """What one chunk of a batch write did: indices written, indices found stored already
    (`existing`, not written again) and `(index, reason)` failures."""

    written: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    retries: int = 0
    existing: list[int] = field(default_factory=list)


class DynamoDB:
    """The activity table on DynamoDB (AWS, DynamoDB Local, or any compatible endpoint)."""

    def __init__(self, settings: Settings, *, client: DynamoDBClient | None = None) -> None:
        self.settings = settings
        self.table = settings.table
        self.client: DynamoDBClient = client or make_client(settings)
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    # -- table -------------------------------------------------------------------------------

    def ensure_table(self, *, wait_s: float = 60.0) -> bool:
        """Create the table (and enable TTL when retention is set); True if it was created."""
        created = False
        try:
            self._call(self.client.create_table, **table_definition(self.table))
            created = True
            log.info("created DynamoDB table %s", self.table)
        except StoreError as exc:
            if exc.code != "ResourceInUseException":
                raise
        self._wait_active(wait_s)
        if self.settings.ttl_days is not None:
            self._enable_ttl()
        return created

    def describe(self) -> dict[str, Any]:
        return dict(self._call(self.client.describe_table, TableName=self.table)["Table"])

    def _wait_active(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            status = self.describe().get("TableStatus")
            if status == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise StoreUnavailable(STORE, f"table {self.table} still {status} after {wait_s}s")
            time.sleep(0.2)

    def _enable_ttl(self) -> None:
        current = self._call(self.client.describe_time_to_live, TableName=self.table)
        if current["TimeToLiveDescription"].get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            return
        self._call(
            self.client.update_time_to_live,
            TableName=self.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )

    # -- writes ------------------------------------------------------------------------------

    def put_new(self, item: dict[str, Any]) -> bool:
        """Put an item unless its key exists; False when it did (a no-op, not a second item)."""
        return (
            self._conditional(
                self.client.put_item,
                TableName=self.table,
                Item=self._wire(item),
                ConditionExpression="attribute_not_exists(sk)",
            )
            is not None
        )

    def existing_keys(
        self, keys: Sequence[dict[str, str]], *, max_attempts: int = 10
    ) -> set[tuple[str, str]]:
        """Which of these `{actor, sk}` keys are stored (BatchGetItem, 100 keys a call).
        Transient errors and UnprocessedKeys are retried with backoff, as the writes are."""
        wire = [self._wire(k) for k in keys]
        found: set[tuple[str, str]] = set()
        for start in range(0, len(wire), BATCH_GET_LIMIT):
            found |= self._stored(wire[start : start + BATCH_GET_LIMIT], max_attempts)
        return found

    def put_missing(
        self,
        items: Sequence[tuple[int, dict[str, Any]]],
        *,
        skip_existing: bool = True,
        max_attempts: int = 10,
    ) -> BatchOutcome:
        """Write up to 100 `(index, item)` pairs that are not stored yet: one BatchGetItem finds
        those already stored (listed as `existing`, not written again: a repeated activity is a
        no-op), then BatchWriteItem writes the others, 25 a call (see `batch_put`). Each item is
        serialized once for both. An existence check still failing after its retries fails its
        items, with why; none of them is written."""
        if len(items) > BATCH_GET_LIMIT:
            raise ValueError(f"at most {BATCH_GET_LIMIT} items a call, not {len(items)}")
        outcome = BatchOutcome()
        wire = [(index, self._wire(item)) for index, item in items]
        if skip_existing and wire:
            keys = [{"actor": w["actor"], "sk": w["sk"]} for _, w in wire]
            try:
                stored = self._stored(keys, max_attempts)
            except FootfallError as exc:
                outcome.failed.extend(
                    (index, f"existence check failed: {exc}") for index, _ in wire
                )
                return outcome
            if stored:
                outcome.existing = [i for i, w in wire if _wire_key(w) in stored]
                wire = [(i, w) for i, w in wire if _wire_key(w) not in stored]
        for start in range(0, len(wire), BATCH_WRITE_LIMIT):
            self._write(wire[start : start + BATCH_WRITE_LIMIT], outcome, max_attempts)
        return outcome

    def batch_put(
        self,
        items: Sequence[tuple[int, dict[str, Any]]],
        *,
        max_attempts: int = 10,
    ) -> BatchOutcome:
        """Write up to 25 `(index, item)` pairs with BatchWriteItem.

        UnprocessedItems and transient errors are retried with exponential backoff and jitter
        up to `max_attempts`; what is still unwritten then is returned as failed, with why.
        `retries` counts every repeated request, the SDK's own retries of throttled and failed
        calls included.
        """
        outcome = BatchOutcome()
        self._write([(index, self._wire(item)) for index, item in items], outcome, max_attempts)
        return outcome

    def update_attributes(
        self, key: dict[str, str], changes: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Set attributes of a stored item and bump its `rev`; None if the item is not stored."""
        names = {"#a": "attributes", "#rev": "rev"}
        values: dict[str, Any] = {":one": 1}
        sets = []
        for i, (name, value) in enumerate(changes.items()):
            names[f"#k{i}"] = name
            values[f":v{i}"] = value
            sets.append(f"#a.#k{i} = :v{i}")
        response = self._conditional(
            self.client.update_item,
            TableName=self.table,
            Key=self._wire(key),
            UpdateExpression="SET " + ", ".join(sets) + " ADD #rev :one",
            ConditionExpression="attribute_exists(sk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=self._wire(values),
            ReturnValues="ALL_NEW",
        )
        return None if response is None else self._deserialize(response["Attributes"])

    def delete(self, key: dict[str, str]) -> bool:
        """Delete a stored item; False if it was not stored."""
        return (
            self._conditional(
                self.client.delete_item,
                TableName=self.table,
                Key=self._wire(key),
                ConditionExpression="attribute_exists(sk)",
            )
            is not None
        )

    # -- reads -------------------------------------------------------------------------------

    def query(
        self,
        *,
        key_name: str,
        key_value: str,
        sk_between: tuple[str, str] | None = None,
        index: str | None = None,
        newest_first: bool = True,
        limit: int | None = None,
        page_size: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Items of one partition in sort-key order, pages fetched lazily; one Query per page."""
        names = {"#pk": key_name}
        values: dict[str, Any] = {":pk": key_value}
        condition = "#pk = :pk"
        if sk_between is not None:
            names["#sk"] = "sk"
            values[":lo"], values[":hi"] = sk_between
            condition += " AND #sk BETWEEN :lo AND :hi"
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": self._wire(values),
            "ScanIndexForward": not newest_first,
        }
        if index:
            request["IndexName"] = index
        remaining = limit
        while True:
            request["Limit"] = page_size if remaining is None else min(page_size, remaining)
            response = self._call(self.client.query, **request)
            for raw in response.get("Items", []):
                yield self._deserialize(raw)
            if remaining is not None:
                remaining -= len(response.get("Items", []))
                if remaining <= 0:
                    return
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def scan(
        self,
        *,
        segment: int,
        total_segments: int,
        page_size: int | None = None,
        ts_range: tuple[int, int] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Items of one segment of a parallel Scan (ConsistentRead), pages of up to 1 MB (or
        `page_size` items) fetched lazily; `ts_range=(lo, hi)` keeps items with lo <= ts < hi."""
        request: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        request.update(Segment=segment, TotalSegments=total_segments)
        if page_size is not None:
            request["Limit"] = page_size
        if ts_range is not None:
            request["FilterExpression"] = "#ts >= :lo AND #ts < :hi"
            request["ExpressionAttributeNames"] = {"#ts": "ts"}
            bounds = {":lo": ts_range[0], ":hi": ts_range[1]}
            request["ExpressionAttributeValues"] = self._wire(bounds)
        while True:
            response = self._call(self.client.scan, **request)
            for raw in response.get("Items", []):
                yield self._deserialize(raw)
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    # -- plumbing ----------------------------------------------------------------------------

    def _conditional(self, method: Callable[..., Any], **kwargs: Any) -> Any | None:
        """A conditional write's response, or None when its condition did not hold."""
        try:
            return self._call(method, **kwargs)
        except StoreError as exc:
            if exc.code == "ConditionalCheckFailedException":
                return None
            raise

    def _call(self, method: Callable[..., T], **kwargs: Any) -> T:
        try:
            return method(**kwargs)
        except Exception as exc:
            raise translate_error(exc, table=self.table) from exc

    def _stored(self, keys: list[dict[str, Any]], max_attempts: int) -> set[tuple[str, str]]:
        """Which of up to 100 serialized keys are stored: one BatchGetItem, UnprocessedKeys and
        transient errors retried with backoff; a footfall error when that does not succeed."""
        found: set[tuple[str, str]] = set()
        pending = keys
        attempt = 0
        while pending:
            try:
                response = self.client.batch_get_item(
                    RequestItems={
                        self.table: {
                            "Keys": pending,
                            "ProjectionExpression": "actor, sk",
                            "ConsistentRead": True,
                        }
                    },
                )
            except Exception as exc:
                error = translate_error(exc, table=self.table)
                attempt += 1
                if not error.transient or attempt >= max_attempts:
                    raise error from exc
                _sleep_backoff(attempt)
                continue
            found.update(
                _wire_key(raw) for raw in response.get("Responses", {}).get(self.table, [])
            )
            unprocessed = response.get("UnprocessedKeys", {}).get(self.table)
            pending = list(unprocessed["Keys"]) if unprocessed else []
            if pending:
                attempt += 1
                if attempt >= max_attempts:
                    reason = f"{len(pending)} key(s) unprocessed after {attempt} attempts"
                    raise StoreThrottled(STORE, reason, code="UnprocessedKeys")
                _sleep_backoff(attempt)
        return found

    def _write(
        self, items: Sequence[tuple[int, dict[str, Any]]], outcome: BatchOutcome, max_attempts: int
    ) -> None:
        """BatchWriteItem of up to 25 serialized `(index, item)` pairs into `outcome`, retried
        as `batch_put` says."""
        by_key = {_wire_key(item): index for index, item in items}
        pending: list[Any] = [{"PutRequest": {"Item": item}} for _, item in items]
        attempt = 0
        last_reason = ""
        while pending:
            try:
                response = self.client.batch_write_item(RequestItems={self.table: pending})
            except Exception as exc:
                outcome.retries += _sdk_retries(exc)
                error = translate_error(exc, table=self.table)
                if not error.transient:
                    outcome.failed.extend((by_key[_key_of(r)], str(error)) for r in pending)
                    return
                last_reason = str(error)
                unprocessed = pending
            else:
                outcome.retries += _sdk_retries(response)
                unprocessed = list[Any](response.get("UnprocessedItems", {}).get(self.table, []))
                last_reason = "left unprocessed by DynamoDB (throughput exceeded)"
            if unprocessed:
                left = {_key_of(r) for r in unprocessed}
                outcome.written.extend(i for k, i in by_key.items() if k not in left)
                by_key = {k: by_key[k] for k in left}
            else:
                outcome.written.extend(by_key.values())
                return
            pending = unprocessed
            attempt += 1
            if attempt >= max_attempts:
                reason = f"{last_reason}; gave up after {attempt} attempts"
                outcome.failed.extend((by_key[_key_of(r)], reason) for r in pending)
                return
            outcome.retries += 1
            log.debug("retrying %d unprocessed items (attempt %d)", len(pending), attempt)
            _sleep_backoff(attempt)

    def _wire(self, item: dict[str, Any]) -> dict[str, Any]:
        """An item (or key) in DynamoDB's JSON form: what TypeSerializer makes, faster for the
        strings, whole numbers and maps activity items are made of."""
        return {k: self._wire_value(v) for k, v in item.items()}

    def _wire_value(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return {"S": value}
        if kind is int and -_EXACT < value < _EXACT:
            return {"N": str(value)}
        if kind is dict:
            return {"M": {k: self._wire_value(v) for k, v in value.items()}}
        return self._ser.serialize(value)

    def _deserialize(self, raw: dict[str, Any]) -> dict[str, Any]:
        """An item from DynamoDB's JSON form: what TypeDeserializer makes, faster for the
        strings, numbers and maps activity items are made of."""
        return {k: self._plain(v) for k, v in raw.items()}

    def _plain(self, value: Any) -> Any:
        if "S" in value:
            return value["S"]
        if "N" in value:
            return DYNAMODB_CONTEXT.create_decimal(value["N"])
        if "M" in value:
            return {k: self._plain(v) for k, v in value["M"].items()}
        return self._de.deserialize(value)


def _sdk_retries(outcome: Any) -> int:
    """How often botocore retried a call itself (throttling, 5xx): from a response or an error."""
    response = outcome.response if isinstance(outcome, botocore.exceptions.ClientError) else outcome
    if not isinstance(response, dict):
        return 0
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0))


def _key_of(request: dict[str, Any]) -> tuple[str, str]:
    return _wire_key(request["PutRequest"]["Item"])


def _wire_key(item: dict[str, Any]) -> tuple[str, str]:
    return item["actor"]["S"], item["sk"]["S"]


def _sleep_backoff(attempt: int, *, base: float = 0.05, cap: float = 2.0) -> None:
    """Full-jitter exponential backoff (AWS architecture blog's recommendation)."""
    time.sleep(random.uniform(0, min(cap, base * 2**attempt)))
