"""Check the import contracts of pyproject.toml ([tool.importlinter]) with import-linter.

Run it with the project's venv: ``.venv/bin/python scripts/lint_imports.py``. It exits
non-zero, with import-linter's report, when a contract is broken: a layer imports one
above it, the kernel imports a plugin, backend or contrib module, a backend imports a
plugin (or the reverse), or modules import each other in a cycle. Extra arguments go to
``lint-imports`` (``--verbose``, ``--contract ID``, ...).
"""

from __future__ import annotations

import os
import subprocess
import sys

from package_tree import ROOT, package_tree


def main(argv: list[str]) -> int:
    with package_tree() as tree:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH")) if p)
        cmd = [
            sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
            "--no-cache", str(ROOT / "pyproject.toml"), *argv,
        ]
        return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
