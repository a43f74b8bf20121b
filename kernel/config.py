"""The one typed config object, resolved once.

Precedence, later wins: built-in defaults < ``microray.toml`` (or
``[tool.microray]`` in ``pyproject.toml``) in the working directory <
``MICRORAY_<KEY>`` environment variables < ``init(...)`` keyword arguments or
CLI flags. A wrong key or value fails here, naming the key, the value and what
was expected. Backend option tables are checked against the chosen backend's
registration when the backend is selected.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from microray.exceptions import ConfigError

ENV_PREFIX = "MICRORAY_"


@dataclass(frozen=True)
class Config:
    """Every setting of a microray cluster or driver."""

    # backends, one key per family plus an options table
    gcs_store: str = "memory"
    gcs_store_options: dict = field(default_factory=dict)
    object_store: str = "shm"
    object_store_options: dict = field(default_factory=dict)
    scheduling_policy: str = "hybrid"
    scheduling_policy_options: dict = field(default_factory=dict)
    dashboard: str = "web"
    dashboard_options: dict = field(default_factory=dict)
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    plugins: list = field(default_factory=list)  # extra plugin modules to register

    # node resources (None: detect)
    num_cpus: int | None = None
    num_gpus: int | None = None
    resources: dict = field(default_factory=dict)
    object_store_memory: int | None = None  # bytes; None: 30% of RAM, at most 2 GiB here

    # driver
    namespace: str | None = None

    # runtime
    session_root: str = "/tmp/microray-sessions"  # not /tmp/microray: a folder named like the package in a cwd shadows it
    node_ip: str = "127.0.0.1"
    gcs_port: int = 0  # 0: any free port
    raylet_port: int = 0
    max_inline_object_bytes: int = 100 * 1024
    max_tasks_in_flight_per_worker: int = 16
    idle_lease_keep_s: float = 0.5
    idle_worker_kill_s: float = 60.0
    prestart_workers: bool = True
    launcher_idle_s: float = 5.0  # the fork launcher leaves this long after a driver's last node stops
    start_method: str = "auto"  # fork | spawn | auto (fork when the starting process has one thread)
    io_loop: str = "auto"  # event loop of microray's own I/O: auto (uvloop when installed) | uvloop | asyncio
    heartbeat_period_s: float = 1.0
    gcs_rpc_timeout_s: float = 60.0  # how long calls wait for an unreachable GCS (a restart)
    node_dead_after_s: float = 10.0
    log_level: str = "info"
    log_to_driver: bool = True
    task_history_cap: int = 10000
    metrics_sample_period_s: float = 1.0  # the GCS samples cluster use this often (dashboard charts)
    metrics_history_points: int = 600  # samples the GCS keeps
    dashboard_on_demand: bool = True  # start the dashboard's server at its first connection

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls(**json.loads(text))

    def replace(self, **overrides: Any) -> "Config":
        merged = asdict(self)
        merged.update(_check_all(overrides, source="argument"))
        return Config(**merged)


_HINTS: dict[str, Any] | None = None


def _hints() -> dict[str, Any]:
    global _HINTS
    if _HINTS is None:
        _HINTS = get_type_hints(Config)
    return _HINTS


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.I)
_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "KIB": 2**10, "KI": 2**10, "M": 1e6, "MB": 1e6,
          "MIB": 2**20, "MI": 2**20, "G": 1e9, "GB": 1e9, "GIB": 2**30, "GI": 2**30,
          "T": 1e12, "TB": 1e12, "TIB": 2**40, "TI": 2**40}


def parse_size(value: Any) -> int:
    """Parse ``1073741824``, ``"1GiB"``, ``"500MB"`` into bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size in bytes such as 1073741824 or '1GiB'")
    if isinstance(value, (int, float)) and value < 0:
        raise ValueError(f"expected a size >= 0 in bytes such as 1073741824 or '1GiB', got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])
    raise ValueError(f"expected a size in bytes such as 1073741824 or '1GiB', got {value!r}")


def _expected(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


# string keys that take one of a few words
_CHOICES = {"io_loop": ("auto", "uvloop", "asyncio")}


def _coerce(key: str, value: Any, source: str) -> Any:
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(
            f"config key {key!r} from {source}: bad value {value!r}; expected one of "
            + ", ".join(repr(c) for c in _CHOICES[key])
        )
    hint = _hints()[key]
    text = str(hint)
    if key == "object_store_memory" and value is not None:
        try:
            return parse_size(value)
        except ValueError as exc:
            raise ConfigError(f"config key {key!r} from {source}: bad value {value!r}; {exc}") from None
    allow_none = "None" in text
    if value is None:
        if allow_none:
            return None
        raise ConfigError(f"config key {key!r} from {source}: bad value None; expected {_expected(hint)}")
    if hint is dict or text.startswith("dict"):
        if isinstance(value, str):  # from the environment: JSON
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"config key {key!r} from {source}: bad value {value!r}; expected a table/dict"
            )
        return dict(value)
    if hint is list or text.startswith("list"):
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} from {source}: bad value {value!r}; expected a list")
        return list(value)
    want: tuple[type, ...]
    if "int" in text and "float" not in text:
        want = (int,)
    elif "float" in text:
        want = (float, int)
    elif "bool" in text:
        want = (bool,)
    else:
        want = (str,)
    if isinstance(value, str) and want[0] is not str:
        raw = value.strip()
        try:
            if want[0] is bool:
                if raw.lower() in ("1", "true", "yes", "on"):
                    return True
                if raw.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            parsed = want[0](raw)
        except ValueError:
            raise ConfigError(
                f"config key {key!r} from {source}: bad value {value!r}; expected {want[0].__name__}"
            ) from None
        # fall through to the range checks below with the parsed number
        value = parsed
    if isinstance(value, bool) and want[0] is not bool:
        raise ConfigError(f"config key {key!r} from {source}: bad value {value!r}; expected {want[0].__name__}")
    if not isinstance(value, want):
        raise ConfigError(f"config key {key!r} from {source}: bad value {value!r}; expected {want[0].__name__}")
    if want[0] is float:
        value = float(value)
    if key in ("num_cpus", "num_gpus") and value < 0:
        raise ConfigError(f"config key {key!r} from {source}: bad value {value!r}; expected a number >= 0")
    return value


def _check_all(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    names = [f.name for f in fields(Config)]
    out = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {key!r} from {source}{hint}")
        out[key] = _coerce(key, value, source)
    if "resources" in out:
        for name, amount in out["resources"].items():
            if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount < 0:
                raise ConfigError(
                    f"config key 'resources' from {source}: bad amount {amount!r} for {name!r}; "
                    "expected a number >= 0"
                )
    return out


def _from_files(cwd: Path) -> tuple[dict[str, Any], str]:
    toml_path = cwd / "microray.toml"
    if toml_path.is_file():
        try:
            return tomllib.loads(toml_path.read_text()), str(toml_path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml_path}: malformed TOML: {exc}") from None
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{pyproject}: malformed TOML: {exc}") from None
        section = data.get("tool", {}).get("microray")
        if section is not None:
            return dict(section), f"{pyproject} [tool.microray]"
    return {}, ""


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    names = {f.name for f in fields(Config)}
    ignored = {"DISABLE_PLUGIN_AUTOLOAD", "TRACE_HOOKS", "ADDRESS", "LOG_STYLE"}
    out = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        key = var[len(ENV_PREFIX):]
        if key in ignored:
            continue
        lowered = key.lower()
        if lowered not in names:
            close = difflib.get_close_matches(lowered, sorted(names), n=1)
            hint = f"; did you mean {ENV_PREFIX}{close[0].upper()}?" if close else ""
            raise ConfigError(f"unknown config key {lowered!r} from environment variable {var}{hint}")
        out[lowered] = value
    return out


def resolve(
    overrides: Mapping[str, Any] | None = None,
    *,
    cwd: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the config from defaults, files, environment and ``overrides``."""
    merged: dict[str, Any] = {}
    file_values, file_source = _from_files(Path(cwd or os.getcwd()))
    merged.update(_check_all(file_values, source=file_source or "file"))
    for key, value in _from_env(os.environ if environ is None else environ).items():
        merged.update(_check_all({key: value}, source=f"environment variable {ENV_PREFIX}{key.upper()}"))
    merged.update(_check_all({k: v for k, v in (overrides or {}).items() if v is not None}, source="argument"))
    return Config(**merged)
