"""Device selector expressions: parsing and matching over domain devices."""

from __future__ import annotations

import pytest

from labd.scheduler.select import parse, select_devices
from pilotlab import domain as d

GiB = 2**30


def dev(name: str, cls: str, region: str, tags: dict[str, str], mem_gb: float, providers: list[str],
        cores: int = 4, sensors: tuple[str, ...] = (), flags: tuple[str, ...] = ()) -> d.Device:
    caps = d.Capabilities(os="Linux", arch="x86_64", cpu_cores=cores, memory_bytes=int(mem_gb * GiB),
                          providers=providers, onnxruntime_version="1.20.1",
                          energy_sensors=[d.EnergySensor(k, k, "/x", True) for k in sensors], cpu_flags=list(flags))
    return d.Device(id=f"id-{name}", name=name, device_class=cls, region=region, tags=tags, capabilities=caps,
                    status="online")


CPU = ["CPUExecutionProvider"]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]
AVX2 = ("avx", "avx2", "fma", "sse4_2")
VNNI = (*AVX2, "avx512_vnni", "avx512bw", "avx512f")
ARM = ("asimd", "asimddp", "fp", "i8mm")
DEVICES = [
    dev("rover", "robot", "eu", {"site": "lab2"}, 8, CUDA, cores=8, sensors=("hwmon",), flags=AVX2),
    dev("arm", "robot", "us", {"site": "lab1"}, 2, CPU),
    dev("kiosk", "smart-terminal", "eu", {"site": "lab2", "floor": "3"}, 4, CPU, sensors=("rapl",), flags=VNNI),
    dev("orin", "accelerator-board", "eu", {}, 3.5, CUDA, cores=12, flags=ARM),
]


def names(expr: str) -> list[str]:
    return [x.name for x in select_devices(DEVICES, expr)]


@pytest.mark.parametrize(("expr", "expected"), [
    ("class=robot", ["rover", "arm"]),
    ("class = robot", ["rover", "arm"]),
    ("class='robot'", ["rover", "arm"]),
    ("tag.site=lab2", ["rover", "kiosk"]),
    ("tags.floor=3", ["kiosk"]),
    ("providers contains CUDAExecutionProvider", ["rover", "orin"]),
    ("memory_gb >= 4", ["rover", "kiosk"]),
    ("memory_gb>=4", ["rover", "kiosk"]),
    ("memory_gb > 4", ["rover"]),
    ("memory_gb < 3.5", ["arm"]),
    ("memory_gb <= 3.5", ["arm", "orin"]),
    ("cpu_cores >= 8", ["rover", "orin"]),
    ("class=robot and providers contains CUDAExecutionProvider", ["rover"]),
    ("class!=robot", ["kiosk", "orin"]),
    ("class != robot and region=eu", ["kiosk", "orin"]),
    ("region=eu and memory_gb >= 4 and tag.site=lab2", ["rover", "kiosk"]),
    ("energy_sensors contains rapl", ["kiosk"]),
    ("name=orin", ["orin"]),
    ("class=robot and region=asia", []),
    ("  class=robot  ", ["rover", "arm"]),
    ("cpu_flags contains avx2", ["rover", "kiosk"]),
    ("cpu_flags has avx512_vnni", ["kiosk"]),
    ("class=smart-terminal AND cpu_flags HAS avx512_vnni", ["kiosk"]),
    ("class=robot and cpu_flags has avx512_vnni", []),
    ("cpu_flags has AVX2", ["rover", "kiosk"]),
    ("cpu_flags has 'i8mm'", ["orin"]),
    ("cpu_flags has asimddp and memory_gb >= 3", ["orin"]),
    ("providers has CUDAExecutionProvider", ["rover", "orin"]),
    ("providers CONTAINS CUDAExecutionProvider", ["rover", "orin"]),
    ("cpu_flags has avx", ["rover", "kiosk"]),
])
def test_select(expr: str, expected: list[str]) -> None:
    assert names(expr) == expected


def test_numeric_op_on_text_field_matches_nothing() -> None:
    assert names("class >= 1") == []


def test_parse_returns_predicate() -> None:
    match = parse("class=robot and memory_gb >= 4")
    assert [match(x) for x in DEVICES] == [True, False, False, False]


def test_unknown_field_lists_fields() -> None:
    with pytest.raises(d.Invalid) as e:
        select_devices(DEVICES, "colour=red")
    msg = str(e.value)
    assert "colour" in msg
    for f in ("class", "memory_gb", "providers", "region", "tag.KEY"):
        assert f in msg


def test_flags_match_whole_names_only() -> None:
    """`has avx512` is no prefix match: it names a feature no device lists (the OS says avx512f, avx512bw...)."""
    assert names("cpu_flags has avx512") == []
    assert names("cpu_flags has vnni") == []


def test_device_without_flags_matches_no_flag() -> None:
    assert "arm" not in names("cpu_flags has fp")
    assert names("class=robot and region=us") == ["arm"]


@pytest.mark.parametrize("expr", ["cpu_flag has avx2", "flags has avx2", "cpu.flags contains avx2"])
def test_unknown_flag_field_refused_at_parse_time(expr: str) -> None:
    with pytest.raises(d.Invalid, match="unknown selector field") as e:
        parse(expr)
    assert "cpu_flags" in str(e.value)


@pytest.mark.parametrize("expr", ["robot", "=robot", "class", "class ~ robot", "and", "1class=robot",
                                  "cpu_flags has", "cpu_flags avx2", "cpu_flags hasavx2"])
def test_garbage_clause(expr: str) -> None:
    with pytest.raises(d.Invalid, match="selector"):
        parse(expr)


@pytest.mark.parametrize("expr", ["", "   "])
def test_empty_selector(expr: str) -> None:
    with pytest.raises(d.Invalid, match="empty"):
        parse(expr)


@pytest.mark.parametrize("expr", ["memory_gb >= four", "cpu_cores < 4GB", "memory_gb > ",
                                  "class=robot and memory_gb<=x"])
def test_non_number_for_numeric_op(expr: str) -> None:
    with pytest.raises(d.Invalid):
        parse(expr)


def test_non_number_message() -> None:
    with pytest.raises(d.Invalid, match="'four' is not a number"):
        parse("memory_gb >= four")
