"""Plans (mirrors ``Plan.cc``/``PlanPool.cc``): the scheduler's answers, one row per
cluster in ``plan_pool`` (``cid``, ``state``, ``body``), ``-1`` being the placement plan.

A plan is READY (cluster plan waiting for ``planexecute``), APPLYING, DONE, ERROR or
TIMEOUT; NONE means no plan (``plandelete``). Each ACTION has the same states.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, replace
from enum import IntEnum

from lxml import etree

from oned.db.database import Database, Statement

PLAN_TABLE = "plan_pool"
_CREATE = (
    "CREATE TABLE IF NOT EXISTS plan_pool (cid INTEGER PRIMARY KEY, state INTEGER, body MEDIUMTEXT)"
)


class PlanState(IntEnum):
    NONE = -1
    READY = 0
    APPLYING = 1
    DONE = 2
    ERROR = 3
    TIMEOUT = 4


@dataclass
class PlanAction:
    oid: int
    vm_id: int
    operation: str
    host_id: int = -1
    ds_id: int = -1
    state: int = PlanState.READY
    timestamp: int = 0
    nics: list[tuple[int, int]] = field(default_factory=list)

    def to_xml(self) -> str:
        nics = "".join(
            f"<NIC><NIC_ID>{n}</NIC_ID><NETWORK_ID>{v}</NETWORK_ID></NIC>" for n, v in self.nics
        )
        return (
            f"<ACTION><ID>{self.oid}</ID><VM_ID>{self.vm_id}</VM_ID><STATE>{self.state}</STATE>"
            f"<OPERATION>{self.operation}</OPERATION><HOST_ID>{self.host_id}</HOST_ID>"
            f"<DS_ID>{self.ds_id}</DS_ID><TIMESTAMP>{self.timestamp}</TIMESTAMP>{nics}</ACTION>"
        )


def _int(node: etree._Element, path: str, default: int | None = None) -> int | None:
    text = node.findtext(path)
    if text is None or not text.strip():
        return default
    try:
        return int(text.strip())
    except ValueError:
        return default


class PlanError(ValueError):
    """A plan document oned would not accept."""


@dataclass
class Plan:
    cid: int
    state: int = PlanState.NONE
    actions: list[PlanAction] = field(default_factory=list)

    def to_xml(self) -> str:
        acts = "".join(a.to_xml() for a in self.actions)
        return f"<PLAN><ID>{self.cid}</ID><STATE>{self.state}</STATE>{acts}</PLAN>"

    @classmethod
    def from_xml(cls, text: str) -> Plan:
        """``Plan::from_xml``: ID required; each ACTION needs VM_ID, OPERATION, HOST_ID
        and DS_ID (its ID defaults to its position)."""
        try:
            parser = etree.XMLParser(resolve_entities=False, no_network=True)
            root = etree.fromstring(text.strip().encode(), parser)
        except etree.XMLSyntaxError as exc:
            raise PlanError(str(exc)) from exc
        if root.tag != "PLAN":
            raise PlanError("not a PLAN")
        cid = _int(root, "ID")
        if cid is None:
            raise PlanError("PLAN without ID")
        plan = cls(cid, _int(root, "STATE", PlanState.NONE) or 0)
        for pos, node in enumerate(root.findall("ACTION")):
            vm_id, host_id, ds_id = (_int(node, p) for p in ("VM_ID", "HOST_ID", "DS_ID"))
            op = node.findtext("OPERATION")
            if vm_id is None or host_id is None or ds_id is None or op is None:
                raise PlanError("Unable to create PlanAction from xml")
            nics = [
                (_int(n, "NIC_ID", -1) or 0, _int(n, "NETWORK_ID", -1) or 0)
                for n in node.findall("NIC")
            ]
            plan.actions.append(
                PlanAction(
                    _int(node, "ID", pos) or 0,
                    vm_id,
                    op.strip(),
                    host_id,
                    ds_id,
                    _int(node, "STATE", PlanState.READY) or 0,
                    _int(node, "TIMESTAMP", 0) or 0,
                    nics,
                )
            )
        return plan

    def clear(self) -> None:
        self.state = PlanState.NONE
        self.actions = []

    def next_action(self) -> PlanAction | None:
        return next((a for a in self.actions if a.state == PlanState.READY), None)

    def action_finished(self, aid: int, state: int) -> bool:
        for a in self.actions:
            if a.oid == aid and a.state in (PlanState.APPLYING, PlanState.TIMEOUT):
                a.state = state
                return True
        return False

    def check_completed(self) -> None:
        new = PlanState.DONE
        for a in self.actions:
            if a.state in (PlanState.READY, PlanState.APPLYING):
                return
            if new == PlanState.ERROR:
                continue
            if a.state == PlanState.ERROR:
                new = PlanState.ERROR
            elif a.state == PlanState.TIMEOUT:
                new = PlanState.TIMEOUT
        self.state = new

    def timeout_actions(self, timeout: int, now: int) -> None:
        for a in self.actions:
            if a.state == PlanState.APPLYING and a.timestamp + timeout < now:
                a.state = PlanState.TIMEOUT

    def copy(self) -> Plan:
        return Plan(self.cid, self.state, [replace(a, nics=list(a.nics)) for a in self.actions])


def _thd_load(conn: sqlite3.Connection) -> list[str]:
    conn.execute(_CREATE)
    return [r[0] for r in conn.execute("SELECT body FROM plan_pool ORDER BY cid")]


class PlanPool:
    """Plans by cluster id, written through to ``plan_pool``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._plans: dict[int, Plan] = {}
        self.loaded = False

    async def load(self) -> None:
        """Create the table if needed, read it, and add the placement plan (-1)."""
        if self.loaded:
            return
        for body in await self.db.run("load plan_pool", _thd_load):
            try:
                plan = Plan.from_xml(body)
            except PlanError:
                continue
            self._plans[plan.cid] = plan
        self.loaded = True
        if -1 not in self._plans:
            await self.save(Plan(-1), insert=True)

    def get(self, cid: int) -> Plan:
        """The plan of cluster ``cid`` (an empty NONE plan when there is none)."""
        plan = self._plans.get(cid)
        return plan.copy() if plan is not None else Plan(cid)

    def peek(self, cid: int) -> Plan | None:
        """The stored plan itself (read-only)."""
        return self._plans.get(cid)

    def active(self) -> list[int]:
        return sorted(c for c, p in self._plans.items() if p.state == PlanState.APPLYING)

    def statement(self, plan: Plan) -> Statement:
        return (
            "REPLACE INTO plan_pool (cid, state, body) VALUES (?, ?, ?)",
            (plan.cid, int(plan.state), plan.to_xml()),
        )

    def remember(self, plan: Plan) -> None:
        self._plans[plan.cid] = plan

    async def save(self, plan: Plan, insert: bool = False) -> None:
        await self.db.transact(f"update plan {plan.cid}", [self.statement(plan)])
        self._plans[plan.cid] = plan

    async def drop(self, cid: int) -> None:
        statement = ("DELETE FROM plan_pool WHERE cid = ?", (cid,))
        await self.db.transact(f"drop plan {cid}", [statement])
        self._plans.pop(cid, None)
