"""Placement on a multi-node Ray cluster (Ray's in-process test cluster): policy on the GPU node, environments on
CPU nodes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gymbox.agent.spec import PolicySpec
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.ray_runner import RayRollouts
from gymbox.tasks import load_suite

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    # All nodes are processes of this machine (Ray addresses them by the machine's own IP address, not
    # loopback); the head runs no work, as on a typical cluster.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    # A GPU node as Ray sees one: it declares a GPU resource (no real GPU is touched by a scripted policy).
    gpu = cluster.add_node(num_cpus=1, num_gpus=1)
    cpus = [cluster.add_node(num_cpus=2) for _ in range(2)]
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    yield {"head": cluster.head_node.node_id, "gpu": gpu.node_id, "cpu": [n.node_id for n in cpus]}
    ray.shutdown()
    cluster.shutdown()


async def test_policy_goes_to_the_gpu_node_and_environments_to_cpu_nodes(cluster: dict[str, Any]) -> None:
    spec = PolicySpec.parse("scripted:gymbox.harness.demo:echo_script")
    tasks = load_suite("echo-demo").tasks[:3]
    async with RayRollouts(spec, EpisodeConfig(), workers_per_env=2) as rollouts:
        trajectories = await rollouts.run(tasks, 2)
        nodes = await rollouts.worker_nodes()
        policy_node = rollouts.policy_info["node"]
    assert all(t.error is None and t.signals["success"] == 1.0 for t in trajectories)
    assert policy_node == cluster["gpu"]
    assert sorted(nodes["echo"]) == sorted(cluster["cpu"])  # spread over both CPU nodes, none on the GPU node
