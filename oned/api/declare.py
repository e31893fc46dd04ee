"""Declare a family's shared ``one.<x>.*`` methods in one line (mirrors the
``*XRPC`` classes that only bind a ``SharedAPI`` call to a method name).

``declare(DOCUMENT, "document", "info", "update", ...)`` registers the named methods
with OpenNebula's parameter lists; families then only write what is their own.
"""

from __future__ import annotations

from typing import Any

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.registry import Handler, rpc
from oned.api.shared import Family
from oned.core import Core
from oned.objects.base import Op


def _info(family: Family[Any]) -> Handler:
    async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
        obj = shared.get_authorized(core, call, family, oid, Op.USE, ignore_lock=True)
        return shared.info_body(core, call, family, obj, decrypt)

    return info


def _pool(family: Family[Any], root: str) -> Handler:
    async def pool_info(core: Core, call: Call) -> WireParts:
        objs = shared.filtered(core, call, family)
        return shared.pool_document(root, objs, family.pool(core))

    return pool_info


def _update(family: Family[Any]) -> Handler:
    async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
        return await shared.update_template(core, call, family, oid, text, mode)

    return update


def _rename(family: Family[Any]) -> Handler:
    async def rename(core: Core, call: Call, oid: int, name: str) -> int:
        return await shared.rename(core, call, family, oid, name)

    return rename


def _chmod(family: Family[Any]) -> Handler:
    async def chmod(core: Core, call: Call, oid: int, *bits: int) -> int:
        return await shared.chmod(core, call, family, oid, list(bits))

    return chmod


def _chown(family: Family[Any]) -> Handler:
    async def chown(core: Core, call: Call, oid: int, uid: int, gid: int) -> int:
        return await shared.chown(core, call, family, oid, uid, gid)

    return chown


def _lock(family: Family[Any]) -> Handler:
    async def lock(core: Core, call: Call, oid: int, level: int, test: bool = False) -> int:
        return await shared.lock(core, call, family, oid, level, test)

    return lock


def _unlock(family: Family[Any]) -> Handler:
    async def unlock(core: Core, call: Call, oid: int) -> int:
        return await shared.unlock(core, call, family, oid)

    return unlock


def _delete(family: Family[Any]) -> Handler:
    async def delete(core: Core, call: Call, oid: int) -> int:
        return await shared.delete(core, call, family, oid)

    return delete


def declare(family: Family[Any], prefix: str, *methods: str) -> None:
    """Register ``one.<prefix>.<method>`` (and ``one.<prefix>pool.info`` for "pool")."""
    word = family.word
    table: dict[str, tuple[str, str, int | None, Handler, str]] = {
        "info": ("info", "ib", 1, _info(family), f"Returns {word} information."),
        "pool": ("", "", None, _pool(family, f"{family.pool_root}"), f"Returns the {word} pool."),
        "update": ("update", "isi", 2, _update(family), f"Updates the {word} template."),
        "rename": ("rename", "is", None, _rename(family), f"Renames the {word}."),
        "chmod": ("chmod", "i" * 10, None, _chmod(family), f"Changes {word} permissions."),
        "chown": ("chown", "iii", None, _chown(family), f"Changes {word} owner and group."),
        "lock": ("lock", "iib", 2, _lock(family), f"Locks the {word}."),
        "unlock": ("unlock", "i", None, _unlock(family), f"Unlocks the {word}."),
        "delete": ("delete", "i", None, _delete(family), f"Deletes the {word}."),
    }
    for method in methods:
        suffix, kinds, required, handler, text = table[method]
        name = f"one.{prefix}pool.info" if method == "pool" else f"one.{prefix}.{suffix}"
        rpc(name, kinds, required=required, help=text)(handler)
