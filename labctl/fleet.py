"""`labctl devices`, `labctl suites`, `labctl token` and `labctl lab`: fleet, catalogue and admin commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from labctl import views
from labctl.client import EXIT_USAGE, Ctx
from labctl.lazy import lazy
from labctl.output import console, emit_json, table

if TYPE_CHECKING:
    from pilotlab import convert
    from pilotlab.v1 import lab_pb2
else:
    convert, lab_pb2 = lazy("pilotlab.convert"), lazy("pilotlab.v1.lab_pb2")

devices = typer.Typer(help="The enrolled devices.", no_args_is_help=True)
suites = typer.Typer(help="Standard evaluation suites.", no_args_is_help=True)
token = typer.Typer(help="Tokens (admins).", no_args_is_help=True)
lab = typer.Typer(help="The lab's identity.", no_args_is_help=True)


@devices.command("list")
def devices_list(c: typer.Context, json_out: bool = typer.Option(False, "--json")) -> None:
    """Every enrolled device with its status and capabilities."""
    ctx: Ctx = c.obj
    devs = [convert.device_from_pb(m) for m in ctx.call(ctx.stub.ListDevices, lab_pb2.ListDevicesRequest()).devices]
    if json_out:
        emit_json([views.device(dv) for dv in devs])
        return
    table("devices",
          ["name", "class", "status", "state", "region", "arch", "cores", "memory GiB", "providers", "energy"],
          [[dv.name, dv.device_class, dv.status, dv.state, dv.region, dv.capabilities.arch, dv.capabilities.cpu_cores,
            f"{dv.capabilities.memory_bytes / 2**30:.1f}", ",".join(dv.capabilities.providers),
            ",".join(sorted({s.kind for s in dv.capabilities.energy_sensors})) or "none"] for dv in devs])


def _set_state(c: typer.Context, name: str, state: str, json_out: bool) -> None:
    ctx: Ctx = c.obj
    dev = convert.device_from_pb(ctx.call(ctx.stub.SetDeviceState, lab_pb2.SetDeviceStateRequest(name=name,
                                                                                              state=state)))
    if json_out:
        emit_json(views.device(dev))
    else:
        console.print(f"{dev.name}: {dev.state}")


@devices.command("drain")
def devices_drain(c: typer.Context, name: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """Finish current work, take no new tasks (admin)."""
    _set_state(c, name, "draining", json_out)


@devices.command("release")
def devices_release(c: typer.Context, name: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """Return a drained or quarantined device to service (admin)."""
    _set_state(c, name, "active", json_out)


@devices.command("quarantine")
def devices_quarantine(c: typer.Context, name: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """Take a device out of service until a health check passes or an admin releases it."""
    _set_state(c, name, "quarantined", json_out)


@suites.command("list")
def suites_list(c: typer.Context, json_out: bool = typer.Option(False, "--json")) -> None:
    """Suites this lab offers."""
    ctx: Ctx = c.obj
    found = ctx.call(ctx.stub.ListSuites, lab_pb2.ListSuitesRequest()).suites
    rows = [{"id": s.id, "version": s.version, "title": s.title, "digest": s.digest} for s in found]
    if json_out:
        emit_json(rows)
        return
    table("suites", ["id", "version", "title", "digest"],
          [[r["id"], r["version"], r["title"], r["digest"][:19] + "…"] for r in rows])


@suites.command("show")
def suites_show(c: typer.Context, suite: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """One suite (ID[@VERSION]) in full."""
    ctx: Ctx = c.obj
    sid, _, version = suite.partition("@")
    info = ctx.call(ctx.stub.GetSuite, lab_pb2.GetSuiteRequest(id=sid, version=version))
    doc = json.loads(info.suite_json)
    doc["digest"] = info.digest
    if json_out:
        emit_json(doc)
        return
    console.print(f"[bold]{info.id}[/bold] {info.version} — {info.title}\n{info.digest}")
    table("tasks", ["name", "model", "dataset", "scenario"],
          [[t["name"], t["model"], t.get("dataset") or "", t["scenario"]] for t in doc.get("tasks", [])])


@suites.command("validate")
def suites_validate(path: Path, json_out: bool = typer.Option(False, "--json")) -> None:
    """Check a suite directory or suite.toml offline; every problem with its field and line."""
    from evalsuites import validate_suite

    problems = validate_suite(path, deep=True)
    if json_out:
        emit_json({"valid": not problems, "problems": [{"field": p.field, "line": p.line, "message": p.message}
                                                       for p in problems]})
    else:
        for p in problems:
            typer.echo(str(p), err=True)
        if not problems:
            console.print(f"{path}: valid")
    if problems:
        raise typer.Exit(EXIT_USAGE)


@token.command("create")
def token_create(c: typer.Context, role: str = typer.Option(..., "--role", help="agent|engineer|certifier|admin"),
                 expires_in: int | None = typer.Option(None, "--expires-in", min=1, metavar="SECONDS",
                                                       help="the token is refused after this many seconds"),
                 max_uses: int | None = typer.Option(None, "--max-uses", min=1, metavar="N",
                                                     help="agent tokens: enrol at most N devices"),
                 json_out: bool = typer.Option(False, "--json")) -> None:
    """Mint a token for a role (admin only); the secret is shown once, the id names it in list and revoke."""
    ctx: Ctx = c.obj
    resp = ctx.call(ctx.stub.CreateToken, lab_pb2.CreateTokenRequest(role=role, expires_in_s=expires_in or 0,
                                                                     max_uses=max_uses or 0))
    if json_out:
        emit_json({"token": resp.token, "id": resp.id, "role": resp.role})
    else:
        print(resp.token)


@token.command("list")
def token_list(c: typer.Context, json_out: bool = typer.Option(False, "--json")) -> None:
    """Every token, newest first, device credentials included; never a secret (admin only)."""
    ctx: Ctx = c.obj
    rows = [views.token(t) for t in ctx.call(ctx.stub.ListTokens, lab_pb2.ListTokensRequest()).tokens]
    if json_out:
        emit_json(rows)
        return
    table("tokens", ["id", "role", "device", "created", "expires", "revoked", "uses"],
          [[r["id"], r["role"], r["device"] or "", r["created"], r["expires"] or "never", r["revoked"] or "",
            f"{r['uses']}/{r['max_uses']}" if r["max_uses"] else str(r["uses"])] for r in rows])


@token.command("revoke")
def token_revoke(c: typer.Context, token_id: str = typer.Argument(..., metavar="ID"),
                 json_out: bool = typer.Option(False, "--json")) -> None:
    """Refuse a token from now on, and every device credential enrolled with it (admin only)."""
    ctx: Ctx = c.obj
    row = views.token(ctx.call(ctx.stub.RevokeToken, lab_pb2.RevokeTokenRequest(id=token_id)))
    if json_out:
        emit_json(row)
    else:
        console.print(f"{row['id']}: revoked on {row['revoked']}")


@lab.command("pubkey")
def lab_pubkey(c: typer.Context) -> None:
    """The lab's Ed25519 public key (PEM), for verifying reports."""
    ctx: Ctx = c.obj
    print(ctx.call(ctx.stub.GetLabInfo, lab_pb2.GetLabInfoRequest()).public_key_pem, end="")
