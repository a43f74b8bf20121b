"""Registration records returned by the plugin registration hooks.

Each plugin family has one frozen dataclass. A registration names a backend,
says what it can do and carries a ``factory`` that builds it. The factory is
where a backend imports its heavy dependency (redis, lmdb, pyetcd), so that
``import microray`` never does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Registration",
    "GcsStoreRegistration",
    "ObjectStoreRegistration",
    "SchedulingPolicyRegistration",
    "DashboardRegistration",
    "OptionSpec",
]

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class OptionSpec:
    """One option a backend accepts in its ``*_options`` table.

    ``type`` is the Python type the value must have after parsing (str, int,
    float, bool, list). ``parse`` may turn strings such as ``"64GiB"`` into the
    final value; it raises ``ValueError`` with a message when it cannot.
    ``secret``: the value is a secret (a password): it is masked wherever config is
    shown, logged or answered, and reaches node processes only through a private file
    (see ``microray.redaction``). A URL's password is masked in any option.
    """

    type: type | tuple[type, ...]
    description: str = ""
    default: Any = None
    parse: Callable[[Any], Any] | None = None
    secret: bool = False


@dataclass(frozen=True)
class Registration:
    """Fields every family shares."""

    name: str
    factory: Callable[..., Any]
    description: str = ""
    capabilities: frozenset[str] = frozenset()
    options: Mapping[str, OptionSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"{type(self).__name__}: name {self.name!r} must be lower-case letters, "
                "digits, '_' or '-', starting with a letter"
            )
        if not callable(self.factory):
            raise TypeError(f"{type(self).__name__} {self.name!r}: factory must be callable")
        if not isinstance(self.capabilities, frozenset):
            object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        for key, spec in self.options.items():
            if not isinstance(spec, OptionSpec):
                raise TypeError(
                    f"{type(self).__name__} {self.name!r}: option {key!r} must be an OptionSpec"
                )

    def validate_options(self, family: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``given`` checked against ``options``, defaults filled in.

        Raises ``microray.exceptions.ConfigError`` naming the unknown key or the
        bad value and what was expected.
        """
        from microray.exceptions import ConfigError
        from microray.redaction import MASK, mask_urls

        out: dict[str, Any] = {}
        for key, value in given.items():
            spec = self.options.get(key)
            secret = spec is not None and spec.secret
            shown = MASK if secret else (mask_urls(value) if isinstance(value, str) else value)
            if spec is None:
                known = ", ".join(sorted(self.options)) or "(none)"
                raise ConfigError(
                    f"{family}_options: unknown option {key!r} for {family} {self.name!r}; "
                    f"expected one of: {known}"
                )
            if spec.parse is not None:
                try:
                    value = spec.parse(value)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(
                        f"{family}_options.{key}: bad value {shown!r} for {family} "
                        f"{self.name!r}: {_masked(exc, value if secret else None)}"
                    ) from None
            types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
            if float in types and int not in types and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # TOML ``x = 1`` for a float option
            if not isinstance(value, spec.type) or (isinstance(value, bool) and bool not in types):
                want = (
                    " or ".join(t.__name__ for t in spec.type)
                    if isinstance(spec.type, tuple)
                    else spec.type.__name__
                )
                raise ConfigError(
                    f"{family}_options.{key}: bad value {shown!r} for {family} "
                    f"{self.name!r}; expected {want}"
                )
            out[key] = value
        for key, spec in self.options.items():
            out.setdefault(key, spec.default)
        return out


def _masked(exc: BaseException, value: Any) -> str:
    """``exc``'s message without ``value`` (a secret, or None) in it, nor any URL password."""
    from microray.redaction import MASK, mask_urls

    text = str(exc)
    if isinstance(value, str) and value:
        text = text.replace(value, MASK)
    return mask_urls(text)


@dataclass(frozen=True)
class GcsStoreRegistration(Registration):
    """A GCS store backend. ``factory(**options) -> GcsStore``.

    Capabilities: ``persistence`` (survives a head restart), ``watch``.
    """


@dataclass(frozen=True)
class ObjectStoreRegistration(Registration):
    """An object store backend.

    ``factory(namespace: str, capacity: int, spill_dir: str, *, on_event=None, **options)
    -> ObjectStore``. Every process of a node calls the factory with the same
    ``namespace`` and must see the same objects. ``on_event(kind, info)``, when given,
    is called with ``"spilled"``/``"restored"`` events (a backend that never spills
    accepts it and never calls it). Capabilities: ``zero_copy``, ``persistence``,
    ``spill``, ``cross_process``.

    ``sweep(in_use, **options) -> list[str]``, optional: remove the storage of every
    namespace this backend finds on the machine for which ``in_use(namespace)`` is
    False, and return their names. A raylet calls it at start, so a node whose raylet
    was killed (no ``destroy()``) leaves nothing behind for long.
    """

    sweep: Callable[..., list[str]] | None = None


@dataclass(frozen=True)
class SchedulingPolicyRegistration(Registration):
    """A scheduling policy. ``factory(**options) -> SchedulingPolicy``."""


@dataclass(frozen=True)
class DashboardRegistration(Registration):
    """A dashboard. ``factory(**options) -> Dashboard``."""
