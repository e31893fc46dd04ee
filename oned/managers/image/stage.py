"""Working copies of the objects one image change touches, committed as one ``Unit``.

An image operation changes the image, its datastore's ``IMAGES`` list and the DATASTORE
quotas of its owner and group together (oned does each with its own pool update; we
commit them in one transaction so a crash never leaves them out of step). A batch of
driver replies shares one ``Stage`` too, so many replies cost one transaction.

Callers hold the object locks (``Locks``) of everything they stage.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Callable
from typing import TYPE_CHECKING

from oned.managers.image import quota
from oned.objects.quotas import Quotas

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.datastore import Datastore
    from oned.objects.image import Image
    from oned.pools.base import Pool
    from oned.pools.quotas import QuotaTable


def _copy_datastore(ds: Datastore) -> Datastore:
    """A working copy without ``deepcopy`` (its IMAGES set can hold many ids)."""
    copy = _copy.copy(ds)
    copy.perms = _copy.copy(ds.perms)
    copy.clusters = set(ds.clusters)
    copy.images = set(ds.images)
    copy.template = ds.template.copy()
    return copy


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
        self._ds_images: dict[int, tuple[set[int], set[int]]] = {}
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
        """A working copy of the whole datastore (rendered again at commit)."""
        if oid not in self._datastores:
            found = self.core.datastores.get(oid)
            if found is None:
                return None
            self._datastores[oid] = _copy_datastore(found)
        return self._datastores[oid]

    def ds_add_image(self, ds_id: int, oid: int) -> None:
        """Add ``oid`` to the datastore's IMAGES (cheap: its body is patched)."""
        if ds_id in self._datastores:
            self._datastores[ds_id].images.add(oid)
            return
        added, removed = self._ds_images.setdefault(ds_id, (set(), set()))
        added.add(oid)
        removed.discard(oid)

    def ds_del_image(self, ds_id: int, oid: int) -> None:
        if ds_id in self._datastores:
            self._datastores[ds_id].images.discard(oid)
            return
        added, removed = self._ds_images.setdefault(ds_id, (set(), set()))
        removed.add(oid)
        added.discard(oid)

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
        return not (self._images or self._datastores or self._quotas or self._ds_images)

    def _patch_images(self, ds_id: int, added: set[int], removed: set[int]) -> None:
        """Save a datastore whose IMAGES alone changed by editing its stored body.

        A body holds every image id of the datastore: rendering it again for each new
        image would cost O(images) per allocation. New ids are larger than all others
        (ids only grow), so they go at the end of the list.
        """
        pool = self.core.datastores
        current = pool.get(ds_id)
        if current is None:
            return
        ds = _copy_datastore(current)
        ds.images = (ds.images | added) - removed
        body = pool.body(ds_id)
        start, end = body.find("<IMAGES>"), body.find("</IMAGES>")
        inner = body[start + len("<IMAGES>") : end]
        last = inner.rfind("<ID>")
        highest = int(inner[last + 4 : inner.find("<", last + 4)]) if last >= 0 else -1
        if start < 0 or end < 0 or (added and min(added) < highest):
            self.unit.save(pool, ds)
            return
        for oid in removed:
            inner = inner.replace(f"<ID>{oid}</ID>", "", 1)
        inner += "".join(f"<ID>{oid}</ID>" for oid in sorted(added))
        body = body[: start + len("<IMAGES>")] + inner + body[end:]
        cols = ds.columns()
        sets = ", ".join(f"{c} = ?" for c in ["name", "body", *cols])
        sql = f"UPDATE {pool.table} SET {sets} WHERE oid = ?"  # noqa: S608
        self.unit.sql((sql, (ds.name, body, *cols.values(), ds.oid)), _remember_ds(pool, ds, body))

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
        for ds_id, (added, removed) in self._ds_images.items():
            if ds_id not in self._datastores:
                self._patch_images(ds_id, added, removed)
        for (kind, oid), q in self._quotas.items():
            table = self._table(kind)
            unit.sql(table.save(oid, q), _remember(table, oid, q))
        await unit.commit(desc)


def _remember(table: QuotaTable, oid: int, q: Quotas) -> Callable[[], None]:
    return lambda: table.remember(oid, q)


def _remember_ds(pool: Pool[Datastore], ds: Datastore, body: str) -> Callable[[], None]:
    return lambda: pool._remember(ds, body)
