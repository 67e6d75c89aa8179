"""`footfall sync worker`'s options stay the same as `SyncOptions`' defaults, and the app
takes them."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from footfall import ConfigError, Settings
from footfall._cli_sync import worker
from sync.app import SyncOptions, create_app

FIELDS = {
    "max_rows": "max_rows",
    "max_wait": "max_wait_s",
    "idle_cut": "idle_cut_s",
    "rollup_interval": "rollup_interval_s",
    "relay": "relay",
    "metrics_port": "metrics_port",
    "metrics_host": "metrics_host",
}


def test_the_worker_commands_defaults_are_sync_options_defaults() -> None:
    parameters = inspect.signature(worker).parameters
    defaults = SyncOptions()
    for option, field in FIELDS.items():
        assert parameters[option].default == getattr(defaults, field), option


def test_the_worker_fetches_what_sync_options_ask_per_partition(tmp_path: Path) -> None:
    """Faust's own 1 MiB per partition left the agent waiting on fetches: the app takes the
    option's size, and the default is the 8 MiB the throughput benchmark measured."""
    settings = Settings(kafka_broker="kafka://127.0.0.1:9", home=tmp_path)
    assert SyncOptions().fetch_bytes_per_partition == 8 << 20
    app = create_app(settings, SyncOptions(fetch_bytes_per_partition=3 << 20, metrics_port=0))
    assert app.conf.consumer_max_fetch_size == 3 << 20


def test_the_worker_refuses_a_relay_wait_above_its_idle_cap(tmp_path: Path) -> None:
    settings = Settings(kafka_broker="kafka://127.0.0.1:9", home=tmp_path)
    options = SyncOptions(relay_interval_s=0.5, relay_idle_max_s=0.25, metrics_port=0)
    with pytest.raises(ConfigError, match="at most relay_idle_max_s"):
        create_app(settings, options)
