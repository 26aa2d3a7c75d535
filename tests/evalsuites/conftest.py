"""Fixtures for the evalsuites tests: writable copies of the built-in suites and ways to edit and repin them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from evalsuites import builtin_suites_dir
from evalsuites.build import rewrite_pins
from evalsuites.sources import file_sha256

SMOKE = builtin_suites_dir() / "smoke"
Edit = Callable[..., str]


@pytest.fixture
def smoke_copy(tmp_path: Path) -> Path:
    """A copy of the built-in smoke suite (suite.toml, models/, data/) that a test may break."""
    dst = tmp_path / "smoke"
    shutil.copytree(SMOKE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.fixture
def suite_copy(tmp_path: Path) -> Callable[[str], Path]:
    """suite_copy(id): a copy of the built-in suite `id` (suite.toml and its path: files) that a test may break."""

    def copy(suite_id: str) -> Path:
        dst = tmp_path / suite_id
        shutil.copytree(builtin_suites_dir() / suite_id, dst, ignore=shutil.ignore_patterns("__pycache__"))
        return dst

    return copy


@pytest.fixture
def edit() -> Edit:
    """edit(suite_dir, (old, new), ...) applies exact text replacements (each must match) to suite.toml."""

    def apply(suite_dir: Path, *pairs: tuple[str, str], count: int = -1) -> str:
        toml = suite_dir / "suite.toml"
        text = toml.read_text(encoding="utf-8")
        for old, new in pairs:
            assert old in text, f"test edit does not match: {old!r}"
            text = text.replace(old, new, count)
        toml.write_text(text, encoding="utf-8")
        return text

    return apply


@pytest.fixture
def repin() -> Callable[[Path, str, Path], None]:
    """repin(suite_dir, artifact, file): make suite.toml pin the file's current sha256 and size."""

    def apply(suite_dir: Path, artifact: str, file: Path) -> None:
        rewrite_pins(suite_dir / "suite.toml", {artifact: (file_sha256(file), file.stat().st_size)})

    return apply
