"""boto3 clients for DynamoDB and DynamoDB Streams, configured from the settings.

Used only by the DynamoDB adapter (`footfall._dynamodb`) and the Streams relay.

botocore logs every request at DEBUG, session token included (the `X-Amz-Security-Token`
header of "Sending http request" and the canonical request it signs). Making a client installs
a filter on those two loggers that replaces the token, and the secret key should it ever
appear, with `***`, so turning on DEBUG logging (`footfall -v`) shows no credential.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Final

import boto3
import botocore.config

from ._settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

__all__ = ["make_client", "make_streams_client"]


_REQUEST_LOGGERS: Final = ("botocore.endpoint", "botocore.auth")
_TOKEN_HEADER: Final = re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,}]+")


class CredentialRedactor(logging.Filter):
    """Replaces session tokens and secret keys in botocore's request logs with `***`."""

    def __init__(self) -> None:
        super().__init__("footfall.redact")
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def remember(self, *secrets: str | None) -> None:
        """Also redact these values wherever they appear."""
        with self._lock:
            self._secrets = self._secrets | {s for s in secrets if s and len(s) >= 8}

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is logging's own problem to report
            return True
        cleaned = _TOKEN_HEADER.sub(r"\1***", text)
        for secret in self._secrets:
            cleaned = cleaned.replace(secret, "***")
        if cleaned != text:
            record.msg, record.args = cleaned, None
        return True


REDACTOR: Final = CredentialRedactor()


def make_client(settings: Settings) -> DynamoDBClient:
    """A boto3 DynamoDB client for the settings (thread-safe; share it across threads).

    botocore's parameter validation is off: the adapter (`footfall._dynamodb`) builds every
    request itself, items in DynamoDB's JSON form from values the Activity model checked, and
    botocore's walk over each request repeated that work at about a third of the client's CPU
    for a batch write (a DynamoDB Local on the same cores got that much less). A malformed
    request is still refused, by DynamoDB (a ValidationException, a StoreError).
    """
    session = _session(settings)
    kwargs = _client_kwargs(settings, session, validate=False)
    return session.client("dynamodb", **kwargs)


def make_streams_client(settings: Settings) -> DynamoDBStreamsClient:
    """A boto3 DynamoDB Streams client for the same endpoint and credentials."""
    session = _session(settings)
    return session.client("dynamodbstreams", **_client_kwargs(settings, session))


def _session(settings: Settings) -> boto3.session.Session:
    """A boto3 session for the settings' region, with botocore's request logs redacted."""
    for name in _REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if REDACTOR not in logger.filters:
            logger.addFilter(REDACTOR)
    return boto3.session.Session(region_name=settings.region)


def _client_kwargs(
    settings: Settings, session: boto3.session.Session, *, validate: bool = True
) -> dict[str, Any]:
    config = botocore.config.Config(
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=max(10, settings.write_concurrency * 2),
        connect_timeout=5,
        read_timeout=30,
        parameter_validation=validate,
    )
    kwargs: dict[str, Any] = {"config": config}
    if settings.dynamodb_endpoint:
        kwargs["endpoint_url"] = settings.dynamodb_endpoint
        credentials = session.get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            REDACTOR.remember(frozen.secret_key, frozen.token)
        else:
            # DynamoDB Local accepts any letters-and-digits key; AWS itself never gets these.
            kwargs["aws_access_key_id"] = "footfalllocal"
            kwargs["aws_secret_access_key"] = "footfalllocal"
    return kwargs
