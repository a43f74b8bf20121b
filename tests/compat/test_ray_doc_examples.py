"""Ray Core's documentation examples, as users run them: every script under
examples/ray_docs (each one example of a Ray documentation page, ``import microray as
ray``, checking its own results with asserts) must run to the end, exit 0 and leave no
process behind. docs/compatibility.md lists them and what each one comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from microray.testing.processes import driver_env, run_driver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ray_docs"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
TIMEOUT = 180  # seconds for one script on a busy 2-core machine (most take a few)


def test_the_examples_are_there():
    assert len(SCRIPTS) >= 40, f"expected the Ray documentation examples under {EXAMPLES}"
    for script in SCRIPTS:
        head = script.read_text().splitlines()[0]
        assert head.startswith("# Ray doc:"), f"{script.name} does not name its documentation page"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_ray_doc_example_runs(script, no_cluster, tmp_path):
    body = f"import runpy\nrunpy.run_path({str(script)!r}, run_name='__main__')\n"
    run_driver(body, driver_env(), TIMEOUT, tmp_path)
