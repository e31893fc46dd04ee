"""The scheduled action pool (mirrors ``ScheduledActionPool``): ``schedaction_pool``
rows (oid, parent_id, type, body, time, done), one id sequence for VMs and backup jobs.
"""

from __future__ import annotations

from oned.db.database import Database, Statement
from oned.objects.schedaction import SchedActionError, ScheduledAction
from oned.pools.base import Pool, Unit


class ScheduledActionPool(Pool[ScheduledAction]):
    """Scheduled actions by id; the table has no name column."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, ScheduledAction.TABLE, ScheduledAction.from_xml)

    def insert(self, obj: ScheduledAction) -> Statement:
        return (
            "INSERT INTO schedaction_pool (oid, parent_id, type, body, time, done) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (obj.oid, obj.parent_id, obj.type, obj.to_xml(), obj.time, obj.done),
        )

    def update(self, obj: ScheduledAction) -> Statement:
        return (
            "UPDATE schedaction_pool SET body = ?, time = ?, done = ? WHERE oid = ?",
            (obj.to_xml(), obj.time, obj.done, obj.oid),
        )

    # Unit.add/save read the body back from the statement at these positions.
    def add_to(self, unit: Unit, obj: ScheduledAction) -> None:
        statement = self.insert(obj)
        unit.sql(statement, lambda: self._remember(obj, obj.to_xml()))

    def save_in(self, unit: Unit, obj: ScheduledAction) -> None:
        unit.sql(self.update(obj), lambda: self._remember(obj, obj.to_xml()))

    def stage_new(
        self, unit: Unit, kind: str, parent_id: int, origin: int, va: dict[str, str]
    ) -> ScheduledAction:
        """``allocate``: parse ``va`` (``SchedActionError`` with oned's text) and stage
        the insert with a new id from the shared sequence."""
        sa = ScheduledAction(-1, parent_id, kind)
        sa.parse(va, origin)
        sa.oid = unit.allocate(self)
        self.add_to(unit, sa)
        return sa

    def dump(self, ids: list[int]) -> str:
        """``dump``: the bodies of ``ids`` that exist, by id."""
        return "".join(self.body(i) for i in sorted(set(ids)) if self.get(i) is not None)

    def due(self, kind: str, now: int) -> list[ScheduledAction]:
        """``get_is_due_actions``: ``time < now AND time > done`` by time."""
        found = [sa for sa in self.objects() if sa.type == kind and sa.is_due(now)]
        return sorted(found, key=lambda sa: (sa.time, sa.oid))


__all__ = ["SchedActionError", "ScheduledActionPool"]
