"""(driver) Print the output of the job's tasks and actors, as Ray does:
``(f pid=8145) hello``, with ``, ip=A`` for a worker on another node, stdout lines on
the driver's stdout and stderr lines on its stderr, repeated lines de-duplicated across
workers (``core.log_dedup``). A thread long-polls the GCS (``PollLogs``) for the job's
lines; a submitted job's driver output is the job's log, so the lines reach it too.

A driver that leaves right after it got results still prints what their tasks printed:
a result names the last line its worker had printed for the job (``output_seq``, see
``core.task_output``), the submitter notes it here (``expect``), and ``stop`` polls until
it has seen every such line (``STOP_EXPECT_S`` at most). A worker publishes its lines in
order, one batch at a time, so having seen a worker's line ``seq`` means having all its
lines before. When no result named a line not yet seen, ``stop`` does not wait."""

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
STOP_EXPECT_S = 1.0  # at shutdown: how long to wait at most for lines results followed
STOP_POLL_S = 0.05  # one poll of that wait (the thread's last poll may take what arrives)
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
        # (ip, pid) of a worker -> the number of its last line a result followed / seen here
        self._expected: dict[tuple[str, int], int] = {}
        self._seen: dict[tuple[str, int], int] = {}
        self.thread = threading.Thread(target=self._run, name="microray-log-stream", daemon=True)

    def start(self) -> "LogStream":
        self.thread.start()
        return self

    def expect(self, address: str, pid: int, seq: int) -> None:
        """(io loop) A result from the worker at ``address`` (``ip:port``), process ``pid``,
        followed its line ``seq`` (``TaskResult.output_seq``): ``stop`` prints up to it."""
        key = (address.rsplit(":", 1)[0], pid)
        if seq > self._expected.get(key, 0):
            self._expected[key] = seq

    def unmet(self) -> list[tuple[str, int]]:
        """The workers whose lines a result followed and this stream has not seen yet."""
        seen = self._seen
        return [key for key, seq in list(self._expected.items()) if seen.get(key, 0) < seq]

    def stop(self) -> None:
        """Print what the GCS holds, waiting (``STOP_EXPECT_S`` at most) for the lines that
        results followed, then the pending repeat counts; stop polling."""
        self._stop.set()
        try:
            self._poll(0.0)
            deadline = time.monotonic() + STOP_EXPECT_S
            while self.unmet() and (left := deadline - time.monotonic()) > 0:
                self._poll(min(left, STOP_POLL_S))  # returns as soon as lines arrive
        except Exception:  # noqa: BLE001 -- leaving: what could not be fetched is in the worker logs
            pass
        unmet = self.unmet()
        if unmet:
            log.debug("task_output_not_seen", workers=unmet)
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
        self.take(reply, after)

    def take(self, reply: gcs_pb2.LogBatch, after: int) -> None:
        """Print the records of ``reply`` (a poll after ``after``) not printed yet."""
        with self._poll_lock:  # stop()'s last poll may overlap the thread's: each record once
            records = list(reply.records)
            if reply.last < after:  # the GCS restarted and numbers from 0 again
                self.after = 0
            first = reply.last - len(records) + 1  # the number of records[0]
            records = records[max(0, self.after + 1 - first):]
            self.after = max(self.after, reply.last)
            seen = self._seen
            for record in records:
                key = (record.ip, record.pid)
                if record.seq > seen.get(key, 0):
                    seen[key] = record.seq
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
