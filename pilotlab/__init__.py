"""PilotLab's shared core: version, domain types and the one proto converter, used by labd, agents and labctl."""

__version__ = "0.1.0"
