"""Type-check the kernel with mypy, as configured in pyproject.toml ([tool.mypy]).

Run it with the project's venv: ``.venv/bin/python scripts/typecheck.py``. It exits
non-zero, with mypy's report, on any error. mypy cannot follow the editable install's
folder map, so it checks the package laid out as a wheel installs it
(``package_tree.py``). Extra arguments go to mypy.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile

from package_tree import ROOT, package_tree


def main(argv: list[str]) -> int:
    # one cache per checkout (checks of other checkouts never share or race on it)
    tag = hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]
    cache = os.path.join(tempfile.gettempdir(), f"microray-mypy-cache-{os.getuid()}-{tag}")
    with package_tree() as tree:
        cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", cache, *argv]
        return subprocess.call(cmd, cwd=tree)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
