"""Every hook and every config key is documented (a test fails when one is not)."""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

from microray import hookspecs
from microray.config import Config

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _hooks() -> list[str]:
    return [name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("microray_")]


def test_every_hook_is_documented_with_its_signature() -> None:
    text = (DOCS / "hooks.md").read_text()
    hooks = _hooks()
    assert len(hooks) >= 10
    for name in hooks:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"### `{name}(" in text, f"hook {name} is not documented in docs/hooks.md"
        if params:
            assert params.split(",")[0] in text.split(f"### `{name}(")[1].split("\n")[0], name


def test_every_config_key_is_documented() -> None:
    text = (DOCS / "config.md").read_text()
    missing = [f.name for f in fields(Config) if f"`{f.name}`" not in text]
    assert not missing, f"config keys missing from docs/config.md: {missing}"


def test_every_config_key_range_is_documented_as_checked() -> None:
    from microray.config import accepted

    text = (DOCS / "config.md").read_text()
    wrong = [f.name for f in fields(Config) if f"| `{f.name}` | {accepted(f.name)} |" not in text]
    assert not wrong, f"docs/config.md 'What each key accepts' is out of date for: {wrong}"
