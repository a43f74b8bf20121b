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
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from microray.exceptions import ConfigError

ENV_PREFIX = "MICRORAY_"
# where session folders go when session_root is not set (see default_session_root)
DEFAULT_SESSION_ROOT = "/tmp/microray-sessions"


@dataclass(frozen=True)
class Allowed:
    """The values a config key takes beyond its type; errors quote ``describe()``.

    Numbers: ``min <= value`` (``above < value``) and ``value <= max``, always finite.
    Words: one of ``choices``, or any non-empty text with ``nonempty``. For a
    ``dict[str, float]`` key the bounds hold for every amount in it."""

    min: float | None = None
    above: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    nonempty: bool = False
    unit: str = ""
    # a table with these keys only, each of a type: ((name, bool | str), ...)
    keys: tuple[tuple[str, type], ...] = ()

    def admits(self, value: Any) -> bool:
        if isinstance(value, Mapping) and self.keys:
            kinds = dict(self.keys)
            return all(k in kinds and isinstance(v, kinds[k]) and (v != "" or kinds[k] is bool)
                       for k, v in value.items())
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                return False
            if self.min is not None and not value >= self.min:
                return False
            if self.above is not None and not value > self.above:
                return False
            return self.max is None or value <= self.max
        if isinstance(value, str):
            if self.choices:
                return value in self.choices
            return bool(value) or not self.nonempty
        return True

    def describe(self, kind: str = "a number") -> str:
        if self.keys:
            words = {bool: "true or false", str: "a non-empty string"}
            return "a table of " + ", ".join(f"{k} ({words[t]})" for k, t in self.keys) + (
                f" ({self.unit})" if self.unit else "")
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.nonempty:
            return "a non-empty string"
        parts = []
        if self.min is not None:
            parts.append(f">= {_num(self.min)}")
        if self.above is not None:
            parts.append(f"> {_num(self.above)}")
        if self.max is not None:
            parts.append(f"<= {_num(self.max)}")
        unit = f" ({self.unit})" if self.unit else ""
        return f"{kind} " + " and ".join(parts) + unit if parts else "any value"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def allowed(**bounds: Any) -> dict[str, Any]:
    """Field metadata declaring a key's range: ``field(default=1.0, metadata=allowed(min=0))``."""
    return {"allowed": Allowed(**bounds)}


_PORT = allowed(min=0, max=65535, unit="0: any free port")
_NAME = allowed(nonempty=True)
MIN_OBJECT_STORE_BYTES = 10 * 2**20
MAX_INLINE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Config:
    """Every setting of a microray cluster or driver. Each key's range is declared in
    its field's metadata (``allowed``) and checked, with the key, the value and the
    range in the error, whatever the source."""

    # backends, one key per family plus an options table (checked by the chosen backend)
    gcs_store: str = field(default="memory", metadata=_NAME)
    gcs_store_options: dict = field(default_factory=dict)
    object_store: str = field(default="shm", metadata=_NAME)
    object_store_options: dict = field(default_factory=dict)
    scheduling_policy: str = field(default="hybrid", metadata=_NAME)
    scheduling_policy_options: dict = field(default_factory=dict)
    dashboard: str = field(default="web", metadata=_NAME)
    dashboard_options: dict = field(default_factory=dict)
    dashboard_host: str = field(default="127.0.0.1", metadata=_NAME)
    dashboard_port: int = field(default=8265, metadata=_PORT)
    plugins: list[str] = field(default_factory=list, metadata=_NAME)  # extra plugin modules to register

    # node resources (None: detect)
    num_cpus: int | None = field(default=None, metadata=allowed(min=0))
    num_gpus: int | None = field(default=None, metadata=allowed(min=0))
    resources: dict[str, float] = field(default_factory=dict, metadata=allowed(min=0))
    # node labels (name -> text), recorded on the node in the GCS (list_nodes, policies)
    labels: dict[str, str] = field(default_factory=dict, metadata=allowed(nonempty=True))
    # bytes; None: 30% of RAM, at most 2 GiB here
    object_store_memory: int | None = field(default=None, metadata=allowed(min=MIN_OBJECT_STORE_BYTES, unit="bytes; text such as '2GiB' is read too"))

    # driver
    namespace: str | None = None

    # runtime
    # not /tmp/microray: a folder named like the package in a cwd shadows it
    # when not set: DEFAULT_SESSION_ROOT, or a per-user folder if another user owns it
    session_root: str = field(default=DEFAULT_SESSION_ROOT, metadata=_NAME)
    session_keep: int = field(default=10, metadata=allowed(min=0, unit="session folders; 0: keep all"))
    node_ip: str = field(default="127.0.0.1", metadata=_NAME)
    gcs_port: int = field(default=0, metadata=_PORT)
    raylet_port: int = field(default=0, metadata=_PORT)
    max_inline_object_bytes: int = field(default=100 * 1024, metadata=allowed(min=0, max=MAX_INLINE_BYTES, unit="bytes"))
    # the largest working_dir / py_modules package a runtime_env may ship
    runtime_env_max_bytes: int = field(default=524288000, metadata=allowed(min=1, unit="bytes"))
    # the owner keeps the specs of finished tasks whose returns are in a store (to rebuild
    # them when lost) up to about this many bytes; the oldest are dropped past it
    max_lineage_bytes: int = field(default=256 * 1024 * 1024, metadata=allowed(min=0, unit="bytes"))
    # moving objects between nodes: bytes per chunk of a pull, and pulls a node runs at once
    object_transfer_chunk_bytes: int = field(
        default=4 * 1024 * 1024, metadata=allowed(min=64 * 1024, max=64 * 1024 * 1024, unit="bytes"))
    object_transfer_max_active: int = field(default=4, metadata=allowed(min=1))
    # object bytes over a TCP port of their own on each raylet (faster); false: inside gRPC
    object_transfer_data_path: bool = True
    # for tests: a node pauses this long before each chunk it sends (a test can stop it mid-transfer)
    testing_object_chunk_delay_s: float = field(default=0.0, metadata=allowed(min=0, max=10, unit="seconds"))
    max_tasks_in_flight_per_worker: int = field(default=16, metadata=allowed(min=1))
    idle_lease_keep_s: float = field(default=0.5, metadata=allowed(min=0, unit="seconds"))
    idle_worker_kill_s: float = field(default=60.0, metadata=allowed(min=0, unit="seconds"))
    prestart_workers: bool = True
    # the fork launcher leaves this long after a driver's last node stops
    launcher_idle_s: float = field(default=5.0, metadata=allowed(min=0, unit="seconds"))
    # fork | spawn | auto (fork when the starting process has one thread)
    start_method: str = field(default="auto", metadata=allowed(choices=("auto", "fork", "spawn")))
    # event loop of microray's own I/O: auto (uvloop when installed) | uvloop | asyncio
    io_loop: str = field(default="auto", metadata=allowed(choices=("auto", "uvloop", "asyncio")))
    heartbeat_period_s: float = field(default=0.5, metadata=allowed(min=0.05, max=3600, unit="seconds"))
    # how long calls wait for an unreachable GCS (a restart)
    gcs_rpc_timeout_s: float = field(default=60.0, metadata=allowed(above=0, unit="seconds"))
    # must also exceed heartbeat_period_s (checked with the other keys)
    node_dead_after_s: float = field(default=4.0, metadata=allowed(min=0.1, unit="seconds"))
    log_level: str = field(default="info", metadata=allowed(choices=("debug", "info", "warning", "error", "critical")))
    # print tasks' and actors' stdout/stderr lines in the driver, as (name pid=N) line
    log_to_driver: bool = True
    # fold identical lines of task output from several workers into one (log_to_driver)
    dedup_logs: bool = True
    task_history_cap: int = field(default=10000, metadata=allowed(min=1))
    # the GCS samples cluster use this often (dashboard charts)
    metrics_sample_period_s: float = field(default=1.0, metadata=allowed(min=0.05, unit="seconds"))
    metrics_history_points: int = field(default=600, metadata=allowed(min=1))  # samples the GCS keeps
    dashboard_on_demand: bool = True  # start the dashboard's server at its first connection
    # TLS on every gRPC service and channel ({} : plaintext); the cluster token is always required
    tls: dict = field(default_factory=dict, metadata=allowed(
        keys=(("cert_file", str), ("key_file", str), ("ca_file", str), ("require_client_cert", bool),
              ("server_name", str)),
        unit="{}: plaintext; cert_file and key_file together; require_client_cert needs ca_file",
    ))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls(**json.loads(text))

    def replace(self, **overrides: Any) -> "Config":
        merged = asdict(self)
        checked = _check_all(overrides, source="argument")
        merged.update(checked)
        _check_together(merged, {key: "argument" for key in checked})
        return Config(**merged)


_HINTS: dict[str, Any] | None = None


def _hints() -> dict[str, Any]:
    global _HINTS
    if _HINTS is None:
        _HINTS = get_type_hints(Config)
    return _HINTS


_ALLOWED: dict[str, Allowed | None] = {}


def allowed_values(key: str) -> Allowed | None:
    """The range declared for config key ``key`` (None: any value of its type)."""
    if not _ALLOWED:
        _ALLOWED.update({f.name: f.metadata.get("allowed") for f in fields(Config)})
    return _ALLOWED.get(key)


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


def _bad(key: str, source: str, value: Any, expected: str) -> ConfigError:
    from microray.redaction import mask_urls

    # a value may hold a password (an options table's URL): never show one
    return ConfigError(f"config key {key!r} from {source}: bad value {mask_urls(repr(value))}; expected {expected}")


def accepted(key: str) -> str:
    """What config key ``key`` accepts, in words (errors and docs/config.md say this)."""
    hint = _hints()[key]
    text = str(hint)
    rule = allowed_values(key)
    if hint is dict or text.startswith("dict"):
        if rule is not None and rule.keys:
            return rule.describe()
        if rule is None:
            return "a table/dict (checked by the chosen backend)" if key.endswith("_options") else "a table/dict"
        if text.startswith("dict[str, str]"):
            return "a table of non-empty names to strings"
        return f"a table of names to {rule.describe('numbers')}"
    if hint is list or text.startswith("list"):
        return "a list of " + ("non-empty " if rule is not None and rule.nonempty else "") + "strings"
    kind = "an integer" if "int" in text and "float" not in text else "a number"
    if rule is not None:
        words = rule.describe(kind)
    elif "bool" in text:
        words = "true or false"
    else:
        words = "a string"
    return words + (" or None" if "None" in text else "")


def _in_range(key: str, value: Any, source: str) -> Any:
    rule = allowed_values(key)
    if rule is not None and not rule.admits(value):
        raise _bad(key, source, value, accepted(key).removesuffix(" or None"))
    return value


def _coerce(key: str, value: Any, source: str) -> Any:
    hint = _hints()[key]
    text = str(hint)
    if key == "log_level" and isinstance(value, str):
        value = value.strip().lower()
    if key == "object_store_memory" and value is not None:
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise _bad(key, source, value, str(exc).removeprefix("expected ")) from None
        rule = allowed_values(key)
        if rule is not None and not rule.admits(size):
            shown = f"{value!r} ({size} bytes)" if size != value else repr(value)
            raise ConfigError(f"config key {key!r} from {source}: bad value {shown}; expected {rule.describe('a size')}")
        return size
    allow_none = "None" in text
    if value is None:
        if allow_none:
            return None
        raise _bad(key, source, None, _expected(hint))
    if hint is dict or text.startswith("dict"):
        if isinstance(value, str):  # from the environment: JSON
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        if not isinstance(value, Mapping):
            raise _bad(key, source, value, "a table/dict")
        if text.startswith("dict[str, str]"):  # labels: text by name
            if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()):
                raise _bad(key, source, value, accepted(key))
        elif text.startswith("dict["):  # dict[str, float]: amounts by name
            _check_amounts(key, value, source)
        rule = allowed_values(key)
        if rule is not None and rule.keys and not rule.admits(value):
            raise _bad(key, source, value, accepted(key))
        return dict(value)
    if hint is list or text.startswith("list"):
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise _bad(key, source, value, "a list")
        rule = allowed_values(key)
        for item in value:
            if not isinstance(item, str) or (rule is not None and not rule.admits(item)):
                raise _bad(key, source, value, accepted(key))
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
            raise _bad(key, source, value, want[0].__name__) from None
        value = parsed  # the range check below sees the parsed number
    if isinstance(value, bool) and want[0] is not bool:
        raise _bad(key, source, value, want[0].__name__)
    if not isinstance(value, want):
        raise _bad(key, source, value, want[0].__name__)
    if want[0] is float:
        value = float(value)
    return _in_range(key, value, source)


def _check_amounts(key: str, amounts: Mapping[str, Any], source: str) -> None:
    rule = allowed_values(key)
    for name, amount in amounts.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"config key {key!r} from {source}: bad name {name!r}; expected a non-empty string")
        if name in ("CPU", "GPU"):
            raise ConfigError(
                f"config key {key!r} from {source}: {name!r} is not a custom resource; "
                f"set it with num_{name.lower()}s instead"
            )
        if (not isinstance(amount, (int, float)) or isinstance(amount, bool)
                or (rule is not None and not rule.admits(amount))):
            expected = rule.describe() if rule is not None else "a number"
            raise ConfigError(f"config key {key!r} from {source}: bad amount {amount!r} for {name!r}; expected {expected}")


# What a node decides for itself when it joins a cluster; every other key is the cluster's
# (the head's config, from its GCS): timeouts, inline sizes, the scheduling policy...
NODE_LOCAL_KEYS = (
    "num_cpus", "num_gpus", "resources", "labels", "object_store_memory", "object_store",
    "object_store_options", "session_root", "node_ip", "raylet_port", "start_method", "io_loop",
    "log_level", "prestart_workers", "launcher_idle_s", "idle_worker_kill_s",
    # how this node's raylet moves objects (a puller asks for the data path, a holder offers it)
    "object_transfer_chunk_bytes", "object_transfer_max_active", "object_transfer_data_path",
    "testing_object_chunk_delay_s",
    "tls",  # file paths on this machine
)


def joining_node_config(cluster: Config, local: Config) -> Config:
    """The config of a node joining the cluster that runs ``cluster``: the cluster's, with
    this machine's ``NODE_LOCAL_KEYS`` from ``local`` and the plugin modules of both."""
    merged = asdict(cluster)
    merged.update({key: getattr(local, key) for key in NODE_LOCAL_KEYS})
    merged["plugins"] = list(dict.fromkeys([*cluster.plugins, *local.plugins]))
    _check_together(merged, {key: "this node's config" for key in NODE_LOCAL_KEYS})
    return Config(**merged)


def _check_all(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    names = [f.name for f in fields(Config)]
    out = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {key!r} from {source}{hint}")
        out[key] = _coerce(key, value, source)
    return out


def _check_together(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """Keys whose ranges depend on each other; the error names both keys, their values
    and where each came from."""

    def said(key: str) -> str:
        return f"{key}={values[key]!r} (from {sources.get(key, 'the default')})"

    if not values["node_dead_after_s"] > values["heartbeat_period_s"]:
        raise ConfigError(
            f"config key 'node_dead_after_s' must exceed 'heartbeat_period_s' (a node is declared dead "
            f"after missing heartbeats): got {said('node_dead_after_s')} and {said('heartbeat_period_s')}"
        )
    tls = values["tls"]
    if tls and not (tls.get("cert_file") and tls.get("key_file")):
        raise ConfigError(
            f"config key 'tls' needs both cert_file and key_file (every process serves gRPC as well as "
            f"calling it): got {said('tls')}"
        )
    if tls.get("require_client_cert") and not tls.get("ca_file"):
        raise ConfigError(
            f"config key 'tls' with require_client_cert needs ca_file (to check the clients' certificates): "
            f"got {said('tls')}"
        )
    store = values["object_store_memory"]
    if store is not None and store <= values["max_inline_object_bytes"]:
        raise ConfigError(
            f"config key 'object_store_memory' must exceed 'max_inline_object_bytes' (larger values go to "
            f"the object store): got {said('object_store_memory')} and {said('max_inline_object_bytes')}"
        )


def _read_toml(path: Path) -> dict[str, Any]:
    """The TOML table in ``path``; any failure names the file and what was wrong."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text file (byte {exc.object[exc.start]:#04x} at offset {exc.start} is not UTF-8); "
            "expected TOML text"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None


def _from_files(cwd: Path) -> tuple[dict[str, Any], str]:
    toml_path = cwd / "microray.toml"
    if toml_path.is_file():
        return _read_toml(toml_path), str(toml_path)
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        data = _read_toml(pyproject)
        tool = data.get("tool", {})
        section = tool.get("microray") if isinstance(tool, dict) else None
        if section is not None:
            if not isinstance(section, dict):
                raise ConfigError(f"{pyproject}: [tool.microray] must be a table, got {section!r}")
            return dict(section), f"{pyproject} [tool.microray]"
    return {}, ""


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    names = {f.name for f in fields(Config)}
    # not config keys: a submitted job's runtime env and submission id, a spawned worker's
    # (microray.runtime_env), the cluster token (a secret, never part of the config)
    ignored = {"DISABLE_PLUGIN_AUTOLOAD", "TRACE_HOOKS", "ADDRESS", "LOG_STYLE", "JOB_RUNTIME_ENV", "WORKER_RUNTIME_ENV",
               "TOKEN", "JOB_SUBMISSION_ID"}
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


def default_session_root(base: str = DEFAULT_SESSION_ROOT, uid: int | None = None) -> str:
    """The session root when none is configured: ``base``, unless another user owns it.
    Sessions of different users never share one folder (Ray's ``/tmp/ray`` is per user
    too): then ``<base>-<uid>``, said once per process in a log line."""
    uid = os.getuid() if uid is None else uid
    try:
        owner = os.lstat(base).st_uid
    except OSError:
        return base  # not there yet: this user creates it (0700, see session.ensure_root)
    if owner == uid:
        return base
    alt = f"{base}-{uid}"
    if base not in _said_per_user:
        _said_per_user.add(base)
        import structlog

        structlog.get_logger(__name__).warning(
            "session_root_per_user", owned_by_uid=owner, root=base, using=alt,
            hint="set session_root (MICRORAY_SESSION_ROOT, or --temp-dir) to choose another folder")
    return alt


_said_per_user: set[str] = set()


def resolve(
    overrides: Mapping[str, Any] | None = None,
    *,
    cwd: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the config from defaults, files, environment and ``overrides``."""
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def layer(values: Mapping[str, Any], source: str) -> None:
        checked = _check_all(values, source=source)
        merged.update(checked)
        sources.update(dict.fromkeys(checked, source))

    file_values, file_source = _from_files(Path(cwd or os.getcwd()))
    layer(file_values, file_source or "file")
    for key, value in _from_env(os.environ if environ is None else environ).items():
        layer({key: value}, f"environment variable {ENV_PREFIX}{key.upper()}")
    layer({k: v for k, v in (overrides or {}).items() if v is not None}, "argument")
    if "session_root" not in merged:
        merged["session_root"] = default_session_root()
    _check_together({**asdict(Config()), **merged}, sources)
    return Config(**merged)
