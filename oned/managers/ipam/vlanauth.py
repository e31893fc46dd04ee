"""Group VLAN rules applied to network requests (mirrors ``SharedAPI::validate_vlan_auth``,
``check_group_vlan``, ``has_vntemplate_rules`` and ``GroupVlans::check``).

A non-admin may only ask for a VLAN_ID, OUTER_VLAN_ID, CVLANS or VLAN_TAGGED_ID (in the
template or in its ARs) that a rule of one of its groups allows; automatic VLAN ids are
refused when a group has rules scoped to the VN template being instantiated.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from oned.errors import AuthorizationError

if TYPE_CHECKING:
    from oned.api.context import Call
    from oned.core import Core
    from oned.template import Template

_RANGE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_SCOPE_OF = {
    "VLAN_ID": "VLAN_ID",
    "CVLANS": "CVLAN",
    "VLAN_TAGGED_ID": "VLAN_TAGGED_ID",
    "OUTER_VLAN_ID": "OUTER_VLAN_ID",
}


def _ranges(text: str) -> list[tuple[int, int]] | None:
    if not text or not _RANGE.match(text):
        return None
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        out.append((min(a, b), max(a, b)))
    return out


def _check(rules: list[dict[str, str]], scope: str, value: str, template_id: int) -> str | None:
    """``GroupVlans::check``: None when allowed, "" when no rule allows it, else why."""
    if scope in ("VLAN_ID", "OUTER_VLAN_ID"):
        if not value.isdigit():
            return f"Invalid {scope} specification."
        tests = [(int(value), int(value))]
    else:
        parsed = _ranges(value)
        if parsed is None:
            return f"Invalid {scope} specification."
        tests = parsed
    for rule in rules:
        if not tests:
            break
        if rule.get("SCOPE") not in (scope, "ANY"):
            continue
        templates = rule.get("VNTEMPLATE", "-1")
        if templates not in ("", "-1"):
            spans = _ranges(templates) or []
            if not any(a <= template_id <= b for a, b in spans):
                continue
        allowed = _ranges(rule.get("ID", "")) or []
        tests = [t for t in tests if not any(a <= t[0] and t[1] <= b for a, b in allowed)]
    return None if not tests else ""


def validate(core: Core, call: Call, tmpl: Template, template_id: int = -1) -> None:
    """Raise ``AuthorizationError`` when the caller may not use the VLANs it asks for."""
    if call.is_admin:
        return
    groups = sorted(call.caller.group_ids)
    auto = any(
        (tmpl.get(name) or "").strip().upper() == "YES"
        for name in ("AUTOMATIC_VLAN_ID", "AUTOMATIC_OUTER_VLAN_ID")
    )
    if auto and template_id != -1:
        for gid in groups:
            for rule in core.group_vlans.get(gid):
                spans = _ranges(rule.get("VNTEMPLATE", "-1")) or []
                if any(a <= template_id <= b for a, b in spans):
                    raise AuthorizationError(
                        "Automatic selection of VLAN ID cannot be used with VLAN rules "
                        "scoped to the VN Template"
                    )
    requests = []
    for attr, scope in _SCOPE_OF.items():
        value = tmpl.get(attr)
        if value:
            requests.append((scope, value))
    for ar in tmpl.vectors("AR"):
        for attr, scope in _SCOPE_OF.items():
            if ar.get(attr):
                requests.append((scope, ar[attr]))
    for scope, value in requests:
        error: str | None = ""
        for gid in groups:
            error = _check(core.group_vlans.get(gid), scope, value, template_id)
            if error is None or error:
                break
        if error is None:
            continue
        raise AuthorizationError(error or f"User is not authorized to use the requested {scope}")
