"""Why a figure in a report is unavailable, invalid or only an estimate, in one sentence each, told from what the lab
already holds: the task's metrics and observations and the device's enrolled energy sensors and tags
(report.json `tasks[].figure_notes`)."""

from __future__ import annotations

from typing import Any

METER_KINDS = "RAPL zone, NVIDIA GPU (NVML), hwmon power rail or battery fuel gauge"


def _names(sensors: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['name']} ({s['kind']})" for s in sensors)


def no_meter(sensors: list[dict[str, Any]], tags: dict[str, str]) -> str:
    """Why a device measured no energy: what it enrolled with, and whether an estimate was possible."""
    readable = [s for s in sensors if s.get("readable")]
    if not sensors:
        why = f"the device has no energy meter: the agent found no {METER_KINDS} and was not given --power-meter"
    elif not readable:
        why = (f"the device's energy sensors ({_names(sensors)}) are not readable by the agent (RAPL's energy_uj is "
               "root-only by default): grant the agent read access or attach a bench meter with --power-meter")
    elif any(s["kind"] == "scpi" for s in readable):
        scpi = next(s for s in readable if s["kind"] == "scpi")
        why = (f"the bench power meter {scpi['name']} did not answer when the agent started, so no meter was sampled "
               "(the agent's log names the error)")
    else:
        why = (f"the device's sensors ({_names(readable)}) failed their first read when the agent started, so no "
               "meter was sampled (the agent's log names the error)")
    if not tags.get("tdp_w"):
        why += "; no tdp_w tag allows a CPU-time estimate either"
    return why


def energy(metrics: dict[str, Any], observed: dict[str, Any], sensors: list[dict[str, Any]],
           tags: dict[str, str]) -> str | None:
    """Why the energy figure is unavailable, invalid or an estimate; None when it is a valid measurement."""
    e = metrics.get("energy")
    if not e:
        return None
    source = str(e.get("source", ""))
    if source == "unavailable":
        if not observed.get("meter"):
            return no_meter(sensors, tags)
        errors = "; ".join(observed.get("errors") or [])
        return (f"the meter {observed['meter']} gave no samples during the timed runs"
                + (f": {errors}" if errors else ""))
    if source.startswith("estimated:"):
        basis = e.get("basis") or {}
        return (f"an estimate, not a measurement: {basis.get('cpu_seconds', 0):.3g} CPU seconds × the TDP share of "
                f"one core ({basis.get('tdp_w')} W / {basis.get('cores')} cores); estimates never count toward a "
                "criterion")
    if e.get("valid") is False:
        reasons = "; ".join(e.get("invalid_reasons") or []) or "no reason recorded"
        return f"measured by {e.get('meter')} but not valid: {reasons}"
    return None


def idle(metrics: dict[str, Any], observed: dict[str, Any]) -> str | None:
    """Why a valid energy figure has no net-of-idle value."""
    e = metrics.get("energy") or {}
    if not e.get("valid") or e.get("net_joules_per_inference") is not None:
        return None
    if e.get("idle_note"):
        return str(e["idle_note"])
    if observed.get("idle_errors"):
        return "no idle baseline: the meter failed while idle: " + "; ".join(observed["idle_errors"])
    return "no idle baseline was taken before the timed runs"


def figure_notes(task: dict[str, Any], sensors: list[dict[str, Any]], tags: dict[str, str]) -> dict[str, str]:
    """{figure: why} for each of the task's figures that is unavailable, invalid or an estimate."""
    metrics, obs = task.get("metrics") or {}, task.get("observations") or {}
    observed = obs.get("energy") or {}
    notes: dict[str, str] = {}
    if task.get("status") != "completed" or not metrics:
        reason = task.get("reason") or "no reason recorded"
        notes["all"] = f"no figures: the task ended {task.get('status')} ({reason})"
        return notes
    for figure, why in (("energy", energy(metrics, observed, sensors, tags)), ("energy.idle", idle(metrics, observed))):
        if why:
            notes[figure] = why
    if not metrics.get("accuracy"):
        notes["accuracy"] = ("not measured: the task assigns no accuracy metric" if not task.get("accuracy_metric")
                             else "not measured: the device returned no predictions to grade")
    validity = metrics.get("validity") or {}
    if validity.get("valid") is False:
        notes["validity"] = "the measurement is invalid: " + "; ".join(validity.get("reasons") or [])
    thermal = (obs.get("executor") or {}).get("thermal_baseline") or {}
    if thermal and not thermal.get("available", True):
        notes["thermal"] = f"not recorded: {thermal.get('reason') or 'no thermal sensor'}"
    return notes
