"""The message forms of topic `<prefix>.events`: one activity, or a pack of them.

A message is either

- one activity: its `Activity.to_json()` form, headers `content-type: application/json`; or
- a **pack**: several activities' `to_json()` forms, one per line (NDJSON: each form is compact
  JSON, so it holds no raw newline), headers `content-type: application/x-ndjson`. Blank lines
  are ignored.

Packs exist for speed: the sync worker's Faust consumer spends a fixed cost on every Kafka
message (hundreds of microseconds on a small machine), several times what decoding and writing
one activity costs, so a worker reading one activity per message runs at a fraction of what
ClickHouse takes. `EventPublisher.publish_many` sends packs; `publish` sends single activities.
A pack holds the activities of one partition only (each placed by its actor key, as a single
message would be), so an actor's activities stay in one partition, in order. Packs stay small
(`PACK_MAX_EVENTS`, `PACK_MAX_BYTES`): the worker buffers whole messages, so their size bounds
its memory, and a bad line costs one dead letter, never the pack.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final

__all__ = [
    "EVENT_HEADERS",
    "PACK_HEADERS",
    "PACK_MAX_BYTES",
    "PACK_MAX_EVENTS",
    "is_pack",
    "pack_lines",
]

EVENT_HEADERS: Final = (("content-type", b"application/json"), ("footfall-schema", b"activity/1"))
PACK_HEADERS: Final = (
    ("content-type", b"application/x-ndjson"),
    ("footfall-schema", b"activity/1"),
)
PACK_MAX_EVENTS: Final = 500
PACK_MAX_BYTES: Final = 64 * 1024
_PACK_TYPE: Final = PACK_HEADERS[0]


def is_pack(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> bool:
    """True if a message's headers (pairs, or a mapping) mark it as a pack."""
    if not headers:
        return False
    if isinstance(headers, Mapping):
        return headers.get(_PACK_TYPE[0]) == _PACK_TYPE[1]
    return _PACK_TYPE in headers


def pack_lines(
    forms: Sequence[bytes], *, max_events: int = PACK_MAX_EVENTS, max_bytes: int = PACK_MAX_BYTES
) -> Iterator[tuple[bytes, range]]:
    """Cut activities' JSON forms, in order, into pack values of at most `max_events` lines and
    `max_bytes` bytes (a form larger than that travels alone); each with the indexes of the
    forms it holds."""
    start, size = 0, 0
    for index, form in enumerate(forms):
        grown = size + len(form) + 1
        if index > start and (index - start >= max_events or grown > max_bytes):
            yield b"\n".join(forms[start:index]), range(start, index)
            start, grown = index, len(form) + 1
        size = grown
    if start < len(forms):
        yield b"\n".join(forms[start:]), range(start, len(forms))
