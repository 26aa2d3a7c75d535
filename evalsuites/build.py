"""Deterministically regenerates the smoke suite's model and dataset and keeps suite.toml's pins honest."""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from evalsuites.loader import SUITE_FILE, builtin_suites_dir, load_suite
from evalsuites.schema import SuiteError
from evalsuites.sources import file_sha256
from evalsuites.toml_lines import LineIndex

SMOKE_DIR = builtin_suites_dir() / "smoke"
MODEL_REL = "models/digits_logreg.onnx"
DATA_REL = "data/digits_test.npz"
# artifact name in suite.toml -> file path relative to the suite directory
GENERATED = {"digits-logreg": MODEL_REL, "digits-test": DATA_REL}
MIN_ACCURACY = 0.9
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_TOOLS = ("numpy", "scipy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime")


class BuildError(RuntimeError):
    """The build cannot produce trustworthy artifacts; the message says why."""


def tool_versions() -> str:
    """Versions of the libraries whose output the pins depend on, for messages."""
    parts = []
    for dist in _TOOLS:
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} missing")
    return ", ".join(parts)


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits, 80/20 stratified split with random_state=0: x_train, x_test, y_train, y_test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return (x_train.astype("<f4"), x_test.astype("<f4"), y_train.astype("<i8"), y_test.astype("<i8"))


def model_bytes(x_train: np.ndarray, y_train: np.ndarray) -> bytes:
    """Fit the logistic regression and serialise it to ONNX with every non-weight byte fixed.

    newton-cholesky with tol=1e-10 lands on the (unique, L2-regularised) optimum to ~1e-14, far below
    float32 resolution, so the stored weights do not depend on BLAS threading or summation order.
    """
    import onnx
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, solver="newton-cholesky", tol=1e-10)
    clf.fit(x_train.astype(np.float64), y_train)
    model = to_onnx(
        clf,
        initial_types=[("input", FloatTensorType([None, 64]))],
        options={id(clf): {"zipmap": False}},
        target_opset=dict(TARGET_OPSET),
        name="digits_logreg",
    )
    opsets: dict[str, int] = {}
    for entry in model.opset_import:
        opsets[entry.domain] = max(opsets.get(entry.domain, 0), entry.version)
    del model.opset_import[:]
    for domain, version in sorted(opsets.items()):
        model.opset_import.append(onnx.helper.make_opsetid(domain, version))
    model.producer_name = "pilotlab-evalsuites"
    model.producer_version = "1"
    model.domain = "pilotlab.evalsuites.smoke"
    model.model_version = 1
    model.doc_string = "Logistic regression on scikit-learn digits; regenerate with python -m evalsuites.build"
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz np.load reads normally, with fixed member order, timestamps and attributes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def top1_accuracy(model: bytes, x: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of an ONNX model's "label" output, run with onnxruntime on CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (predicted,) = session.run(["label"], {"input": x})
    return float(np.mean(predicted == labels))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    path.chmod(0o644)


def build_smoke(out_dir: Path) -> dict[str, Path]:
    """Write the smoke model and dataset under out_dir (models/, data/); returns artifact name -> file."""
    x_train, x_test, y_train, y_test = digits_split()
    model = model_bytes(x_train, y_train)
    accuracy = top1_accuracy(model, x_test, y_test)
    if accuracy <= MIN_ACCURACY:
        raise BuildError(f"digits model scores {accuracy:.4f} top-1, not above {MIN_ACCURACY} ({tool_versions()})")
    blobs = {"digits-logreg": model, "digits-test": npz_bytes({"input": x_test, "labels": y_test})}
    out = {}
    for name, rel in GENERATED.items():
        out[name] = Path(out_dir) / rel
        _write(out[name], blobs[name])
    return out


def read_pins(toml_path: Path) -> dict[str, tuple[str, int]]:
    """artifact name -> (sha256, size) as pinned in a suite.toml, for the generated artifacts."""
    artifacts = tomllib.loads(toml_path.read_text(encoding="utf-8")).get("artifacts", {})
    return {n: (str(artifacts.get(n, {}).get("sha256", "")), int(artifacts.get(n, {}).get("size", -1)))
            for n in GENERATED}


def rewrite_pins(toml_path: Path, pins: dict[str, tuple[str, int]]) -> bool:
    """Rewrite the sha256/size values of the named artifacts in place, keeping everything else; True if changed."""
    text = toml_path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    index = LineIndex(text)
    for name, (sha, size) in pins.items():
        for key, pattern, value in (("sha256", r'=\s*"[^"]*"', f'= "{sha}"'), ("size", r"=\s*[0-9_]+", f"= {size}")):
            number = index.exact(f"artifacts.{name}.{key}")
            if number is None:
                raise BuildError(f"{toml_path}: no 'artifacts.{name}.{key} = ...' line to rewrite; add one")
            new, count = re.subn(pattern, value, lines[number - 1], count=1)
            if not count:
                raise BuildError(f"{toml_path}:{number}: cannot rewrite the value of artifacts.{name}.{key}")
            lines[number - 1] = new
    new_text = "".join(lines)
    if new_text == text:
        return False
    _write(toml_path, new_text.encode("utf-8"))
    return True


def check(suite_dir: Path) -> list[str]:
    """Rebuild into a temporary directory; one message per generated artifact whose bytes differ from its pin."""
    pins = read_pins(Path(suite_dir) / SUITE_FILE)
    with tempfile.TemporaryDirectory(prefix="evalsuites-build-") as tmp:
        built = build_smoke(Path(tmp))
        mismatches = []
        for name, path in built.items():
            digest, size = file_sha256(path), path.stat().st_size
            if (digest, size) != pins[name]:
                mismatches.append(f"{name}: rebuilt {GENERATED[name]} is sha256 {digest} ({size} bytes), "
                                  f"suite pins {pins[name][0] or 'nothing'} ({pins[name][1]} bytes)")
    return mismatches


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m evalsuites.build", description=(__doc__ or "").strip())
    parser.add_argument("--check", action="store_true", help="rebuild into a temp dir and compare with the pins")
    parser.add_argument("--suite-dir", type=Path, default=SMOKE_DIR, help="smoke suite directory (default: built-in)")
    args = parser.parse_args(argv)
    suite_dir: Path = args.suite_dir
    try:
        if args.check:
            mismatches = check(suite_dir)
            for line in mismatches:
                print(f"MISMATCH {line}", file=sys.stderr)
            if mismatches:
                print(f"built with {tool_versions()}; run python -m evalsuites.build to repin", file=sys.stderr)
                return 1
            print(f"ok: {', '.join(GENERATED)} match their pins in {suite_dir / SUITE_FILE}")
            return 0
        built = build_smoke(suite_dir)
        pins = {name: (file_sha256(p), p.stat().st_size) for name, p in built.items()}
        changed = rewrite_pins(suite_dir / SUITE_FILE, pins)
        suite = load_suite(suite_dir, deep=True)
    except (BuildError, SuiteError) as e:
        for problem in e.problems if isinstance(e, SuiteError) else [e]:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    for name, (sha, size) in pins.items():
        print(f"{name}: sha256 {sha} size {size}")
    print(f"{'repinned' if changed else 'pins unchanged'}: {suite.id} {suite.version} digest {suite.digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
