"""``microray.gcs.store_support``: the checks and messages every shipped GCS store shares."""

from __future__ import annotations

import asyncio

import pytest

from microray.backends.gcs.memory import MemoryGcsStore
from microray.exceptions import ConfigError
from microray.gcs.store_support import as_bytes, check_name, schema_mismatch, timeout_options


@pytest.mark.parametrize("name", ["t", "a.b-c_D9", "x" * 200])
def test_good_names_pass(name: str) -> None:
    assert check_name("table", name) == name


@pytest.mark.parametrize("name", ["", "a:b", "a/b", "x" * 201, "é", 7, None])
def test_bad_names_are_refused_saying_what_is_allowed(name: object) -> None:
    with pytest.raises(ValueError) as info:
        check_name("table", name)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"GCS table name {name!r} must be 1-200 ASCII letters, digits, '_', '.' or '-'"
    )


def test_bytes_like_values_become_bytes_and_others_are_refused() -> None:
    assert as_bytes(b"k", "key") == b"k"
    assert as_bytes(bytearray(b"k"), "key") == b"k"
    assert type(as_bytes(memoryview(b"k"), "key")) is bytes
    with pytest.raises(TypeError, match=r"^GCS expected value must be bytes, not str$"):
        as_bytes("k", "expected value")


def test_schema_mismatch_names_both_versions_and_the_way_out() -> None:
    assert schema_mismatch("x GCS store namespace 'n'", 2, 1) == (
        "x GCS store namespace 'n' holds GCS schema version 2, but this microray uses schema "
        "version 1; upgrade/downgrade microray to match, migrate the data, or use a fresh "
        "namespace (gcs_store_options.namespace)"
    )


def test_timeout_options_parse_strings_and_keep_their_defaults() -> None:
    options = timeout_options()
    assert {k: v.default for k, v in options.items()} == {
        "connect_timeout": 3.0, "request_timeout": 10.0, "retry_timeout": 5.0,
    }
    assert options["retry_timeout"].parse("2.5") == 2.5


def test_the_memory_store_uses_them() -> None:
    async def run() -> None:
        store = MemoryGcsStore("ns")
        with pytest.raises(ValueError, match="GCS table name 'a:b' must be 1-200"):
            await store.get("a:b", b"k")
        with pytest.raises(TypeError, match="GCS key must be bytes, not str"):
            await store.get("t", "k")  # type: ignore[arg-type]
        await store.check_schema(1)
        with pytest.raises(ConfigError, match="memory GCS store namespace 'ns' holds GCS schema version 1"):
            await store.check_schema(2)
        await store.close()

    asyncio.run(run())


def test_backoff_out_of_time_names_the_store_the_operation_and_the_last_error() -> None:
    from microray.exceptions import GcsUnavailableError
    from microray.gcs.store_support import Backoff

    backoff = Backoff(0.0, "x", "x GCS store at x://h")
    with pytest.raises(GcsUnavailableError) as info:
        asyncio.run(backoff.pause("ping", "ConnectionError: refused"))
    assert str(info.value).startswith("x GCS store at x://h is unavailable: ping failed 1 times over ")
    assert str(info.value).endswith("; last error: ConnectionError: refused")
    backoff.reset()
    assert backoff.failures == 0 and backoff.failing_since is None
