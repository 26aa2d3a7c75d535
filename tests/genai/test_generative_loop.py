"""The device-side generate loop: greedy tokens equal to the numpy reference, raw timestamps, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from agents.harness.generative import Decoder, NotADecoder, generate
from tests.genai.conftest import npz


def test_greedy_decode_equals_the_numpy_reference(q4_session: Any) -> None:
    decoder = Decoder(q4_session)
    for length, new in ((40, 16), (128, 8)):
        prompts = npz(f"data/prompts-{length}.npz")["input_ids"]
        reference = npz(f"data/prompts-{length}-reference.npz")["generated_ids"]
        out = decoder.generate(prompts[0], new)
        assert out.token_ids.tolist() == reference[0, :new].tolist(), f"{length}-token prompt"


def test_timestamps_are_raw_and_monotone(q4_session: Any) -> None:
    prompt = npz("data/prompts-40.npz")["input_ids"][1]
    out = generate(q4_session, prompt, 6)
    assert out.token_ids.dtype == np.int64 and out.token_ids.shape == (6,)
    assert out.t_token_ns.dtype == np.int64 and out.t_token_ns.shape == (6,)
    assert out.t_issue_ns < out.t_token_ns[0]
    assert np.all(np.diff(out.t_token_ns) > 0)


def _session(model: Any) -> Any:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_a_model_that_is_not_a_decoder_is_refused(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    plain = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    plain.ir_version = 8
    with pytest.raises(NotADecoder) as e:
        Decoder(_session(plain))
    message = str(e.value)
    assert "\n" not in message and "input_ids" in message


def test_a_decoder_without_its_cache_outputs_is_refused() -> None:
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "s"])
    keep = helper.make_tensor_value_info("logits_to_keep", TensorProto.INT64, [1])
    past = [helper.make_tensor_value_info(f"past_key_values.0.{k}", TensorProto.FLOAT, [1, 2, "p", 4])
            for k in ("key", "value")]
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "k", 8])
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["logits"])]
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, 1, 8])
    graph = helper.make_graph(nodes, "g", [ids, keep, *past], [logits], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(NotADecoder, match=r"output present\.0\.key is missing"):
        Decoder(_session(model))
