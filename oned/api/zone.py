"""``one.zone.*`` and ``one.zonepool.info`` for the local zone (mirrors ``ZoneAPI``)."""

from __future__ import annotations

from oned.api import shared
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.errors import (
    ActionError,
    AllocateError,
    AuthorizationError,
    ErrorCode,
    InternalError,
    OneError,
    ReplicationError,
)
from oned.objects.base import Op
from oned.objects.zone import DISABLED, ENABLED, Zone

ZONE = Family[Zone](
    type_name="ZONE",
    word="zone",
    pool_root="ZONE_POOL",
    pool=lambda core: core.zones,
    auth=shared.system_auth("ZONE"),
    name_scope="global",
    delete_op=Op.ADMIN,
)

declare(ZONE, "zone", "info", "pool", "update", "rename")


@rpc("one.zone.raftstatus", "")
async def raftstatus(core: Core, call: Call) -> str:
    """Returns the Raft status of this (solo) server."""
    return (
        "<RAFT><SERVER_ID>-1</SERVER_ID><STATE>0</STATE><TERM>0</TERM><VOTEDFOR>-1</VOTEDFOR>"
        "<COMMIT>0</COMMIT><LOG_INDEX>-1</LOG_INDEX><LOG_TERM>-1</LOG_TERM>"
        "<FEDLOG_INDEX>-1</FEDLOG_INDEX></RAFT>"
    )


@rpc("one.zone.enable", "ib")
async def enable(core: Core, call: Call, oid: int, enabled: bool) -> int:
    """Enables or disables a zone (only through its own endpoint)."""
    if oid != core.config.zone_id:
        raise ActionError("Enable/disable mode have to be set through the target zone endpoints")
    _server_zone_auth(core, call, oid)
    async with core.zones.lock(oid):
        zone = shared.get_object(core, ZONE, oid).copy()
        zone.state = ENABLED if enabled else DISABLED
        await shared.save(core, ZONE, zone, f"{'enable' if enabled else 'disable'} zone {oid}")
    return oid


@rpc("one.zone.allocate", "s")
async def allocate(core: Core, call: Call, text: str) -> int:
    """Allocates a new zone: only a federation master does, and this oned is a
    standalone zone (refused before the template is read, as oned does)."""
    raise AllocateError("New zones can only be created at federation master")


@rpc("one.zone.delete", "i")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes a zone; the system zones (ID < 100), the only ones here, cannot be."""
    zone = shared.get_object(core, ZONE, oid)
    shared.authorize(core, call, ZONE, zone, Op.ADMIN)
    raise ActionError("Cannot delete zone. System Zones (ID < 100) cannot be deleted.")


def _server_zone(core: Core, call: Call, oid: int, verb: str) -> None:
    """HA servers are edited through the zone's own endpoint, by its admins."""
    if oid != core.config.zone_id:
        raise ActionError(f"Servers have to be {verb} through the target zone endpoints")
    _server_zone_auth(core, call, oid)


def _server_zone_auth(core: Core, call: Call, oid: int) -> None:
    """``basic_authorization`` whose failure (even a missing zone) is AUTHORIZATION."""
    try:
        shared.get_authorized(core, call, ZONE, oid, Op.ADMIN)
    except OneError as exc:
        message = exc.message if exc.code == ErrorCode.AUTHORIZATION else ""
        raise AuthorizationError(message) from exc


@rpc("one.zone.addserver", "is")
async def addserver(core: Core, call: Call, oid: int, text: str) -> int:
    """Adds a server (SERVER=[NAME, ENDPOINT]) to the zone's SERVER_POOL."""
    _server_zone(core, call, oid, "added")
    try:
        tmpl = shared.parse_str_or_xml(text)
    except shared.TemplateSyntaxError as exc:
        raise ActionError(exc.parse_error) from exc
    servers = tmpl.vectors("SERVER")
    if not servers:
        raise ActionError("SERVER not found in template")
    async with core.zones.lock(oid):
        zone = shared.get_object(core, ZONE, oid).copy()
        try:
            zone.add_server(dict(servers[0]))
        except ValueError as exc:
            raise ActionError(str(exc)) from exc
        await shared.save(core, ZONE, zone, f"addserver zone {oid}")
    return oid


@rpc("one.zone.delserver", "ii")
async def delserver(core: Core, call: Call, oid: int, sid: int) -> int:
    """Removes a server from the zone's SERVER_POOL."""
    _server_zone(core, call, oid, "deleted")
    async with core.zones.lock(oid):
        zone = shared.get_object(core, ZONE, oid).copy()
        try:
            zone.delete_server(sid)
        except ValueError as exc:
            raise ActionError(str(exc)) from exc
        await shared.save(core, ZONE, zone, f"delserver zone {oid}")
    return oid


@rpc("one.zone.resetserver", "ii")
async def resetserver(core: Core, call: Call, oid: int, sid: int) -> int:
    """Resets a follower's log index; a solo server has no followers to reset."""
    _server_zone(core, call, oid, "deleted")  # oned's text says "deleted" here too
    return oid


# -- server-to-server calls of a solo server (mirrors ``ZoneAPI::replicate_log``,
# ``vote``, ``replicate_fed_log`` and ``SharedAPI::update_db``) ---------------------------

#: The Raft term of a solo server: it never takes part in an election.
SOLO_TERM = 0


def _term_error(error: type[OneError], message: str = "") -> OneError:
    """A Raft reply names the server's term in the fourth element."""
    return error(message, resp_id=SOLO_TERM, keep_id=True)


@rpc("one.zone.replicate", "iIiIiIiIs")
async def replicate(
    core: Core,
    call: Call,
    leader_id: int,
    leader_commit: int,
    leader_term: int,
    index: int,
    term: int,
    prev_index: int,
    prev_term: int,
    fed_index: int,
    sql: str,
) -> int:
    """Replicate a log record: a solo server has no log a leader could extend."""
    if call.uid != 0:
        raise _term_error(AuthorizationError)
    if leader_term < SOLO_TERM:
        raise _term_error(ActionError, f"Leader term ({leader_term}) is outdated ({SOLO_TERM})")
    if index == 0 and prev_index == 0 and term == 0 and prev_term == 0 and not sql:
        return SOLO_TERM  # a heartbeat
    if not sql:
        raise _term_error(ActionError, "Empty SQL command in log record")
    if index > 0:
        raise _term_error(ActionError, "Error loading previous log record")
    raise _term_error(ActionError, "Error writing log record")


@rpc("one.zone.voterequest", "iiIi")
async def voterequest(
    core: Core, call: Call, candidate_term: int, candidate_id: int, log_index: int, log_term: int
) -> int:
    """Request a vote: a solo server's log (index and term -1, as unsigned the largest)
    is never behind a candidate's."""
    if candidate_id < 0:
        raise _term_error(InternalError)
    if call.uid != 0:
        raise _term_error(AuthorizationError)
    if 0 <= candidate_term < SOLO_TERM:
        raise _term_error(ActionError, "Candidate's term is outdated")
    if not (log_term == -1 and log_index == -1):
        raise _term_error(ActionError, "Candidate's log is outdated")
    raise _term_error(ActionError, "Already voted for another candidate")


@rpc("one.zone.fedreplicate", "IIs")
async def fedreplicate(core: Core, call: Call, index: int, prev: int, sql: str) -> int:
    """Replicate a federation log record: only a federation slave takes them."""
    if call.uid != 0:
        raise AuthorizationError()
    if not sql:
        raise ReplicationError(f"Received an empty SQL command at index{index}")
    raise ReplicationError("Cannot replicate federate log records on federation master")


@rpc("one.zone.updatedb", "is")
async def updatedb(core: Core, call: Call, oid: int, xml: str) -> int:
    """Replace a zone's stored document (a federation master pushes it)."""

    def parse() -> Zone:
        try:
            return Zone.from_xml(xml)
        except Exception as exc:
            raise InternalError("Cannot update object from XML") from exc

    return await shared.replace_document(core, call, ZONE, oid, parse, "updatedb zone")
