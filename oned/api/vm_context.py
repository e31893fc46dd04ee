"""The CONTEXT a VM gets at allocation (mirrors ``VirtualMachineContext.cc``:
``parse_context``, ``generate_network_context`` and the ``vm_var`` variables they use).

With ``NETWORK="YES"`` every NIC adds its ``ETH<n>_*`` variables (from the NIC, else
from its address range and network, as ``$NETWORK[attr, NIC_ID=n]`` resolves). Values
may use ``$VAR`` (the VM's templates), ``$UNAME``/``$UID``/``$GNAME``/``$GID``/
``$NAME``/``$VMID``, ``$USER[attr]`` and ``$NETWORK[attr, NIC_ID=n]``; a variable that
resolves to nothing becomes empty, as in oned.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from oned.template import Template

if TYPE_CHECKING:
    from oned.core import Core

#: (context name, NIC attribute, alternative NIC attribute, look in the AR/network)
NETWORK_CONTEXT = (
    ("IP", "IP", "", False),
    ("MAC", "MAC", "", False),
    ("MASK", "NETWORK_MASK", "", True),
    ("NETWORK", "NETWORK_ADDRESS", "", True),
    ("GATEWAY", "GATEWAY", "", True),
    ("DNS", "DNS", "", True),
    ("SEARCH_DOMAIN", "SEARCH_DOMAIN", "", True),
    ("MTU", "GUEST_MTU", "", True),
    ("METRIC", "METRIC", "", True),
    ("METHOD", "METHOD", "", True),
    ("VLAN_ID", "VLAN_ID", "", True),
    ("VROUTER_IP", "VROUTER_IP", "", False),
    ("VROUTER_MANAGEMENT", "VROUTER_MANAGEMENT", "", False),
    ("EXTERNAL", "EXTERNAL", "", False),
    ("ROUTES", "ROUTES", "", True),
)
NETWORK6_CONTEXT = (
    ("IP6", "IP6_GLOBAL", "IP6", False),
    ("IP6_ULA", "IP6_ULA", "", False),
    ("IP6_GATEWAY", "GATEWAY6", "", True),
    ("IP6_METRIC", "IP6_METRIC", "", True),
    ("IP6_METHOD", "IP6_METHOD", "", True),
    ("IP6_PREFIX_LENGTH", "PREFIX_LENGTH", "", True),
    ("VROUTER_IP6", "VROUTER_IP6_GLOBAL", "VROUTER_IP6", False),
    ("EXTERNAL", "EXTERNAL", "", False),
)

_VAR = re.compile(
    r"\$(?:(?P<vec>[A-Za-z_][A-Za-z0-9_]*)\[(?P<args>[^\]]*)\]|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)


def _network_value(core: Core, tmpl: Template, attr: str, nic_id: str) -> str:
    """``$NETWORK[attr, NIC_ID=n]``: the NIC, then its address range, then its network."""
    nics = tmpl.vectors("NIC") + tmpl.vectors("NIC_ALIAS")
    nic = next((n for n in nics if n.get("NIC_ID") == nic_id), None)
    if nic is None:
        return ""
    if nic.get(attr):
        return nic[attr]
    raw = nic.get("NETWORK_ID", "").strip()
    vn = core.vnets.get(int(raw)) if raw.isdigit() else None
    if vn is None:
        return ""
    raw_ar = nic.get("AR_ID", "").strip()
    ar = vn.ar(int(raw_ar)) if raw_ar.isdigit() else None
    if ar is not None and ar.attrs.get(attr):
        return ar.attrs[attr]
    return vn.template.get(attr) or ""


def _substitute(
    core: Core, text: str, tmpl: Template, user_tmpl: Template, owner: dict[str, str]
) -> str:
    def one(match: re.Match[str]) -> str:
        vec = match.group("vec")
        if vec is not None:
            args = [a.strip() for a in match.group("args").split(",")]
            attr = args[0].strip('"').upper() if args else ""
            if vec.upper() == "USER":
                user = core.users.get(int(owner["UID"]))
                return (user.template.get(attr) or "") if user is not None else ""
            if vec.upper() == "NETWORK":
                nic_id = "0"
                for arg in args[1:]:
                    key, _, value = arg.partition("=")
                    if key.strip().upper() == "NIC_ID":
                        nic_id = value.strip().strip('"')
                return _network_value(core, tmpl, attr, nic_id)
            vector = tmpl.get_vector(vec) or user_tmpl.get_vector(vec) or {}
            return vector.get(attr, "")
        name = match.group("name").upper()
        if name in owner:
            return owner[name]
        return tmpl.get(name) or user_tmpl.get(name) or ""

    return _VAR.sub(one, text)


def parse_context(core: Core, tmpl: Template, user_tmpl: Template, owner: dict[str, str]) -> None:
    """Fill the CONTEXT vector of ``tmpl`` in place (variables and network context)."""
    context = tmpl.get_vector("CONTEXT")
    if context is None:
        return
    context.pop("FILES_DS", None)
    for key, value in list(context.items()):
        if "$" in value:
            context[key] = _substitute(core, value, tmpl, user_tmpl, owner)
    if context.get("NETWORK", "").upper() not in ("YES", "TRUE"):
        return
    for nic in tmpl.vectors("NIC") + tmpl.vectors("NIC_ALIAS"):
        if nic.get("NETWORK_MODE", "").upper() == "AUTO":
            continue
        nic_id = nic.get("NIC_ID", "0")
        prefix = f"ETH{nic_id}"
        if "ALIAS_ID" in nic:  # parse_context_network: ETH<parent>_ALIAS<alias>_*
            prefix = f"ETH{nic.get('PARENT_ID', '')}_ALIAS{nic['ALIAS_ID']}"
        for cvars in (NETWORK_CONTEXT, NETWORK6_CONTEXT):
            for cname, nic_name, alt, lookup in cvars:
                value = nic.get(nic_name, "") or (nic.get(alt, "") if alt else "")
                if not value and lookup:
                    value = _network_value(core, tmpl, nic_name, nic_id)
                context[f"{prefix}_{cname}"] = value
