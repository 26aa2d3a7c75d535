"""Where work goes: the devices a run targets, the data zones that keep a task off a device, the one device an
any-device run takes (connected and idle first), and where a task goes when its device is lost."""

from __future__ import annotations

import logging

from evalsuites import Suite
from labd.scheduler.select import select_devices
from labd.sessions import SessionRegistry
from labd.state import Store
from pilotlab import domain as d
from pilotlab.tasks import TaskSpec

log = logging.getLogger("labd.placement")


def targets(store: Store, suite: Suite, device: str, select: str) -> list[d.Device]:
    """The device named, or every device the selector matches; all of a class the suite applies to."""
    if bool(device) == bool(select):
        raise d.Invalid("name the target with exactly one of --device NAME or --select EXPR")
    if device:
        devices = [store.get_device_by_name(device)]
    else:
        devices = select_devices(store.list_devices(), select)
        if not devices:
            raise d.Invalid(f"no enrolled device matches {select!r}; see `labctl devices list`")
    wrong = [dev.name for dev in devices if dev.device_class not in suite.device_classes]
    if wrong:
        raise d.Invalid(f"suite {suite.id} applies to {', '.join(suite.device_classes)}; "
                        f"{', '.join(wrong)} is of another class")
    return devices


def zone_refusal(spec: TaskSpec, dev: d.Device) -> str:
    """Why the task's data may not go to this device ('' when it may): each dataset's allowed regions."""
    for key, ref in spec.data_refs():
        regions = ref.regions or ("*",)
        if "*" not in regions and dev.region not in regions:
            where = f"region {dev.region!r}" if dev.region else "no declared region"
            return (f"data zone: {key} {ref.name} ({ref.classification}) may only be sent to "
                    f"{', '.join(regions)}; device {dev.name} has {where}")
    return ""


def pick_one(sessions: SessionRegistry, devices: list[d.Device], exclude: str = "") -> d.Device | None:
    """For any-device runs: an active device, connected and idle first."""
    def rank(dev: d.Device) -> tuple[int, int, str]:
        sess = sessions.get(dev.id)
        return (0 if sess is not None else 1, 0 if sess is not None and sess.free_slots > 0 else 1, dev.name)

    usable = [dv for dv in devices if dv.state == "active" and dv.id != exclude]
    return min(usable, key=rank) if usable else None


def relocate(store: Store, sessions: SessionRegistry, run: d.Run, lost: d.Attempt) -> d.Run:
    """A requeued task whose device was lost moves to another device of the same class that the run's selector
    matches, when the run allows any device; returns the run as it is now."""
    if not (run.any_device and run.select):
        return run
    other = pick_one(sessions, select_devices(store.list_devices(), run.select), exclude=lost.device_id)
    if other is None or other.device_class != store.get_device(lost.device_id).device_class:
        return run
    store.move_task(lost.task_id, other.id)
    log.info("task %s moves from a lost device to %s", lost.task_id, other.name)
    return store.get_run(run.id)
