"""`labctl run …`: submit, show, list, watch and cancel runs."""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING

import typer
from rich.live import Live
from rich.table import Table

from labctl import views
from labctl.client import EXIT_FAIL, EXIT_LAB, Ctx
from labctl.lazy import lazy
from labctl.output import console, emit_json, table
from pilotlab import domain as d

if TYPE_CHECKING:
    from pilotlab import convert
    from pilotlab.v1 import lab_pb2
else:
    convert, lab_pb2 = lazy("pilotlab.convert"), lazy("pilotlab.v1.lab_pb2")

app = typer.Typer(help="Submit, follow and cancel runs.", no_args_is_help=True)


def _progress_table(r: d.Run) -> Table:
    t = Table(title=f"run {r.id} · {r.suite_id}@{r.suite_version} · {r.status.value}"
              + (f" · {r.verdict.value}" if r.verdict else ""))
    for c in ("task", "device", "status", "phase", "attempts", "verdict"):
        t.add_column(c)
    for task in r.tasks:
        phase = f"{task.phase} {task.progress:.0%}" if task.status == d.Status.RUNNING else task.phase
        t.add_row(task.name, task.device_name, task.status.value, phase, str(task.attempts),
                  task.verdict.value if task.verdict else (task.reason[:60] if task.reason else ""))
    return t


def follow_mode(quiet: bool = False) -> str:
    """How to show a run's progress: "live" (a table redrawn in place) on a terminal, "lines" (one flushed line per
    change, for pipes, files and CI logs) otherwise, "quiet" when the output is one JSON document."""
    if quiet:
        return "quiet"
    return "live" if sys.stdout.isatty() else "lines"  # not rich's is_terminal, which FORCE_COLOR turns on


def watch(ctx: Ctx, run_id: str, mode: str) -> d.Run:
    """Follow a run until it ends, shown as `mode` (see follow_mode)."""
    last: d.Run | None = None
    with ctx.errors():
        stream = ctx.stub.WatchRun(lab_pb2.GetRunRequest(id=run_id), metadata=ctx.md)
        if mode == "live":
            with Live(console=console, refresh_per_second=8, transient=False) as view:
                for msg in stream:
                    last = convert.run_from_pb(msg)
                    view.update(_progress_table(last))
        else:
            for msg in stream:
                run = convert.run_from_pb(msg)
                if mode == "lines":
                    for line in progress_lines(last, run):
                        print(line, flush=True)
                last = run
    if last is None:
        raise typer.Exit(EXIT_LAB)
    return last


def _task_state(t: d.Task) -> tuple[object, ...]:
    return t.status, t.phase, round(t.progress * 100), t.attempts, t.verdict, t.device_name, t.reason


def progress_lines(before: d.Run | None, now: d.Run) -> list[str]:
    """One line per task whose status, phase, progress, attempt, device or verdict changed, then one for the run
    when its status or verdict did, each stamped with the time (UTC)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = {t.id: _task_state(t) for t in before.tasks} if before is not None else {}
    lines = []
    for t in now.tasks:
        if old.get(t.id) == _task_state(t):
            continue
        words = [t.status.value]
        if t.phase and not t.status.terminal:
            words.append(f"phase {t.phase} {t.progress:.0%}")
        if t.attempts:
            words.append(f"attempt {t.attempts}")
        if t.verdict:
            words.append(f"verdict {t.verdict.value}")
        if t.reason:
            words.append(t.reason)
        lines.append(f"{stamp} task {t.name} on {t.device_name or '(no device yet)'}: {', '.join(words)}")
    if before is None or (before.status, before.verdict) != (now.status, now.verdict):
        lines.append(f"{stamp} run {now.id} ({now.suite_id}@{now.suite_version}): {now.status.value}"
                     + (f", verdict {now.verdict.value}" if now.verdict else "")
                     + (f", {now.reason}" if now.reason and now.status.terminal else ""))
    return lines


def exit_code(r: d.Run) -> int:
    if r.status == d.Status.COMPLETED:
        return 0 if r.verdict == d.Verdict.PASS else EXIT_FAIL
    return EXIT_LAB


@app.command()
def submit(c: typer.Context,
           suite: str = typer.Option(..., "--suite", help="ID[@VERSION]"),
           device: str = typer.Option("", "--device", help="device name"),
           select: str = typer.Option("", "--select", help="selector, e.g. 'class=robot and region=eu'"),
           priority: int = typer.Option(0, "--priority"),
           any_device: bool = typer.Option(False, "--any", help="with --select: one matching device; a lost "
                                           "device's task may move to another"),
           queue_timeout: float = typer.Option(0.0, "--queue-timeout", help="seconds a task may wait for a device"),
           wait: bool = typer.Option(False, "--wait", help="follow the run; exit 0 pass, 1 fail, 3 error"),
           json_out: bool = typer.Option(False, "--json")) -> None:
    """Queue a suite run on a device (or on every device a selector matches)."""
    ctx: Ctx = c.obj
    suite_id, _, version = suite.partition("@")
    r = convert.run_from_pb(ctx.call(ctx.stub.SubmitRun, lab_pb2.SubmitRunRequest(
        suite_id=suite_id, suite_version=version, device=device, select=select, priority=priority,
        any_device=any_device, queue_timeout_s=queue_timeout)))
    if wait:
        if not json_out:
            console.print(f"submitted [bold]{r.id}[/bold]; following it")
        r = watch(ctx, r.id, follow_mode(quiet=json_out))
    if json_out:
        emit_json({"id": r.id, "status": r.status.value, "verdict": r.verdict.value if r.verdict else None,
                   "reason": r.reason})
    else:
        console.print(f"run {r.id}: {r.status.value}" + (f", verdict {r.verdict.value}" if r.verdict else "")
                      + (f" ({r.reason})" if r.reason else ""))
    if wait:
        raise typer.Exit(exit_code(r))


@app.command()
def show(c: typer.Context, run_id: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """One run with its tasks."""
    ctx: Ctx = c.obj
    r = convert.run_from_pb(ctx.call(ctx.stub.GetRun, lab_pb2.GetRunRequest(id=run_id)))
    if json_out:
        emit_json(views.run(r))
    else:
        console.print(_progress_table(r))


@app.command("list")
def list_(c: typer.Context, limit: int = typer.Option(50, "--limit"),
          json_out: bool = typer.Option(False, "--json")) -> None:
    """Recent runs, newest first."""
    ctx: Ctx = c.obj
    runs = [convert.run_from_pb(m) for m in ctx.call(ctx.stub.ListRuns, lab_pb2.ListRunsRequest(limit=limit)).runs]
    if json_out:
        emit_json([views.run(r) for r in runs])
        return
    table("runs", ["id", "suite", "status", "verdict", "tasks"],
          [[r.id, f"{r.suite_id}@{r.suite_version}", r.status.value, r.verdict.value if r.verdict else "",
            len(r.tasks)] for r in runs])


@app.command("watch")
def watch_cmd(c: typer.Context, run_id: str) -> None:
    """Progress of a run until it ends: a live table on a terminal; piped, one line per change (task status, phase,
    progress, verdict; run status) as it happens. Exit 0 pass, 1 fail, 3 error or cancelled."""
    r = watch(c.obj, run_id, follow_mode())
    raise typer.Exit(exit_code(r))


@app.command()
def cancel(c: typer.Context, run_id: str, reason: str = typer.Option("", "--reason"),
           json_out: bool = typer.Option(False, "--json")) -> None:
    """Cancel a run: queued tasks are dropped, running ones stopped at the next query boundary."""
    ctx: Ctx = c.obj
    r = convert.run_from_pb(ctx.call(ctx.stub.CancelRun, lab_pb2.CancelRunRequest(id=run_id, reason=reason)))
    if json_out:
        emit_json({"id": r.id, "status": r.status.value, "verdict": r.verdict.value if r.verdict else None})
    else:
        console.print(f"run {r.id}: {r.status.value}")
