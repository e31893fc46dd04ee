"""Authorization: permission bits plus ACL rules (mirrors ``AclManager::authorize``).

``Caller`` is who a call runs as; ``ObjectAuth`` is what an object exposes to
authorization (``PoolObjectAuth``). ``AclEngine.authorize`` answers one request, and
``check`` raises the AUTHORIZATION error with oned's wording, lock checks included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from oned.auth import acl
from oned.auth.acl import AclRule
from oned.errors import AuthorizationError
from oned.objects.base import LockLevel, Op, Permissions

OP_NAMES = {Op.USE: "USE", Op.MANAGE: "MANAGE", Op.ADMIN: "ADMIN", Op.CREATE: "CREATE"}

# Lock level that blocks an operation: USE lock blocks all, MANAGE blocks manage+admin.
_LOCK_BLOCKS = {
    Op.USE: (LockLevel.USE,),
    Op.MANAGE: (LockLevel.USE, LockLevel.MANAGE),
    Op.ADMIN: (LockLevel.USE, LockLevel.MANAGE, LockLevel.ADMIN),
    Op.CREATE: (LockLevel.USE, LockLevel.MANAGE, LockLevel.ADMIN),
}


@dataclass(frozen=True)
class Caller:
    """The identity an API call runs as (after token EGID scoping)."""

    uid: int
    gid: int
    uname: str
    gname: str
    group_ids: frozenset[int]
    umask: int = 0o177

    @property
    def is_admin(self) -> bool:
        return self.uid == 0 or 0 in self.group_ids


@dataclass(frozen=True)
class ObjectAuth:
    """What one object exposes to authorization."""

    type_name: str
    oid: int
    uid: int = -1
    gid: int = -1
    perms: Permissions | None = None
    cids: frozenset[int] = field(default_factory=frozenset)
    locked: int = 0

    @property
    def type_bit(self) -> int:
        return acl.TYPES.get(self.type_name, 0)


def type_word(name: str) -> str:
    """Resource name as printed in authorization errors."""
    return {"NET": "NET", "TEMPLATE": "TEMPLATE"}.get(name, name)


class AclEngine:
    """The rule set, indexed by user selector for fast matching."""

    def __init__(self, zone_id: int) -> None:
        self.zone_id = zone_id
        self.rules: dict[int, AclRule] = {}
        self._by_user: dict[int, list[AclRule]] = {}

    def load(self, rules: Iterable[AclRule]) -> None:
        self.rules = {r.oid: r for r in rules}
        self._reindex()

    def add(self, rule: AclRule) -> None:
        self.rules[rule.oid] = rule
        self._reindex()

    def remove(self, oid: int) -> None:
        self.rules.pop(oid, None)
        self._reindex()

    def find(self, key: tuple[int, int, int, int]) -> AclRule | None:
        for rule in self.rules.values():
            if rule.key() == key:
                return rule
        return None

    def _reindex(self) -> None:
        index: dict[int, list[AclRule]] = {}
        for rule in self.rules.values():
            index.setdefault(rule.user, []).append(rule)
        self._by_user = index

    def _candidate_rules(self, caller: Caller) -> Iterable[AclRule]:
        yield from self._by_user.get(acl.ALL, ())
        yield from self._by_user.get(acl.INDIVIDUAL | caller.uid, ())
        for gid in caller.group_ids:
            yield from self._by_user.get(acl.GROUP | gid, ())

    def _zone_ok(self, rule: AclRule) -> bool:
        return rule.zone == acl.ALL or rule.zone == (acl.INDIVIDUAL | self.zone_id)

    def authorize(self, caller: Caller, op: Op, obj: ObjectAuth) -> bool:
        """Whether ``caller`` may perform ``op`` on ``obj`` (lock not considered)."""
        if caller.is_admin:
            return True
        perms = obj.perms
        if perms is not None and obj.oid >= 0:
            bits = {Op.USE: 0, Op.MANAGE: 1, Op.ADMIN: 2}.get(op)
            if bits is not None:
                vals = perms.values()
                if obj.uid == caller.uid and vals[bits]:
                    return True
                if obj.gid in caller.group_ids and vals[3 + bits]:
                    return True
                if vals[6 + bits]:
                    return True
        type_bit = obj.type_bit
        wanted = {acl.ALL}
        if obj.oid >= 0:
            wanted.add(acl.INDIVIDUAL | obj.oid)
        if obj.gid >= 0:
            wanted.add(acl.GROUP | obj.gid)
        wanted.update(acl.CLUSTER | cid for cid in obj.cids)
        for rule in self._candidate_rules(caller):
            if not rule.rights & op or not rule.resource & type_bit:
                continue
            if not self._zone_ok(rule):
                continue
            selector = rule.resource & (acl.SELECTORS | acl.ID_MASK)
            if selector in wanted:
                return True
        return False

    def whole_pool(self, caller: Caller, type_name: str) -> bool:
        """Whether a ``TYPE/*`` USE rule (or admin) makes the whole pool visible."""
        if caller.is_admin:
            return True
        type_bit = acl.TYPES.get(type_name, 0)
        for rule in self._candidate_rules(caller):
            if (
                rule.rights & Op.USE
                and rule.resource & type_bit
                and rule.resource & acl.ALL
                and self._zone_ok(rule)
            ):
                return True
        return False

    def denial(
        self, caller: Caller, op: Op, obj: ObjectAuth, ignore_lock: bool = False
    ) -> str | None:
        """Why ``op`` on ``obj`` is refused (``AuthRequest::add_auth``), or None.

        Admins are refused only by locks (``<TYPE> is locked. [id]``); anyone else gets
        ``Not authorized to perform <OP> <TYPE> [id]``, locked objects included.
        """
        locked = not ignore_lock and obj.locked and obj.locked in _LOCK_BLOCKS[op]
        target = f"{obj.type_name} [{obj.oid}]" if obj.oid >= 0 else obj.type_name
        if caller.is_admin:
            return f"{obj.type_name} is locked. [{obj.oid}]" if locked else None
        if locked or not self.authorize(caller, op, obj):
            return f"Not authorized to perform {OP_NAMES[op]} {target}"
        return None

    def check(self, caller: Caller, op: Op, obj: ObjectAuth, ignore_lock: bool = False) -> None:
        """Raise AUTHORIZATION with oned's detail when ``op`` is not allowed."""
        self.check_all(caller, [(op, obj)], ignore_lock)

    def check_all(
        self, caller: Caller, requests: list[tuple[Op, ObjectAuth]], ignore_lock: bool = False
    ) -> None:
        """Evaluate every request (no short-circuit) and join the refusals with "; "."""
        reasons = [
            reason
            for op, obj in requests
            if (reason := self.denial(caller, op, obj, ignore_lock)) is not None
        ]
        if reasons:
            raise AuthorizationError("; ".join(reasons), requests[0][1].oid)
