"""Fuzzing the device selector (`--select EXPR`, labd/scheduler/select.py): any text either compiles into a predicate
that answers True or False for every device, or is refused with Invalid in one line; the same text always gets the
same answer; and no text, however long, holds the parser for long."""

from __future__ import annotations

import time

from hypothesis import example, given
from hypothesis import strategies as st

from labd.scheduler.select import FIELDS, MAX_LENGTH, parse
from pilotlab import domain as d
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.strategies import BIG, hostile_text, one_line


def _device(name: str, cls: str, region: str, tags: dict[str, str], cores: int, mem: int, providers: list[str],
            flags: list[str], sensors: list[str]) -> d.Device:
    caps = d.Capabilities(os="Linux", arch="x86_64", cpu_cores=cores, memory_bytes=mem, providers=providers,
                          onnxruntime_version="1.20.1", cpu_flags=flags,
                          energy_sensors=[d.EnergySensor(k, k, "/x", True) for k in sensors])
    return d.Device(id=f"id-{name}", name=name, device_class=cls, region=region, tags=tags, capabilities=caps,
                    status="online")


DEVICES = [
    _device("rover", "robot", "eu", {"site": "lab2"}, 8, 8 << 30, ["CUDAExecutionProvider"], ["avx2"], ["rapl"]),
    _device("bare", "smart-terminal", "", {}, 0, 0, [], [], []),
    _device("odd", "accelerator-board", "cn-gd", {"": "", "k": "a\nb", "x": "é"}, -1, -(2**62), ["é"], ["\x00"],
            ["hwmon"]),
]

_OPS = [">=", "<=", "!=", "=", ">", "<", " contains ", " has ", " CONTAINS ", " Has ", "==", "=>", "~", " in ", ""]
_VALUES = ["robot", "4", "-1", "0", "1e999", "-1e999", "nan", "inf", "1_000", "0x10", "'robot'", '"eu"', "''",
           "avx2", "CUDAExecutionProvider", "lab2", "é", "\u0661\u0662", "a b", " ", "and", "contains"]
_SEPARATORS = [" and ", " AND ", " And ", "  and\t", "and", " and", " or ", ",", " ", "\n and \n", "\u2028and\u2028"]


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    """Clauses of real and made-up fields, operators and values, joined by `and` and by near misses of it."""
    n = draw(st.integers(1, 5))
    parts = []
    for i in range(n):
        key = draw(st.one_of(st.sampled_from(FIELDS), st.sampled_from(["tag.site", "tags.k", "tag.", "tag", "Class"]),
                             st.from_regex(r"[A-Za-z_][\w.\-]{0,8}", fullmatch=True), hostile_text))
        op = draw(st.sampled_from(_OPS))
        value = draw(st.one_of(st.sampled_from(_VALUES), st.floats().map(repr), st.integers().map(str),
                               hostile_text))
        parts.append(f"{key}{op}{value}")
        if i < n - 1:
            parts.append(draw(st.sampled_from(_SEPARATORS)))
    return "".join(parts)


def _outcome(expr: str) -> tuple[str, object]:
    """("ok", what the predicate says of each device) or ("invalid", the message); anything else raises."""
    try:
        match = parse(expr)
    except d.Invalid as e:
        return "invalid", str(e)
    return "ok", tuple(match(dev) for dev in DEVICES)


@fuzz_settings(250)
@given(expr=st.one_of(hostile_text, near_valid(), st.text(st.sampled_from(" \t\n=<>!'\"andcotishr.-_0123456789"))))
@example(expr="cpu_cores contains 1")  # a number contains nothing (it raised TypeError once)
@example(expr="memory_gb contains 4 and class=robot")
@example(expr="memory_gb >= 1\r2")  # the refusal used to print the value raw, \r and all
@example(expr="class=" + " " * 20_000 + "b")  # a long run of spaces used to take seconds (quadratic backtracking)
@example(expr="class" + " " * 20_000 + "=b")
@example(expr=BIG[4])
def test_selector_parses_or_refuses_in_one_line(expr: str) -> None:
    started = time.perf_counter()
    kind, value = _outcome(expr)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"parsing a selector of {len(expr)} characters took {elapsed:.2f}s"
    if kind == "invalid":
        assert isinstance(value, str) and value and one_line(value), f"refusal not one line: {value!r}"
    else:
        assert all(isinstance(v, bool) for v in value), value  # type: ignore[attr-defined]
        assert len(expr) <= MAX_LENGTH
    assert _outcome(expr) == (kind, value), "the same selector got another answer"


def test_selector_length_bound_refuses_only_long_selectors() -> None:
    ok = "class=robot and region=eu"
    assert _outcome(ok + " " * (MAX_LENGTH - len(ok)))[0] == "ok"
    kind, message = _outcome(ok + " " * (MAX_LENGTH + 1 - len(ok)))
    assert kind == "invalid" and f"at most {MAX_LENGTH}" in str(message)
