"""A single-node Apache Kafka broker (KRaft: broker and controller in one JVM) as a local process.

The data folder holds the broker's configuration, its log directories and a small
`footfall-kafka.json` (cluster id and controller port), so a persistent broker restarts with
the same identity. Readiness is a Kafka Metadata request that lists at least one broker: the
broker is then unfenced and accepts topic creation, not merely listening on its port.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import struct
import subprocess
import uuid
from pathlib import Path

from .._errors import ServiceError
from ._process import Probe, free_port
from ._tools import KafkaTool

__all__ = [
    "kafka_command",
    "kafka_endpoint",
    "kafka_probe",
    "metadata_broker_count",
    "new_cluster_id",
    "prepare_kafka",
]

log = logging.getLogger(__name__)

_LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
"""


def new_cluster_id() -> str:
    """A Kafka cluster id, made as `kafka-storage random-uuid` makes one (base64url, 22 chars)."""
    while True:
        raw = uuid.uuid4().bytes
        text = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids ids that look like a command-line flag
            return text


def kafka_endpoint(port: int, host: str = "127.0.0.1") -> str:
    return f"kafka://{host}:{port}"


def _server_properties(port: int, controller_port: int, log_dir: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _java_options(config_dir: Path) -> list[str]:
    return [
        f"-Dlog4j.configuration=file:{config_dir / 'log4j.properties'}",
        "-Djava.awt.headless=true",
    ]


def prepare_kafka(java: str, tool: KafkaTool, port: int, data_dir: Path) -> Path:
    """Write the configuration for a broker on port into data_dir, format its storage once.

    Returns the path of server.properties. The cluster id and controller port are kept in
    data_dir so a restart reuses them (a new controller port is picked if the old one is busy).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir = data_dir / "log"
    identity_path = data_dir / "footfall-kafka.json"
    identity: dict[str, object] = {}
    if identity_path.exists():
        identity = json.loads(identity_path.read_text())
    cluster_id = str(identity.get("cluster_id") or new_cluster_id())
    controller_port = int(str(identity.get("controller_port") or 0))
    if not controller_port or not _bindable(controller_port) or controller_port == port:
        controller_port = free_port()
        while controller_port == port:
            controller_port = free_port()
    identity_path.write_text(
        json.dumps({"cluster_id": cluster_id, "controller_port": controller_port}) + "\n"
    )
    (data_dir / "log4j.properties").write_text(_LOG4J)
    config = data_dir / "server.properties"
    config.write_text(_server_properties(port, controller_port, log_dir))
    if not (log_dir / "meta.properties").exists():
        _format_storage(java, tool, config, cluster_id, data_dir)
    return config


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _format_storage(
    java: str, tool: KafkaTool, config: Path, cluster_id: str, data_dir: Path
) -> None:
    argv = [
        java,
        "-XX:TieredStopAtLevel=1",
        "-cp",
        tool.classpath,
        *_java_options(data_dir),
        "kafka.tools.StorageTool",
        "format",
        "--ignore-formatted",
        "-t",
        cluster_id,
        "-c",
        str(config),
    ]
    log.info("formatting Kafka storage in %s", data_dir)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise ServiceError("kafka", "formatting the storage took longer than 120s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ServiceError(
            "kafka",
            f"formatting the storage in {data_dir} failed (exit code {done.returncode}):\n{tail}",
            hint=f"remove {data_dir} to start from an empty broker",
        )


def kafka_command(java: str, tool: KafkaTool, config: Path) -> list[str]:
    """The command line of the broker configured by config (from prepare_kafka)."""
    return [
        java,
        "-Xms128m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-cp",
        tool.classpath,
        *_java_options(config.parent),
        "kafka.Kafka",
        str(config),
    ]


def metadata_broker_count(host: str, port: int, timeout: float = 2.0) -> int:
    """How many live brokers a Metadata (v4) request to host:port lists; raises OSError."""
    client_id = b"footfall-probe"
    body = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id
    body += struct.pack(">ib", 0, 0)  # no topics, allow_auto_topic_creation=false
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
        response = _recv_exactly(sock, min(size, 4096))
    # correlation_id int32, throttle_time_ms int32, brokers array length int32
    correlation_id, _throttle, brokers = struct.unpack(">iii", response[:12])
    if correlation_id != 1:
        raise OSError(f"unexpected Kafka response (correlation id {correlation_id})")
    return int(brokers)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed by the broker")
        data += chunk
    return data


def kafka_probe(port: int, host: str = "127.0.0.1") -> Probe:
    """Ready when the broker's metadata lists a live (unfenced) broker."""

    def check() -> bool:
        try:
            return metadata_broker_count(host, port) > 0
        except (OSError, struct.error):
            return False

    return Probe(f"Kafka metadata at {host}:{port}", check)
