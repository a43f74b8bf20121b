"""Every config key declares its range; a value outside it is refused from every source
(microray.toml, MICRORAY_* variables, init()/replace() arguments, CLI flags) with the
key, the value and the range. Keys that depend on each other are checked together, and
a config file that cannot be read is named with what was wrong."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from microray.cli import cli
from microray.config import Config, allowed_values, resolve
from microray.exceptions import ConfigError

# keys whose type is their whole range: switches, backend option tables (checked by the
# chosen backend's own schema) and the namespace (any name)
TYPE_IS_THE_RANGE = {
    "prestart_workers", "log_to_driver", "dedup_logs", "dashboard_on_demand", "namespace", "object_transfer_data_path",
    "gcs_store_options", "object_store_options", "scheduling_policy_options", "dashboard_options",
}


def test_every_key_declares_its_range() -> None:
    undeclared = [f.name for f in fields(Config) if f.name not in TYPE_IS_THE_RANGE and allowed_values(f.name) is None]
    assert not undeclared, f"config keys without a declared range: {undeclared}"


def test_every_default_is_in_its_own_range(tmp_path: Path) -> None:
    assert resolve(cwd=tmp_path, environ={}) == Config()


NONSENSE = [
    ("heartbeat_period_s", -1, ">= 0.05"),
    ("heartbeat_period_s", 0, ">= 0.05"),
    ("heartbeat_period_s", math.nan, ">= 0.05"),
    ("node_dead_after_s", 0, ">= 0.1"),
    ("object_store_memory", 1, ">= 10485760"),
    ("max_inline_object_bytes", -5, ">= 0"),
    ("max_tasks_in_flight_per_worker", 0, ">= 1"),
    ("gcs_port", 70000, "<= 65535"),
    ("gcs_rpc_timeout_s", 0, "> 0"),
    ("idle_lease_keep_s", math.inf, ">= 0"),
    ("metrics_sample_period_s", 0, ">= 0.05"),
    ("task_history_cap", 0, ">= 1"),
    ("log_level", "loud", "'warning'"),
    ("start_method", "thread", "'spawn'"),
    ("session_root", "", "a non-empty string"),
]


def _toml(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return repr(value)


@pytest.mark.parametrize("key, value, range_text", NONSENSE)
@pytest.mark.parametrize("source", ["argument", "environment", "microray.toml", "replace"])
def test_nonsense_is_refused_with_key_value_and_range(
    tmp_path: Path, source: str, key: str, value: object, range_text: str
) -> None:
    with pytest.raises(ConfigError) as info:
        if source == "argument":
            resolve({key: value}, cwd=tmp_path, environ={})
        elif source == "environment":
            resolve(cwd=tmp_path, environ={f"MICRORAY_{key.upper()}": str(value)})
        elif source == "replace":
            Config().replace(**{key: value})
        else:
            (tmp_path / "microray.toml").write_text(f"{key} = {_toml(value)}\n")
            resolve(cwd=tmp_path, environ={})
    text = str(info.value)
    assert f"config key {key!r}" in text
    assert "bad value" in text and (repr(value) in text or repr(str(value)) in text)
    assert range_text in text
    where = {"argument": "from argument", "replace": "from argument",
             "environment": f"MICRORAY_{key.upper()}", "microray.toml": "microray.toml"}[source]
    assert where in text


def test_cli_flags_are_checked_the_same_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["start", "--head", "--object-store-memory", "1"])
    assert result.exit_code != 0
    assert "'object_store_memory'" in result.output and "bad value '1'" in result.output
    assert ">= 10485760" in result.output


def test_node_dead_after_must_exceed_the_heartbeat_period(tmp_path: Path) -> None:
    (tmp_path / "microray.toml").write_text("heartbeat_period_s = 2.0\n")
    with pytest.raises(ConfigError) as info:
        resolve({"node_dead_after_s": 1.5}, cwd=tmp_path, environ={})
    text = str(info.value)
    assert "'node_dead_after_s' must exceed 'heartbeat_period_s'" in text
    assert "node_dead_after_s=1.5 (from argument)" in text
    assert f"heartbeat_period_s=2.0 (from {tmp_path / 'microray.toml'})" in text
    with pytest.raises(ConfigError, match=r"heartbeat_period_s=20\.0 \(from argument\)"):
        Config().replace(heartbeat_period_s=20.0)  # the default node_dead_after_s is 10
    assert resolve({"heartbeat_period_s": 2.0, "node_dead_after_s": 5}, cwd=tmp_path, environ={}).node_dead_after_s == 5


def test_object_store_must_hold_more_than_an_inline_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'object_store_memory' must exceed 'max_inline_object_bytes'"):
        resolve({"object_store_memory": "16MiB", "max_inline_object_bytes": 32 * 2**20}, cwd=tmp_path, environ={})


@pytest.mark.parametrize("amounts, words", [
    ({"accel": math.nan}, "bad amount nan for 'accel'"),
    ({"accel": math.inf}, "bad amount inf for 'accel'"),
    ({"CPU": 2}, "'CPU' is not a custom resource; set it with num_cpus"),
    ({"": 1}, "bad name ''"),
])
def test_bad_custom_resources(tmp_path: Path, amounts: dict, words: str) -> None:
    with pytest.raises(ConfigError, match="config key 'resources'") as info:
        resolve({"resources": amounts}, cwd=tmp_path, environ={})
    assert words in str(info.value)


def test_plugins_must_be_module_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'plugins'.*expected a list of non-empty strings"):
        resolve({"plugins": ["ok.mod", 3]}, cwd=tmp_path, environ={})


def test_log_level_is_read_in_any_case(tmp_path: Path) -> None:
    assert resolve(cwd=tmp_path, environ={"MICRORAY_LOG_LEVEL": "WARNING"}).log_level == "warning"


# -- config files that cannot be read ---------------------------------------------------
@pytest.mark.parametrize("name", ["microray.toml", "pyproject.toml"])
def test_binary_config_file_names_the_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe garbage")
    with pytest.raises(ConfigError) as info:
        resolve(cwd=tmp_path, environ={})
    text = str(info.value)
    assert text.startswith(f"{path}: not a text file")
    assert "0x89" in text and "expected TOML text" in text


def test_config_file_with_control_characters_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "microray.toml"
    path.write_bytes(b"num_cpus = 2\n\x00\x01\x02\n")
    with pytest.raises(ConfigError, match=rf"^{path}: malformed TOML: "):
        resolve(cwd=tmp_path, environ={})


def test_unreadable_config_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "microray.toml"
    path.write_text("num_cpus = 2\n")
    path.chmod(0)
    try:
        if path.read_bytes():  # root reads it anyway: nothing to check here
            pytest.skip("running as root")
    except PermissionError:
        pass
    try:
        with pytest.raises(ConfigError, match=rf"^{path}: cannot read the config file: Permission denied"):
            resolve(cwd=tmp_path, environ={})
    finally:
        path.chmod(0o644)


def test_tool_microray_that_is_not_a_table(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool]\nmicroray = "fast"\n')
    with pytest.raises(ConfigError, match=rf"^{path}: \[tool.microray\] must be a table, got 'fast'"):
        resolve(cwd=tmp_path, environ={})
