"""``one.datastore.info/update/rename/chmod/chown`` and ``one.datastorepool.info``."""

from __future__ import annotations

from oned.api import shared
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.objects.base import Op
from oned.objects.datastore import Datastore

DATASTORE = Family[Datastore](
    type_name="DATASTORE",
    word="datastore",
    pool=lambda core: core.datastores,
    auth=shared.owned_auth("DATASTORE"),
    name_scope="global",
    delete_op=Op.ADMIN,
    encrypted_attr="DATASTORE_ENCRYPTED_ATTR",
)


@rpc("one.datastore.info", "ib", required=1)
async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
    """Returns datastore information."""
    obj = shared.get_authorized(core, call, DATASTORE, oid, Op.USE, ignore_lock=True)
    return shared.info_body(core, call, DATASTORE, obj, decrypt)


@rpc("one.datastorepool.info", "")
async def pool_info(core: Core, call: Call) -> str:
    """Returns the datastore pool."""
    return shared.pool_document(
        "DATASTORE_POOL", shared.filtered(core, call, DATASTORE), DATASTORE.pool(core)
    )


@rpc("one.datastore.update", "isi", required=2)
async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Updates the datastore template."""
    return await shared.update_template(core, call, DATASTORE, oid, text, mode)


@rpc("one.datastore.rename", "is")
async def rename(core: Core, call: Call, oid: int, name: str) -> int:
    """Renames a datastore."""
    return await shared.rename(core, call, DATASTORE, oid, name)


@rpc("one.datastore.chmod", "iiiiiiiiii")
async def chmod(core: Core, call: Call, oid: int, *bits: int) -> int:
    """Changes the permission bits of a datastore."""
    return await shared.chmod(core, call, DATASTORE, oid, list(bits))


@rpc("one.datastore.chown", "iii")
async def chown(core: Core, call: Call, oid: int, uid: int, gid: int) -> int:
    """Changes the owner and group of a datastore."""
    return await shared.chown(core, call, DATASTORE, oid, uid, gid)
