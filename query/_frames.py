"""Results as Arrow and polars, with one schema whichever store answered.

ClickHouse results arrive as Arrow (clickhouse-connect's Arrow path, strings as Arrow strings).
DynamoDB items become the very rows sync writes for them (`sync._items.row_from_item`: the
same flattened attributes, the same types) and then the same Arrow types, so a point read and
`SELECT event_id, actor, type, target, ts, attributes FROM activities FINAL` have one schema:

    event_id, actor, type, target: string      -> polars String
    ts: timestamp[ms, tz=UTC]                   -> polars Datetime("ms", "UTC")
    attributes: map<string, string>             -> polars' type for an Arrow map of strings
                                                   (Map(String, String) in polars 2; a
                                                   List(Struct{key, value}) in polars 1)

polars frames are built from Arrow with `polars.from_arrow` (no Python row objects).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from footfall._errors import InvalidActivity

from ._errors import ResultNotTabular
from ._items import activity_columns
from ._plan import ACTIVITY_COLUMNS

if TYPE_CHECKING:
    import polars
    import pyarrow  # type: ignore[import-untyped, unused-ignore]  # no stubs yet

    from sync._decode import Row

__all__ = [
    "ACTIVITY_COLUMNS",
    "activity_schema",
    "items_to_arrow",
    "items_to_polars",
    "items_to_rows",
    "to_polars",
]

log = logging.getLogger(__name__)


def items_to_rows(items: Iterable[dict[str, Any]]) -> list[Row]:
    """The ClickHouse rows sync would write for these DynamoDB items (malformed ones, which
    sync dead-letters, are skipped and logged)."""
    rows: list[Row] = []
    for item in items:
        row = _checked_row(item)
        if row is not None:
            rows.append(row)
    return rows


def items_to_arrow(
    items: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]] | None = None
) -> pyarrow.Table:
    """DynamoDB items as an Arrow table of `columns` ((column, output name) pairs; default:
    the six activity columns), in the order given: the columns of the rows sync writes for
    them, built straight from the items (see `query._items`). Attribute keys come sorted (a
    map's order carries no meaning; ClickHouse keeps the order sync wrote them in)."""
    import pyarrow as pa

    from sync._batch import SCHEMA

    event_ids, actors, types, targets, stamps, offsets, keys, values = activity_columns(
        items, _checked_row
    )
    schema = SCHEMA.field
    text = schema("event_id").type
    arrays = {
        "event_id": lambda: pa.array(event_ids, text),
        "actor": lambda: pa.array(actors, text),
        "type": lambda: pa.array(types, text),
        "target": lambda: pa.array(targets, text),
        "ts": lambda: pa.array(stamps, schema("ts").type),
        "attributes": lambda: _attributes_array(offsets, keys, values),
    }
    wanted = _wanted(columns)
    return pa.Table.from_arrays(
        [arrays[c]() for c, _ in wanted],
        schema=pa.schema([schema(c).with_name(name) for c, name in wanted]),
    )


def items_to_polars(
    items: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]] | None = None
) -> polars.DataFrame:
    """`to_polars(items_to_arrow(items, columns))`, built without the Arrow table: polars
    takes lists of text in one step each, where converting an Arrow table hands its columns
    to polars' thread pool (about a third of a millisecond a point read on a busy machine,
    most of it waiting for those threads to be scheduled)."""
    import polars as pl

    event_ids, actors, types, targets, stamps, offsets, keys, values = activity_columns(
        items, _checked_row
    )
    series = {
        "event_id": lambda name: pl.Series(name, event_ids, pl.String),
        "actor": lambda name: pl.Series(name, actors, pl.String),
        "type": lambda name: pl.Series(name, types, pl.String),
        "target": lambda name: pl.Series(name, targets, pl.String),
        "ts": lambda name: pl.Series(name, stamps, pl.Int64).cast(pl.Datetime("ms", "UTC")),
        "attributes": lambda name: pl.Series(name, _attributes_array(offsets, keys, values)),
    }
    return pl.DataFrame([series[c](name) for c, name in _wanted(columns)])


def _wanted(columns: Sequence[tuple[str, str]] | None) -> list[tuple[str, str]]:
    return list(columns) if columns is not None else [(c, c) for c in ACTIVITY_COLUMNS]


def _attributes_array(offsets: list[int], keys: list[str], values: list[str]) -> pyarrow.Array:
    """The `attributes` column (Map(String, String)) from a map's offsets, keys and values."""
    import pyarrow as pa

    from sync._batch import SCHEMA

    kind = SCHEMA.field("attributes").type
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()),
        pa.array(keys, kind.key_type),
        pa.array(values, kind.item_type),
        type=kind,
    )


def _checked_row(item: Mapping[str, Any]) -> Row | None:
    """`row_from_item`: None for an item that is no activity, and for a malformed one (which
    sync dead-letters), logged."""
    from sync._items import row_from_item

    try:
        return row_from_item(item)
    except InvalidActivity as exc:
        log.warning("skipping a malformed activity item: %s", exc)
        return None


def activity_schema() -> polars.Schema:
    """The canonical polars schema of activity rows (either route)."""
    return to_polars(items_to_arrow([])).schema


def to_polars(table: pyarrow.Table) -> polars.DataFrame:
    """The polars frame of an Arrow result; ResultNotTabular for a column polars cannot hold
    (ClickHouse sends mixed-type columns, Variant, as Arrow unions)."""
    import polars
    import pyarrow.types as types  # type: ignore[import-untyped, unused-ignore]

    try:
        frame = polars.from_arrow(table, rechunk=False)
    except (polars.exceptions.PolarsError, NotImplementedError) as exc:
        unions = [f.name for f in table.schema if types.is_union(f.type)]
        raise ResultNotTabular(unions, str(exc).splitlines()[0][:200]) from exc
    if not isinstance(frame, polars.DataFrame):  # from_arrow returns a Series for arrays only
        raise TypeError("expected a DataFrame from an Arrow table")
    return frame
