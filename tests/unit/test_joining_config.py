"""A node joining a cluster runs the cluster's config with its own node-local keys."""

from __future__ import annotations

import pytest

from microray.config import NODE_LOCAL_KEYS, Config, joining_node_config
from microray.exceptions import ConfigError


def test_cluster_keys_come_from_the_head_and_node_keys_from_this_machine() -> None:
    cluster = Config(node_dead_after_s=3.0, heartbeat_period_s=0.25, max_inline_object_bytes=1000,
                     scheduling_policy="spread", num_cpus=8, resources={"head_only": 1}, plugins=["a"])
    local = Config(num_cpus=2, resources={"custom": 1}, labels={"zone": "b"}, raylet_port=7000,
                   node_dead_after_s=30.0, plugins=["b", "a"])
    cfg = joining_node_config(cluster, local)
    assert (cfg.node_dead_after_s, cfg.heartbeat_period_s) == (3.0, 0.25)
    assert cfg.max_inline_object_bytes == 1000 and cfg.scheduling_policy == "spread"
    assert (cfg.num_cpus, cfg.resources, cfg.labels, cfg.raylet_port) == (2, {"custom": 1}, {"zone": "b"}, 7000)
    assert cfg.plugins == ["a", "b"]


def test_node_local_keys_are_config_keys() -> None:
    assert set(NODE_LOCAL_KEYS) <= set(Config.__dataclass_fields__)


def test_a_joining_config_that_breaks_a_cross_key_rule_is_refused() -> None:
    cluster = Config(max_inline_object_bytes=64 * 2**20)
    local = Config(object_store_memory=32 * 2**20)
    with pytest.raises(ConfigError, match="object_store_memory"):
        joining_node_config(cluster, local)
