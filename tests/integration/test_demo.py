"""`footfall demo` end to end on the zero-setup default: moto in the process, chDB, EmbeddedSync.

The demo runs as a user runs it, `python -m footfall demo`, in a fresh working directory and
with every FOOTFALL_* variable removed, so that it proves the path that needs no services. It
runs in a process of its own (chDB opens one data directory per process, and this test process
has its own).

moto stands in for DynamoDB here only because the demo's promise is "nothing to install"; what
footfall does against DynamoDB is proven against DynamoDB Local elsewhere.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from footfall import ConfigError, load_settings
from footfall._demo import fresh_directory
from footfall._dynamodb import make_client, make_streams_client
from footfall._moto import MotoDynamoDB, fast_get_records
from ingest import Tracker

SIZE = 2_000
RUN_TIMEOUT = 240.0


@dataclass(frozen=True)
class Run:
    workdir: Path
    stdout: str
    stderr: str
    returncode: int

    def number(self, label: str) -> int:
        """The count on the report's `label` line ("recorded   2,000   ...")."""
        match = re.search(rf"^\s*{re.escape(label)}\s+([\d,]+)\s", self.stdout, re.MULTILINE)
        assert match, f"no {label!r} line in the report:\n{self.stdout}"
        return int(match.group(1).replace(",", ""))


def _zero_setup_env(mp: pytest.MonkeyPatch) -> None:
    """No service is configured: every FOOTFALL_* variable (and AWS's DynamoDB endpoint) gone."""
    for name in list(os.environ):
        if name.startswith("FOOTFALL_") or name == "AWS_ENDPOINT_URL_DYNAMODB":
            mp.delenv(name)
    mp.setenv("COLUMNS", "120")  # the report's width, so that its lines do not wrap


def footfall(workdir: Path, *args: str) -> Run:
    process = subprocess.run(
        [sys.executable, "-m", "footfall", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    return Run(workdir, process.stdout, process.stderr, process.returncode)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def demo(workdir: Path) -> Iterator[Run]:
    with pytest.MonkeyPatch.context() as mp:
        _zero_setup_env(mp)
        run = footfall(workdir, "demo", "--size", str(SIZE))
    assert run.returncode == 0, f"demo failed:\n{run.stdout}\n{run.stderr}"
    yield run


def test_demo_needs_no_configured_service(demo: Run) -> None:
    assert "moto, in this process, in memory" in demo.stdout
    assert "chDB, in this process, at .footfall/demo/chdb" in demo.stdout


def test_every_recorded_activity_is_mirrored_and_in_clickhouse(demo: Run) -> None:
    assert demo.number("recorded") == SIZE
    assert demo.number("mirrored") == SIZE
    assert demo.number("in ClickHouse") == SIZE


def test_point_read_goes_to_dynamodb_and_aggregate_to_clickhouse(demo: Run) -> None:
    assert re.search(r"latest of user-\d+ · dynamodb \(table\)", demo.stdout)
    assert re.search(r"pageviews of the hottest product · dynamodb \(by_type_target\)", demo.stdout)
    assert "activities by type · clickhouse" in demo.stdout
    assert "why: GROUP BY: analytics go to ClickHouse" in demo.stdout
    assert "the point read gave the same rows from DynamoDB and from ClickHouse" in demo.stdout


def test_named_queries_are_answered(demo: Run) -> None:
    for title in ("top targets", "daily unique actors", "funnel", "day-N retention", "sessions of"):
        assert re.search(rf"^{re.escape(title)}.* · [\d,]+ ms$", demo.stdout, re.MULTILINE), title
    assert re.search(r"│\s+1 │ store-pageviews │", demo.stdout)  # the funnel's first step


def test_chart_is_a_png_under_footfall_home(demo: Run) -> None:
    chart = demo.workdir / ".footfall" / "demo.png"
    assert f"chart      {Path('.footfall') / 'demo.png'}" in demo.stdout
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width >= 800 and height >= 300


def test_mirrored_rows_stay_queryable_where_the_report_says(demo: Run) -> None:
    (url,) = re.findall(r"^data\s+FOOTFALL_CLICKHOUSE_URL=(\S+) footfall query", demo.stdout, re.M)
    with pytest.MonkeyPatch.context() as mp:
        _zero_setup_env(mp)
        mp.setenv("FOOTFALL_CLICKHOUSE_URL", url)
        run = footfall(demo.workdir, "query", "SELECT count() AS n FROM activities", "-f", "csv")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["n", str(SIZE)]


def demo_command(workdir: Path, *args: str) -> Run:
    """The `demo` command as `footfall._cli_demo.register` adds it to a CLI, with every option
    (`--chart` included)."""
    script = (
        "import typer; from footfall._cli_demo import register; "
        "app = typer.Typer(); register(app); app()"
    )
    process = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    return Run(workdir, process.stdout, process.stderr, process.returncode)


def test_a_second_demo_starts_from_empty_stores_and_charts_where_asked(demo: Run) -> None:
    with pytest.MonkeyPatch.context() as mp:
        _zero_setup_env(mp)
        again = demo_command(demo.workdir, "--size", "300", "--seed", "8", "--chart", "c/d.png")
        assert again.returncode == 0, f"{again.stdout}\n{again.stderr}"
        mp.setenv("FOOTFALL_CLICKHOUSE_URL", "chdb:///./.footfall/demo/chdb")
        count = footfall(demo.workdir, "query", "SELECT count() AS n FROM activities", "-f", "csv")
    assert again.number("mirrored") == 300
    assert count.stdout.split() == ["n", "300"]
    assert (demo.workdir / "c" / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_refuses_to_empty_a_directory_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "demo" / "chdb"
    precious.mkdir(parents=True)
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError):
        fresh_directory(precious)
    assert (precious / "keep.txt").read_text() == "mine"


def test_standin_serves_the_stream_records_moto_itself_would() -> None:
    """The stand-in's fast GetRecords gives, once parsed, what moto's own serializer gives."""
    with MotoDynamoDB(fast_streams=False) as endpoint:
        settings = load_settings(dynamodb_endpoint=endpoint, table="standin-check")
        views = Tracker("views", settings)
        views.ensure_table()
        bob = views.record_activity(
            "bob",
            "/p/1",
            browser="Chrome",
            n=3,
            price=1.5,
            ok=True,
            nothing=None,
            tags={"a", "b"},
            nested={"x": [1, "y", {"z": False}]},
        )
        views.update(bob, browser="Firefox")
        views.delete(bob)
        own = _records(settings)
        with fast_get_records():
            fast = _records(settings)
    assert [r["eventName"] for r in own] == ["INSERT", "MODIFY", "REMOVE"]
    assert fast == own


def _records(settings: Any) -> list[dict[str, Any]]:
    arn = make_client(settings).describe_table(TableName=settings.table)["Table"]
    streams = make_streams_client(settings)
    shard = streams.describe_stream(StreamArn=arn["LatestStreamArn"])["StreamDescription"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn["LatestStreamArn"],
        ShardId=shard["Shards"][0]["ShardId"],
        ShardIteratorType="TRIM_HORIZON",
    )["ShardIterator"]
    return list(streams.get_records(ShardIterator=iterator)["Records"])
