"""disk-saveas on the VM and image sides (mirrors ``VirtualMachine::set_saveas_state``,
``VirtualMachineDisks::set_saveas``/``clear_saveas``, ``ImageManager::_mkfs`` for an
image being saved and ``LifeCycleManager::trigger_saveas_success/failure``).

The VM enters HOTPLUG_SAVEAS* with its disk flagged; the new image (``SAVE_AS_HOT``)
stays LOCKED while the datastore driver makes it (MKFS) and the TM copies the disk into
it (CPDS); the TM reply brings the VM back and the image to READY (or ERROR).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned._async import background
from oned.errors import InternalError, no_exists
from oned.log import logger
from oned.managers.image.stage import Stage
from oned.managers.lifecycle.tx import Tx, transition
from oned.managers.transfer import disk_commands as tmc
from oned.managers.vmm import disk_state as ds
from oned.managers.vmm.disk_tx import SAVEAS_STATES, rest
from oned.objects import image as im
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.pools.base import Locks

if TYPE_CHECKING:
    from oned.core import Core

_log = logger("ImM")

_ENTER: dict[int, int] = {
    S.POWEROFF: L.HOTPLUG_SAVEAS_POWEROFF,
    S.SUSPENDED: L.HOTPLUG_SAVEAS_SUSPENDED,
    S.UNDEPLOYED: L.HOTPLUG_SAVEAS_UNDEPLOYED,
    S.STOPPED: L.HOTPLUG_SAVEAS_STOPPED,
}
_FLAGS = (
    "HOTPLUG_SAVE_AS_ACTIVE",
    "HOTPLUG_SAVE_AS",
    "HOTPLUG_SAVE_AS_SOURCE",
    "HOTPLUG_SAVE_AS_SNAPSHOT_ID",
)


def saving(img: im.Image) -> bool:
    return (img.template.get("SAVE_AS_HOT") or "").strip().upper() == "YES"


def clear(tx: Tx) -> None:
    """``clear_saveas_disk`` and ``clear_saveas_state``."""
    disk = ds.flagged(tx.vm, "HOTPLUG_SAVE_AS_ACTIVE")
    if disk is not None:
        for key in _FLAGS:
            disk.pop(key, None)
    state = SAVEAS_STATES.get(L(tx.vm.lcm_state))
    if state is not None:
        rest(tx, state)


async def begin(core: Core, vid: int, did: int, sid: int) -> tuple[int, int]:
    """The VM side of ``disk_save_as``: (original image id, disk size)."""
    found: list[tuple[int, int]] = []

    def step(tx: Tx) -> None:
        vm = tx.vm
        if vm.state == S.ACTIVE and vm.lcm_state == L.RUNNING:
            tx.lcm(L.HOTPLUG_SAVEAS)
        elif vm.state in _ENTER:
            vm.set_state(S.ACTIVE)
            tx.log("VM", "I", "New state is ACTIVE")
            tx.lcm(_ENTER[vm.prev_state])
        else:
            raise InternalError("VM has to be RUNNING, POWEROFF or SUSPENDED to save disks.")
        disk = ds.disk_by_id(vm, did)
        raw = disk.get("IMAGE_ID", "").strip() if disk is not None else ""
        if disk is None:
            error = "DISK does not exist."
        elif not raw.lstrip("-").isdigit():
            error = "DISK does not have a valid IMAGE_ID."
        elif sid != -1 and ds.vm_snapshots(vm).get(did, im.Snapshots()).get(sid) is None:
            error = "Snapshot does not exist."
        else:
            error = ""
        if error:
            raise InternalError(f"Cannot use DISK. {error}")
        assert disk is not None
        disk["HOTPLUG_SAVE_AS_ACTIVE"] = "YES"
        disk["HOTPLUG_SAVE_AS_SNAPSHOT_ID"] = str(sid)
        found.append((int(raw), ds.to_int(disk.get("SIZE"))))

    if await transition(core, vid, step, f"disk saveas of VM {vid}") is None:
        raise no_exists("virtual machine", vid)
    return found[0]


async def abort(core: Core, vid: int) -> None:
    """An image that could not be made: the VM leaves HOTPLUG_SAVEAS*."""
    await transition(core, vid, clear, f"disk saveas of VM {vid}")


async def finish_image(core: Core, iid: int, success: bool) -> None:
    """The saved image is READY (or ERROR) once its copy ended."""
    img = core.images.get(iid)
    if img is None:
        return
    async with Locks((core.images, iid)):
        stage = Stage(core)
        work = stage.image(iid)
        if work is None:
            return
        work.template.erase("SAVE_AS_HOT")
        if success:
            work.set_state_unlock()
        else:
            work.set_state(im.ERROR)
        await stage.commit(f"saved image {iid}")


async def mkfs_done(core: Core, iid: int, success: bool) -> None:
    """``_mkfs`` of a saving image: hand its SOURCE to the VM and start CPDS."""
    img = core.images.get(iid)
    if img is None or not saving(img):
        return
    vid = ds.to_int(img.template.get("SAVED_VM_ID"), -1)
    did = ds.to_int(img.template.get("SAVED_DISK_ID"), -1)
    if not success:
        await abort(core, vid)
        return
    error: list[str] = []
    fmt: list[str] = []

    def step(tx: Tx) -> bool:
        disk = ds.flagged(tx.vm, "HOTPLUG_SAVE_AS_ACTIVE")
        if disk is None or L(tx.vm.lcm_state) not in SAVEAS_STATES:
            error.append("Image created to save as disk but VM is no longer running")
            return False
        disk["HOTPLUG_SAVE_AS"] = str(iid)
        disk["HOTPLUG_SAVE_AS_SOURCE"] = img.source
        fmt.append(disk.get("FORMAT") or disk.get("DRIVER") or "")
        tm = core.transfer_manager
        vm = tx.vm
        if tm is not None:
            tx.then(lambda: tmc.saveas_hot(tm, vm))
        return True

    if await transition(core, vid, step, f"disk saveas of VM {vid}") is None and not error:
        error.append("Image created to save as a disk but VM does not exist.")
    if fmt and not fmt[0]:
        error.append(
            "Image created to save as a disk but VM disk does not contains either FORMAT "
            "or DRIVER attribute."
        )
    del did
    await _image_after_mkfs(core, iid, fmt[0] if fmt else "", error[0] if error else "")
    if error:
        await abort(core, vid)


async def _image_after_mkfs(core: Core, iid: int, fmt: str, error: str) -> None:
    async with Locks((core.images, iid)):
        stage = Stage(core)
        work = stage.image(iid)
        if work is None:
            return
        if error:
            _log.error("{error}", error=error)
            work.set_error(error, core.clock.seconds())
            work.set_state(im.ERROR)
        elif fmt:
            work.format = fmt
        else:
            return
        await stage.commit(f"saved image {iid}")


class MkfsListener:
    """The ``ImageManager.saveas_listeners`` entry of one core."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def __call__(self, iid: int, success: bool) -> None:
        background(mkfs_done(self.core, iid, success), f"saveas mkfs {iid}")


def listen(core: Core) -> None:
    """Make sure the core's image manager tells this module about saved images."""
    mgr = core.image_manager
    if mgr is None:
        return
    if not any(isinstance(f, MkfsListener) and f.core is core for f in mgr.saveas_listeners):
        mgr.saveas_listeners.append(MkfsListener(core))
