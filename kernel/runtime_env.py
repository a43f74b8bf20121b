"""Runtime environments: the driver's code on every node.

``working_dir`` and ``py_modules`` entries that are local paths are packed into a zip
(deterministically: sorted names, fixed timestamps, so equal content gives equal bytes),
stored once in the GCS KV by content hash (namespace ``runtime_env``, chunked so no
value exceeds ``CHUNK_BYTES``) and replaced in the runtime env by their URI
``gcs://_microray_pkg_<sha1>.zip``. Every node unpacks a package once, into
``<its session folder>/runtime_resources/<sha1>/``: under a file lock, into a temporary
folder renamed into place when complete, so workers that start at once on a node never
unpack it twice nor see a half-unpacked folder. A worker of such an environment runs
with the unpacked ``working_dir`` as its current directory and first on ``sys.path``,
and each unpacked ``py_modules`` package on ``sys.path``.

KV layout, per package: ``pkg:<sha1>`` (the manifest: size and chunk count, written
last, so a manifest means the chunks are all there) and ``pkg:<sha1>:<i>`` (chunk i).

``RuntimeEnv`` and ``RuntimeEnvConfig`` are Ray's classes for writing a runtime env:
dicts built from keyword arguments, accepted wherever a runtime_env dict is.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)

KV_NS = "runtime_env"
URI_PREFIX = "gcs://_microray_pkg_"
URI_SUFFIX = ".zip"
DEFAULT_MAX_BYTES = 500 * 1024 * 1024  # the config key runtime_env_max_bytes's default
CHUNK_BYTES = 1024 * 1024  # under etcd's default request limit (1.5 MiB)
RESOURCES_DIR = "runtime_resources"
# the environment variable through which a submitted job's driver gets its runtime env
JOB_RUNTIME_ENV_VAR = "MICRORAY_JOB_RUNTIME_ENV"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

KvGet = Callable[[bytes], "bytes | None"]
KvPut = Callable[[bytes, bytes], None]


class RuntimeEnvError(ValueError):
    """A runtime env that cannot be packed, stored or unpacked."""


# -- RuntimeEnv: Ray's dict of a runtime env, built from keyword arguments ----------------------
class RuntimeEnvConfig(dict):
    """How a runtime env is set up (Ray's ``RuntimeEnvConfig``): ``setup_timeout_seconds``
    (an int > 0, or -1 for no limit), ``eager_install`` (a bool) and ``log_files`` (a list
    of str). A dict, given as a runtime env's ``config``; microray starts every worker the
    same way, so none of them changes how it does."""

    known_fields: set[str] = {"setup_timeout_seconds", "eager_install", "log_files"}

    def __init__(self, setup_timeout_seconds: int = 600, eager_install: bool = True,
                 log_files: list[str] | None = None) -> None:
        super().__init__()
        if isinstance(setup_timeout_seconds, bool) or not isinstance(setup_timeout_seconds, int):
            raise TypeError("setup_timeout_seconds must be of type int, got "
                            f"{type(setup_timeout_seconds).__name__}")
        if setup_timeout_seconds <= 0 and setup_timeout_seconds != -1:
            raise ValueError("setup_timeout_seconds must be greater than zero or equals to -1, got "
                             f"{setup_timeout_seconds}")
        if not isinstance(eager_install, bool):
            raise TypeError(f"eager_install must be a boolean, got {type(eager_install).__name__}")
        if log_files is not None and (not isinstance(log_files, list)
                                      or not all(isinstance(f, str) for f in log_files)):
            raise TypeError(f"log_files must be a list of strings or None, got {log_files!r}")
        self["setup_timeout_seconds"] = setup_timeout_seconds
        self["eager_install"] = eager_install
        if log_files is not None:
            self["log_files"] = list(log_files)


class RuntimeEnv(dict):
    """A runtime environment as a dict built from keyword arguments (Ray's ``RuntimeEnv``):
    ``RuntimeEnv(env_vars={...}, working_dir=".", py_modules=[...])`` equals the dict with
    those keys, and goes wherever a runtime_env dict does (``init(runtime_env=...)``,
    ``@remote(runtime_env=...)``, ``.options(runtime_env=...)``, ``JobConfig``).

    Arguments left at None are not set. Any key is kept, as in Ray; a key microray does
    not support (``pip``, ``conda``, ``container``, ...) is refused where the env is used,
    with the same error as in a dict. With ``_validate`` (the default) the values of the
    supported keys are checked here already (``ValueError``)."""

    known_fields: set[str] = {
        "py_modules", "py_executable", "working_dir", "pip", "conda", "container", "env_vars",
        "worker_process_setup_hook", "config", "image_uri", "uv", "excludes", "java_jars",
    }

    def __init__(self, *, py_modules: list[str] | None = None, py_executable: str | None = None,
                 working_dir: str | None = None, pip: Any = None, conda: Any = None,
                 container: dict[str, str] | None = None, env_vars: dict[str, str] | None = None,
                 worker_process_setup_hook: Any = None,
                 config: dict[str, Any] | RuntimeEnvConfig | None = None, _validate: bool = True,
                 image_uri: str | None = None, uv: Any = None, **kwargs: Any) -> None:
        super().__init__()
        given = {
            "py_modules": py_modules, "py_executable": py_executable, "working_dir": working_dir,
            "pip": pip, "conda": conda, "container": container, "env_vars": env_vars,
            "worker_process_setup_hook": worker_process_setup_hook,
            "config": config, "image_uri": image_uri, "uv": uv, **kwargs,
        }
        for key, value in given.items():
            if value is not None:
                self[key] = value
        if isinstance(self.get("config"), dict) and not isinstance(self["config"], RuntimeEnvConfig):
            self["config"] = RuntimeEnvConfig(**self["config"])
        if _validate:
            from microray.task_options import RUNTIME_ENV_KEYS, runtime_env_problem

            problem = runtime_env_problem({k: v for k, v in self.items() if k in RUNTIME_ENV_KEYS})
            if problem:
                raise ValueError(f"RuntimeEnv({', '.join(sorted(self))}): expected {problem}")

    def to_dict(self) -> dict[str, Any]:
        """A plain dict copy (``config`` too)."""
        return {k: dict(v) if isinstance(v, RuntimeEnvConfig) else v for k, v in self.items()}

    def serialize(self) -> str:
        """The env as JSON text (``RuntimeEnv.deserialize`` reads it back)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def deserialize(cls, serialized: str) -> "RuntimeEnv":
        return cls(_validate=False, **json.loads(serialized))

    def env_vars(self) -> dict[str, str]:
        """The ``env_vars`` key's variables ({} when not set)."""
        return dict(self.get("env_vars") or {})


@dataclass(frozen=True)
class Package:
    """A packed directory or module: its URI and zip bytes."""

    uri: str
    data: bytes
    files: int


# -- URIs -------------------------------------------------------------------------------
def is_package_uri(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(URI_PREFIX) and value.endswith(URI_SUFFIX)


def package_hash(uri: str) -> str:
    return uri[len(URI_PREFIX):-len(URI_SUFFIX)]


def _meta_key(sha: str) -> bytes:
    return f"pkg:{sha}".encode()


def _chunk_key(sha: str, i: int) -> bytes:
    return f"pkg:{sha}:{i}".encode()


# -- packing (the driver, the job CLI) ------------------------------------------------------
def _exclude_matcher(excludes: Iterable[str]) -> Callable[[str], bool]:
    patterns = [p for p in excludes if p and p.strip()]
    if not patterns:
        return lambda rel: False
    import pathspec

    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    return spec.match_file


def _walk(root: str, excluded: Callable[[str], bool]) -> list[tuple[str, str, int]]:
    """(relative name, absolute path, size) of every file under ``root`` that no exclude
    pattern matches (a matched folder is not entered)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not excluded(rel_dir + d + "/"))
        for name in sorted(filenames):
            rel = rel_dir + name
            if excluded(rel):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:  # a dangling link
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((rel, path, st.st_size))
    return found


def _too_big(what: str, files: list[tuple[str, str, int]], max_bytes: int) -> RuntimeEnvError:
    total = sum(size for _, _, size in files)
    largest = sorted(files, key=lambda f: -f[2])[:3]
    biggest = ", ".join(f"{rel} ({_mib(size)})" for rel, _, size in largest)
    return RuntimeEnvError(
        f"runtime_env {what} is {_mib(total)} ({total} bytes), over the limit of {_mib(max_bytes)} "
        f"({max_bytes} bytes, config key 'runtime_env_max_bytes'); its largest files: {biggest}. "
        "Leave files out with runtime_env['excludes'], a list of .gitignore-style patterns relative to "
        "the folder (e.g. {'excludes': ['data/', '*.bin']})"
    )


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.2f} MiB"


def pack(path: str, *, excludes: Iterable[str] = (), max_bytes: int, as_module: bool = False,
         what: str = "working_dir") -> Package:
    """Pack the folder (or, with ``as_module``, the package folder or ``.py`` file) at
    ``path``. A working_dir's files are at the zip's root; a module is kept under its own
    name (``mypkg/...`` or ``mymod.py``), so the unpacked folder goes on ``sys.path``.
    Raises ``RuntimeEnvError`` when ``path`` does not exist or its files (after
    ``excludes``) exceed ``max_bytes``."""
    path = os.path.abspath(os.path.expanduser(path))
    excluded = _exclude_matcher(excludes)
    if as_module and os.path.isfile(path):
        if not path.endswith(".py"):
            raise RuntimeEnvError(f"runtime_env py_modules entry {path!r}: expected a package folder or a .py file")
        files = [(os.path.basename(path), path, os.path.getsize(path))]
    elif os.path.isdir(path):
        files = _walk(path, excluded)
        if as_module:
            prefix = os.path.basename(path.rstrip(os.sep)) + "/"
            files = [(prefix + rel, p, size) for rel, p, size in files]
    else:
        raise RuntimeEnvError(f"runtime_env {what} {path!r}: no such folder{' or .py file' if as_module else ''}")
    if sum(size for _, _, size in files) > max_bytes:
        raise _too_big(f"{what} {path!r}", files, max_bytes)
    import io
    import zipfile  # here: `import microray` does not pay for it

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel, p, _ in files:
            info = zipfile.ZipInfo(rel, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (os.stat(p).st_mode & 0o777 | stat.S_IFREG) << 16
            with open(p, "rb") as f:
                zf.writestr(info, f.read())
    data = buf.getvalue()
    if len(data) > max_bytes:
        raise _too_big(f"{what} {path!r} (packed)", files, max_bytes)
    return Package(URI_PREFIX + hashlib.sha1(data).hexdigest() + URI_SUFFIX, data, len(files))


def _signature(path: str, excludes: tuple[str, ...]) -> tuple:
    """What changes when the folder's packed content may change (names, sizes, mtimes)."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isfile(path):
        st = os.stat(path)
        return (path, st.st_size, st.st_mtime_ns)
    if not os.path.isdir(path):
        return (path, None)
    excluded = _exclude_matcher(excludes)
    sig = []
    for rel, p, size in _walk(path, excluded):
        try:
            sig.append((rel, size, os.stat(p).st_mtime_ns))
        except OSError:
            continue
    return (path, excludes, tuple(sig))


# -- the GCS KV -----------------------------------------------------------------------------
def upload(pkg: Package, kv_get: KvGet, kv_put: KvPut) -> bool:
    """Store ``pkg`` in the KV unless it is there already; True when it was stored now."""
    sha = package_hash(pkg.uri)
    if kv_get(_meta_key(sha)) is not None:
        return False
    chunks = [pkg.data[i:i + CHUNK_BYTES] for i in range(0, len(pkg.data), CHUNK_BYTES)] or [b""]
    for i, chunk in enumerate(chunks):
        kv_put(_chunk_key(sha, i), chunk)
    kv_put(_meta_key(sha), json.dumps({"size": len(pkg.data), "chunks": len(chunks)}).encode())
    log.info("runtime_env_package_stored", uri=pkg.uri, bytes=len(pkg.data), chunks=len(chunks), files=pkg.files)
    return True


def download(uri: str, kv_get: KvGet) -> bytes:
    """The zip bytes of ``uri`` from the KV, checked against its hash."""
    sha = package_hash(uri)
    count = chunk_count(uri, kv_get(_meta_key(sha)))
    return assemble(uri, [kv_get(_chunk_key(sha, i)) for i in range(count)])


def chunk_count(uri: str, manifest: bytes | None) -> int:
    """How many chunks the package has, from its manifest (``None``: not stored)."""
    if manifest is None:
        raise RuntimeEnvError(f"runtime_env package {uri} is not in the GCS (it is stored by the driver "
                              "that uses it, in the cluster it is connected to)")
    return int(json.loads(manifest)["chunks"])


def chunk_keys(uri: str) -> tuple[bytes, Callable[[int], bytes]]:
    """The manifest's key and the key of chunk i."""
    sha = package_hash(uri)
    return _meta_key(sha), lambda i: _chunk_key(sha, i)


def assemble(uri: str, chunks: list[bytes | None]) -> bytes:
    """The package's bytes from its chunks, checked against its hash."""
    missing = [i for i, c in enumerate(chunks) if c is None]
    if missing:
        raise RuntimeEnvError(f"runtime_env package {uri}: chunk {missing[0]} of {len(chunks)} is missing")
    data = b"".join(c for c in chunks if c is not None)
    if hashlib.sha1(data).hexdigest() != package_hash(uri):
        raise RuntimeEnvError(f"runtime_env package {uri}: the stored bytes do not match its hash")
    return data


# -- resolving (driver side) ------------------------------------------------------------------
class Resolver:
    """Turns local paths of a runtime env into package URIs, packing and uploading each
    folder once per content (a folder whose files did not change is not packed again)."""

    def __init__(self, kv_get: KvGet, kv_put: KvPut, max_bytes: int) -> None:
        self._kv_get = kv_get
        self._kv_put = kv_put
        self.max_bytes = max_bytes
        self._uris: dict[tuple, str] = {}

    def _uri(self, path: str, excludes: tuple[str, ...], as_module: bool, what: str) -> str:
        sig = (as_module, _signature(path, excludes))
        uri = self._uris.get(sig)
        if uri is None:
            pkg = pack(path, excludes=excludes, max_bytes=self.max_bytes, as_module=as_module, what=what)
            upload(pkg, self._kv_get, self._kv_put)
            uri = self._uris[sig] = pkg.uri
        return uri

    def resolve(self, env: dict[str, Any] | None) -> dict[str, Any] | None:
        """``env`` with its local ``working_dir`` / ``py_modules`` paths replaced by URIs
        (``excludes`` applies to both and is dropped once applied)."""
        if not env or ("working_dir" not in env and "py_modules" not in env):
            return env
        out = dict(env)
        excludes = tuple(out.pop("excludes", None) or ())
        wd = out.get("working_dir")
        if wd is not None and not is_package_uri(wd):
            out["working_dir"] = self._uri(wd, excludes, False, "working_dir")
        mods = out.get("py_modules")
        if mods is not None:
            out["py_modules"] = [m if is_package_uri(m) else self._uri(m, excludes, True, "py_modules entry")
                                 for m in mods]
        return out


def merge(job_env: dict[str, Any] | None, env: dict[str, Any] | None) -> dict[str, Any] | None:
    """A task's or actor's runtime env over its job's (or parent's): each key of ``env``
    replaces the job's, except ``env_vars``, which are merged (``env``'s win)."""
    job_env = job_env or {}
    env = env or {}
    if not job_env and not env:
        return None
    merged = {**job_env, **env}
    env_vars = {**job_env.get("env_vars", {}), **env.get("env_vars", {})}
    if env_vars:
        merged["env_vars"] = env_vars
    else:
        merged.pop("env_vars", None)
    merged.pop("config", None)  # setup options: nothing of the worker's environment
    return merged or None


# -- unpacking (every node) -------------------------------------------------------------------
def local_dir(session_dir: str, uri: str) -> str:
    return os.path.join(session_dir, RESOURCES_DIR, package_hash(uri))


def ensure_unpacked(session_dir: str, uri: str, fetch: Callable[[], bytes]) -> str:
    """The folder of ``uri`` unpacked under ``session_dir``: unpacked now (``fetch``
    gives the zip bytes) unless it is there already. Safe between processes: the unpack
    holds a lock and renames a complete folder into place."""
    final = local_dir(session_dir, uri)
    if os.path.isdir(final):
        return final
    root = os.path.dirname(final)
    os.makedirs(root, mode=0o700, exist_ok=True)
    with open(final + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isdir(final):  # another process unpacked it while we waited
            return final
        import io
        import zipfile

        data = fetch()
        tmp = f"{final}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in zf.infolist():
                    target = os.path.realpath(os.path.join(tmp, info.filename))
                    if not target.startswith(os.path.realpath(tmp) + os.sep):
                        raise RuntimeEnvError(f"runtime_env package {uri}: member {info.filename!r} leaves its folder")
                    zf.extract(info, tmp)
                    mode = (info.external_attr >> 16) & 0o777
                    if mode and not info.is_dir():
                        os.chmod(target, mode)
            os.makedirs(tmp, exist_ok=True)  # an empty package
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("runtime_env_package_unpacked", uri=uri, path=final, bytes=len(data))
    return final


@dataclass(frozen=True)
class WorkerSetup:
    """Where a worker of one runtime env runs: its cwd and what goes first on sys.path."""

    cwd: str | None
    sys_path: tuple[str, ...]


def package_uris(env: dict[str, Any] | None) -> list[str]:
    """The package URIs a runtime env needs on a node (working_dir first)."""
    if not env:
        return []
    uris = [env["working_dir"]] if is_package_uri(env.get("working_dir")) else []
    uris += [m for m in env.get("py_modules") or () if is_package_uri(m)]
    return uris


def worker_setup(session_dir: str, env: dict[str, Any] | None) -> WorkerSetup:
    """The cwd and sys.path entries of a worker of ``env`` (packages unpacked already)."""
    if not env:
        return WorkerSetup(None, ())
    wd = env.get("working_dir")
    cwd = local_dir(session_dir, wd) if isinstance(wd, str) and is_package_uri(wd) else None
    paths = ([cwd] if cwd else []) + [local_dir(session_dir, m) for m in env.get("py_modules") or ()
                                      if is_package_uri(m)]
    return WorkerSetup(cwd, tuple(paths))
