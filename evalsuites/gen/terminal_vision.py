"""The terminal-vision suite's artifacts: a digits MLP in fp32 and int8, its golden outputs, and OCR inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evalsuites.gen import images, qdq
from evalsuites.gen.common import (
    OPSET,
    BuildError,
    cross_check,
    finalize,
    npz_bytes,
    require_close,
    run_ort,
    snap,
    tool_versions,
    top1_agreement,
    uniform,
    write_all,
)
from evalsuites.gen.smoke import digits_split

GENERATED = {
    "digits-mlp-fp32": "models/digits_mlp_fp32.onnx",
    "digits-mlp-int8": "models/digits_mlp_int8.onnx",
    "digits-test": "data/digits_test.npz",
    "digits-fp32-golden": "data/digits_fp32_golden.npz",
    "digits-int8-golden": "data/digits_int8_golden.npz",
    "ocr-det-inputs": "data/ocr_det_inputs.npz",
    "ocr-rec-inputs": "data/ocr_rec_inputs.npz",
}
SEED = 20240601
HIDDEN = 256
RIDGE = 1.0
TEMPERATURE = 10.0  # logit scale baked into the output layer, so probabilities are not flat
MIN_ACCURACY = 0.95
MIN_INT8_AGREEMENT = 0.97
OCR_DET_SAMPLES, OCR_REC_SAMPLES = 4, 8
OCR_DET_SHAPE, OCR_REC_SHAPE = (640, 640), (48, 320)


def _features(x: np.ndarray, w1: np.ndarray, b1: np.ndarray) -> np.ndarray:
    return np.maximum(x.astype(np.float64) @ w1.astype(np.float64) + b1.astype(np.float64), 0.0)


def fit_mlp(x_train: np.ndarray, y_train: np.ndarray) -> tuple[np.ndarray, ...]:
    """A 64-256-10 ReLU MLP: a fixed random hidden layer and a ridge-regression output layer (closed form).

    The output weights are the unique ridge optimum, solved in float64 and snapped to 2**-14, so no BLAS or
    LAPACK rounding difference reaches the stored float32 bytes.
    """
    rs = np.random.RandomState(SEED)
    w1 = uniform(rs, (64, HIDDEN), np.sqrt(6.0 / 64) / 16.0)  # pixels are 0..16
    b1 = uniform(rs, (HIDDEN,), 0.5)
    f = _features(x_train, w1, b1)
    f1 = np.hstack([f, np.ones((len(f), 1))])
    a = f1.T @ f1 + RIDGE * np.eye(HIDDEN + 1)
    wb = np.linalg.solve(a, f1.T @ np.eye(10)[y_train]) * TEMPERATURE
    return w1, b1, snap(wb[:-1], 14), snap(wb[-1], 14)


def reference_probabilities(x: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray,
                            b2: np.ndarray) -> np.ndarray:
    """The MLP's softmax output computed in float64 (the golden reference), as float32."""
    z = _features(x, w1, b1) @ w2.astype(np.float64) + b2.astype(np.float64)
    e: np.ndarray = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)


def mlp_model(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> bytes:
    """The fp32 ONNX graph: input [N,64] -> label [N] (int64) and probabilities [N,10]."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["z0"]),
        helper.make_node("Add", ["z0", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    inits = [numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))]
    graph = helper.make_graph(
        nodes, "digits_mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return finalize(model, "pilotlab.evalsuites.terminal-vision",
                    "Digits MLP (random ReLU layer + ridge output layer), fp32")


def mlp_int8(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray, x_calib: np.ndarray,
             scheme: str = "u8u8") -> Any:
    """The MLP quantised to U8U8 QDQ (see evalsuites.gen.qdq): uint8 input and hidden activations calibrated on
    x_calib (the training split) in float64, uint8 per-channel weights, int32 biases; same outputs as fp32."""
    from onnx import TensorProto, helper

    peaks = {"input": float(np.max(x_calib)), "hidden": float(_features(x_calib, w1, b1).max())}
    g = qdq.QdqGraph(True, peaks, scheme)
    x = g.q("input", "input", signed=False)
    w, b = g.weights("fc1", w1, b1, "input", axis=1)
    h = g.q(g.node("Relu", [g.node("Gemm", [x, w, b], "fc1")], "hidden"), "hidden", signed=False)
    w, b = g.weights("fc2", w2, b2, "hidden", axis=1)
    g.node("Gemm", [h, w, b], "logits")
    g.node("Softmax", ["logits"], "probabilities", axis=1)
    g.node("ArgMax", ["logits"], "label", axis=1, keepdims=0)
    graph = helper.make_graph(
        g.nodes, "digits_mlp_int8", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])], g.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def ocr_inputs() -> tuple[np.ndarray, np.ndarray]:
    """Synthetic text pages (det, 4x3x640x640) and text lines (rec, 8x3x48x320), normalised as PP-OCRv4 expects."""
    rs = np.random.RandomState(SEED + 1)
    glyphs = images.font(rs)
    pages = np.stack([images.text_page(rs, glyphs, *OCR_DET_SHAPE) for _ in range(OCR_DET_SAMPLES)])
    lines = np.stack([images.text_line(rs, glyphs, *OCR_REC_SHAPE) for _ in range(OCR_REC_SAMPLES)])
    det = images.normalize(pages, images.IMAGENET_MEAN, images.IMAGENET_STD)
    rec = images.normalize(lines, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return det, rec


def build_terminal_vision(out_dir: Path) -> dict[str, Path]:
    """Write the terminal-vision artifacts under out_dir; returns artifact name -> file."""
    import onnx

    x_train, x_test, y_train, y_test = digits_split()
    weights = fit_mlp(x_train, y_train)
    fp32 = mlp_model(*weights)
    w1, b1, w2, b2 = weights
    int8_model = mlp_int8(w1, b1, w2, b2, x_train)
    int8 = finalize(int8_model, "pilotlab.evalsuites.terminal-vision",
                    "Digits MLP quantised to U8U8 QDQ: uint8 per-channel weights (zero point 128), uint8 activations "
                    "calibrated on the training split")
    golden = reference_probabilities(x_test, *weights)
    exact8 = qdq.evaluate(onnx.load_from_string(int8), {"input": x_test})
    golden8 = {"probabilities": exact8["probabilities"].mid.astype(np.float32)}
    got32 = run_ort(fp32, {"input": x_test})
    require_close("fp32 digits MLP vs its float64 reference", got32["probabilities"], golden, 1e-5)
    for name, labels in (("fp32", got32["label"]), ("int8 (exact reference)", exact8["label"].mid)):
        accuracy = float(np.mean(labels == y_test))
        if accuracy < MIN_ACCURACY:
            raise BuildError(f"{name} digits MLP scores {accuracy:.4f} top-1, below {MIN_ACCURACY} ({tool_versions()})")
    agreement = top1_agreement(golden8["probabilities"], golden)
    if agreement < MIN_INT8_AGREEMENT:
        raise BuildError(f"int8 digits MLP agrees with fp32 on {agreement:.4f} of samples ({tool_versions()})")
    cross_check("int8 digits MLP", int8, {"input": x_test}, exact8, golden8)
    det, rec = ocr_inputs()
    blobs = {
        "digits-mlp-fp32": fp32,
        "digits-mlp-int8": int8,
        "digits-test": npz_bytes({"input": x_test, "labels": y_test}, compress=True),
        "digits-fp32-golden": npz_bytes({"probabilities": golden}, compress=True),
        "digits-int8-golden": npz_bytes(golden8, compress=True),
        "ocr-det-inputs": npz_bytes({"x": det}, compress=True),
        "ocr-rec-inputs": npz_bytes({"x": rec}, compress=True),
    }
    return write_all(out_dir, GENERATED, blobs)
