"""One entry point for reads: point lookups from DynamoDB, analytics from ClickHouse."""

__all__: list[str] = []
