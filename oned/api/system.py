"""``one.system.version``, ``one.system.config`` and ``one.system.sqlquery`` (mirrors
``SystemAPI``)."""

from __future__ import annotations

import base64
import sqlite3
from typing import Any

from oned import __version__
from oned.api.context import Call
from oned.api.registry import rpc
from oned.core import Core
from oned.errors import ActionError, AuthorizationError
from oned.log import logger
from oned.template import cdata

log = logger("ReM")

DB_HIDDEN = ("BACKEND", "SERVER", "PORT", "USER", "PASSWD", "DB_NAME")

#: Host monitoring settings. OpenNebula 7 keeps them in monitord.conf, so oned's
#: configuration never shows them; this daemon embeds monitord and reads them from
#: oned.conf, but answers ``one.system.config`` as oned does.
MONITORD_SETTINGS = frozenset(
    {
        "MONITORING_INTERVAL_HOST",
        "HOST_MONITORING_EXPIRATION_TIME",
        "VM_MONITORING_EXPIRATION_TIME",
        "MONITOR_NETWORK",
        "PROBES_PERIOD",
    }
)


@rpc("one.system.version", "")
async def version(core: Core, call: Call) -> str:
    """Returns the OpenNebula core version."""
    return __version__


def config_xml(core: Core, masked: bool) -> str:
    out = ["<OPENNEBULA_CONFIGURATION>"]
    for name, value in core.config.template.sorted_items():
        if name in MONITORD_SETTINGS:
            continue
        if isinstance(value, dict):
            out.append(f"<{name}>")
            for key in sorted(value):
                if masked and name == "DB" and key in DB_HIDDEN:
                    out.append(f"<{key}>***</{key}>")
                else:
                    out.append(f"<{key}>{cdata(value[key])}</{key}>")
            out.append(f"</{name}>")
        else:
            out.append(f"<{name}>{cdata(value)}</{name}>")
    out.append("</OPENNEBULA_CONFIGURATION>")
    return "".join(out)


@rpc("one.system.config", "")
async def config(core: Core, call: Call) -> str:
    """Returns the OpenNebula configuration."""
    return config_xml(core, masked=call.caller.gid != 0)


SQL_ERROR = -200
"""``SqlDB::SQL``: what oned puts in the fourth element when a query fails."""


def _thd_query(conn: sqlite3.Connection, sql: str) -> str | None:
    """Rows as oned's ``select_cb`` writes them (None when the query fails). Read only:
    the pools cache what is stored, so nothing may change behind them."""
    conn.execute("PRAGMA query_only = ON")
    try:
        cursor = conn.execute(sql)
        names = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.execute("PRAGMA query_only = OFF")
    out: list[str] = []
    for row in rows:
        out.append("<ROW>")
        for name, value in zip(names, row, strict=True):
            if value is None:
                # oned streams a NULL char*: the stream fails and writes nothing more
                out.append(f"<{name}><![CDATA[")
                return "".join(out)
            text = _sql_text(value)
            if text.startswith("<"):
                encoded = base64.b64encode(text.encode()).decode()
                out.append(f"<{name}64><![CDATA[{encoded}]]></{name}64>")
            else:
                out.append(f"<{name}><![CDATA[{text}]]></{name}>")
        out.append("</ROW>")
    return "".join(out)


def _sql_text(value: object) -> str:
    """A column as ``sqlite3_exec`` hands it over: text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float):
        text = f"{value:.15g}"
        return text if any(c in text for c in ".eEn") else f"{text}.0"
    return str(value)


@rpc("one.system.sqlquery", "s")
async def sqlquery(core: Core, call: Call, sql: str) -> str:
    """Executes SQL queries on the DB backend (read only here)."""
    if call.uid != 0:
        raise AuthorizationError("", word="-")
    result = await core.db.run("sqlquery", _thd_query, sql)
    if result is None:
        raise ActionError("", resp_id=SQL_ERROR, keep_id=True)
    return f"<SQL_COMMAND><QUERY><![CDATA[{sql}]]></QUERY><RESULT>{result}</RESULT></SQL_COMMAND>"


#: sqlite authorizer actions that change a table, and the argument naming it.
_WRITES = {
    sqlite3.SQLITE_INSERT: 0,
    sqlite3.SQLITE_UPDATE: 0,
    sqlite3.SQLITE_DELETE: 0,
    sqlite3.SQLITE_DROP_TABLE: 0,
    sqlite3.SQLITE_CREATE_TABLE: 0,
    sqlite3.SQLITE_ALTER_TABLE: 1,
}


def _thd_exec(conn: sqlite3.Connection, sql: str) -> set[str] | None:
    """Run one statement in its own transaction; the tables it wrote (None if it failed)."""
    touched: set[str] = set()

    def watch(action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
        if action in _WRITES:
            name = (arg1, arg2)[_WRITES[action]]
            if name:
                touched.add(name)
        return sqlite3.SQLITE_OK

    conn.set_authorizer(watch)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(sql)
            conn.execute("COMMIT")
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            return None
    finally:
        conn.set_authorizer(None)
    return touched


async def reload_tables(core: Core, tables: set[str]) -> None:
    """Bring the in-memory pools back in line with tables changed behind them."""
    pools: list[Any] = [
        core.users,
        core.groups,
        core.zones,
        core.vdcs,
        core.vmgroups,
        core.vrouters,
        core.clusters,
        core.datastores,
        core.documents,
        core.hosts,
        core.images,
        core.templates,
        core.secgroups,
        core.vnets,
        core.vntemplates,
        core.hooks,
        core.backupjobs,
        core.markets,
        core.marketapps,
        core.vms,
        core.user_quotas,
        core.group_quotas,
        core.group_vlans,
    ]
    for pool in pools:
        wanted = {pool.table} | ({"history"} if pool is core.vms else set())
        if tables & wanted:
            await pool.reload()
    if "acl" in tables:
        core.acl.load(await core.acl_pool.load())
    if tables & {"hook_log", "hook_event_queue"}:
        await core.hook_manager.load()


@rpc("one.system.sql", "sb", required=1)
async def sql(core: Core, call: Call, statement: str, federate: bool = False) -> int:
    """Executes a SQL statement on the DB backend; the pools it touches are read again."""
    if call.uid != 0:
        raise AuthorizationError("", word="-")
    touched = await core.db.run("system sql", _thd_exec, statement)
    if touched is None:
        raise ActionError("", resp_id=SQL_ERROR, keep_id=True)
    try:
        await reload_tables(core, touched)
    except Exception as exc:  # a dropped or mangled table: the statement ran, as in oned
        log.error("Cannot reload {tables} after one.system.sql: {exc}", tables=touched, exc=exc)
    return 0
