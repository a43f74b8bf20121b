"""Packing, storing and unpacking runtime_env packages (``microray.runtime_env``), without
a cluster: a dict stands for the GCS KV."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

from microray import runtime_env as renv


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _project(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "mymod.py").write_text("X = 1\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "sub" / "deep.txt").write_text("deep")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(os.urandom(300_000))
    (root / "notes.log").write_text("log")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    return root


def test_same_content_same_package_and_excludes(tmp_path: Path) -> None:
    a = _project(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b, copy_function=shutil.copy)  # modes, not timestamps
    os.utime(b / "mymod.py", (1, 1))  # timestamps are not content
    assert renv.pack(str(a), max_bytes=10**7).uri == renv.pack(str(b), max_bytes=10**7).uri
    (b / "mymod.py").write_text("X = 2\n")
    assert renv.pack(str(a), max_bytes=10**7).uri != renv.pack(str(b), max_bytes=10**7).uri

    pkg = renv.pack(str(a), excludes=["data/", "*.log", "/pkg/sub/deep.txt"], max_bytes=10**7)
    kv: dict[bytes, bytes] = {}
    renv.upload(pkg, kv.get, kv.__setitem__)
    out = renv.ensure_unpacked(str(tmp_path / "node"), pkg.uri, lambda: renv.download(pkg.uri, kv.get))
    assert sorted(_tree(Path(out))) == ["mymod.py", "pkg/__init__.py", "run.sh"]
    assert os.stat(Path(out) / "run.sh").st_mode & 0o777 == 0o755


def test_the_size_limit_names_the_size_the_limit_and_the_way_out(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    with pytest.raises(renv.RuntimeEnvError) as err:
        renv.pack(str(root), max_bytes=100_000)
    text = str(err.value)
    assert "over the limit of" in text and "100000 bytes" in text
    assert "data/big.bin" in text  # the largest file
    assert "excludes" in text and "runtime_env_max_bytes" in text
    renv.pack(str(root), excludes=["data/"], max_bytes=100_000)  # fits without it
    with pytest.raises(renv.RuntimeEnvError, match="no such folder"):
        renv.pack(str(tmp_path / "missing"), max_bytes=100)


def test_large_packages_are_chunked_and_stored_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(renv, "CHUNK_BYTES", 64 * 1024)
    pkg = renv.pack(str(_project(tmp_path / "p")), max_bytes=10**7)
    kv: dict[bytes, bytes] = {}
    puts: list[bytes] = []

    def put(key: bytes, value: bytes) -> None:
        puts.append(key)
        kv[key] = value

    assert renv.upload(pkg, kv.get, put) is True
    assert all(len(v) <= 64 * 1024 for v in kv.values())
    chunks = -(-len(pkg.data) // (64 * 1024))
    assert len(kv) == chunks + 1 and chunks > 1
    assert puts[-1] == renv.chunk_keys(pkg.uri)[0]  # the manifest last: it says "complete"
    assert renv.upload(pkg, kv.get, put) is False and len(puts) == chunks + 1
    assert renv.download(pkg.uri, kv.get) == pkg.data
    del kv[renv.chunk_keys(pkg.uri)[1](1)]
    with pytest.raises(renv.RuntimeEnvError, match="chunk 1"):
        renv.download(pkg.uri, kv.get)


def test_py_modules_keep_their_names(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    node = tmp_path / "node"
    for path, expected in ((root / "pkg", ["pkg/__init__.py", "pkg/sub/deep.txt"]), (root / "mymod.py", ["mymod.py"])):
        pkg = renv.pack(str(path), max_bytes=10**7, as_module=True)
        out = renv.ensure_unpacked(str(node), pkg.uri, lambda pkg=pkg: pkg.data)
        assert sorted(_tree(Path(out))) == expected
    with pytest.raises(renv.RuntimeEnvError, match="a package folder or a .py file"):
        renv.pack(str(root / "notes.log"), max_bytes=10**7, as_module=True)


def _unpack_in_child(node: str, uri: str, data: bytes, count_dir: str, go: object) -> None:
    go.wait()  # type: ignore[attr-defined]

    def fetch() -> bytes:
        with open(os.path.join(count_dir, str(os.getpid())), "w"):
            pass
        return data

    path = renv.ensure_unpacked(node, uri, fetch)
    assert sorted(os.listdir(path)) == ["mymod.py", "pkg", "run.sh"]


def test_processes_unpacking_at_once_unpack_it_once(tmp_path: Path) -> None:
    pkg = renv.pack(str(_project(tmp_path / "p")), excludes=["data/", "*.log"], max_bytes=10**7)
    counts = tmp_path / "fetches"
    counts.mkdir()
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    procs = [ctx.Process(target=_unpack_in_child, args=(str(tmp_path / "node"), pkg.uri, pkg.data, str(counts), go))
             for _ in range(6)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 6
    assert len(os.listdir(counts)) == 1  # one process unpacked it; the others found it there
    resources = tmp_path / "node" / renv.RESOURCES_DIR
    assert sorted(os.listdir(resources)) == sorted([renv.package_hash(pkg.uri), renv.package_hash(pkg.uri) + ".lock"])


def test_resolver_packs_a_folder_again_only_when_it_changed(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    kv: dict[bytes, bytes] = {}
    resolver = renv.Resolver(kv.get, kv.__setitem__, 10**7)
    env = {"working_dir": str(root), "excludes": ["data/"], "env_vars": {"A": "1"}}
    first = resolver.resolve(env)
    assert first is not None and renv.is_package_uri(first["working_dir"]) and "excludes" not in first
    assert first["env_vars"] == {"A": "1"}
    assert resolver.resolve(env) == first
    (root / "mymod.py").write_text("X = 3\n")
    assert resolver.resolve(env)["working_dir"] != first["working_dir"]  # type: ignore[index]


def test_merge_task_over_job() -> None:
    job = {"working_dir": "gcs://_microray_pkg_a.zip", "env_vars": {"A": "1", "B": "1"}}
    task = {"working_dir": "gcs://_microray_pkg_b.zip", "env_vars": {"B": "2"}}
    assert renv.merge(job, task) == {"working_dir": "gcs://_microray_pkg_b.zip", "env_vars": {"A": "1", "B": "2"}}
    assert renv.merge(job, None) == job
    assert renv.merge(None, None) is None
    assert renv.merge({}, {"config": {"setup_timeout_seconds": 10}}) is None
