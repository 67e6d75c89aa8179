"""A wire-level stand-in for DynamoDB Streams that splits shards, in front of DynamoDB Local.

DynamoDB Local keeps one open shard per stream forever: it never splits one (28,000 records in
one stream here, one shard). This HTTP server sits at the DynamoDB endpoint the worker uses and
answers the three Streams calls the relay makes - `DescribeStream`, `GetShardIterator`,
`GetRecords`, on the wire as DynamoDB does (JSON 1.0, `__type` errors, `x-amz-crc32`) - from the
table's REAL stream, re-cut into shards; every other request is forwarded to DynamoDB Local
unchanged. The records served are the emulator's own, byte for byte, with their sequence numbers.

- Before `split()`, one open shard holds every record.
- `split()` closes each open shard at its last record (it gets an `EndingSequenceNumber`) and
  opens two children (`ParentShardId` = it); later records go to a child by the item key's hash,
  as a partition split does.
- A closed shard read to its end answers without `NextShardIterator`.
- Every `expire_every`-th `GetRecords` on an iterator that came from a previous `GetRecords`
  answers `ExpiredIteratorException` (an iterator fresh from `GetShardIterator` never expires).
- `DescribeStream` pages `page_size` shards at a time (`LastEvaluatedShardId`).

`reads` logs every `GetRecords` answered (time, shard, records, whether the shard ended), so a
test can check that no child was read before its parent was drained, and `served` holds every
sequence number handed out.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

__all__ = ["Read", "SplitStreams", "split_streams"]

STREAMS: Final = "DynamoDBStreams_20120810."
ROOT: Final = "shardId-00000000000000000001-standin"
_ERROR_NS: Final = "com.amazonaws.dynamodb.v20120810#"
_DIRECT: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# DynamoDB Local runs with -sharedDb: any well-formed credentials see the same tables.
_AUTH: Final = (
    "AWS4-HMAC-SHA256 Credential=standin/20260101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + "0" * 64
)


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    records: list[dict[str, Any]] = field(default_factory=list)
    starting: str | None = None  # the first sequence number it may hold
    ending: str | None = None  # set when closed

    def describe(self) -> dict[str, Any]:
        numbers = {"StartingSequenceNumber": self.starting or "0"}
        if self.ending is not None:
            numbers["EndingSequenceNumber"] = self.ending
        shard: dict[str, Any] = {"ShardId": self.shard_id, "SequenceNumberRange": numbers}
        if self.parent_id:
            shard["ParentShardId"] = self.parent_id
        return shard


@dataclass(frozen=True, slots=True)
class Read:
    """One `GetRecords` answered."""

    at: float
    shard_id: str
    records: int
    ended: bool  # no NextShardIterator: a closed shard read to its end


class _Fault(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class SplitStreams:
    """The state behind the stand-in: one real stream, re-cut into shards."""

    def __init__(self, upstream: str, *, expire_every: int = 7, page_size: int = 2) -> None:
        self.upstream = upstream.rstrip("/")
        self.expire_every = expire_every
        self.page_size = page_size
        self.reads: list[Read] = []
        self.served: set[str] = set()
        self.expired = 0
        self.splits = 0
        self._lock = threading.RLock()
        self._arn: str | None = None
        self._real_iterator: str | None = None
        self._shards: dict[str, _Shard] = {}
        self._iterators: dict[str, tuple[str, int, bool]] = {}  # token -> shard, index, fresh
        self._tokens = itertools.count(1)
        self._calls = 0  # GetRecords on chained iterators
        self._pulled = 0

    # -- what a test calls ------------------------------------------------------------------

    def split(self) -> list[str]:
        """Close every open shard at its last record; give each two children. Returns them."""
        with self._lock:
            self._pull()
            children = []
            for shard in [s for s in self._shards.values() if s.ending is None]:
                last = shard.records[-1]["dynamodb"]["SequenceNumber"] if shard.records else None
                shard.ending = last or shard.starting or "0"
                after = str(int(shard.ending) + 1).zfill(len(shard.ending))
                for half in (0, 1):
                    child = _Shard(
                        f"{shard.shard_id}-{self.splits}{half}", shard.shard_id, starting=after
                    )
                    self._shards[child.shard_id] = child
                    children.append(child.shard_id)
            self.splits += 1
            return children

    def shards(self) -> dict[str, str | None]:
        """shard id -> parent id."""
        with self._lock:
            return {s.shard_id: s.parent_id for s in self._shards.values()}

    def unserved(self) -> int:
        """Records of the real stream (pulled so far) that no reader was given."""
        with self._lock:
            self._pull()
            numbers = {
                r["dynamodb"]["SequenceNumber"] for s in self._shards.values() for r in s.records
            }
            return len(numbers - self.served)

    def records_in(self, shard_id: str) -> int:
        with self._lock:
            return len(self._shards[shard_id].records)

    def drained_at(self, shard_id: str) -> float | None:
        """When a reader got to the end of this (closed) shard, if it did."""
        ends = [r.at for r in list(self.reads) if r.shard_id == shard_id and r.ended]
        return min(ends) if ends else None

    def first_read_at(self, shard_id: str) -> float | None:
        reads = [r.at for r in list(self.reads) if r.shard_id == shard_id]
        return min(reads) if reads else None

    # -- the three Streams calls --------------------------------------------------------------

    def handle(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if operation == "DescribeStream":
                return self._describe(body)
            if operation == "GetShardIterator":
                return self._get_shard_iterator(body)
            if operation == "GetRecords":
                return self._get_records(body)
        raise _Fault(400, "ValidationException", f"{operation} is not served by the stand-in")

    def _describe(self, body: dict[str, Any]) -> dict[str, Any]:
        self._arn = self._arn or str(body["StreamArn"])
        start = body.get("ExclusiveStartShardId")
        if not start:  # a reader lists the shards, then reads them: new records arrive here
            self._pull()
        shards = list(self._shards.values())
        if start:
            ids = [s.shard_id for s in shards]
            shards = shards[ids.index(start) + 1 :] if start in ids else []
        page = shards[: self.page_size]
        description: dict[str, Any] = {
            "StreamArn": self._arn,
            "StreamStatus": "ENABLED",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "Shards": [s.describe() for s in page],
        }
        if len(shards) > len(page):
            description["LastEvaluatedShardId"] = page[-1].shard_id
        return {"StreamDescription": description}

    def _get_shard_iterator(self, body: dict[str, Any]) -> dict[str, Any]:
        shard = self._shards.get(str(body["ShardId"]))
        if shard is None:
            raise _Fault(400, "ResourceNotFoundException", f"no shard {body['ShardId']}")
        kind, numbers = (
            body["ShardIteratorType"],
            [r["dynamodb"]["SequenceNumber"] for r in shard.records],
        )
        if kind == "TRIM_HORIZON":
            index = 0
        elif kind == "LATEST":
            index = len(numbers)
        elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            wanted = int(body["SequenceNumber"])
            index = next((i for i, n in enumerate(numbers) if int(n) >= wanted), len(numbers))
            if kind == "AFTER_SEQUENCE_NUMBER" and index < len(numbers):
                index += int(numbers[index]) == wanted
        else:
            raise _Fault(400, "ValidationException", f"unknown ShardIteratorType {kind}")
        return {"ShardIterator": self._token(shard.shard_id, index, fresh=True)}

    def _get_records(self, body: dict[str, Any]) -> dict[str, Any]:
        token = str(body["ShardIterator"])
        if token not in self._iterators:
            raise _Fault(400, "ValidationException", "Invalid ShardIterator")
        shard_id, index, fresh = self._iterators.pop(token)
        self._calls += not fresh
        if not fresh and self.expire_every and self._calls % self.expire_every == 0:
            self.expired += 1
            raise _Fault(400, "ExpiredIteratorException", "Iterator expired")
        shard = self._shards[shard_id]
        limit = int(body.get("Limit") or 1000)
        records = shard.records[index : index + limit]
        after = index + len(records)
        ended = shard.ending is not None and after >= len(shard.records)
        self.reads.append(Read(time.monotonic(), shard_id, len(records), ended))
        self.served.update(r["dynamodb"]["SequenceNumber"] for r in records)
        answer: dict[str, Any] = {"Records": records}
        if not ended:
            answer["NextShardIterator"] = self._token(shard_id, after, fresh=False)
        return answer

    def _token(self, shard_id: str, index: int, *, fresh: bool) -> str:
        token = f"{self._arn}|standin|{next(self._tokens)}"
        self._iterators[token] = (shard_id, index, fresh)
        return token

    # -- the real stream ------------------------------------------------------------------------

    def _pull(self) -> None:
        """Fetch the real stream's new records and hand each to its shard."""
        if self._arn is None:
            return
        if self._real_iterator is None:
            real = self._upstream("DescribeStream", {"StreamArn": self._arn})
            (shard,) = real["StreamDescription"]["Shards"]  # DynamoDB Local: one shard
            first = shard["SequenceNumberRange"]["StartingSequenceNumber"]
            self._shards.setdefault(ROOT, _Shard(ROOT, None, starting=first))
            request = {"StreamArn": self._arn, "ShardId": shard["ShardId"]}
            request["ShardIteratorType"] = "TRIM_HORIZON"
            self._real_iterator = self._upstream("GetShardIterator", request)["ShardIterator"]
        while True:
            answer = self._upstream(
                "GetRecords", {"ShardIterator": self._real_iterator, "Limit": 1000}
            )
            self._real_iterator = answer.get("NextShardIterator")
            records = answer.get("Records", [])
            for record in records:
                self._place(record)
            self._pulled += len(records)
            if not records or self._real_iterator is None:
                return

    def _place(self, record: dict[str, Any]) -> None:
        open_shards = [s for s in self._shards.values() if s.ending is None]
        keys = json.dumps(record["dynamodb"].get("Keys", {}), sort_keys=True).encode()
        shard = open_shards[zlib.crc32(keys) % len(open_shards)]
        shard.records.append(record)

    def _upstream(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.upstream + "/",
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": STREAMS + operation,
                "X-Amz-Date": "20260101T000000Z",
                "Authorization": _AUTH,
            },
        )
        with _DIRECT.open(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer


def _handler(state: SplitStreams) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            target = self.headers.get("X-Amz-Target", "")
            if target.startswith(STREAMS):
                self._streams(target.removeprefix(STREAMS), body)
            else:
                self._forward(body)

        def _streams(self, operation: str, body: bytes) -> None:
            try:
                status, answer = 200, state.handle(operation, json.loads(body or b"{}"))
            except _Fault as fault:
                status, answer = (
                    fault.status,
                    {"__type": _ERROR_NS + fault.code, "message": str(fault)},
                )
            payload = json.dumps(answer).encode()
            self._reply(status, payload, [("Content-Type", "application/x-amz-json-1.0")])

        def _forward(self, body: bytes) -> None:
            skip = {"host", "content-length", "connection", "accept-encoding"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            request = urllib.request.Request(state.upstream + self.path, data=body, headers=headers)
            try:
                with _DIRECT.open(request, timeout=60) as response:
                    status, payload, answer_headers = (
                        response.status,
                        response.read(),
                        response.headers,
                    )
            except urllib.error.HTTPError as error:
                status, payload, answer_headers = error.code, error.read(), error.headers
            keep = [
                (k, v)
                for k, v in answer_headers.items()
                if k.lower() in ("content-type", "x-amzn-requestid", "x-amz-crc32")
            ]
            self._reply(status, payload, keep)

        def _reply(self, status: int, payload: bytes, headers: list[tuple[str, str]]) -> None:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            if not any(k.lower() == "x-amz-crc32" for k, _ in headers):
                self.send_header("x-amz-crc32", str(zlib.crc32(payload)))
            self.send_header("x-amzn-RequestId", "standin")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextlib.contextmanager
def split_streams(upstream: str, **options: Any) -> Iterator[tuple[str, SplitStreams]]:
    """Run the stand-in in front of `upstream` (DynamoDB Local); yields (endpoint, state)."""
    state = SplitStreams(upstream, **options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="streams-standin", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
