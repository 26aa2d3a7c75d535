"""`labctl audit list`: the lab's append-only audit log, who did what to which token, run, device or report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from labctl import views
from labctl.client import Ctx
from labctl.lazy import lazy
from labctl.output import emit_json, table

if TYPE_CHECKING:
    from pilotlab.v1 import lab_pb2
else:
    lab_pb2 = lazy("pilotlab.v1.lab_pb2")

app = typer.Typer(help="The audit log (admins).", no_args_is_help=True)


def entry(e: Any) -> dict[str, Any]:
    """An AuditEntry message as `labctl audit list --json` shows it (time as `token list` shows `created`)."""
    return {"time": views.iso(e.time_ms), "actor": e.actor, "role": e.role, "action": e.action, "target": e.target,
            "detail": e.detail}


@app.command("list")
def audit_list(c: typer.Context,
               target: str = typer.Option("", "--target", metavar="ID|NAME",
                                          help="only entries about this token id, run id or device name"),
               limit: int = typer.Option(1000, "--limit", min=1, max=10_000, metavar="N",
                                         help="the newest N entries"),
               json_out: bool = typer.Option(False, "--json")) -> None:
    """Every token, run, device and report action, newest first: when, who (token id, device or labd), with what
    role, what, on what (admin only)."""
    ctx: Ctx = c.obj
    found = ctx.call(ctx.stub.ListAudit, lab_pb2.ListAuditRequest(target=target, limit=limit)).entries
    rows = [entry(e) for e in found]
    if json_out:
        emit_json(rows)
        return
    table("audit log", ["time", "actor", "role", "action", "target", "detail"],
          [[r["time"], r["actor"], r["role"], r["action"], r["target"], r["detail"]] for r in rows])
