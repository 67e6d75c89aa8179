"""The one error tree: every error footfall raises on purpose derives from FootfallError.

Each error says what was wrong and how to fix it, and carries the data a caller needs to act on
it (`.field`, `.value`, `.retry_after`, ...). `transient` tells a retry loop whether trying the
same thing again later can succeed (the sync loop retries transient errors and dead-letters the
rest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ActivityNotFound",
    "BatchWriteError",
    "ConfigError",
    "FootfallError",
    "InvalidActivity",
    "ServiceError",
    "StoreError",
    "StoreThrottled",
    "StoreUnavailable",
]


class FootfallError(Exception):
    """Root of every error footfall raises on purpose."""

    transient: bool = False


class ConfigError(FootfallError, ValueError):
    """A setting is missing or malformed. `.field` names the setting, `.expected` the form."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"invalid setting {field}={value!r}: expected {expected}")


class InvalidActivity(FootfallError, ValueError):
    """An activity breaks a rule of the model; nothing of the call that raised it was written.

    `.field` is the offending field (`attributes.<name>` for an attribute), `.value` the value as
    given, `.rule` what it must satisfy and `.index` its position when it came in a batch.
    """

    def __init__(self, field: str, value: object, rule: str, *, index: int | None = None) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        self.index = index
        super().__init__(self._message())

    def at_index(self, index: int) -> InvalidActivity:
        """The same error, located at position `index` of a batch."""
        return InvalidActivity(self.field, self.value, self.rule, index=index)

    def _message(self) -> str:
        where = f"activity #{self.index}: " if self.index is not None else ""
        shown = repr(self.value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return f"{where}invalid {self.field} {shown}: {self.rule}"


class ActivityNotFound(FootfallError, LookupError):
    """update() or delete() named an activity that is not stored."""

    def __init__(self, actor: str, event_id: str) -> None:
        self.actor = actor
        self.event_id = event_id
        super().__init__(
            f"no stored activity of actor {actor!r} with event_id {event_id!r}; "
            "record it first, or check the actor and event_id"
        )


class StoreError(FootfallError):
    """A store (DynamoDB, ClickHouse, Kafka) refused or failed a request.

    `.store` names the store, `.code` is the store's own error code when it gave one.
    """

    def __init__(self, store: str, message: str, *, code: str | None = None) -> None:
        self.store = store
        self.code = code
        super().__init__(f"{store}: {message}")


class StoreUnavailable(StoreError):
    """The store could not be reached or answered with a server error; retrying may succeed."""

    transient = True


class StoreThrottled(StoreUnavailable):
    """The store asked us to slow down; `.retry_after` is a suggested wait in seconds."""

    def __init__(
        self, store: str, message: str, *, code: str | None = None, retry_after: float = 1.0
    ) -> None:
        self.retry_after = retry_after
        super().__init__(store, message, code=code)


class BatchWriteError(StoreError):
    """Some items of a batch could not be written after every retry.

    `.failed` lists `(index, reason)` pairs into the batch as given; `.written` counts what was
    stored. The written items stay written: retry the failed ones.
    """

    def __init__(self, store: str, failed: Sequence[tuple[int, str]], written: int) -> None:
        self.failed = list(failed)
        self.written = written
        first = "; ".join(f"#{i}: {reason}" for i, reason in self.failed[:3])
        more = f" (+{len(self.failed) - 3} more)" if len(self.failed) > 3 else ""
        super().__init__(
            store,
            f"{len(self.failed)} item(s) not written after retries ({first}{more}); "
            f"{written} written. Retry the failed items; the written ones are kept.",
            code="BatchIncomplete",
        )
        self.transient = True


class ServiceError(FootfallError):
    """A local service (DynamoDB Local, Kafka, ...) could not be installed, started or stopped.

    `.service` names it; `.hint` says what to do about it.
    """

    def __init__(self, service: str, message: str, *, hint: str = "", **data: Any) -> None:
        self.service = service
        self.hint = hint
        self.data = data
        text = f"{service}: {message}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)
