"""The pure parts of ClickHouse's HTTP interface, for the chDB server in `_clickhouse_http`.

Errors as ClickHouse renders them, request and response compression, the split of URL
parameters into settings, query parameters and transport options, and the small SQL lexer
that finds where an `INSERT`'s inline data starts. No I/O and no chDB here.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from typing import Protocol

import lz4.frame  # type: ignore[import-untyped]
from backports import zstd

__all__ = [
    "ClickHouseError",
    "InsertHead",
    "NeedMoreData",
    "RequestOptions",
    "arrow_stream_joiner",
    "choose_encoding",
    "credentials",
    "decode_body",
    "new_encoder",
    "output_format",
    "parse_form",
    "parse_options",
    "produces_result",
    "session_settings",
    "split_insert",
    "statement_keyword",
]

# Names of the codes this server raises itself; chDB's own errors carry their name.
_NAMES = {
    36: "BAD_ARGUMENTS",
    48: "NOT_IMPLEMENTED",
    62: "SYNTAX_ERROR",
    271: "CANNOT_DECOMPRESS",
    372: "SESSION_NOT_FOUND",
    373: "SESSION_IS_LOCKED",
    516: "AUTHENTICATION_FAILED",
    1002: "UNKNOWN_EXCEPTION",
}
# ClickHouse's src/Server/HTTP/exceptionCodeToHTTPStatus.cpp; every other code is a 500.
_STATUS_GROUPS: tuple[tuple[int, frozenset[int]], ...] = (
    (401, frozenset({194})),
    (403, frozenset({192, 193, 497, 512, 516})),
    (400, frozenset({6, 8, 15, 25, 26, 27, 36, 37, 38, 41, 44, 53, 62, 72, 117, 123, 167, 168})),
    (400, frozenset({223, 321, 376, 427, 441, 675, 676})),
    (404, frozenset({46, 47, 50, 56, 60, 63, 73, 78, 81, 115, 152, 336, 511})),
    (413, frozenset({229})),
    (501, frozenset({48})),
    (503, frozenset({76, 209, 439})),
    (411, frozenset({381})),
    (408, frozenset({159})),
    (415, frozenset({779})),
)
_CODE = re.compile(r"Code: (\d+)\. ")
_PREFIXES = re.compile(r"^(?:Code: \d+\. DB::Exception: )+")
_VERSION = re.compile(r"\s*\(version [^)]*\)")
_TRAILING_NAMES = re.compile(r"(?:\.?\s*\(([A-Z][A-Z0-9_]+)\))+\.?\s*$")


class ClickHouseError(Exception):
    """An error as ClickHouse reports it: a numeric code, a message and the code's name."""

    def __init__(self, code: int, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.name = name or _NAMES.get(code, "UNKNOWN_EXCEPTION")

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        """Parse chDB's exception text (`... Code: 60. DB::Exception: ... (UNKNOWN_TABLE)`)."""
        text = str(exc)
        start = text.find("Code: ")
        match = _CODE.match(text, start) if start >= 0 else None
        if match is None:
            return cls(1002, text.strip() or type(exc).__name__)
        message = _VERSION.sub("", _PREFIXES.sub("", text[start:])).strip()
        trailing = _TRAILING_NAMES.search(message)
        name = trailing.group(1) if trailing else None
        if trailing:
            message = message[: trailing.start()]
        return cls(int(match.group(1)), message.rstrip(". "), name)

    @property
    def http_status(self) -> int:
        return next((status for status, codes in _STATUS_GROUPS if self.code in codes), 500)

    def render(self, version: str) -> bytes:
        """The response body ClickHouse sends for this error."""
        text = f"Code: {self.code}. DB::Exception: {self.message}. ({self.name})"
        return f"{text} (version {version})\n".encode()

    def render_in_stream(self, tag: str, version: str) -> bytes:
        """The block that ends a streamed body when the error comes after its first bytes."""
        message, marker = self.render(version), tag.encode()
        return b"__exception__\r\n%s\r\n%s%d %s\r\n__exception__\r\n" % (
            marker,
            message,
            len(message),
            marker,
        )


# --- compression ---------------------------------------------------------------------------


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, /) -> bytes: ...


_DECOMPRESSORS: Mapping[str, Callable[[], _Decompressor]] = {
    "lz4": lz4.frame.LZ4FrameDecompressor,
    "zstd": zstd.ZstdDecompressor,
    "gzip": lambda: zlib.decompressobj(zlib.MAX_WBITS | 32),
    "deflate": lambda: zlib.decompressobj(zlib.MAX_WBITS | 32),
}


def decode_body(chunks: Iterable[bytes], encoding: str | None) -> Iterator[bytes]:
    """Decode a request body sent with `Content-Encoding`, frame after frame.

    clickhouse-connect compresses each insert block as its own LZ4 (or zstd) frame, so a body
    is a run of concatenated frames; gzip bodies may likewise hold several members.
    """
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "identity"):
        yield from chunks
        return
    factory = _DECOMPRESSORS.get(encoding)
    if factory is None:
        raise ClickHouseError(48, f"Unsupported HTTP Content-Encoding {encoding!r}")
    decompressor, pending = factory(), False
    for chunk in chunks:
        data = chunk
        while data:
            try:
                output = decompressor.decompress(data)
            except (RuntimeError, OSError, zlib.error, zstd.ZstdError) as exc:
                raise ClickHouseError(271, f"Cannot decode {encoding} request body: {exc}") from exc
            if output:
                yield output
            pending = not decompressor.eof
            if pending:
                break
            data, decompressor = decompressor.unused_data, factory()
    if pending:
        raise ClickHouseError(271, f"The {encoding} request body ends inside a frame")


class Encoder(Protocol):
    def compress(self, data: bytes | memoryview, /) -> bytes: ...
    def flush(self) -> bytes: ...


class _Lz4Encoder:
    """One LZ4 frame over the whole response, as clickhouse-connect's reader expects."""

    def __init__(self) -> None:
        self._frame = lz4.frame.LZ4FrameCompressor()
        self._started = False

    def _begin(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return bytes(self._frame.begin())

    def compress(self, data: bytes | memoryview) -> bytes:
        return self._begin() + bytes(self._frame.compress(data))

    def flush(self) -> bytes:
        return self._begin() + bytes(self._frame.flush())


_ENCODERS: Mapping[str, Callable[[], Encoder]] = {
    "lz4": _Lz4Encoder,
    "zstd": zstd.ZstdCompressor,
    "gzip": lambda: zlib.compressobj(3, zlib.DEFLATED, zlib.MAX_WBITS | 16),
    "deflate": lambda: zlib.compressobj(3),
}


def choose_encoding(accept_encoding: str | None) -> str | None:
    """The first encoding of the client's `Accept-Encoding` list this server can write."""
    for item in (accept_encoding or "").split(","):
        name = item.split(";")[0].strip().lower()
        if name in _ENCODERS:
            return name
    return None


def new_encoder(name: str) -> Encoder:
    return _ENCODERS[name]()


_ARROW_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def arrow_stream_joiner() -> tuple[Callable[[bytes], bytes], bytes]:
    """Join chDB's per-block ArrowStream chunks into one stream: (per-chunk function, trailer).

    chDB renders each block as a complete IPC stream (schema, batches, end marker); the joined
    stream keeps the first schema, drops the later ones and every end marker but the last.
    """
    first = True

    def join(chunk: bytes) -> bytes:
        nonlocal first
        view = memoryview(chunk)
        if not first:
            offset = 4 if chunk.startswith(b"\xff\xff\xff\xff") else 0
            (length,) = struct.unpack_from("<i", view, offset)
            view = view[offset + 4 + length :]
        first = False
        if view[-8:].tobytes() == _ARROW_EOS:
            view = view[:-8]
        return bytes(view)

    return join, _ARROW_EOS


# --- request options -----------------------------------------------------------------------

# URL parameters of the HTTP interface that are not settings.
_TRANSPORT = frozenset(
    {"query", "database", "default_format", "user", "password", "quota_key", "query_id", "role"}
    | {"stacktrace", "session_id", "session_timeout", "session_check", "close_session"}
    | {"compress", "decompress", "buffer_size", "wait_end_of_query", "client_protocol_version"}
    # settings that only the HTTP layer reads
    | {"enable_http_compression", "http_zlib_compression_level", "http_wait_end_of_query"}
    | {"send_progress_in_http_headers", "http_headers_progress_interval_ms"}
    | {"cancel_http_readonly_queries_on_client_close", "http_response_buffer_size"}
    | {"http_native_compression_disable_checksumming_on_decompress", "add_http_cors_header"}
)


@dataclass(frozen=True)
class RequestOptions:
    """One request's URL parameters, sorted into what the server and chDB each need."""

    query: str = ""
    database: str | None = None
    default_format: str = "TabSeparated"
    query_id: str | None = None
    session_id: str | None = None
    session_timeout: float = 60.0
    session_check: bool = False
    wait_end_of_query: bool = False
    compress_response: bool = False
    readonly: int = 0
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def parse_options(pairs: Sequence[tuple[str, str]], method: str) -> RequestOptions:
    """Sort URL (or form) parameters; a GET runs with at least `readonly=2`, as in ClickHouse."""
    raw = dict(pairs)
    if raw.get("compress") == "1" or raw.get("decompress") == "1":
        raise ClickHouseError(48, "ClickHouse's native HTTP compression (compress/decompress=1)")
    settings = {k: v for k, v in raw.items() if k not in _TRANSPORT and not k.startswith("param_")}
    readonly = _int_option(settings.pop("readonly", "0"), "readonly")
    if method == "GET" and readonly == 0:
        readonly = 2
    return RequestOptions(
        query=raw.get("query", ""),
        database=raw.get("database") or None,
        default_format=raw.get("default_format") or "TabSeparated",
        query_id=raw.get("query_id") or None,
        session_id=raw.get("session_id") or None,
        session_timeout=float(_int_option(raw.get("session_timeout", "60"), "session_timeout")),
        session_check=raw.get("session_check") == "1",
        wait_end_of_query=_flag(raw.get("wait_end_of_query", raw.get("http_wait_end_of_query"))),
        compress_response=_flag(raw.get("enable_http_compression")),
        readonly=readonly,
        settings=settings,
        params={k.removeprefix("param_"): v for k, v in raw.items() if k.startswith("param_")},
    )


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true")


def _int_option(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ClickHouseError(36, f"Invalid value {value!r} of {name}: expected a number") from None


def credentials(headers: Mapping[str, str], params: Mapping[str, str]) -> tuple[str, str]:
    """(user, password) from Basic auth, `X-ClickHouse-User`/`-Key` or `user`/`password`.

    `headers` has lower-case names.
    """
    auth = headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        return user, password
    if "x-clickhouse-user" in headers:
        return headers["x-clickhouse-user"], headers.get("x-clickhouse-key", "")
    return params.get("user", "default"), params.get("password", "")


def parse_form(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """The fields of a `multipart/form-data` request (clickhouse-connect's form encoding)."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        raise ClickHouseError(36, "The multipart/form-data request body cannot be parsed")
    fields: list[tuple[str, str]] = []
    for part in message.iter_parts():
        if not isinstance(part, EmailMessage):
            continue
        if part.get_filename() is not None:
            raise ClickHouseError(48, "External data (file fields) is not supported by chDB")
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields.append((name, payload.decode()))
    return fields


# --- SQL lexing ----------------------------------------------------------------------------

_TOKEN = re.compile(
    rb"""\s+|--[^\n]*(?:\n|$)|\#[^\n]*(?:\n|$)|/\*.*?\*/
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<quoted>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`)
    |(?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)
_OPEN_QUOTE = re.compile(rb"""['"`]|/\*""")


class NeedMoreData(Exception):
    """The bytes seen so far end before the statement's shape is known."""


@dataclass(frozen=True)
class _Token:
    kind: str
    text: bytes
    start: int
    end: int
    depth: int


def _tokens(sql: bytes, *, complete: bool) -> Iterator[_Token]:
    depth, pos = 0, 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        if match is None or (match.lastgroup == "other" and _OPEN_QUOTE.match(sql, pos)):
            if complete:  # an unterminated quote or comment: let chDB report the error
                return
            raise NeedMoreData
        pos = match.end()
        kind = match.lastgroup
        if pos == len(sql) and not complete and kind != "word" and sql[match.start()] in b"-#":
            raise NeedMoreData  # a comment that may go on
        if kind is None:
            continue
        text = match.group(kind)
        depth -= text == b")"
        yield _Token(kind, text, match.start(), pos, depth)
        depth += text == b"("


def _words(sql: bytes, *, complete: bool = True) -> Iterator[_Token]:
    return (t for t in _tokens(sql, complete=complete) if t.kind == "word" and t.depth == 0)


@dataclass(frozen=True)
class InsertHead:
    """An `INSERT` whose data follows inline: the statement, the data's format and offset."""

    statement: str
    format: str
    data_start: int


def split_insert(head: bytes, *, complete: bool) -> InsertHead | None:
    """Where the inline data of `INSERT ... FORMAT f` / `INSERT ... VALUES` begins.

    None when `head` is not such an INSERT. Raises NeedMoreData while `head` (a prefix of the
    request, `complete` False) ends before the data does. As in ClickHouse, the data starts
    after the format name, its trailing blanks and at most one line break.
    """
    words = _words(head, complete=complete)
    first = next(words, None)
    if not complete and (first is None or first.end == len(head)):
        raise NeedMoreData
    if first is None or first.text.upper() != b"INSERT":
        return None
    for token in words:
        keyword = token.text.upper()
        if keyword in (b"SELECT", b"WITH", b"INFILE"):
            return None
        if keyword == b"VALUES":
            return InsertHead(head[: token.start].decode(), "Values", token.end)
        if keyword == b"FORMAT":
            name = next(words, None)
            if name is None or (name.end == len(head) and not complete):
                raise NeedMoreData
            start = name.end
            while start < len(head) and head[start] in b" \t\f":
                start += 1
            start += head.startswith(b"\r", start)
            start += head.startswith(b"\n", start)
            if start == len(head) and not complete:
                raise NeedMoreData
            return InsertHead(head[: token.start].decode(), name.text.decode(), start)
    if complete:
        return None
    raise NeedMoreData


_RESULT_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})


def statement_keyword(sql: str) -> str:
    """The statement's first keyword in upper case (`SELECT`, `INSERT`, `USE`, ...)."""
    tokens = (t for t in _tokens(sql.encode(), complete=True) if t.text != b"(")
    first = next(tokens, None)
    return first.text.decode().upper() if first is not None and first.kind == "word" else ""


def produces_result(sql: str) -> bool:
    """Whether the statement returns a result set (ClickHouse then names its format)."""
    return statement_keyword(sql) in _RESULT_KEYWORDS


def output_format(sql: str, default: str) -> str:
    """The format named by a closing `FORMAT name` clause, else `default`."""
    found = default
    tokens = list(_tokens(sql.encode(), complete=True))
    for i, token in enumerate(tokens[:-1]):
        following = tokens[i + 2] if i + 2 < len(tokens) else None
        if (
            token.kind == "word"
            and token.depth == 0
            and token.text.upper() == b"FORMAT"
            and tokens[i + 1].kind == "word"
            and (following is None or following.text.upper() in (b";", b"SETTINGS"))
        ):
            found = tokens[i + 1].text.decode()
    return found


def session_settings(sql: str) -> dict[str, str] | None:
    """For a `SET a = 1, b = 'x'` statement, its settings as SQL text; None for other SQL."""
    raw = sql.encode()
    tokens = list(_tokens(raw, complete=True))
    if not tokens or tokens[0].kind != "word" or tokens[0].text.upper() != b"SET":
        return None
    assignments: dict[str, str] = {}
    name: _Token | None = None
    previous, value_start = tokens[0], 0
    for token in [*tokens[1:], _Token("other", b",", len(raw), len(raw), 0)]:
        if token.depth == 0 and token.text == b"=" and name is None:
            name, value_start = previous, token.end
        elif token.depth == 0 and token.text in (b",", b";") and name is not None:
            assignments[name.text.decode()] = raw[value_start : token.start].decode().strip()
            name = None
        previous = token
    return assignments
