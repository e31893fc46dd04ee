"""``one.acl.*`` (mirrors ``AclAPI`` and ``AclManager::add_rule/del_rule``)."""

from __future__ import annotations

from oned.api.context import Call
from oned.api.registry import rpc
from oned.auth import acl
from oned.auth.acl import AclRule, AclSyntaxError
from oned.auth.authorize import ObjectAuth
from oned.core import Core
from oned.errors import InternalError
from oned.objects.base import Op

ACL_AUTH = ObjectAuth("ACL", -1)


def _check(core: Core, call: Call) -> None:
    core.acl.check(call.caller, Op.MANAGE, ACL_AUTH)


@rpc("one.acl.addrule", "ssss", required=3)
async def addrule(
    core: Core, call: Call, user: str, resource: str, rights: str, zone: str = ""
) -> int:
    """Adds a new ACL rule (four hex numbers, as oned reads them; clients such as
    ``oneacl`` turn rule strings into them)."""
    _check(core, call)
    zone_value = acl.parse_hex(zone) if zone else acl.INDIVIDUAL | core.config.zone_id
    key = (acl.parse_hex(user), acl.parse_hex(resource), acl.parse_hex(rights), zone_value)
    existing = core.acl.find(key)
    candidate = AclRule(core.acl_pool.last_oid + 1, *key)
    if existing is not None:
        raise InternalError(f"Rule {candidate.to_str()} already exists")
    try:
        candidate.validate()
    except AclSyntaxError as exc:
        raise InternalError(str(exc)) from exc
    rule = AclRule(core.acl_pool.next_oid(), *key)
    unit = core.unit()
    unit.sql(core.acl_pool.insert(rule), lambda: core.acl.add(rule))
    unit.sql(core.acl_pool.control())
    try:
        await unit.commit("add acl rule")
    except Exception as exc:
        core.acl_pool.last_oid -= 1
        raise InternalError("Error inserting rule in DB") from exc
    return rule.oid


@rpc("one.acl.delrule", "i")
async def delrule(core: Core, call: Call, oid: int) -> int:
    """Deletes an ACL rule."""
    _check(core, call)
    if oid not in core.acl.rules:
        raise InternalError(f"Rule {oid} does not exist")
    unit = core.unit()
    unit.sql(core.acl_pool.delete(oid), lambda: core.acl.remove(oid))
    await unit.commit(f"delete acl rule {oid}")
    return oid


def pool_xml(core: Core) -> str:
    """``AclManager::dump``: oned keeps rules in a ``multimap<long long, AclRule*>``
    keyed by the (signed) user set; equal keys keep their insertion order, which is
    the id order (ids only grow, and rules load in table order)."""
    rules = sorted(core.acl.rules.values(), key=lambda r: (acl.signed(r.user), r.oid))
    return "<ACL_POOL>" + "".join(r.to_xml() for r in rules) + "</ACL_POOL>"


@rpc("one.acl.info", "")
async def info(core: Core, call: Call) -> str:
    """Returns the complete ACL rule set."""
    _check(core, call)
    return pool_xml(core)
