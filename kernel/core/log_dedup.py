"""De-duplication of task output across workers, as a driver prints it (pure: no I/O).

A line that several workers print within ``window_s`` is printed once, when first seen;
the copies from other workers are counted, and when the window ends the line is printed
once more with ``[repeated Nx across cluster]``. Lines are compared with numbers and runs
of spaces ignored, so ``step 3 took 0.51s`` from ten workers counts as one line. Repeats
from the worker that printed the line first are printed as they come: one task's own
loop is not folded. Blank lines are never folded."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUMBER = re.compile(r"[-+]?\d[\d.,:eExX_a-fA-F]*")
_SPACE = re.compile(r"\s+")


def canonical(line: str) -> str:
    """``line`` with its numbers removed and its spaces collapsed."""
    return _SPACE.sub(" ", _NUMBER.sub("", line)).strip()


@dataclass
class _Seen:
    since: float
    prefix: str
    line: str
    is_err: bool
    sources: set[tuple[str, int]] = field(default_factory=set)
    count: int = 0


@dataclass(frozen=True)
class Line:
    """One line to print: ``prefix`` is ``(name pid=N[, ip=A])``."""

    prefix: str
    text: str
    is_err: bool

    def render(self) -> str:
        return f"{self.prefix} {self.text}"


class Deduplicator:
    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self.seen: dict[tuple[bool, str], _Seen] = {}

    def feed(self, prefix: str, source: tuple[str, int], lines: list[str], is_err: bool, now: float) -> list[Line]:
        """The lines of one worker (``source``: ip and pid) to print now."""
        out: list[Line] = []
        for text in lines:
            key = (is_err, canonical(text))
            if not key[1]:
                out.append(Line(prefix, text, is_err))
                continue
            seen = self.seen.get(key)
            if seen is None or now - seen.since > self.window_s:
                if seen is not None and seen.count:
                    out.append(_repeated(seen))
                self.seen[key] = _Seen(now, prefix, text, is_err, {source})
                out.append(Line(prefix, text, is_err))
            elif source in seen.sources and len(seen.sources) == 1:
                out.append(Line(prefix, text, is_err))  # the first worker's own repeats
            else:
                seen.sources.add(source)
                seen.count += 1
                seen.prefix, seen.line = prefix, text
        return out

    def flush(self, now: float, everything: bool = False) -> list[Line]:
        """The ``[repeated Nx across cluster]`` lines of windows that ended (all, with
        ``everything``: the driver is leaving)."""
        out: list[Line] = []
        for key, seen in list(self.seen.items()):
            if everything or now - seen.since > self.window_s:
                del self.seen[key]
                if seen.count:
                    out.append(_repeated(seen))
        return out


def _repeated(seen: _Seen) -> Line:
    return Line(seen.prefix, f"{seen.line} [repeated {seen.count}x across cluster]", seen.is_err)


__all__ = ["Deduplicator", "Line", "canonical"]
