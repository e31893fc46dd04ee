"""The HOOK_MESSAGE documents oned sends to HM_MAD (``HookAPI::format_message``,
``HookState*::format_message``, ``HookManager::format_message``), base64 encoded.

Values are written as oned writes them: parameters and results are streamed into the
document without escaping, booleans as 1/0 among the IN parameters and true/false among
the OUT ones.
"""

from __future__ import annotations

from typing import Any

from oned.api.codec import Escaped, WireParts
from oned.drivers.message import b64encode
from oned.objects import host as hosts
from oned.objects import image as images
from oned.objects import vnet as vnets
from oned.objects.vm import LcmState, VmState

#: Parameters oned shows as ``****`` (``hidden_params``; the session is always hidden).
HIDDEN_PARAMS: dict[str, frozenset[int]] = {
    "one.user.allocate": frozenset({0, 2}),
    "one.user.passwd": frozenset({0, 2}),
    "one.user.chauth": frozenset({0, 3}),
    "one.user.login": frozenset({0, 2}),
}
_SESSION_ONLY = frozenset({0})


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def param_value(value: Any) -> str:
    """``ParamListXRPC::api_value``: ints, i8s, booleans (1/0), strings, doubles; arrays
    and structs are empty."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return ""


def out_value(value: Any) -> str:
    """A call's answer as ``make_parameter`` streams it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, WireParts):
        return _unescape(b"".join(value).decode("utf-8", "replace"))
    if isinstance(value, Escaped):
        return _unescape(str(value))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, str)):
        return str(value)
    return ""


def _parameter(position: int, kind: str, value: str) -> str:
    return (
        f"<PARAMETER><POSITION>{position}</POSITION><TYPE>{kind}</TYPE>"
        f"<VALUE>{value}</VALUE></PARAMETER>"
    )


def api_document(method: str, params: tuple[Any, ...], result: list[Any], extra: str) -> str:
    """The API event of one call: ``params`` with the session first, ``result`` the
    answer array (``[True, value, 0]`` or ``[False, message, code, id, -1]``)."""
    hidden = HIDDEN_PARAMS.get(method, _SESSION_ONLY)
    ins = "".join(
        _parameter(i + 1, "IN", "****" if i in hidden else param_value(v))
        for i, v in enumerate(params)
    )
    success = bool(result[0])
    outs = _parameter(1, "OUT", "true" if success else "false")
    outs += _parameter(2, "OUT", out_value(result[1]))
    outs += _parameter(3, "OUT", str(int(result[2])))
    if not success:
        outs += _parameter(4, "OUT", str(int(result[3])))
    return (
        f"<HOOK_MESSAGE><HOOK_TYPE>API</HOOK_TYPE><CALL>{method}</CALL><CALL_INFO>"
        f"<RESULT>{1 if success else 0}</RESULT><PARAMETERS>{ins}{outs}</PARAMETERS>"
        f"<EXTRA>{extra}</EXTRA></CALL_INFO></HOOK_MESSAGE>"
    )


def vm_state_names(vm: Any) -> tuple[str, str]:
    return _name(VmState, vm.state), _name(LcmState, vm.lcm_state)


def _name(enum: Any, value: int) -> str:
    try:
        return str(enum(value).name)
    except ValueError:
        return ""


def host_state_name(state: int) -> str:
    """``Host::state_to_str``: the MONITORING_* states have no name."""
    name = hosts.STATE_NAMES.get(state, "")
    return "" if name.startswith("MONITORING_") else name


def state_names(kind: str, obj: Any) -> tuple[str, str]:
    """``(STATE, LCM_STATE)`` names of an object (LCM_STATE empty but for VMs)."""
    if kind == "VM":
        return vm_state_names(obj)
    if kind == "HOST":
        return host_state_name(obj.state), ""
    if kind == "IMAGE":
        return images.state_name(obj.state), ""
    return vnets.state_name(obj.state), ""


def state_document(kind: str, obj: Any) -> str:
    """The state event of a VM, host, image or network, with its full document."""
    state, lcm = state_names(kind, obj)
    if kind == "VM":
        service = obj.user_template.get("SERVICE_ID") or ""
        current = obj.current
        return (
            f"<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>VM</HOOK_OBJECT>"
            f"<STATE>{state}</STATE><LCM_STATE>{lcm}</LCM_STATE>"
            f"<RESOURCE_ID>{obj.oid}</RESOURCE_ID>"
            + (f"<SERVICE_ID>{service}</SERVICE_ID>" if service else "")
            + (
                f"<REMOTE_HOST>{current.hostname}</REMOTE_HOST>"
                if current is not None
                else "<REMOTE_HOST/>"
            )
            + f"{obj.info_xml()}</HOOK_MESSAGE>"
        )
    if kind == "HOST":
        return (
            f"<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>HOST</HOOK_OBJECT>"
            f"<STATE>{state}</STATE><REMOTE_HOST>{obj.name}</REMOTE_HOST>"
            f"<RESOURCE_ID>{obj.oid}</RESOURCE_ID>{obj.to_xml()}</HOOK_MESSAGE>"
        )
    return (
        f"<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>{kind}</HOOK_OBJECT>"
        f"<STATE>{state}</STATE><RESOURCE_ID>{obj.oid}</RESOURCE_ID>{obj.to_xml()}"
        "</HOOK_MESSAGE>"
    )


def retry_document(args: str, remote_host: str, hook_id: int) -> str:
    """``HookManager::format_message``: a RETRY of one execution (base64 arguments)."""
    host = f"<REMOTE_HOST>{remote_host}</REMOTE_HOST>" if remote_host else ""
    return (
        f"<HOOK_MESSAGE><ARGUMENTS>{b64encode(args)}</ARGUMENTS>"
        f"<HOOK_ID>{hook_id}</HOOK_ID>{host}</HOOK_MESSAGE>"
    )
