"""``ISOLATIONS``: parametrize a multi-node test to run once with every node on this
machine's loopback and once with each worker node in network and mount namespaces of its
own (``Cluster(isolation="netns")``, marked slow; skipped with the reason where namespaces
cannot be made)::

    @pytest.mark.parametrize("isolation", ISOLATIONS)
    def test_x(make_cluster, isolation):
        cluster = make_cluster(initialize_head=True, isolation=isolation)
"""

import pytest

ISOLATIONS = [None, pytest.param("netns", marks=pytest.mark.slow)]

# ``(isolation, unplug)`` for tests that kill a node: ``unplug`` cuts an isolated node's
# network before its processes die (``Cluster.remove_node(unplug=True)``), so that the
# others see no close or reset from it, only silence, as from a machine that lost power
NODE_DEATHS = [
    pytest.param(None, False, id="loopback"),
    pytest.param("netns", False, id="netns", marks=pytest.mark.slow),
    pytest.param("netns", True, id="netns-unplugged", marks=pytest.mark.slow),
]
