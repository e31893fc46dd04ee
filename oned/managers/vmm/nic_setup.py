"""A VM's NIC set (mirrors ``VirtualMachineNics``/``VirtualMachineNic`` and the NIC
parts of ``VirtualMachine``/``VirtualMachinePool``): NIC_ALIAS leases at allocate,
``set_up_attach_nic``, ``set_detach_nic``, ``clear_attach_nic`` and
``delete_attach_nic``.

Functions that take a ``Tx`` work inside a VM transition: the networks and security
groups they touch are locked by it, group changes are staged in its unit and lease
changes are returned (or queued in ``tx.before``) so a failed commit rolls them back.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

from oned.api.secgroup_vm import (
    GroupEdits,
    drop_group,
    ids_of,
    join_ids,
    nic_groups,
    vm_groups,
)
from oned.errors import ActionError, AuthorizationError, InternalError
from oned.managers.ipam import quota as net_quota
from oned.managers.ipam.nic import acquire_nic, release_nic

if TYPE_CHECKING:
    from oned.core import Core
    from oned.managers.lifecycle.tx import Tx
    from oned.objects.vnet import LeaseChanges
    from oned.pools.base import Unit
    from oned.template import Template

_INTERNAL_NAME = re.compile(r"^NIC[0-9]+(_ALIAS[0-9]+)?$")


def _int(text: str | None, default: int = -1) -> int:
    raw = (text or "").strip()
    return int(raw) if raw.lstrip("-").isdigit() else default


def nic_name(nic: dict[str, str], default: str) -> str:
    """``set_nic_name``/``set_nic_alias_name``: NAME, or ``default``; a given name
    that looks like an internal one gets a leading ``_``."""
    name = nic.get("NAME", "")
    if name:
        if _INTERNAL_NAME.match(name):
            name = "_" + name
            nic["NAME"] = name
        return name
    nic["NAME"] = default
    return default


def _mode(nic: dict[str, str]) -> str:
    return nic.get("NETWORK_MODE", "").upper()


def _dummy_mac(core: Core) -> str:
    """A random MAC under MAC_PREFIX (a DUMMY NIC has no network)."""
    prefix = (core.config.get("MAC_PREFIX") or "02:00").strip().lower()
    low = random.getrandbits(32)
    return prefix + "".join(f":{(low >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))


async def acquire_aliases(
    core: Core,
    unit: Unit,
    tmpl: Template,
    nics: list[dict[str, str]],
    vid: int,
    uid: int,
    gid: int,
    done: list[LeaseChanges],
) -> list[dict[str, str]]:
    """The NIC_ALIAS half of ``get_network_leases``: NIC_ID after the NICs, PARENT_ID,
    ALIAS_ID, a lease each, and ALIAS_IDS on the parents."""
    parents: dict[str, list[int]] = {}  # NAME -> [nic_id, next alias id]
    alias_ids: dict[str, list[int]] = {}
    for nic in nics:
        if _mode(nic) in ("AUTO", "DUMMY"):
            continue
        parents[nic.get("NAME", "")] = [_int(nic.get("NIC_ID"), 0), 0]
    nic_id = len(nics)
    out: list[dict[str, str]] = []
    for alias in tmpl.vectors("NIC_ALIAS"):
        mode = _mode(alias)
        if mode in ("AUTO", "DUMMY"):
            raise InternalError(f"Alias is incompatible with mode {mode}")
        parent = alias.get("PARENT", "")
        found = parents.get(parent)
        if found is None:
            raise InternalError(f"NIC named {parent} not found for alias")
        filled = dict(alias)
        filled["PARENT_ID"] = str(found[0])
        filled["ALIAS_ID"] = str(found[1])
        alias_ids.setdefault(parent, []).append(nic_id)
        found[1] += 1
        filled["NIC_ID"] = str(nic_id)
        filled, changes = await acquire_nic(core, unit, filled, vid, uid, gid, nic_id)
        done.append(changes)
        nic_name(filled, f"NIC{found[0]}_ALIAS{nic_id}")
        out.append(filled)
        nic_id += 1
    for nic in nics:
        ids = alias_ids.get(nic.get("NAME", ""))
        if ids:
            nic["ALIAS_IDS"] = ",".join(str(i) for i in ids)
    return out


# -- the NICs of a VM ------------------------------------------------------------------


def all_nics(tmpl: Template) -> list[dict[str, str]]:
    return tmpl.vectors("NIC") + tmpl.vectors("NIC_ALIAS")


def find_nic(tmpl: Template, nic_id: int) -> tuple[str, dict[str, str]] | None:
    """``get_nic``: the NIC or NIC_ALIAS with NIC_ID ``nic_id``."""
    for name, value in tmpl.items:
        if name in ("NIC", "NIC_ALIAS") and isinstance(value, dict):
            if _int(value.get("NIC_ID")) == nic_id:
                return name, value
    return None


def attaching(tmpl: Template) -> tuple[str, dict[str, str]] | None:
    """The NIC (or alias) flagged ATTACH=YES."""
    for name, value in tmpl.items:
        if name in ("NIC", "NIC_ALIAS") and isinstance(value, dict):
            if value.get("ATTACH", "").upper() == "YES":
                return name, value
    return None


def clear_attach(tmpl: Template) -> None:
    """``clear_attach_nic``: no NIC is being attached or detached any more."""
    for nic in all_nics(tmpl):
        nic.pop("ATTACH", None)


def _remove(tmpl: Template, vector: dict[str, str]) -> None:
    tmpl.items = [(n, v) for n, v in tmpl.items if v is not vector]


def add_context(core: Core, tmpl: Template, nic: dict[str, str], alias: bool) -> None:
    """``generate_network_context`` for one NIC (CONTEXT with NETWORK=YES)."""
    from oned.api.vm_context import NETWORK6_CONTEXT, NETWORK_CONTEXT, _network_value

    context = tmpl.get_vector("CONTEXT")
    if context is None or context.get("NETWORK", "").upper() not in ("YES", "TRUE"):
        return
    nic_id = nic.get("NIC_ID", "0")
    prefix = f"ETH{nic.get('PARENT_ID', '')}_ALIAS{nic.get('ALIAS_ID', '')}_" if alias else ""
    prefix = prefix or f"ETH{nic_id}_"
    for cvars in (NETWORK_CONTEXT, NETWORK6_CONTEXT):
        for cname, nic_attr, alt, lookup in cvars:
            value = nic.get(nic_attr, "") or (nic.get(alt, "") if alt else "")
            if not value and lookup:
                value = _network_value(core, tmpl, nic_attr, nic_id)
            context[prefix + cname] = value


def clear_context(tmpl: Template, prefix: str) -> None:
    """``clear_nic_context``/``clear_nic_alias_context``."""
    from oned.api.vm_context import NETWORK6_CONTEXT, NETWORK_CONTEXT

    context = tmpl.get_vector("CONTEXT")
    if context is None:
        return
    for cvars in (NETWORK_CONTEXT, NETWORK6_CONTEXT):
        for cname, *_ in cvars:
            context.pop(prefix + cname, None)


# -- attach ----------------------------------------------------------------------------


async def set_up_attach_nic(
    core: Core, tx: Tx, vector: dict[str, str], alias: bool, cluster_id: int
) -> list[LeaseChanges]:
    """``VirtualMachine::set_up_attach_nic``: the new NIC (ATTACH=YES) with its lease,
    the rules of the security groups the VM joins, ALIAS_IDS (the NETWORK quota is
    the caller's, ``charge_attach_quota``)."""
    vm = tx.vm
    tmpl = vm.template
    nic = dict(vector)
    nics = all_nics(tmpl)
    max_nic = max((_int(n.get("NIC_ID")) for n in nics), default=-1)
    max_alias = max((_int(n.get("ALIAS_ID")) for n in tmpl.vectors("NIC_ALIAS")), default=-1)
    nic_id = max_nic + 1
    parent: dict[str, str] | None = None
    parent_ids = ""
    if alias:
        parent = next((n for n in nics if n.get("NAME", "") == nic.get("PARENT", "")), None)
        if parent is None:
            raise ActionError("Alias not found.")
        parent_ids = parent.get("ALIAS_IDS", "")
        alias_id = 0 if not parent_ids else max_alias + 1
        parent_ids = f"{parent_ids},{nic_id}" if parent_ids else str(nic_id)
        pid = parent.get("NIC_ID", "")
        nic_name(nic, f"NIC{pid}_ALIAS{nic_id}")
        nic["PARENT_ID"] = pid
        nic["ALIAS_ID"] = str(alias_id)
    else:
        nic_name(nic, f"NIC{nic_id}")
    for key, value in (tmpl.get_vector("NIC_DEFAULT") or {}).items():
        nic.setdefault(key, value)
    clear_attach(tmpl)  # a flag left by an interrupted hotplug must not pick the NIC
    nic["ATTACH"] = "YES"
    changes: list[LeaseChanges] = []
    if _mode(nic) == "DUMMY":
        nic["NIC_ID"] = str(nic_id)
        if not nic.get("MAC"):
            nic["MAC"] = _dummy_mac(core)
    else:
        nic["NIC_ID"] = str(nic_id)
        try:
            nic, lease = await acquire_nic(
                core, tx.unit, nic, vm.oid, vm.uid, vm.gid, nic_id, charge_quota=False
            )
        except InternalError as exc:
            raise ActionError(exc.message) from exc
        changes.append(lease)
        clusters = ids_of(nic.get("CLUSTER_ID", "")) if "CLUSTER_ID" in nic else None
        if clusters is not None and cluster_id not in clusters:
            for done in changes:
                done.rollback()
            raise ActionError(f"Virtual network is not part of cluster [{cluster_id}]")
    if not alias:
        new_groups = nic_groups(nic) - vm_groups(tmpl)
        edits = GroupEdits(core)
        for sg_id in sorted(new_groups):
            if edits.get(sg_id) is None:
                continue
            for rule in edits.rules(sg_id):
                tmpl.add("SECURITY_GROUP_RULE", rule)
            edits.add(vm.oid, sg_id)
        edits.stage(tx.unit)
    tmpl.add("NIC_ALIAS" if alias else "NIC", nic)
    if parent is not None:
        parent["ALIAS_IDS"] = parent_ids
    add_context(core, tmpl, nic, alias)
    return changes


def charge_attach_quota(core: Core, tx: Tx, vector: dict[str, str]) -> LeaseChanges:
    """``quota_authorization(NETWORK)`` of the request: one LEASES for the NETWORK_ID
    the NIC names (a NIC given by NETWORK name is not counted, as in oned)."""
    from oned.objects.vnet import LeaseChanges

    changes = LeaseChanges()
    raw = vector.get("NETWORK_ID", "").strip()
    if _mode(vector) == "AUTO" or not raw.isdigit():
        return changes
    vm = tx.vm
    problem = net_quota.stage_add(core, tx.unit, vm.uid, vm.gid, {int(raw): 1}, changes)
    if problem:
        changes.rollback()
        raise AuthorizationError(problem)
    return changes


def set_detach_nic(tmpl: Template, nic_id: int) -> tuple[str, dict[str, str]] | None:
    """``set_detach_nic``: ATTACH=YES on the NIC; an alias leaves its parent's
    ALIAS_IDS at once. None when there is no such NIC."""
    found = find_nic(tmpl, nic_id)
    if found is None:
        return None
    clear_attach(tmpl)  # a flag left by an interrupted hotplug must not pick the NIC
    name, nic = found
    nic["ATTACH"] = "YES"
    if name == "NIC_ALIAS":
        if not nic.get("ALIAS_ID", "").strip() or not nic.get("PARENT_ID", "").strip():
            return None
        parent = find_nic(tmpl, _int(nic.get("PARENT_ID")))
        if parent is None:
            return None
        ids = sorted(ids_of(parent[1].get("ALIAS_IDS", "")) - {nic_id})
        parent[1]["ALIAS_IDS"] = join_ids(ids)
    return found


def delete_attach_nic(core: Core, tx: Tx) -> None:
    """``VirtualMachinePool::delete_attach_nic``: the NIC flagged ATTACH leaves the VM
    with its aliases; their leases and NETWORK quota are given back, groups no NIC
    uses any more lose their rules and forget the VM."""
    vm = tx.vm
    tmpl = vm.template
    found = attaching(tmpl)
    if found is None:
        return
    name, nic = found
    before = vm_groups(tmpl)
    _remove(tmpl, nic)
    nic_id = nic.get("NIC_ID", "")
    if name == "NIC":
        clear_context(tmpl, f"ETH{nic_id}_")
    else:
        parent_id = nic.get("PARENT_ID", "")
        clear_context(tmpl, f"ETH{parent_id}_ALIAS{nic.get('ALIAS_ID', '')}_")
        parent = find_nic(tmpl, _int(parent_id))
        if parent is not None:
            ids = sorted(ids_of(parent[1].get("ALIAS_IDS", "")) - {_int(nic_id)})
            parent[1]["ALIAS_IDS"] = join_ids(ids)
    released = []
    for alias_id in sorted(ids_of(nic.get("ALIAS_IDS", ""))):
        alias = find_nic(tmpl, alias_id)
        if alias is None:
            continue
        released.append(alias[1])
        clear_context(tmpl, f"ETH{nic_id}_ALIAS{alias[1].get('ALIAS_ID', '')}_")
        _remove(tmpl, alias[1])
    released.append(nic)
    edits = GroupEdits(core)
    for sg_id in sorted(before - vm_groups(tmpl)):
        drop_group(edits, tmpl, vm.oid, sg_id)
    edits.stage(tx.unit)
    unit, vid, uid, gid = tx.unit, vm.oid, vm.uid, vm.gid

    async def release() -> list[LeaseChanges]:
        out = []
        for gone in released:
            if _mode(gone) != "DUMMY":
                out.append(await release_nic(core, unit, gone, vid, uid, gid))
        return out

    tx.before.append(release)
