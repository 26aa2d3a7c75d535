"""Token lifecycle against a real labd: create with limits, list without secrets, revoke (a connected agent whose
agent token is revoked is cut off within a heartbeat), expiry and use limits; lab-agent --token-file; the audit log
of it all (`labctl audit list`, admins only)."""

from __future__ import annotations

import subprocess
import time

from tests.e2e.conftest import AGENT_BIN, Labd, device_online, labctl, labctl_json, wait_until


def agent_with_token_file(lab: Labd, tmp_path, name: str, token: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    token_file = tmp_path / f"{name}.token"
    token_file.write_text(token + "\n")
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen([str(AGENT_BIN), "--lab", lab.addr, "--token-file", str(token_file), "--name", name,
                             "--class", "robot", "--work-dir", str(tmp_path / f"work-{name}")],
                            stdout=subprocess.DEVNULL, stderr=log)


def test_create_list_revoke(labd: Labd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    admin = labd.admin_token
    made = labctl_json(labd, admin, "token", "create", "--role", "agent", "--max-uses", "1", "--expires-in", "3600")
    assert made["token"] and made["id"] and made["id"] not in made["token"]
    agent = agent_with_token_file(labd, tmp_path, "tf1", made["token"])
    try:
        wait_until(lambda: device_online(labd, "tf1") or agent.poll() is not None, 60, "agent tf1 online")
        assert agent.poll() is None, (tmp_path / "tf1.log").read_text()

        listed = labctl_json(labd, admin, "token", "list")
        assert all(made["token"] not in str(t) for t in listed)
        mine = next(t for t in listed if t["id"] == made["id"])
        assert mine["role"] == "agent" and mine["uses"] == 1 and mine["max_uses"] == 1 and mine["revoked"] is None
        assert mine["expires"].endswith("Z") and mine["created"].endswith("Z")
        cred = next(t for t in listed if t["role"] == "device" and t["device"] == "tf1")
        assert cred["issued_by"] == made["id"]
        assert listed[0]["created"] >= listed[-1]["created"]  # newest first

        # The use limit: a second device cannot enrol with this token.
        second = agent_with_token_file(labd, tmp_path, "tf2", made["token"])
        assert second.wait(60) == 3
        assert "this token has been used 1 times, its limit" in (tmp_path / "tf2.log").read_text()

        p = labctl(labd, admin, "token", "revoke", made["id"])
        assert p.returncode == 0 and "revoked on" in p.stdout, p.stderr
        # The connected agent, whose credential was issued with the revoked token, is cut off within a heartbeat.
        assert agent.wait(20) == 3
        assert "this token was revoked on" in (tmp_path / "tf1.log").read_text()
        tokens = labctl_json(labd, admin, "token", "list")
        revoked = next(t for t in tokens if t["id"] == made["id"])
        assert revoked["revoked"].endswith("Z")

        # Every action above is in the audit log, newest first, with who did it.
        assert labctl(labd, admin, "devices", "drain", "tf1").returncode == 0
        admin_id = next(t["id"] for t in tokens if t["role"] == "admin")
        log = labctl_json(labd, admin, "audit", "list")
        assert all(set(e) == {"time", "actor", "role", "action", "target", "detail"} for e in log)
        assert all(e["time"].endswith("Z") for e in log) and log[0]["time"] >= log[-1]["time"]
        assert [(e["actor"], e["role"], e["action"], e["target"]) for e in log] == [
            (admin_id, "admin", "device.drain", "tf1"),
            (admin_id, "admin", "token.revoke", made["id"]),
            (made["id"], "agent", "device.enrol", "tf1"),
            (admin_id, "admin", "token.create", made["id"]),
            ("labd", "system", "token.create", admin_id)]  # the admin token, at labd's first start
        assert log[3]["detail"] == "role agent, expires in 3600 s, at most 1 enrolment"
        assert log[4]["detail"] == f"role admin, written to {labd.data_dir / 'admin.token'}"
        assert log[2]["detail"] == "class robot, region none"
        mine = labctl_json(labd, admin, "audit", "list", "--target", made["id"])
        assert [e["action"] for e in mine] == ["token.revoke", "token.create"]
        table = labctl(labd, admin, "audit", "list")
        assert table.returncode == 0 and "device.enrol" in table.stdout and "tf1" in table.stdout
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(30)


def test_expired_and_revoked_user_tokens_are_refused(labd: Labd) -> None:
    admin = labd.admin_token
    short = labctl_json(labd, admin, "token", "create", "--role", "engineer", "--expires-in", "1")
    time.sleep(1.5)
    p = labctl(labd, short["token"], "devices", "list")
    assert p.returncode == 3 and "this token expired on" in p.stderr

    eng = labctl_json(labd, admin, "token", "create", "--role", "engineer")
    assert labctl(labd, eng["token"], "devices", "list").returncode == 0
    p = labctl(labd, eng["token"], "audit", "list", "--json")  # admins only
    assert p.returncode == 3 and p.stdout == "" and len(p.stderr.strip().splitlines()) == 1
    assert "an engineer token may not read the audit log; it needs a token of role admin" in p.stderr
    assert labctl(labd, admin, "token", "revoke", eng["id"]).returncode == 0
    p = labctl(labd, eng["token"], "devices", "list")
    assert p.returncode == 3 and "this token was revoked on" in p.stderr and "ask an admin" in p.stderr
    # Admins only; bad values are usage errors.
    p = labctl(labd, eng["token"], "token", "list")
    assert p.returncode == 3
    assert labctl(labd, admin, "token", "create", "--role", "agent", "--max-uses", "0").returncode == 2
    p = labctl(labd, admin, "token", "revoke", "tok-nope")
    assert p.returncode != 0 and "no token with id" in p.stderr


def test_first_enrolment_needs_a_token(labd: Labd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = subprocess.run([str(AGENT_BIN), "--lab", labd.addr, "--name", "x", "--class", "robot",
                        "--work-dir", str(tmp_path / "w")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--token-file" in p.stderr
