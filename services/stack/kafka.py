"""A local Apache Kafka cluster (KRaft: each node broker and controller in one JVM) for machines without
Docker: one node by default, three (`OEE_KAFKA_BROKERS=3`, `--brokers 3`) for a replicated log.

The jars come from Maven Central through `mvn` and the pom beside this file, into a cache outside the
repository; storage is formatted once per node with one cluster id; the data survives `down`/`up` until
`--purge`. Node layout and ports: `services/stack/cluster.py`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from events.topics import replication_for
from services.config import StackConfig
from services.stack.cluster import LAYOUT_FILE, KafkaNode, formatted_brokers, quorum_voters
from services.stack.procs import Managed, StackError, file_lock, port_open, require_port_free, stop_all

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


def node_dir(cfg: StackConfig, node: KafkaNode) -> Path:
    """Node 1 keeps the single broker's place (`kafka/`), so a cluster made before there were more stays."""
    return data_dir(cfg) if node.node_id == 1 else data_dir(cfg) / f"node-{node.node_id}"


def server_properties(cfg: StackConfig, node: KafkaNode) -> str:
    nodes = cfg.kafka_nodes
    # The internal topics (group offsets, transaction state) default to replication factor 3, which one
    # node cannot give: groups and transactions would never start. They follow the cluster like ours do.
    rep = replication_for(len(nodes))
    lines = [
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        f"controller.quorum.voters={quorum_voters(nodes)}",
        f"listeners=PLAINTEXT://{node.address},CONTROLLER://127.0.0.1:{node.controller_port}",
        f"advertised.listeners=PLAINTEXT://{node.address}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={node_dir(cfg, node) / 'data'}",
        "num.partitions=12",
        f"default.replication.factor={rep.factor}",
        f"min.insync.replicas={rep.min_insync}",
        f"offsets.topic.replication.factor={rep.factor}",
        "offsets.topic.num.partitions=12",
        f"transaction.state.log.replication.factor={rep.factor}",
        f"transaction.state.log.min.isr={rep.min_insync}",
        "transaction.state.log.num.partitions=12",
        f"share.coordinator.state.topic.replication.factor={rep.factor}",
        f"share.coordinator.state.topic.min.isr={rep.min_insync}",
        "group.initial.rebalance.delay.ms=0",
        "num.network.threads=2",
        "auto.create.topics.enable=true",
    ]
    if len(nodes) == 1:
        lines.append("num.io.threads=4")
    else:
        # Several JVMs share two cores: fewer threads each. A dead node is fenced (and its partitions get new
        # leaders) once it misses heartbeats for broker.session.timeout.ms (default 9 s); 6 s shortens the
        # window in which writes to its partitions wait, without fencing a node that a busy box slowed down.
        lines += [
            "num.io.threads=2",
            "num.replica.fetchers=1",
            "background.threads=4",
            "num.recovery.threads.per.data.dir=1",
            "broker.heartbeat.interval.ms=1000",
            "broker.session.timeout.ms=6000",
            "replica.lag.time.max.ms=10000",
        ]
    return "\n".join([*lines, ""])


def cluster_id() -> str:
    """A new cluster id in Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own `Uuid.randomUuid()`, never one that starts with '-': `kafka-storage format -t -Abc…`
    reads it as an option and fails (one id in 64; it failed a CI run)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def check_layout(cfg: StackConfig) -> None:
    """The node count is fixed when the cluster is formatted: asking for another later is a one-line error."""
    formatted = formatted_brokers(data_dir(cfg))
    asked = cfg.kafka_brokers_asked
    if formatted is not None and asked and asked != formatted:
        raise StackError(
            f"the local Kafka cluster in {data_dir(cfg)} has {formatted} broker(s), not {asked}: unset "
            "OEE_KAFKA_BROKERS (or --brokers) to use it, or `oee down --purge` to start a new one"
        )


def _cluster_id_for(cfg: StackConfig) -> str:
    """The cluster id every node is formatted with, made once and kept in the layout file beside the data."""
    layout = data_dir(cfg) / LAYOUT_FILE
    formatted = formatted_brokers(data_dir(cfg))
    if layout.exists():
        return str(json.loads(layout.read_text())["cluster_id"])
    ident = cluster_id()
    if formatted is None:  # a single node made before the layout file existed keeps going without one
        layout.parent.mkdir(parents=True, exist_ok=True)
        layout.write_text(json.dumps({"cluster_id": ident, "brokers": cfg.kafka_brokers}) + "\n")
    return ident


def format_storage(cfg: StackConfig, node: KafkaNode, libs: Path, ident: str) -> None:
    props = node_dir(cfg, node) / "server.properties"
    if (node_dir(cfg, node) / "data" / "meta.properties").exists():
        return
    cmd = ["java", "-cp", f"{libs}/*", STORAGE_TOOL, "format", "-t", ident, "-c", str(props)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"formatting Kafka storage failed: {(result.stdout + result.stderr).strip()[-300:]}")


def managed(cfg: StackConfig, node: KafkaNode | None = None) -> Managed:
    return Managed(node.name if node else "kafka", cfg.state_dir)


def node(cfg: StackConfig, node_id: int) -> KafkaNode:
    for candidate in cfg.kafka_nodes:
        if candidate.node_id == node_id:
            return candidate
    raise StackError(f"the local Kafka cluster has no node {node_id} (nodes 1..{cfg.kafka_brokers})")


def start(cfg: StackConfig) -> dict[int, int]:
    """Start every node of this stack's cluster that is not running; node id -> pid once all of them answer.

    All nodes start before any is waited for: a node of a 3-voter quorum answers only once a majority runs."""
    check_layout(cfg)
    pids = {n.node_id: _spawn(cfg, n) for n in cfg.kafka_nodes}
    wait_ready(cfg, cfg.kafka_nodes)
    return pids


def start_node(cfg: StackConfig, node_id: int) -> int:
    """Start one node (if it is not running) and return its pid once it answers and has rejoined."""
    target = node(cfg, node_id)
    pid = _spawn(cfg, target)
    wait_ready(cfg, (target,))
    return pid


def _spawn(cfg: StackConfig, target: KafkaNode) -> int:
    proc = managed(cfg, target)
    with file_lock(proc.pid_file.with_suffix(".lock")):  # one start at a time (supervisor, `up`, a drill)
        pid = proc.pid()
        if pid is not None:
            return pid
        require_port_free(target.port, f"Kafka node {target.node_id}", "OEE_KAFKA_PORT")
        require_port_free(
            target.controller_port,
            f"the KRaft controller of node {target.node_id}",
            "OEE_KAFKA_CONTROLLER_PORT",
        )
        libs = ensure_jars(cfg)
        with file_lock(cfg.state_dir / "run" / "kafka-format.lock"):
            ident = _cluster_id_for(cfg)
            node_dir(cfg, target).mkdir(parents=True, exist_ok=True)
            (node_dir(cfg, target) / "server.properties").write_text(server_properties(cfg, target))
            format_storage(cfg, target, libs, ident)
        logs = proc.log_file.parent
        argv = [
            "java", f"-Xmx{cfg.kafka_heap}", f"-Xms{cfg.kafka_heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            # Two cores for everything: one GC and two JIT threads per broker; a broker out of memory exits
            # (and is restarted) instead of limping on.
            "-XX:ParallelGCThreads=1", "-XX:ConcGCThreads=1", "-XX:CICompilerCount=2",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true", f"-Dkafka.logs.dir={logs}", f"-Doee.kafka.log={target.name}-server.log",
            f"-Doee.log.max.bytes={cfg.log_max_bytes}", f"-Doee.log.backups={cfg.log_backups}",
            f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
            "-cp", f"{libs}/*", MAIN_CLASS, str(node_dir(cfg, target) / "server.properties"),
        ]  # fmt: skip
        return proc.start(argv)


def wait_ready(cfg: StackConfig, nodes: tuple[KafkaNode, ...]) -> None:
    """Until each node answers metadata on its own port and the cluster lists it among its live brokers."""
    deadline = time.monotonic() + cfg.start_timeout
    answered: set[int] = set()
    while time.monotonic() < deadline:
        for target in nodes:
            proc = managed(cfg, target)
            if proc.pid() is None:
                server_log = proc.log_file.parent / f"{target.name}-server.log"
                raise StackError(
                    f"Kafka node {target.node_id} exited during start; see {proc.log_file} and {server_log}: "
                    f"{proc.log_tail(1)[:200]}"
                )
        for n in nodes:
            if n.node_id not in answered and asyncio.run(answers_metadata(n.address)):
                answered.add(n.node_id)
        if len(answered) == len(nodes):
            live = asyncio.run(live_brokers(cfg.bootstrap_servers)) or set()
            if answered <= live:
                return
        time.sleep(0.3)
    missing = sorted({n.node_id for n in nodes} - answered) or [n.node_id for n in nodes]
    raise StackError(
        f"Kafka node(s) {missing} did not answer on {cfg.bootstrap_servers} within {cfg.start_timeout:.0f} s; "
        f"see {cfg.state_dir / 'logs'}/kafka*-server.log or raise OEE_START_TIMEOUT"
    )


async def answers_metadata(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when a broker at `bootstrap` returns cluster metadata (a TCP accept alone is not enough)."""
    return await live_brokers(bootstrap, timeout) is not None


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    # While brokers boot, aiokafka logs every refused connection as an error: not news here.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        quiet.setLevel(level)


async def live_brokers(bootstrap: str, timeout: float = 2.0) -> set[int] | None:
    """The node ids the cluster's metadata lists as live (fenced and dead ones are left out); None when no
    broker at `bootstrap` answers."""
    from aiokafka.admin import AIOKafkaAdminClient

    first = bootstrap.split(",")[0]
    host, _, port = first.rpartition(":")
    if "," not in bootstrap and not port_open(int(port), host or "127.0.0.1"):
        return None
    with _quiet_aiokafka():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout)
            described = await asyncio.wait_for(admin.describe_cluster(), timeout)
            return {int(b["node_id"]) for b in described["brokers"]}
        except Exception:
            return None
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin.close(), timeout)


def stop(cfg: StackConfig) -> bool:
    """Stop every node (side by side); False when none ran. SIGTERM is a broker's controlled shutdown: it
    hands its partitions' leadership over, flushes and closes its logs cleanly."""
    return bool(stop_all([managed(cfg, n) for n in cfg.kafka_nodes], signal.SIGTERM, timeout=30.0))


def stop_node(cfg: StackConfig, node_id: int) -> bool:
    return managed(cfg, node(cfg, node_id)).stop(signal.SIGTERM, timeout=30.0)


def signal_node(cfg: StackConfig, node_id: int, sig: signal.Signals) -> int:
    """Send `sig` to one running node (SIGKILL, SIGSTOP, SIGCONT: fault drills); its pid. Nothing is marked:
    a supervisor restarts a node killed this way, as it would one that crashed."""
    pid = managed(cfg, node(cfg, node_id)).pid()
    if pid is None:
        raise StackError(f"Kafka node {node_id} is not running")
    os.kill(pid, sig)
    return pid


def purge(cfg: StackConfig) -> None:
    shutil.rmtree(data_dir(cfg), ignore_errors=True)
