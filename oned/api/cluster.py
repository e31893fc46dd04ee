"""``one.cluster.info/update/rename`` and ``one.clusterpool.info`` (mirrors ``ClusterAPI``)."""

from __future__ import annotations

from oned.api import shared
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.objects.base import Op
from oned.objects.cluster import Cluster

CLUSTER = Family[Cluster](
    type_name="CLUSTER",
    word="cluster",
    pool=lambda core: core.clusters,
    auth=shared.system_auth("CLUSTER"),
    name_scope="global",
    delete_op=Op.ADMIN,
    encrypted_attr="CLUSTER_ENCRYPTED_ATTR",
)


@rpc("one.cluster.info", "ib", required=1)
async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
    """Returns cluster information."""
    obj = shared.get_authorized(core, call, CLUSTER, oid, Op.USE, ignore_lock=True)
    return shared.info_body(core, call, CLUSTER, obj, decrypt)


@rpc("one.clusterpool.info", "")
async def pool_info(core: Core, call: Call) -> str:
    """Returns the cluster pool."""
    return shared.pool_document(
        "CLUSTER_POOL", shared.filtered(core, call, CLUSTER), CLUSTER.pool(core)
    )


@rpc("one.cluster.update", "isi", required=2)
async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Updates the cluster template."""
    return await shared.update_template(core, call, CLUSTER, oid, text, mode)


@rpc("one.cluster.rename", "is")
async def rename(core: Core, call: Call, oid: int, name: str) -> int:
    """Renames a cluster."""
    return await shared.rename(core, call, CLUSTER, oid, name)
