"""(driver) Print the output of the job's tasks and actors, as Ray does:
``(f pid=8145) hello``, with ``, ip=A`` for a worker on another node, stdout lines on
the driver's stdout and stderr lines on its stderr, repeated lines de-duplicated across
workers (``core.log_dedup``). A thread long-polls the GCS (``PollLogs``) for the job's
lines; a submitted job's driver output is the job's log, so the lines reach it too."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import structlog

from microray.core.log_dedup import Deduplicator, Line
from microray.protocol import gcs_pb2

log = structlog.get_logger(__name__)

POLL_WAIT_S = 1.0
# at shutdown the last poll takes what the GCS holds, without waiting: a task's lines are
# there before its result leaves its worker (core.task_output, OutputCapture.done)
STOP_WAIT_S = 0.0
DEDUP_TIP = ("(microray folds identical lines of task output from several workers into one "
             "'[repeated Nx across cluster]' line; set MICRORAY_DEDUP_LOGS=0 to print every line)")


class LogStream:
    def __init__(self, cw: Any, dedup: bool) -> None:
        self.cw = cw
        self.job_id = cw.job_id
        self.ip = cw.raylet_address.rsplit(":", 1)[0]
        self.dedup = Deduplicator() if dedup else None
        self.after = 0
        self._tip_shown = False
        self._stop = threading.Event()
        self._print_lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="microray-log-stream", daemon=True)

    def start(self) -> "LogStream":
        self.thread.start()
        return self

    def stop(self) -> None:
        """Print what the GCS already holds, then the pending repeat counts; stop polling."""
        self._stop.set()
        try:
            self._poll(STOP_WAIT_S)
        except Exception:  # noqa: BLE001 -- leaving: what could not be fetched is in the worker logs
            pass
        if self.dedup is not None:
            self._print(self.dedup.flush(time.monotonic(), everything=True))

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._poll(POLL_WAIT_S)
                failures = 0
            except Exception as exc:  # noqa: BLE001 -- a GCS restart or shutdown: try again
                if self._stop.is_set():
                    return
                failures += 1
                if failures == 1:
                    log.debug("log_poll_failed", error=repr(exc))
                self._stop.wait(min(0.1 * failures, 2.0))
            if self.dedup is not None:
                self._print(self.dedup.flush(time.monotonic()))

    def _poll(self, wait_s: float) -> None:
        after = self.after
        # bounded wait on the result: a poll in flight when the driver's io loop stops
        # must not hold this thread forever
        request = gcs_pb2.PollLogsRequest(job_id=self.job_id, after=after, wait_s=wait_s)
        reply = asyncio.run_coroutine_threadsafe(
            self._call(request, wait_s + 10), self.cw.loop).result(wait_s + 11)
        with self._poll_lock:  # stop()'s last poll may overlap the thread's: each record once
            records = list(reply.records)
            if reply.last < after:  # the GCS restarted and numbers from 0 again
                self.after = 0
            first = reply.last - len(records) + 1  # the number of records[0]
            records = records[max(0, self.after + 1 - first):]
            self.after = max(self.after, reply.last)
        out: list[Line] = []
        now = time.monotonic()
        for record in records:
            prefix = f"({record.name} pid={record.pid}" + (f", ip={record.ip})" if record.ip != self.ip else ")")
            lines = list(record.lines)
            if self.dedup is None:
                out.extend(Line(prefix, text, record.is_err) for text in lines)
            else:
                out.extend(self.dedup.feed(prefix, (record.ip, record.pid), lines, record.is_err, now))
        self._print(out)

    async def _call(self, request: gcs_pb2.PollLogsRequest, timeout: float) -> gcs_pb2.LogBatch:
        return await self.cw.gcs.PollLogs(request, timeout=timeout)

    def _print(self, lines: list[Line]) -> None:
        if not lines:
            return
        with self._print_lock:
            if self.dedup is not None and not self._tip_shown and any("[repeated " in x.text for x in lines):
                self._tip_shown = True
                lines = [*lines, Line("", DEDUP_TIP, True)]
            for stream, is_err in ((sys.stdout, False), (sys.stderr, True)):
                text = "".join(x.render().lstrip() + "\n" for x in lines if x.is_err == is_err)
                if text:
                    try:
                        stream.write(text)
                        stream.flush()
                    except (OSError, ValueError):  # closed at exit
                        pass


__all__ = ["LogStream"]
