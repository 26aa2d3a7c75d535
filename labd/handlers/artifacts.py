"""Serving the lab's content-addressed artifacts (models, datasets, golden outputs) to devices."""

from __future__ import annotations

import logging

from labd import stored_artifacts
from labd.state import Store
from pilotlab import domain as d
from pilotlab.tasks import ArtifactRef

log = logging.getLogger("labd.zones")


def find_artifact(store: Store, sha256: str, offset: int = 0) -> d.ArtifactRecord:
    """The registered artifact with this digest (any case), when its file in the lab's store still hashes to that
    digest (LabFault, the lab's, otherwise: corrupt or missing) and the offset to read from lies inside it."""
    art = stored_artifacts.check(store.get_artifact(sha256.lower()))
    if not 0 <= offset <= art.size:
        raise d.Invalid(f"offset {offset} is outside artifact {art.sha256} of {art.size} bytes")
    return art


def needed_by(store: Store, device_id: str, sha256: str) -> list[tuple[str, ArtifactRef]]:
    """The artifact as the device's running assignments name it (role, ref): their models, datasets, and goldens
    the device gets (not a generative task's: the lab keeps its reference)."""
    refs = []
    for att in store.running_attempts(device_id):
        spec = store.get_task(att.task_id).spec
        if spec is None:
            continue
        for role, ref in spec.device_refs():
            if ref.sha256.lower() == sha256:
                refs.append((role, ref))
    return refs


def artifact_for_device(store: Store, device_id: str, sha256: str, offset: int = 0) -> d.ArtifactRecord:
    """The artifact, when a running assignment of this device needs it and its data zone allows the device's
    region; Denied otherwise. Every decision, either way, is logged."""
    sha = sha256.lower()
    dev = store.get_device(device_id)
    where = f"region {dev.region!r}" if dev.region else "no declared region"
    refs = needed_by(store, device_id, sha)
    if not refs:
        log.warning("zone: refused artifact %s to device %s (%s, %s): classification unknown, no running "
                    "assignment of the device needs it", sha, dev.name, dev.id, where)
        raise d.Denied(f"artifact {sha256} is not needed by any task running on device {dev.name}; a device may "
                       "only download what its running assignments need")
    for role, ref in refs:
        regions = ref.regions or ("*",)
        if "*" not in regions and dev.region not in regions:
            log.warning("zone: refused %s %s (%s, %s) to device %s (%s, %s): may only be sent to %s", role,
                        ref.name, sha, ref.classification, dev.name, dev.id, where, ", ".join(regions))
            raise d.Denied(f"data zone: {role} {ref.name} ({ref.classification}) may only be sent to "
                           f"{', '.join(regions)}; device {dev.name} has {where}")
    role, ref = refs[0]
    log.info("zone: allowed %s %s (%s, %s, regions %s) to device %s (%s, %s)", role, ref.name, sha,
             ref.classification, ", ".join(ref.regions or ("*",)), dev.name, dev.id, where)
    return find_artifact(store, sha, offset)


def read_chunk(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)
