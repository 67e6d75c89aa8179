"""Results become polars frames, or a typed error names the column polars cannot hold."""

from __future__ import annotations

import pyarrow as pa
import pytest

from query import QueryError, ResultNotTabular
from query._frames import to_polars


def test_a_mixed_type_column_is_a_typed_error_naming_it() -> None:
    """ClickHouse sends a Variant column (`SELECT '' UNION ALL SELECT 1`) as an Arrow union."""
    mixed = pa.UnionArray.from_dense(
        pa.array([0, 1], type=pa.int8()),
        pa.array([0, 0], type=pa.int32()),
        [pa.array([""]), pa.array([1], type=pa.uint8())],
        ["String", "UInt8"],
    )
    table = pa.table({"ok": [1, 2], "''": mixed})

    with pytest.raises(ResultNotTabular) as caught:
        to_polars(table)

    assert caught.value.columns == ["''"]
    assert "CAST" in str(caught.value) and isinstance(caught.value, QueryError)


def test_an_ordinary_result_becomes_a_frame() -> None:
    frame = to_polars(pa.table({"n": [1, 2], "s": ["a", None]}))
    assert frame.to_dict(as_series=False) == {"n": [1, 2], "s": ["a", None]}
