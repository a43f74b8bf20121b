"""Built-in dashboards: ``web`` (plugins/dashboard/web: web UI, JSON API, /metrics,
jobs) and ``none`` (no web UI). The factory imports the web server (and aiohttp)
only when called, in the dashboard process."""

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


def _web_dashboard(**options):
    from microray.plugins.dashboard.web.server import WebDashboard

    return WebDashboard(**options)


@hookimpl
def microray_dashboards():
    return [
        DashboardRegistration(name="none", factory=NoDashboard, description="no dashboard"),
        DashboardRegistration(
            name="web",
            factory=_web_dashboard,
            description="web UI, JSON state API, Prometheus /metrics and job submission (aiohttp)",
            capabilities=frozenset({"metrics", "jobs", "ui"}),
        ),
    ]
