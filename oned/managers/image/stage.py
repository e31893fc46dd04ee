"""Working copies of the objects one image change touches, committed as one ``Unit``.

An image operation changes the image, its datastore's ``IMAGES`` list and the DATASTORE
quotas of its owner and group together (oned does each with its own pool update; we
commit them in one transaction so a crash never leaves them out of step). A batch of
driver replies shares one ``Stage`` too, so many replies cost one transaction.

Callers hold the object locks (``Locks``) of everything they stage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from oned.managers.image import quota
from oned.objects.quotas import Quotas

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.datastore import Datastore
    from oned.objects.image import Image
    from oned.pools.quotas import QuotaTable


def _copy_quotas(q: Quotas) -> Quotas:
    return Quotas({k: [dict(e) for e in v] for k, v in q.entries.items()})


class Stage:
    """Images, datastores and quotas changed together."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._images: dict[int, Image | None] = {}
        self._new: dict[int, bool] = {}
        self._datastores: dict[int, Datastore] = {}
        self._quotas: dict[tuple[str, int], Quotas] = {}
        self.unit = core.unit()

    def allocate_oid(self) -> int:
        """A new image id (given back if the commit fails)."""
        return self.unit.allocate(self.core.images)

    # -- images ----------------------------------------------------------------------

    def image(self, oid: int) -> Image | None:
        """The working copy of image ``oid`` (None when missing or dropped here)."""
        if oid in self._images:
            img = self._images[oid]
            if img is not None and oid in self._new:
                self._new[oid] = True
            return img
        found = self.core.images.get(oid)
        copy = found.copy() if found is not None else None
        self._images[oid] = copy
        return copy

    def add_image(self, img: Image) -> None:
        self._images[img.oid] = img
        self._new[img.oid] = False

    def drop_image(self, oid: int) -> None:
        self._images[oid] = None

    # -- datastores ------------------------------------------------------------------

    def datastore(self, oid: int) -> Datastore | None:
        if oid not in self._datastores:
            found = self.core.datastores.get(oid)
            if found is None:
                return None
            self._datastores[oid] = found.copy()
        return self._datastores[oid]

    # -- quotas ----------------------------------------------------------------------

    def _table(self, kind: str) -> QuotaTable:
        return self.core.user_quotas if kind == "user" else self.core.group_quotas

    def _quota(self, kind: str, oid: int) -> Quotas:
        key = (kind, oid)
        if key not in self._quotas:
            self._quotas[key] = _copy_quotas(self._table(kind).get(oid))
        return self._quotas[key]

    def quota_add(self, uid: int, gid: int, ds_id: int, usage: dict[str, float]) -> str | None:
        """``quota_authorization`` for DATASTORE: None, or the refusal text."""
        if uid > 0:
            error = quota.check(
                self._quota("user", uid), self.core.user_quotas.defaults, ds_id, usage
            )
            if error:
                self._quotas.pop(("user", uid), None)
                return f"user [{uid}] {error}"
        if gid > 0:
            error = quota.check(
                self._quota("group", gid), self.core.group_quotas.defaults, ds_id, usage
            )
            if error:
                self._quotas.pop(("user", uid), None)
                self._quotas.pop(("group", gid), None)
                return f"group [{gid}] {error}"
        return None

    def quota_del(self, uid: int, gid: int, ds_id: int, usage: dict[str, float]) -> None:
        """``Quotas::ds_del``: give the usage back to the owner and the group."""
        if uid > 0 and self.core.users.get(uid) is not None:
            quota.release(self._quota("user", uid), ds_id, usage)
        if gid > 0 and self.core.groups.get(gid) is not None:
            quota.release(self._quota("group", gid), ds_id, usage)

    # -- commit ----------------------------------------------------------------------

    def empty(self) -> bool:
        return not (self._images or self._datastores or self._quotas)

    async def commit(self, desc: str) -> None:
        core = self.core
        unit = self.unit
        for oid, img in self._images.items():
            if img is None:
                if core.images.get(oid) is not None:
                    unit.drop(core.images, oid)
            elif oid in self._new:
                if self._new[oid]:
                    img.prev_state = img.state
                unit.add(core.images, img)
            else:
                img.prev_state = img.state
                unit.save(core.images, img)
        for ds in self._datastores.values():
            unit.save(core.datastores, ds)
        for (kind, oid), q in self._quotas.items():
            table = self._table(kind)
            unit.sql(table.save(oid, q), _remember(table, oid, q))
        await unit.commit(desc)


def _remember(table: QuotaTable, oid: int, q: Quotas) -> Callable[[], None]:
    return lambda: table.remember(oid, q)
