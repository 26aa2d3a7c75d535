"""Builds, logs, signs and keeps a run's evidence bundle: report.json (RFC 8785), raw samples, device
signatures, report.html, the evidence-log inclusion proof and the DSSE attestation over all of them."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from typing import Any

import rfc8785

from labd.clock import Clock
from labd.evidence import report_json
from labd.evidence.html import render_html
from labd.evidence.keys import Issuer
from labd.state import AuditEntry, Store
from pilotlab import domain as d
from pilotlab import dsse, merkle, transparency

ATTESTATION = "attestation.dsse.json"
TRANSPARENCY = "transparency.json"


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON: what report.json's digest and the evidence log are computed over."""
    return rfc8785.dumps(obj)


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            z.writestr(name, files[name])
    return buf.getvalue()


def _unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


def build_files(store: Store, issuer: Issuer, run: d.Run, report_id: str, amends: dict[str, Any] | None,
                issued_ms: int) -> dict[str, bytes]:
    """Every bundle file except the log proof and the attestation."""
    if not run.status.terminal:
        raise d.Conflict(f"run {run.id} is {run.status.value}; pull its report once it has ended "
                         f"(`labctl run watch {run.id}`)")
    files: dict[str, bytes] = {}
    report, signatures = report_json.build(store, issuer, run, report_id, amends, files, issued_ms)
    files["report.json"] = canonical_json(report)
    files["device-signatures.json"] = json.dumps(signatures, indent=1, sort_keys=True).encode()
    files["report.html"] = render_html(report, files).encode()
    files["lab.pub.pem"] = dsse.public_pem(issuer.key.public_key()).encode()
    return files


def sign_bundle(issuer: Issuer, files: dict[str, bytes]) -> dict[str, bytes]:
    subjects = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    report = json.loads(files["report.json"])
    stmt = dsse.statement(subjects, {"report_id": report["report_id"], "run_id": report["run"]["id"],
                                     "verdict": report["run"]["verdict"], "issued": report["issued"]})
    out = dict(files)
    out[ATTESTATION] = json.dumps(dsse.sign_envelope(issuer.key, stmt), indent=2).encode()
    return out


def issue_report(store: Store, issuer: Issuer, clock: Clock, run: d.Run, amend_reason: str = "") -> dict[str, bytes]:
    """A new report for the run: appended to the evidence log, signed, stored."""
    previous = store.latest_report(run.id)
    amends = None
    if previous is not None:
        amends = {"report_id": previous.id, "digest": previous.digest, "reason": amend_reason}
    report_id = f"rep-{uuid.uuid4().hex[:16]}"
    files = build_files(store, issuer, run, report_id, amends, clock.now_ms())
    digest = "sha256:" + hashlib.sha256(files["report.json"]).hexdigest()
    leaf = merkle.leaf_hash(files["report.json"])
    record = d.ReportRecord(id=report_id, run_id=run.id, digest=digest, issued_ms=clock.now_ms(),
                            replaces=previous.digest if previous else None, log_index=0, bundle=b"")
    index = store.append_report(record, leaf.hex(), clock.now_ms())
    leaves = [bytes.fromhex(h) for h in store.log_leaves(index + 1)]
    checkpoint = transparency.sign_checkpoint(issuer.key, len(leaves), merkle.root(leaves),
                                              report_json.iso(clock.now_ms()) or "")
    files[TRANSPARENCY] = json.dumps(transparency.proof_document(index, leaves, checkpoint), indent=1).encode()
    signed = sign_bundle(issuer, files)
    store.set_report_bundle(report_id, _zip(signed))
    return signed


def report_bundle(store: Store, issuer: Issuer, clock: Clock, run_id: str, amend_reason: str = "",
                  who: d.Principal | None = None) -> dict[str, bytes]:
    """The run's current report (issued on first request), or a new one replacing it when amending. Recorded as
    report.pull by who; an amendment also as report.amend, before the new report is built, so that it names it."""
    run = store.get_run(run_id)
    with store.exclusive("evidence"):  # one issuer at a time, across every labd replica on the database
        existing = store.latest_report(run_id)
        if existing is not None and existing.bundle and not amend_reason:
            files = _unzip(existing.bundle)
        else:
            if amend_reason and existing is not None and run.status.terminal:
                store.append_audit(AuditEntry.by(who, "report.amend", run_id,
                                                 f"replaces report {existing.id}: {amend_reason}", clock.now_ms()))
            files = issue_report(store, issuer, clock, run, amend_reason)
    report_id = json.loads(files["report.json"])["report_id"]
    store.append_audit(AuditEntry.by(who, "report.pull", run_id, f"report {report_id}", clock.now_ms()))
    return files


