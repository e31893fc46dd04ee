"""``one.document.*`` and ``one.documentpool.info`` (mirrors ``DocumentAPI``).

Documents are the thinnest owned object: a template with a numeric TYPE. They use the
whole shared machinery (allocate, info, update, chmod, chown, rename, lock, clone,
delete, filtered pool), which is why OneFlow can keep its state in them.
"""

from __future__ import annotations

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.declare import declare
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.errors import AllocateError
from oned.objects.base import Lock, Op, Permissions
from oned.objects.document import Document

DOCUMENT = Family[Document](
    type_name="DOCUMENT",
    word="document",
    pool_root="DOCUMENT_POOL",
    pool=lambda core: core.documents,
    auth=shared.owned_auth("DOCUMENT"),
    lockable=True,
    name_scope="none",
    encrypted_attr="DOCUMENT_ENCRYPTED_ATTR",
)


async def _insert(core: Core, call: Call, name: str, doc_type: int, tmpl: object) -> int:
    caller = call.caller
    unit = core.unit()
    oid = unit.allocate(core.documents)
    doc = Document(
        oid=oid,
        name=name,
        uid=caller.uid,
        gid=caller.gid,
        uname=caller.uname,
        gname=caller.gname,
        type=doc_type,
        perms=Permissions.for_new_object(
            caller.uid, caller.gid, caller.umask, core.config.enable_other_permissions
        ),
        lock=Lock(),
        template=tmpl,  # type: ignore[arg-type]
    )
    unit.add(core.documents, doc)
    await unit.commit(f"allocate document {oid}")
    return oid


@rpc("one.document.allocate", "si")
async def allocate(core: Core, call: Call, text: str, doc_type: int) -> int:
    """Allocates a new document."""
    tmpl = shared.parse_template(text)
    core.acl.check(call.caller, Op.CREATE, shared.ObjectAuth("DOCUMENT", -1))
    name = tmpl.get("NAME") or ""
    tmpl.erase("NAME")
    if not name:
        name = f"document-{core.documents.last_oid + 1}"
    problem = shared.validate_name(name)
    if problem:
        raise AllocateError(problem)
    return await _insert(core, call, name, doc_type, tmpl)


@rpc("one.document.clone", "is")
async def clone(core: Core, call: Call, oid: int, name: str) -> int:
    """Clones an existing document."""
    source = shared.get_authorized(core, call, DOCUMENT, oid, Op.USE)
    core.acl.check(call.caller, Op.CREATE, shared.ObjectAuth("DOCUMENT", -1))
    problem = shared.validate_name(name)
    if problem:
        raise AllocateError(problem)
    return await _insert(core, call, name, source.type, source.template.copy())


@rpc("one.documentpool.info", "iiii", required=4)
async def pool_info(
    core: Core, call: Call, filter_flag: int, start: int, end: int, doc_type: int
) -> WireParts:
    """Returns the document pool, filtered, of one TYPE (-1 any)."""
    docs = shared.filtered(
        core,
        call,
        DOCUMENT,
        filter_flag,
        start,
        end,
        extra=None if doc_type == -1 else (lambda d: d.type == doc_type),
    )
    return shared.pool_document("DOCUMENT_POOL", docs, core.documents)


declare(
    DOCUMENT, "document", "info", "update", "rename", "chmod", "chown", "lock", "unlock", "delete"
)
