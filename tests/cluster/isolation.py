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
