"""The SECURITY_GROUP object (mirrors ``SecurityGroup.h``).

A security group is an owned template of ``RULE`` vectors plus the four VM id
collections oned keeps while pushing rule changes to VMs: ``UPDATED_VMS`` (rules
applied), ``OUTDATED_VMS`` (waiting for an update), ``UPDATING_VMS`` (driver busy) and
``ERROR_VMS`` (the driver failed). Rule validation lives here too, with oned's texts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import (
    Permissions,
    copy_object,
    esc,
    ids_of,
    ids_xml,
    int_of,
    owner_columns,
    owner_fields,
    owner_xml,
    parse_xml,
    template_of,
    text_of,
)
from oned.template import Template

#: The first 100 ids are reserved for system security groups (``set_lastOID(99)``).
FIRST_USER_OID = 100
DEFAULT_SECGROUP_ID = 0

DEFAULT_DESCRIPTION = (
    "The default security group is added to every network. Use it to add default filter "
    "rules for your networks. You may remove this security group from any network by "
    "updating its properties."
)

_PROTOCOLS = ("TCP", "UDP", "ICMP", "ICMPV6", "IPSEC", "ALL")
_PORTS_LIST = re.compile(r"^(([0-9]+|[0-9]+:[0-9]+),)*([0-9]+|[0-9]+:[0-9]+)$")
_UINT_MAX = 2**32 - 1


class RuleError(ValueError):
    """A RULE oned refuses; the message is oned's."""


@dataclass
class SecurityGroup:
    oid: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    perms: Permissions = field(default_factory=Permissions)
    updated: set[int] = field(default_factory=set)
    outdated: set[int] = field(default_factory=set)
    updating: set[int] = field(default_factory=set)
    error: set[int] = field(default_factory=set)
    template: Template = field(default_factory=Template)
    #: The last rendering of each VM id collection (every VM of the group, so a NIC
    #: allocation would otherwise render thousands of ids): reused while the ids are
    #: the same, extended when only larger ids were added.
    _rendered: dict[str, tuple[frozenset[int], str]] = field(
        default_factory=dict, repr=False, compare=False
    )

    TABLE: ClassVar[str] = "secgroup_pool"
    ROOT: ClassVar[str] = "SECURITY_GROUP"

    def to_xml(self) -> str:
        return (
            f"<SECURITY_GROUP><ID>{self.oid}</ID>{owner_xml(self)}"
            f"<NAME>{esc(self.name)}</NAME>{self.perms.to_xml()}"
            f"{self._ids('UPDATED_VMS', self.updated)}{self._ids('OUTDATED_VMS', self.outdated)}"
            f"{self._ids('UPDATING_VMS', self.updating)}{self._ids('ERROR_VMS', self.error)}"
            f"{self.template.to_xml()}</SECURITY_GROUP>"
        )

    def _ids(self, tag: str, ids: set[int]) -> str:
        if len(ids) < 64:
            return ids_xml(tag, ids)
        last = self._rendered.get(tag)
        if last is not None and last[0] == ids:
            return last[1]
        if last is not None and last[0] and ids > last[0]:
            added = ids - last[0]
            if min(added) > max(last[0]):
                inner = "".join(f"<ID>{i}</ID>" for i in sorted(added))
                text = f"{last[1][: -len(tag) - 3]}{inner}</{tag}>"
                self._rendered[tag] = (frozenset(ids), text)
                return text
        text = ids_xml(tag, ids)
        self._rendered[tag] = (frozenset(ids), text)
        return text

    def columns(self) -> dict[str, Any]:
        return owner_columns(self)

    @classmethod
    def from_xml(cls, body: str) -> SecurityGroup:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            **owner_fields(root),
            updated=set(ids_of(root, "UPDATED_VMS")),
            outdated=set(ids_of(root, "OUTDATED_VMS")),
            updating=set(ids_of(root, "UPDATING_VMS")),
            error=set(ids_of(root, "ERROR_VMS")),
            template=template_of(root),
        )

    def copy(self) -> SecurityGroup:
        return copy_object(self)

    # -- VM collections (``SecurityGroup::add_vm``/``del_vm``/``commit``) ----------

    def vm_count(self) -> int:
        return len(self.updated) + len(self.updating) + len(self.error) + len(self.outdated)

    def add_vm(self, vm_id: int) -> None:
        self.updated.add(vm_id)

    def del_vm(self, vm_id: int) -> None:
        for ids in (self.updated, self.updating, self.error, self.outdated):
            if vm_id in ids:
                ids.discard(vm_id)
                return

    def commit(self, recover: bool) -> None:
        """Mark VMs for a rule update: all of them, or (recover) the unfinished ones."""
        if not recover:
            self.outdated |= self.updated
            self.updated.clear()
        self.outdated |= self.updating | self.error
        self.updating.clear()
        self.error.clear()

    def rules(self) -> list[dict[str, str]]:
        """``get_rules``: each RULE as a SECURITY_GROUP_RULE with the group's id and name."""
        out = []
        for rule in self.template.vectors("RULE"):
            entry = dict(rule)
            entry["SECURITY_GROUP_ID"] = str(self.oid)
            entry["SECURITY_GROUP_NAME"] = self.name
            out.append(entry)
        return out


def default_secgroup() -> SecurityGroup:
    """Security group 0 as ``SecurityGroupPool`` creates it in an empty database."""
    tmpl = Template()
    tmpl.add("DESCRIPTION", DEFAULT_DESCRIPTION)
    tmpl.add("RULE", {"RULE_TYPE": "OUTBOUND", "PROTOCOL": "ALL"})
    tmpl.add("RULE", {"RULE_TYPE": "INBOUND", "PROTOCOL": "ALL"})
    return SecurityGroup(
        oid=DEFAULT_SECGROUP_ID,
        name="default",
        perms=Permissions(1, 1, 1, 1, 0, 0, 1, 0, 0),
        template=tmpl,
    )


# -- rule validation (``SecurityGroup::is_valid``) -----------------------------------


def _to_uint(text: str) -> int:
    """``one_util::string_to_unsigned``: 0 unless all digits, saturating."""
    if not text.isdigit() or not text.isascii():
        return 0
    return min(int(text), _UINT_MAX)


def _is_uint(text: str) -> bool:
    """``vector_value(name, unsigned int&)``: istringstream reads the whole value."""
    m = re.fullmatch(r"\s*\+?([0-9]+)", text)
    return m is not None and int(m.group(1)) <= _UINT_MAX


def _is_int(text: str) -> bool:
    m = re.fullmatch(r"\s*[+-]?([0-9]+)", text)
    return m is not None and -(2**31) <= int(text) <= 2**31 - 1


def _check_range(value: str) -> None:
    if not _PORTS_LIST.fullmatch(value):
        raise RuleError("Invalid RANGE specification.")
    ports = 0
    for part in value.split(","):
        if ":" in part:
            first, last = part.split(":")
            end = _to_uint(last)
            if end > 65535:
                raise RuleError("RANGE out of bounds 0-65536.")
            if end < _to_uint(first):
                raise RuleError("RANGE BEGIN value is greater than RANGE END value")
            ports += 2
        else:
            if _to_uint(part) > 65535:
                raise RuleError("RANGE out of bounds 0-65536.")
            ports += 1
        if ports > 15:
            raise RuleError("Not more than 15 ports can be specified in a RULE")


def _valid_ip(ip: str) -> bool:
    """``inet_pton`` for AF_INET6, then AF_INET (no zone ids, no leading zeros)."""
    if "%" in ip:
        return False
    for kind in (ipaddress.IPv6Address, ipaddress.IPv4Address):
        try:
            kind(ip)
            return True
        except ValueError:
            continue
    return False


def check_rule(rule: dict[str, str]) -> None:
    """Raise ``RuleError`` with oned's text when a RULE is invalid."""
    proto = rule.get("PROTOCOL", "").upper()
    if proto not in _PROTOCOLS:
        raise RuleError(
            "Wrong PROTOCOL in rule. Valid options: TCP, UDP, ICMP, ICMPV6, IPSEC, ALL."
        )
    value = rule.get("RANGE", "")
    if value and proto not in ("TCP", "UDP"):
        raise RuleError("RANGE is supported only for TCP and UDP protocols.")
    if value:
        _check_range(value)
    value = rule.get("ICMP_TYPE", "")
    if value:
        if proto != "ICMP":
            raise RuleError("ICMP_TYPE is supported only for ICMP protocol.")
        if not _is_uint(value):
            raise RuleError("Wrong ICMP_TYPE, it must be integer")
    value = rule.get("ICMPV6_TYPE", "")
    if value:
        if proto != "ICMPV6":
            raise RuleError("ICMPV6_TYPE is supported only for ICMPV6 protocol.")
        if not _is_uint(value):
            raise RuleError("Wrong ICMPV6_TYPE, it must be integer")
    if rule.get("RULE_TYPE", "").upper() not in ("INBOUND", "OUTBOUND"):
        raise RuleError("Wrong RULE_TYPE in rule. Valid options: INBOUND, OUTBOUND.")
    ip = rule.get("IP", "")
    if ip:
        if not _is_uint(rule.get("SIZE", "")):
            raise RuleError("Wrong or empty SIZE.")
        if not _valid_ip(ip):
            raise RuleError("Wrong format for IP value.")
    elif "NETWORK_ID" in rule and not _is_int(rule["NETWORK_ID"]):
        raise RuleError("Wrong NETWORK_ID.")


def _marshall(rule: dict[str, str]) -> str:
    return "@^_".join(f"{k}={rule[k]}" for k in sorted(rule))


def check_and_dedup(tmpl: Template) -> None:
    """Validate every RULE, then drop exact duplicates (``remove_duplicates``)."""
    for rule in tmpl.vectors("RULE"):
        check_rule(rule)
    seen: set[str] = set()
    kept = []
    for name, value in tmpl.items:
        if name == "RULE" and isinstance(value, dict):
            digest = hashlib.sha1(_marshall(value).encode()).hexdigest()  # noqa: S324
            if digest in seen:
                continue
            seen.add(digest)
        kept.append((name, value))
    tmpl.items = kept
