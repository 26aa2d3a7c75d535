"""Issue 12 against a real labd: ArtifactService serves a device only what its running assignment needs, inside the
data zone; a corrupt file in the lab's own store ends the run in error as the lab's fault, never the device's; a
result batch after TaskFinished (or out of its window) is refused without closing the session, and the report pulled
right after the run verifies."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.credentials import public_raw
from evalsuites import builtin_suites_dir
from pilotlab import convert
from pilotlab import domain as d
from pilotlab.samples import batch_signing_bytes
from pilotlab.v1 import agent_pb2, artifact_pb2, artifact_pb2_grpc
from tests.e2e.conftest import Labd, labctl, labctl_json, make_suite, make_token
from tests.e2e.test_protocol import MODEL, RawDevice
from tests.labd.agent_results import assigned_of, batches, finish, results

LABELS = Path("evalsuites/smoke/data/digits_test.npz")


def _signed(key: Ed25519PrivateKey, b: d.ResultBatch) -> d.ResultBatch:
    arrays: dict[str, list[int] | list[float]] = {"index": b.index, "sample_index": b.sample_index, "t_ns": b.t_ns,
                                                  "value": b.value, "aux": b.aux, "fvalue": b.fvalue}
    return replace(b, signature=key.sign(batch_signing_bytes(b.attempt_id, b.seq, b.kind, arrays)))


def _get(stub: artifact_pb2_grpc.ArtifactServiceStub, sha: str, token: str) -> bytes:
    md = [("authorization", f"Bearer {token}")]
    return b"".join(c.data for c in stub.Get(artifact_pb2.GetArtifactRequest(sha256=sha), metadata=md, timeout=10))


def _denied(stub: artifact_pb2_grpc.ArtifactServiceStub, sha: str, token: str) -> str:
    with pytest.raises(grpc.RpcError) as e:
        _get(stub, sha, token)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()
    return e.value.details() or ""


def test_zones_at_the_artifact_door_and_a_late_batch_is_refused(tmp_path: Path) -> None:
    suites = make_suite(tmp_path / "suites", "zoned", regions=["eu-west"], classification="sensitive",
                        own_dataset=True)
    zoned_sha = hashlib.sha256((suites / "zoned" / "data" / "digits_test.npz").read_bytes()).hexdigest()
    lab = Labd(tmp_path / "lab", extra=["--suites", str(suites), "--suites", str(builtin_suites_dir())]).start()
    key = Ed25519PrivateKey.generate()
    dev = RawDevice(lab.addr, make_token(lab, "agent"), "us1", public_raw(key), region="us-east")
    try:
        eng = make_token(lab, "engineer")
        stub = artifact_pb2_grpc.ArtifactServiceStub(dev.channel)
        token = dev.md[0][1].removeprefix("Bearer ")

        # The scheduler refuses the zoned run; ArtifactService refuses its dataset to the device too.
        labctl(lab, eng, "run", "submit", "--suite", "zoned", "--device", "us1")
        why = _denied(stub, zoned_sha, token)
        assert "not needed by any task running on device us1" in why
        # A public artifact the device has no assignment for: refused as well.
        model_sha = hashlib.sha256(MODEL.read_bytes()).hexdigest()
        assert "not needed by any task running" in _denied(stub, model_sha, token)
        # Engineers, certifiers and admins never receive artifacts.
        for role_token in (eng, make_token(lab, "certifier"), lab.admin_token):
            assert "may not download artifacts" in _denied(stub, zoned_sha, role_token)

        # With a running assignment the device gets its model and dataset.
        run = labctl_json(lab, eng, "run", "submit", "--suite", "smoke", "--device", "us1")
        msg = dev.next()
        assert msg.HasField("assignment")
        a = convert.assignment_from_pb(msg.assignment)
        assert a.dataset is not None
        for ref in (a.model, a.dataset):
            assert hashlib.sha256(_get(stub, ref.sha256, token)).hexdigest() == ref.sha256

        # A correct agent's results, then its finish.
        assigned = assigned_of(a)
        with np.load(LABELS) as z:
            sets, obs = results(assigned, np.asarray(z["labels"], dtype=np.int64))
        sent = batches(a.attempt_id, sets, key)
        for b in sent:
            dev.send(agent_pb2.AgentMessage(results=convert.result_batch_to_pb(b)))
            assert dev.next().ack.seq == b.seq
        dev.send(agent_pb2.AgentMessage(finished=convert.finish_to_pb(finish(a.attempt_id, assigned, len(sent),
                                                                                    obs))))
        assert dev.next().ack.finished
        # Once finished, its artifacts are no longer served.
        assert "not needed by any task running" in _denied(stub, a.model.sha256, token)

        # A batch after TaskFinished, batches out of the seq window or with unequal arrays: logged, stored nowhere,
        # answered with an Ack that carries the error (so an agent drops them), and the session stays open.
        lates = [replace(sent[0], seq=seq) for seq in (len(sent), -1, 2**62)]
        lates.append(replace(sent[0], seq=len(sent) + 1, t_ns=sent[0].t_ns[:5]))  # arrays of unequal lengths
        errors = []
        for b in lates:
            late = _signed(key, b)
            dev.send(agent_pb2.AgentMessage(results=convert.result_batch_to_pb(late)))
            ack = dev.next().ack
            assert ack.seq == b.seq and not ack.finished
            errors.append(ack.error)
        assert "came after the attempt ended (completed)" in errors[0]
        assert "is outside 0..1000000" in errors[1] and "is outside 0..1000000" in errors[2]
        assert "arrays of unequal lengths" in errors[3]
        shown = labctl_json(lab, eng, "run", "show", run["id"])
        assert (shown["status"], shown["verdict"]) == ("completed", "pass")
        labctl_json(lab, eng, "run", "submit", "--suite", "smoke", "--device", "us1")
        nxt = dev.next()
        assert nxt.HasField("assignment"), nxt
    finally:
        dev.close()

    out = tmp_path / "report"
    pulled = labctl(lab, make_token(lab, "certifier"), "report", "pull", run["id"], "--out", str(out))
    assert pulled.returncode == 0, pulled.stderr
    [t] = json.loads((out / "report.json").read_text())["tasks"]
    verified = labctl(lab, None, "report", "verify", str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert t["metrics"]["latency_ms"]["n"] == len(sent[0].value)  # the late copy of batch 0 counts nowhere
    log = lab.log.read_text()
    lab.stop()
    assert "came after the attempt ended (completed)" in log
    assert "is outside 0..1000000" in log and "arrays of unequal lengths" in log
    assert "zone: refused" in log and zoned_sha in log and "us-east" in log
    assert "zone: allowed model" in log


def test_a_corrupt_file_in_the_labs_own_store_is_the_labs_fault_not_the_devices(labd: Labd, start_agent) -> None:  # type: ignore[no-untyped-def]
    start_agent(labd, "dev1")
    eng = make_token(labd, "engineer")
    model_sha = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    stored = labd.data_dir / "artifacts" / model_sha
    good = stored.read_bytes()
    stored.write_bytes(bytes([good[0] ^ 0xFF]) + good[1:])  # same size: only its digest tells
    got = hashlib.sha256(stored.read_bytes()).hexdigest()

    for _ in range(2):  # the second run finds the same bad copy: the same reason, not another log line
        p = labctl(labd, eng, "run", "submit", "--suite", "smoke", "--device", "dev1", "--wait", "--json")
        assert p.returncode == 3, p.stdout + p.stderr
        run = json.loads(p.stdout)
        assert run["status"] == "error"
        assert (f"the lab's stored artifact {model_sha} (model digits-logreg) is corrupt (expected sha256 "
                f"{model_sha}, got {got})") in run["reason"] and "restore" in run["reason"]
        [task] = labctl_json(labd, eng, "run", "show", run["id"])["tasks"]
        assert task["attempts"] == 1  # not retried
    [dev] = labctl_json(labd, labd.admin_token, "devices", "list")
    assert (dev["state"], dev["infra_errors"], dev["status"]) == ("active", 0, "online")
    log = labd.log.read_text()
    assert log.count(f"stored artifact {model_sha} (model digits-logreg) is corrupt") == 1, log
