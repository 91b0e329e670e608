"""The local Kafka cluster's layout as plain data: its nodes, their loopback ports, the quorum.

Every node is broker and KRaft controller in one JVM. Node n (1-based) takes OEE_KAFKA_PORT + 2(n-1) for
clients and OEE_KAFKA_CONTROLLER_PORT + 2(n-1) for the quorum: with the defaults 9092/9093, three nodes use
9092-9097 without overlapping. The node count is fixed when the cluster's storage is formatted and recorded
beside it (`cluster.json`), so later commands find the cluster as it was made, whatever the environment says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MAX_BROKERS = 5  # JVMs of ~0.5-0.8 GiB each on a 2-core machine; 3 is what replication needs
PORT_STEP = 2
LAYOUT_FILE = "cluster.json"


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    port: int
    controller_port: int

    @property
    def name(self) -> str:
        """Its pid file and log name: node 1 keeps the single-broker name `kafka`."""
        return "kafka" if self.node_id == 1 else f"kafka-{self.node_id}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def local_nodes(count: int, kafka_port: int, controller_port: int) -> tuple[KafkaNode, ...]:
    """The `count` nodes; ValueError when their ports would collide or leave the port range."""
    if not 1 <= count <= MAX_BROKERS:
        raise ValueError(f"a local cluster has 1..{MAX_BROKERS} brokers, not {count}")
    nodes = tuple(
        KafkaNode(n, kafka_port + PORT_STEP * (n - 1), controller_port + PORT_STEP * (n - 1))
        for n in range(1, count + 1)
    )
    ports = [p for node in nodes for p in (node.port, node.controller_port)]
    if len(set(ports)) != len(ports):
        raise ValueError(
            f"{count} node(s) on client port {kafka_port} and controller port {controller_port} would share a "
            f"port (node n uses both + {PORT_STEP}(n-1)); pick ports further apart"
        )
    if max(ports) > 65535:
        raise ValueError(f"{count} node(s) from port {min(ports)} run past port 65535")
    return nodes


def bootstrap_of(nodes: tuple[KafkaNode, ...]) -> str:
    """Every node: a client still finds the cluster while any one of them is down."""
    return ",".join(node.address for node in nodes)


def quorum_voters(nodes: tuple[KafkaNode, ...]) -> str:
    return ",".join(f"{node.node_id}@127.0.0.1:{node.controller_port}" for node in nodes)


def formatted_brokers(kafka_dir: Path) -> int | None:
    """How many nodes the cluster under `kafka_dir` was formatted with; None when there is none yet.

    A single-node cluster made before the layout file existed has only its `data/meta.properties`."""
    try:
        return int(json.loads((kafka_dir / LAYOUT_FILE).read_text())["brokers"])
    except FileNotFoundError:
        return 1 if (kafka_dir / "data" / "meta.properties").exists() else None
    except (ValueError, KeyError, TypeError):
        return None
