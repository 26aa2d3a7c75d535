"""Property-based fuzzing's settings and its one lab: a bounded, derandomized profile for `make test` (about a minute
for all of tests/fuzz) and a `fuzz` profile with random seeds and many more examples for `make fuzz`, picked by
HYPOTHESIS_PROFILE; a real labd per module, seeded with runs, devices and tokens that the fuzzing must not change.

The profiles are applied per test (fuzz_settings), not loaded globally, so the other hypothesis tests of the suite
keep their own settings (and hypothesis's own "ci" profile, which it loads under CI, stays as it is); hypothesis's
files go to a temporary directory (or HYPOTHESIS_STORAGE_DIRECTORY) while these tests run, never into the work tree."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import hypothesis.configuration as hypothesis_configuration
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.e2e.conftest import Labd

# HYPOTHESIS_PROFILE=fuzz selects the fuzz profile; anything else (or nothing) the bounded one.
PROFILE = "fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "bounded"
# `make fuzz` runs FUZZ_SECONDS / ROUND_SECONDS rounds of every test's bounded examples: one round takes about
# ROUND_SECONDS in the fuzz profile (measured on 2 cores; the bounded run of `make test` adds labd start-ups and the
# tests without hypothesis, under a minute in all).
ROUND_SECONDS = 22.0
FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "600"))
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("bounded", max_examples=50, deadline=None, derandomize=True, database=None,
                          print_blob=False, suppress_health_check=_SUPPRESS)
settings.register_profile("fuzz", max_examples=50, deadline=None, derandomize=False, print_blob=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                          suppress_health_check=_SUPPRESS)


def fuzz_settings(examples: int) -> settings:
    """The settings of one fuzz test: `examples` in the bounded profile (sized so that tests/fuzz fits its minute), as
    many rounds of them as fit FUZZ_SECONDS in the fuzz profile, with hypothesis's example database under its storage
    directory."""
    if PROFILE == "bounded":
        return settings(settings.get_profile("bounded"), max_examples=examples)
    scaled = max(examples, int(examples * FUZZ_SECONDS / ROUND_SECONDS))
    return settings(settings.get_profile("fuzz"), max_examples=scaled,
                    database=DirectoryBasedExampleDatabase(_storage_dir() / "examples"))


def _storage_dir() -> Path:
    return Path(os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY") or (Path.cwd() / "build" / "hypothesis"))


@pytest.fixture(scope="module", autouse=True)
def _hypothesis_files_elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hypothesis's caches outside the work tree while a module of tests/fuzz runs (then as before)."""
    where = os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY") or tmp_path_factory.getbasetemp() / "hypothesis"
    hypothesis_configuration.set_hypothesis_home_dir(where)
    try:
        yield
    finally:
        hypothesis_configuration.set_hypothesis_home_dir(None)


# --- the lab under fuzzing ----------------------------------------------------------------------------------------
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):|^\S.* (ERROR|CRITICAL) ", re.MULTILINE)


class FuzzedLab(Labd):
    """A real labd (subprocess, 127.0.0.1, port 0) whose log the tests read piece by piece after each call."""

    _log_offset: int = 0

    def new_log(self) -> str:
        """What labd logged since the last call."""
        with self.log.open("rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        self._log_offset += len(data)
        return data.decode("utf-8", "replace")

    def assert_log_clean(self, what: object) -> None:
        """No traceback and no ERROR line in what labd logged since the last check."""
        text = self.new_log()
        if _TRACEBACK.search(text):
            raise AssertionError(f"labd logged an error or a traceback after {what!r}:\n{text[-4000:]}")


@pytest.fixture(scope="module")
def fuzz_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedLab]:
    lab = FuzzedLab(tmp_path_factory.mktemp("fuzzlab") / "lab").start()
    try:
        yield lab
    finally:
        rc = lab.stop()
        assert rc == 0, f"labd exited {rc} after fuzzing: {lab.log.read_text()[-3000:]}"
