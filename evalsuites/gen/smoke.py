"""The smoke suite's artifacts: a logistic regression on scikit-learn's digits and the held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evalsuites.gen.common import BuildError, npz_bytes, tool_versions, write_all

MODEL_REL = "models/digits_logreg.onnx"
DATA_REL = "data/digits_test.npz"
# artifact name in suite.toml -> file path relative to the suite directory
GENERATED = {"digits-logreg": MODEL_REL, "digits-test": DATA_REL}
MIN_ACCURACY = 0.9
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


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
    return bytes(model.SerializeToString(deterministic=True))


def top1_accuracy(model: bytes, x: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of an ONNX model's "label" output, run with onnxruntime on CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (predicted,) = session.run(["label"], {"input": x})
    return float(np.mean(predicted == labels))


def build_smoke(out_dir: Path) -> dict[str, Path]:
    """Write the smoke model and dataset under out_dir (models/, data/); returns artifact name -> file."""
    x_train, x_test, y_train, y_test = digits_split()
    model = model_bytes(x_train, y_train)
    accuracy = top1_accuracy(model, x_test, y_test)
    if accuracy <= MIN_ACCURACY:
        raise BuildError(f"digits model scores {accuracy:.4f} top-1, not above {MIN_ACCURACY} ({tool_versions()})")
    return write_all(out_dir, GENERATED, {"digits-logreg": model,
                                          "digits-test": npz_bytes({"input": x_test, "labels": y_test})})
