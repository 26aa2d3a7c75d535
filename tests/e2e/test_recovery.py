"""labd killed and restarted: state comes back from the database and agents reconnect by themselves."""

from __future__ import annotations

import json
import signal

from tests.e2e.conftest import Labd, device_online, free_port, labctl, labctl_json, make_token, wait_until


def test_labd_sigkill_restart_agent_reconnects(tmp_path, start_agent) -> None:  # type: ignore[no-untyped-def]
    lab = Labd(tmp_path / "lab", port=free_port()).start()
    try:
        agent = start_agent(lab, "dev1")
        eng = make_token(lab, "engineer")
        first = labctl_json(lab, eng, "run", "submit", "--suite", "smoke", "--device", "dev1", "--wait")
        assert first["verdict"] == "pass"
        admin = lab.admin_token
        assert lab.stop(signal.SIGKILL) == -signal.SIGKILL
        lab.start()
        assert lab.admin_token == admin  # reused, not rewritten
        wait_until(lambda: device_online(lab, "dev1"), 60, "agent to reconnect after labd restart")
        assert "session to" in agent.log_text() and "reconnecting in" in agent.log_text()
        # Everything acknowledged before the kill is still there, and tokens still work.
        shown = labctl_json(lab, eng, "run", "show", first["id"])
        assert shown["verdict"] == "pass" and shown["tasks"][0]["metrics"]["latency_ms"]["n"] >= 300
        second = labctl(lab, eng, "run", "submit", "--suite", "smoke", "--device", "dev1", "--wait", "--json")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["verdict"] == "pass"
    finally:
        lab.stop()


def test_postgresql_backend(tmp_path, start_agent, pg_url) -> None:  # type: ignore[no-untyped-def]
    lab = Labd(tmp_path / "lab", db=pg_url).start()
    try:
        start_agent(lab, "pg-dev")
        eng = make_token(lab, "engineer")
        run = labctl_json(lab, eng, "run", "submit", "--suite", "smoke", "--device", "pg-dev", "--wait")
        assert run["status"] == "completed" and run["verdict"] == "pass"
        assert not (lab.data_dir / "lab.db").exists()
        out = tmp_path / "rep"
        assert labctl(lab, eng, "report", "pull", run["id"], "--out", str(out)).returncode == 0
        assert labctl(lab, None, "report", "verify", str(out)).returncode == 0
    finally:
        lab.stop()
