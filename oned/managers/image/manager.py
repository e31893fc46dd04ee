"""``ImageManager``: image actions and datastore monitoring over the datastore driver
(mirrors ``ImageManager.cc``, the sending half of ``ImageManagerActions.cc``).

Driver actions are events: an API call commits the image in its waiting state
(LOCKED, DELETE, ...) and then sends the action; the reply is applied later
(``protocol.py``) and persisted. Replies arriving together are applied in one batch
and one transaction. At start the manager re-issues every action the database shows
in flight (a ``kill -9`` loses no image in LOCKED), then monitors every datastore
once and every ``MONITORING_INTERVAL_DATASTORE`` seconds after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.task import LoopingCall

from oned._async import background
from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, b64decode, b64encode
from oned.log import logger
from oned.managers.image import protocol
from oned.managers.image.stage import Stage
from oned.objects import image as im
from oned.objects.datastore import SYSTEM_DS
from oned.pools.base import Locks
from oned.template import TemplateSyntaxError, parse_str_or_xml

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from oned.core import Core
    from oned.objects.datastore import Datastore
    from oned.objects.image import Image

#: Seconds replies of one datastore are gathered before it is monitored again.
MONITOR_DEBOUNCE = 1.0
#: Image ids of a datastore document still sent to the driver (see ``ds_xml``).
DRIVER_IMAGES_LIMIT = 1000


class DatastoreDrivers(Protocol):
    """The part of ``DriverManager`` the image manager uses (a fake in unit tests)."""

    def register_action(self, family: Family, action: str, handler: Any) -> None: ...

    def send(self, family: Family, action: str, oid: int, payload: str = "") -> bool: ...

    async def request(
        self, family: Family, action: str, payload: str, timeout: float | None = None
    ) -> tuple[bool, str]: ...


def format_message(img_xml: str, ds_xml: str, extra: str = "") -> str:
    """``ImageManager::format_message``: the base64 ``DS_DRIVER_ACTION_DATA``."""
    return b64encode(f"<DS_DRIVER_ACTION_DATA>{img_xml}{ds_xml}{extra}</DS_DRIVER_ACTION_DATA>")


def ds_mad_of(ds: Datastore) -> str:
    """DS_MAD as the driver must see it (the template's value wins after an update)."""
    return ds.template.get("DS_MAD") or ds.ds_mad


class ImageManager:
    """Sends image actions to the datastore driver and applies its replies."""

    log = logger("ImM")

    def __init__(self, core: Core, drivers: Any, clock: IReactorTime) -> None:
        self.core = core
        self.drivers: DatastoreDrivers | None = drivers
        self.clock = clock
        self._queue: list[DriverMessage] = []
        self._flush_call: IDelayedCall | None = None
        self._monitor_due: set[int] = set()
        self._monitor_call: IDelayedCall | None = None
        self._loop: LoopingCall | None = None
        self.interval = float(core.config.get("MONITORING_INTERVAL_DATASTORE") or 300)
        #: ``(vm_id, success)`` callbacks for VMs waiting on a LOCKED_USED* image
        #: (``LifeCycleManager::trigger_disk_lock_success/failure``).
        self.disk_lock_listeners: list[Callable[[int, bool], object]] = []
        #: ``(image_id, success)`` callbacks after MKFS of an image being saved from
        #: a VM disk (``_mkfs`` with ``is_saving``).
        self.saveas_listeners: list[Callable[[int, bool], object]] = []
        self._vm_disk_every = _int(core.config.get("DS_MONITOR_VM_DISK"))
        self._vm_disk_counter: dict[int, int] = {}

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Register reply handlers, resume interrupted actions, start monitoring."""
        if self.drivers is None:
            return
        for action in protocol.HANDLERS:
            self.drivers.register_action(Family.IMAGE, action, self._on_reply)
        self.drivers.register_action(Family.IMAGE, "MONITOR", self._on_monitor)
        await self.resume()
        loop = LoopingCall(self.monitor_all)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.interval, now=True).addErrback(
            lambda f: self.log.failure("datastore monitoring stopped", f)
        )

    async def stop(self) -> None:
        """Stop timers."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for call in (self._flush_call, self._monitor_call):
            if call is not None and call.active():
                call.cancel()

    # -- sending ---------------------------------------------------------------------

    def ds_xml(self, ds: Datastore) -> str:
        """The datastore document sent to the driver.

        No driver reads ``IMAGES``; past ``DRIVER_IMAGES_LIMIT`` ids the list is left
        out, or a datastore of 10,000 images would ship ~150 KB with every action.
        """
        mad = ds_mad_of(ds)
        tm = ds.template.get("TM_MAD") or ds.tm_mad
        if mad == ds.ds_mad and tm == ds.tm_mad:
            body = self.core.datastores.body(ds.oid)
        else:
            copy = ds.copy()
            copy.ds_mad, copy.tm_mad = mad, tm
            body = copy.to_xml()
        if len(ds.images) <= DRIVER_IMAGES_LIMIT:
            return body
        start, end = body.find("<IMAGES>"), body.find("</IMAGES>")
        if start < 0 or end < 0:
            return body
        return body[: start + len("<IMAGES>")] + body[end:]

    def send(self, action: str, oid: int, payload: str) -> bool:
        if self.drivers is None:
            return False
        return self.drivers.send(Family.IMAGE, action, oid, payload)

    def send_image_action(self, action: str, img: Image, extra: str = "") -> bool:
        """Send ``action`` for a committed image, with its datastore's document."""
        ds = self.core.datastores.get(img.datastore_id)
        sent = False
        if ds is not None:
            self.log.info(
                "{action} image {oid} in datastore {ds}", action=action, oid=img.oid, ds=ds.oid
            )
            body = self.core.images.body(img.oid) if self.core.images.get(img.oid) else img.to_xml()
            sent = self.send(action, img.oid, format_message(body, self.ds_xml(ds), extra))
        if not sent:
            # Nothing will answer: the image must not wait for ever.
            reply = DriverMessage(action, "FAILURE", img.oid, "Could not get datastore driver")
            self._on_reply(reply)
        return sent

    def register_action(self, img: Image) -> str | None:
        """``register_image``: the action that fills a new image (None: READY now)."""
        if img.path:
            return "CP"
        if img.source:
            return None
        if img.type in (im.DATABLOCK, im.OS) or img.template.get("SAVE_AS_HOT") == "YES":
            return "MKFS"
        return None

    async def stat(self, img_data: str, ds_xml: str) -> tuple[bool, str]:
        """``STAT`` through the driver (synchronous, 90 s)."""
        if self.drivers is None:
            return False, "Could not get datastore driver"
        ok, info = await self.drivers.request(
            Family.IMAGE, "STAT", format_message(img_data, ds_xml)
        )
        if ok and not info:
            return False, "Cannot get size from STAT"
        return ok, info

    async def restore(self, img_xml: str, ds_xml: str, extra: str) -> tuple[bool, str]:
        """``RESTORE`` through the driver (synchronous, 180 s)."""
        if self.drivers is None:
            return False, "Could not get datastore driver"
        ok, info = await self.drivers.request(
            Family.IMAGE, "RESTORE", format_message(img_xml, ds_xml, extra)
        )
        if ok and not info:
            return False, "Cannot get info about restored disk images"
        return ok, info

    # -- replies ---------------------------------------------------------------------

    def _on_reply(self, msg: DriverMessage) -> None:
        self._queue.append(msg)
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        batch, self._queue = self._queue, []
        if batch:
            background(self.apply(batch), "ImM driver replies")

    async def apply(self, batch: list[DriverMessage]) -> None:
        """Apply driver replies in one transaction (holding every object they touch)."""
        core = self.core
        targets: list[tuple[Any, int]] = []
        for msg in batch:
            img = core.images.get(msg.oid)
            if img is None:
                if msg.status == "SUCCESS" and msg.payload not in ("", "-"):
                    self.log.error(
                        "{action} operation succeeded but image no longer exists. Source "
                        "image: {src}, may be left in datastore",
                        action=msg.action,
                        src=msg.payload.split()[0],
                    )
                continue
            targets += [(core.images, img.oid), (core.datastores, img.datastore_id)]
            targets += [(core.users, img.uid), (core.groups, img.gid)]
            if img.cloning_id >= 0:
                targets.append((core.images, img.cloning_id))
        if not targets:
            return
        monitor: set[int] = set()
        waiting = {
            msg.oid: set(img.vms)
            for msg in batch
            if (img := core.images.get(msg.oid)) is not None
            and img.state in (im.LOCKED_USED, im.LOCKED_USED_PERS)
        }
        async with Locks(*targets):
            stage = Stage(core)
            now = core.clock.seconds()
            for msg in batch:
                handler = protocol.HANDLERS.get(msg.action)
                if handler is not None:
                    monitor |= handler(stage, msg, now)
            await stage.commit(f"{len(batch)} datastore driver replies")
        for msg in batch:
            self._log_reply(msg)
        self._notify_waiting(waiting)
        for msg in batch:
            if msg.action == "MKFS":
                for saved in self.saveas_listeners:
                    self.core.eventually(saved, msg.oid, msg.status == "SUCCESS")
        for ds_id in monitor:
            self.monitor_soon(ds_id)

    def _notify_waiting(self, waiting: dict[int, set[int]]) -> None:
        """Tell the VMs that waited on a LOCKED_USED* image how it ended."""
        for oid, vms in waiting.items():
            img = self.core.images.get(oid)
            if img is None or img.state in (im.LOCKED_USED, im.LOCKED_USED_PERS):
                continue
            for vm_id in sorted(vms):
                for listener in self.disk_lock_listeners:
                    self.core.eventually(listener, vm_id, img.state != im.ERROR)

    def _log_reply(self, msg: DriverMessage) -> None:
        if msg.status == "SUCCESS":
            self.log.debug("{action} {oid} succeeded", action=msg.action, oid=msg.oid)
        else:
            self.log.error(
                "{action} {oid} failed: {info}", action=msg.action, oid=msg.oid, info=msg.payload
            )

    # -- resume after a restart ------------------------------------------------------

    async def resume(self) -> None:
        """Re-issue the actions the database shows in flight; fail the others."""
        core = self.core
        resend: list[tuple[str, Image]] = []
        stage = Stage(core)
        now = core.clock.seconds()
        for img in core.images.objects():
            action = self._in_flight(img)
            if action is None:
                continue
            if action == "" or core.datastores.get(img.datastore_id) is None:
                work = stage.image(img.oid)
                assert work is not None
                work.set_error("Operation interrupted by a restart of oned", now)
                work.target_snapshot = -1
                work.set_state(im.ERROR)
                continue
            resend.append((action, img))
        if not stage.empty():
            await stage.commit("interrupted image actions")
        for action, img in resend:
            self.log.info("Resuming {action} of image {oid}", action=action, oid=img.oid)
            self.send_image_action(action, img, self._extra(action, img))

    @staticmethod
    def _in_flight(img: Image) -> str | None:
        """The action a stored image waits for ("": unknown, None: nothing)."""
        if img.state == im.DELETE:
            return "RM"
        if not img.is_locked_state():
            return None
        if img.cloning_id >= 0:
            return "CLONE"
        if img.target_snapshot >= 0:
            return ""
        if img.source and img.template.get("SAVE_AS_HOT") == "YES":
            return None  # made, being copied into: its VM re-sends CPDS
        if not img.source:
            if img.path:
                return "CP"
            if img.type in (im.DATABLOCK, im.OS) and img.format != "save_as":
                return "MKFS"
        return ""

    def _extra(self, action: str, img: Image) -> str:
        if action != "CLONE":
            return ""
        return clone_extra(self.core, img)

    # -- datastore monitoring --------------------------------------------------------

    def monitor_all(self) -> None:
        for ds in self.core.datastores.objects():
            self.monitor_datastore(ds.oid)

    def monitor_soon(self, ds_id: int) -> None:
        """Monitor ``ds_id`` again shortly (coalesces the replies of a burst)."""
        self._monitor_due.add(ds_id)
        if self._monitor_call is None:
            self._monitor_call = self.clock.callLater(MONITOR_DEBOUNCE, self._monitor_due_now)

    def _monitor_due_now(self) -> None:
        self._monitor_call = None
        due, self._monitor_due = self._monitor_due, set()
        for ds_id in sorted(due):
            self.monitor_datastore(ds_id)

    def monitor_datastore(self, ds_id: int) -> None:
        """``ImageManager::monitor_datastore`` (non-shared system datastores skipped)."""
        ds = self.core.datastores.get(ds_id)
        if ds is None:
            return
        extra = ""
        if ds.type == SYSTEM_DS:
            if (ds.template.get("SHARED") or "YES").upper() not in ("YES", "TRUE", "1"):
                return
            location = self.core.config.get("DATASTORE_LOCATION") or str(
                self.core.config.locations.var / "datastores"
            )
            extra = f"<DATASTORE_LOCATION>{location}</DATASTORE_LOCATION>"
            if self._vm_disk_every > 0:
                left = self._vm_disk_counter.get(ds_id, 0) - 1
                vm_monitor = left <= 0
                self._vm_disk_counter[ds_id] = self._vm_disk_every if vm_monitor else left
                extra += f"<MONITOR_VM_DISKS>{int(vm_monitor)}</MONITOR_VM_DISKS>"
        self.send("MONITOR", ds_id, format_message("", self.ds_xml(ds), extra))

    def _on_monitor(self, msg: DriverMessage) -> None:
        background(self.apply_monitor(msg), f"ImM MONITOR {msg.oid}")

    async def apply_monitor(self, msg: DriverMessage) -> None:
        """``_monitor``: TOTAL_MB/FREE_MB/USED_MB of the datastore."""
        if not msg.payload:
            self.log.error("Error monitoring datastore {id}. Bad monitor data: ", id=msg.oid)
            return
        text = b64decode(msg.payload)
        if msg.status != "SUCCESS":
            self.log.error(
                "Error monitoring datastore {id}: {p}. Decoded info: {t}",
                id=msg.oid,
                p=msg.payload,
                t=text,
            )
            return
        try:
            data = parse_str_or_xml(text)
        except TemplateSyntaxError as exc:
            self.log.error("Error parsing datastore information: {e}", e=str(exc))
            return
        values = {k: _mb(data.get(k)) for k in ("TOTAL_MB", "FREE_MB", "USED_MB")}
        async with self.core.datastores.lock(msg.oid):
            ds = self.core.datastores.get(msg.oid)
            if ds is None:
                return
            if (ds.total_mb, ds.free_mb, ds.used_mb) == (
                values["TOTAL_MB"],
                values["FREE_MB"],
                values["USED_MB"],
            ):
                return
            ds = ds.copy()
            ds.total_mb, ds.free_mb, ds.used_mb = (
                values["TOTAL_MB"],
                values["FREE_MB"],
                values["USED_MB"],
            )
            unit = self.core.unit()
            unit.save(self.core.datastores, ds)
            await unit.commit(f"monitor datastore {ds.oid}")
        self.log.debug("Datastore {name} ({id}) successfully monitored.", name=ds.name, id=ds.oid)


def _int(text: str | None) -> int:
    try:
        return int((text or "0").strip())
    except ValueError:
        return 0


def _mb(text: str | None) -> int:
    try:
        return int(float(text or "0"))
    except ValueError:
        return 0


def clone_extra(core: Core, img: Image) -> str:
    """``<SOURCE_BRIDGE_LIST>`` of the source datastore when it differs."""
    src = core.images.get(img.cloning_id)
    if src is None or src.datastore_id == img.datastore_id:
        return ""
    ds = core.datastores.get(src.datastore_id)
    bridges = ds.template.get("BRIDGE_LIST") if ds is not None else None
    if not bridges:
        return ""
    from oned.template import xml_escape

    return f"<SOURCE_BRIDGE_LIST>{xml_escape(bridges)}</SOURCE_BRIDGE_LIST>"


__all__ = ["ImageManager", "clone_extra", "ds_mad_of", "format_message"]
