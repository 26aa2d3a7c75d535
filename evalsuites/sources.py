"""Resolving artifact sources (path:, package:, url:) to local files and checking their size and sha256 pins."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path, PurePosixPath

from evalsuites.schema import ArtifactSpec, Problem

_PACKAGE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_CHUNK = 1 << 20


class SourceError(ValueError):
    """A source string that cannot name a file; the message says what to write instead."""


def _relative(rel: str, what: str) -> PurePosixPath:
    if not rel:
        raise SourceError(f"{what} is empty")
    if "\\" in rel:
        raise SourceError(f"{what} {rel!r} must use '/' separators")
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        raise SourceError(f"{what} {rel!r} must be relative and stay inside its directory (no '..')")
    return p


def check_source(source: str) -> str:
    """Return the scheme of a well-formed source string; raises SourceError otherwise."""
    scheme, sep, rest = source.partition(":")
    if not sep or scheme not in ("path", "package", "url"):
        raise SourceError(
            f"unknown source {source!r}; write path:<file relative to the suite>, "
            "package:<python package>/<file> or url:https://..."
        )
    if scheme == "path":
        _relative(rest, "path")
    elif scheme == "package":
        pkg, _, rel = rest.partition("/")
        if not _PACKAGE_RE.match(pkg):
            raise SourceError(f"package source {source!r} must look like package:<python.package>/<file>")
        _relative(rel, "package file")
    elif not rest.startswith("https://") or len(rest) <= len("https://"):
        raise SourceError(f"url source {source!r} must be url:https://...")
    return scheme


def _find_package(name: str) -> ModuleSpec | None:
    """Where an installed (sub)package is, found without importing it or its parents: reading a suite runs no code
    of the packages it names (importlib.util.find_spec imports every parent of a dotted name)."""
    parts = name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name is looked up, not imported
        for depth in range(2, len(parts) + 1):
            if spec is None or not spec.submodule_search_locations:
                return None
            spec = PathFinder.find_spec(".".join(parts[:depth]), list(spec.submodule_search_locations))
    except (ImportError, ValueError):
        return None
    return spec


def resolve_source(source: str, root: Path | None, *, strict: bool) -> Path | None:
    """The local file a source names, or None (url: sources, no root, or a missing package when not strict).

    With strict=True a package that is not installed raises SourceError saying to install it.
    """
    scheme = check_source(source)
    rest = source.partition(":")[2]
    if scheme == "url" or root is None:
        return None
    if scheme == "path":
        return root / _relative(rest, "path")
    pkg, _, rel = rest.partition("/")
    spec = _find_package(pkg)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        if not strict:
            return None
        if spec is not None:
            raise SourceError(f"{pkg!r} is a module, not a package; package: sources need a package directory")
        raise SourceError(f"package {pkg!r} is not installed; install it (pip install ...) or use a path: source")
    return Path(locations[0]) / _relative(rel, "package file")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_artifact(a: ArtifactSpec) -> list[Problem]:
    """Check that a locally resolved artifact exists with its pinned size and sha256; [] for url: sources."""
    if a.path is None:
        return []
    base = f"artifacts.{a.name}"
    if not a.path.is_file():
        return [Problem(f"{base}.source", None, f"file not found: {a.path}; build or restore it, or fix the source")]
    problems = []
    size = a.path.stat().st_size
    if size != a.size:
        problems.append(Problem(f"{base}.size", None, f"file is {size} bytes, suite pins {a.size}"))
    digest = file_sha256(a.path)
    if digest != a.sha256:
        problems.append(
            Problem(
                f"{base}.sha256",
                None,
                f"file digest is {digest}, suite pins {a.sha256}; "
                "rebuild with python -m evalsuites.build or fix the pin",
            )
        )
    return problems
