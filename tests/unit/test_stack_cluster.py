"""The local Kafka cluster's layout: nodes, ports, the quorum, the count fixed at formatting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services import config
from services.stack import kafka
from services.stack.cluster import KafkaNode, bootstrap_of, formatted_brokers, local_nodes, quorum_voters


def test_three_nodes_take_interleaved_ports_from_the_defaults() -> None:
    nodes = local_nodes(3, 9092, 9093)
    assert nodes == (KafkaNode(1, 9092, 9093), KafkaNode(2, 9094, 9095), KafkaNode(3, 9096, 9097))
    assert [n.name for n in nodes] == ["kafka", "kafka-2", "kafka-3"]
    assert bootstrap_of(nodes) == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert quorum_voters(nodes) == "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"


def test_colliding_or_overflowing_ports_are_refused() -> None:
    with pytest.raises(ValueError, match="share a port"):
        local_nodes(3, 9092, 9094)  # node 2's client port would be node 1's controller port
    with pytest.raises(ValueError, match="65535"):
        local_nodes(3, 65532, 65533)
    with pytest.raises(ValueError):
        local_nodes(0, 9092, 9093)
    with pytest.raises(ValueError):
        local_nodes(6, 9092, 9093)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "OEE_STATE_DIR": str(tmp_path),
        "OEE_KAFKA_PORT": "19192",
        "OEE_KAFKA_CONTROLLER_PORT": "19193",
        **extra,
    }


def test_the_broker_count_comes_from_the_environment_the_option_or_the_formatted_cluster(
    tmp_path: Path,
) -> None:
    assert config.load_stack(_env(tmp_path)).kafka_brokers == 1
    asked = config.load_stack(_env(tmp_path, OEE_KAFKA_BROKERS="3"))
    assert (asked.kafka_brokers, asked.kafka_brokers_asked) == (3, 3)
    assert asked.bootstrap_servers == "127.0.0.1:19192,127.0.0.1:19194,127.0.0.1:19196"
    assert config.load_stack(_env(tmp_path), brokers=2).kafka_brokers == 2
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "cluster.json").write_text(json.dumps({"cluster_id": "x", "brokers": 3}))
    found = config.load_stack(_env(tmp_path))
    assert (found.kafka_brokers, found.kafka_brokers_asked) == (3, 0), (
        "later commands find the cluster as made"
    )
    assert config.load_stack(_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS="b:9092")).bootstrap_servers == "b:9092"


def test_a_single_node_made_before_the_layout_file_counts_as_one(tmp_path: Path) -> None:
    assert formatted_brokers(tmp_path / "kafka") is None
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    (tmp_path / "kafka" / "data" / "meta.properties").write_text("node.id=1\n")
    assert formatted_brokers(tmp_path / "kafka") == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"OEE_KAFKA_BROKERS": "0"}, "OEE_KAFKA_BROKERS"),
        ({"OEE_KAFKA_BROKERS": "9"}, "OEE_KAFKA_BROKERS"),
        ({"OEE_KAFKA_BROKERS": "three"}, "OEE_KAFKA_BROKERS"),
        ({"OEE_KAFKA_BROKERS": "3", "OEE_KAFKA_CONTROLLER_PORT": "19194"}, "share a port"),
        ({"OEE_LOG_MAX_BYTES": "100"}, "OEE_LOG_MAX_BYTES"),
    ],
)
def test_bad_stack_settings_are_config_errors(tmp_path: Path, extra: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load_stack(_env(tmp_path, **extra))


def test_the_brokers_option_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="--brokers"):
        config.load_stack(_env(tmp_path), brokers=0)


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_three_nodes_replicate_the_internal_topics_three_times_two_in_sync(tmp_path: Path) -> None:
    cfg = config.load_stack(_env(tmp_path, OEE_KAFKA_BROKERS="3"))
    second = _props(kafka.server_properties(cfg, cfg.kafka_nodes[1]))
    assert second["node.id"] == "2"
    assert second["listeners"] == "PLAINTEXT://127.0.0.1:19194,CONTROLLER://127.0.0.1:19195"
    assert second["controller.quorum.voters"] == "1@127.0.0.1:19193,2@127.0.0.1:19195,3@127.0.0.1:19197"
    assert second["log.dirs"] == str(tmp_path / "kafka" / "node-2" / "data")
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "share.coordinator.state.topic.replication.factor"):  # fmt: skip
        assert second[key] == "3", key
    for key in (
        "min.insync.replicas",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.min.isr",
    ):
        assert second[key] == "2", key


def test_one_node_keeps_its_place_and_replication_one(tmp_path: Path) -> None:
    cfg = config.load_stack(_env(tmp_path))
    props = _props(kafka.server_properties(cfg, cfg.kafka_nodes[0]))
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")
    assert props["offsets.topic.replication.factor"] == props["transaction.state.log.min.isr"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19193"
