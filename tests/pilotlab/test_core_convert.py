"""Domain ↔ protobuf round trips through pilotlab.convert."""

from __future__ import annotations

import pytest

from pilotlab import convert as cv
from pilotlab import domain as d
from pilotlab.tasks import ArtifactRef, TaskSpec, requested
from pilotlab.v1 import agent_pb2, common_pb2

SENSORS = [d.EnergySensor("rapl", "intel-rapl:0 (package-0)", "/sys/class/powercap/intel-rapl:0/energy_uj", True),
           d.EnergySensor("scpi", "scpi://127.0.0.1:5025", "scpi://127.0.0.1:5025", False)]


def caps() -> d.Capabilities:
    return d.Capabilities(os="Linux", os_release="6.8.0", arch="aarch64", cpu_model="Cortex-A78AE", cpu_cores=12,
                          memory_bytes=64 * 2**30 + 5, onnxruntime_version="1.20.1",
                          providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
                          energy_sensors=list(SENSORS), agent_version="0.1.0", hostname="orin-1", slots=2,
                          python_version="3.11.9", cpu_flags=["asimd", "asimddp", "fp", "i8mm", "sve"])


def test_capabilities_round_trip() -> None:
    c = caps()
    back = cv.capabilities_from_pb(cv.capabilities_to_pb(c))
    assert back == c
    assert back.energy_sensors[1].readable is False
    assert back.to_dict() == c.to_dict()


def test_capabilities_zero_slots_read_as_one() -> None:
    assert cv.capabilities_from_pb(common_pb2.Capabilities()).slots == 1
    assert cv.capabilities_from_pb(common_pb2.Capabilities()).energy_sensors == []


def test_capabilities_from_an_older_agent_have_no_cpu_flags() -> None:
    assert cv.capabilities_from_pb(common_pb2.Capabilities()).cpu_flags == []
    old = {k: v for k, v in caps().to_dict().items() if k != "cpu_flags"}
    assert d.Capabilities.from_dict(old).cpu_flags == []


def test_capabilities_dict_round_trip() -> None:
    c = caps()
    assert d.Capabilities.from_dict({**c.to_dict(), "future_field": 1}) == c


def test_device_round_trip_drops_public_key() -> None:
    dev = d.Device(id="dev-1", name="orin-1", device_class="accelerator-board", region="eu",
                   tags={"site": "lab2", "rack": "3"}, capabilities=caps(), status="online",
                   last_seen_ms=1_700_000_000_123, public_key=b"\x01\x02")
    back = cv.device_from_pb(cv.device_to_pb(dev))
    assert back.public_key == b""
    back.public_key = dev.public_key
    assert back == dev


def attempt(n: int, task_id: str, status: d.Status, outcome: str = "", reason: str = "") -> d.Attempt:
    return d.Attempt(id=f"att-{task_id}-{n}", task_id=task_id, number=n, device_id="", device_name="orin-1",
                     status=status, outcome=outcome, reason=reason, started_ms=1000 * n, finished_ms=1000 * n + 500)


def make_run() -> d.Run:
    t1 = d.Task(id="task-a", run_id="run-1", name="classify", device_id="", device_name="orin-1",
                status=d.Status.COMPLETED, spec=None, verdict=d.Verdict.PASS, attempts=2,
                metrics={"latency_ms": {"p50": 1.5, "n": 300}, "accuracy": {"ci95": [0.9, 0.99]}},
                reason="", phase="done", progress=1.0,
                history=[attempt(1, "task-a", d.Status.ERROR, "error", "agent lost"),
                         attempt(2, "task-a", d.Status.COMPLETED, "ok")])
    t2 = d.Task(id="task-b", run_id="run-1", name="latency", device_id="", device_name="pi-4",
                status=d.Status.RUNNING, spec=None, verdict=None, attempts=1, phase="measure", progress=0.375,
                history=[attempt(1, "task-b", d.Status.RUNNING)])
    return d.Run(id="run-1", suite_id="smoke", suite_version="1.0.0", suite_digest="sha256:" + "ab" * 32,
                 status=d.Status.RUNNING, priority=5, verdict=None, submitted_ms=1_700_000_000_000,
                 finished_ms=0, reason="", submitted_by="alice", tasks=[t1, t2])


def test_run_round_trip_with_tasks_and_history() -> None:
    r = make_run()
    back = cv.run_from_pb(cv.run_to_pb(r))
    assert back == r
    assert back.tasks[0].history[0].reason == "agent lost"
    assert back.tasks[0].history[1].task_id == "task-a"


@pytest.mark.parametrize("status", list(d.Status))
@pytest.mark.parametrize("verdict", [None, d.Verdict.PASS, d.Verdict.FAIL])
def test_run_status_and_verdict_all_values(status: d.Status, verdict: d.Verdict | None) -> None:
    r = d.Run(id="r", suite_id="s", suite_version="1", suite_digest="x", status=status, verdict=verdict)
    back = cv.run_from_pb(cv.run_to_pb(r))
    assert back.status is status
    assert back.verdict is verdict


def test_task_round_trip_loses_spec_and_device_id() -> None:
    t = make_run().tasks[0]
    t.spec = TaskSpec(name="t", scenario="single-stream", model=ArtifactRef("m", "model", "ab" * 32, 1),
                      dataset=None, settings=requested("single-stream", {}))
    t.device_id = "dev-1"
    back = cv.task_from_pb(cv.task_to_pb(t), run_id="run-1")
    assert back.spec is None and back.device_id == ""  # the wire view of a task carries no spec
    assert back.metrics == t.metrics


def test_result_batch_round_trip_int64() -> None:
    b = d.ResultBatch(attempt_id="att-1", seq=7, kind="latency", index=[0, 1, 2], sample_index=[5, 9, 0],
                      t_ns=[2**62 + 1, 2**62 + 1000, 2**63 - 1], value=[123, 2**40, 1], signature=b"\x00sig\xff")
    back = cv.result_batch_from_pb(cv.result_batch_to_pb(b))
    assert back == b
    assert isinstance(back.t_ns, list)


@pytest.mark.parametrize("outcome", list(d.Outcome))
def test_attempt_finish_round_trip(outcome: d.Outcome) -> None:
    f = d.AttemptFinish(attempt_id="att-1", outcome=outcome, reason="why", batches=12,
                        effective_settings={"scenario": "single-stream", "min_query_count": 300},
                        environment={"cpu_governor": "performance", "thermal_c": {"cpu": 41.5}},
                        execution_provider="CUDAExecutionProvider",
                        providers_used=["CUDAExecutionProvider", "CPUExecutionProvider"],
                        phases={"warmup_ms": 12, "measure_ms": 510})
    m = cv.finish_to_pb(f)
    assert m.effective_settings_json == '{"min_query_count":300,"scenario":"single-stream"}'  # canonical JSON
    back = cv.finish_from_pb(m)
    assert back == f
    assert back.outcome is outcome


def test_attempt_finish_empty_json_fields() -> None:
    f = d.AttemptFinish(attempt_id="att-2", outcome=d.Outcome.REFUSED, reason="no CUDA")
    m = cv.finish_to_pb(f)
    assert m.environment_json == ""
    assert cv.finish_from_pb(m) == f


def test_unknown_outcome_reads_as_error() -> None:
    assert cv.finish_from_pb(agent_pb2.TaskFinished(attempt_id="a")).outcome is d.Outcome.ERROR


MODEL = d.ArtifactRecord(sha256="a" * 64, size=1234, name="mlp.onnx", kind="model", path="")
DATASET = d.ArtifactRecord(sha256="b" * 64, size=2**33, name="digits.npz", kind="dataset", path="")


@pytest.mark.parametrize(("dataset", "accuracy"), [(DATASET, {"name": "top1", "labels": "y"}), (None, None)])
def test_assignment_round_trip(dataset: d.ArtifactRecord | None, accuracy: dict | None) -> None:
    a = d.Assignment(attempt_id="att-1", task_id="task-a", run_id="run-1", task_name="classify", model=MODEL,
                     dataset=dataset, scenario="single-stream", settings={"min_query_count": 300, "seed": 1},
                     execution_provider="CPUExecutionProvider", accuracy=accuracy)
    m = cv.assignment_to_pb(a)
    assert m.HasField("dataset")  # always present on the wire; an empty ref means none
    back = cv.assignment_from_pb(m)
    assert back == a
    assert back.dataset is None if dataset is None else back.dataset == dataset


def test_assignment_drops_local_artifact_path() -> None:
    model = d.ArtifactRecord(sha256="c" * 64, size=1, name="m.onnx", kind="model", path="/var/lib/labd/m.onnx")
    a = d.Assignment(attempt_id="a", task_id="t", run_id="r", task_name="n", model=model, dataset=None,
                     scenario="single-stream", settings={}, execution_provider="", accuracy=None)
    assert cv.assignment_from_pb(cv.assignment_to_pb(a)).model.path == ""


def test_assignment_without_model_is_invalid() -> None:
    with pytest.raises(d.Invalid, match="att-9"):
        cv.assignment_from_pb(agent_pb2.Assignment(attempt_id="att-9"))
