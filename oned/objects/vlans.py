"""Group VLAN rules (mirrors ``GroupVlans``): which VLAN ids a group's networks may use."""

from __future__ import annotations

import re

from oned.template import Template, cdata

SCOPES = ("VLAN_ID", "OUTER_VLAN_ID", "CVLAN", "VLAN_TAGGED_ID", "ANY")
_RANGE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


class VlanError(ValueError):
    """A VLAN rule that does not parse."""


def _check_range(rule: dict[str, str], key: str) -> None:
    value = rule.get(key, "")
    if not value:
        raise VlanError(f"Missing {key} in rule.")
    if not _RANGE.match(value):
        raise VlanError(f"Invalid {key} specification.")


def build_rules(tmpl: Template) -> list[dict[str, str]]:
    """Validate the RULE vectors of a VLAN template and normalise them like oned."""
    rules = []
    for raw in tmpl.vectors("RULE"):
        rule = dict(raw)
        _check_range(rule, "ID")
        scope = rule.get("SCOPE", "").upper()
        if scope not in SCOPES:
            raise VlanError("Wrong SCOPE in rule.")
        rule["SCOPE"] = scope
        vntemplate = rule.get("VNTEMPLATE", "")
        if not vntemplate or vntemplate == "-1":
            rule["VNTEMPLATE"] = "-1"
        else:
            _check_range(rule, "VNTEMPLATE")
        rule.pop("TYPE", None)
        rule.pop("TARGET_ID", None)
        rules.append(rule)
    return rules


def vlans_xml(gid: int, rules: list[dict[str, str]]) -> str:
    """``<VLAN_RULES><ID>gid</ID><RULE>...</RULE>...</VLAN_RULES>`` (keys sorted, CDATA)."""
    out = [f"<VLAN_RULES><ID>{cdata(str(gid))}</ID>"]
    for rule in rules:
        out.append("<RULE>")
        out.extend(f"<{k}>{cdata(rule[k])}</{k}>" for k in sorted(rule))
        out.append("</RULE>")
    out.append("</VLAN_RULES>")
    return "".join(out)
