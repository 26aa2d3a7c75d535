"""The conformance rule of `[tasks.conformance]`, as the builder and the suite tests use it: the shared core's."""

from pilotlab.conformance import measure_conformance

__all__ = ["measure_conformance"]
