"""``one.cluster.*`` and ``one.clusterpool.info`` (mirrors ``ClusterAPI``)."""

from __future__ import annotations

from oned.api import shared
from oned.api.declare import declare
from oned.api.shared import Family
from oned.objects.base import Op
from oned.objects.cluster import Cluster

CLUSTER = Family[Cluster](
    type_name="CLUSTER",
    word="cluster",
    pool_root="CLUSTER_POOL",
    pool=lambda core: core.clusters,
    auth=shared.system_auth("CLUSTER"),
    name_scope="global",
    delete_op=Op.ADMIN,
    encrypted_attr="CLUSTER_ENCRYPTED_ATTR",
)

declare(CLUSTER, "cluster", "info", "pool", "update", "rename")
