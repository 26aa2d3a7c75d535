"""labd's configuration, from the command line, with the contract's defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pilotlab.tls import ServerTls


class StartupError(Exception):
    """A start-up problem the operator can fix. Its message is one line: what is wrong and what to do."""


@dataclass
class LabConfig:
    data_dir: Path
    listen: str = "127.0.0.1:50051"
    db_url: str = ""
    metrics_listen: str | None = None
    web_listen: str | None = None  # the web console's HOST:PORT (labd.web); None: no console
    suite_dirs: list[Path] = field(default_factory=list)
    lab_name: str = "PilotLab"
    heartbeat_interval_ms: int = 5_000
    lease_ms: int = 30_000
    max_attempts: int = 3
    chunk_size: int = 1 << 20
    tls: ServerTls | None = None    # None: plaintext, allowed on loopback or with insecure
    insecure: bool = False
    blobs: str | None = None        # where result batches go: a folder (default DATA_DIR/blobs) or s3://BUCKET/PREFIX
    signing_key: Path | None = None  # the lab's signing key (default DATA_DIR/signing_key.pem); one for all replicas
    nats_url: str | None = None     # wake-up hints between replicas on one PostgreSQL (labd.hints); None: polling
    threads: int = 0                # worker threads for blocking work (the store, verification); 0: worker_threads()

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        if not self.db_url:
            self.db_url = f"sqlite:///{self.data_dir / 'lab.db'}"

    def worker_threads(self) -> int:
        """--threads, else: on SQLite, one more than the CPUs (it has one writer at a time: more threads only wait
        for it and for the GIL, and their hand-offs cost labd a fifth of its CPU per task, bench/results); on
        PostgreSQL, asyncio's own default (CPUs + 4, at most 32), whose threads also wait on the network."""
        if self.threads > 0:
            return self.threads
        cpus = os.cpu_count() or 1
        return cpus + 1 if self.db_url.startswith("sqlite") else min(32, cpus + 4)

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin.token"
