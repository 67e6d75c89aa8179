"""DynamoDB Local (the AWS emulator, with Streams) as a local process."""

from __future__ import annotations

from pathlib import Path

from ._process import Probe, http_probe
from ._tools import DynamoDBLocalTool

__all__ = ["dynamodb_command", "dynamodb_endpoint", "dynamodb_probe"]


def dynamodb_command(
    java: str, tool: DynamoDBLocalTool, port: int, data_dir: Path | None
) -> list[str]:
    """The command line of DynamoDB Local on port: in memory, or persisted in data_dir.

    `-sharedDb` makes every credential and region see the same tables (as in docker-compose).
    """
    argv = [
        java,
        f"-Djava.library.path={tool.lib_dir}",
        "-jar",
        str(tool.jar),
        "-port",
        str(port),
        "-sharedDb",
        "-disableTelemetry",
    ]
    if data_dir is None:
        argv.append("-inMemory")
    else:
        argv += ["-dbPath", str(data_dir)]
    return argv


def dynamodb_endpoint(port: int, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}"


def dynamodb_probe(port: int, host: str = "127.0.0.1") -> Probe:
    """Ready when the emulator answers HTTP (an unsigned GET gets a 400 from it: that counts)."""
    return http_probe(dynamodb_endpoint(port, host) + "/")
