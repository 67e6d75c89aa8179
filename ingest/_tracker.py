"""Tracker: the cctv API (record_activity / view_activity) on the DynamoDB activity table."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Literal

from footfall._activity import Activity, to_utc
from footfall._dynamodb import BATCH_GET_LIMIT, BATCH_WRITE_LIMIT, DynamoDB
from footfall._errors import ActivityNotFound, BatchWriteError, InvalidActivity
from footfall._reads import target_items
from footfall._settings import Settings, load_settings
from footfall._table import activity_to_item, item_key, item_to_activity, to_dynamo

__all__ = ["Tracker", "WriteReport", "coerce_activities"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What `record_many` did. `failed` holds `(index, reason)` pairs into the input;
    `retries` counts the BatchWriteItem requests repeated after throttling, a server error or
    unprocessed items (the AWS SDK's own retries included)."""

    written: int
    duplicates: int
    failed: list[tuple[int, str]] = field(default_factory=list)
    retries: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


class Tracker:
    """Records and reads activities of one type — a cctv "tracker" such as `store-pageviews`.

    >>> pageviews = Tracker("store-pageviews")
    >>> pageviews.record_activity("bob", "/store/products/goji", browser="Chrome")
    """

    def __init__(
        self,
        activity_type: str,
        settings: Settings | None = None,
        *,
        store: DynamoDB | None = None,
    ) -> None:
        # Validate the type once, with the model's own rule.
        self.activity_type = Activity(actor="-", type=activity_type, target="-").type
        self.settings = settings or load_settings()
        self._store = store or DynamoDB(self.settings)

    def __repr__(self) -> str:
        return f"Tracker({self.activity_type!r}, table={self.settings.table!r})"

    def ensure_table(self) -> bool:
        """Create the activity table if it does not exist yet; True if it was created."""
        return self._store.ensure_table()

    # -- writes ------------------------------------------------------------------------------

    def record_activity(
        self,
        actor: str,
        target: str,
        /,
        *,
        at: datetime | None = None,
        event_id: str | None = None,
        **attributes: Any,
    ) -> Activity:
        """Record that `actor` did this tracker's activity on `target`; returns the Activity.

        `at` is when it happened (default: now, timezone-aware), `event_id` its identity
        (default: a fresh ULID); every other keyword argument is an attribute.

        Recording the same `event_id` again stores nothing new and returns the activity given.
        """
        activity = Activity(
            actor=actor,
            type=self.activity_type,
            target=target,
            ts=at,
            event_id=event_id,
            attributes=attributes,
        )
        item = self._item(activity, rev=_now_ms())
        if not self._store.put_new(item):
            log.debug("activity %s already stored; nothing written", activity.event_id)
        return activity

    def record_many(
        self,
        activities: Iterable[Activity | Mapping[str, Any]],
        *,
        skip_existing: bool = True,
        on_failure: Literal["raise", "report"] = "raise",
    ) -> WriteReport:
        """Validate every activity first, then write them with BatchWriteItem.

        Activities may be of any type (Activity objects, or mappings of Activity's fields).
        One invalid activity raises InvalidActivity (with `.index`) and nothing is written.
        Activities repeated in the input (same actor, ts and event_id: an activity's identity),
        and with `skip_existing` those already stored, are counted as duplicates and not
        written again. Items DynamoDB still refuses after every retry raise BatchWriteError (or
        are listed in the report with `on_failure="report"`); everything else stays written.
        """
        batch = coerce_activities(activities, activity_type=self.activity_type)
        unique: dict[tuple[str, int, str], tuple[int, Activity]] = {}
        for index, activity in enumerate(batch):  # by identity, as the table's key has it
            identity = (activity.actor, activity.ts_ms, activity.event_id)
            unique.setdefault(identity, (index, activity))
        duplicates = len(batch) - len(unique)
        rev = _now_ms()
        items = [(i, self._item(a, rev=rev)) for i, a in unique.values()]
        # Each unit is checked (BatchGetItem) and its missing items written (BatchWriteItem) by
        # one worker, so checks and writes of different units overlap.
        workers = self.settings.write_concurrency
        size = unit_size(len(items), workers)
        units = [items[s : s + size] for s in range(0, len(items), size)]
        put = partial(self._store.put_missing, skip_existing=skip_existing)
        written = retries = 0
        failed: list[tuple[int, str]] = []
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(units)))) as pool:
            for outcome in pool.map(put, units):
                written += len(outcome.written)
                duplicates += len(outcome.existing)
                failed.extend(outcome.failed)
                retries += outcome.retries
        report = WriteReport(written, duplicates, sorted(failed), retries)
        if failed and on_failure == "raise":
            error = BatchWriteError("DynamoDB", report.failed, written)
            error.report = report  # type: ignore[attr-defined]
            raise error
        return report

    def update(self, activity: Activity, **attributes: Any) -> Activity:
        """Change attributes of a stored activity; returns it as now stored.

        Only attributes change: actor, type, target, ts and event_id are the activity's identity.
        Raises ActivityNotFound when it is not stored.
        """
        if not attributes:
            raise InvalidActivity("attributes", attributes, "name at least one attribute to update")
        activity.with_attributes(**attributes)  # validates names, values and size
        item = self._store.update_attributes(item_key(activity), to_dynamo(attributes))
        if item is None:
            raise ActivityNotFound(activity.actor, activity.event_id)
        return item_to_activity(item)

    def delete(self, activity: Activity) -> None:
        """Delete a stored activity (analytics will see a tombstone). ActivityNotFound if absent."""
        if not self._store.delete(item_key(activity)):
            raise ActivityNotFound(activity.actor, activity.event_id)

    # -- reads -------------------------------------------------------------------------------

    def view_activity(
        self, target: str, start: datetime, end: datetime, *, limit: int | None = None
    ) -> list[Activity]:
        """This tracker's activities on `target` in `[start, end)`, newest first.

        One Query per write shard of the target index, run concurrently and merged by time.
        """
        target = Activity(actor="-", type=self.activity_type, target=target).target
        items = target_items(
            self._store,
            self.activity_type,
            target,
            shards=self.settings.target_shards,
            start=to_utc(start, "start"),
            end=to_utc(end, "end"),
            limit=limit,
        )
        return [item_to_activity(item) for item in items]

    def _item(self, activity: Activity, *, rev: int) -> dict[str, Any]:
        return activity_to_item(
            activity, shards=self.settings.target_shards, rev=rev, ttl_days=self.settings.ttl_days
        )


def coerce_activities(
    activities: Iterable[Activity | Mapping[str, Any]], *, activity_type: str | None = None
) -> list[Activity]:
    """Activities validated up front; InvalidActivity names the index of the first bad one.

    With `activity_type`, mappings default to it and every activity must be of it.
    """
    if isinstance(activities, Activity | Mapping | str | bytes) or not isinstance(
        activities, Iterable
    ):
        raise InvalidActivity(
            "activities",
            activities,
            "must be a list (or other iterable) of Activity objects or mappings; "
            "for a single activity use record_activity() or publish()",
        )
    out: list[Activity] = []
    for index, value in enumerate(activities):
        try:
            if isinstance(value, Activity):
                activity = value
            elif isinstance(value, Mapping):
                fields = dict(value)
                if activity_type is not None:
                    fields.setdefault("type", activity_type)
                activity = Activity(**fields)
            else:
                raise InvalidActivity(
                    "activity", value, "must be an Activity or a mapping of its fields"
                )
            if activity_type is not None and activity.type != activity_type:
                raise InvalidActivity(
                    "type",
                    activity.type,
                    f"this tracker records {activity_type!r}; use Tracker({activity.type!r})",
                )
            out.append(activity)
        except InvalidActivity as exc:
            raise exc.at_index(index) from None
        except TypeError as exc:
            raise InvalidActivity(
                "activity", value, f"has unknown or missing fields ({exc})", index=index
            ) from None
    return out


def unit_size(items: int, workers: int) -> int:
    """Items per unit of work: a multiple of BatchWriteItem's 25, at most BatchGetItem's 100,
    small enough that every worker gets a unit (a small batch still runs in parallel)."""
    per_worker = -(-items // max(1, workers))
    return min(
        BATCH_GET_LIMIT,
        max(BATCH_WRITE_LIMIT, -(-per_worker // BATCH_WRITE_LIMIT) * BATCH_WRITE_LIMIT),
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
