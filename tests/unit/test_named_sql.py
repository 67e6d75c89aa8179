"""The named queries' SQL: how often each reads `activities` (each reference is one pass of
`activities FINAL`, the costly part of every named query over unmerged parts)."""

from __future__ import annotations

import pytest

from query._named import named_query
from query._rewrite import activities_refs
from query._statement import parse_statement


@pytest.mark.parametrize(
    "name", ["top_targets", "daily_unique_actors", "funnel", "retention", "sessions"]
)
def test_each_named_query_reads_activities_once(name: str) -> None:
    refs = activities_refs(parse_statement(named_query(name).sql), "default")
    assert len(refs) == 1
    assert refs[0].final


def test_implementation_notes_stay_out_of_the_parameter_docs() -> None:
    (kind,) = [p for p in named_query("retention").parameters if p.name == "type"]
    assert kind.doc == "the activity that puts an actor into a cohort ('' = any)"
