"""Config resolution: precedence, validation and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microray.config import MIN_OBJECT_STORE_BYTES, Config, parse_size, resolve
from microray.exceptions import ConfigError
from microray.registrations import OptionSpec, SchedulingPolicyRegistration


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# -- precedence ----------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    config = resolve(cwd=tmp_path, environ={})
    assert config == Config()
    assert (config.scheduling_policy, config.gcs_store, config.object_store) == ("hybrid", "memory", "shm")


def test_microray_toml_overrides_defaults(tmp_path: Path) -> None:
    write(tmp_path, "microray.toml", 'scheduling_policy = "spread"\nnum_cpus = 3\n')
    config = resolve(cwd=tmp_path, environ={})
    assert (config.scheduling_policy, config.num_cpus) == ("spread", 3)
    assert config.gcs_store == "memory"  # untouched keys keep their default


def test_pyproject_tool_section_is_used_without_microray_toml(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n\n[tool.microray]\nscheduling_policy = "random"\n')
    assert resolve(cwd=tmp_path, environ={}).scheduling_policy == "random"


def test_pyproject_is_ignored_when_microray_toml_exists(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[tool.microray]\nscheduling_policy = "random"\nnum_gpus = 2\n')
    write(tmp_path, "microray.toml", 'scheduling_policy = "spread"\n')
    config = resolve(cwd=tmp_path, environ={})
    assert config.scheduling_policy == "spread"
    assert config.num_gpus is None  # not merged from pyproject either


def test_pyproject_without_tool_section_gives_defaults(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n')
    assert resolve(cwd=tmp_path, environ={}) == Config()


def test_environment_overrides_files(tmp_path: Path) -> None:
    write(tmp_path, "microray.toml", 'scheduling_policy = "spread"\nnum_cpus = 3\n')
    config = resolve(cwd=tmp_path, environ={"MICRORAY_SCHEDULING_POLICY": "random"})
    assert (config.scheduling_policy, config.num_cpus) == ("random", 3)


def test_overrides_beat_everything(tmp_path: Path) -> None:
    write(tmp_path, "microray.toml", 'scheduling_policy = "spread"\n')
    config = resolve(
        {"scheduling_policy": "hybrid", "num_cpus": None},
        cwd=tmp_path,
        environ={"MICRORAY_SCHEDULING_POLICY": "random", "MICRORAY_NUM_CPUS": "2"},
    )
    assert config.scheduling_policy == "hybrid"
    assert config.num_cpus == 2  # a None override means "not given", not "reset"


def test_every_layer_at_once(tmp_path: Path) -> None:
    write(tmp_path, "microray.toml", 'num_cpus = 1\nnum_gpus = 1\nnamespace = "file"\nlog_level = "debug"\n')
    config = resolve(
        {"num_cpus": 4},
        cwd=tmp_path,
        environ={"MICRORAY_NUM_CPUS": "3", "MICRORAY_NUM_GPUS": "2", "OTHER_VAR": "x"},
    )
    assert (config.num_cpus, config.num_gpus, config.namespace, config.log_level) == (4, 2, "file", "debug")
    assert config.dashboard_port == Config().dashboard_port


def test_runtime_switches_in_the_environment_are_not_config_keys(tmp_path: Path) -> None:
    environ = {"MICRORAY_DISABLE_PLUGIN_AUTOLOAD": "1", "MICRORAY_TRACE_HOOKS": "1", "MICRORAY_ADDRESS": "h:1"}
    assert resolve(cwd=tmp_path, environ=environ) == Config()


# -- environment parsing -------------------------------------------------------


@pytest.mark.parametrize(
    "var, raw, key, expected",
    [
        ("MICRORAY_NUM_CPUS", "8", "num_cpus", 8),
        ("MICRORAY_IDLE_LEASE_KEEP_S", "1.5", "idle_lease_keep_s", 1.5),
        ("MICRORAY_PRESTART_WORKERS", "false", "prestart_workers", False),
        ("MICRORAY_LOG_TO_DRIVER", "YES", "log_to_driver", True),
        ("MICRORAY_PLUGINS", "a.b, c.d,", "plugins", ["a.b", "c.d"]),
        ("MICRORAY_OBJECT_STORE_MEMORY", "2GiB", "object_store_memory", 2 * 2**30),
    ],
)
def test_environment_values_are_parsed(tmp_path: Path, var: str, raw: str, key: str, expected: object) -> None:
    value = getattr(resolve(cwd=tmp_path, environ={var: raw}), key)
    assert value == expected and type(value) is type(expected)


def test_environment_json_for_dict_keys(tmp_path: Path) -> None:
    environ = {
        "MICRORAY_GCS_STORE_OPTIONS": json.dumps({"url": "redis://127.0.0.1:6379/0"}),
        "MICRORAY_RESOURCES": '{"accel": 2, "disk": 0.5}',
    }
    config = resolve(cwd=tmp_path, environ=environ)
    assert config.gcs_store_options == {"url": "redis://127.0.0.1:6379/0"}
    assert config.resources == {"accel": 2, "disk": 0.5}


def test_environment_dict_that_is_not_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(cwd=tmp_path, environ={"MICRORAY_RESOURCES": "accel=2"})
    text = str(info.value)
    assert "'resources'" in text and "MICRORAY_RESOURCES" in text and "'accel=2'" in text
    assert "table/dict" in text


# -- bad keys ------------------------------------------------------------------


def test_unknown_key_in_file_names_it_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "microray.toml", 'scheduling_polcy = "spread"\n')
    with pytest.raises(ConfigError) as info:
        resolve(cwd=tmp_path, environ={})
    assert str(info.value) == (
        f"unknown config key 'scheduling_polcy' from {path}; did you mean 'scheduling_policy'?"
    )


def test_unknown_key_in_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'num_cpu' from argument; did you mean 'num_cpus'\?"):
        resolve({"num_cpu": 2}, cwd=tmp_path, environ={})


def test_unknown_key_without_a_close_match(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"zzzz": 1}, cwd=tmp_path, environ={})
    assert "'zzzz'" in str(info.value) and "did you mean" not in str(info.value)


def test_unknown_environment_variable_names_it_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(cwd=tmp_path, environ={"MICRORAY_OBJECT_STORE_MEM": "1GiB"})
    assert str(info.value) == (
        "unknown config key 'object_store_mem' from environment variable MICRORAY_OBJECT_STORE_MEM; "
        "did you mean MICRORAY_OBJECT_STORE_MEMORY?"
    )


def test_unknown_key_in_pyproject_names_the_section(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", "[tool.microray]\ndashbord = 'web'\n")
    with pytest.raises(ConfigError, match=r"'dashbord' from .*pyproject.toml \[tool.microray\]; did you mean 'dashboard'"):
        resolve(cwd=tmp_path, environ={})


# -- bad values ----------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("num_cpus", "four", "int"),
        ("num_cpus", 1.5, "int"),
        ("num_cpus", True, "int"),
        ("dashboard_port", "http", "int"),
        ("idle_lease_keep_s", "soon", "float"),
        ("prestart_workers", "maybe", "bool"),
        ("prestart_workers", 1, "bool"),
        ("scheduling_policy", 3, "str"),
        ("plugins", 3, "a list"),
        ("gcs_store_options", "url", "a table/dict"),
    ],
)
def test_bad_value_names_key_value_and_expected_type(
    tmp_path: Path, key: str, value: object, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve({key: value}, cwd=tmp_path, environ={})
    text = str(info.value)
    assert f"config key {key!r}" in text
    assert f"bad value {value!r}" in text
    assert text.endswith(f"expected {expected}")


def test_none_for_a_key_that_needs_a_value() -> None:
    # resolve() treats None overrides as "not given"; replace() must still refuse it.
    with pytest.raises(ConfigError, match=r"config key 'gcs_store' from argument: bad value None; expected str"):
        Config().replace(gcs_store=None)
    assert Config().replace(num_cpus=None).num_cpus is None  # Optional keys accept it


def test_bad_value_from_environment_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(cwd=tmp_path, environ={"MICRORAY_DASHBOARD_PORT": "eighty"})
    assert str(info.value) == (
        "config key 'dashboard_port' from environment variable MICRORAY_DASHBOARD_PORT: "
        "bad value 'eighty'; expected int"
    )


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_negative_counts_are_rejected_from_every_source(tmp_path: Path, source: str) -> None:
    kwargs = {"overrides": {"num_cpus": -1}} if source == "argument" else {"environ": {"MICRORAY_NUM_CPUS": "-1"}}
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError, match=r"'num_cpus'.*bad value -1; expected an integer >= 0"):
        resolve(cwd=tmp_path, **kwargs)


def test_bad_resource_amount(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'resources'.*bad amount 'lots' for 'accel'; expected a number >= 0"):
        resolve({"resources": {"accel": "lots"}}, cwd=tmp_path, environ={})
    with pytest.raises(ConfigError, match=r"bad amount -1 for 'accel'"):
        resolve({"resources": {"accel": -1}}, cwd=tmp_path, environ={})


def test_replace_validates_too() -> None:
    assert Config().replace(num_cpus=2).num_cpus == 2
    with pytest.raises(ConfigError, match="unknown config key 'num_cpu'"):
        Config().replace(num_cpu=2)


def test_json_round_trip(tmp_path: Path) -> None:
    config = resolve({"num_cpus": 2, "resources": {"accel": 1}, "plugins": ["x.y"]}, cwd=tmp_path, environ={})
    assert Config.from_json(config.to_json()) == config


# -- malformed files -----------------------------------------------------------


@pytest.mark.parametrize("name", ["microray.toml", "pyproject.toml"])
def test_malformed_toml_names_the_file(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, "scheduling_policy = \n")
    with pytest.raises(ConfigError) as info:
        resolve(cwd=tmp_path, environ={})
    assert str(info.value).startswith(f"{path}: malformed TOML: ")


# -- sizes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, expected",
    [
        ("1GiB", 2**30),
        ("1 gib", 2**30),
        ("1GB", 10**9),
        ("512MiB", 512 * 2**20),
        ("500MB", 500 * 10**6),
        ("1.5GiB", 3 * 2**29),
        ("64K", 64_000),
        ("2TiB", 2 * 2**40),
        ("100", 100),
        ("100B", 100),
        (1073741824, 2**30),
        (2.0e9, 2 * 10**9),
    ],
)
def test_object_store_memory_sizes(tmp_path: Path, given: object, expected: int) -> None:
    assert parse_size(given) == expected
    if expected >= MIN_OBJECT_STORE_BYTES:
        assert resolve({"object_store_memory": given}, cwd=tmp_path, environ={}).object_store_memory == expected


def test_object_store_memory_in_toml(tmp_path: Path) -> None:
    write(tmp_path, "microray.toml", 'object_store_memory = "256MiB"\n')
    assert resolve(cwd=tmp_path, environ={}).object_store_memory == 256 * 2**20


@pytest.mark.parametrize("given", ["lots", "1XB", "-1GiB", True, -5, 1.5, [1]])
def test_bad_sizes(tmp_path: Path, given: object) -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"object_store_memory": given}, cwd=tmp_path, environ={})
    text = str(info.value)
    assert "'object_store_memory'" in text and f"bad value {given!r}" in text
    assert "'1GiB'" in text  # says what a valid size looks like


# -- backend option tables -----------------------------------------------------

REGISTRATION = SchedulingPolicyRegistration(
    name="mine",
    factory=object,
    options={
        "threshold": OptionSpec(float, "a fraction", default=0.5),
        "limit": OptionSpec(int, "a count", default=3),
        "capacity": OptionSpec(int, "bytes", default=None, parse=parse_size),
    },
)


def test_option_table_defaults_are_filled() -> None:
    assert REGISTRATION.validate_options("scheduling_policy", {"limit": 7}) == {
        "threshold": 0.5, "limit": 7, "capacity": None,
    }


def test_option_table_parses_values() -> None:
    options = REGISTRATION.validate_options("scheduling_policy", {"capacity": "1GiB"})
    assert options["capacity"] == 2**30


def test_option_table_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        REGISTRATION.validate_options("scheduling_policy", {"treshold": 0.2})
    assert str(info.value) == (
        "scheduling_policy_options: unknown option 'treshold' for scheduling_policy 'mine'; "
        "expected one of: capacity, limit, threshold"
    )


def test_option_table_bad_value_names_key_value_and_type() -> None:
    with pytest.raises(ConfigError) as info:
        REGISTRATION.validate_options("scheduling_policy", {"limit": "many"})
    assert str(info.value) == (
        "scheduling_policy_options.limit: bad value 'many' for scheduling_policy 'mine'; expected int"
    )
    with pytest.raises(ConfigError, match=r"capacity: bad value 'huge' for scheduling_policy 'mine': expected a size"):
        REGISTRATION.validate_options("scheduling_policy", {"capacity": "huge"})


def test_option_table_types_are_strict_about_bools_and_lenient_about_ints() -> None:
    with pytest.raises(ConfigError, match=r"limit: bad value True .*expected int"):
        REGISTRATION.validate_options("scheduling_policy", {"limit": True})
    options = REGISTRATION.validate_options("scheduling_policy", {"threshold": 1})  # TOML `threshold = 1`
    assert options["threshold"] == 1.0 and isinstance(options["threshold"], float)
    with pytest.raises(ConfigError, match=r"threshold: bad value False .*expected float"):
        REGISTRATION.validate_options("scheduling_policy", {"threshold": False})


def test_option_table_of_a_registration_without_options() -> None:
    bare = SchedulingPolicyRegistration(name="bare", factory=object)
    assert bare.validate_options("scheduling_policy", {}) == {}
    with pytest.raises(ConfigError, match=r"unknown option 'x' for scheduling_policy 'bare'; expected one of: \(none\)"):
        bare.validate_options("scheduling_policy", {"x": 1})


def test_io_loop_takes_one_of_its_words(tmp_path: Path) -> None:
    assert resolve({"io_loop": "asyncio"}, cwd=tmp_path, environ={}).io_loop == "asyncio"
    assert resolve({}, cwd=tmp_path, environ={"MICRORAY_IO_LOOP": "uvloop"}).io_loop == "uvloop"
    with pytest.raises(ConfigError) as info:
        resolve({"io_loop": "trio"}, cwd=tmp_path, environ={})
    assert "'io_loop'" in str(info.value) and "'trio'" in str(info.value) and "'uvloop'" in str(info.value)
