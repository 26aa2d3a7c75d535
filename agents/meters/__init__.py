"""Energy meters: discovery of the sensors a device has (sysfs under PILOTLAB_SYSFS_ROOT, NVML, bench meters).

base (MeterInfo, Meter, MeterError), one plug-in per source (rapl, nvml, hwmon, power_supply, scpi),
registry (open_meters, best_meter), sampler (Sampler) and energy (the window arithmetic).
"""
