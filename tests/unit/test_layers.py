"""The import contracts of pyproject.toml hold: the kernel's layers, no import of an
extension by the kernel, no import between backends and plugins, and no import cycle.
See docs/architecture.md, "Layers"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lint_imports.py"), "--no-logo"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"an import contract is broken:\n{proc.stdout}\n{proc.stderr}"
    assert "0 broken" in proc.stdout, proc.stdout
