"""A worker's stdout and stderr on their way to the job's driver.

The worker's ``sys.stdout``/``sys.stderr`` are wrapped: every write still goes to the
worker's ``.out``/``.err`` file, and each complete line is also kept, labelled with the job
and the task or actor it was written under, and sent to the GCS in batches (``PublishLogs``)
a few tens of milliseconds after the first line of a burst, from the io loop, never from the
task; when a task ends, its lines are sent at once (``OutputCapture.done``). One publish
is in flight at a time, so the GCS holds a worker's lines in the order they were written.
At most ``MAX_BUFFERED`` lines wait; beyond that lines are counted and reported as
dropped. The files get a ``:job_id:``/``:task_name:`` marker line whenever the source
changes, so every line of a worker's file can be attributed.

Each kept line is numbered (per process); a record carries the number of its last line
(``LogRecord.seq``) and a task's result the number of the last line its job's tasks
printed in this process (``TaskResult.output_seq``). The driver that gets the result
knows which lines to wait for before it leaves (``core.log_stream``), so no result waits
for its lines to reach the GCS.

Output written by C code or child processes straight to the file descriptors reaches the
files but not the driver."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any, TextIO

import grpc
import structlog

from microray import proctitle
from microray.core.task_spec import ACTOR_CREATION, ACTOR_METHOD
from microray.protocol import gcs_pb2

log = structlog.get_logger(__name__)

MAX_BUFFERED = 10_000  # lines waiting to be sent
MAX_LINE = 16_384  # characters of one line sent to the driver
FLUSH_DELAY_S = 0.03
EXIT_DRAIN_S = 1.0  # a worker that exits waits this long at most for its output to be sent
PUBLISH_TIMEOUT_S = 10.0


class _Tee:
    """A text stream that writes through to ``raw`` and hands complete lines to ``sink``."""

    def __init__(self, raw: TextIO, capture: "OutputCapture", is_err: bool) -> None:
        self._raw = raw
        self._capture = capture
        self._is_err = is_err
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, s: str) -> int:
        n = self._raw.write(s)
        if s:
            with self._lock:
                text = self._partial + s
                if "\n" not in text:
                    self._partial = text[-MAX_LINE:]
                    return n
                *lines, self._partial = text.split("\n")
            self._capture.add(self._is_err, lines)
        return n

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, buffer, ...
        return getattr(self._raw, name)


class OutputCapture:
    """(worker) Labels and ships the lines its tasks print; see the module doc."""

    def __init__(self, cw: Any, ip: str) -> None:
        self.cw = cw
        self.ip = ip
        self.pid = os.getpid()
        self.job_id = ""
        self.name = ""
        self.actor_class: str | None = None
        self.actor_label: str | None = None  # repr() of the actor, when its class defines __repr__
        self._title: str | None = None  # the name the process title shows (None: idle or an actor call)
        self._lock = threading.Lock()
        self._records: list[gcs_pb2.LogRecord] = []
        self._count = 0  # lines waiting to be sent
        self._seq = 0  # lines kept for sending since the process started
        self._job_seq = 0  # the number of the last line kept for the current job (0: none yet)
        self._dropped = 0
        self._scheduled = False
        self._sending: asyncio.Task | None = None  # the publish in flight
        self._gcs_ok = True  # the last publish was answered: drivers may wait for the lines
        self._raw_out: TextIO = sys.stdout
        self._raw_err: TextIO = sys.stderr

    def install(self) -> None:
        self._raw_out, self._raw_err = sys.stdout, sys.stderr
        sys.stdout = _Tee(self._raw_out, self, False)  # type: ignore[assignment]
        sys.stderr = _Tee(self._raw_err, self, True)  # type: ignore[assignment]

    def set_source(self, job_id: str, name: str) -> None:
        """Lines written from now on belong to ``name`` (a task's function or an actor's
        class) of job ``job_id``. Cheap when nothing changed."""
        if job_id == self.job_id and name == self.name:
            return
        marker = ""
        if job_id != self.job_id:
            marker += f":job_id:{job_id}\n"
            self._job_seq = 0
        marker += f":task_name:{name}\n"
        self.job_id, self.name = job_id, name
        for raw in (self._raw_out, self._raw_err):
            try:
                raw.write(marker)
            except (OSError, ValueError):
                pass

    def enter(self, spec: Any, main_thread: bool) -> None:
        """A task or actor call starts: label its lines, and (on the main thread) show it
        in the process title: ``microray::f``, ``microray::Counter.inc``."""
        name = spec.function_name
        if spec.kind == ACTOR_METHOD:  # an actor's lines stay with the job that created it
            self.set_source(self.job_id, self.actor_label or name)
            if main_thread:
                self._title = None
                proctitle.set_worker(f"{name}.{spec.method_name}")
            return
        if spec.kind == ACTOR_CREATION:
            self.actor_class = name
        job_id = spec.job_id or self.job_id
        if job_id != self.job_id or name != self.name:  # per task: no call when unchanged
            self.set_source(job_id, name)
        if main_thread and name != self._title:
            self._title = name
            proctitle.set_worker(name)

    def actor_created(self, actor: Any) -> None:
        """As in Ray, the lines of an actor whose class defines ``__repr__`` are labelled
        with its ``repr()`` (``(MyActor(index=2) pid=N)``), taken once it is constructed."""
        if type(actor).__repr__ is object.__repr__:
            return
        try:
            self.actor_label = repr(actor)
        except Exception as exc:  # noqa: BLE001 -- a broken __repr__ leaves the class name
            log.warning("actor_repr_failed", error=repr(exc))

    def idle(self) -> None:
        """Nothing runs: the title says ``microray::IDLE`` (an actor's: its class)."""
        self._title = None
        proctitle.set_worker(self.actor_class)

    def done(self) -> int:
        """(the task's thread) A task ended: what it printed is sent now, not after the
        delay. Returns what its result carries as ``output_seq``: the number of the last
        line kept for the current job in this process, which the driver waits to have
        seen before it leaves; 0 when there is none, or while the GCS does not take lines
        (a restart: a driver leaving then does not wait for them). Never waits."""
        if self._records:
            try:
                self.cw.call_in_loop(self.flush)
            except RuntimeError:  # the loop is closed: the process is ending
                return 0
        return self._job_seq if self._gcs_ok else 0

    def add(self, is_err: bool, lines: list[str]) -> None:
        """(any thread) Keep ``lines`` for the driver of the current job."""
        if not self.job_id:
            return
        lines = [line[:MAX_LINE] for line in lines]
        with self._lock:
            room = MAX_BUFFERED - self._count
            if room < len(lines):
                self._dropped += len(lines) - max(room, 0)
                lines = lines[:max(room, 0)]
            if lines:
                self._seq += len(lines)
                self._job_seq = self._seq
                last = self._records[-1] if self._records else None
                if (last is not None and last.is_err == is_err and last.job_id == self.job_id
                        and last.name == self.name):
                    last.lines.extend(lines)
                    last.seq = self._seq
                else:
                    self._records.append(gcs_pb2.LogRecord(job_id=self.job_id, name=self.name, pid=self.pid,
                                                           ip=self.ip, is_err=is_err, lines=lines, seq=self._seq))
                self._count += len(lines)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.cw.call_in_loop(self._schedule)
        except RuntimeError:  # the loop is closed: the process is ending
            pass

    def _schedule(self) -> None:
        asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self.flush)

    def flush(self) -> None:
        """(io loop) Send what waits, or, while a publish is in flight, once it is answered
        (one at a time: a driver that saw a worker's line ``seq`` has all its lines before)."""
        if self._sending is not None:
            return
        with self._lock:
            records, self._records = self._records, []
            dropped, self._dropped = self._dropped, 0
            self._count = 0
            self._scheduled = False
        if dropped and records:
            last = records[-1]
            records.append(gcs_pb2.LogRecord(
                job_id=last.job_id, name=last.name, pid=self.pid, ip=self.ip, is_err=True, seq=last.seq,
                lines=[f"[{dropped} lines of output were dropped: more than {MAX_BUFFERED} waited to be sent]"]))
        if not records:
            return
        if self.cw.gcs is None:
            self._gcs_ok = False
            return
        self._sending = asyncio.get_running_loop().create_task(self._publish(records))

    async def _publish(self, records: list[gcs_pb2.LogRecord]) -> None:
        try:
            await self.cw.gcs.PublishLogs(gcs_pb2.LogBatch(records=records), timeout=PUBLISH_TIMEOUT_S)
            self._gcs_ok = True
        except grpc.aio.AioRpcError as exc:  # the lines stay in the worker's files
            self._gcs_ok = False
            log.debug("publish_logs_failed", error=exc.code().name)
        finally:
            self._sending = None
        if self._records:  # written while this one was in flight
            self.flush()

    def exit_soon(self, code: int, delay: float = 0.0) -> None:
        """(any thread) End the process with ``code`` after ``delay`` seconds, once what its
        tasks printed has been sent (waiting ``EXIT_DRAIN_S`` at most)."""
        self.cw.call_in_loop(lambda: asyncio.get_running_loop().create_task(self._exit(code, delay)))

    async def _exit(self, code: int, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            self.flush()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + EXIT_DRAIN_S
            while self._sending is not None and (left := deadline - loop.time()) > 0:
                await asyncio.wait({self._sending}, timeout=left)  # it sends what waits next
        finally:
            os._exit(code)


__all__ = ["OutputCapture"]
