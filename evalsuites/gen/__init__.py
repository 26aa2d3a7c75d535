"""Builders of the built-in suites' generated artifacts, keyed by suite id (used by python -m evalsuites.build)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SuiteBuilder:
    """How one suite's generated artifacts are made: artifact name -> relative file, and the build function."""

    suite_id: str
    generated: dict[str, str]
    build: Callable[[Path], dict[str, Path]]


def builders() -> dict[str, SuiteBuilder]:
    """Every built-in suite with generated artifacts, by id (imports the build libraries lazily)."""
    from evalsuites.gen import accelerator, robot_control, smoke, terminal_vision

    return {
        "smoke": SuiteBuilder("smoke", smoke.GENERATED, smoke.build_smoke),
        "terminal-vision": SuiteBuilder("terminal-vision", terminal_vision.GENERATED,
                                        terminal_vision.build_terminal_vision),
        "robot-control": SuiteBuilder("robot-control", robot_control.GENERATED, robot_control.build_robot_control),
        "accelerator-throughput": SuiteBuilder("accelerator-throughput", accelerator.GENERATED,
                                               accelerator.build_accelerator),
    }
