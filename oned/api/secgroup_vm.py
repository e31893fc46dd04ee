"""The VM side of security groups (mirrors ``SecurityGroupPool::get_security_group_rules``
and ``release_security_group``).

A VM with NICs joins the security groups they name (the network's, the default group
0 included): each group records the VM in UPDATED_VMS, and the VM gets one
SECURITY_GROUP_RULE per rule, a NETWORK_ID rule becoming one rule per address range
of that network. The VM family stages these in the unit that creates (or finishes)
the VM, holding ``Locks(*lock_targets(core, ids))`` while it commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from oned.core import Core
from oned.pools.base import Pool, Unit

#: AR attributes copied into a NETWORK_ID rule (``AddressRange::SG_RULE_ATTRIBUTES``).
SG_RULE_ATTRIBUTES = ("AR_ID", "TYPE", "SIZE", "MAC", "IP", "IP6")


def lock_targets(core: Core, sg_ids: Iterable[int]) -> list[tuple[Pool[Any], int]]:
    return [(core.secgroups, sg_id) for sg_id in sorted(set(sg_ids))]


def _network_rules(core: Core, rule: dict[str, str], vnet_id: int) -> list[dict[str, str]]:
    """``VirtualNetwork::process_security_rule``: the rule once per address range."""
    vnets = getattr(core, "vnets", None)
    vnet = vnets.get(vnet_id) if vnets is not None else None
    if vnet is None:
        return []
    from oned.objects.address_range import slaac

    out = []
    for ar in getattr(vnet, "ars", []):
        new = dict(rule)
        for name in SG_RULE_ATTRIBUTES:
            value = ar.attrs.get(name, "")
            if value:
                new[name] = value
        if ar.ula6:
            new["IP6_ULA"] = slaac(ar.ula6, ar.mac)
        if ar.global6:
            new["IP6_GLOBAL"] = slaac(ar.global6, ar.mac)
        out.append(new)
    return out


def _network_id(rule: dict[str, str]) -> int | None:
    raw = rule.get("NETWORK_ID")
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None


def stage_vm_rules(
    core: Core, unit: Unit, vm_id: int, sg_ids: Iterable[int]
) -> list[dict[str, str]]:
    """Record ``vm_id`` in each group (``vm_id`` -1: only read) and return the VM's
    SECURITY_GROUP_RULE values, groups in ascending id order. Missing groups are
    skipped; pass every group of the VM at once (one save per group)."""
    rules: list[dict[str, str]] = []
    for sg_id in sorted(set(sg_ids)):
        group = core.secgroups.get(sg_id)
        if group is None:
            continue
        if vm_id != -1 and vm_id not in group.updated:
            group = group.copy()
            group.add_vm(vm_id)
            unit.save(core.secgroups, group)
        for rule in group.rules():
            vnet_id = _network_id(rule)
            if vnet_id is None:
                rules.append(rule)
            else:
                rules.extend(_network_rules(core, rule, vnet_id))
    return rules


def stage_vm_release(core: Core, unit: Unit, vm_id: int, sg_ids: Iterable[int]) -> None:
    """``release_security_group``: forget ``vm_id`` in each group's lists."""
    if vm_id == -1:
        return
    for sg_id in sorted(set(sg_ids)):
        group = core.secgroups.get(sg_id)
        if group is None or not (
            vm_id in group.updated
            or vm_id in group.outdated
            or vm_id in group.updating
            or vm_id in group.error
        ):
            continue
        group = group.copy()
        group.del_vm(vm_id)
        unit.save(core.secgroups, group)


# -- changes made by one VM transaction (attach/detach NIC, attach/detach SG) --------


def ids_of(text: str) -> set[int]:
    """``one_util::split_unique<int>`` of a SECURITY_GROUPS value."""
    out: set[int] = set()
    for piece in text.split(","):
        part = piece.strip()
        if part.lstrip("-").isdigit():
            out.add(int(part))
    return out


def join_ids(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in sorted(set(ids)))


def nic_groups(nic: dict[str, str]) -> set[int]:
    return ids_of(nic.get("SECURITY_GROUPS", ""))


def vm_groups(tmpl: Any) -> set[int]:
    """``VirtualMachineNics::get_security_groups``: every NIC and NIC_ALIAS."""
    out: set[int] = set()
    for name in ("NIC", "NIC_ALIAS"):
        for nic in tmpl.vectors(name):
            out |= nic_groups(nic)
    return out


def remove_rules(tmpl: Any, sg_id: int) -> None:
    """The SECURITY_GROUP_RULE vectors of group ``sg_id`` leave the VM template."""
    tmpl.items = [
        (n, v)
        for n, v in tmpl.items
        if not (
            n == "SECURITY_GROUP_RULE"
            and isinstance(v, dict)
            and v.get("SECURITY_GROUP_ID", "").strip() == str(sg_id)
        )
    ]


class GroupEdits:
    """Working copies of the security groups one VM transaction changes (their locks
    are held by the caller); ``stage`` saves each changed group once."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._copies: dict[int, Any] = {}

    def get(self, sg_id: int) -> Any:
        if sg_id not in self._copies:
            group = self.core.secgroups.get(sg_id)
            self._copies[sg_id] = group.copy() if group is not None else None
        return self._copies[sg_id]

    def rules(self, sg_id: int) -> list[dict[str, str]]:
        """``get_security_group_rules(-1, sg_id)``: the rules, NETWORK_ID expanded."""
        group = self.get(sg_id)
        if group is None:
            return []
        out: list[dict[str, str]] = []
        for rule in group.rules():
            vnet_id = _network_id(rule)
            out.extend([rule] if vnet_id is None else _network_rules(self.core, rule, vnet_id))
        return out

    def release(self, vm_id: int, sg_id: int) -> None:
        """``release_security_group``: the VM leaves the group's lists."""
        group = self.get(sg_id)
        if group is not None:
            group.del_vm(vm_id)

    def add(self, vm_id: int, sg_id: int, updating: bool = False) -> None:
        group = self.get(sg_id)
        if group is None:
            return
        group.del_vm(vm_id)
        (group.updating if updating else group.updated).add(vm_id)

    def error(self, vm_id: int, sg_id: int) -> None:
        group = self.get(sg_id)
        if group is not None:
            group.del_vm(vm_id)
            group.error.add(vm_id)

    def stage(self, unit: Unit) -> None:
        for group in self._copies.values():
            if group is not None:
                unit.save(self.core.secgroups, group)


def drop_group(edits: GroupEdits, tmpl: Any, vm_id: int, sg_id: int) -> None:
    """``VirtualMachine::remove_security_group``: rules out, VM out of the group."""
    remove_rules(tmpl, sg_id)
    edits.release(vm_id, sg_id)


def add_rules(tmpl: Any, rules: list[dict[str, str]]) -> None:
    for rule in rules:
        tmpl.add("SECURITY_GROUP_RULE", dict(rule))
