"""The kernel type-checks with no error at the strictness of pyproject.toml's [tool.mypy]
(docs/architecture.md, "Layers"). Seconds on a cold cache, well under one warm."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_kernel_type_checks() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "typecheck.py")], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"mypy found errors in the kernel:\n{proc.stdout}\n{proc.stderr}"
