"""The CPU as the OS describes it in /proc/cpuinfo: its model name and its instruction-set features.

Environment `PILOTLAB_PROC_ROOT` (default `/proc`) is where cpuinfo and meminfo are looked for, as
`PILOTLAB_SYSFS_ROOT` is for sysfs; tests point it at fake trees. Where there is no cpuinfo (macOS, Windows),
the features are an empty list and the model falls back to what `platform` knows.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The lines that name the features: x86 "flags", ARM "Features" (s390 "features"). Not "vmx flags" or "bugs".
_FLAG_KEYS = ("flags", "features")
_MODEL_KEYS = ("model name", "hardware", "cpu model")


def proc_root() -> Path:
    return Path(os.environ.get("PILOTLAB_PROC_ROOT", "/proc"))


def read_cpuinfo(path: Path | None = None) -> str:
    """The text of cpuinfo, or "" where the OS has none or it cannot be read."""
    try:
        return (path or proc_root() / "cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _fields(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.append((key.strip().lower(), value.strip()))
    return out


def parse_flags(text: str) -> list[str]:
    """Features every listed processor has (a task may run on any core), sorted, lower case, each once."""
    common: set[str] | None = None
    for key, value in _fields(text):
        if key in _FLAG_KEYS:
            found = {f.lower() for f in value.split()}
            common = found if common is None else common & found
    return sorted(common or ())


def parse_model(text: str) -> str:
    """x86 "model name", ARM "Hardware", or an old 32-bit ARM kernel's "Processor : ARMv7 ..."."""
    for key, value in _fields(text):
        if value and (key in _MODEL_KEYS or (key == "processor" and value.lower().startswith("arm"))):
            return value
    return ""


def cpu_flags(path: Path | None = None) -> list[str]:
    """The CPU's instruction-set features, e.g. `avx2`, `avx512_vnni` (x86) or `asimddp`, `i8mm` (ARM)."""
    return parse_flags(read_cpuinfo(path))


def cpu_model(path: Path | None = None) -> str:
    return parse_model(read_cpuinfo(path)) or platform.processor() or platform.machine()
