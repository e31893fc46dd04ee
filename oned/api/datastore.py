"""``one.datastore.*`` and ``one.datastorepool.info`` (mirrors ``DatastoreAPI``).

A datastore's behaviour comes from oned.conf: creating or updating one copies its
``DS_MAD_CONF``/``TM_MAD_CONF`` attributes into the template
(``oned.objects.datastore_conf``). Its capacity is monitored by the image manager.
"""

from __future__ import annotations

from oned.api import shared
from oned.api.cluster import DATASTORES, apply_membership, stage_cluster_side
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.api.vdc import forget_resource
from oned.bootstrap import datastore_location
from oned.core import Core
from oned.errors import InternalError, no_exists
from oned.objects.base import Op, Permissions
from oned.objects.cluster import DEFAULT_CLUSTER_ID
from oned.objects.datastore import DISABLED, READY, SYSTEM_DS, Datastore
from oned.objects.datastore_conf import (
    DatastoreConfError,
    init_datastore,
    post_update,
    read_only_options,
)
from oned.pools.base import Locks, Unit


def _after_update(core: Core, unit: Unit, ds: Datastore) -> None:
    """``Datastore::post_update_template`` on the updated copy."""
    stored = core.datastores.get(ds.oid)
    before = read_only_options(stored) if stored is not None else []
    try:
        reset = post_update(ds, core.config, before)
    except DatastoreConfError as exc:
        raise InternalError(f"Cannot update template. {exc}") from exc
    if reset:
        ds.total_mb = ds.free_mb = ds.used_mb = 0
        manager = core.image_manager
        if manager is not None:
            # The driver that measures it changed: ask it now, not at the next interval.
            unit.then(lambda: manager.monitor_soon(ds.oid))


def _after_rename(core: Core, unit: Unit, ds: Datastore) -> None:
    """``DatastoreAPI::batch_rename``: images show their datastore's name."""
    for iid in ds.images:
        image = core.images.get(iid)
        if image is not None and image.datastore_id == ds.oid:
            image = image.copy()
            image.datastore = ds.name
            unit.save(core.images, image)


def _check_drop(core: Core, ds: Datastore) -> str | None:
    """``DatastorePool::drop``: a datastore holding images stays."""
    if ds.images:
        return f"Datastore {ds.oid} is not empty."
    return None


DATASTORE = Family[Datastore](
    type_name="DATASTORE",
    word="datastore",
    pool_root="DATASTORE_POOL",
    pool=lambda core: core.datastores,
    auth=shared.owned_auth("DATASTORE"),
    name_scope="global",
    delete_op=Op.ADMIN,
    encrypted_attr="DATASTORE_ENCRYPTED_ATTR",
    on_update=_after_update,
    on_rename=_after_rename,
    drop_check=_check_drop,
)


@rpc("one.datastore.allocate", "si")
async def allocate(core: Core, call: Call, text: str, cluster_id: int) -> int:
    """Allocates a new datastore (cluster -1 is the default cluster 0)."""
    tmpl = shared.parse_template(text)
    if cluster_id == -1:
        cluster_id = DEFAULT_CLUSTER_ID
    from oned.api.cluster import CLUSTER

    cluster = shared.get_object(core, CLUSTER, cluster_id)
    core.acl.check_all(
        call.caller,
        [
            (Op.CREATE, shared.ObjectAuth("DATASTORE", -1)),
            (Op.ADMIN, CLUSTER.auth(core, cluster)),
        ],
    )
    name = tmpl.get("NAME") or ""
    shared.check_new_name(core, DATASTORE, name, -1, "DATASTORE")
    tmpl.erase("NAME")
    caller = call.caller
    perms = Permissions.for_new_object(
        caller.uid, caller.gid, caller.umask, core.config.enable_other_permissions
    )
    perms.group_u = 1
    unit = core.unit()
    oid = unit.allocate(core.datastores)
    ds = Datastore(
        oid=oid,
        name=name,
        uid=caller.uid,
        gid=caller.gid,
        uname=caller.uname,
        gname=caller.gname,
        perms=perms,
        template=tmpl,
    )
    try:
        init_datastore(ds, core.config, datastore_location(core))
    except DatastoreConfError as exc:
        unit.rollback()
        raise InternalError(str(exc)) from exc
    encrypted = core.attr_list(DATASTORE.encrypted_attr)
    if encrypted:
        ds.template = core.one_key.encrypt_template(ds.template, encrypted)
    async with core.clusters.lock(cluster_id):
        cluster = core.clusters.get(cluster_id)
        if cluster is None:
            unit.rollback()
            raise no_exists("cluster", cluster_id)
        unit.add(core.datastores, ds)
        apply_membership(core, unit, DATASTORES, core.datastores, ds, cluster.copy(), True)
        await unit.commit(f"allocate datastore {oid}")
    if core.image_manager is not None:
        core.image_manager.monitor_datastore(oid)
    return oid


async def _delete(core: Core, call: Call, oid: int) -> int:
    def leave_clusters(unit: Unit, ds: Datastore) -> None:
        """``SharedAPI::drop``: out of every cluster it was in."""
        for cid in sorted(ds.clusters):
            cluster = core.clusters.get(cid)
            if cluster is not None:
                stage_cluster_side(core, unit, DATASTORES, cluster.copy(), oid, False)
        forget_resource(core, unit, "DATASTORE", oid)

    clusters = shared.get_object(core, DATASTORE, oid).clusters
    async with Locks(*((core.clusters, cid) for cid in clusters)):
        return await shared.delete(core, call, DATASTORE, oid, extra=leave_clusters)


rpc("one.datastore.delete", "i", help="Deletes a datastore.")(_delete)


@rpc("one.datastore.enable", "ib")
async def enable(core: Core, call: Call, oid: int, on: bool) -> int:
    """Enables or disables a (system) datastore."""
    shared.get_authorized(core, call, DATASTORE, oid, Op.MANAGE)
    async with core.datastores.lock(oid):
        ds = shared.get_object(core, DATASTORE, oid)
        if ds.type != SYSTEM_DS:
            raise InternalError("Only SYSTEM_DS can be disabled or enabled")
        ds = ds.copy()
        ds.state = READY if on else DISABLED
        await shared.save(core, DATASTORE, ds, f"enable datastore {oid}")
    return oid


declare(DATASTORE, "datastore", "info", "pool", "update", "rename", "chmod", "chown")
