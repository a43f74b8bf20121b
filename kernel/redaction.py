"""Which config values are secret, and hiding them wherever config is shown.

A value is secret when
- its config key is marked: ``field(..., metadata={**allowed(...), **SECRET})`` on ``Config``;
- its backend option is marked: ``OptionSpec(..., secret=True)`` in the registration;
- its key's name says so (``password``, ``secret``, ``token``, ``credential``, ``auth``,
  ``...key``), for options whose backend is not known where the config is shown;
- it is the password of a URL (``scheme://user:PASSWORD@host``), in any string.

Secrets go to the node processes only through ``<session>/config.json`` (mode 0600, see
``microray.session``), never through a process's arguments; every RPC answer, log line,
error and page shows ``redact``-ed config instead (each secret replaced by ``MASK``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, fields, is_dataclass
from typing import Any

__all__ = ["MASK", "SECRET", "mask_urls", "redact", "redact_config", "redacted_json", "secret_option_keys"]

MASK = "***"
SECRET = {"secret": True}  # metadata of a Config field whose value is a secret

_SECRET_NAME = re.compile(r"pass|secret|token|credential|private|auth|key", re.I)
_NOT_SECRET_NAME = ("_port", "_host")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@", re.I)
FAMILIES = ("gcs_store", "object_store", "scheduling_policy", "dashboard")


def mask_urls(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it masked."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)


def _looks_secret(key: str) -> bool:
    return bool(key) and bool(_SECRET_NAME.search(key)) and not key.endswith(_NOT_SECRET_NAME)


def redact(value: Any, key: str = "", secret_keys: Collection[str] = ()) -> Any:
    """``value`` (dicts and lists walked) with secrets masked: values under a key in
    ``secret_keys`` or a key whose name looks secret, and URL passwords in strings."""
    if isinstance(value, Mapping):
        return {k: redact(v, k, secret_keys) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, key, secret_keys) for v in value]
    if (key in secret_keys or _looks_secret(key)) and value not in (None, "", {}, []):
        return MASK
    if isinstance(value, str):
        return mask_urls(value)
    return value


def secret_option_keys(registrations: Any, cfg: Mapping[str, Any]) -> dict[str, set[str]]:
    """``{"gcs_store_options": {"password", ...}, ...}``: the options marked secret by each
    selected backend. ``registrations`` has ``select(family, name)`` (the plugin
    manager); a backend it does not know contributes nothing."""
    out: dict[str, set[str]] = {}
    for family in FAMILIES:
        try:
            reg = registrations.select(family, cfg.get(family))
        except Exception:  # noqa: BLE001 -- unknown here: the name rule still applies
            continue
        out[f"{family}_options"] = {k for k, spec in reg.options.items() if getattr(spec, "secret", False)}
    return out


def redact_config(cfg: Any, registrations: Any = None) -> dict[str, Any]:
    """A config (``Config`` or its dict) as a dict safe to show: marked keys (of a
    ``Config``), marked options of the selected backends (when ``registrations`` is
    given), secret-looking option names and URL passwords masked."""
    data = asdict(cfg) if is_dataclass(cfg) and not isinstance(cfg, type) else dict(cfg)
    marked = _marked_keys(cfg)
    options = secret_option_keys(registrations, data) if registrations is not None else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in marked and value not in (None, "", {}, []):
            out[key] = MASK
        elif isinstance(value, Mapping):
            out[key] = redact(value, "", options.get(key, ()))
        elif isinstance(value, str):
            out[key] = mask_urls(value)
        else:
            out[key] = value
    return out


def redacted_json(cfg: Any, registrations: Any = None) -> str:
    """``redact_config`` as JSON, keys sorted (what an RPC answer carries)."""
    return json.dumps(redact_config(cfg, registrations), sort_keys=True)


def _marked_keys(cfg: Any) -> set[str]:
    """The keys of a ``Config`` marked secret (``metadata`` with ``SECRET``); a plain dict
    has no marks (the config it came from was redacted where it was made)."""
    if not is_dataclass(cfg):
        return set()
    return {f.name for f in fields(cfg) if f.metadata.get("secret")}
