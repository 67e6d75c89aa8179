"""The pure parts of the chDB HTTP server: errors, compression, request options, SQL shapes."""

from __future__ import annotations

import base64
import gzip
import io
from collections.abc import Iterator

import lz4.frame  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from backports import zstd
from clickhouse_connect.driver.transform import extract_exception_with_tag

from footfall.services._clickhouse_protocol import (
    ClickHouseError,
    InsertHead,
    NeedMoreData,
    arrow_stream_joiner,
    choose_encoding,
    credentials,
    decode_body,
    new_encoder,
    output_format,
    parse_form,
    parse_options,
    produces_result,
    session_settings,
    split_insert,
    statement_keyword,
)

# Exception texts as chDB 26.9 raises them (measured).
UNKNOWN_TABLE = (
    "Code: 60. DB::Exception: Unknown table expression identifier 'nope'. Maybe you meant "
    "system.one? In scope SELECT * FROM nope. (UNKNOWN_TABLE)"
)
NESTED_READONLY = (
    "Code: 164. DB::Exception: Code: 164. DB::Exception: Cannot modify 'max_threads' setting in "
    "readonly mode. (READONLY) (version 26.9.2.1). (READONLY)"
)
STREAMING = (
    "Streaming insert finish failed: Code: 33. DB::Exception: Cannot read all data. Bytes read: "
    "12. Bytes expected: 114: While executing Native. (CANNOT_READ_ALL_DATA) (version 26.9.2.1)"
)


@pytest.mark.parametrize(
    ("text", "code", "name", "message"),
    [
        (UNKNOWN_TABLE, 60, "UNKNOWN_TABLE", "Unknown table expression identifier 'nope'."),
        (NESTED_READONLY, 164, "READONLY", "Cannot modify 'max_threads' setting in readonly mode"),
        (STREAMING, 33, "CANNOT_READ_ALL_DATA", "Cannot read all data. Bytes read: 12."),
        ("something else broke", 1002, "UNKNOWN_EXCEPTION", "something else broke"),
    ],
)
def test_engine_errors_keep_their_code_name_and_message(
    text: str, code: int, name: str, message: str
) -> None:
    error = ClickHouseError.from_engine(RuntimeError(text))

    assert (error.code, error.name) == (code, name)
    assert error.message.startswith(message)
    assert "Code:" not in error.message and "(version" not in error.message
    assert not error.message.endswith((".", f"({name})"))


def test_an_error_renders_as_clickhouse_does() -> None:
    error = ClickHouseError.from_engine(RuntimeError(UNKNOWN_TABLE))

    body = error.render("26.9.2.1").decode()

    assert body.startswith("Code: 60. DB::Exception: Unknown table expression identifier")
    assert body.endswith("FROM nope. (UNKNOWN_TABLE) (version 26.9.2.1)\n")


@pytest.mark.parametrize(
    ("code", "status"),
    [(60, 404), (62, 400), (115, 404), (164, 500), (516, 403), (194, 401), (48, 501), (1002, 500)],
)
def test_http_status_follows_clickhouse(code: int, status: int) -> None:
    assert ClickHouseError(code, "x").http_status == status


def test_a_streamed_error_is_found_by_clickhouse_connect() -> None:
    error = ClickHouseError(395, "Value passed to 'throwIf' function is non-zero", "X")
    body = b"partial result bytes" + error.render_in_stream("abc123", "26.9")

    found = extract_exception_with_tag(body, "abc123")

    assert found == error.render("26.9").decode().strip()


def _split(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [("lz4", lz4.frame.compress), ("zstd", zstd.compress), ("gzip", gzip.compress)],
)
@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_every_frame_of_a_body_is_decoded(encoding: str, pack: object, chunk_size: int) -> None:
    assert callable(pack)
    parts = [b"INSERT INTO t FORMAT TSV\n", b"1\ta\n" * 1000, b"", b"2\tb\n"]
    body = b"".join(pack(part) for part in parts)

    decoded = b"".join(decode_body(_split(body, chunk_size), encoding))

    assert decoded == b"".join(parts)


def test_a_body_cut_inside_a_frame_is_an_error() -> None:
    body = lz4.frame.compress(b"x" * 10_000)

    with pytest.raises(ClickHouseError) as caught:
        b"".join(decode_body(iter([body[:-5]]), "lz4"))
    assert caught.value.code == 271


def test_an_unknown_content_encoding_is_refused() -> None:
    with pytest.raises(ClickHouseError) as caught:
        list(decode_body(iter([b"x"]), "snappy"))
    assert caught.value.code == 48


def test_identity_bodies_pass_through() -> None:
    assert list(decode_body(iter([b"a", b"b"]), None)) == [b"a", b"b"]


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [("lz4,zstd,gzip,deflate", "lz4"), ("br, gzip;q=0.8", "gzip"), ("br", None), (None, None)],
)
def test_the_response_encoding_is_the_first_the_server_can_write(
    accept: str | None, chosen: str | None
) -> None:
    assert choose_encoding(accept) == chosen


@pytest.mark.parametrize("name", ["lz4", "zstd", "gzip", "deflate"])
def test_encoded_responses_decode_back(name: str) -> None:
    encoder = new_encoder(name)
    body = encoder.compress(b"abc" * 1000) + encoder.compress(b"def") + encoder.flush()

    assert b"".join(decode_body(iter([body]), name)) == b"abc" * 1000 + b"def"


def test_url_parameters_are_sorted_into_settings_params_and_options() -> None:
    options = parse_options(
        [
            ("database", "db"),
            ("query_id", "q1"),
            ("session_id", "s1"),
            ("session_timeout", "30"),
            ("param_actor", "ann"),
            ("insert_deduplication_token", "tok"),
            ("enable_http_compression", "1"),
            ("wait_end_of_query", "1"),
            ("readonly", "1"),
            ("client_protocol_version", "54405"),
        ],
        "POST",
    )

    assert options.settings == {"insert_deduplication_token": "tok"}
    assert options.params == {"actor": "ann"}
    assert (options.database, options.query_id, options.session_id) == ("db", "q1", "s1")
    assert options.session_timeout == 30
    assert options.compress_response and options.wait_end_of_query
    assert options.readonly == 1


def test_a_get_request_runs_read_only() -> None:
    assert parse_options([], "GET").readonly == 2
    assert parse_options([("readonly", "1")], "GET").readonly == 1
    assert parse_options([], "POST").readonly == 0


def test_native_http_compression_is_not_offered() -> None:
    with pytest.raises(ClickHouseError) as caught:
        parse_options([("decompress", "1")], "POST")
    assert caught.value.code == 48


def test_credentials_come_from_basic_auth_headers_or_parameters() -> None:
    basic = "Basic " + base64.b64encode(b"ann:pa:ss").decode()

    assert credentials({"authorization": basic}, {}) == ("ann", "pa:ss")
    assert credentials({"x-clickhouse-user": "bob", "x-clickhouse-key": "k"}, {}) == ("bob", "k")
    assert credentials({}, {"user": "cy", "password": "p"}) == ("cy", "p")
    assert credentials({}, {}) == ("default", "")


def test_form_fields_carry_the_query_and_its_parameters() -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="query"\r\n\r\nSELECT {x:String}\r\n'
        b'--b\r\nContent-Disposition: form-data; name="param_x"\r\n\r\nval\r\n--b--\r\n'
    )

    assert parse_form("multipart/form-data; boundary=b", body) == [
        ("query", "SELECT {x:String}"),
        ("param_x", "val"),
    ]


@pytest.mark.parametrize(
    ("sql", "statement", "fmt", "data"),
    [
        (
            b"INSERT INTO t (a, b) FORMAT Native\n\x09\x01",
            "INSERT INTO t (a, b) ",
            "Native",
            b"\x09\x01",
        ),
        (b"insert into t format TSV  \r\n1\t2\n", "insert into t ", "TSV", b"1\t2\n"),
        (b"INSERT INTO t VALUES (1, 'FORMAT x')", "INSERT INTO t ", "Values", b" (1, 'FORMAT x')"),
        (
            b"INSERT INTO t SETTINGS format_csv_delimiter=';' FORMAT CSV\n1;2",
            "INSERT INTO t SETTINGS format_csv_delimiter=';' ",
            "CSV",
            b"1;2",
        ),
        (
            b"INSERT INTO t (`format`) FORMAT JSONEachRow {}",
            "INSERT INTO t (`format`) ",
            "JSONEachRow",
            b"{}",
        ),
        (
            b"/* c */ INSERT INTO t FORMAT Arrow\nARROW1",
            "/* c */ INSERT INTO t ",
            "Arrow",
            b"ARROW1",
        ),
    ],
)
def test_inline_insert_data_starts_where_clickhouse_starts_it(
    sql: bytes, statement: str, fmt: str, data: bytes
) -> None:
    head = split_insert(sql, complete=True)

    assert isinstance(head, InsertHead)
    assert (head.statement, head.format, sql[head.data_start :]) == (statement, fmt, data)


@pytest.mark.parametrize(
    "sql",
    [
        b"SELECT 1",
        b"INSERT INTO t SELECT * FROM s",
        b"INSERT INTO t FROM INFILE 'f' FORMAT CSV",
        b"",
    ],
)
def test_statements_without_inline_data_are_not_split(sql: bytes) -> None:
    assert split_insert(sql, complete=True) is None


@pytest.mark.parametrize(
    "prefix",
    [b"", b"INS", b"INSERT INTO t", b"INSERT INTO t FORMAT Nat", b"INSERT INTO 't", b"INSERT --"],
)
def test_a_cut_insert_head_asks_for_more(prefix: bytes) -> None:
    with pytest.raises(NeedMoreData):
        split_insert(prefix, complete=False)


def test_statement_shapes() -> None:
    assert statement_keyword("  (SELECT 1)") == "SELECT"
    assert statement_keyword("-- note\nuse db") == "USE"
    assert produces_result("WITH 1 AS x SELECT x") and produces_result("DESCRIBE TABLE t")
    assert not produces_result("CREATE TABLE t (x UInt8) ENGINE = Memory")
    assert output_format("SELECT 1\n FORMAT Native", "TabSeparated") == "Native"
    assert output_format("SELECT format FROM t", "TSV") == "TSV"
    assert output_format("SELECT 'FORMAT JSON'", "TSV") == "TSV"
    assert output_format("SELECT 1 FORMAT JSON SETTINGS max_threads = 1", "TSV") == "JSON"


def test_set_statements_are_read_as_session_settings() -> None:
    assert session_settings("SET max_threads = 1, x_y = 'a,b' ;") == {
        "max_threads": "1",
        "x_y": "'a,b'",
    }
    assert session_settings("SELECT 1") is None


def test_arrow_stream_chunks_join_into_one_stream() -> None:
    def stream(values: list[int]) -> bytes:
        sink = io.BytesIO()
        table = pa.table({"n": pa.array(values, pa.uint64())})
        with ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue()

    join, trailer = arrow_stream_joiner()
    joined = b"".join(join(chunk) for chunk in [stream([1, 2]), stream([3]), stream([4, 5])])

    table = ipc.open_stream(joined + trailer).read_all()
    assert table.column("n").to_pylist() == [1, 2, 3, 4, 5]
