"""Cross-reference checks: golden and conformance on a task, criteria against their tasks, criterion ids, grading.

Each check reports through `add(field, message)`; validation.parse_suite runs them once every task and criterion
has been read field by field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evalsuites import schema as s
from pilotlab.tasks import COMMON_SETTINGS

Add = Callable[[str, str], None]

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_GRADING_KEYS = ("scheme", "levels")
_LEVEL_KEYS = ("name", "criteria", "description")
# For each tolerance: the criterion ops that grade it as an upper or lower bound.
_BOUND_OPS = {"max_abs_err": ("<=", "<"), "max_rel_err": ("<=", "<"), "top1_agreement": (">=", ">")}


def check_generative(base: str, task: s.TaskSpec, add: Add) -> None:
    """A generative task: prompts from a dataset; golden (a reference decode, reference log-likelihoods) without
    [tasks.conformance]; perplexity windows need that golden; no operator profile."""
    if task.dataset is None:
        add(f"{base}.dataset", 'a generative task needs a dataset of prompts (input_ids); set dataset = "<artifact>"')
    if task.conformance is not None:
        add(f"{base}.conformance", "[tasks.conformance] compares float outputs; a generative task's conformance is "
                                   f"its golden decode, graded with metric = \"{s.TOKEN_AGREEMENT}\"")
    if task.settings.get("perplexity_windows", 0) and task.golden is None:
        add(f"{base}.settings.perplexity_windows", "perplexity compares with reference log-likelihoods; set "
                                                   'golden = "<artifact holding log_likelihoods>"')
    if task.accuracy is not None:
        add(f"{base}.accuracy", "a generative task's quality is its golden decode (conformance.token_agreement) and "
                                "perplexity; remove [tasks.accuracy]")
    if task.settings.get("profile") is True:
        add(f"{base}.settings.profile", "the generative scenario records no operator profile; remove profile")


def check_task_golden(base: str, task: s.TaskSpec, add: Add) -> None:
    """golden and [tasks.conformance] come together, and conformance needs the dataset the golden came from."""
    if task.scenario == "generative":
        check_generative(base, task, add)
        return
    if task.golden is not None and task.conformance is None:
        add(f"{base}.golden", "golden outputs are only used by [tasks.conformance]; add it or remove golden")
    if task.conformance is not None:
        if task.golden is None:
            add(f"{base}.conformance", 'conformance needs reference outputs; set golden = "<artifact of kind golden>"')
        if task.dataset is None:
            add(f"{base}.conformance", "conformance needs the dataset the golden outputs were computed from; "
                                       'set dataset = "<artifact>"')


def check_criterion_fit(base: str, metric: str, threshold: float | None, task: s.TaskSpec | None,
                        add: Add) -> None:
    """A criterion's metric must be one its task produces, with a threshold (None: invalid) in its range."""
    if threshold is not None and metric in s.FRACTION_METRICS and not 0.0 <= threshold <= 1.0:
        add(f"{base}.threshold", f"{metric} is a fraction; {threshold!r} is outside 0..1")
    if task is None or not metric:
        return
    if metric == "accuracy" and task.accuracy is None:
        add(f"{base}.metric", f"task {task.name!r} measures no accuracy; add [tasks.accuracy] to it")
    if metric == s.TOKEN_AGREEMENT:
        if task.scenario != "generative" or task.golden is None:
            add(f"{base}.metric", f"{metric} needs a generative task with a golden decode; task {task.name!r} "
                                  + ("has no golden" if task.scenario == "generative" else f"is {task.scenario}"))
        return
    if metric.startswith("perplexity.") and task.scenario == "generative" and \
            not task.settings.get("perplexity_windows", 0):
        add(f"{base}.metric", f"{metric} needs settings.perplexity_windows >= 1 on task {task.name!r}")
    for prefix, need in s.METRIC_NEEDS.items():
        if not metric.startswith(prefix):
            continue
        if need == "conformance" and task.conformance is None:
            add(f"{base}.metric", f"task {task.name!r} measures no conformance; add golden and "
                                  "[tasks.conformance] to it")
        elif need != "conformance" and task.scenario != need:
            add(f"{base}.metric", f"metric {metric!r} needs a task with scenario = \"{need}\"; "
                                  f"task {task.name!r} is {task.scenario}")
    if metric == "server.p99_within_bound" and task.scenario == "server" and "latency_bound_ms" not in task.settings:
        add(f"{base}.metric", f"server.p99_within_bound needs settings.latency_bound_ms on task {task.name!r}")
    repeats = task.settings.get("repeats", COMMON_SETTINGS["repeats"].default)
    if metric == "repeats.spread_p50" and repeats == 1:
        add(f"{base}.metric", f"repeats.spread_p50 needs repeats >= 2; task {task.name!r} has repeats = 1")


def check_tolerances_graded(tasks: Sequence[s.TaskSpec], criteria: Sequence[s.Criterion], add: Add) -> None:
    """Each declared conformance tolerance is graded by a criterion at least as strict, so none is dropped."""
    for i, task in enumerate(tasks):
        for key, tolerance in (task.conformance or {}).items():
            upper = _BOUND_OPS[key][0] == "<="
            graded = any(
                c.task == task.name and c.metric == f"conformance.{key}" and c.op in _BOUND_OPS[key]
                and (c.threshold <= tolerance if upper else c.threshold >= tolerance)
                for c in criteria
            )
            if not graded:
                op = _BOUND_OPS[key][0]
                add(f"tasks[{i}].conformance.{key}", f"no criterion grades this tolerance; add [[criteria]] with "
                                                     f'task = "{task.name}", metric = "conformance.{key}", '
                                                     f'op = "{op}", threshold = {tolerance!r} (or stricter)')


def check_criterion_ids(criteria: Sequence[s.Criterion], add: Add) -> None:
    """Criterion ids are optional, but well-formed and unique."""
    seen: dict[str, int] = {}
    for j, c in enumerate(criteria):
        if not c.id:
            continue
        if not _ID_RE.match(c.id):
            add(f"criteria[{j}].id", f"criterion id {c.id!r} must be letters, digits, '.', '_' or '-'")
        elif c.id in seen:
            add(f"criteria[{j}].id", f"duplicate criterion id {c.id!r} (also criteria[{seen[c.id]}]); rename one")
        seen.setdefault(c.id, j)


def _level(k: int, t: Any, ids: set[str], names: dict[str, int], add: Add) -> s.GradingLevel | None:
    base = f"grading.levels[{k}]"
    if not isinstance(t, dict):
        add(base, "must be a table written as [[grading.levels]]")
        return None
    for key in t:
        if key not in _LEVEL_KEYS:
            add(f"{base}.{key}", f"unknown key {key!r}; expected one of {', '.join(_LEVEL_KEYS)}")
    name, crit, desc = t.get("name"), t.get("criteria"), t.get("description", "")
    ok = True
    if not isinstance(name, str) or not name.strip():
        add(f"{base}.name", 'missing or empty; name the level, e.g. name = "L1 basic"')
        ok = False
    elif name in names:
        add(f"{base}.name", f"duplicate level name {name!r} (also grading.levels[{names[name]}])")
    else:
        names[name] = k
    if not isinstance(desc, str):
        add(f"{base}.description", "must be a string")
        ok = False
    if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
        add(f"{base}.criteria", "must be a non-empty array of criterion ids")
        return None
    for c in crit:
        if c not in ids:
            known = ", ".join(sorted(ids)) or "none (give criteria an id)"
            add(f"{base}.criteria", f"unknown criterion id {c!r}; criterion ids are {known}")
            ok = False
    if len(set(crit)) != len(crit):
        add(f"{base}.criteria", "lists a criterion twice")
        ok = False
    return s.GradingLevel(str(name), tuple(crit), desc) if ok else None


def check_grading(data: Mapping[str, Any], criteria: Sequence[s.Criterion], add: Add) -> s.Grading | None:
    """Validate the optional [grading] table against the criterion ids; None when absent or broken."""
    g = data.get("grading")
    if g is None:
        return None
    if not isinstance(g, dict):
        add("grading", "must be a table [grading]")
        return None
    for key in g:
        if key not in _GRADING_KEYS:
            add(f"grading.{key}", f"unknown key {key!r}; expected one of {', '.join(_GRADING_KEYS)}")
    scheme = g.get("scheme")
    if not isinstance(scheme, str) or not scheme.strip():
        add("grading.scheme", "missing or empty; say whose scheme this is and what its levels mean")
    raw = g.get("levels")
    if not isinstance(raw, list) or not raw:
        add("grading.levels", "add at least one [[grading.levels]] table, ordered from basic to advanced")
        return None
    ids = {c.id for c in criteria if c.id}
    names: dict[str, int] = {}
    levels = [_level(k, t, ids, names, add) for k, t in enumerate(raw)]
    listed = {c for level in levels if level is not None for c in level.criteria}
    for j, c in enumerate(criteria):
        if not c.id:
            add(f"criteria[{j}]", "the suite has a [grading] table: give this criterion an id and list it in a level")
        elif c.id not in listed and all(level is not None for level in levels):
            add(f"criteria[{j}].id", f"criterion {c.id!r} is in no grading level; list it in one")
    if not isinstance(scheme, str) or any(level is None for level in levels):
        return None
    return s.Grading(scheme, tuple(level for level in levels if level is not None))
