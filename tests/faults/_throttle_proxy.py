"""An HTTP proxy in front of DynamoDB Local that answers a share of calls the way a busy DynamoDB
does, on the wire: boto3 sees exactly the bytes real DynamoDB sends when it throttles or fails.

Faults, each drawn for a configurable share of the calls to the operations a plan names
(`X-Amz-Target: DynamoDB_20120810.<Operation>`):

- `throughput_exceeded`: HTTP 400, `ProvisionedThroughputExceededException`;
- `throttling`: HTTP 400, `ThrottlingException` (the control-plane / on-demand form);
- `internal_error`: HTTP 500, `InternalServerError`, the request never reaches DynamoDB Local;
- `lost_reply`: the request IS forwarded (the write happens), then HTTP 500 replaces the
  answer, as when a server fails after committing;
- `partial` (BatchWriteItem only): a random non-empty subset of the items is held back, the rest
  is forwarded, and the held-back items come back as `UnprocessedItems` of an HTTP 200 reply.

`stuck` names items (by a predicate on the item's plain `actor` string) that are never written:
every BatchWriteItem returns them as unprocessed, so a caller's retries run out on exactly them.
`first` answers the first N calls to `operations` with `first_kind`, whatever the shares: a
burst that outlasts the SDK's own retries.

Error replies carry what DynamoDB's JSON protocol carries: `Content-Type:
application/x-amz-json-1.0`, `x-amzn-RequestId`, `x-amzn-ErrorType`, a `__type` of the form
`<namespace>#<Code>` with a `message`, and a correct `x-amz-crc32` (boto3 retries a reply whose
checksum does not match, which would hide a fault behind a spurious retry).

The proxy counts what it did per operation (`counts`) and how many items reached DynamoDB Local
(`forwarded_items`), so a test can compare what the caller saw with what happened on the wire.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Literal
from urllib.parse import urlsplit

__all__ = ["FaultKind", "FaultPlan", "ThrottleProxy", "throttle_proxy"]

FaultKind = Literal["throughput_exceeded", "throttling", "internal_error", "lost_reply", "partial"]
FAULT_KINDS: Final[tuple[FaultKind, ...]] = (
    "throughput_exceeded",
    "throttling",
    "internal_error",
    "lost_reply",
    "partial",
)
_TARGET_PREFIX: Final = "DynamoDB_20120810."
_JSON: Final = "application/x-amz-json-1.0"
_ERRORS: Final[dict[FaultKind, tuple[int, str, str]]] = {
    "throughput_exceeded": (
        400,
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API.",
    ),
    "throttling": (
        400,
        "com.amazon.coral.availability#ThrottlingException",
        "Rate of requests exceeds the allowed throughput.",
    ),
    "internal_error": (
        500,
        "com.amazonaws.dynamodb.v20120810#InternalServerError",
        "Internal server error",
    ),
    "lost_reply": (
        500,
        "com.amazonaws.dynamodb.v20120810#InternalServerError",
        "Internal server error",
    ),
}
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "trailer"}
)


@dataclass(frozen=True)
class FaultPlan:
    """Shares (0..1, summing to at most 1) of the calls to `operations` that get each fault."""

    throughput_exceeded: float = 0.0
    throttling: float = 0.0
    internal_error: float = 0.0
    lost_reply: float = 0.0
    partial: float = 0.0
    operations: frozenset[str] = frozenset({"BatchWriteItem", "PutItem"})
    stuck: Callable[[str], bool] | None = None
    first: int = 0
    first_kind: FaultKind = "throttling"
    seed: int = 0

    def __post_init__(self) -> None:
        shares = [getattr(self, kind) for kind in FAULT_KINDS]
        if any(s < 0 for s in shares) or sum(shares) > 1.0 + 1e-9:
            raise ValueError(f"fault shares must be >= 0 and sum to <= 1, got {shares}")

    def draw(self, rng: random.Random, operation: str, calls: int) -> FaultKind | None:
        """The fault for the `calls`-th call (from 1) to the plan's operations, if any."""
        if operation not in self.operations:
            return None
        if calls <= self.first:
            return self.first_kind
        point = rng.random()
        for kind in FAULT_KINDS:
            share = getattr(self, kind)
            if kind == "partial" and operation != "BatchWriteItem":
                continue
            if point < share:
                return kind
            point -= share
        return None


@dataclass
class ProxyCounts:
    """What the proxy did: calls and faults per operation, items that reached DynamoDB Local."""

    calls: Counter[str] = field(default_factory=Counter)
    faults: Counter[tuple[str, FaultKind]] = field(default_factory=Counter)
    held_back_items: int = 0
    forwarded_items: int = 0

    def faults_of(self, operation: str) -> int:
        return sum(n for (op, _kind), n in self.faults.items() if op == operation)


class ThrottleProxy:
    """The proxy server; `endpoint` is what boto3 should use instead of DynamoDB Local's."""

    def __init__(self, upstream: str, plan: FaultPlan | None = None) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream: tuple[str, int] = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._plan = plan or FaultPlan()
        self._rng = random.Random(self._plan.seed)
        self.counts = ProxyCounts()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="throttle-proxy", daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def set_plan(self, plan: FaultPlan) -> None:
        """Use `plan` from the next call on, with fresh counts."""
        with self._lock:
            self._plan = plan
            self._rng = random.Random(plan.seed)
            self.counts = ProxyCounts()

    def start(self) -> ThrottleProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # -- per request -------------------------------------------------------------------------

    def decide(self, operation: str) -> tuple[FaultKind | None, FaultPlan, random.Random]:
        with self._lock:
            self.counts.calls[operation] += 1
            planned = sum(self.counts.calls[op] for op in self._plan.operations)
            kind = self._plan.draw(self._rng, operation, planned)
            if kind is not None:
                self.counts.faults[(operation, kind)] += 1
            # a private generator per request: the subset a partial write keeps is reproducible
            return kind, self._plan, random.Random(self._rng.random())

    def note_items(self, *, forwarded: int, held_back: int) -> None:
        with self._lock:
            self.counts.forwarded_items += forwarded
            self.counts.held_back_items += held_back


def _handler_for(proxy: ThrottleProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects

        def setup(self) -> None:
            super().setup()
            self._upstream: http.client.HTTPConnection | None = None

        def finish(self) -> None:
            if self._upstream is not None:
                self._upstream.close()
            super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read counts, not access logs

        def do_GET(self) -> None:
            status, headers, body = self._forward(b"")
            self._reply(status, headers, body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            target = self.headers.get("X-Amz-Target", "")
            operation = target.removeprefix(_TARGET_PREFIX)
            kind, plan, rng = proxy.decide(operation)
            if kind in ("throughput_exceeded", "throttling", "internal_error"):
                self._error(kind)
                return
            if operation == "BatchWriteItem" and (kind == "partial" or plan.stuck is not None):
                self._batch_write(body, partial=kind == "partial", plan=plan, rng=rng)
                return
            status, headers, answer = self._forward(body)
            if operation == "BatchWriteItem" and status == 200:
                proxy.note_items(forwarded=_count_items(body), held_back=0)
            if kind == "lost_reply":
                self._error(kind)
                return
            self._reply(status, headers, answer)

        def _batch_write(
            self, body: bytes, *, partial: bool, plan: FaultPlan, rng: random.Random
        ) -> None:
            request = json.loads(body)
            held: dict[str, list[Any]] = {}
            kept: dict[str, list[Any]] = {}
            for table, writes in request["RequestItems"].items():
                stuck = [w for w in writes if plan.stuck is not None and plan.stuck(_actor(w))]
                free = [w for w in writes if w not in stuck]
                if partial and free:
                    hold = set(rng.sample(range(len(free)), rng.randint(1, len(free))))
                    held_free = [w for i, w in enumerate(free) if i in hold]
                    free = [w for i, w in enumerate(free) if i not in hold]
                else:
                    held_free = []
                if stuck or held_free:
                    held[table] = stuck + held_free
                if free:
                    kept[table] = free
            forwarded = sum(len(w) for w in kept.values())
            proxy.note_items(forwarded=forwarded, held_back=sum(len(w) for w in held.values()))
            if not kept:
                answer: dict[str, Any] = {"UnprocessedItems": held}
                self._reply(200, [("x-amzn-RequestId", _request_id())], _json(answer))
                return
            request["RequestItems"] = kept
            status, headers, raw = self._forward(json.dumps(request).encode())
            if status != 200:
                self._reply(status, headers, raw)
                return
            answer = json.loads(raw)
            unprocessed = answer.setdefault("UnprocessedItems", {})
            for table, writes in held.items():
                unprocessed.setdefault(table, []).extend(writes)
            self._reply(200, headers, _json(answer))

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            try:
                self._upstream.request(self.command, self.path, body=body, headers=headers)
                response = self._upstream.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                self._upstream.close()
                self._upstream = None
                raise
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, kept, data

        def _error(self, kind: FaultKind) -> None:
            status, type_name, message = _ERRORS[kind]
            code = type_name.rpartition("#")[2]
            headers = [("x-amzn-RequestId", _request_id()), ("x-amzn-ErrorType", code)]
            self._reply(status, headers, _json({"__type": type_name, "message": message}))

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("x-amz-crc32", "content-type", "date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Type", _JSON)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _request_id() -> str:
    return uuid.uuid4().hex.upper()


def _actor(write: dict[str, Any]) -> str:
    return str(write["PutRequest"]["Item"]["actor"]["S"]) if "PutRequest" in write else ""


def _count_items(body: bytes) -> int:
    return sum(len(w) for w in json.loads(body).get("RequestItems", {}).values())


@contextmanager
def throttle_proxy(upstream: str, plan: FaultPlan | None = None) -> Iterator[ThrottleProxy]:
    """A running proxy in front of `upstream`, stopped on exit."""
    proxy = ThrottleProxy(upstream, plan).start()
    try:
        yield proxy
    finally:
        proxy.stop()
