"""The submit and claim paths with their per-suite and per-artifact memos (bench/submit_claim_cost.py): a suite's
plan is computed once and shared, a stored spec encoded and decoded once, an artifact's record read once; what is
stored, returned and decided stays what it was. Store tests run against every backend."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from labd.handlers import runs as h
from labd.scheduler.dispatcher import assignment
from labd.scheduler.plan import load_suite, task_spec
from labd.state.base import Store
from labd.stored_artifacts import task_fault
from tests.labd.conftest import ENGINEER, Parts
from tests.labd.test_store_contract import LEASE, NOW, enrol, new_run


def test_claim_follows_the_device_state_in_one_statement(store: Store) -> None:
    active, draining, quarantined = enrol(store, "dev-a"), enrol(store, "dev-d"), enrol(store, "dev-q")
    store.set_device_state(draining.id, "draining")
    store.set_device_state(quarantined.id, "quarantined")
    new_run(store, [("plain", active), ("plain", draining), ("plain", quarantined)], priority=5)
    health = new_run(store, [], run_id="run-health-base")
    hrun = replace(health, id="run-health", kind="health",
                   tasks=[replace(new_run(store, [("check", quarantined)]).tasks[0], id="run-health-t0",
                                  run_id="run-health")])
    store.create_run(hrun)
    assert store.claim_next_task("no-such-device", NOW, LEASE) is None
    assert store.claim_next_task(draining.id, NOW, LEASE) is None
    got = store.claim_next_task(quarantined.id, NOW, LEASE)  # the health check, not the higher-priority plain task
    assert got is not None and got[0].run_id == "run-health" and got[0].device_name == "dev-q"
    assert got[1].device_name == "dev-q" and got[0] == store.get_task(got[0].id)
    assert store.claim_next_task(quarantined.id, NOW, LEASE) is None
    task, att = store.claim_next_task(active.id, NOW, LEASE) or (None, None)
    assert task is not None and att is not None
    assert task == store.get_task(task.id) and task.device_name == "dev-a" and task.attempts == 1
    assert replace(store.get_attempt(att.id), device_name="dev-a") == att


def test_create_run_names_the_devices_of_tasks_that_come_without_a_name(store: Store) -> None:
    a = enrol(store, "dev-a")
    base = new_run(store, [("t0", a)])
    rid = "run-unnamed"
    run = replace(base, id=rid, tasks=[replace(t, id=f"{rid}-t0", run_id=rid, device_name="") for t in base.tasks])
    made = store.create_run(run)
    assert made == store.get_run(rid) and made.tasks[0].device_name == "dev-a"


def test_submissions_share_the_suites_plan_and_store_the_same_specs(parts: Parts) -> None:
    a, b = parts.enrol("r1"), parts.enrol("r2")
    suite = load_suite(parts.store, parts.suite.id)
    assert load_suite(parts.store, parts.suite.id) is suite  # parsed once per registered content
    runs = [h.submit_run(parts.store, parts.sessions, parts.clock, ENGINEER,
                         h.SubmitOptions(suite_id=parts.suite.id, device=dev.name)) for dev in (a, b, a)]
    for run in runs:
        assert run == parts.store.get_run(run.id)
        assert [t.spec for t in run.tasks] == [task_spec(parts.suite, t.name) for t in parts.suite.tasks]
    assert runs[0].tasks[0].spec is runs[1].tasks[0].spec  # one plan per suite
    entries = [e for e in parts.store.list_audit() if e.action == "run.submit"]
    assert sorted(e.target for e in entries) == sorted(r.id for r in runs)
    claimed = parts.claim(a)
    assert claimed[0] == parts.store.get_task(claimed[0].id)
    sent = assignment(*claimed)
    spec = claimed[0].spec
    assert spec is not None and sent.settings == spec.settings.to_dict()
    assert json.dumps(spec.to_json(), sort_keys=True) == json.dumps(runs[0].tasks[0].spec.to_json(), sort_keys=True)


def test_an_artifact_record_is_read_again_when_its_remembered_file_is_not_intact(parts: Parts,
                                                                                 tmp_path: Path) -> None:
    dev = parts.enrol("r1")
    parts.queue(dev)
    task, _ = parts.claim(dev)
    assert task.spec is not None and task_fault(parts.store, task.spec) == ""  # the records now remembered
    model = parts.store.get_artifact(task.spec.model.sha256)
    moved = tmp_path / "moved" / model.sha256
    moved.parent.mkdir()
    shutil.move(model.path, moved)  # the artifact re-registered elsewhere: its old file is gone
    parts.store.put_artifact(replace(model, path=str(moved)))
    assert task_fault(parts.store, task.spec) == ""
    moved.write_bytes(b"corrupt")
    why = task_fault(parts.store, task.spec)
    assert "is corrupt" in why and model.sha256 in why
    moved.unlink()
    assert "is missing" in task_fault(parts.store, task.spec, force=True)
