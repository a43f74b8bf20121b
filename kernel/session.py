"""Session folders: where a node keeps its logs, its config and its records.

Layout under ``session_root`` (default ``/tmp/microray-sessions``)::

    <root>/                       mode 0700, owned by this user (see ``ensure_root``)
        current_cluster           0600: the head ``microray start`` started here
        session_latest -> session_...
        session_<time>_<pid>_<rand>/          mode 0700
            config.json           0600: the node's full config, secrets included
            address.json          0600: addresses and pids of the node's processes
            cluster_token         0600: the cluster token (``write_token``)
            logs/                 0700

Secrets reach the node processes only through ``config.json`` (``--config-file``),
never through their arguments. A session is *live* while a process holds a shared
``flock`` on its folder: the process that creates it until its node runs
(``release``), and then each of its GCS, raylet and dashboard (``hold``); the kernel
drops a dead process's lock by itself. ``prune`` removes the folders of finished
sessions beyond the newest ``session_keep``, never a live one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
import stat
import time
from pathlib import Path

import structlog

from microray import config as config_mod
from microray.exceptions import RaySystemError

log = structlog.get_logger(__name__)

CONFIG_FILE = "config.json"
PREFIX = "session_"
LATEST = "session_latest"
_CREATING = ".creating_"
# a folder changed this recently stays (a test reading the logs of the cluster it just
# stopped; a session that a microray without session locks is starting)
RECENT_S = 60.0

_held: dict[str, int] = {}  # session dir -> fd of the folder, holding a shared flock


def ensure_root(root: str) -> Path:
    """Create the session root (mode 0700) or check it: it must be a folder of this user
    (else another user could plant records or links in it); a looser mode is tightened."""
    path = Path(root)
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    uid = os.getuid()
    try:
        link = os.lstat(path)
        st = os.stat(path)
    except OSError as exc:
        raise RaySystemError(f"session_root {root}: {exc.strerror}") from None
    owner = link.st_uid if stat.S_ISLNK(link.st_mode) and link.st_uid != uid else st.st_uid
    if not stat.S_ISDIR(st.st_mode) or owner != uid:
        raise RaySystemError(
            f"session_root {root} is {'not a folder' if not stat.S_ISDIR(st.st_mode) else f'owned by uid {owner}'}; "
            f"expected a folder of this user (uid {uid}) that no one else can write to. "
            "Set session_root (MICRORAY_SESSION_ROOT) to a folder of your own"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def new_session_dir(root: str, keep: int = 10, latest: bool = True) -> str:
    """Create a session folder (0700, with ``logs/``), hold it live (see ``release``),
    point ``session_latest`` at it (unless ``latest`` is False: a worker node's session is
    not the latest head's) and prune old sessions beyond ``keep``."""
    base = ensure_root(root)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    name = f"{PREFIX}{stamp}_{os.getpid()}_{os.urandom(3).hex()}"
    # made under a name prune ignores, locked, then renamed: never seen unlocked
    creating = base / f"{_CREATING}{name}"
    creating.mkdir(mode=0o700)
    fd = os.open(creating, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    (creating / "logs").mkdir(mode=0o700)
    path = base / name
    os.rename(creating, path)
    _held[str(path)] = fd
    link = base / LATEST
    try:
        if latest and (link.is_symlink() or link.exists()):
            link.unlink()
        if latest:
            link.symlink_to(path)
    except OSError:
        pass
    prune_quietly(root, keep)
    return str(path)


def prune_quietly(root: str, keep: int) -> None:
    """``prune`` (``keep`` 0: keep all), logging rather than raising a failure: never
    fail a start over housekeeping."""
    if keep > 0:
        try:
            prune(root, keep)
        except OSError as exc:
            log.warning("session_prune_failed", root=root, error=str(exc))


def hold(session_dir: str) -> None:
    """Keep ``session_dir`` live for as long as this process runs (node processes)."""
    if session_dir in _held:
        return
    fd = os.open(session_dir, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _held[session_dir] = fd


def release(session_dir: str) -> None:
    """Stop holding ``session_dir`` live from this process (its node runs, or stopped)."""
    fd = _held.pop(session_dir, None)
    if fd is not None:
        os.close(fd)


def prune(root: str, keep: int) -> list[str]:
    """Remove the folders of finished sessions under ``root`` but the ``keep`` newest;
    return the removed paths. A folder is kept while any process holds it (``hold``),
    any pid in its ``address.json`` runs, or it changed in the last ``RECENT_S``."""
    base = Path(root)
    sessions, leftovers = [], []
    for entry in os.scandir(base):
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name.startswith(PREFIX) and entry.name != LATEST:
            sessions.append(entry.path)
        elif entry.name.startswith(_CREATING):
            leftovers.append(entry.path)  # a start that died before the rename
    sessions.sort(key=os.path.basename)  # names are unique and start with their time
    removed = []
    for path in [*sessions[: max(0, len(sessions) - keep)], *leftovers]:
        if path in _held or not _remove_if_finished(path):
            continue
        removed.append(path)
    if removed:
        log.info("sessions_pruned", root=root, removed=len(removed), kept=keep)
    return removed


def _remove_if_finished(path: str) -> bool:
    if time.time() - _mtime(path) < RECENT_S:
        return False  # checked again under the lock; this spares the lock and the pids
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False  # live
            raise
        if _pids_alive(path) or time.time() - _mtime(path) < RECENT_S:
            return False
        shutil.rmtree(path, ignore_errors=True)
        return not os.path.exists(path)
    finally:
        os.close(fd)


def _mtime(path: str) -> float:
    """When the session last changed: its folder, its logs folder or its record."""
    times = []
    for p in (path, os.path.join(path, "logs"), os.path.join(path, "address.json")):
        try:
            times.append(os.stat(p).st_mtime)
        except OSError:
            pass
    return max(times, default=0.0)


def _pids_alive(path: str) -> bool:
    from microray.process import pid_alive

    try:
        with open(os.path.join(path, "address.json")) as f:
            pids = json.load(f).get("pids", {})
    except (OSError, ValueError, AttributeError):
        return False
    return any(isinstance(pid, int) and pid_alive(pid) for pid in pids.values())


# -- private files -------------------------------------------------------------------------------
def write_private(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (0600), replacing it atomically."""
    tmp = f"{path}.{os.getpid()}.{os.urandom(3).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_private(path: str | os.PathLike) -> str | None:
    """The text of a record this user wrote with ``write_private``; None when it is
    missing or someone else could have written it (another owner, group/world-writable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            log.warning("session_record_ignored", path=str(path), owner=st.st_uid, mode=oct(stat.S_IMODE(st.st_mode)))
            return None
        return f.read()


# -- the cluster token -----------------------------------------------------------------------------
TOKEN_FILE = "cluster_token"


def new_token() -> str:
    """A fresh random cluster token (what a head makes at start)."""
    return secrets.token_urlsafe(32)


def write_token(session_dir: str, token: str) -> str:
    """Write ``token`` to ``<session_dir>/cluster_token`` (0600); return the path. The
    node's processes read it there (``read_token``), never from their arguments."""
    path = os.path.join(session_dir, TOKEN_FILE)
    write_private(path, token)
    return path


def read_token(session_dir: str) -> str:
    """The cluster token kept in ``session_dir``. Raises OSError naming the file when it
    is missing or empty, or when others could read or write it."""
    path = os.path.join(session_dir, TOKEN_FILE)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise PermissionError(
                f"{path}: a cluster token must be a file of this user with mode 0600, "
                f"found uid {st.st_uid} mode {oct(stat.S_IMODE(st.st_mode))}"
            )
        token = f.read().strip()
    if not token:
        raise OSError(f"{path} is empty; expected the cluster token")
    return token


def write_node_config(session_dir: str, cfg: config_mod.Config) -> str:
    """Write the node's full config (secrets included) to ``<session>/config.json``, 0600;
    return its path, which node processes get as ``--config-file``."""
    path = os.path.join(session_dir, CONFIG_FILE)
    write_private(path, cfg.to_json())
    return path


def read_node_config(path: str) -> config_mod.Config:
    """The config a node process was started with (``--config-file``)."""
    with open(path) as f:
        return config_mod.Config.from_json(f.read())


def node_config(session_dir: str, shown: config_mod.Config) -> config_mod.Config:
    """For a process of the node (a worker): the node's full config from its session, or
    ``shown`` (what the raylet answered, secrets masked) when it cannot be read."""
    try:
        return read_node_config(os.path.join(session_dir, CONFIG_FILE))
    except (OSError, ValueError, TypeError):
        return shown
