"""NETWORK quota (LEASES) of users and groups (mirrors ``QuotaNetwork``,
``Quota::check_quota``/``del_quota`` and ``SharedAPI::quota_authorization``).

Usage is staged in a ``Unit`` next to the lease change it pays for, so both commit or
neither does. uid 0 and gid 0 (oneadmin) are never counted, as in oned.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from oned.managers.image.quota import float_to_str
from oned.objects.quotas import NETWORK, Quotas

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vnet import LeaseChanges
    from oned.pools.base import Unit
    from oned.pools.quotas import QuotaTable

DEFAULT = -1.0
UNLIMITED = -2.0


def _num(text: str | None, default: float = 0.0) -> float:
    try:
        return float(text) if text is not None else default
    except ValueError:
        return default


def _entry(quotas: Quotas, net_id: int) -> dict[str, str] | None:
    for entry in quotas.entries[NETWORK.entry]:
        if entry.get("ID") == str(net_id):
            return entry
    return None


def check(quotas: Quotas, defaults: Quotas, net_id: int, leases: int) -> str | None:
    """Add ``leases`` to the NETWORK entry of ``net_id`` or say why not."""
    entry = _entry(quotas, net_id)
    if entry is None:
        entry = {"ID": str(net_id), "LEASES": "-1", "LEASES_USED": "0"}
        quotas.entries[NETWORK.entry].append(entry)
    limit = _num(entry.get("LEASES"), DEFAULT)
    used = _num(entry.get("LEASES_USED"))
    if limit == DEFAULT:
        default_entry = _entry(defaults, net_id)
        limit = _num(default_entry.get("LEASES"), UNLIMITED) if default_entry else UNLIMITED
    if limit != UNLIMITED and used + leases > limit:
        return f"limit of {limit:g} reached for LEASES quota in NETWORK with ID: {net_id}"
    entry["LEASES_USED"] = float_to_str(used + leases)
    return None


def release(quotas: Quotas, net_id: int, leases: int) -> None:
    entry = _entry(quotas, net_id)
    if entry is None:
        return
    entry["LEASES_USED"] = float_to_str(_num(entry.get("LEASES_USED")) - leases)
    if _num(entry.get("LEASES_USED")) == 0 and _num(entry.get("LEASES"), DEFAULT) == DEFAULT:
        quotas.entries[NETWORK.entry].remove(entry)


def _tables(core: Core, uid: int, gid: int) -> list[tuple[QuotaTable, int, str]]:
    out = []
    if uid != 0:
        out.append((core.user_quotas, uid, "user"))
    if gid != 0:
        out.append((core.group_quotas, gid, "group"))
    return out


def stage_add(
    core: Core,
    unit: Unit,
    uid: int,
    gid: int,
    usage: dict[int, int],
    changes: LeaseChanges | None = None,
) -> str | None:
    """Charge ``usage`` ({network id: leases}) to user and group, or say why not.

    The new usage is visible at once (two concurrent calls cannot both pass a limit or
    overwrite each other's count); ``changes.rollback()`` gives it back if the unit
    does not commit.
    """
    staged: list[tuple[QuotaTable, int, Quotas]] = []
    for table, oid, word in _tables(core, uid, gid):
        quotas = table.get(oid).copy()
        for net_id, leases in sorted(usage.items()):
            problem = check(quotas, table.defaults, net_id, leases)
            if problem:
                return f"{word} [{oid}] {problem}"
        staged.append((table, oid, quotas))
    for table, oid, quotas in staged:
        table.remember(oid, quotas)
        unit.sql(table.save(oid, quotas))
    if changes is not None:
        changes.on_rollback.append(partial(_give_back, core, uid, gid, usage))
    return None


def _give_back(core: Core, uid: int, gid: int, usage: dict[int, int]) -> None:
    for table, oid, _ in _tables(core, uid, gid):
        quotas = table.get(oid).copy()
        for net_id, leases in usage.items():
            release(quotas, net_id, leases)
        table.remember(oid, quotas)


def stage_del(
    core: Core,
    unit: Unit,
    uid: int,
    gid: int,
    usage: dict[int, int],
    changes: LeaseChanges | None = None,
) -> None:
    """Give ``usage`` back to user and group (at once; undone by ``changes.rollback()``)."""
    for table, oid, _ in _tables(core, uid, gid):
        quotas = table.get(oid).copy()
        for net_id, leases in usage.items():
            release(quotas, net_id, leases)
        table.remember(oid, quotas)
        unit.sql(table.save(oid, quotas))
    if changes is not None:
        changes.on_rollback.append(partial(_charge_again, core, uid, gid, usage))


def _charge_again(core: Core, uid: int, gid: int, usage: dict[int, int]) -> None:
    for table, oid, _ in _tables(core, uid, gid):
        quotas = table.get(oid).copy()
        for net_id, leases in usage.items():
            check(quotas, Quotas(), net_id, leases)
        table.remember(oid, quotas)
