"""Which lines of task output a leaving driver waits for (pure core, no process or clock):
a worker numbers the lines it keeps, a result names the last one of its job, and the
driver's log stream counts a worker's lines as arrived once it saw that number."""

from __future__ import annotations

from types import SimpleNamespace

from microray.core import task_output
from microray.core.log_stream import LogStream
from microray.core.task_output import OutputCapture
from microray.protocol import gcs_pb2


def capture() -> tuple[OutputCapture, list]:
    calls: list = []
    cw = SimpleNamespace(call_in_loop=lambda fn, *args: calls.append(fn), gcs=None)
    return OutputCapture(cw, "10.0.0.2"), calls


def test_a_task_result_names_the_last_line_its_job_has_from_the_worker(monkeypatch) -> None:
    out, calls = capture()
    assert out.done() == 0  # nothing printed: nothing to wait for, nothing sent
    assert calls == []
    out.set_source("job1", "f")
    out.add(False, ["a", "b"])
    out.add(True, ["c"])
    assert [(list(r.lines), r.seq) for r in out._records] == [(["a", "b"], 2), (["c"], 3)]
    assert out.done() == 3
    assert out.flush in calls  # sent now, not after the delay
    out.set_source("job1", "g")  # another task of the job, which prints nothing
    assert out.done() == 3  # e.g. an actor's method after its printing constructor
    out.set_source("job2", "f")
    assert out.done() == 0  # job2's driver has no line of this worker to wait for
    monkeypatch.setattr(task_output, "MAX_BUFFERED", 5)
    out.add(False, ["d", "e", "f"])  # 3 lines wait already: 2 kept, 1 dropped
    assert out._records[-1].seq == 5 and out.done() == 5  # dropped lines are not numbered


def stream() -> LogStream:
    cw = SimpleNamespace(job_id="job1", raylet_address="10.0.0.1:6000")
    return LogStream(cw, dedup=False)  # not started: no thread, no GCS


def record(ip: str, pid: int, seq: int) -> gcs_pb2.LogRecord:
    return gcs_pb2.LogRecord(job_id="job1", name="f", pid=pid, ip=ip, lines=[f"line {seq}"], seq=seq)


def test_the_driver_waits_only_for_lines_a_result_named_until_it_saw_them(capsys) -> None:
    logs = stream()
    assert logs.unmet() == []  # no result named a line: stop does not wait
    logs.expect("10.0.0.2:7000", 42, 3)
    logs.expect("10.0.0.2:7000", 42, 2)  # an older result names less: still 3
    logs.take(gcs_pb2.LogBatch(records=[record("10.0.0.2", 42, 2), record("10.0.0.3", 42, 9)], last=2), 0)
    assert logs.unmet() == [("10.0.0.2", 42)]  # same pid on another machine does not count
    logs.take(gcs_pb2.LogBatch(records=[record("10.0.0.2", 42, 3)], last=3), 2)
    assert logs.unmet() == []
    printed = capsys.readouterr().out
    assert "(f pid=42, ip=10.0.0.2) line 3" in printed and printed.count("line 2") == 1
