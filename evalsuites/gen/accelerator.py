"""The accelerator-throughput suite's artifacts: a convnet in fp32, fp16 and int8, images, golden outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evalsuites.gen import convnet, images, qdq
from evalsuites.gen.common import (
    BuildError,
    cross_check,
    finalize,
    npz_bytes,
    require_close,
    run_ort,
    tool_versions,
    top1_agreement,
    write_all,
)

GENERATED = {
    "convnet-fp32": "models/convnet_fp32.onnx",
    "convnet-fp16": "models/convnet_fp16.onnx",
    "convnet-int8": "models/convnet_int8.onnx",
    "scenes": "data/scenes.npz",
    "convnet-golden": "data/convnet_golden.npz",
    "convnet-int8-golden": "data/convnet_int8_golden.npz",
}
SEED = 20240603
SAMPLES = 64
_DOMAIN = "pilotlab.evalsuites.accelerator-throughput"
# Build-time sanity bounds (the suite's own conformance criteria are looser or equal).
_MAX_FP16_ERR, _MIN_INT8_AGREEMENT = 0.05, 0.95


def scenes() -> np.ndarray:
    """SAMPLES synthetic 64x64 scenes, normalised with ImageNet mean/std: float32 [SAMPLES,3,64,64]."""
    rs = np.random.RandomState(SEED)
    raw = np.stack([images.shapes_scene(rs, convnet.SIZE) for _ in range(SAMPLES)])
    return images.normalize(raw, images.IMAGENET_MEAN, images.IMAGENET_STD)


def build_accelerator(out_dir: Path) -> dict[str, Path]:
    """Write the accelerator-throughput artifacts under out_dir; returns artifact name -> file."""
    x = scenes()
    params = convnet.make_params(np.random.RandomState(SEED + 1))
    feats, peaks = convnet.features(x, params)
    params = convnet.center_head(params, feats)
    golden = convnet.head(feats, params)
    fp32_model = convnet.convnet(params)
    fp32 = finalize(fp32_model, _DOMAIN, "Convnet 3x(Conv3x3+Relu+MaxPool)+GAP+Gemm, fixed-seed weights, fp32")
    fp16 = finalize(convnet.to_fp16(fp32_model), _DOMAIN,
                    "The fp32 convnet with float16 weights and compute; float32 input and outputs via Cast")
    int8_model = convnet.convnet(params, quantize=True, peaks=peaks)
    int8 = finalize(int8_model, _DOMAIN,
                    "The fp32 convnet quantised to U8U8 QDQ: uint8 per-channel weights (zero point 128), uint8 "
                    "activations calibrated on the suite's scenes")
    got = {name: run_ort(blob, {convnet.INPUT: x}) for name, blob in (("fp32", fp32), ("fp16", fp16))}
    require_close("fp32 convnet vs its float64 reference", got["fp32"][convnet.LOGITS], golden[convnet.LOGITS], 1e-3)
    require_close("fp16 convnet vs the fp32 reference", got["fp16"][convnet.PROBS], golden[convnet.PROBS],
                  _MAX_FP16_ERR)
    exact8 = int8_reference(int8, x)
    golden8 = {k: exact8[k].mid.astype(np.float32) for k in (convnet.LOGITS, convnet.PROBS)}
    agreement = top1_agreement(golden8[convnet.LOGITS], golden[convnet.LOGITS])
    if agreement < _MIN_INT8_AGREEMENT:
        raise BuildError(f"int8 convnet agrees with fp32 on {agreement:.3f} of samples ({tool_versions()})")
    cross_check("int8 convnet", int8, {convnet.INPUT: x}, exact8, golden8)
    blobs = {"convnet-fp32": fp32, "convnet-fp16": fp16, "convnet-int8": int8,
             "scenes": npz_bytes({convnet.INPUT: x}, compress=True), "convnet-golden": npz_bytes(golden),
             "convnet-int8-golden": npz_bytes(golden8)}
    return write_all(out_dir, GENERATED, blobs)


def int8_reference(model: bytes, x: np.ndarray) -> dict[str, qdq.Iv]:
    """The int8 convnet's outputs by the operators' semantics, with correct-kernel intervals (evalsuites.gen.qdq)."""
    import onnx

    return qdq.evaluate(onnx.load_from_string(model), {convnet.INPUT: x})
