"""Scheduling: which devices a run targets (select, placement, plan), handing queued tasks to connected devices
(dispatcher), leases and requeues (leases), and which devices may take work (health). It works on domain objects,
the store and live sessions; it never imports handlers or servicers."""
