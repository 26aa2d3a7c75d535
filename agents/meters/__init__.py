"""Energy meters: discovery of the sensors a device has (sysfs under PILOTLAB_SYSFS_ROOT, bench meters)."""
