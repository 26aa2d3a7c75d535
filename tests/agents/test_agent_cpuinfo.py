"""The CPU's instruction-set features from fake /proc/cpuinfo files: an AVX2-only x86, an AVX-512 VNNI x86 and an
ARM64 board; in the capabilities and the environment fingerprint; an empty list where there is no cpuinfo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents import capabilities, cpuinfo, environment

DATA = Path(__file__).parent / "cpuinfo"


@pytest.fixture
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty fake /proc, named by PILOTLAB_PROC_ROOT; a test copies one of the cpuinfo files in."""
    root = tmp_path / "proc"
    root.mkdir()
    monkeypatch.setenv("PILOTLAB_PROC_ROOT", str(root))
    return root


def use(proc: Path, name: str) -> None:
    shutil.copy(DATA / name, proc / "cpuinfo")


def test_proc_root_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PILOTLAB_PROC_ROOT", raising=False)
    assert cpuinfo.proc_root() == Path("/proc")


def test_avx2_only_x86(proc: Path) -> None:
    use(proc, "x86_avx2.txt")
    flags = cpuinfo.cpu_flags()
    assert {"avx2", "fma", "sse4_2", "avx"} <= set(flags)
    assert not {f for f in flags if f.startswith(("avx512", "amx"))} and "avx_vnni" not in flags
    assert cpuinfo.cpu_model() == "Intel(R) Core(TM) i5-4590 CPU @ 3.30GHz"


def test_avx512_vnni_x86(proc: Path) -> None:
    use(proc, "x86_avx512_vnni.txt")
    flags = cpuinfo.cpu_flags()
    assert {"avx2", "avx512f", "avx512bw", "avx512_vnni"} <= set(flags)
    assert "amx_tile" not in flags
    assert cpuinfo.cpu_model() == "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"


def test_arm64_board(proc: Path) -> None:
    use(proc, "arm64_board.txt")
    flags = cpuinfo.cpu_flags()
    assert {"fp", "asimd", "asimddp", "i8mm", "sve", "svei8mm"} <= set(flags)
    assert "avx2" not in flags
    assert cpuinfo.cpu_model() == "Neoverse-V1 dev board"


@pytest.mark.parametrize("name", ["x86_avx2.txt", "x86_avx512_vnni.txt", "arm64_board.txt"])
def test_flags_sorted_lower_case_once_and_full(proc: Path, name: str) -> None:
    use(proc, name)
    flags = cpuinfo.cpu_flags()
    assert flags == sorted(set(flags)) and all(f == f.lower() and f.strip() == f and f for f in flags)
    assert len(flags) > 30  # the full list, not only the int8-relevant features
    assert len(" ".join(flags)) < 4096


def test_vmx_flags_and_bugs_lines_are_not_features(proc: Path) -> None:
    use(proc, "x86_avx2.txt")
    flags = cpuinfo.cpu_flags()
    assert "vnmi" not in flags and "unrestricted_guest" not in flags  # "vmx flags"
    assert "cpu_meltdown" not in flags and "spectre_v1" not in flags  # "bugs"


def test_path_parameter_overrides_environment(proc: Path) -> None:
    use(proc, "x86_avx2.txt")
    assert "avx512_vnni" in cpuinfo.cpu_flags(DATA / "x86_avx512_vnni.txt")


def test_features_every_processor_has() -> None:
    """Mixed cores (or a bad CPU hotplug) list different features: report the ones any core can run."""
    text = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\n\nprocessor\t: 1\nFeatures\t: fp asimd asimddp\n"
    assert cpuinfo.parse_flags(text) == ["asimd", "asimddp", "fp"]


def test_upper_case_names_are_lowered() -> None:
    assert cpuinfo.parse_flags("flags : SSE4_2 AVX2 avx2\n") == ["avx2", "sse4_2"]


@pytest.mark.parametrize("text", ["", "processor\t: 0\nmodel name\t: Some CPU\n", "garbage without colons\n"])
def test_no_feature_lines_no_flags(text: str) -> None:
    assert cpuinfo.parse_flags(text) == []


def test_no_cpuinfo_is_an_empty_list(proc: Path) -> None:
    """macOS, Windows, or a container without /proc: no crash, no features, a model from `platform`."""
    assert cpuinfo.cpu_flags() == []
    assert cpuinfo.cpu_flags(proc / "missing") == []
    assert isinstance(cpuinfo.cpu_model(), str)


def test_unreadable_cpuinfo_is_an_empty_list(proc: Path) -> None:
    (proc / "cpuinfo").mkdir()  # read_text on a directory raises, also as root
    assert cpuinfo.cpu_flags() == []


def test_capabilities_carry_cpu_flags(proc: Path) -> None:
    use(proc, "x86_avx512_vnni.txt")
    (proc / "meminfo").write_text("MemTotal:       16384 kB\nMemAvailable:    8192 kB\n")
    caps = capabilities.probe()
    assert caps.cpu_flags == cpuinfo.parse_flags((DATA / "x86_avx512_vnni.txt").read_text())
    assert caps.cpu_model == "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"
    assert caps.memory_bytes == 16384 * 1024
    assert caps.to_dict()["cpu_flags"] == caps.cpu_flags


def test_capabilities_without_cpuinfo(proc: Path) -> None:
    assert capabilities.probe().cpu_flags == []


def test_fingerprint_carries_cpu_flags(proc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTLAB_SYSFS_ROOT", str(tmp_path / "sys"))
    use(proc, "arm64_board.txt")
    env = environment.fingerprint()
    assert "i8mm" in env["cpu_flags"] and env["cpu_flags"] == sorted(env["cpu_flags"])
    (proc / "cpuinfo").unlink()
    assert "cpu_flags" not in environment.fingerprint()


@pytest.mark.parametrize(("text", "model"), [
    ("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n", "AMD EPYC 7B13"),
    ("Processor\t: ARMv7 Processor rev 4 (v7l)\nprocessor\t: 0\nHardware\t: BCM2835\n", "ARMv7 Processor rev 4 (v7l)"),
    ("processor\t: 0\nFeatures\t: fp asimd\n", ""),
])
def test_parse_model(text: str, model: str) -> None:
    assert cpuinfo.parse_model(text) == model
