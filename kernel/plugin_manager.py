"""The plugin manager: loads built-in and third-party plugins and selects backends.

Every plugin, built-in or not, arrives through the ``microray`` entry-point
group. Entry points of the ``microray`` distribution itself are the built-ins:
one that fails to load is fatal. A third-party entry point that fails is
logged, skipped, remembered, and reported in the error for an unknown name and
by ``microray plugins``. ``MICRORAY_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the
built-ins. Config may also name plugin modules directly (``plugins = [...]``).

``select(family, name)`` is the only place a backend is chosen.
"""

from __future__ import annotations

import difflib
import importlib
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy
import structlog

from microray import hookspecs
from microray.exceptions import PluginError
from microray.registrations import (
    DashboardRegistration,
    GcsStoreRegistration,
    ObjectStoreRegistration,
    Registration,
    SchedulingPolicyRegistration,
)

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "microray"
BUILTIN_DISTRIBUTION = "microray"

# family name (as in config) -> registration hook name
FAMILIES: dict[str, str] = {
    "gcs_store": "microray_gcs_stores",
    "object_store": "microray_object_stores",
    "scheduling_policy": "microray_scheduling_policies",
    "dashboard": "microray_dashboards",
}
# family name -> the registration class its hook returns
FAMILY_TYPES: dict[str, type[Registration]] = {
    "gcs_store": GcsStoreRegistration,
    "object_store": ObjectStoreRegistration,
    "scheduling_policy": SchedulingPolicyRegistration,
    "dashboard": DashboardRegistration,
}


@dataclass(frozen=True)
class FailedPlugin:
    """An entry point or module that could not be loaded."""

    name: str
    source: str
    error: str


@dataclass(frozen=True)
class RegisteredBackend:
    """One registration together with where it came from."""

    family: str
    registration: Registration
    source: str


class MicrorayPluginManager:
    """A ``pluggy.PluginManager`` plus the registry of named backends."""

    def __init__(self, *, autoload: bool | None = None, extra_modules: Sequence[str] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.failed: list[FailedPlugin] = []
        self.sources: dict[str, str] = {}  # plugin name -> "entry point x (dist y)"
        self._third_party: set[str] = set()  # plugin names from third-party entry points
        if autoload is None:
            disable = os.environ.get("MICRORAY_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower()
            autoload = disable not in ("1", "true", "yes")
        self.autoload = autoload
        # hook name -> (the implementations seen, one caller per plugin): see _callers_each
        self._callers: dict[str, tuple[list[Any], list[tuple[str, pluggy.HookCaller]]]] = {}
        self._load_entry_points()
        for module in extra_modules:
            self.register_module(module)
        self.pm.check_pending()
        self._registry: dict[str, dict[str, RegisteredBackend]] | None = None
        if os.environ.get("MICRORAY_TRACE_HOOKS") == "1":
            self._trace_hooks()

    # -- loading ---------------------------------------------------------
    def _load_entry_points(self) -> None:
        seen: set[tuple[str, str, str]] = set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "?"
            builtin = dist == BUILTIN_DISTRIBUTION
            if not builtin and not self.autoload:
                continue
            source = f"entry point {ep.name!r} ({dist}{' built-in' if builtin else ''})"
            if (dist, ep.name, ep.value) in seen:
                continue  # the same distribution can be visible twice (editable + path)
            seen.add((dist, ep.name, ep.value))
            # Entry-point names are only unique within one distribution: a
            # third-party "scheduling" must not shadow (or be shadowed by) ours.
            plugin_name = ep.name
            if self.pm.get_plugin(plugin_name) is not None or plugin_name in self.sources:
                plugin_name = f"{dist}:{ep.name}"
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 -- reported, not fatal for third parties
                if builtin:
                    raise PluginError(
                        f"built-in plugin {ep.name!r} ({ep.value}) failed to load: "
                        f"{type(exc).__name__}: {exc}. Is microray installed correctly "
                        "(pip install -e . or pip install microray)?"
                    ) from exc
                self.failed.append(FailedPlugin(ep.name, source, f"{type(exc).__name__}: {exc}"))
                log.warning("plugin_load_failed", plugin=ep.name, source=source, error=str(exc))
                continue
            if self.pm.is_registered(plugin):
                continue  # two entry points naming one module: register it once
            self.pm.register(plugin, name=plugin_name)
            self.sources[plugin_name] = source
            if not builtin:
                self._third_party.add(plugin_name)

    def register_module(self, module_name: str) -> None:
        """Register a plugin module named in config (``plugins = ["pkg.mod"]``)."""
        if self.pm.get_plugin(module_name) is not None:
            return
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001
            raise PluginError(
                f"plugin module {module_name!r} named in config failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if self.pm.is_registered(module):
            return  # already loaded through its entry point
        self.pm.register(module, name=module_name)
        self.sources[module_name] = f"module {module_name!r} (config)"
        self._registry = None

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object directly (tests, embedding applications)."""
        registered = self.pm.register(plugin, name=name)
        assert registered is not None
        self.sources[registered] = f"object {registered!r} (registered in code)"
        self._registry = None
        self.pm.check_pending()
        return registered

    # -- the registry ----------------------------------------------------
    def _collect(self) -> dict[str, dict[str, RegisteredBackend]]:
        registry: dict[str, dict[str, RegisteredBackend]] = {}
        for family, hook_name in FAMILIES.items():
            hook = getattr(self.pm.hook, hook_name)
            by_name: dict[str, RegisteredBackend] = {}
            for plugin_name, call in self._callers_each(hook_name):
                source = self.sources.get(plugin_name, plugin_name)
                try:
                    registrations = [reg for result in call() for reg in result]
                except Exception as exc:  # noqa: BLE001 -- a broken third party is skipped
                    error = f"{hook_name}() raised {type(exc).__name__}: {exc}"
                    if plugin_name not in self._third_party:
                        raise PluginError(f"plugin {source}: {error}") from exc
                    failed = FailedPlugin(plugin_name, source, error)
                    if failed not in self.failed:  # the registry is rebuilt after register()
                        self.failed.append(failed)
                        log.warning("plugin_hook_failed", plugin=plugin_name, source=source, error=error)
                    continue
                expected = FAMILY_TYPES[family]
                for reg in registrations:
                    if not isinstance(reg, expected):
                        raise PluginError(
                            f"{hook_name}() of {source} returned {reg!r}; expected a {expected.__name__}"
                        )
                    prior = by_name.get(reg.name)
                    if prior is not None:
                        raise PluginError(
                            f"{family} name {reg.name!r} is registered twice: by {prior.source} "
                            f"and by {source}; uninstall or rename one of them"
                        )
                    by_name[reg.name] = RegisteredBackend(family, reg, source)
            registry[family] = by_name
        return registry

    @property
    def registry(self) -> dict[str, dict[str, RegisteredBackend]]:
        if self._registry is None:
            self._registry = self._collect()
        return self._registry

    def names(self, family: str) -> list[str]:
        self._check_family(family)
        return sorted(self.registry[family])

    def _check_family(self, family: str) -> None:
        if family not in FAMILIES:
            raise PluginError(
                f"unknown plugin family {family!r}; expected one of: {', '.join(FAMILIES)}"
            )

    def select(self, family: str, name: str) -> Registration:
        """Return the registration called ``name`` in ``family``.

        An unknown name raises one ``PluginError`` naming the family, the name,
        the available names, the closest match and every plugin that failed to load.
        """
        self._check_family(family)
        found = self.registry[family].get(name)
        if found is not None:
            return found.registration
        available = sorted(self.registry[family])
        parts = [
            f"unknown {family} {name!r}; available: {', '.join(available) or '(none)'}"
        ]
        close = difflib.get_close_matches(str(name), available, n=1)
        if close:
            parts.append(f"did you mean {close[0]!r}?")
        for failed in self.failed:
            parts.append(f"plugin {failed.name!r} from {failed.source} failed to load: {failed.error}")
        raise PluginError("; ".join(parts))

    def has_capability(self, family: str, name: str, capability: str) -> bool:
        """Whether the registration ``name`` of ``family`` declares ``capability``
        (the kernel decides by capability, never by a backend's name)."""
        return capability in self.select(family, name).capabilities

    def describe(self) -> list[dict[str, Any]]:
        """Rows for ``microray plugins``: family, name, source, capabilities."""
        rows = []
        for family, by_name in self.registry.items():
            for name, rb in sorted(by_name.items()):
                rows.append(
                    dict(
                        family=family,
                        name=name,
                        source=rb.source,
                        description=rb.registration.description,
                        capabilities=sorted(rb.registration.capabilities),
                    )
                )
        return rows

    # -- calling hooks one plugin at a time -------------------------------
    def _callers_each(self, hook_name: str) -> list[tuple[str, pluggy.HookCaller]]:
        """One pluggy hook caller per plugin implementing ``hook_name`` (in registration
        order), each calling only that plugin's implementation (plus any wrappers).

        Calling them one by one lets one plugin's error be handled without losing the
        others' results, while every call still goes through pluggy's call path (hook
        call monitoring, so ``MICRORAY_TRACE_HOOKS`` sees it). Cached until the set of
        implementations changes."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        cached = self._callers.get(hook_name)
        if cached is not None and cached[0] == impls:
            return cached[1]
        plain = [i for i in impls if not (i.wrapper or i.hookwrapper)]
        callers = [
            (impl.plugin_name,
             self.pm.subset_hook_caller(hook_name, [o.plugin for o in plain if o is not impl]))
            for impl in plain
        ]
        self._callers[hook_name] = (impls, callers)
        return callers

    # -- observers -------------------------------------------------------
    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call an observer hook; a raising observer is logged, never fatal, and the
        other observers are still called."""
        for plugin_name, call in self._callers_each(hook_name):
            try:
                call(**kwargs)
            except Exception as exc:  # noqa: BLE001
                log.warning("observer_failed", hook=hook_name, plugin=plugin_name, error=repr(exc))

    def has_observers(self, hook_name: str) -> bool:
        return bool(getattr(self.pm.hook, hook_name).get_hookimpls())

    def _trace_hooks(self) -> None:
        """Log every hook call made through pluggy (``MICRORAY_TRACE_HOOKS=1``): the hook,
        the plugins called and the time taken. Observers run on several threads, so
        each thread keeps its own start times."""
        starts = threading.local()

        def before(hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
            stack = getattr(starts, "stack", None)
            if stack is None:
                stack = starts.stack = []
            stack.append(time.perf_counter())

        def after(outcome: Any, hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
            t0 = starts.stack.pop()
            log.info(
                "hook_called",
                hook=hook_name,
                plugins=[i.plugin_name for i in hook_impls],
                duration_ms=round((time.perf_counter() - t0) * 1e3, 3),
                raised=outcome.exception is not None,
            )

        self.pm.add_hookcall_monitoring(before, after)


_manager: MicrorayPluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager(extra_modules: Iterable[str] = ()) -> MicrorayPluginManager:
    """The process-wide plugin manager, created on first use."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = MicrorayPluginManager(extra_modules=tuple(extra_modules))
        else:
            for module in extra_modules:
                _manager.register_module(module)
        return _manager


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests; after changing installed plugins)."""
    global _manager
    with _manager_lock:
        _manager = None


def select(family: str, name: str) -> Registration:
    """Shortcut for ``get_plugin_manager().select(family, name)``."""
    return get_plugin_manager().select(family, name)
