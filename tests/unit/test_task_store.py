"""The GCS's task history (gcs/task_store.py): when a job ends, its unfinished tasks are
FAILED, the counts follow, and late events cannot bring a task back to life."""

from __future__ import annotations

from microray.gcs.task_store import TaskStore


def _submitted(task_id: str, job_id: str, owner: str = "driver", t: float = 1.0) -> dict:
    return {"task_id": task_id, "state": "PENDING_NODE_ASSIGNMENT", "time": t, "job_id": job_id, "owner": owner,
            "attempt": 0}


def test_a_finished_job_fails_its_unfinished_tasks_only() -> None:
    store = TaskStore(cap=100)
    store.add([_submitted("a", "01"), _submitted("b", "01"), _submitted("c", "01"), _submitted("d", "02"),
               _submitted("e", "01", owner="detached-actor-worker")])
    store.add([{"task_id": "a", "state": "SUBMITTED_TO_WORKER", "time": 2.0, "attempt": 0},
               {"task_id": "b", "state": "FINISHED", "time": 2.0}])
    marked = store.fail_unfinished("01", 5.0, "job 01 ended", keep_owners={"detached-actor-worker"})
    assert marked == 2
    states = {t: r["state"] for t, r in store.tasks.items()}
    assert states == {"a": "FAILED", "b": "FINISHED", "c": "FAILED", "d": "PENDING_NODE_ASSIGNMENT",
                      "e": "PENDING_NODE_ASSIGNMENT"}
    assert store.tasks["a"]["error_type"] == "WORKER_DIED" and store.tasks["a"]["error_message"] == "job 01 ended"
    assert store.tasks["a"]["end_time"] == 5.0 and store.tasks["a"]["events"][-1] == ("FAILED", 5.0)
    assert store.counts == {"PENDING_NODE_ASSIGNMENT": 2, "SUBMITTED_TO_WORKER": 0, "FINISHED": 1, "FAILED": 2}
    assert store.fail_unfinished("01", 6.0, "again", keep_owners={"detached-actor-worker"}) == 0


def test_late_events_after_the_job_ended() -> None:
    store = TaskStore(cap=100)
    store.add([_submitted("a", "01"), _submitted("b", "01")])
    store.fail_unfinished("01", 5.0, "job 01 ended")
    store.add([{"task_id": "a", "state": "SUBMITTED_TO_WORKER", "time": 4.0, "attempt": 0},  # stale: ignored
               {"task_id": "b", "state": "FINISHED", "time": 4.5}])  # it did finish: that wins
    assert store.tasks["a"]["state"] == "FAILED" and store.tasks["b"]["state"] == "FINISHED"
    assert store.counts["FAILED"] == 1 and store.counts["FINISHED"] == 1


def test_failed_tasks_of_an_ended_job_can_be_evicted() -> None:
    store = TaskStore(cap=2)
    store.add([_submitted("a", "01"), _submitted("b", "01")])
    store.fail_unfinished("01", 5.0, "job 01 ended")
    store.add([_submitted("c", "02")])
    assert list(store.tasks) == ["b", "c"] and store.dropped == 1


def test_a_task_starts_when_it_runs_not_when_it_was_queued_at_its_worker() -> None:
    store = TaskStore(cap=100)
    store.add([_submitted("queued", "01"), _submitted("at-once", "01")])
    store.add([{"task_id": "queued", "state": "SUBMITTED_TO_WORKER", "time": 2.0, "attempt": 0},
               {"task_id": "at-once", "state": "RUNNING", "time": 2.5, "attempt": 0}])
    assert store.tasks["queued"]["start_time"] == 2.0  # no RUNNING yet: queued counts as the start
    store.add([{"task_id": "queued", "state": "RUNNING", "time": 3.0, "attempt": 0}])
    assert store.tasks["queued"]["start_time"] == 3.0 and store.tasks["at-once"]["start_time"] == 2.5
    assert store.counts["RUNNING"] == 2 and store.counts["SUBMITTED_TO_WORKER"] == 0
