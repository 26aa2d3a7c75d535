"""The robot-control suite's artifacts: a locomotion policy MLP (48 -> 12), trotting observations, golden actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evalsuites.gen.common import OPSET, finalize, npz_bytes, require_close, run_ort, snap, uniform, write_all

GENERATED = {
    "policy-mlp": "models/locomotion_policy.onnx",
    "observations": "data/observations.npz",
    "policy-golden": "data/policy_golden.npz",
}
SEED = 20240602
LAYERS = (48, 256, 128, 12)
SAMPLES = 512
GOLDEN_SAMPLES = 128
CONTROL_HZ = 50.0
GAIT_HZ = 2.0
# Legged-robot observation layout (48): base linear velocity 3, angular velocity 3, projected gravity 3,
# velocity command 3, joint position offsets 12, joint velocities 12, previous actions 12.
_OBS_SCALES = {"lin_vel": 2.0, "ang_vel": 0.25, "dof_vel": 0.05}
_LEG_PHASE = np.array([0.0, np.pi, np.pi, 0.0])  # trot: diagonal legs in phase
_JOINT_AMPLITUDE = np.array([0.08, 0.45, 0.65])  # hip, thigh, calf (rad)


def observations() -> np.ndarray:
    """SAMPLES consecutive 50 Hz observations of a trotting quadruped with changing commands, as float32.

    Values are snapped to 2**-16 (like a fixed-point sensor bus) so libm differences cannot change a byte.
    """
    rs = np.random.RandomState(SEED)
    t = np.arange(SAMPLES) / CONTROL_HZ
    commands = np.repeat(rs.random_sample((SAMPLES // 128, 3)) * [2.0, 1.0, 2.0] - [0.5, 0.5, 1.0], 128, axis=0)
    phase = 2 * np.pi * GAIT_HZ * t[:, None] + _LEG_PHASE[None, :]  # (T, 4 legs)
    joint = (np.sin(phase)[:, :, None] * _JOINT_AMPLITUDE[None, None, :]).reshape(SAMPLES, 12)
    joint_vel = (np.cos(phase)[:, :, None] * _JOINT_AMPLITUDE * 2 * np.pi * GAIT_HZ).reshape(SAMPLES, 12)
    noise = (rs.random_sample((SAMPLES, 48)) * 2 - 1) * 0.02
    lin_vel = commands.copy()
    lin_vel[:, 2] = 0.05 * np.sin(4 * np.pi * GAIT_HZ * t)
    ang_vel = np.stack([0.2 * np.sin(phase[:, 0]), 0.15 * np.cos(phase[:, 0]), commands[:, 2]], axis=1)
    roll, pitch = 0.03 * np.sin(phase[:, 0]), 0.02 * np.cos(phase[:, 1])
    gravity = np.stack([np.sin(pitch), -np.sin(roll) * np.cos(pitch), -np.cos(roll) * np.cos(pitch)], axis=1)
    previous = np.vstack([np.zeros((1, 12)), joint[:-1] / 0.25])
    obs = np.hstack([lin_vel * _OBS_SCALES["lin_vel"], ang_vel * _OBS_SCALES["ang_vel"], gravity,
                     commands * [2.0, 2.0, 0.25], joint, joint_vel * _OBS_SCALES["dof_vel"], previous]) + noise
    return snap(obs, 16)


def weights() -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) per layer: He-uniform hidden layers, a small last layer so actions start inside tanh's range."""
    rs = np.random.RandomState(SEED + 1)
    out = []
    for k, (fan_in, fan_out) in enumerate(zip(LAYERS[:-1], LAYERS[1:], strict=True)):
        last = k == len(LAYERS) - 2
        bound = np.sqrt(1.0 / fan_in) if last else np.sqrt(6.0 / fan_in)
        out.append((uniform(rs, (fan_in, fan_out), bound), uniform(rs, (fan_out,), 0.05)))
    return out


def reference_actions(obs: np.ndarray, params: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The policy computed in float64 (Elu hidden layers, Tanh output), as float32: the golden reference."""
    h = obs.astype(np.float64)
    for k, (w, b) in enumerate(params):
        h = h @ w.astype(np.float64) + b.astype(np.float64)
        h = np.tanh(h) if k == len(params) - 1 else np.where(h > 0, h, np.expm1(np.minimum(h, 0)))
    return h.astype(np.float32)


def policy_model(params: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """The ONNX policy: obs [N,48] -> actions [N,12] via Gemm+Elu, Gemm+Elu, Gemm+Tanh."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], "obs"
    for k, (w, b) in enumerate(params):
        inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(b, f"b{k}")]
        last = k == len(params) - 1
        nodes.append(helper.make_node("Gemm", [x, f"w{k}", f"b{k}"], [f"z{k}"]))
        x = "actions" if last else f"h{k}"
        nodes.append(helper.make_node("Tanh", [f"z{k}"], [x]) if last else
                     helper.make_node("Elu", [f"z{k}"], [x], alpha=1.0))
    graph = helper.make_graph(
        nodes, "locomotion_policy", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["N", LAYERS[0]])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, ["N", LAYERS[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return finalize(model, "pilotlab.evalsuites.robot-control",
                    "Locomotion policy MLP 48-256-128-12 (Elu, Elu, Tanh), fixed-seed weights")


def build_robot_control(out_dir: Path) -> dict[str, Path]:
    """Write the robot-control artifacts under out_dir; returns artifact name -> file."""
    obs, params = observations(), weights()
    model = policy_model(params)
    golden = reference_actions(obs[:GOLDEN_SAMPLES], params)
    require_close("policy vs its float64 reference", run_ort(model, {"obs": obs})["actions"][:GOLDEN_SAMPLES],
                  golden, 1e-5)
    blobs = {"policy-mlp": model, "observations": npz_bytes({"obs": obs}),
             "policy-golden": npz_bytes({"actions": golden})}
    return write_all(out_dir, GENERATED, blobs)
