"""boto3 clients for DynamoDB and DynamoDB Streams, configured from the settings.

Used only by the DynamoDB adapter (`footfall._dynamodb`) and the Streams relay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
import botocore.config

from ._settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

__all__ = ["make_client", "make_streams_client"]


def make_client(settings: Settings) -> DynamoDBClient:
    """A boto3 DynamoDB client for the settings (thread-safe; share it across threads)."""
    return boto3.session.Session(region_name=settings.region).client(
        "dynamodb", **_client_kwargs(settings)
    )


def make_streams_client(settings: Settings) -> DynamoDBStreamsClient:
    """A boto3 DynamoDB Streams client for the same endpoint and credentials."""
    return boto3.session.Session(region_name=settings.region).client(
        "dynamodbstreams", **_client_kwargs(settings)
    )


def _client_kwargs(settings: Settings) -> dict[str, Any]:
    config = botocore.config.Config(
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=max(10, settings.write_concurrency * 2),
        connect_timeout=5,
        read_timeout=30,
    )
    kwargs: dict[str, Any] = {"config": config}
    if settings.dynamodb_endpoint:
        kwargs["endpoint_url"] = settings.dynamodb_endpoint
        if boto3.session.Session().get_credentials() is None:
            # DynamoDB Local accepts any letters-and-digits key; AWS itself never gets these.
            kwargs["aws_access_key_id"] = "footfalllocal"
            kwargs["aws_secret_access_key"] = "footfalllocal"
    return kwargs
