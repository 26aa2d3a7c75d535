"""The lab's store takes a large suite file (a language model) as a hard link on the same filesystem, a copy
elsewhere or when small, and checks its digest either way."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from labd import catalog
from pilotlab import domain as d


def _file(path: Path, size: int) -> str:
    with path.open("wb") as f:
        f.write(b"m" * 4096)
        f.truncate(size)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_large_file_is_linked_and_still_checked(tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    digest = _file(src, catalog.LINK_MIN_BYTES)
    dest = catalog.store_artifact_file(src, digest, tmp_path / "artifacts")
    assert dest.stat().st_ino == src.stat().st_ino and src.stat().st_nlink == 2
    assert catalog.store_artifact_file(src, digest, tmp_path / "artifacts") == dest  # once
    with pytest.raises(d.Invalid, match="the suite pins"):
        catalog.store_artifact_file(src, "0" * 64, tmp_path / "other")
    assert src.stat().st_nlink == 2 and not list((tmp_path / "other").iterdir())  # the bad link is gone, src kept


def test_a_small_file_or_another_filesystem_gets_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = tmp_path / "digits.onnx"
    digest = _file(small, 10_000)
    dest = catalog.store_artifact_file(small, digest, tmp_path / "a")
    assert dest.stat().st_ino != small.stat().st_ino and dest.read_bytes() == small.read_bytes()

    def cross_device(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(catalog.os, "link", cross_device)
    large = tmp_path / "model.onnx"
    digest = _file(large, catalog.LINK_MIN_BYTES)
    dest = catalog.store_artifact_file(large, digest, tmp_path / "b")
    assert dest.stat().st_ino != large.stat().st_ino and large.stat().st_nlink == 1
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
