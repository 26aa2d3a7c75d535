"""Tests for the deterministic smoke-artifact builder and the --check / repin command line over all suites."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from evalsuites import build as b
from evalsuites import builtin_suites_dir, load_suite
from evalsuites.gen import SuiteBuilder, builders
from evalsuites.sources import file_sha256

SMOKE = builtin_suites_dir() / "smoke"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real build of the smoke artifacts, shared by the tests of this module."""
    return b.build_smoke(tmp_path_factory.mktemp("build-a"))


@pytest.fixture
def fake_build(built: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the smoke builder copy the shared build instead of refitting (for CLI plumbing tests)."""

    def copy(out_dir: Path) -> dict[str, Path]:
        out = {}
        for name, src in built.items():
            out[name] = Path(out_dir) / b.GENERATED[name]
            out[name].parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out[name])
        return out

    monkeypatch.setattr(b, "builders", lambda: {"smoke": SuiteBuilder("smoke", b.GENERATED, copy)})


def test_two_builds_are_byte_identical_and_match_the_pins(built: dict[str, Path], tmp_path: Path) -> None:
    again = b.build_smoke(tmp_path)
    assert set(built) == set(again) == set(b.GENERATED)
    for name, path in built.items():
        assert path.read_bytes() == again[name].read_bytes(), name
    suite = load_suite(SMOKE)
    for name, path in built.items():
        assert (file_sha256(path), path.stat().st_size) == (suite.artifacts[name].sha256, suite.artifacts[name].size)
        assert path.read_bytes() == (SMOKE / b.GENERATED[name]).read_bytes()


def test_dataset_is_the_stratified_test_split(built: dict[str, Path]) -> None:
    with np.load(built["digits-test"], allow_pickle=False) as d:
        assert sorted(d.files) == ["input", "labels"]
        x, y = d["input"], d["labels"]
    assert (x.dtype, x.shape, y.dtype, y.shape) == (np.float32, (360, 64), np.int64, (360,))
    assert x.min() == 0 and x.max() == 16 and np.array_equal(x, np.round(x))
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits_x, digits_y = load_digits(return_X_y=True)
    _, x_test, _, y_test = train_test_split(digits_x, digits_y, test_size=0.2, random_state=0, stratify=digits_y)
    assert np.array_equal(x, x_test) and np.array_equal(y, y_test)
    assert np.bincount(y).min() >= 35 and np.bincount(y).max() <= 37
    with zipfile.ZipFile(built["digits-test"]) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == ["input.npy", "labels.npy"]
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) and i.compress_type == zipfile.ZIP_STORED for i in infos)


def test_model_has_fixed_metadata_and_scores_above_ninety_percent(built: dict[str, Path]) -> None:
    model = onnx.load(str(built["digits-logreg"]))
    assert (model.producer_name, model.producer_version, model.graph.name) == ("pilotlab-evalsuites", "1",
                                                                               "digits_logreg")
    domains = [o.domain for o in model.opset_import]
    assert len(domains) == len(set(domains)) and {o.domain: o.version for o in model.opset_import}[""] == 17
    session = ort.InferenceSession(str(built["digits-logreg"]), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [("input", "tensor(float)", [None, 64])]
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    with np.load(built["digits-test"]) as d:
        label, proba = session.run(None, {"input": d["input"]})
        assert label.dtype == np.int64 and proba.shape == (360, 10)
        assert float(np.mean(label == d["labels"])) > 0.9
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5) and np.array_equal(label, proba.argmax(axis=1))


def test_npz_bytes_ignore_insertion_order() -> None:
    a, c = np.arange(6, dtype="<i8").reshape(2, 3), np.ones(4, dtype="<f4")
    assert b.npz_bytes({"a": a, "c": c}) == b.npz_bytes({"c": c, "a": a})
    assert b.npz_bytes({"a": a, "c": c}) != b.npz_bytes({"a": a, "c": c * 2})


def test_cli_check_passes_on_every_committed_suite() -> None:
    out = subprocess.run([sys.executable, "-m", "evalsuites.build", "--check"], cwd=REPO, capture_output=True,
                         text=True, timeout=240, check=False)
    assert out.returncode == 0, out.stderr
    assert "digits-logreg, digits-test match their pins" in out.stdout
    for suite_id, builder in builders().items():
        assert f"{', '.join(builder.generated)} match their pins in " \
               f"{builtin_suites_dir() / suite_id / 'suite.toml'}" in out.stdout


def test_cli_names_unknown_suites(capsys: pytest.CaptureFixture[str]) -> None:
    assert b.main(["--check", "--suite", "nope"]) == 2
    assert "no built-in suite 'nope'" in capsys.readouterr().err


def _smoke_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "smoke"
    shutil.copytree(SMOKE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_check_names_every_artifact_whose_pin_is_off(tmp_path: Path, fake_build: None,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    suite_dir = _smoke_copy(tmp_path)
    assert b.main(["--check", "--suite-dir", str(suite_dir)]) == 0
    pins = b.read_pins(suite_dir / "suite.toml")
    toml = suite_dir / "suite.toml"
    toml.write_text(toml.read_text().replace(pins["digits-test"][0], "0" * 64))
    capsys.readouterr()
    assert b.main(["--check", "--suite-dir", str(suite_dir)]) == 1
    err = capsys.readouterr().err
    assert "MISMATCH digits-test:" in err and "digits-logreg" not in err.split("built with")[0]
    b.rewrite_pins(toml, {"digits-logreg": ("f" * 64, 1)})
    assert b.main(["--check", "--suite-dir", str(suite_dir)]) == 1
    err = capsys.readouterr().err
    assert "MISMATCH digits-test:" in err and "MISMATCH digits-logreg:" in err


def test_build_repins_only_the_pin_lines(tmp_path: Path, fake_build: None,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    suite_dir = _smoke_copy(tmp_path)
    toml = suite_dir / "suite.toml"
    good = toml.read_text()
    b.rewrite_pins(toml, {"digits-logreg": ("0" * 64, 0), "digits-test": ("1" * 64, 7)})
    broken = toml.read_text()
    assert sum(x != y for x, y in zip(good.splitlines(), broken.splitlines(), strict=True)) == 4
    (suite_dir / b.MODEL_REL).unlink()
    assert b.main(["--suite-dir", str(suite_dir)]) == 0
    assert toml.read_text() == good
    assert "repinned: smoke 1.0.0" in capsys.readouterr().out
    assert b.main(["--suite-dir", str(suite_dir)]) == 0
    assert "pins unchanged" in capsys.readouterr().out
    assert load_suite(suite_dir, deep=True).digest == load_suite(SMOKE).digest


def test_rewrite_pins_refuses_a_suite_without_pin_lines(tmp_path: Path) -> None:
    toml = tmp_path / "suite.toml"
    toml.write_text('[artifacts.digits-logreg]\nkind = "model"\n')
    with pytest.raises(b.BuildError, match="artifacts.digits-logreg.sha256"):
        b.rewrite_pins(toml, {"digits-logreg": ("0" * 64, 0)})


def test_check_names_the_toolchain_versions_that_differ(tmp_path: Path, fake_build: None,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from evalsuites.gen import common

    recorded = {**common.toolchain(), "onnx": "0.0.1"}
    built_with = tmp_path / "built-with.json"
    built_with.write_text(json.dumps(recorded))
    monkeypatch.setattr(common, "BUILT_WITH", built_with)
    suite = tmp_path / "smoke"
    shutil.copytree(SMOKE, suite)
    toml = suite / "suite.toml"
    toml.write_text(toml.read_text().replace(b.read_pins(toml)["digits-logreg"][0], "0" * 64))
    assert b.main(["--check", "--suite-dir", str(suite)]) == 1
    err = capsys.readouterr().err
    assert f"onnx {common.toolchain()['onnx']}, pins built with 0.0.1" in err
    assert common.toolchain_differences() == [f"onnx {common.toolchain()['onnx']}, pins built with 0.0.1"]
