"""A single-node Apache Kafka (KRaft: broker and controller in one JVM) for machines without Docker.

The jars come from Maven Central through `mvn` and the pom beside this file, into a cache outside the
repository; storage is formatted once; the data directory survives `down`/`up` until `--purge`.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from services.config import StackConfig
from services.stack.procs import Managed, StackError, port_open, require_port_free

# The pom and log4j config; not in a `kafka/` folder, which mypy would take for this module.
HERE = Path(__file__).resolve().parent / "kafka-files"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


def jar_dir(cfg: StackConfig) -> Path:
    return cfg.cache_dir / f"kafka-{cfg.kafka_version}" / "libs"


def ensure_jars(cfg: StackConfig, echo: bool = True) -> Path:
    """Fetch the broker's jars once (first run: ~10-60 s, then cached)."""
    libs = jar_dir(cfg)
    require_tool("java")
    if (libs / ".complete").exists():
        return libs
    require_tool("mvn")
    if echo:
        print(
            f"fetching Apache Kafka {cfg.kafka_version} jars with mvn into {libs} (first run only)",
            flush=True,
        )
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn", "-q", "-B", "-f", str(HERE / "pom.xml"), f"-Dkafka.version={cfg.kafka_version}",
        "dependency:copy-dependencies", f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        last = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise StackError(
            f"mvn could not fetch org.apache.kafka:kafka_2.13:{cfg.kafka_version} ({last[0][:200]}); "
            "check Maven Central is reachable or set OEE_KAFKA_VERSION"
        )
    (staging / ".complete").write_text(cfg.kafka_version + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def require_tool(tool: str) -> None:
    if shutil.which(tool) is None:
        raise StackError(
            f"`{tool}` is not on PATH: the local Kafka broker needs Java 17+ and Maven "
            "(apt-get install openjdk-17-jdk-headless maven), or set KAFKA_BOOTSTRAP_SERVERS to a running broker"
        )


def data_dir(cfg: StackConfig) -> Path:
    return cfg.state_dir / "kafka"


def server_properties(cfg: StackConfig) -> str:
    # One node is broker and controller. The internal topics default to replication factor 3 (and Faust's
    # exactly-once docs assume 3 brokers): on one node they must be 1, or groups and transactions never start.
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{cfg.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{cfg.kafka_port},CONTROLLER://127.0.0.1:{cfg.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{cfg.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir(cfg) / 'data'}",
            "num.partitions=12",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=12",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=12",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "num.network.threads=2",
            "num.io.threads=4",
            "auto.create.topics.enable=true",
            "",
        ]
    )


def cluster_id() -> str:
    """A new cluster id in Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own `Uuid.randomUuid()`, never one that starts with '-': `kafka-storage format -t -Abc…`
    reads it as an option and fails (one id in 64; it failed a CI run)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def format_storage(cfg: StackConfig, libs: Path) -> None:
    props = data_dir(cfg) / "server.properties"
    if (data_dir(cfg) / "data" / "meta.properties").exists():
        return
    cmd = ["java", "-cp", f"{libs}/*", STORAGE_TOOL, "format", "-t", cluster_id(), "-c", str(props)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"formatting Kafka storage failed: {(result.stdout + result.stderr).strip()[-300:]}")


def managed(cfg: StackConfig) -> Managed:
    return Managed("kafka", cfg.state_dir)


def start(cfg: StackConfig) -> int:
    """Start the broker if this stack's broker is not running; return its pid once it answers metadata."""
    proc = managed(cfg)
    pid = proc.pid()
    if pid is not None:
        wait_ready(cfg, proc, pid)
        return pid
    require_port_free(cfg.kafka_port, "the Kafka broker", "OEE_KAFKA_PORT")
    require_port_free(cfg.controller_port, "the KRaft controller", "OEE_KAFKA_CONTROLLER_PORT")
    libs = ensure_jars(cfg)
    data_dir(cfg).mkdir(parents=True, exist_ok=True)
    (data_dir(cfg) / "server.properties").write_text(server_properties(cfg))
    format_storage(cfg, libs)
    logs = proc.log_file.parent
    argv = [
        "java", f"-Xmx{cfg.kafka_heap}", f"-Xms{cfg.kafka_heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true", f"-Dkafka.logs.dir={logs}",
        f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
        "-cp", f"{libs}/*", MAIN_CLASS, str(data_dir(cfg) / "server.properties"),
    ]  # fmt: skip
    pid = proc.start(argv)
    wait_ready(cfg, proc, pid)
    return pid


def wait_ready(cfg: StackConfig, proc: Managed, pid: int) -> None:
    deadline = time.monotonic() + cfg.start_timeout
    while time.monotonic() < deadline:
        if proc.pid() is None:
            raise StackError(
                f"the Kafka broker exited during start; see {proc.log_file} and "
                f"{proc.log_file.parent / 'kafka-server.log'}: {proc.log_tail(1)[:200]}"
            )
        if asyncio.run(answers_metadata(cfg.bootstrap_servers)):
            return
        time.sleep(0.3)
    raise StackError(
        f"the Kafka broker (pid {pid}) did not answer on {cfg.bootstrap_servers} within {cfg.start_timeout:.0f} s; "
        f"see {proc.log_file.parent / 'kafka-server.log'} or raise OEE_START_TIMEOUT"
    )


async def answers_metadata(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when a broker at `bootstrap` returns cluster metadata (a TCP accept alone is not enough)."""
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not port_open(int(port), host or "127.0.0.1"):
        return False
    # While the broker boots, aiokafka logs every refused connection as an error: not news here.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
        return True
    except Exception:
        return False
    finally:
        try:
            await asyncio.wait_for(admin.close(), timeout)
        except Exception:
            pass
        quiet.setLevel(level)


def stop(cfg: StackConfig) -> bool:
    # SIGTERM is the broker's controlled shutdown: it flushes and closes its logs cleanly.
    return managed(cfg).stop(signal.SIGTERM, timeout=30.0)


def purge(cfg: StackConfig) -> None:
    shutil.rmtree(data_dir(cfg), ignore_errors=True)
