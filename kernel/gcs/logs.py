"""Task output on its way to drivers: the GCS keeps the latest lines of each job.

Workers publish batches of ``LogRecord`` (``PublishLogs``); the driver of a job long-polls
the records after the last one it saw (``PollLogs``). Memory is bounded: each job keeps its
latest ``PER_JOB`` records and at most ``MAX_JOBS`` jobs are kept (the least recently
written goes first). Nothing is stored durably: output is for watching, the worker log
files keep it all."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque

from microray.protocol import gcs_pb2

PER_JOB = 2000
MAX_JOBS = 64
MAX_WAIT_S = 30.0


class _JobLog:
    def __init__(self) -> None:
        self.records: deque[tuple[int, gcs_pb2.LogRecord]] = deque(maxlen=PER_JOB)
        self.seq = 0
        self.changed = asyncio.Event()


class LogBroker:
    def __init__(self) -> None:
        self.jobs: OrderedDict[str, _JobLog] = OrderedDict()

    def _job(self, job_id: str) -> _JobLog:
        job = self.jobs.get(job_id)
        if job is None:
            job = self.jobs[job_id] = _JobLog()
            while len(self.jobs) > MAX_JOBS:
                _, old = self.jobs.popitem(last=False)
                old.changed.set()
        else:
            self.jobs.move_to_end(job_id)
        return job

    def publish(self, batch: gcs_pb2.LogBatch) -> None:
        touched = set()
        for record in batch.records:
            job = self._job(record.job_id)
            job.seq += 1
            job.records.append((job.seq, record))
            touched.add(record.job_id)
        for job_id in touched:
            woken = self.jobs.get(job_id)
            if woken is not None:  # wake its pollers; later polls wait on a fresh event
                woken.changed.set()
                woken.changed = asyncio.Event()

    async def poll(self, job_id: str, after: int, wait_s: float) -> gcs_pb2.LogBatch:
        """The records of ``job_id`` numbered after ``after``; waits up to ``wait_s`` for
        one when there is none yet. ``last`` of the reply is the number to poll after next
        (0 when the GCS knows nothing of the job, e.g. after a GCS restart)."""
        job = self.jobs.get(job_id) or self._job(job_id)
        if job.seq < after:  # the GCS restarted: start over
            after = 0
        if job.seq == after and wait_s > 0:
            try:
                await asyncio.wait_for(job.changed.wait(), min(wait_s, MAX_WAIT_S))
            except asyncio.TimeoutError:
                pass
            job = self.jobs.get(job_id, job)
        return gcs_pb2.LogBatch(records=[r for seq, r in job.records if seq > after], last=job.seq)
