"""The request manager: one place from parsed call to response bytes.

Mirrors ``Request::execute``: authenticate the session first, then type-check the
parameters (xmlrpc-c faults), run the handler, and map every error to OpenNebula's
``[false, message, code, resp_id, -1]`` array. Also serves the ``system.*`` built-ins.
"""

from __future__ import annotations

import itertools
import re
from typing import Any
from xmlrpc.client import Fault

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from oned.api.codec import I8, CallParseError, dumps_fault, dumps_response, loads_call
from oned.api.context import Call
from oned.api.registry import Method, Registry
from oned.core import Core
from oned.errors import (
    AuthenticationError,
    ErrorCode,
    OneError,
    RpcFault,
    failure_message,
)
from oned.log import logger

OBJECT_WORDS = {
    "vm": "virtual machine",
    "vmpool": "virtual machine",
    "host": "host",
    "hostpool": "host",
    "vn": "virtual network",
    "vnpool": "virtual network",
    "image": "image",
    "imagepool": "image",
    "user": "user",
    "userpool": "user",
    "userquota": "user",
    "template": "virtual machine template",
    "templatepool": "virtual machine template",
    "group": "group",
    "grouppool": "group",
    "groupquota": "group",
    "acl": "ACL",
    "datastore": "datastore",
    "datastorepool": "datastore",
    "cluster": "cluster",
    "clusterpool": "cluster",
    "document": "document",
    "documentpool": "document",
    "zone": "zone",
    "zonepool": "zone",
    "secgroup": "security group",
    "vdc": "VDC",
    "vrouter": "virtual router",
    "market": "marketplace",
    "marketapp": "marketplaceapp",
    "vmgroup": "vm group",
    "vntemplate": "virtual network template",
    "hook": "hook",
    "backupjob": "backup job",
    "system": "system",
}

_NO_PARAMS = (
    "Unexpected error executing code for particular method, detected by Xmlrpc-c "
    "method registry code. Method did not fail; rather, it did not complete at all. "
    "Subscript of xmlrpc_c::paramList out of bounds"
)

_HIDDEN = {
    "one.user.allocate": {2},
    "one.user.passwd": {2},
    "one.user.chauth": {3},
    "one.user.login": {2},
}


def word_for(method: str) -> str:
    parts = method.split(".")
    return OBJECT_WORDS.get(parts[1] if len(parts) > 2 else "", "object")


def _fault(code: int, message: str) -> bytes:
    return dumps_fault(code, message)


class RequestManager:
    """Executes calls against the registry."""

    log = logger("ReM")

    def __init__(self, core: Core, registry: Registry) -> None:
        self.core = core
        self.registry = registry
        self._ids = itertools.count(1)
        fmt = core.config.log_call_format or "Req:%i UID:%u IP:%A %m invoked %l20"
        self._call_format = fmt
        self.in_flight = 0

    async def drain(self, clock: IReactorTime, timeout: float) -> None:
        """Wait (up to ``timeout`` seconds) for the calls being served to finish."""
        deadline = clock.seconds() + timeout
        while self.in_flight and clock.seconds() < deadline:
            await deferLater(clock, 0.05, lambda: None)

    async def handle_body(self, body: bytes, peer: str = "") -> bytes:
        """Parse, execute and serialise one HTTP request body."""
        self.in_flight += 1
        try:
            return await self._handle_body(body, peer)
        finally:
            self.in_flight -= 1

    async def _handle_body(self, body: bytes, peer: str) -> bytes:
        try:
            name, params = loads_call(body)
        except CallParseError as exc:
            return _fault(-503, f"Call XML not a proper XML-RPC call.  {exc}")
        if name == "system.multicall":
            return dumps_response(await self._multicall(params, peer))
        try:
            return dumps_response(await self.execute(name, params, peer))
        except RpcFault as fault:
            return _fault(fault.fault_code, fault.message)

    async def execute(self, name: str, params: tuple[Any, ...], peer: str = "") -> Any:
        """Run one call; returns the XML-RPC value (array) or raises ``RpcFault``."""
        if name.startswith("system."):
            return self._system(name, params)
        method = self.registry.get(name)
        if method is None:
            raise RpcFault(-506, f"Method '{name}' not defined")
        if not params:
            raise RpcFault(-500, _NO_PARAMS)
        req_id = next(self._ids)
        try:
            caller = await self.core.auth.authenticate(params[0])
        except AuthenticationError as exc:
            self.log.error(
                "Req:{req} UID:- {method} result FAILURE [{method}] User couldn't be "
                "authenticated, aborting call.",
                req=req_id,
                method=name,
            )
            return self._failure(name, exc, -1)
        call = Call(name, caller, req_id, peer)
        self._log_call(call, params[1:])
        args = method.coerce(params[1:])
        try:
            value = await method.handler(self.core, call, *args)
        except OneError as exc:
            result = self._failure(name, exc, caller.uid)
            self.log.debug(
                "Req:{req} UID:{uid} {method} result FAILURE {msg}",
                req=req_id,
                uid=caller.uid,
                method=name,
                msg=result[1],
            )
            return result
        except RpcFault:
            raise
        except Exception as exc:
            self.log.failure("Req:{req} {method} internal error", req=req_id, method=name)
            return self._failure(name, _internal(exc), caller.uid)
        self.log.debug(
            "Req:{req} UID:{uid} {method} result SUCCESS, {value}",
            req=req_id,
            uid=caller.uid,
            method=name,
            value=_short(value),
        )
        return [True, value, 0]

    def _failure(self, name: str, exc: OneError, uid: int) -> list[Any]:
        message = failure_message(name, exc, word_for(name), uid)
        return [False, message, int(exc.code), exc.resp_id, I8(-1)]

    def _log_call(self, call: Call, params: tuple[Any, ...]) -> None:
        hidden = _HIDDEN.get(call.method, set())
        shown = ", ".join("****" if i + 1 in hidden else _short(v) for i, v in enumerate(params))

        def expand(match: re.Match[str]) -> str:
            key, width = match.group(1), match.group(2)
            values = {
                "i": str(call.req_id),
                "u": str(call.uid),
                "U": call.caller.uname,
                "g": str(call.caller.gid),
                "G": call.caller.gname,
                "p": "****",
                "a": "****",
                "m": call.method,
                "A": call.peer.rsplit(":", 1)[0],
                "P": call.peer.rsplit(":", 1)[-1],
                "l": shown[: int(width)] if width else shown[:20],
            }
            return values.get(key, match.group(0))

        self.log.debug(
            re.sub(r"%([iuUgGpamAPl])(\d*)", expand, self._call_format)
            .replace("{", "{{")
            .replace("}", "}}")
        )

    def _system(self, name: str, params: tuple[Any, ...]) -> Any:
        if name == "system.listMethods":
            return sorted([*self.registry.methods, *_SYSTEM_METHODS])
        if name in ("system.methodSignature", "system.methodHelp", "system.methodExist"):
            if not params or not isinstance(params[0], str):
                raise RpcFault(-501, "Parameter that is supposed to be a string is not")
            method = self.registry.get(params[0])
            if name == "system.methodExist":
                return method is not None or params[0] in _SYSTEM_METHODS
            if method is None:
                raise RpcFault(-508, f"Method '{params[0]}' does not exist")
            if name == "system.methodHelp":
                return method.help or "No help is available for this method."
            return [[method.signature.split(":")[0], *_sig_params(method)]]
        if name in ("system.capabilities", "system.getCapabilities"):
            return {
                "facility": "xmlrpc",
                "version_major": 1,
                "version_minor": 0,
            }
        if name == "system.shutdown":
            raise RpcFault(-500, "Shutdown is not available")
        raise RpcFault(-506, f"Method '{name}' not defined")

    async def _multicall(self, params: tuple[Any, ...], peer: str) -> list[Any]:
        if not params or not isinstance(params[0], list):
            raise_fault = Fault(-501, "Parameter that is supposed to be an array is not")
            return [_fault_struct(raise_fault)]
        results: list[Any] = []
        for entry in params[0]:
            if not isinstance(entry, dict) or not isinstance(entry.get("methodName"), str):
                results.append(_fault_struct(Fault(-501, "Invalid multicall entry")))
                continue
            inner = entry.get("params", [])
            if not isinstance(inner, list):
                results.append(_fault_struct(Fault(-501, "Invalid multicall params")))
                continue
            if entry["methodName"] == "system.multicall":
                results.append(_fault_struct(Fault(-505, "Recursive system.multicall")))
                continue
            try:
                results.append([await self.execute(entry["methodName"], tuple(inner), peer)])
            except RpcFault as fault:
                results.append(_fault_struct(Fault(fault.fault_code, fault.message)))
        return results


_SYSTEM_METHODS = (
    "system.listMethods",
    "system.methodSignature",
    "system.methodHelp",
    "system.methodExist",
    "system.multicall",
    "system.capabilities",
    "system.getCapabilities",
    "system.shutdown",
)


def _sig_params(method: Method) -> list[str]:
    names = {"i": "int", "I": "i8", "s": "string", "b": "boolean", "A": "array", "*": "array"}
    return ["string", *(names[k] for k in method.kinds)]


def _fault_struct(fault: Fault) -> dict[str, Any]:
    return {"faultCode": fault.faultCode, "faultString": fault.faultString}


def _internal(exc: Exception) -> OneError:
    err = OneError(f"Internal error: {type(exc).__name__}: {exc}")
    err.code = ErrorCode.INTERNAL
    return err


def _short(value: Any) -> str:
    from oned.api.codec import short_repr

    return short_repr(value, 40)
