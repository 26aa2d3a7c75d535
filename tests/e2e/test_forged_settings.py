"""A modified agent cannot grade itself: a device with a real enrolled key runs the smoke task but reports settings
of its own and sends no audit. The lab grades the attempt invalid and not pass, and the pulled report verifies
(the lab's record is consistent) while naming why the measurement does not count."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.credentials import public_raw
from pilotlab import convert
from pilotlab.v1 import agent_pb2
from tests.e2e.conftest import labctl, labctl_json, make_token
from tests.e2e.test_protocol import RawDevice
from tests.labd.agent_results import assigned_of, batches, finish, results

LABELS = Path("evalsuites/smoke/data/digits_test.npz")
FORGED = {"min_query_count": 300}


def test_forged_settings_and_a_skipped_audit_are_graded_invalid(labd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = Ed25519PrivateKey.generate()
    dev = RawDevice(labd.addr, make_token(labd, "agent"), "forger", public_raw(key))
    try:
        eng = make_token(labd, "engineer")
        run = labctl_json(labd, eng, "run", "submit", "--suite", "smoke", "--device", "forger")
        msg = dev.next()
        assert msg.HasField("assignment")
        a = convert.assignment_from_pb(msg.assignment)
        assigned = assigned_of(a)
        with np.load(LABELS) as z:
            sets, obs = results(assigned, np.asarray(z["labels"], dtype=np.int64))
        for kind in ("audit-same", "audit-varied", "perf-prediction"):
            del sets[kind]
        for b in batches(a.attempt_id, sets, key):
            dev.send(agent_pb2.AgentMessage(results=convert.result_batch_to_pb(b)))
            assert dev.next().ack.seq == b.seq
        forged = replace(finish(a.attempt_id, assigned, len(sets), obs), effective_settings=FORGED)
        dev.send(agent_pb2.AgentMessage(finished=convert.finish_to_pb(forged)))
        assert dev.next().ack.finished
    finally:
        dev.close()

    shown = labctl_json(labd, eng, "run", "show", run["id"])
    assert (shown["status"], shown["verdict"]) == ("completed", "fail")

    out = tmp_path / "report"
    pulled = labctl(labd, make_token(labd, "certifier"), "report", "pull", run["id"], "--out", str(out))
    assert pulled.returncode == 0, pulled.stderr
    [t] = json.loads((out / "report.json").read_text())["tasks"]
    assert t["verdict"] == "fail" and t["settings"] == assigned.settings and t["device_settings"] == FORGED
    validity = t["metrics"]["validity"]
    assert validity["valid"] is False
    assert validity["reasons"][0].startswith("settings: the device reported no audit where the lab assigned true")
    assert "missing result set 'audit-same': the lab assigned the TEST04 audit" in validity["reasons"]
    assert t["criteria"][0]["metric"] == "validity" and t["criteria"][0]["verdict"] == "fail"

    verified = labctl(labd, None, "report", "verify", str(out))
    print("run show:", shown["status"], shown["verdict"], "\nreport verify:", verified.stdout, verified.stderr)  # -s
    assert verified.returncode == 0, verified.stderr
    assert "intact" in verified.stdout
    assert "task digits-single-stream: the lab graded the measurement invalid: settings: the device" in verified.stderr
    assert "missing result set 'audit-same'" in verified.stderr
