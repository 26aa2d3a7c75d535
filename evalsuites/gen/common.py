"""Shared helpers of the artifact builders: byte-stable .npz and ONNX writing, seeded data, cross-checks."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_TOOLS = ("numpy", "scipy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "rapidocr-onnxruntime")
PRODUCER = "pilotlab-evalsuites"
IR_VERSION = 8  # opset 17 needs IR 8; older runtimes refuse newer IR versions
OPSET = 17


class BuildError(RuntimeError):
    """The build cannot produce trustworthy artifacts; the message says why."""


BUILT_WITH = Path(__file__).resolve().parents[1] / "built-with.json"  # the toolchain that made the committed pins


def toolchain() -> dict[str, str]:
    """Versions of the libraries whose output the pins depend on."""
    out = {}
    for dist in _TOOLS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    out["zlib"] = zlib.ZLIB_RUNTIME_VERSION
    return out


def tool_versions() -> str:
    """Versions of the libraries whose output the pins depend on, for messages."""
    return ", ".join(f"{k} {v}" for k, v in toolchain().items())


def record_toolchain() -> None:
    """Write the installed toolchain to built-with.json: the pins were just rebuilt with it."""
    import json

    write_file(BUILT_WITH, (json.dumps(toolchain(), indent=2, sort_keys=True) + "\n").encode())


def toolchain_differences() -> list[str]:
    """How the installed toolchain differs from the one recorded in built-with.json ('onnx 1.23.2, pins built with
    1.22.0'); empty when they match or nothing was recorded."""
    import json

    try:
        recorded = json.loads(BUILT_WITH.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    now = toolchain()
    return [f"{k} {now.get(k, 'missing')}, pins built with {v}" for k, v in sorted(recorded.items())
            if now.get(k, "missing") != v]


def npz_bytes(arrays: dict[str, np.ndarray], *, compress: bool = False) -> bytes:
    """An .npz np.load reads normally, with fixed member order, timestamps and attributes.

    compress=True deflates each member (level 9); the bytes then also depend on the zlib version.
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = method
            info.create_system = 3
            info.external_attr = 0o644 << 16
            if compress:
                zf.writestr(info, member.getvalue(), compresslevel=9)
            else:
                zf.writestr(info, member.getvalue())
    return buf.getvalue()


def write_file(path: Path, data: bytes) -> None:
    """Atomically write data to path (mode 644), creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    path.chmod(0o644)


def write_all(out_dir: Path, files: dict[str, str], blobs: dict[str, bytes]) -> dict[str, Path]:
    """Write each artifact's bytes to out_dir/<relative file>; returns artifact name -> file."""
    out = {}
    for name, rel in files.items():
        out[name] = Path(out_dir) / rel
        write_file(out[name], blobs[name])
    return out


def finalize(model: Any, domain: str, doc: str) -> bytes:
    """Fix every non-weight byte of a model (producer, IR version, opsets, doc), check it and serialise it."""
    import onnx

    opsets: dict[str, int] = {}
    for entry in model.opset_import:
        opsets[entry.domain] = max(opsets.get(entry.domain, 0), entry.version)
    del model.opset_import[:]
    for name, version in sorted(opsets.items()):
        model.opset_import.append(onnx.helper.make_opsetid(name, version))
    model.ir_version = IR_VERSION
    model.producer_name = PRODUCER
    model.producer_version = "1"
    model.domain = domain
    model.model_version = 1
    model.doc_string = doc + "; regenerate with python -m evalsuites.build"
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString(deterministic=True))


def uniform(rs: np.random.RandomState, shape: tuple[int, ...], bound: float) -> np.ndarray:
    """float32 samples uniform in [-bound, bound): RandomState's uniform stream is bit-exact on every platform."""
    return ((rs.random_sample(shape) * 2.0 - 1.0) * bound).astype(np.float32)


def snap(x: np.ndarray, bits: int) -> np.ndarray:
    """Round to multiples of 2**-bits, as float32, so last-bit differences of libm or BLAS cannot reach the bytes."""
    scale = float(2**bits)
    return (np.round(np.asarray(x, dtype=np.float64) * scale) / scale).astype(np.float32)


def run_ort(model: bytes, feeds: dict[str, np.ndarray], *, per_sample: bool = False) -> dict[str, np.ndarray]:
    """Run a model with onnxruntime on CPU (one thread); output name -> array. per_sample=True issues one query
    per sample (batch 1) and stacks the outputs, as agents measure conformance."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    if not per_sample:
        return dict(zip(names, session.run(names, feeds), strict=True))
    n = len(next(iter(feeds.values())))
    rows = [session.run(names, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)]
    return {name: np.concatenate([r[j] for r in rows]) for j, name in enumerate(names)}


def require_close(what: str, got: np.ndarray, want: np.ndarray, atol: float) -> float:
    """Largest absolute difference between got and want; BuildError if it exceeds atol."""
    err = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    if not err <= atol:
        raise BuildError(f"{what}: max abs difference {err:.3g} exceeds {atol:g} ({tool_versions()})")
    return err


def top1_agreement(got: np.ndarray, want: np.ndarray) -> float:
    """Fraction of rows whose argmax over the last axis agrees."""
    return float(np.mean(np.argmax(got, axis=-1) == np.argmax(want, axis=-1)))


def cross_check(what: str, model: bytes, feeds: dict[str, np.ndarray], bounds: Any,
                golden: dict[str, np.ndarray]) -> None:
    """Warn (stderr) when this machine's onnxruntime leaves the reference intervals of an int8 model.

    Only a warning: the artifacts follow from the exact reference, not from this machine's kernels; a kernel outside
    the intervals is what the suite's conformance criteria exist to catch on a device.
    """
    import sys

    from pilotlab.conformance import measure_conformance

    got = run_ort(model, feeds)
    outside = [n for n in golden if not np.all((got[n] >= bounds[n].lo - np.abs(bounds[n].lo) * 2**-23)
                                              & (got[n] <= bounds[n].hi + np.abs(bounds[n].hi) * 2**-23))]
    if outside:
        print(f"warning: {what}: this machine's onnxruntime leaves the correct-kernel intervals of "
              f"{', '.join(outside)}: {measure_conformance(got, golden)} ({tool_versions()})", file=sys.stderr)
