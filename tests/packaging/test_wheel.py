"""The wheel holds every module of the source tree, and each imports from the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # chaos, browser, real-server and heavy-I/O tests: not in `tox -e fast`

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"kernel": "microray", "plugins": "microray/plugins", "backends": "microray/backends", "contrib": "microray/contrib"}


def _source_modules() -> set[str]:
    """Every .py file in a package folder of the tree, as its path inside the wheel."""
    out = set()
    for folder, target in FOLDERS.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            rel = path.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            if not (path.parent / "__init__.py").exists():
                continue
            if folder == "kernel" and rel.parts[0] in ("plugins", "backends", "contrib"):
                continue
            out.add(f"{target}/{rel.as_posix()}")
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (path,) = out.glob("microray-*.whl")
    return path


def test_wheel_contains_every_module(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(m for m in _source_modules() if m not in names)
    assert not missing, f"modules missing from the wheel: {missing}"
    assert "microray/protocol/gcs.proto" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[microray]" in text and "gcs_redis" in text


def test_every_module_imports_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    modules = sorted(
        m[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        for m in _source_modules()
        if not m.endswith("__main__.py")
    )
    code = (
        "import importlib, sys, microray\n"
        f"assert microray.__file__.startswith({str(site)!r}), microray.__file__\n"
        f"for name in {modules!r}:\n"
        "    mod = importlib.import_module(name)\n"
        f"    assert mod.__file__.startswith({str(site)!r}), (name, mod.__file__)\n"
        "print('imported', len(sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "imported" in res.stdout
