"""docs/notebooks/quickstart.ipynb runs top to bottom on the embedded default and shows what it
says: everything recorded is mirrored and counted, the point read finds the activity recorded a
moment before, and the plot is drawn.

It runs in a kernel of its own (nbclient), with every FOOTFALL_* variable removed, in a fresh
working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "quickstart.ipynb"
SIZE = 3_000  # the notebook's SIZE
CELL_TIMEOUT = 240


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    workdir = tmp_path_factory.mktemp("notebook")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("FOOTFALL_") or name == "AWS_ENDPOINT_URL_DYNAMODB":
                mp.delenv(name)
        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT,
            kernel_name="python3",
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()  # raises CellExecutionError on the first failing cell
    return notebook


def tagged(notebook: Any, tag: str) -> Any:
    (cell,) = [c for c in notebook.cells if tag in c.get("metadata", {}).get("tags", [])]
    return cell


def result(notebook: Any, tag: str) -> str:
    """The text of the cell's result (its last expression)."""
    outputs = [o for o in tagged(notebook, tag).outputs if o.output_type == "execute_result"]
    assert outputs, f"cell {tag!r} shows no result"
    return str(outputs[-1].data["text/plain"])


def test_every_cell_runs_without_errors_or_warnings(executed: Any) -> None:
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", output
            if output.output_type == "stream":
                assert output.name == "stdout", f"stderr in a cell: {output.text}"


def test_recorded_activities_are_mirrored_and_counted(executed: Any) -> None:
    assert result(executed, "record") == str(SIZE + 1)  # the synthetic ones and bob's
    assert result(executed, "mirror") == str(SIZE + 1)
    assert result(executed, "count") == str(SIZE + 1)


def test_point_read_finds_the_activity_just_recorded(executed: Any) -> None:
    html = tagged(executed, "latest").outputs[-1].data["text/html"]
    assert "/store/products/goji" in html
    assert "shape: (1, 6)" in result(executed, "latest")


def test_sql_and_named_queries_answer_in_polars(executed: Any) -> None:
    by_type = result(executed, "by-type")
    assert "shape: (5, 3)" in by_type
    assert "store-pageviews" in by_type
    funnel = result(executed, "funnel")
    assert "shape: (3, 4)" in funnel
    assert "purchase" in funnel


def test_plot_is_drawn(executed: Any) -> None:
    images = [o for o in tagged(executed, "plot").outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
