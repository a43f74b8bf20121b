"""The ``microray`` package laid out as a wheel installs it, for tools that walk folders.

The repository keeps one import package in four folders (setup.py's FOLDER_MAP:
kernel/ is ``microray``, plugins/ is ``microray.plugins``, ...). Tools that find a
package's modules by walking its folder (grimp for import-linter, mypy) see only
kernel/ through the editable install. ``package_tree()`` builds a temporary folder whose
``microray/`` links every entry of kernel/ and the three other folders at their import
paths, so those tools see the whole package as one tree.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# import name -> folder in this repository (as setup.py's FOLDER_MAP)
FOLDER_MAP = {
    "microray": "kernel",
    "microray.plugins": "plugins",
    "microray.backends": "backends",
    "microray.contrib": "contrib",
}


@contextlib.contextmanager
def package_tree() -> Iterator[Path]:
    """A temporary folder holding ``microray/`` (symlinks into this repository); put it
    first on the tool's module search path."""
    with tempfile.TemporaryDirectory(prefix="microray-tree-") as tmp:
        top = Path(tmp) / "microray"
        top.mkdir()
        for entry in (ROOT / FOLDER_MAP["microray"]).iterdir():
            if entry.name != "__pycache__":
                os.symlink(entry, top / entry.name)
        for name, folder in FOLDER_MAP.items():
            if name != "microray":
                os.symlink(ROOT / folder, top / name.rsplit(".", 1)[1])
        yield Path(tmp)
