"""Fixtures for the generative tests: the files make install built, one onnxruntime session, the GGUF read once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalsuites import builtin_suites_dir

BUILT = builtin_suites_dir() / "terminal-genai"


def built(rel: str) -> Path:
    path = BUILT / rel
    if not path.is_file():
        pytest.fail(f"{path} is missing: make install builds it (python -m evalsuites.genai build {BUILT})")
    return path


def npz(rel: str) -> dict[str, np.ndarray]:
    with np.load(built(rel)) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def build_info() -> dict[str, Any]:
    return dict(json.loads(built("build-info.json").read_text()))


@pytest.fixture(scope="session")
def q4_session() -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    return ort.InferenceSession(str(built("models/smollm2-135m-q4.onnx")), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def gguf_model() -> Any:
    from evalsuites.genai.gguf_model import load

    return load()
