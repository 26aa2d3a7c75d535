"""lab-agent: runs on the device, dials out to the lab, measures models with onnxruntime, never loses a result."""

from pilotlab import __version__ as AGENT_VERSION

__all__ = ["AGENT_VERSION"]
