"""Functions exported by value keep their file name and carry their source lines, so a
worker's traceback names the user's file and shows the line even where the file is not
(another machine)."""

from __future__ import annotations

import linecache
import traceback

from microray import serialization

SOURCE = "def helper():\n    return 1 / 0\n\n\ndef user_fn():\n    return helper()\n"
PATH = "/nonexistent-microray-test/user_code.py"


def _load_module_functions() -> dict:
    namespace: dict = {"__name__": "user_code_by_value"}  # not importable: pickled by value
    exec(compile(SOURCE, PATH, "exec"), namespace)
    linecache.cache[PATH] = (len(SOURCE), None, SOURCE.splitlines(keepends=True), PATH)
    return namespace


def test_code_keeps_its_file_and_the_source_travels() -> None:
    fn = _load_module_functions()["user_fn"]
    data = serialization.dumps_function(fn)
    linecache.cache.pop(PATH, None)  # the worker's side: no such file, nothing cached
    loaded = serialization.loads_function(data)
    assert loaded.__code__.co_filename == PATH
    try:
        loaded()
    except ZeroDivisionError as exc:
        text = "".join(traceback.format_exception(exc))
    else:
        raise AssertionError("the loaded function did not raise")
    assert f'File "{PATH}", line 6, in user_fn' in text
    assert "    return helper()" in text
    assert f'File "{PATH}", line 2, in helper' in text and "return 1 / 0" in text
    assert "<dynamic-code>" not in text


def test_export_is_deterministic() -> None:
    fn = _load_module_functions()["user_fn"]
    assert serialization.dumps_function(fn) == serialization.dumps_function(fn)
