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

from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.task import deferLater

from oned.api.codec import (
    I8,
    CallParseError,
    WireParts,
    dumps_fault,
    dumps_response_parts,
    loads_call,
)
from oned.api.context import Call
from oned.api.registry import Registry
from oned.audit.settings import AuditSettings
from oned.audit.trail import AuditEntry, AuditTrail
from oned.config import ConfigError
from oned.core import Core
from oned.errors import (
    AuthenticationError,
    ErrorCode,
    InternalError,
    OneError,
    RpcFault,
    failure_message,
)
from oned.log import LogSink, logger
from oned.objects.zone import DISABLED as ZONE_DISABLED

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

# Methods oned serves while the zone is disabled (``Request::zone_disabled(true)``:
# the info/pool readers, the quota readers, system version/config and the zone's own
# Raft/enable calls); every other method is refused with INTERNAL.
ZONE_DISABLED_ALLOWED = frozenset(
    """
    one.system.version one.system.config one.user.info one.userpool.info one.userquota.info
    one.group.info one.grouppool.info one.groupquota.info one.zone.info one.zonepool.info
    one.zone.enable one.zone.raftstatus one.zone.replicate one.zone.fedreplicate
    one.zone.voterequest one.clusterpool.info one.datastore.info one.datastorepool.info
    one.document.info one.documentpool.info one.host.info one.hostpool.info
    one.hostpool.monitoring one.image.info one.imagepool.info one.template.info
    one.templatepool.info one.vm.info one.vmpool.info one.vmpool.infoextended
    one.vmpool.monitoring one.vmpool.accounting one.vmpool.showback
    one.vmpool.calculateshowback one.vn.info one.vnpool.info one.vntemplate.info
    one.vntemplatepool.info one.secgroup.info one.secgrouppool.info one.vdc.info
    one.vdcpool.info one.vrouter.info one.vrouterpool.info one.vmgroup.info
    one.vmgrouppool.info one.market.info one.marketpool.info one.marketapp.info
    one.marketapppool.info one.hook.info one.hookpool.info one.hooklog.info one.backupjob.info
    one.backupjobpool.info
    """.split()
)

ZONE_DISABLED_MESSAGE = "Cannot process request, zone disabled"

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

    def __init__(
        self,
        core: Core,
        registry: Registry,
        sink: LogSink | None = None,
        processes: IReactorProcess | None = None,
    ) -> None:
        self.core = core
        #: Starts the audit scribe (the daemon's reactor; None: the trail writes itself).
        self._processes = processes
        self.registry = registry
        self._ids = itertools.count(1)
        fmt = core.config.log_call_format or "Req:%i UID:%u IP:%A %m invoked %l20"
        self._call_format = fmt
        self.in_flight = 0
        self.sink = sink
        #: ``oned.metrics.instruments.DaemonMetrics`` when METRICS is configured.
        self.metrics: Any = None
        raw = core.config.get("LOG_RESULT_LENGTH") or "20"
        self._result_length = int(raw) if raw.isdigit() else 20
        self.audit = self._audit_trail(core.config.audit)

    def _audit_trail(self, settings: AuditSettings) -> AuditTrail:
        core = self.core
        return AuditTrail.from_config(
            settings,
            core.config.locations.var,
            core.clock,
            _HIDDEN,
            [a for n in core.config.template.names() if n.endswith("_ENCRYPTED_ATTR")
             for a in core.attr_list(n)],
            scribe=self._processes,
        )  # fmt: skip

    def reload_audit(self, settings: AuditSettings) -> None:
        """Switch to new AUDIT settings (SIGHUP): the records kept so far are written
        where the old ones said, the next calls are recorded as the new ones say (a
        file's chain goes on from its last record). Raises ``ConfigError``."""
        previous = self.audit.settings
        self.audit.close()  # every record written, the scribe stopped, the journal free
        try:
            self.audit = self._audit_trail(settings)
        except ConfigError:
            self.audit = self._audit_trail(previous)
            raise
        self.log.info(
            "Audit trail: MODE {mode}, DESTINATION {dest} (reloaded)",
            mode=settings.mode,
            dest=settings.destination,
        )

    async def drain(self, clock: IReactorTime, timeout: float) -> None:
        """Wait (up to ``timeout`` seconds) for the calls being served to finish."""
        deadline = clock.seconds() + timeout
        while self.in_flight and clock.seconds() < deadline:
            await deferLater(clock, 0.05, lambda: None)

    async def handle_body(self, body: bytes, peer: str = "") -> bytes:
        """Parse, execute and serialise one request body, its audit record written."""
        parts = await self.handle_body_parts(body, peer)
        self.audit.flush()
        return b"".join(parts)

    async def handle_body_parts(self, body: bytes, peer: str = "") -> list[bytes]:
        """``handle_body`` as pieces to write in order (big listings are not joined)."""
        self.in_flight += 1
        try:
            return await self._handle_body(body, peer)
        finally:
            self.in_flight -= 1

    async def _handle_body(self, body: bytes, peer: str) -> list[bytes]:
        try:
            name, params = loads_call(body)
        except CallParseError as exc:
            self.audit.malformed(peer, str(exc))
            return [_fault(-503, f"Call XML not a proper XML-RPC call.  {exc}")]
        if name == "system.multicall":
            return dumps_response_parts(await self._multicall(params, peer))
        try:
            return dumps_response_parts(await self.execute(name, params, peer))
        except RpcFault as fault:
            return [_fault(fault.fault_code, fault.message)]

    async def execute(self, name: str, params: tuple[Any, ...], peer: str = "") -> Any:
        """Run one call; returns the XML-RPC value (array) or raises ``RpcFault``. Its
        audit record is in the journal before this returns."""
        entry = self.audit.begin(name, params, peer)
        metrics = self.metrics
        started = metrics.call_started() if metrics is not None else 0.0
        try:
            result = await self._execute(name, params, peer, entry)
        except BaseException as exc:
            self.audit.end(entry, None, exc)
            if metrics is not None:
                metrics.call_done(name, None, started)
            raise
        self.audit.end(entry, result)
        if metrics is not None:
            metrics.call_done(name, result, started)
        return result

    async def _execute(
        self, name: str, params: tuple[Any, ...], peer: str, entry: AuditEntry | None
    ) -> Any:
        if name.startswith("system."):
            return self._system(name, params)
        method = self.registry.get(name)
        if method is None:
            raise RpcFault(-506, f"Method '{name}' not defined")
        if not params:
            raise RpcFault(-500, _NO_PARAMS)
        req_id = next(self._ids) % 10000
        if entry is not None:
            entry.req_id = req_id
        try:
            caller = await self.core.auth.authenticate(params[0])
        except AuthenticationError as exc:
            result = self._failure(name, exc, -1)
            if self._wants("D"):
                self._emit("D", self._invocation(req_id, name, None, peer, params[1:]))
            self._emit("E", f"Req:{req_id:04d} UID:- {name} result FAILURE {result[1]}")
            return result
        call = Call(name, caller, req_id, peer)
        if entry is not None:
            entry.caller = caller
        hook = self.core.hook_manager.api_call(name, params)
        if self._wants("D"):
            self._emit("D", self._invocation(req_id, name, call, peer, params[1:]))
        try:
            if name not in ZONE_DISABLED_ALLOWED and self._zone_disabled():
                raise InternalError(ZONE_DISABLED_MESSAGE)
            args = method.coerce(params[1:])
            value = await method.handler(self.core, call, *args)
        except OneError as exc:
            result = self._failure(name, exc, caller.uid)
            self._emit("E", f"Req:{req_id:04d} UID:{caller.uid} {name} result FAILURE {result[1]}")
            hook.done(result)
            return result
        except RpcFault:
            raise
        except Exception as exc:
            self.log.failure("Req:{req} {method} internal error", req=req_id, method=name)
            result = self._failure(name, _internal(exc), caller.uid)
            self._emit("E", f"Req:{req_id:04d} UID:{caller.uid} {name} result FAILURE {result[1]}")
            hook.done(result)
            return result
        if self._wants("D"):
            self._emit(
                "D",
                f"Req:{req_id:04d} UID:{caller.uid} {name} result SUCCESS, "
                f"{self._result_text(value)}",
            )
        hook.done([True, value, 0])
        return [True, value, 0]

    def _zone_disabled(self) -> bool:
        """``Nebula::get_zone_state() == Zone::DISABLED`` for the local zone."""
        zone = self.core.zones.get(self.core.config.zone_id)
        return zone is not None and zone.state == ZONE_DISABLED

    def _wants(self, letter: str) -> bool:
        return self.sink is None or self.sink.enabled(letter)

    def _emit(self, letter: str, text: str) -> None:
        """One ReM line: straight to the oned.log sink, or via Twisted's logger."""
        if self.sink is not None:
            self.sink.write("ReM", letter, text)
        elif letter == "E":
            self.log.error("{text}", text=text)
        else:
            self.log.debug("{text}", text=text)

    def _result_text(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        limit = self._result_length
        if isinstance(value, WireParts):
            text = value.preview(limit + 1)
        else:
            text = str(value[: limit + 1] if isinstance(value, str) else value)
        return f'"{text[:limit]}..."' if len(text) > limit else f'"{text}"'

    def _failure(self, name: str, exc: OneError, uid: int) -> list[Any]:
        """The failure array: oned sets ``att.resp_id`` only where an object is
        missing, so the fourth element is the id on NO_EXISTS and -1 otherwise."""
        message = failure_message(name, exc, word_for(name), uid)
        resp_id = exc.resp_id if exc.code == ErrorCode.NO_EXISTS or exc.keep_id else -1
        return [False, message, int(exc.code), resp_id, I8(-1)]

    def _invocation(
        self, req_id: int, method: str, call: Call | None, peer: str, params: tuple[Any, ...]
    ) -> str:
        """The LOG_CALL_FORMAT line of one call (hidden parameters as ****)."""
        hidden = _HIDDEN.get(method, set())
        shown = ", ".join("****" if i + 1 in hidden else _param(v) for i, v in enumerate(params))
        host, _, port = peer.rpartition(":")

        def expand(match: re.Match[str]) -> str:
            key, width = match.group(1), match.group(2)
            if key == "l":
                limit = int(width) if width else 20
                return shown if len(shown) <= limit else shown[: max(limit - 3, 0)] + "..."
            values = {
                "i": f"{req_id:04d}",
                "u": str(call.uid) if call else "-1",
                "U": call.caller.uname if call else "",
                "g": str(call.caller.gid) if call else "-1",
                "G": call.caller.gname if call else "",
                "p": "****",
                "a": "****",
                "m": method,
                "A": host,
                "P": port,
                "%": "%",
            }
            return values.get(key, match.group(0)) + width

        return _FORMAT_RE.sub(expand, self._call_format)

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
                return method.help_text or "No help is available for this method."
            return [_sig_types(method.signature)]
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


_SIG_TYPES = {
    "i": "int",
    "I": "i8",
    "b": "boolean",
    "d": "double",
    "s": "string",
    "8": "dateTime.iso8601",
    "6": "base64",
    "S": "struct",
    "A": "array",
    "n": "nil",
}


def _sig_types(signature: str) -> list[str]:
    """xmlrpc-c's reading of a signature string: result type, then parameter types."""
    result, _, params = signature.partition(":")
    return [_SIG_TYPES.get(c, c) for c in result + params]


def _fault_struct(fault: Fault) -> dict[str, Any]:
    return {"faultCode": fault.faultCode, "faultString": fault.faultString}


def _internal(exc: Exception) -> OneError:
    err = OneError(f"Internal error: {type(exc).__name__}: {exc}")
    err.code = ErrorCode.INTERNAL
    return err


def _param(value: Any) -> str:
    """A parameter as oned's %l shows it: bools 1/0, arrays and structs empty."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple, dict)):
        return ""
    return str(value)


_FORMAT_RE = re.compile(r"%([iuUgGpamAPl%])(\d*)")
