"""Built-in dashboards: ``none`` (no web UI). The ``web`` dashboard registers here too
once it exists (plugins/dashboard/web)."""

from __future__ import annotations

from microray.hookspecs import hookimpl
from microray.interfaces.dashboard import DashboardContext
from microray.registrations import DashboardRegistration


class NoDashboard:
    """Serves nothing; ``start`` returns an empty URL."""

    def start(self, context: DashboardContext) -> str:
        return ""

    def stop(self) -> None:
        return None


@hookimpl
def microray_dashboards():
    return [DashboardRegistration(name="none", factory=NoDashboard, description="no dashboard")]
