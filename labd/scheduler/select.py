"""Device selector expressions, e.g. `class=robot and providers contains CUDAExecutionProvider and memory_gb >= 4`
or `class=smart-terminal and cpu_flags has avx512_vnni`: list-valued fields (providers, energy_sensors, cpu_flags)
match with `contains` or its synonym `has`; the words `and`, `contains` and `has` are case-insensitive."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pilotlab import domain as d

_CLAUSE = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(>=|<=|!=|=|>|<|\s+(?:contains|has)\s+)\s*(.+?)\s*$", re.IGNORECASE)
_NUMERIC_OPS = {">=": float.__ge__, "<=": float.__le__, ">": float.__gt__, "<": float.__lt__}
# Parsing takes time quadratic in runs of spaces (the regular expressions backtrack over them): a bound on the length
# keeps a hostile selector from holding labd for minutes, and no real one comes near it.
MAX_LENGTH = 1024


FIELDS = ("name", "class", "region", "status", "os", "arch", "cpu_cores", "memory_gb", "providers",
          "onnxruntime_version", "energy_sensors", "cpu_flags")
_LOWER_CASE = ("cpu_flags",)  # the OS names CPU features in lower case; `cpu_flags has AVX2` means avx2


def _field(dev: d.Device, key: str) -> Any:
    caps = dev.capabilities
    if key.startswith(("tag.", "tags.")):
        return dev.tags.get(key.split(".", 1)[1])
    table: dict[str, Callable[[], Any]] = {
        "name": lambda: dev.name, "class": lambda: dev.device_class, "region": lambda: dev.region,
        "status": lambda: dev.status, "os": lambda: caps.os, "arch": lambda: caps.arch,
        "cpu_cores": lambda: caps.cpu_cores, "memory_gb": lambda: caps.memory_bytes / 2**30,
        "providers": lambda: caps.providers, "onnxruntime_version": lambda: caps.onnxruntime_version,
        "energy_sensors": lambda: [s.kind for s in caps.energy_sensors], "cpu_flags": lambda: caps.cpu_flags,
    }
    if key not in table:
        raise d.Invalid(f"unknown selector field {key!r}; use one of {', '.join(sorted(table))}, tag.KEY")
    return table[key]()


def parse(expr: str) -> Callable[[d.Device], bool]:
    """Compile a selector: clauses joined by `and`; raises Invalid naming the clause it cannot read."""
    if len(expr) > MAX_LENGTH:
        raise d.Invalid(f"the selector is {len(expr)} characters long; write one of at most {MAX_LENGTH}")
    clauses = [c for c in re.split(r"\s+and\s+", expr.strip(), flags=re.IGNORECASE) if c]
    if not clauses:
        raise d.Invalid("empty selector; write e.g. --select 'class=robot and region=eu'")
    tests: list[Callable[[d.Device], bool]] = []
    for clause in clauses:
        m = _CLAUSE.match(clause)
        if not m:
            raise d.Invalid(f"cannot read selector clause {clause!r}; write KEY=VALUE, KEY>=N or KEY contains X")
        key, op, value = m.group(1), m.group(2).strip().lower(), m.group(3).strip().strip("'\"")
        op = "contains" if op == "has" else op
        value = value.lower() if key in _LOWER_CASE else value
        if key not in FIELDS and not key.startswith(("tag.", "tags.")):
            raise d.Invalid(f"unknown selector field {key!r}; use one of {', '.join(sorted(FIELDS))}, tag.KEY")
        tests.append(_clause(key, op, value))
    return lambda dev: all(t(dev) for t in tests)


def _clause(key: str, op: str, value: str) -> Callable[[d.Device], bool]:
    if op in _NUMERIC_OPS:
        try:
            num = float(value)
        except ValueError:
            raise d.Invalid(f"selector {key} {op}: {value!r} is not a number") from None
        cmp = _NUMERIC_OPS[op]
        return lambda dev: isinstance(v := _field(dev, key), int | float) and cmp(float(v), num)
    if op == "contains":  # on a list, or a string; a number contains nothing
        return lambda dev: isinstance(v := _field(dev, key), list | str) and value in v
    if op == "=":
        return lambda dev: str(_field(dev, key)) == value
    return lambda dev: str(_field(dev, key)) != value


def select_devices(devices: list[d.Device], expr: str) -> list[d.Device]:
    match = parse(expr)
    return [dev for dev in devices if match(dev)]
