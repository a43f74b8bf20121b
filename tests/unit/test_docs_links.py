"""The docs have no dead ends: every relative link in README.md and docs/ resolves to a
file of this repository, nothing points outside it, the README lists every doc, and no
user-facing text speaks of issues still to come."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)", re.S)  # [text](target "title"), across lines
OUTSIDE = re.compile(r"(?<![\w.])\.\./(shared|work)/|/work/(shared|main|wt)/")


def _relative_links(page: Path) -> list[str]:
    out = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, mailto:, an anchor of the same page
        out.append(target.split("#", 1)[0])
    return out


def test_every_relative_link_resolves_to_a_file_of_the_repo() -> None:
    dead = []
    for page in PAGES:
        for target in _relative_links(page):
            path = (page.parent / target).resolve()
            if not path.exists() or ROOT not in (path, *path.parents):
                dead.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not dead, f"links to nothing in the repository: {dead}"


def test_no_page_points_outside_the_repo() -> None:
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in PAGES
             for n, line in enumerate(p.read_text().splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, f"paths outside the repository: {found}"


def test_readme_lists_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"`docs/{p.name}`" not in readme]
    assert not missing, f"docs not listed in README.md: {missing}"


def test_readme_mentions_the_dashboard_jobs_and_state_cli() -> None:
    readme = (ROOT / "README.md").read_text()
    for what in ("Dashboard", "microray job submit", "microray list", "microray status"):
        assert what in readme, what


def test_readme_opens_with_the_two_commands() -> None:
    """The README starts with the quickstart and the test-suite commands (CI runs the second)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    first, second = lines[lines.index("```bash") + 1:lines.index("```bash") + 3]
    assert first.startswith("python3 -m venv .venv") and first.endswith("examples/quickstart.py"), first
    assert second.startswith("python3 -m venv .venv") and ".venv/bin/pytest" in second, second


def test_no_user_facing_text_speaks_of_issues_to_come() -> None:
    pattern = r"later issue|next issue|(scheduling|cluster|serve) issue|arrive with"
    hits = subprocess.run(["grep", "-rnIiE", pattern, "kernel", "plugins", "backends", "contrib", "docs", "README.md"],
                          cwd=ROOT, capture_output=True, text=True).stdout
    assert not hits.strip(), hits
