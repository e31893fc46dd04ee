"""``one.datastore.*`` and ``one.datastorepool.info`` (mirrors ``DatastoreAPI``)."""

from __future__ import annotations

from oned.api import shared
from oned.api.declare import declare
from oned.api.shared import Family
from oned.objects.base import Op
from oned.objects.datastore import Datastore

DATASTORE = Family[Datastore](
    type_name="DATASTORE",
    word="datastore",
    pool_root="DATASTORE_POOL",
    pool=lambda core: core.datastores,
    auth=shared.owned_auth("DATASTORE"),
    name_scope="global",
    delete_op=Op.ADMIN,
    encrypted_attr="DATASTORE_ENCRYPTED_ATTR",
)

declare(DATASTORE, "datastore", "info", "pool", "update", "rename", "chmod", "chown")
