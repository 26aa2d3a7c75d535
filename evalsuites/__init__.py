"""Evaluation suites: declarative, versioned, content-addressed test definitions and their loader."""

# Importing the loader also installs the reader behind Suite.from_json (see schema.set_json_reader).
from evalsuites.loader import builtin_suites_dir, discover_suites, load_suite, suite_digest, validate_suite
from evalsuites.schema import (
    CLASSIFICATIONS,
    DEVICE_CLASSES,
    METRICS,
    OPS,
    RULES,
    SCENARIOS,
    ArtifactSpec,
    Criterion,
    Grading,
    GradingLevel,
    Problem,
    Suite,
    SuiteError,
    TaskSpec,
)

__all__ = [
    "CLASSIFICATIONS",
    "DEVICE_CLASSES",
    "METRICS",
    "OPS",
    "RULES",
    "SCENARIOS",
    "ArtifactSpec",
    "Criterion",
    "Grading",
    "GradingLevel",
    "Problem",
    "Suite",
    "SuiteError",
    "TaskSpec",
    "builtin_suites_dir",
    "discover_suites",
    "load_suite",
    "suite_digest",
    "validate_suite",
]
