"""What a correct agent sends for one task, built by hand: every result set the lab assigned, each timed run inside
its reported window, the exact effective settings. Tests forge an attempt by taking parts of it away."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pilotlab import domain as d
from pilotlab.compliance import Assigned, latency_kinds, required_sets
from pilotlab.samples import batch_signing_bytes
from pilotlab.tasks import effective, requested

Sets = dict[str, dict[str, np.ndarray]]
LAT_NS = 1_000_000  # every query takes 1 ms
START_NS = 9_000_000_000_000  # a perf_counter reading
GAP_NS = 50 * LAT_NS  # a fresh executor between timed runs
AUDIT_QUERIES = 100


def assigned_of(a: d.Assignment) -> Assigned:
    """The assignment as a device receives it, in the lab's terms (the agent's one effective() step)."""
    return Assigned(a.scenario, effective(requested(a.scenario, a.settings)).to_dict(), a.execution_provider,
                    str((a.accuracy or {}).get("metric", "top1")) if a.accuracy else None, a.golden is not None)


def _set(t_ns: np.ndarray, sample_index: np.ndarray, value: np.ndarray, aux: np.ndarray | None = None
         ) -> dict[str, np.ndarray]:
    n = t_ns.size
    return {"index": np.arange(n, dtype=np.int64), "sample_index": sample_index.astype(np.int64),
            "t_ns": t_ns.astype(np.int64), "value": value.astype(np.int64),
            "aux": np.zeros(n, dtype=np.int64) if aux is None else aux.astype(np.int64)}


def results(a: Assigned, labels: np.ndarray, queries: int = 600) -> tuple[Sets, d.Observations]:
    """Every assigned set (conformance aside) with correct predictions, and the timed runs' windows."""
    sets: Sets = {}
    windows = []
    t = START_NS
    samples = np.arange(queries) % labels.size
    for kind in latency_kinds(a.scenario, a.settings):
        issue = t + np.arange(queries, dtype=np.int64) * LAT_NS
        scheduled = issue if a.scenario in ("server", "periodic") else None
        sets[kind] = _set(issue, samples, np.full(queries, LAT_NS), scheduled)
        windows.append({"kind": kind, "start_ns": int(t), "end_ns": int(issue[-1] + LAT_NS)})
        t = int(issue[-1]) + LAT_NS + GAP_NS
    audit = t + np.arange(AUDIT_QUERIES, dtype=np.int64) * LAT_NS
    every = np.arange(labels.size)
    extra = {"audit-same": _set(audit, np.zeros(AUDIT_QUERIES), np.full(AUDIT_QUERIES, LAT_NS)),
             "audit-varied": _set(audit, samples[:AUDIT_QUERIES], np.full(AUDIT_QUERIES, LAT_NS)),
             "perf-prediction": _set(audit, samples[:AUDIT_QUERIES], labels[samples[:AUDIT_QUERIES]]),
             "prediction": _set(np.zeros(labels.size), every, labels)}
    sets |= {kind: extra[kind] for kind in required_sets(a) if kind in extra}
    return sets, d.Observations(windows=windows)


def batches(attempt_id: str, sets: Sets, key: Ed25519PrivateKey | None = None) -> list[d.ResultBatch]:
    """One batch per set, numbered from 0, signed with the device's key when it registered one."""
    out = []
    for seq, (kind, a) in enumerate(sets.items()):
        b = d.ResultBatch(attempt_id=attempt_id, seq=seq, kind=kind, index=a["index"].tolist(),
                          sample_index=a["sample_index"].tolist(), t_ns=a["t_ns"].tolist(),
                          value=a["value"].tolist(), aux=a["aux"].tolist(),
                          fvalue=a["fvalue"].tolist() if "fvalue" in a else [])
        if key is not None:
            arrays: dict[str, list[int] | list[float]] = {
                "index": b.index, "sample_index": b.sample_index, "t_ns": b.t_ns, "value": b.value, "aux": b.aux,
                "fvalue": b.fvalue}
            b.signature = key.sign(batch_signing_bytes(attempt_id, seq, kind, arrays))
        out.append(b)
    return out


def finish(attempt_id: str, a: Assigned, n_batches: int, obs: d.Observations) -> d.AttemptFinish:
    """The finish a correct agent sends: the exact effective settings, the assigned provider, its observations."""
    return d.AttemptFinish(attempt_id, d.Outcome.OK, batches=n_batches, effective_settings=dict(a.settings),
                           execution_provider=a.execution_provider, observations=obs)
