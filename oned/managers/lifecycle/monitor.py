"""VM monitoring samples (mirrors ``VirtualMachineMonitorInfo`` and the ``vm_monitoring``
part of ``VirtualMachinePool``/monitord's ``VMRPCPool``).

A MONITOR_VM report of a host lists ``VM=[ID, DEPLOY_ID, MONITOR="<b64 KEY=VAL>"]``.
Each sample of a VM placed on that host becomes its ``MONITORING`` (keys sorted, ``ID``
and ``TIMESTAMP`` added) and ``LAST_POLL``, and a ``vm_monitoring`` row; rows older
than ``VM_MONITORING_EXPIRATION_TIME`` go (0 or less: no rows are written). All the VMs
of one report change in one transaction.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from oned.log import logger
from oned.objects.vm import VmState
from oned.pools.base import Locks
from oned.template import Template, TemplateSyntaxError
from oned.template.parser import parse_text

if TYPE_CHECKING:
    from oned.core import Core

DEFAULT_EXPIRATION = 43200  # monitord's VM_MONITORING_EXPIRATION_TIME
log = logger("LCM")


def _sample(vid: int, monitor: str, timestamp: int) -> Template | None:
    try:
        text = base64.b64decode(monitor, validate=False).decode("utf-8", "replace")
        tmpl = parse_text(text)
    except (binascii.Error, ValueError, TemplateSyntaxError):
        return None
    tmpl.set("ID", str(vid))
    tmpl.set("TIMESTAMP", str(timestamp))
    return tmpl


async def monitor_vms(core: Core, hid: int, text: str, timestamp: int) -> int:
    """Apply a host's MONITOR_VM report; returns how many VMs got a sample."""
    try:
        report = parse_text(text)
    except TemplateSyntaxError as exc:
        log.error("Error parsing VM monitoring of host {hid}: {e}", hid=hid, e=str(exc))
        return 0
    samples: dict[int, Template] = {}
    for vector in report.vectors("VM"):
        raw = vector.get("ID", "").strip()
        if not raw.isdigit():
            continue
        vid = int(raw)
        vm = core.vms.get(vid)
        current = vm.current if vm is not None else None
        if vm is None or current is None or current.hid != hid or vm.state == VmState.DONE:
            continue
        sample = _sample(vid, vector.get("MONITOR", ""), timestamp)
        if sample is not None:
            samples[vid] = sample
    if not samples:
        return 0
    raw_exp = core.config.get("VM_MONITORING_EXPIRATION_TIME")
    expiration = (
        int(raw_exp) if raw_exp and raw_exp.strip().lstrip("-").isdigit() else DEFAULT_EXPIRATION
    )
    async with Locks(*((core.vms, vid) for vid in samples)):
        unit = core.unit()
        done = 0
        for vid, sample in samples.items():
            vm = core.vms.get(vid)
            if vm is None or vm.state == VmState.DONE:
                continue
            vm = vm.copy()
            vm.monitoring = sample
            vm.last_poll = timestamp
            unit.save(core.vms, vm)
            if expiration > 0:
                unit.sql(
                    (
                        "REPLACE INTO vm_monitoring (vmid, last_poll, body) VALUES (?, ?, ?)",
                        (vid, timestamp, sample.to_xml("MONITORING")),
                    )
                )
            done += 1
        if expiration > 0:
            unit.sql(("DELETE FROM vm_monitoring WHERE last_poll < ?", (timestamp - expiration,)))
        await unit.commit(f"monitoring of {done} VMs on host {hid}")
    return done
