"""``dash``: the dashboard tests' cluster fixture (one web-dashboard cluster per module)."""

from dashboard.support import dash  # noqa: F401 -- the fixture
