"""ACL rules: codec and matching (mirrors ``AclRule.h``/``AclManager``).

A rule is four 64-bit numbers (user set, resource set, rights, zone). The upper 32 bits
of user/resource/zone select INDIVIDUAL ``#id``, GROUP ``@id``, ALL ``*`` or (resources
only) CLUSTER ``%id``; resources also carry object-type bits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INDIVIDUAL = 0x100000000
GROUP = 0x200000000
ALL = 0x400000000
CLUSTER = 0x800000000
SELECTORS = INDIVIDUAL | GROUP | ALL | CLUSTER
ID_MASK = 0xFFFFFFFF

# Object types in bit order: the order names appear in a rule's string form.
TYPES: dict[str, int] = {
    "VM": 0x1000000000,
    "HOST": 0x2000000000,
    "NET": 0x4000000000,
    "IMAGE": 0x8000000000,
    "USER": 0x10000000000,
    "TEMPLATE": 0x20000000000,
    "GROUP": 0x40000000000,
    "DATASTORE": 0x100000000000,
    "CLUSTER": 0x200000000000,
    "DOCUMENT": 0x400000000000,
    "ZONE": 0x800000000000,
    "SECGROUP": 0x1000000000000,
    "VDC": 0x2000000000000,
    "VROUTER": 0x4000000000000,
    "MARKETPLACE": 0x8000000000000,
    "MARKETPLACEAPP": 0x10000000000000,
    "VMGROUP": 0x20000000000000,
    "VNTEMPLATE": 0x40000000000000,
    "BACKUPJOB": 0x100000000000000,
}
ACL_TYPE = 0x80000000000
HOOK_TYPE = 0x80000000000000
ALL_TYPES = sum(TYPES.values())

RIGHTS: dict[str, int] = {"USE": 0x1, "MANAGE": 0x2, "ADMIN": 0x4, "CREATE": 0x8}

FEDERATED_TYPES = TYPES["USER"] | TYPES["GROUP"] | TYPES["ZONE"] | TYPES["VDC"] | ACL_TYPE
TYPE_MASK = 0xFFFFFFF000000000
INVALID_CLUSTER_TYPES = (
    sum(TYPES[n] for n in TYPES if n not in ("HOST", "NET", "DATASTORE", "BACKUPJOB")) | ACL_TYPE
)
CLUSTER_TYPES = TYPES["HOST"] | TYPES["NET"] | TYPES["DATASTORE"]
NO_GROUP_TYPES = TYPES["HOST"] | TYPES["GROUP"] | TYPES["CLUSTER"] | TYPES["ZONE"] | TYPES["VDC"]


class AclSyntaxError(ValueError):
    """A rule (string or numbers) that is malformed."""


def _selector_str(value: int, order: str) -> str:
    """Selector text, tried in oned's precedence ``order`` (e.g. ``@#*``); the id is
    the low 32 bits as oned's ``int``."""
    oid = value & ID_MASK
    if oid & 0x80000000:
        oid -= 1 << 32
    bits = {"@": GROUP, "#": INDIVIDUAL, "%": CLUSTER, "*": ALL}
    for mark in order:
        if value & bits[mark]:
            return "*" if mark == "*" else f"{mark}{oid}"
    return "??"


@dataclass(frozen=True)
class AclRule:
    """One stored rule."""

    oid: int
    user: int
    resource: int
    rights: int
    zone: int

    def key(self) -> tuple[int, int, int, int]:
        return (self.user, self.resource, self.rights, self.zone)

    def to_str(self) -> str:
        types = "+".join(n for n, bit in TYPES.items() if self.resource & bit)
        rights = "+".join(n for n, bit in RIGHTS.items() if self.rights & bit)
        return (
            f"{_selector_str(self.user, '@#*')} {types}/{_selector_str(self.resource, '@#%*')} "
            f"{rights} {_selector_str(self.zone, '#*')}"
        )

    def to_xml(self) -> str:
        return (
            f"<ACL><ID>{self.oid}</ID><USER>{self.user:x}</USER>"
            f"<RESOURCE>{self.resource:x}</RESOURCE><RIGHTS>{self.rights:x}</RIGHTS>"
            f"<ZONE>{self.zone:x}</ZONE><STRING>{self.to_str()}</STRING></ACL>"
        )

    def validate(self) -> None:
        """``AclRule::malformed``: raise with every reason, joined like oned (the zone's
        GROUP bit reason is appended without a separator, as oned writes it)."""
        text = ""

        def add(reason: str, separator: str = "; ") -> None:
            nonlocal text
            text += (separator if text else "") + reason

        def sel_id(value: int) -> int:
            low = value & ID_MASK
            return low - (1 << 32) if low & 0x80000000 else low

        user = self.user
        if user & INDIVIDUAL and user & GROUP:
            add("[user] INDIVIDUAL (#) and GROUP (@) bits are exclusive")
        if user & INDIVIDUAL and user & ALL:
            add("[user] INDIVIDUAL (#) and ALL (*) bits are exclusive")
        if user & GROUP and user & ALL:
            add("[user] GROUP (@) and ALL (*) bits are exclusive")
        if not user & (INDIVIDUAL | GROUP | ALL):
            add("[user] is missing one of the INDIVIDUAL, GROUP or ALL bits")
        if sel_id(user) < 0:
            add("[user] ID cannot be negative")
        if user & ALL and sel_id(user) != 0:
            add("when using the ALL bit, [user] ID must be 0")
        res = self.resource
        if bin(res & SELECTORS).count("1") > 1:
            add("[resource] INDIVIDUAL (#), GROUP (@), CLUSTER (%) and ALL (*) bits are exclusive")
        types = res & TYPE_MASK
        if res & CLUSTER and types & INVALID_CLUSTER_TYPES:
            add(
                "[resource] CLUSTER(%) selector can be applied only to DATASTORE, HOST and "
                "NET types"
            )
        if res & GROUP and types & NO_GROUP_TYPES:
            add(
                "[resource] GROUP(@) selector cannot be applied to HOST, GROUP, CLUSTER, "
                "ZONE or VDC types"
            )
        if not res & SELECTORS:
            add("[resource] is missing one of the INDIVIDUAL, GROUP, CLUSTER or ALL bits")
        if sel_id(res) < 0:
            add("[resource] ID cannot be negative")
        if res & ALL and sel_id(res) != 0:
            add("when using the ALL bit, [resource] ID must be 0")
        if types == 0:
            add("[resource] type is missing")
        if res & 0xFE80000000000000:
            add("wrong [resource] type")
        rights = signed(self.rights)
        if rights == 0:
            add("wrong [rights], it cannot be 0")
        if rights > 0xF:
            add("wrong [rights], it cannot be bigger than 0xF")
        zone = self.zone
        if zone & GROUP:
            add("[zone] GROUP (@) bit is not supported", separator="")
        if zone & INDIVIDUAL and zone & ALL:
            add("[zone] INDIVIDUAL (#) and ALL (*) bits are exclusive")
        if not zone & (INDIVIDUAL | GROUP | ALL):
            add("[zone] is missing one of the INDIVIDUAL or ALL bits")
        if sel_id(zone) < 0:
            add("[zone] ID cannot be negative")
        if zone & ALL and sel_id(zone) != 0:
            add("when using the ALL bit, [zone] ID must be 0")
        if zone & ALL and res & INDIVIDUAL and types & ~FEDERATED_TYPES:
            add(
                "[resource] INDIVIDUAL(#) selector cannot be applied to ALL zones, except "
                "for USER, GROUP and ZONE types"
            )
        if text:
            raise AclSyntaxError(f"Rule {self.to_str()} is malformed: {text}")


def _parse_selector(token: str, allowed: str) -> int:
    if token == "*" and "*" in allowed:  # noqa: S105
        return ALL
    kinds = {"#": INDIVIDUAL, "@": GROUP, "%": CLUSTER}
    if token[:1] in kinds and token[:1] in allowed:
        try:
            oid = int(token[1:])
        except ValueError as exc:
            raise AclSyntaxError(f"wrong id in {token!r}") from exc
        if oid < 0 or oid > ID_MASK:
            raise AclSyntaxError(f"wrong id in {token!r}")
        return kinds[token[:1]] | oid
    raise AclSyntaxError(f"wrong selector {token!r}")


def parse_rule_string(text: str, zone_id: int) -> tuple[int, int, int, int]:
    """``USER RESOURCES/SELECTOR RIGHTS [ZONE]`` to the four numbers."""
    parts = text.split()
    if len(parts) not in (3, 4):
        raise AclSyntaxError("a rule has the form 'USER RESOURCES/SELECTOR RIGHTS [ZONE]'")
    user = _parse_selector(parts[0], "#@*")
    if "/" not in parts[1]:
        raise AclSyntaxError("resources must be 'TYPE[+TYPE...]/SELECTOR'")
    types, sel = parts[1].split("/", 1)
    resource = _parse_selector(sel, "#@%*")
    for name in types.split("+"):
        bit = TYPES.get(name.upper())
        if bit is None:
            raise AclSyntaxError(f"unknown resource type {name!r}")
        resource |= bit
    rights = 0
    for name in parts[2].split("+"):
        bit = RIGHTS.get(name.upper())
        if bit is None:
            raise AclSyntaxError(f"unknown right {name!r}")
        rights |= bit
    zone = _parse_selector(parts[3], "#*") if len(parts) == 4 else INDIVIDUAL | zone_id
    return user, resource, rights, zone


def parse_hex(value: str) -> int:
    """A hex component of ``one.acl.addrule`` read like ``istringstream >> hex`` into
    a ``long long``: blanks, a sign and ``0x`` allowed, trailing garbage ignored,
    nothing parsable gives 0, overflow saturates; returned as its unsigned 64 bits."""
    match = _HEX.match(value)
    if match is None:
        return 0
    number = int(match.group(2), 16)
    if match.group(1) == "-":
        number = -number
    number = max(-(1 << 63), min(number, (1 << 63) - 1))
    return number & ((1 << 64) - 1)


_HEX = re.compile(r"[ \t\n\v\f\r]*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)")


def signed(value: int) -> int:
    """A rule number as oned's ``long long`` (the key oned's rule multimap sorts by)."""
    return value - (1 << 64) if value >= 1 << 63 else value
