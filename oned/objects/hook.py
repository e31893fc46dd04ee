"""The HOOK object (mirrors ``Hook``, ``HookAPI`` and the ``HookState*`` classes).

A hook is owned by oneadmin, has a TYPE (``api`` or ``state``) outside its template and
a template the core normalises: NAME and TYPE taken out, COMMAND mandatory, REMOTE as
YES/NO, an API hook's CALL a served method, a state hook's ``ON`` resolved to the
``STATE``/``LCM_STATE`` names it stands for. Texts are oned's.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import Lock, esc, int_of, parse_xml, template_of, text_of
from oned.objects.vm import LcmState, VmState
from oned.template import Template

API = "api"
STATE = "state"
#: ``Hook::HookType`` values of the ``type`` column.
TYPE_VALUES = {STATE: 0x01, API: 0x02}

#: Resources of state hooks (``PoolObjectSQL::str_to_type`` names).
RESOURCES = ("VM", "HOST", "IMAGE", "NET")

#: ``Host::str_to_state``: the names a host hook may use.
HOST_STATES = ("INIT", "MONITORED", "ERROR", "DISABLED", "OFFLINE")
#: ``Image::str_to_state`` names (INIT is no condition).
IMAGE_STATES = (
    "READY",
    "USED",
    "DISABLED",
    "LOCKED",
    "ERROR",
    "CLONE",
    "DELETE",
    "USED_PERS",
    "LOCKED_USED",
    "LOCKED_USED_PERS",
)
#: ``VirtualNetwork::str_to_state`` names (case-sensitive there).
NET_STATES = ("READY", "LOCK_CREATE", "LOCK_DELETE", "DONE", "ERROR")

#: ``ON`` shortcuts of VM hooks (``HookStateVM::parse_template``).
VM_ON = {
    "PROLOG": ("ACTIVE", "PROLOG"),
    "RUNNING": ("ACTIVE", "RUNNING"),
    "SHUTDOWN": ("ACTIVE", "EPILOG"),
    "STOP": ("STOPPED", "LCM_INIT"),
    "DONE": ("DONE", "LCM_INIT"),
    "UNKNOWN": ("ACTIVE", "UNKNOWN"),
}

#: Calls that never fire API hooks and cannot be hooked (``unsupported_calls``).
UNSUPPORTED_CALLS = frozenset(
    """
    one.vm.info one.vmpool.info one.vmpool.infoextended one.template.info
    one.templatepool.info one.host.info one.hostpool.info one.group.info one.grouppool.info
    one.groupquota.info one.vn.info one.vnpool.info one.user.info one.userpool.info
    one.userquota.info one.datastore.info one.datastorepool.info one.image.info
    one.imagepool.info one.acl.info one.vntemplate.info one.vntemplatepool.info
    one.cluster.info one.clusterpool.info one.document.info one.documentpool.info
    one.zone.info one.zonepool.info one.secgroup.info one.secgrouppool.info one.vmgroup.info
    one.vmgrouppool.info one.vdc.info one.vdcpool.info one.vrouter.info one.vrouterpool.info
    one.market.info one.marketpool.info one.marketapp.info one.marketapppool.info
    one.hook.info one.hookpool.info one.hooklog.info
    """.split()
)


class HookTemplateError(ValueError):
    """A hook template oned refuses; the message is oned's text."""


def supported_call(name: str) -> bool:
    """``HookAPI::supported_call``."""
    return name not in UNSUPPORTED_CALLS


def vm_state_names() -> set[str]:
    return {s.name for s in VmState}


def lcm_state_names() -> set[str]:
    return {s.name for s in LcmState}


@dataclass
class Hook:
    oid: int
    name: str
    type: str
    lock: Lock = field(default_factory=Lock)
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "hook_pool"
    ROOT: ClassVar[str] = "HOOK"
    uid: ClassVar[int] = 0
    gid: ClassVar[int] = 0

    @property
    def resource(self) -> str:
        return (self.template.get("RESOURCE") or "") if self.type == STATE else ""

    def key(self) -> str:
        """What the Hook Execution Manager files this hook under (``Hook#key``)."""
        tmpl = self.template
        if self.type == API:
            return tmpl.get("CALL") or ""
        return f"{self.resource}/{tmpl.get('STATE') or ''}/{tmpl.get('LCM_STATE') or ''}"

    def to_xml(self, log: str = "") -> str:
        """``Hook::_to_xml``; ``log`` is the HOOKLOG element of ``one.hook.info``."""
        return (
            f"<HOOK><ID>{self.oid}</ID><NAME>{esc(self.name)}</NAME><TYPE>{self.type}</TYPE>"
            f"{self.lock.to_xml()}{self.template.to_xml()}{log}</HOOK>"
        )

    def columns(self) -> dict[str, Any]:
        return {
            "uid": 0,
            "gid": 0,
            "owner_u": 1,
            "group_u": 0,
            "other_u": 0,
            "type": TYPE_VALUES.get(self.type, 0x04),
        }

    @classmethod
    def from_xml(cls, body: str) -> Hook:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            type=text_of(root, "TYPE"),
            lock=Lock.from_xml(root),
            template=template_of(root),
        )

    def copy(self) -> Hook:
        return _copy.deepcopy(self)


def _yes(value: str | None) -> str:
    """``Template::get(name, bool&)`` written back as oned writes a bool."""
    return "YES" if (value or "").upper() == "YES" else "NO"


def hook_type(text: str | None) -> str | None:
    """``Hook::str_to_hook_type``: ``api``/``state`` (any case), else None."""
    lowered = (text or "").lower()
    return lowered if lowered in (API, STATE) else None


def build(tmpl: Template, call_exists: Callable[[str], bool]) -> tuple[str, str, Template]:
    """``Hook::insert`` on a new hook's template: ``(name, type, template)``.

    Raises:
        HookTemplateError: with oned's text.
    """
    tmpl = tmpl.copy()
    name = tmpl.get("NAME") or ""
    tmpl.erase("NAME")
    if not name:
        raise HookTemplateError("No NAME in template for Hook.")
    command = tmpl.get("COMMAND") or ""
    tmpl.erase("COMMAND")
    if not command:
        raise HookTemplateError("No COMMAND in template for Hook.")
    tmpl.add("COMMAND", command)
    remote = _yes(tmpl.get("REMOTE"))
    tmpl.erase("REMOTE")
    tmpl.add("REMOTE", remote)
    kind = hook_type(tmpl.get("TYPE"))
    tmpl.erase("TYPE")
    if kind is None:
        raise HookTemplateError("No TYPE or invalid one in template for Hook.")
    if kind == API:
        call = tmpl.get("CALL") or ""
        tmpl.erase("CALL")
        if not call.startswith("one.internal") and not call_exists(call):
            raise HookTemplateError(f"API call does not exist or is not supported: {call}")
        tmpl.add("CALL", call)
        return name, kind, tmpl
    resource = tmpl.get("RESOURCE") or ""
    if not resource:
        raise HookTemplateError("RESOURCE attribute is required for STATE hooks.")
    if resource not in RESOURCES:
        raise HookTemplateError(f"Invalid resource type: {resource}")
    _STATE_PARSERS[resource](tmpl)
    return name, kind, tmpl


def _parse_vm(tmpl: Template) -> None:
    on = (tmpl.get("ON") or "").upper()
    tmpl.erase("ON")
    if on in VM_ON:
        state, lcm = VM_ON[on]
    elif on == "CUSTOM":
        state = (tmpl.get("STATE") or "").upper()
        if state not in vm_state_names():
            raise HookTemplateError(f"Wrong STATE: {state}")
        lcm = (tmpl.get("LCM_STATE") or "").upper()
        if lcm not in lcm_state_names():
            raise HookTemplateError(f"Wrong LCM_STATE: {lcm}")
    else:
        raise HookTemplateError(f"Unkown state condition: {on}")
    tmpl.set("STATE", state)
    tmpl.set("LCM_STATE", lcm)


def _parse_host(tmpl: Template) -> None:
    state = (tmpl.get("STATE") or "").upper()
    tmpl.erase("STATE")
    if state not in HOST_STATES:
        raise HookTemplateError(f"Invalid STATE: {state}")
    tmpl.add("STATE", state)


def _parse_image(tmpl: Template) -> None:
    raw = tmpl.get("STATE")
    if raw is None:
        raise HookTemplateError("Hook STATE attribute not found or invalid")
    state = raw.upper()
    if state not in IMAGE_STATES:
        raise HookTemplateError(f"Invalid or unkown STATE condition: {state}")
    tmpl.set("STATE", state)


def _parse_net(tmpl: Template) -> None:
    state = tmpl.get("STATE") or ""
    tmpl.erase("STATE")
    if state not in NET_STATES:
        raise HookTemplateError(f"Invalid STATE: {state}")
    tmpl.add("STATE", state)


_STATE_PARSERS: dict[str, Callable[[Template], None]] = {
    "VM": _parse_vm,
    "HOST": _parse_host,
    "IMAGE": _parse_image,
    "NET": _parse_net,
}


_BAD_STATE = "The STATE attribute is not defined or it's invalid."


def post_update(
    tmpl: Template, kind: str, resource: str, call_exists: Callable[[str], bool]
) -> None:
    """``Hook::post_update_template`` on an updated template (changed in place).

    Raises:
        HookTemplateError: with oned's text.
    """
    command = tmpl.get("COMMAND") or ""
    if not command:
        raise HookTemplateError("The COMMAND attribute is not defined.")
    tmpl.set("COMMAND", command)
    remote = tmpl.get("REMOTE")
    if remote is not None:
        tmpl.set("REMOTE", _yes(remote))
    if kind == API:
        call = tmpl.get("CALL") or ""
        if not call.startswith("one.internal") and not call_exists(call):
            raise HookTemplateError("The CALL attribute is not defined or it's invalid.")
        tmpl.set("CALL", call)
        return
    raw = tmpl.get("STATE")
    if resource == "VM":
        state = (raw or "").upper()
        if raw is None or state not in vm_state_names():
            raise HookTemplateError(_BAD_STATE)
        tmpl.set("STATE", state)
        raw_lcm = tmpl.get("LCM_STATE")
        lcm = (raw_lcm or "").upper()
        if raw_lcm is None or lcm not in lcm_state_names():
            raise HookTemplateError("The LCM_STATE attribute is not defined or it's invalid.")
        tmpl.set("LCM_STATE", lcm)
    elif resource == "HOST":
        state = (raw or "").upper()
        if state not in HOST_STATES:
            raise HookTemplateError(_BAD_STATE)
        tmpl.set("STATE", state)
    elif resource in ("IMAGE", "NET"):
        if raw is None:
            raise HookTemplateError(_BAD_STATE)
        state = raw.upper() if resource == "IMAGE" else raw
        if state in (IMAGE_STATES if resource == "IMAGE" else NET_STATES):
            tmpl.set("STATE", state)
