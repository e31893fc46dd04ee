"""VM template logic shared by ``one.template.*`` and, later, the VM family.

Pure functions (no I/O) mirroring ``Template::check_restricted``,
``TemplateAPI::merge``, ``TemplateAPI::instantiate_helper``'s template preparation,
``VirtualMachine::insert``'s naming and ``VirtualRouterAPI``'s ``%i`` names, and the
persistent-copy plan of ``TemplateAPI::instantiate``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from oned.template import Template

#: ``VMID``, ``TEMPLATE_NAME``... handled by the VM, never copied from the user.
INSTANTIATE_ERASED = ("NAME", "TEMPLATE_NAME", "TEMPLATE_ID")


def parse_restricted(values: Iterable[str]) -> dict[str, set[str]]:
    """``Template::parse_attributes``: ``VEC/SUB`` entries grouped per vector name.

    A plain name maps to an empty set (a single attribute); a vector name keeps the
    set of its restricted sub-attributes. Iteration in name order, as a C++ map.
    """
    out: dict[str, set[str]] = {}
    for value in values:
        if "/" in value:
            vec, sub = value.split("/", 1)
            out.setdefault(vec, set()).add(sub)
        else:
            out.setdefault(value, set())
    return dict(sorted(out.items()))


def _single(tmpl: Template, name: str) -> str | None:
    """``Template::get(name, string&)``: only when the first ``name`` is a single."""
    for n, v in tmpl.items:
        if n == name:
            return v if isinstance(v, str) else None
    return None


def restricted_in(tmpl: Template, ras: dict[str, set[str]]) -> str | None:
    """``check_restricted(ra)`` on a new template: the first restricted name it sets.

    For vectors it answers the sub-attribute (``MAC``), for singles the name.
    """
    for name, subs in ras.items():
        if subs:
            for vector in tmpl.vectors(name):
                for sub in sorted(subs):
                    if sub in vector:
                        return sub
        elif _single(tmpl, name) is not None:
            return name
    return None


def _restricted_values(tmpl: Template, name: str, subs: set[str]) -> tuple[bool, list[str]]:
    exists = any(n == name for n, _ in tmpl.items)
    found = [
        f"{sub}={vector[sub]}"
        for vector in tmpl.vectors(name)
        for sub in sorted(subs)
        if sub in vector
    ]
    return exists, sorted(found)


def restricted_change(
    new: Template, base: Template, ras: dict[str, set[str]], append: bool
) -> str | None:
    """``check_restricted(ra, base, append)``: the restricted name ``new`` changes.

    A vector is answered by its name (``NIC``), a single by its name. Singles the base
    has and ``new`` lacks are copied into ``new`` (kept on replace), as oned does.
    """
    for name, subs in ras.items():
        if subs:
            new_has, new_vals = _restricted_values(new, name, subs)
            base_has, base_vals = _restricted_values(base, name, subs)
            if new_vals != base_vals and (new_has or (not append and base_has)):
                return name
            continue
        mine = _single(new, name)
        theirs = _single(base, name)
        if mine is not None:
            if mine != (theirs or ""):
                return name
        elif theirs is not None:
            new.add(name, theirs)
    return None


def merge_user_attrs(tmpl: Template, uattrs: Template, ras: dict[str, set[str]] | None) -> None:
    """``TemplateAPI::merge``: user attributes replace the template's of the same name.

    ``ras`` is the restricted set for non-admins (None for admins); a restricted
    attribute raises ``RestrictedError`` with the name oned reports.
    """
    if not uattrs.items:
        return
    if ras is not None:
        found = restricted_change(uattrs, tmpl, ras, append=True)
        if found is not None:
            raise RestrictedError(found)
    tmpl.merge(uattrs)


class RestrictedError(ValueError):
    """A non-admin set or changed a restricted attribute (the message is its name)."""

    @property
    def attribute(self) -> str:
        return str(self.args[0])


def instantiate_template(
    source: Template, template_name: str, template_id: int, name: str
) -> Template:
    """The VM template ``instantiate_helper`` builds (after the user merge).

    NAME, TEMPLATE_NAME and TEMPLATE_ID are reset: TEMPLATE_NAME/ID name the source,
    NAME is set only when the caller gave one (else the VM names itself).
    """
    tmpl = source.copy()
    for attr in INSTANTIATE_ERASED:
        tmpl.erase(attr)
    tmpl.add("TEMPLATE_NAME", template_name)
    tmpl.add("TEMPLATE_ID", str(template_id))
    if name:
        tmpl.add("NAME", name)
    return tmpl


def vm_name(tmpl: Template, vm_id: int) -> str:
    """``VirtualMachine::insert``: NAME, else ``<TEMPLATE_NAME or one>-<id>``."""
    name = tmpl.get("NAME") or ""
    if name:
        return name
    prefix = tmpl.get("TEMPLATE_NAME") or "one"
    return f"{prefix}-{vm_id}"


def indexed_name(pattern: str, index: int) -> str:
    """``one_util::gsub(name, "%i", index)``: every ``%i`` replaced by the index."""
    return pattern.replace("%i", str(index))


def vrouter_vm_name(vrouter_name: str, given: str, index: int) -> str:
    """``VirtualRouterAPI::instantiate``: ``vr-<router>-%i`` unless a name is given."""
    return indexed_name(given or f"vr-{vrouter_name}-%i", index)


@dataclass(frozen=True)
class PersistentPlan:
    """``TemplateAPI::instantiate`` with ``persistent=true``.

    The template is first cloned (recursively, images as persistent copies, the
    user's extra text merged into the clone) under ``clone_name``; the VM is then
    instantiated from the clone with ``extra`` (``CLONING_TEMPLATE_ID``) only.
    """

    clone_name: str
    clone_extra: str
    extra: str


def persistent_plan(template_id: int, template_name: str, name: str, extra: str) -> PersistentPlan:
    clone_name = name or f"{template_name}-copy"
    return PersistentPlan(clone_name, extra, f"CLONING_TEMPLATE_ID={template_id}\n")


def disk_image_name(clone_name: str, index: int) -> str:
    """Name of the image cloned for the ``index``-th DISK of a recursive clone."""
    return f"{clone_name}-disk-{index}"


#: DISK attributes a recursive clone drops before pointing the DISK at the new image.
CLONE_REMOVED_DISK_ATTRS = ("IMAGE", "IMAGE_UNAME", "IMAGE_UID", "OPENNEBULA_MANAGED")


# -- SCHED_ACTION checks (``ScheduledAction::parse`` for a VM, origin 0) -------------

VM_SCHED_ACTIONS = frozenset(
    {
        "terminate",
        "terminate-hard",
        "undeploy",
        "undeploy-hard",
        "hold",
        "release",
        "stop",
        "suspend",
        "resume",
        "reboot",
        "reboot-hard",
        "poweroff",
        "poweroff-hard",
        "snapshot-create",
        "snapshot-revert",
        "snapshot-delete",
        "disk-snapshot-create",
        "disk-snapshot-revert",
        "disk-snapshot-delete",
        "backup",
    }
)
_DAYS_ERRORS = (
    "Days in a week have to be in [0,6] range",
    "Days in a month have to be in [1,31] range",
    "Days in a year have to be in [0,365] range",
    "Hours have to be in [0,168] range",
)
_FIRST_DAY = (0, 1, 0, 1)
_LAST_DAY = (7, 32, 366, 168)
_INT_RE = re.compile(r"\s*[+-]?[0-9]+")
_LEADING_INT = re.compile(r"\s*([+-]?[0-9]+)")


def _whole_int(text: str) -> int | None:
    """``istringstream >> int`` that must consume the whole value."""
    if not _INT_RE.fullmatch(text):
        return None
    return int(text)


def _parse_time(text: str) -> int:
    """``ScheduledAction::parse_time`` with origin 0: ``+N`` or N, else -1."""
    if text.startswith("+"):
        text = text[1:]
    value = _whole_int(text)
    return -1 if value is None else value


def sched_action_error(sa: dict[str, str]) -> str | None:
    """Why oned refuses a SCHED_ACTION of a VM template, or None."""
    action = sa.get("ACTION", "")
    if action and action not in VM_SCHED_ACTIONS:
        return f"{action} is not supported."
    if not action:
        return "No ACTION in template for Scheduled Action."
    text = sa.get("TIME", "")
    if (_parse_time(text) if text else -1) == -1:
        return f"Unable to parse the time value or value is empty: {text}"
    warning = sa.get("WARNING", "")
    if warning and _parse_time(warning) == -1:
        return f"Unable to parse the warning value: {warning}"
    repeat = -1
    value = _whole_int(sa["REPEAT"]) if "REPEAT" in sa else None
    if value is not None:
        if not -1 <= value <= 3:
            return f"Wrong REPEAT value: {value}"
        repeat = value
    if repeat != -1:
        if "DAYS" not in sa:
            return "Repeat set, but DAYS are empty"
        days = set()
        for part in sa["DAYS"].split(","):
            m = _LEADING_INT.match(part)
            if m and part.strip():
                days.add(int(m.group(1)))
        if not days:
            return "Scheduled Action repeat set, but DAYS are empty"
        if (
            min(days) < _FIRST_DAY[repeat]
            or max(days) >= _LAST_DAY[repeat]
            or (repeat == 3 and len(days) != 1)
        ):
            return _DAYS_ERRORS[repeat]
    end_type = -1
    value = _whole_int(sa["END_TYPE"]) if "END_TYPE" in sa else None
    if value is not None:
        if not -1 <= value <= 2:
            return f"Wrong END_TYPE value: {value}"
        end_type = value
    if end_type > 0 and "END_VALUE" in sa:
        end_value = _whole_int(sa["END_VALUE"])
        if end_value is not None and end_type == 1 and end_value < 0:
            return "Error parsing END_VALUE, times has to be greater or equal to 0"
    return None


def check_sched_actions(tmpl: Template) -> str | None:
    """``VMTemplate::parse_sched_action``: the first refusal among the SCHED_ACTIONs."""
    for sa in tmpl.vectors("SCHED_ACTION"):
        problem = sched_action_error(sa)
        if problem is not None:
            return problem
    return None


def template_error(tmpl: Template, vmm_drivers: set[str]) -> str | None:
    """Why oned refuses to store a VM template: a SCHED_ACTION, or a RAW section whose
    TYPE is no VM_MAD (``VirtualMachineManager::validate_raw``; DATA is not checked
    against libvirt's schema)."""
    problem = check_sched_actions(tmpl)
    if problem is not None:
        return problem
    raw = tmpl.get_vector("RAW")
    if raw is None:
        return None
    flag = raw.get("VALIDATE")
    if flag is not None and flag.upper() != "YES":
        return None
    if raw.get("TYPE", "").lower() not in vmm_drivers:
        return "Invalid RAW section: unsupported TYPE"
    return None
