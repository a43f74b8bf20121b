"""Task output from a worker node on a machine of its own (its own network namespace and
address) reaches the driver, labelled with the worker's address as Ray labels it."""

from __future__ import annotations

import microray as ray
from microray.testing.processes import wait_for


@ray.remote
def hello():
    print("hello from another node", flush=True)
    return ray.get_runtime_context().get_node_id()


def test_output_of_a_task_on_another_node_reaches_the_driver(make_cluster, capsys):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1}, isolation="netns")
    node = cluster.add_node(num_cpus=1, resources={"a": 1})
    cluster.wait_for_nodes()
    cluster.connect()
    assert ray.get(hello.options(resources={"a": 1}).remote()) == node.node_id
    out: list[str] = []

    def printed() -> bool:
        out.append(capsys.readouterr().out)
        return any(line.startswith("(hello pid=") and line.endswith(f", ip={node.ip}) hello from another node")
                   for line in "".join(out).splitlines())

    wait_for(printed, timeout=30, what="the remote task's line in the driver's output")
