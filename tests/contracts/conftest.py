"""Fixtures for the contract suites: real servers for the durable backends.

``redis_server`` and ``etcd_server`` are session-scoped real processes from
``microray.testing.servers`` (also usable elsewhere with
``-p microray.testing.servers`` or by importing them into a conftest).
"""

from microray.testing.secure_servers import (  # noqa: F401 -- pytest fixtures
    etcd_cluster,
    etcd_secure_server,
    redis_secure_server,
)
from microray.testing.servers import etcd_server, redis_server  # noqa: F401 -- pytest fixtures
