"""The session's log files, listed and tailed without ever leaving the logs folder.

A file is named by its plain name only (``raylet-1a2b3c4d.log``): anything with a
path separator, a leading dot, or that resolves (through symlinks) outside the
logs folder is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,200}$")
MAX_TAIL_LINES = 10_000
_CHUNK = 64 * 1024


class LogAccessError(ValueError):
    """The name is not a log file of this session."""


def _kind(name: str) -> str:
    for prefix in ("gcs", "raylet", "zygote", "worker", "driver", "dashboard", "job"):
        if name.startswith(prefix):
            return prefix
    return "other"


def list_logs(logs_dir: str) -> list[dict[str, Any]]:
    out = []
    try:
        entries = list(os.scandir(logs_dir))
    except OSError:
        return []
    for e in entries:
        if not _NAME.match(e.name):
            continue
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        out.append({"name": e.name, "size": st.st_size, "mtime": st.st_mtime, "kind": _kind(e.name)})
    out.sort(key=lambda r: (r["kind"], r["name"]))
    return out


def resolve(logs_dir: str, name: str) -> Path:
    """The path of log file ``name``; ``LogAccessError`` for anything else."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise LogAccessError(f"not a log file name: {name!r}")
    root = Path(os.path.realpath(logs_dir))
    path = Path(os.path.realpath(root / name))
    if path.parent != root or not path.is_file():
        raise LogAccessError(f"no log file {name!r} in this session")
    return path


def tail(path: Path, lines: int) -> tuple[list[str], bool]:
    """The last ``lines`` lines of ``path`` (read from the end) and whether it was cut."""
    lines = max(1, min(lines, MAX_TAIL_LINES))
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        pos = end
        data = b""
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(_CHUNK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    text = data.decode("utf-8", errors="replace").splitlines()
    cut = pos > 0 or len(text) > lines
    return text[-lines:], cut
