"""``one.vm.snapshot*/resize/updateconf/attachpci/detachpci/exec/retryexec/cancelexec``
(mirrors ``VirtualMachineAPI::snapshot_create/delete/revert``, ``resize``,
``update_conf``, ``pci_attach``/``pci_detach`` and ``exec``/``exec_retry``/
``exec_cancel``).

Parameters are checked in oned's order (template parse, attribute checks, then
authorization with the operation's ``VM_*_OPERATIONS`` level, restricted attributes,
quotas); the state rules and the changes themselves are the DispatchManager's
(``oned.managers.dispatch.system``), whose texts come back as ACTION errors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable
from typing import TypeVar

from oned.api import shared
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.vm import VM, action_op, dispatcher, requester
from oned.core import Core
from oned.errors import (
    ActionError,
    ApiError,
    AuthorizationError,
    InternalError,
    NoExistsError,
    no_exists,
)
from oned.managers.dispatch.system import ResizeRequest
from oned.managers.vmm import system_pci as spci
from oned.managers.vmm import system_vm as sv
from oned.managers.vmm.system_conf import updateconf_template
from oned.objects.vm import VirtualMachine
from oned.template import Template
from oned.template_merge import parse_restricted, restricted_in

T = TypeVar("T")


def _authorized(core: Core, call: Call, oid: int, operation: str) -> VirtualMachine:
    vm: VirtualMachine = shared.get_authorized(core, call, VM, oid, action_op(core, operation))
    return vm


async def _dm(oid: int, work: Awaitable[T]) -> T:
    try:
        return await work
    except NoExistsError as exc:
        raise no_exists("virtual machine", oid) from exc


def _restricted(core: Core, tmpl: Template) -> str | None:
    return restricted_in(tmpl, parse_restricted(core.attr_list("VM_RESTRICTED_ATTR")))


# -- system snapshots ----------------------------------------------------------------------


@rpc("one.vm.snapshotcreate", "is")
async def snapshot_create(core: Core, call: Call, oid: int, name: str) -> int:
    """Creates a new virtual machine snapshot (answers its id)."""
    _authorized(core, call, oid, "snapshot")
    return await _dm(oid, dispatcher(core).snapshot_create(oid, name, requester(call)))


@rpc("one.vm.snapshotdelete", "ii")
async def snapshot_delete(core: Core, call: Call, oid: int, snap_id: int) -> int:
    """Deletes a virtual machine snapshot."""
    _authorized(core, call, oid, "snapshot")
    await _dm(oid, dispatcher(core).snapshot_delete(oid, snap_id, requester(call)))
    return oid


@rpc("one.vm.snapshotrevert", "ii")
async def snapshot_revert(core: Core, call: Call, oid: int, snap_id: int) -> int:
    """Reverts a virtual machine to a snapshot."""
    _authorized(core, call, oid, "snapshot")
    await _dm(oid, dispatcher(core).snapshot_revert(oid, snap_id, requester(call)))
    return oid


# -- resize ------------------------------------------------------------------------------


_FLOAT = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT = re.compile(r"^\s*[+-]?\d+")


def _number(tmpl: Template, name: str, integer: bool) -> float:
    """``Template::get(name, value)``: the leading number of the value, as a C++
    stream reads it (missing or unreadable: 0)."""
    match = (_INT if integer else _FLOAT).match(tmpl.get(name) or "")
    if match is None:
        return 0
    value = float(match.group(0))
    return value if math.isfinite(value) else 0


@rpc("one.vm.resize", "isb", required=2)
async def resize(core: Core, call: Call, oid: int, text: str, enforce: bool = True) -> int:
    """Changes the capacity (CPU, VCPU, MEMORY) of a virtual machine."""
    if not call.is_admin:
        enforce = True
    tmpl = shared.parse_template(text)
    _authorized(core, call, oid, "resize")
    if not call.is_admin:
        found = _restricted(core, tmpl)
        if found is not None:
            raise AuthorizationError(f"Template includes a restricted attribute {found}")
    cpu = _number(tmpl, "CPU", False)
    vcpu = int(_number(tmpl, "VCPU", True))
    memory = int(_number(tmpl, "MEMORY", True))
    if cpu < 0:
        raise InternalError("CPU must be a positive float or integer value.")
    if memory < 0:
        raise InternalError("MEMORY must be a positive integer value.")
    if vcpu < 0:
        raise InternalError("VCPU must be a positive integer value.")
    request = ResizeRequest(cpu, vcpu, memory, enforce)
    await _dm(oid, dispatcher(core).resize(oid, request, requester(call)))
    return oid


# -- updateconf ------------------------------------------------------------------------


@rpc("one.vm.updateconf", "isi", required=2)
async def update_conf(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Updates the configuration (OS, FEATURES, INPUT, GRAPHICS, VIDEO, RAW, CPU_MODEL,
    BACKUP_CONFIG, CONTEXT) of a virtual machine."""
    if mode not in (0, 1):
        raise ApiError("Wrong update type")
    tmpl = shared.parse_template(text)
    new = updateconf_template(tmpl)
    vm = _authorized(core, call, oid, "updateconf")
    if not call.is_admin:
        _check_restricted(core, vm.template, new)
    await _dm(oid, dispatcher(core).updateconf(oid, new, mode == 1, requester(call)))
    return oid


def _check_restricted(core: Core, old: Template, new: Template) -> None:
    """``VirtualMachine::check_restricted(aname, tmpl, append)``: a restricted
    attribute may not be set to a value the VM does not already have."""
    for name, subs in parse_restricted(core.attr_list("VM_RESTRICTED_ATTR")).items():
        if subs:
            for vector in new.vectors(name):
                olds = old.vectors(name)
                for sub in sorted(subs):
                    if sub in vector and all(o.get(sub) != vector[sub] for o in olds):
                        raise AuthorizationError(f"Template includes a restricted attribute {sub}")
        elif new.get(name) is not None and new.get(name) != old.get(name):
            raise AuthorizationError(f"Template includes a restricted attribute {name}")


# -- PCI devices ---------------------------------------------------------------------------


@rpc("one.vm.attachpci", "is")
async def attach_pci(core: Core, call: Call, oid: int, text: str) -> int:
    """Attaches a PCI device (PCI=[...]) to a powered off virtual machine."""
    tmpl = shared.parse_template(text)
    pci = tmpl.get_vector("PCI")
    if pci is None:
        raise ActionError("PCI attribute not found")
    if pci.get("TYPE", "") == "NIC":
        raise ActionError("Use one.vm.attachnic to attach this PCI device")
    bus = core.config.get("PCI_PASSTHROUGH_BUS") or "0x01"
    error = spci.check_pci_attributes(pci, bus)
    if error:
        raise ActionError(error)
    _authorized(core, call, oid, "pci-attach")
    if not call.is_admin:
        found = _restricted(core, tmpl)
        if found is not None:
            raise AuthorizationError(f"PCI includes a restricted attribute {found}")
    await _dm(oid, dispatcher(core).attach_pci(oid, pci, requester(call)))
    return oid


@rpc("one.vm.detachpci", "ii")
async def detach_pci(core: Core, call: Call, oid: int, pci_id: int) -> int:
    """Detaches a PCI device (by PCI_ID) from a powered off virtual machine."""
    _authorized(core, call, oid, "pci-attach")
    await _dm(oid, dispatcher(core).detach_pci(oid, pci_id, requester(call)))
    return oid


# -- guest exec ----------------------------------------------------------------------------


@rpc("one.vm.exec", "iss")
async def exec_command(core: Core, call: Call, oid: int, cmd: str, cmd_stdin: str) -> int:
    """Runs a command in the guest through the QEMU guest agent."""
    _authorized(core, call, oid, "exec")
    await _dm(oid, dispatcher(core).exec_command(oid, cmd, cmd_stdin, requester(call)))
    return oid


@rpc("one.vm.retryexec", "i")
async def exec_retry(core: Core, call: Call, oid: int) -> int:
    """Runs the last guest command again."""
    vm = _authorized(core, call, oid, "exec")
    cmd, cmd_stdin = sv.exec_attr(vm, "COMMAND"), sv.exec_attr(vm, "STDIN")
    await _dm(oid, dispatcher(core).exec_command(oid, cmd, cmd_stdin, requester(call)))
    return oid


@rpc("one.vm.cancelexec", "i")
async def exec_cancel(core: Core, call: Call, oid: int) -> int:
    """Cancels the guest command being run."""
    _authorized(core, call, oid, "exec")
    await _dm(oid, dispatcher(core).exec_cancel(oid, requester(call)))
    return oid
