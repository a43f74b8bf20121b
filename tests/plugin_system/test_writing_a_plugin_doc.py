"""``docs/writing-a-plugin.md`` works as written.

The files the page shows (each code block preceded by ``<!-- file: PATH -->``)
are written to a temp folder, the package is installed with pip into a site
folder, and then, in fresh interpreters with that folder on ``PYTHONPATH``:
the config file selects the policy, a misspelt name gives the documented
error, and the page's own contract tests pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from thirdparty_dists import pip_install, run_probe

pytestmark = pytest.mark.slow  # chaos, browser, real-server and heavy-I/O tests: not in `tox -e fast`

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-plugin.md"
_FILE_BLOCK = re.compile(r"<!-- file: (?P<path>[^ ]+) -->\n```[a-z]*\n(?P<body>.*?)\n```", re.S)


def doc_files() -> dict[str, str]:
    """Path -> content of every file the page shows."""
    return {m["path"]: m["body"] + "\n" for m in _FILE_BLOCK.finditer(DOC.read_text())}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the project folder written from the page, the site folder it is installed in)."""
    root = tmp_path_factory.mktemp("writing-a-plugin")
    project = root / "my-policy"
    for rel, body in doc_files().items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    site = root / "site"
    pip_install(site, [project])
    return project, site


def test_the_page_shows_every_file_of_the_package() -> None:
    assert set(doc_files()) == {
        "src/my_policy/__init__.py", "pyproject.toml", "microray.toml", "tests/test_contract.py",
    }


def test_the_policy_is_found_through_its_entry_point(project: tuple[Path, Path]) -> None:
    _, site = project
    report = run_probe("scheduling_policy", "mine", paths=[site])
    assert report["selected"] == {
        "name": "mine", "factory_module": "my_policy", "description": "first fit in node-id order",
    }
    assert report["source"] == "entry point 'my_policy' (my-policy)"


def test_the_documented_misspelling_error(project: tuple[Path, Path]) -> None:
    _, site = project
    report = run_probe("scheduling_policy", "mnie", paths=[site])
    assert report["error"].startswith("unknown scheduling_policy 'mnie'; available: hybrid, mine, random, spread")
    assert "did you mean 'mine'?" in report["error"]


def test_the_config_file_selects_it_with_its_options(project: tuple[Path, Path]) -> None:
    folder, site = project
    code = (
        "from microray.config import resolve\n"
        "from microray.plugin_manager import get_plugin_manager\n"
        "cfg = resolve()\n"
        "reg = get_plugin_manager(cfg.plugins).select('scheduling_policy', cfg.scheduling_policy)\n"
        "policy = reg.factory(**reg.validate_options('scheduling_policy', cfg.scheduling_policy_options))\n"
        "print(type(policy).__module__, policy.name, policy.reverse)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRORAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["my_policy", "mine", "False"]


def test_the_pages_contract_tests_pass(project: tuple[Path, Path]) -> None:
    folder, site = project
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRORAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert re.match(r"\d+ passed", summary), summary
    assert "failed" not in summary and "skipped" not in summary
