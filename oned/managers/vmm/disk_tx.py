"""What the disk operations do to a VM inside its transaction (``Tx``): back to the
resting state, the quotas that follow the disks (SYSTEM_DISK_SIZE, the image owner's
DATASTORE SIZE), driver failures reported, and a disk leaving the VM with its image
given back (``VirtualMachinePool::delete_attach_disk``).
"""

from __future__ import annotations

from oned.errors import AuthorizationError
from oned.managers.image import usage
from oned.managers.lifecycle import quota
from oned.managers.lifecycle.tx import Tx
from oned.managers.vmm import disk_quota
from oned.managers.vmm import disk_state as ds
from oned.managers.vmm.backup_config import Backups, backup_disk_ids
from oned.objects import image as im
from oned.objects.vm import LcmState as L
from oned.objects.vm import VirtualMachine
from oned.objects.vm import VmState as S

DISK_ATTACH, DISK_DETACH = 21, 22
INTERRUPTED = "Operation interrupted by an oned restart"

SNAP_CREATE = (L.DISK_SNAPSHOT, L.DISK_SNAPSHOT_POWEROFF, L.DISK_SNAPSHOT_SUSPENDED)
SNAP_DELETE = (
    L.DISK_SNAPSHOT_DELETE,
    L.DISK_SNAPSHOT_DELETE_POWEROFF,
    L.DISK_SNAPSHOT_DELETE_SUSPENDED,
)
RESIZE_STATES = (L.DISK_RESIZE, L.DISK_RESIZE_POWEROFF, L.DISK_RESIZE_UNDEPLOYED)
SAVEAS_STATES = {
    L.HOTPLUG_SAVEAS: S.ACTIVE,
    L.HOTPLUG_SAVEAS_POWEROFF: S.POWEROFF,
    L.HOTPLUG_SAVEAS_SUSPENDED: S.SUSPENDED,
    L.HOTPLUG_SAVEAS_UNDEPLOYED: S.UNDEPLOYED,
    L.HOTPLUG_SAVEAS_STOPPED: S.STOPPED,
}


def allocated(vm: VirtualMachine) -> dict[str, float]:
    """The VM's allocated quota usage (SYSTEM_DISK_SIZE, IMAGE RVMS... follow its disks)."""
    return quota.usage(vm, running=False)


def _deltas(tx: Tx, before: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    after = allocated(tx.vm)
    more = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in {*after, *before}}
    plus = {k: v for k, v in more.items() if v > 0}
    minus = {k: -v for k, v in more.items() if v < 0}
    return plus, minus


def charge(tx: Tx, before: dict[str, float]) -> None:
    """The quota the change of the VM's disks asks for, checked against the owner's
    quotas (oned's text on refusal); what it frees is given back."""
    plus, minus = _deltas(tx, before)
    if plus:
        error = tx.quota_add(plus)
        if error:
            raise AuthorizationError(error)
    if minus:
        tx.quota_change(minus, count=False)


def refund(tx: Tx, before: dict[str, float]) -> None:
    """Move the owner's usage by how much the VM's disks changed (callbacks never
    refuse: the usage was checked when the operation started)."""
    plus, minus = _deltas(tx, before)
    if plus:
        tx.quota_change(plus, count=True)
    if minus:
        tx.quota_change(minus, count=False)


def image_quota(tx: Tx, disk: ds.Disk, before: int, check: bool = False) -> None:
    """The image owner's DATASTORE SIZE follows the disk's footprint (``resize_quotas``
    with ``do_img_owner``, ``Quotas::ds_del``); a growth asked for by a call is
    checked (``check``) and refused with oned's text. The change goes into the
    transaction's own quota copies (the owner's user and group are locked with it)."""
    delta = ds.image_footprint(disk) - before
    raw = disk.get("IMAGE_ID", "").strip()
    img = tx.core.images.get(int(raw)) if raw.isdigit() else None
    if not delta or img is None:
        return
    ds_id = ds.to_int(disk.get("DATASTORE_ID"), -1)
    core = tx.core
    for kind, oid, table, pool in (
        ("user", img.uid, core.user_quotas, core.users),
        ("group", img.gid, core.group_quotas, core.groups),
    ):
        if oid <= 0 or pool.get(oid) is None:
            continue
        quotas = tx._quota(kind, oid)
        if delta < 0:
            disk_quota.datastore_release(quotas, {ds_id: float(-delta)})
        elif not check:
            disk_quota.datastore_add(quotas, {ds_id: float(delta)})
        else:
            error = disk_quota.datastore_check(quotas, table.defaults, {ds_id: float(delta)})
            if error:
                raise AuthorizationError(f"{kind} [{oid}] {error}")


def rest(tx: Tx, state: int) -> None:
    """Back to a resting state (RUNNING, or ``state`` with LCM_INIT). The transient
    ACTIVE step of an off VM never counted RUNNING_* quotas, so none move here."""
    if state == S.ACTIVE:
        tx.lcm(L.RUNNING)
        return
    tx.vm.set_state(state)
    tx.log("VM", "I", f"New state is {S(state).name}")
    tx.lcm(L.LCM_INIT)


def resting(lcm: int) -> int:
    name = L(lcm).name
    for suffix, state in (
        ("POWEROFF", S.POWEROFF),
        ("SUSPENDED", S.SUSPENDED),
        ("UNDEPLOYED", S.UNDEPLOYED),
        ("STOPPED", S.STOPPED),
    ):
        if name.endswith(suffix):
            return state
    return S.ACTIVE


def report(tx: Tx, message: str) -> None:
    """A driver failure: logged, and the VM's ERROR only when the driver said why
    (``log_error``: an INFO that is empty or starts with ``-`` sets no ERROR)."""
    if not message:
        return
    tag = "TrM" if message.startswith("Error executing image transfer script") else "VMM"
    if message.startswith(INTERRUPTED):
        tx.error("LCM", message)
    elif ": " in message:
        tx.error(tag, message)
    else:
        tx.log(tag, "E", message)


def give_back(tx: Tx, disk: ds.Disk, snaps: im.Snapshots | None, resize: bool) -> None:
    """The image half of ``delete_attach_disk``/``release_images`` for one disk: size
    and snapshots back to a persistent image, then the image released (unless
    another disk of the VM still uses it)."""
    raw = disk.get("IMAGE_ID", "").strip()
    if not raw.isdigit():
        return
    iid = int(raw)
    stage = tx.image_stage()
    img = stage.image(iid)
    if img is not None:
        ds.return_to_image(img, disk, snaps, resize)
    others = {d.get("IMAGE_ID", "").strip() for d in ds.disks(tx.vm) if d is not disk}
    if raw not in others:
        usage.release(stage, tx.vm.oid, iid, False, tx.now)


def delete_attach_disk(tx: Tx, update_backups: bool) -> None:
    """``VirtualMachinePool::delete_attach_disk``: the ATTACH disk leaves the VM."""
    vm = tx.vm
    disk = ds.flagged(vm, "ATTACH")
    if disk is None:
        return
    did = ds.to_int(disk.get("DISK_ID"), -1)
    if update_backups:
        backups_after_hotplug(vm, did, detached=True)
    snapshots = ds.vm_snapshots(vm)
    snaps = snapshots.pop(did, None)
    vm.template.items = [(n, v) for n, v in vm.template.items if v is not disk]
    ds.set_vm_snapshots(vm, snapshots)
    tx.touch_history()
    give_back(tx, disk, snaps, update_backups)


def backups_after_hotplug(vm: VirtualMachine, did: int, detached: bool) -> None:
    """A disk that joins or leaves the backed-up set resets the incremental chain; a
    detached disk leaves ``DISK_IDS`` (``trigger_attach_success`` and
    ``delete_attach_disk``)."""
    backups = Backups.of(vm)
    if not backups.config:
        return
    if did in backup_disk_ids(vm, backups):
        backups.reset_chain()
    if detached:
        kept = [i for i in backups.disk_ids() if i != did]
        if len(kept) != len(backups.disk_ids()):
            if kept:
                backups.config["DISK_IDS"] = ",".join(str(i) for i in kept)
            else:
                backups.config.pop("DISK_IDS", None)
    backups.store(vm)
