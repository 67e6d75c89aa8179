"""One entry point for reads: point lookups from DynamoDB, analytics from ClickHouse.

>>> import query
>>> ff = query.connect()
>>> ff.latest("bob", 10)                                   # DynamoDB, one Query
>>> ff.sql("SELECT ts, target FROM activities WHERE actor = {a:String}", {"a": "bob"})
>>> ff.explain("SELECT type, count() FROM activities GROUP BY type")
Route(route='clickhouse', reason='GROUP BY: analytics go to ClickHouse', ...)
>>> ff.named("top_targets", type="store-pageviews", start=..., end=...)

Results are polars DataFrames (or Arrow tables with `sql_arrow`) with one schema whichever store
answered. Ad-hoc SQL runs read-only (checked on its syntax tree, and run with ClickHouse's
`readonly=1`) and takes values only as server-side `{name:Type}` parameters. Importing this
package imports neither Faust nor Kafka clients.
"""

from ._errors import (
    FreshnessUnsupported,
    ParameterError,
    QueryError,
    QueryRefused,
    ResultNotTabular,
    ScanRefused,
    UnknownName,
)
from ._frames import activity_schema
from ._handle import Footfall, RouteChoice, connect
from ._named import NamedParameter, NamedQuery, named_queries
from ._plan import Route

__all__ = [
    "Footfall",
    "FreshnessUnsupported",
    "NamedParameter",
    "NamedQuery",
    "ParameterError",
    "QueryError",
    "QueryRefused",
    "ResultNotTabular",
    "Route",
    "RouteChoice",
    "ScanRefused",
    "UnknownName",
    "activity_schema",
    "connect",
    "named_queries",
]
