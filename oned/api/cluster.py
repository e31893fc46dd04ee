"""``one.cluster.*`` and ``one.clusterpool.info`` (mirrors ``ClusterAPI``).

A cluster groups hosts (a host is in exactly one), datastores and virtual networks (each
may be in several). Membership is kept on both sides in one transaction: the cluster's
``HOSTS``/``DATASTORES``/``VNETS`` and the member's ``CLUSTER_ID``/``CLUSTERS``, plus
the ``cluster_datastore_relation``/``cluster_network_relation`` rows oned keeps for ACL
filters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oned.api import shared
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.api.vdc import forget_resource
from oned.auth import acl
from oned.core import Core
from oned.errors import AllocateError, no_exists
from oned.objects.base import Op
from oned.objects.cluster import DEFAULT_CLUSTER_ID, Cluster
from oned.objects.host import Host
from oned.pools.base import Locks, Pool, Unit


def _check_drop(core: Core, cluster: Cluster) -> str | None:
    """``ClusterPool::drop`` and ``Cluster::check_drop``."""
    if cluster.oid < 100:
        return "System Clusters (ID < 100) cannot be deleted."
    for members, word in (
        (cluster.hosts, "hosts"),
        (cluster.datastores, "datastores"),
        (cluster.vnets, "vnets"),
    ):
        if members:
            return f"Cluster {cluster.oid} is not empty, it contains {len(members)} {word}."
    return None


def _after_update(core: Core, unit: Unit, cluster: Cluster) -> None:
    """``ClusterUpdateAPI::extra_updates``: hosts take the new reserved capacity."""
    for hid in cluster.hosts:
        host = core.hosts.get(hid)
        if host is not None:
            host = host.copy()
            if reserve_capacity(core, host, cluster):
                unit.save(core.hosts, host)


def _after_rename(core: Core, unit: Unit, cluster: Cluster) -> None:
    """``ClusterRenameAPI::batch_rename``: hosts show their cluster's name."""
    for hid in cluster.hosts:
        host = core.hosts.get(hid)
        if host is not None and host.cluster_id == cluster.oid:
            host = host.copy()
            host.cluster = cluster.name
            unit.save(core.hosts, host)


CLUSTER = Family[Cluster](
    type_name="CLUSTER",
    word="cluster",
    pool_root="CLUSTER_POOL",
    pool=lambda core: core.clusters,
    auth=shared.system_auth("CLUSTER"),
    name_scope="global",
    delete_op=Op.ADMIN,
    encrypted_attr="CLUSTER_ENCRYPTED_ATTR",
    on_update=_after_update,
    on_rename=_after_rename,
    drop_check=_check_drop,
)


def reserve_capacity(core: Core, host: Host, cluster: Cluster) -> bool:
    """``Host::update_reserved_capacity`` with the cluster's RESERVED_CPU/MEM; True when
    the host changed."""
    return host.update_reserved_capacity(
        cluster.template.get("RESERVED_CPU") or "", cluster.template.get("RESERVED_MEM") or ""
    )


@rpc("one.cluster.allocate", "s")
async def allocate(core: Core, call: Call, name: str) -> int:
    """Allocates a new cluster."""
    core.acl.check(call.caller, Op.CREATE, shared.ObjectAuth("CLUSTER", -1))
    shared.check_new_name(core, CLUSTER, name, -1, "CLUSTER", AllocateError)
    unit = core.unit()
    oid = unit.allocate(core.clusters)
    cluster = Cluster(oid, name)
    cluster.template.add("RESERVED_CPU", "")
    cluster.template.add("RESERVED_MEM", "")
    unit.add(core.clusters, cluster)
    await unit.commit(f"allocate cluster {oid}")
    return oid


async def _delete(core: Core, call: Call, oid: int) -> int:
    def drop_cluster_rules(unit: Unit, cluster: Cluster) -> None:
        """``AclManager::del_cid_rules``: rules whose resource is ``%oid``."""
        for rule in list(core.acl.rules.values()):
            if rule.resource & (acl.SELECTORS | acl.ID_MASK) == (acl.CLUSTER | oid):
                core.drop_rule(unit, rule.oid)
        forget_resource(core, unit, "CLUSTER", oid)

    return await shared.delete(core, call, CLUSTER, oid, extra=drop_cluster_rules)


rpc("one.cluster.delete", "i", help="Deletes a cluster.")(_delete)


def _cluster_and_member(
    core: Core, call: Call, oid: int, family: Family[Any], member_id: int
) -> tuple[Cluster, Any]:
    """``get_info`` of both (NO_EXISTS names each) and ADMIN on both."""
    cluster = shared.get_object(core, CLUSTER, oid)
    member = shared.get_object(core, family, member_id)
    core.acl.check_all(
        call.caller,
        [
            (Op.ADMIN, CLUSTER.auth(core, cluster)),
            (Op.ADMIN, family.auth(core, member)),
        ],
    )
    return cluster, member


@rpc("one.cluster.addhost", "ii")
async def addhost(core: Core, call: Call, oid: int, host_id: int) -> int:
    """Adds a host to the cluster (moving it out of its current one)."""
    from oned.api.host import HOST

    _cluster_and_member(core, call, oid, HOST, host_id)
    await move_host(core, host_id, oid)
    return oid


@rpc("one.cluster.delhost", "ii")
async def delhost(core: Core, call: Call, oid: int, host_id: int) -> int:
    """Takes a host out of its cluster, back into the default cluster 0."""
    from oned.api.host import HOST

    _cluster_and_member(core, call, DEFAULT_CLUSTER_ID, HOST, host_id)
    await move_host(core, host_id, DEFAULT_CLUSTER_ID)
    return oid


async def move_host(core: Core, host_id: int, oid: int) -> None:
    """``ClusterAPI::AddHost``: the host's CLUSTER_ID/CLUSTER, both clusters' HOSTS and
    the reserved capacity of the new cluster, in one transaction. Concurrent moves of
    one host are serialised: each locks the host and both clusters it reads."""
    while True:
        host = core.hosts.get(host_id)
        if host is None:
            raise no_exists("host", host_id)
        old_cid = host.cluster_id
        async with Locks((core.hosts, host_id), (core.clusters, oid), (core.clusters, old_cid)):
            host = core.hosts.get(host_id)
            cluster = core.clusters.get(oid)
            if host is None:
                raise no_exists("host", host_id)
            if cluster is None:
                raise no_exists("cluster", oid)
            if host.cluster_id == oid:
                return
            if host.cluster_id != old_cid:
                continue  # moved meanwhile: lock the cluster it is in now
            unit = core.unit()
            host = host.copy()
            host.cluster_id, host.cluster = oid, cluster.name
            reserve_capacity(core, host, cluster)
            unit.save(core.hosts, host)
            cluster = cluster.copy()
            cluster.hosts.add(host_id)
            unit.save(core.clusters, cluster)
            old = core.clusters.get(old_cid)
            if old is not None:
                old = old.copy()
                old.hosts.discard(host_id)
                unit.save(core.clusters, old)
            await unit.commit(f"move host {host_id} to cluster {oid}")
            return


@dataclass(frozen=True)
class Membership:
    """A many-to-many member kind: its family, cluster set and relation table."""

    family: Callable[[], Family[Any]]
    members: Callable[[Cluster], set[int]]
    table: str


def _datastore_family() -> Family[Any]:
    from oned.api.datastore import DATASTORE

    return DATASTORE


DATASTORES = Membership(_datastore_family, lambda c: c.datastores, "cluster_datastore_relation")


async def _generic(
    core: Core, call: Call, oid: int, member_id: int, kind: Membership, add: bool
) -> int:
    """``ClusterAPI::action_generic`` for datastores and virtual networks."""
    family = kind.family()
    _cluster_and_member(core, call, oid, family, member_id)
    pool = family.pool(core)
    async with Locks((pool, member_id), (core.clusters, oid)):
        member = shared.get_object(core, family, member_id)
        cluster = core.clusters.get(oid)
        if cluster is None:
            raise no_exists("cluster", oid)
        if (oid in member.clusters) == add:
            return oid
        member, cluster = member.copy(), cluster.copy()
        unit = core.unit()
        apply_membership(core, unit, kind, pool, member, cluster, add)
        await unit.commit(f"{'add' if add else 'del'} {family.word} {member_id} cluster {oid}")
    return oid


def apply_membership(
    core: Core,
    unit: Unit,
    kind: Membership,
    pool: Pool[Any],
    member: Any,
    cluster: Cluster,
    add: bool,
) -> None:
    """Stage ``member`` (a copy) joining or leaving ``cluster`` (a copy)."""
    if add:
        member.clusters.add(cluster.oid)
    else:
        member.clusters.discard(cluster.oid)
    unit.save(pool, member)
    stage_cluster_side(core, unit, kind, cluster, member.oid, add)


def stage_cluster_side(
    core: Core, unit: Unit, kind: Membership, cluster: Cluster, member_id: int, add: bool
) -> None:
    """The cluster's half of a membership change: its id set and the relation row."""
    members = kind.members(cluster)
    if add:
        members.add(member_id)
        sql = f"INSERT OR REPLACE INTO {kind.table} (cid, oid) VALUES (?, ?)"  # noqa: S608
    else:
        members.discard(member_id)
        sql = f"DELETE FROM {kind.table} WHERE cid = ? AND oid = ?"  # noqa: S608
    unit.save(core.clusters, cluster)
    unit.sql((sql, (cluster.oid, member_id)))


@rpc("one.cluster.adddatastore", "ii")
async def adddatastore(core: Core, call: Call, oid: int, ds_id: int) -> int:
    """Adds a datastore to the cluster."""
    return await _generic(core, call, oid, ds_id, DATASTORES, True)


@rpc("one.cluster.deldatastore", "ii")
async def deldatastore(core: Core, call: Call, oid: int, ds_id: int) -> int:
    """Removes a datastore from the cluster."""
    return await _generic(core, call, oid, ds_id, DATASTORES, False)


# one.cluster.info is in cluster_plan.py: it adds the cluster's PLAN.
declare(CLUSTER, "cluster", "pool", "update", "rename")
