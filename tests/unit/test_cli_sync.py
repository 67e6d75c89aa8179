"""`footfall sync worker`'s options stay the same as `SyncOptions`' defaults."""

from __future__ import annotations

import inspect

from footfall._cli_sync import worker
from sync.app import SyncOptions

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
