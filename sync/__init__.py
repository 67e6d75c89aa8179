"""Mirror DynamoDB Streams and Kafka events into ClickHouse (see docs/architecture.md)."""

__all__: list[str] = []
