"""The energy arithmetic lives in the shared core (pilotlab.energy) so the lab recomputes with the same code."""

from pilotlab.energy import (
    ESTIMATE_METHOD,
    energy_in_window,
    estimate_cpu_energy,
    net_energy,
    per_inference,
    window_valid,
)

__all__ = ["ESTIMATE_METHOD", "energy_in_window", "estimate_cpu_energy", "net_energy", "per_inference",
           "window_valid"]
