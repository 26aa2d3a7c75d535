"""The agent's configuration, from its command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pilotlab.tls import ClientTls


@dataclass
class AgentConfig:
    lab: str
    token: str
    name: str
    device_class: str
    tags: dict[str, str] = field(default_factory=dict)
    region: str = ""
    work_dir: Path = Path("lab-agent-work")
    power_meter: str | None = None
    slots: int = 1
    batch_size: int = 4096          # raw samples per result batch
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_task_seconds: float = 0.0   # the agent's cap on every task's timeout_s; 0 = the suite's
    max_task_memory_mb: int = 0     # the agent's cap on every executor's memory; 0 = 80% of the device's RAM
    isolate_cpus: bool = True       # with >= 4 CPUs, keep the agent on one and the executors on the rest
    tls: ClientTls = field(default_factory=ClientTls)  # --ca, --tls-cert/--tls-key, --insecure

    @property
    def cache_dir(self) -> Path:
        return self.work_dir / "cache"

    @property
    def exec_dir(self) -> Path:
        return self.work_dir / "exec"

    @property
    def outbox_dir(self) -> Path:
        return self.work_dir / "outbox"
