"""Run in a fresh interpreter by the plugin-system tests (not a test module).

``python plugin_probe.py FAMILY NAME [MODULE ...]`` builds a new plugin
manager (config-named ``MODULE``s registered), selects ``NAME`` in ``FAMILY``
and prints one JSON line: the selection or the error, the captured structlog
events, the failed plugins and ``describe()``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from structlog.testing import capture_logs

from microray.exceptions import PluginError
from microray.plugin_manager import MicrorayPluginManager


def main(family: str, name: str, modules: list[str]) -> dict:
    report: dict = {"selected": None, "error": None, "error_type": None}
    manager = None
    with capture_logs() as logs:
        try:
            manager = MicrorayPluginManager(extra_modules=modules)
            registration = manager.select(family, name)
            report["selected"] = {
                "name": registration.name,
                "factory_module": registration.factory.__module__,
                "description": registration.description,
            }
            report["source"] = manager.registry[family][name].source
        except PluginError as exc:
            report["error"] = str(exc)
            report["error_type"] = type(exc).__name__
    report["logs"] = [{k: str(v) for k, v in event.items()} for event in logs]
    if manager is not None:
        report["failed"] = [asdict(f) for f in manager.failed]
        report["autoload"] = manager.autoload
        try:
            report["describe"] = manager.describe()
        except PluginError as exc:
            report["describe_error"] = str(exc)
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3:])))
