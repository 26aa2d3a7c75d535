"""Loads standard suites into the lab: validates them, registers them and stores their artifacts by digest."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

from evalsuites import Suite, SuiteError, discover_suites, load_suite
from labd.config import StartupError
from labd.state import Store
from labd.stored_artifacts import MEMO, sha256_file
from pilotlab import domain as d

log = logging.getLogger("labd.catalog")


LINK_MIN_BYTES = 16 << 20  # artifacts at least this large are hard-linked into the store where they can be


def _place(src: Path, tmp: Path) -> None:
    """src's content at tmp: a hard link for a large file on the same filesystem (a language model is 100+ MB, and
    every data dir would hold its own copy), a copy otherwise. A small file keeps a private copy, so that an in-place
    write to the suite's file or to the store's never reaches the other; a linked file is the suite's own, so the
    lab's digest checks watch both."""
    tmp.unlink(missing_ok=True)
    if src.stat().st_size >= LINK_MIN_BYTES:
        try:
            os.link(src, tmp)
            return
        except OSError:  # another filesystem (EXDEV), no hard links there, or not allowed: copy
            pass
    shutil.copyfile(src, tmp)


def store_artifact_file(src: Path, sha256: str, artifacts_dir: Path) -> Path:
    """Put src into the content-addressed store (once; large files hard-linked where they can be, see _place),
    verifying its digest on the way; the file as verified is remembered (labd.stored_artifacts), so serving it hashes
    it again only once it changes. A full disk is one line (StartupError)."""
    dest = artifacts_dir / sha256
    if dest.exists() and MEMO.digest(str(dest))[0] == sha256:
        return dest
    tmp = dest.with_suffix(".part")
    try:
        artifacts_dir.mkdir(parents=True, exist_ok=True)
        _place(src, tmp)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StartupError(f"lab storage full: cannot copy artifact {src.name} into {artifacts_dir} "
                               f"({e.strerror}); free space there, then start labd again") from None
        raise
    got = sha256_file(tmp)
    if got != sha256:
        tmp.unlink()
        raise d.Invalid(f"artifact {src} has sha256 {got}, the suite pins {sha256}")
    tmp.replace(dest)
    MEMO.remember(dest, got)
    return dest


def register_suite(suite: Suite, store: Store, artifacts_dir: Path) -> None:
    for art in suite.artifacts.values():
        if art.path is None:
            raise d.Invalid(f"suite {suite.id}: artifact {art.name} ({art.source}) is not available locally")
        dest = store_artifact_file(art.path, art.sha256, artifacts_dir)
        store.put_artifact(d.ArtifactRecord(sha256=art.sha256, size=art.size, name=art.name, kind=art.kind,
                                            path=str(dest)))
    store.put_suite(d.SuiteRecord(id=suite.id, version=suite.version, title=suite.title, digest=suite.digest,
                                  suite_json=suite.to_json()))
    log.info("suite %s@%s registered (%s)", suite.id, suite.version, suite.digest)


def check_suite_dirs(dirs: list[Path]) -> None:
    """Each --suites directory must hold suite folders (DIR/<suite>/suite.toml); raises StartupError saying what it
    expected otherwise, e.g. when given one suite's own folder instead of its parent."""
    for dir_ in dirs:
        if not dir_.is_dir():
            raise StartupError(f"--suites {dir_} is not a directory; pass a directory of suite folders "
                               "(DIR/<suite>/suite.toml)")
        if any(dir_.glob("*/suite.toml")):
            continue
        if (dir_ / "suite.toml").is_file():
            raise StartupError(f"--suites {dir_} holds no suite folders (DIR/<suite>/suite.toml); "
                               f"it looks like a suite itself: pass its parent, {dir_.parent}")
        raise StartupError(f"--suites {dir_} holds no suite folders (DIR/<suite>/suite.toml); "
                           "pass a directory whose sub-folders each hold a suite.toml")


def load_catalog(dirs: list[Path], store: Store, artifacts_dir: Path, strict: bool = True) -> list[Suite]:
    """Register every suite under dirs. Strict (suites the admin named): any invalid suite stops labd. Not strict
    (the built-in set): a suite that cannot load here, e.g. its model package is not installed, is skipped with a
    warning saying why."""
    if strict:
        check_suite_dirs(dirs)
        suites = discover_suites(dirs)
    else:
        suites = []
        for d_ in dirs:
            for toml in sorted(d_.glob("*/suite.toml")):
                try:
                    suites.append(load_suite(toml.parent))
                except SuiteError as e:
                    log.warning("built-in suite %s skipped: %s", toml.parent.name, e)
    for s in suites:
        register_suite(s, store, artifacts_dir)
    return suites
