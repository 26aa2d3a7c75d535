"""What this device can do: platform, CPU and its instruction-set features, memory, onnxruntime and its
providers, energy sensors."""

from __future__ import annotations

import os
import platform
import socket

from agents import AGENT_VERSION
from agents.cpuinfo import cpu_flags, cpu_model, proc_root
from agents.meters.discover import discover
from pilotlab.domain import Capabilities


def _memory_bytes() -> int:
    try:
        for line in (proc_root() / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def probe(power_meter: str | None = None, slots: int = 1) -> Capabilities:
    import onnxruntime as ort

    return Capabilities(
        os=platform.system(), os_release=platform.release(), arch=platform.machine(), cpu_model=cpu_model(),
        cpu_cores=os.cpu_count() or 0, memory_bytes=_memory_bytes(), onnxruntime_version=ort.__version__,
        providers=list(ort.get_available_providers()), energy_sensors=discover(power_meter),
        agent_version=AGENT_VERSION, hostname=socket.gethostname(), slots=slots,
        python_version=platform.python_version(), cpu_flags=cpu_flags(),
    )
