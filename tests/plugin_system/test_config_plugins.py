"""Plugin modules named in config (``plugins = ["pkg.mod"]``) are registered."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from microray.config import resolve
from microray.exceptions import PluginError
from microray.plugin_manager import MicrorayPluginManager, get_plugin_manager

_MODULE = '''
from microray.hookspecs import hookimpl
from microray.registrations import SchedulingPolicyRegistration


class Policy:
    name = "{name}"

    def select_node(self, request, cluster):
        return None


@hookimpl
def microray_scheduling_policies():
    yield SchedulingPolicyRegistration(name="{name}", factory=Policy)
'''


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for throwaway plugin modules, forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("mr_cfg_"):
            del sys.modules[name]


def _write(folder: Path, module: str, policy: str) -> None:
    (folder / f"{module}.py").write_text(textwrap.dedent(_MODULE.format(name=policy)))


def test_extra_module_is_registered(plugin_dir: Path) -> None:
    _write(plugin_dir, "mr_cfg_one", "from_config")
    manager = MicrorayPluginManager(extra_modules=["mr_cfg_one"])
    registration = manager.select("scheduling_policy", "from_config")
    assert registration.factory.__module__ == "mr_cfg_one"
    assert manager.registry["scheduling_policy"]["from_config"].source == "module 'mr_cfg_one' (config)"
    assert manager.select("scheduling_policy", "hybrid").name == "hybrid"  # built-ins too


def test_without_the_module_the_name_is_unknown(plugin_dir: Path) -> None:
    _write(plugin_dir, "mr_cfg_two", "only_with_config")
    with pytest.raises(PluginError, match="unknown scheduling_policy 'only_with_config'"):
        MicrorayPluginManager().select("scheduling_policy", "only_with_config")


def test_plugins_key_from_file_and_environment_reaches_the_manager(
    plugin_dir: Path, tmp_path: Path
) -> None:
    _write(plugin_dir, "mr_cfg_file", "from_file")
    _write(plugin_dir, "mr_cfg_env", "from_env")
    (tmp_path / "microray.toml").write_text('plugins = ["mr_cfg_file"]\n')
    assert resolve(cwd=tmp_path, environ={}).plugins == ["mr_cfg_file"]
    config = resolve(cwd=tmp_path, environ={"MICRORAY_PLUGINS": "mr_cfg_file, mr_cfg_env"})
    assert config.plugins == ["mr_cfg_file", "mr_cfg_env"]
    manager = MicrorayPluginManager(extra_modules=config.plugins)
    assert manager.select("scheduling_policy", "from_file").factory.__module__ == "mr_cfg_file"
    assert manager.select("scheduling_policy", "from_env").factory.__module__ == "mr_cfg_env"


def test_process_wide_manager_registers_modules_later(
    plugin_dir: Path, fresh_plugin_manager: None
) -> None:
    _write(plugin_dir, "mr_cfg_late", "late")
    manager = get_plugin_manager()
    with pytest.raises(PluginError):
        manager.select("scheduling_policy", "late")
    assert get_plugin_manager(extra_modules=["mr_cfg_late"]) is manager
    assert manager.select("scheduling_policy", "late").name == "late"


def test_module_that_fails_to_import_is_an_error(plugin_dir: Path) -> None:
    (plugin_dir / "mr_cfg_broken.py").write_text("raise ImportError('needs libfoo')\n")
    with pytest.raises(PluginError) as info:
        MicrorayPluginManager(extra_modules=["mr_cfg_broken"])
    assert str(info.value) == (
        "plugin module 'mr_cfg_broken' named in config failed to import: ImportError: needs libfoo"
    )
    with pytest.raises(PluginError, match="'mr_cfg_missing' named in config failed to import: "
                                          "ModuleNotFoundError"):
        MicrorayPluginManager(extra_modules=["mr_cfg_missing"])


def test_module_also_installed_through_an_entry_point_is_registered_once() -> None:
    # The built-in scheduling plugin is already loaded by its entry point.
    manager = MicrorayPluginManager(extra_modules=["microray.plugins.scheduling"])
    assert manager.names("scheduling_policy") == ["hybrid", "random", "spread"]
    assert manager.registry["scheduling_policy"]["hybrid"].source == (
        "entry point 'scheduling' (microray built-in)"
    )


def test_contrib_example_policy_enabled_by_config() -> None:
    manager = MicrorayPluginManager(extra_modules=["microray.contrib.example_policy"])
    registration = manager.select("scheduling_policy", "least_loaded")
    assert registration.validate_options("scheduling_policy", {}) == {"prefer_local": False}
    assert registration.factory().name == "least_loaded"
