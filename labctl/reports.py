"""`labctl report pull|verify`: fetch a run's evidence bundle, and check one offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import typer

from labctl.client import EXIT_FAIL, Ctx, die
from labctl.lazy import lazy
from labctl.output import console, emit_json, table

if TYPE_CHECKING:
    from pilotlab.v1 import lab_pb2
else:
    lab_pb2 = lazy("pilotlab.v1.lab_pb2")

app = typer.Typer(help="Evidence bundles: pull and verify.", no_args_is_help=True)


def _safe(out: Path, rel: str) -> Path:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        die(f"the lab sent a file with an unsafe path {rel!r}; refusing to write it")
    return out.joinpath(*p.parts)


def summary_rows(report: dict) -> list[list[str]]:  # type: ignore[type-arg]
    rows = []
    for t in report["tasks"]:
        m = t.get("metrics") or {}
        lat = m.get("latency_ms") or {}
        acc = m.get("accuracy")
        energy = m.get("energy") or {}
        rows.append([
            t["name"], t.get("verdict") or t.get("status", ""),
            f"{lat['p50']:.3f}" if lat else "—", f"{lat['p99']:.3f}" if lat else "—",
            f"{m['throughput_per_s']:.1f}" if m.get("throughput_per_s") else "—",
            (f"{acc['value']:.2%} [{acc['ci95'][0]:.2%}, {acc['ci95'][1]:.2%}]" if acc else "—"),
            (f"{energy['joules_per_inference']:.4g} J" if energy.get("joules_per_inference") is not None else "—")
            + f" ({energy.get('source', 'unavailable')})",
        ])
    return rows


class _Progress:
    """A bytes progress bar on stderr while a bundle streams into files, when stderr is a terminal."""

    def __init__(self, what: str, enabled: bool) -> None:
        self.what, self.enabled = what, enabled
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

            self.bar = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task(self.what, total=None)
        return self

    def total(self, n: int) -> None:
        if self.bar is not None and n:
            self.bar.update(self.task, total=n)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


PDF_HELP = ("also print report.html to OUT/report.pdf (A4) with a local Chromium (chromium, chromium-browser or "
            "google-chrome on PATH), driven through its DevTools protocol so that every page carries the report id "
            "and its page number; should that fail, Chromium's plain --print-to-pdf, without page numbers. The PDF "
            "is derived from report.html and is not part of the signed bundle: `report verify` checks the rest")


@app.command()
def pull(c: typer.Context, run_id: str, out: Path = typer.Option(..., "--out"),
         pdf: bool = typer.Option(False, "--pdf", help=PDF_HELP),
         json_out: bool = typer.Option(False, "--json")) -> None:
    """Write the run's report.json, report.html, raw samples and signed attestation into --out (and, with --pdf, an
    unsigned report.pdf printed from report.html)."""
    _fetch(c.obj, run_id, out, json_out, "", pdf)


@app.command()
def amend(c: typer.Context, run_id: str, reason: str = typer.Option(..., "--reason"),
          out: Path = typer.Option(..., "--out"), pdf: bool = typer.Option(False, "--pdf", help=PDF_HELP),
          json_out: bool = typer.Option(False, "--json")) -> None:
    """Issue a new report replacing the run's current one (it names the digest it replaces)."""
    _fetch(c.obj, run_id, out, json_out, reason, pdf)


def _print_pdf(out: Path, report: dict[str, Any]) -> tuple[Path, str]:
    """OUT/report.pdf printed from the pulled report.html: (its path, why it has no page numbers or "")."""
    from labctl.pdf import PDF_NAME, PdfError, find_browser, print_pdf

    browser = find_browser()
    if browser is None:
        die(f"--pdf needs Chromium, and none of chromium, chromium-browser or google-chrome is on PATH; the "
            f"bundle itself is in {out}")
    dest = out / PDF_NAME
    try:
        return dest, print_pdf(browser, out / "report.html", dest, str(report.get("report_id", "")))
    except (PdfError, OSError, subprocess.SubprocessError) as e:
        die(f"could not print report.pdf with {browser}: {e}; the bundle itself is in {out}", EXIT_FAIL)


def _fetch(ctx: Ctx, run_id: str, out: Path, json_out: bool, amend_reason: str, pdf: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    handles = {}
    bar = _Progress(f"pulling run {run_id}", enabled=sys.stderr.isatty() and not json_out)
    with ctx.errors(), bar:
        request = lab_pb2.GetReportRequest(run_id=run_id, amend_reason=amend_reason)
        for chunk in ctx.stub.GetReport(request, metadata=ctx.md, timeout=300):
            bar.total(chunk.bundle_bytes)
            if chunk.path not in handles:
                dest = _safe(out, chunk.path)
                dest.parent.mkdir(parents=True, exist_ok=True)
                handles[chunk.path] = dest.open("wb")
            handles[chunk.path].write(chunk.data)
            written[chunk.path] = written.get(chunk.path, 0) + len(chunk.data)
            bar.advance(len(chunk.data))
            if chunk.last:
                handles[chunk.path].close()
    for h in handles.values():
        h.close()
    report = json.loads((out / "report.json").read_text())
    pdf_path, unnumbered = _print_pdf(out, report) if pdf else (None, "")
    if json_out:
        emit_json({"run": report["run"], "files": sorted(written), "out": str(out),
                   "pdf": str(pdf_path) if pdf_path else None,
                   "pdf_page_numbers": bool(pdf_path) and not unnumbered})
        return
    r = report["run"]
    console.print(f"report for run {r['id']} ({r['suite']['id']}@{r['suite']['version']}) on "
                  f"{report['device'].get('name', '?')}: [bold]{(r['verdict'] or r['status']).upper()}[/bold]"
                  + (f" · grade {report['grade']['level'] or 'none reached'}" if report.get("grade") else ""))
    table(None, ["task", "verdict", "p50 ms", "p99 ms", "throughput /s", "accuracy [95% CI]", "energy"],
          summary_rows(report))
    console.print(f"{len(written)} files in {out}")
    if pdf_path is not None:
        console.print(f"{pdf_path}: printed from report.html, not signed"
                      + (f" (without page numbers: {unnumbered})" if unnumbered else ""), highlight=False)


@app.command()
def verify(path: Path, pubkey: Path | None = typer.Option(None, "--pubkey", help="the lab's public key (PEM)"),
           json_out: bool = typer.Option(False, "--json")) -> None:
    """Check a bundle offline: signature, digests, unsigned files, and metrics recomputed from raw samples."""
    if not path.is_dir():
        die(f"{path} is not a directory; pass the folder `labctl report pull` wrote")
    from labctl.verify import verify_bundle

    problems, notes = verify_bundle(path, pubkey)
    if json_out:
        emit_json({"intact": not problems, "problems": problems, "notes": notes})
    else:
        for p in problems:
            typer.echo(f"FAIL {p}", err=True)
        for n in notes:
            typer.echo(f"note: {n}", err=True)
        if not problems:
            console.print(f"{path}: intact — signature valid, every file signed, metrics recompute")
    if problems:
        raise typer.Exit(EXIT_FAIL)
