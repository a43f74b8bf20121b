"""Maps the repository's folders onto one import package, ``microray``.

The folder map is the single source of truth: every directory below a mapped
root that holds an ``__init__.py`` becomes a subpackage, so nothing silently
drops out of the wheel when a new subpackage is added.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent

# import name -> folder in this repository
FOLDER_MAP = {
    "microray": "kernel",
    "microray.plugins": "plugins",
    "microray.backends": "backends",
    "microray.contrib": "contrib",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for name, folder in FOLDER_MAP.items():
        package_dir[name] = folder
        for init in sorted((HERE / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(HERE / folder)
            parts = [p for p in rel.parts if p]
            packages.append(".".join([name, *parts]))
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

setup(packages=PACKAGES, package_dir=PACKAGE_DIR)
