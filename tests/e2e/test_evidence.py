"""Certification evidence end to end: a real run's bundle verifies offline, and every kind of tampering fails
with a message naming what is wrong; the HTML renders in headless Chromium with its chart, and prints to an A4 PDF
with the report id and page numbers on every page."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.cpuinfo import cpu_flags
from labctl.verify import verify_bundle
from pilotlab import dsse
from tests.e2e.conftest import BIN, Agent, Labd, device_online, labctl, labctl_json, make_token, wait_until


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("evidence")
    lab = Labd(root / "lab").start()
    agent = Agent(lab, "kiosk", root / "agent", make_token(lab, "agent"),
                  extra=["--tag", "make=Acme", "--tag", "serial=SN-1"]).start()
    try:
        wait_until(lambda: device_online(lab, "kiosk"), 60, "agent online")
        eng, cert = make_token(lab, "engineer"), make_token(lab, "certifier")
        run = labctl_json(lab, eng, "run", "submit", "--suite", "smoke", "--device", "kiosk", "--wait")
        bundle = root / "bundle"
        pull = labctl(lab, cert, "report", "pull", run["id"], "--out", str(bundle))  # certifiers may pull
        assert pull.returncode == 0, pull.stderr
        pub = root / "lab.pem"
        pub.write_text(labctl(lab, cert, "lab", "pubkey").stdout)
        key = serialization.load_pem_private_key((lab.data_dir / "signing_key.pem").read_bytes(), None)
        yield {"lab": lab, "run": run, "bundle": bundle, "pub": pub, "key": key, "eng": eng, "cert": cert,
               "root": root}
    finally:
        agent.stop()
        lab.stop()


def _artefacts(tmp_path: Path) -> Path:
    """Where the report's screenshot and PDF pages are kept for a person to look at: $PILOTLAB_ARTIFACTS/report (as
    the web console's screenshots), else the test's temporary folder."""
    env = os.environ.get("PILOTLAB_ARTIFACTS")
    path = Path(env) / "report" if env else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def _copy(issued: dict, tmp_path: Path) -> Path:  # type: ignore[type-arg]
    dest = tmp_path / "b"
    shutil.copytree(issued["bundle"], dest)
    return dest


def _resign(bundle: Path, key: Ed25519PrivateKey) -> None:
    """What a dishonest lab (holding the real key) would do after changing files: sign them again."""
    files = {p.relative_to(bundle).as_posix(): p.read_bytes() for p in bundle.rglob("*")
             if p.is_file() and p.name != "attestation.dsse.json"}
    subjects = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    env = dsse.sign_envelope(key, dsse.statement(subjects, {}))
    (bundle / "attestation.dsse.json").write_text(json.dumps(env))


def test_intact_bundle_verifies(issued) -> None:  # type: ignore[no-untyped-def]
    problems, notes = verify_bundle(issued["bundle"], issued["pub"])
    assert problems == [] and notes == []
    report = json.loads((issued["bundle"] / "report.json").read_bytes())
    assert rfc8785.dumps(report) == (issued["bundle"] / "report.json").read_bytes()
    assert report["device"]["make"] == "Acme" and report["device"]["serial"] == "SN-1"
    assert report["device"]["public_key"] and report["amends"] is None
    assert report["statement"].startswith("The results in this report relate only to the item tested")
    assert all(c["statement"].endswith("conforms") for c in report["tasks"][0]["criteria"])
    assert report["dates"]["tested_from"] and report["dates"]["tested_to"]
    flags = cpu_flags()  # the agent runs on this machine: the same /proc/cpuinfo
    assert report["device"]["cpu_flags"] == flags == report["devices"][0]["cpu_flags"]
    assert all(t["environment"]["before"].get("cpu_flags", []) == flags for t in report["tasks"])
    assert all(t["notes"] == [] for t in report["tasks"])
    assert "CPU features" in (issued["bundle"] / "report.html").read_text()
    devices = labctl_json(issued["lab"], issued["cert"], "devices", "list")
    assert devices[0]["capabilities"]["cpu_flags"] == flags
    cli = labctl(issued["lab"], None, "report", "verify", str(issued["bundle"]), "--pubkey", str(issued["pub"]))
    assert cli.returncode == 0 and "intact" in cli.stdout


@pytest.mark.parametrize("name", ["report.json", "report.html", "lab.pub.pem", "device-signatures.json",
                                  "transparency.json", "samples/digits-single-stream/latency_repeat-0.npy",
                                  "samples/digits-single-stream/prediction.npy"])
def test_one_byte_changed_in_any_file_fails(issued, tmp_path, name) -> None:  # type: ignore[no-untyped-def]
    b = _copy(issued, tmp_path)
    data = bytearray((b / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (b / name).write_bytes(bytes(data))
    problems, _ = verify_bundle(b, issued["pub"])
    assert f"altered file {name}: its sha256 differs from the signed digest" in problems


def test_wrong_public_key_and_envelope_edits(issued, tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(issued, tmp_path)
    other = tmp_path / "other.pem"
    other.write_text(dsse.public_pem(Ed25519PrivateKey.generate().public_key()))
    problems, _ = verify_bundle(b, other)
    assert problems == ["attestation.dsse.json: no signature on the attestation verifies with the lab's public key"]
    env = json.loads((b / "attestation.dsse.json").read_text())
    env["payload"] = base64.b64encode(base64.b64decode(env["payload"]).replace(b"pass", b"fail")).decode()
    (b / "attestation.dsse.json").write_text(json.dumps(env))
    assert verify_bundle(b, issued["pub"])[0][0].startswith("attestation.dsse.json: no signature")


def test_unsigned_extra_and_missing_files(issued, tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(issued, tmp_path)
    (b / "samples" / "extra.npy").write_text("smuggled\n")
    (b / "samples/digits-single-stream/audit-same.npy").unlink()
    problems, _ = verify_bundle(b, issued["pub"])
    assert "unsigned file samples/extra.npy: not covered by the attestation" in problems
    assert "missing file samples/digits-single-stream/audit-same.npy: signed but not in the bundle" in problems
    cli = labctl(issued["lab"], None, "report", "verify", str(b), "--pubkey", str(issued["pub"]))
    assert cli.returncode == 1 and "samples/extra.npy" in cli.stderr


def test_metric_edited_and_resigned_does_not_recompute(issued, tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(issued, tmp_path)
    report = json.loads((b / "report.json").read_bytes())
    report["tasks"][0]["metrics"]["latency_ms"]["p99"] = 0.001
    report["tasks"][0]["metrics"]["accuracy"]["value"] = 0.999
    (b / "report.json").write_bytes(rfc8785.dumps(report))
    _resign(b, issued["key"])
    problems, _ = verify_bundle(b, issued["pub"])
    assert any(p.startswith("task digits-single-stream: metric latency_ms.p99 does not recompute") for p in problems)
    assert any(p.startswith("task digits-single-stream: metric accuracy.value does not recompute") for p in problems)
    assert any("report missing from the log" in p for p in problems)


def test_forged_samples_fail_device_signature(issued, tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(issued, tmp_path)
    path = b / "samples/digits-single-stream/prediction.npy"
    records = np.load(path, allow_pickle=False)
    records["value"][0] = (records["value"][0] + 1) % 10  # a different predicted class for sample 0
    np.save(path, records, allow_pickle=False)
    _resign(b, issued["key"])
    problems, _ = verify_bundle(b, issued["pub"])
    assert any("prediction.npy batch" in p and "does not match the device's signature" in p for p in problems)


def test_report_missing_from_log(issued, tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = _copy(issued, tmp_path)
    (b / "transparency.json").unlink()
    _resign(b, issued["key"])
    problems, _ = verify_bundle(b, issued["pub"])
    assert any("no proof that it is in the lab's log" in p for p in problems)
    c = _copy(issued, tmp_path / "c")
    doc = json.loads((c / "transparency.json").read_text())
    doc["checkpoint"]["size"] = 7
    (c / "transparency.json").write_text(json.dumps(doc))
    _resign(c, issued["key"])
    assert any("not signed by the lab's key" in p for p in verify_bundle(c, issued["pub"])[0])


def test_reports_are_kept_logged_and_amended(issued, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab, run = issued["lab"], issued["run"]
    again = tmp_path / "again"
    assert labctl(lab, issued["cert"], "report", "pull", run["id"], "--out", str(again)).returncode == 0
    assert (again / "report.json").read_bytes() == (issued["bundle"] / "report.json").read_bytes()
    p = labctl(lab, issued["cert"], "report", "amend", run["id"], "--reason", "typo", "--out", str(tmp_path / "x"))
    assert p.returncode == 3 and "may not amend reports" in p.stderr
    amended = tmp_path / "amended"
    p = labctl(lab, issued["eng"], "report", "amend", run["id"], "--reason", "corrected device serial",
               "--out", str(amended))
    assert p.returncode == 0, p.stderr
    new = json.loads((amended / "report.json").read_bytes())
    old_digest = "sha256:" + hashlib.sha256((issued["bundle"] / "report.json").read_bytes()).hexdigest()
    assert new["amends"]["digest"] == old_digest and new["amends"]["reason"] == "corrected device serial"
    log = json.loads((amended / "transparency.json").read_text())
    assert log["leaf_index"] == 1 and log["tree_size"] == 2 and len(log["inclusion_proof"]) == 1
    assert verify_bundle(amended, issued["pub"])[0] == []


def test_html_renders_in_headless_chromium(issued, tmp_path) -> None:  # type: ignore[no-untyped-def]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: `make test` installs Debian's chromium package"
    html = (issued["bundle"] / "report.html").read_text()
    assert "<svg" in html and "Latency distribution (CDF)" in html and "PASS" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    shot = _artefacts(tmp_path) / "report-html.png"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                          "--no-first-run", "--disable-background-networking", "--disable-component-update",
                          "--disable-sync", f"--user-data-dir={tmp_path / 'ud'}", "--dump-dom",
                          (issued["bundle"] / "report.html").as_uri()], capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0 and "polyline" in dom.stdout and "digits-single-stream" in dom.stdout
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'ud2'}", "--window-size=1280,5000", f"--screenshot={shot}",
                    (issued["bundle"] / "report.html").as_uri()], capture_output=True, timeout=60, check=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_html_tells_a_certifier_what_was_signed_and_how_to_check_it(issued) -> None:  # type: ignore[no-untyped-def]
    report = json.loads((issued["bundle"] / "report.json").read_bytes())
    html = (issued["bundle"] / "report.html").read_text()
    fingerprint = hashlib.sha256(issued["pub"].read_bytes()).hexdigest()  # of what `labctl lab pubkey` printed
    assert report["lab"]["public_key_sha256"] == report["authorised_by"]["public_key_sha256"] == fingerprint
    assert report["authorised_by"]["name"] == report["lab"]["name"] and fingerprint in html
    assert f"labctl report verify {report['run']['id']} --pubkey lab.pem" in html
    assert html.count(report["report_id"]) >= 4 and f"End of report {report['report_id']}" in html
    assert "PASS: all 2 criteria that decide the verdict pass (1 task)." in html
    settings = html.split("<h3>Settings, as the lab assigned and graded them</h3>", 1)[1].split("</section>", 1)[0]
    assert not re.search(r"\{'|\bTrue\b|\bFalse\b|\bNone\b", settings), settings
    # This machine has no energy meter the agent may read: the report says so, and why.
    notes = report["tasks"][0]["figure_notes"]
    assert report["tasks"][0]["metrics"]["energy"]["source"] == "unavailable" and notes["energy"] in html


def test_report_pull_pdf(issued, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--pdf prints report.html through Chromium's DevTools: A4 pages, each with the report id and its number; the
    bundle beside it still verifies, naming the PDF as unsigned."""
    out = tmp_path / "withpdf"
    p = labctl(issued["lab"], issued["cert"], "report", "pull", issued["run"]["id"], "--out", str(out), "--pdf",
               "--json")
    assert p.returncode == 0, p.stderr
    pulled = json.loads(p.stdout)
    assert pulled["pdf"] == str(out / "report.pdf") and pulled["pdf_page_numbers"] is True
    assert "report.pdf" not in pulled["files"]  # not part of the signed bundle
    report_id = json.loads((out / "report.json").read_bytes())["report_id"]
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    info = subprocess.run(["pdfinfo", str(out / "report.pdf")], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))  # type: ignore[union-attr]
    assert pages >= 1 and "(A4)" in info
    text = subprocess.run(["pdftotext", "-layout", str(out / "report.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    for n, page in enumerate(text.split("\f")[:pages], start=1):
        assert report_id in page and f"page {n} of {pages}" in page, page
    assert f"End of report {report_id}" in text and "How to verify this report" in text
    problems, notes = verify_bundle(out, issued["pub"])
    assert problems == [] and any(n.startswith("report.pdf is not signed") for n in notes)
    shots = _artefacts(tmp_path)
    shutil.copy(out / "report.pdf", shots / "report.pdf")
    subprocess.run(["pdftoppm", "-png", "-r", "70", str(out / "report.pdf"), str(shots / "report-pdf-page")],
                   check=True, timeout=60)
    print(f"\nreport PDF and its pages as PNG: {shots}")

    # Without Chromium on PATH: one line saying so, non-zero, and the bundle is still there.
    bare = tmp_path / "nopdf"
    env = {**os.environ, "PATH": str(BIN), "LAB_ADDR": issued["lab"].addr, "LAB_TOKEN": issued["cert"]}
    p = subprocess.run([str(BIN / "labctl"), "report", "pull", issued["run"]["id"], "--out", str(bare), "--pdf"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--pdf needs Chromium" in p.stderr, p.stderr
    assert (bare / "report.html").is_file() and not (bare / "report.pdf").exists()
