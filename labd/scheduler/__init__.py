"""Scheduling: which devices a run targets, and handing queued tasks to connected devices."""
